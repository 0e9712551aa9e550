//! The readers that walk a snapshot's folders through the one tree walker (check, prune's
//! reachable set, repair snapshots): each still reads a tree that many snapshots share once,
//! and repair still rebuilds a snapshot around a folder whose tree is lost.

use std::sync::Arc;

use packvault::format::blob::BlobKind;
use packvault::format::index::{IndexFile, IndexPack};
use packvault::format::snapshot::{Node, NodeContent, SnapshotRecord, Summary, Tree};
use packvault::hazmat::{self, MasterKey};
use packvault::{
    CheckOptions, Credentials, FileKind, FileMeta, Id, MemoryStore, OpenOptions, PackId, PruneOptions, Repository,
    SnapshotId, Store,
};

use crate::counting::CountingStore;
use crate::{fast_init, PASS};

/// Three snapshots of the same files: chats/a.json, chats/media/p.jpg, and a copy of `chats`
/// under `archive`, so that one tree also occurs twice in each snapshot. Distinct trees: the
/// root, archive, chats (= archive/chats) and media; six folder occurrences per snapshot.
fn shared_trees() -> (Arc<CountingStore>, Repository) {
    let store = CountingStore::new(Arc::new(MemoryStore::new()));
    let mut repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), fast_init(None)).unwrap();
    let meta = FileMeta { mode: 0o644, mtime_secs: 1, mtime_nanos: 0 };
    for _ in 0..3 {
        let mut b = repo.backup().unwrap();
        for prefix in ["", "archive/"] {
            b.add_stream(&format!("{prefix}chats/a.json"), &b"{\"messages\": []}"[..], meta).unwrap();
            b.add_stream(&format!("{prefix}chats/media/p.jpg"), &[7u8; 5000][..], meta).unwrap();
        }
        b.commit(packvault::SnapshotInfo::default()).unwrap();
    }
    (store, repo)
}

#[test]
fn check_and_prune_read_each_shared_tree_once() {
    let (store, mut repo) = shared_trees();
    store.reset();
    let report = repo.check(CheckOptions::default()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.snapshots, report.trees), (3, 4));
    // One ranged read per distinct tree: 4, not the 18 folder occurrences.
    assert_eq!(store.pack_reads(), 4, "{:?}", store.reads());

    store.reset();
    let plan = repo.prune(PruneOptions { dry_run: true, ..PruneOptions::default() }).unwrap();
    assert_eq!(plan.unused_blobs, 0);
    assert_eq!(store.pack_reads(), 4, "{:?}", store.reads());
}

#[test]
fn check_names_every_path_a_shared_tree_holds_in_every_snapshot() {
    let (store, repo) = shared_trees();
    let data = repo.index().packs().find(|p| p.kind == BlobKind::Data).unwrap().id;
    assert_eq!(repo.index().packs().filter(|p| p.kind == BlobKind::Data).count(), 1);
    store.delete(FileKind::Pack, &data.to_hex()).unwrap();
    let report = repo.check(CheckOptions::default()).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let affected = &report.problems[0].affected;
    // Four files in each of the three snapshots, though their trees were read once.
    assert_eq!(affected.len(), 12, "{affected:?}");
    for (id, _) in repo.snapshots().unwrap() {
        for f in ["archive/chats/a.json", "archive/chats/media/p.jpg", "chats/a.json", "chats/media/p.jpg"] {
            let here = format!("{}:{f}", id.short());
            assert!(affected.contains(&here), "{here} not in {affected:?}");
        }
    }
}

fn node(name: &str, content: NodeContent) -> Node {
    Node { name: name.as_bytes().to_vec(), mode: 0o755, mtime_secs: 0, mtime_nanos: 0, content }
}

fn empty_file(name: &str) -> Node {
    node(name, NodeContent::File { size: 0, chunks: Vec::new() })
}

#[test]
fn repair_drops_a_lost_folder_and_rebuilds_the_folders_above_it() {
    let store = Arc::new(MemoryStore::new());
    let master = MasterKey::from_bytes([0x31; 32]);
    drop(
        hazmat::init_with_master_key(store.clone(), master.clone(), &Credentials::passphrase(PASS), fast_init(None))
            .unwrap(),
    );
    // keep, a/z, a/b/y and a/b/lost, whose tree is in no pack; a second snapshot whose root
    // tree is lost; a third with nothing lost.
    let keys = hazmat::Keys::derive(&master);
    let mut blobs = Vec::new();
    let mut tree = |nodes: Vec<Node>| {
        let bytes = Tree { nodes }.encode().unwrap();
        blobs.push(hazmat::seal_blob(&keys, BlobKind::Tree, &bytes, Some(3)));
        keys.tree_id(&bytes)
    };
    let lost = keys.tree_id(b"never stored");
    let b = tree(vec![node("lost", NodeContent::Dir { tree: lost }), empty_file("y")]);
    let a = tree(vec![node("b", NodeContent::Dir { tree: b }), empty_file("z")]);
    let root = tree(vec![node("a", NodeContent::Dir { tree: a }), empty_file("keep")]);
    let sound = tree(vec![empty_file("fine")]);
    let (pack, entries) = hazmat::encode_pack(&keys, BlobKind::Tree, &blobs, &[1; 12]);
    let pack_id = PackId(Id::hash_of(&pack));
    store.put(FileKind::Pack, &pack_id.to_hex(), &pack).unwrap();
    let index = IndexFile {
        packs: vec![IndexPack { pack: pack_id, kind: BlobKind::Tree, pack_len: pack.len() as u32, entries }],
    };
    let index = hazmat::encode_index(&keys, &index, &[2; 12]);
    store.put(FileKind::Index, &Id::hash_of(&index).to_hex(), &index).unwrap();
    let mut ids = Vec::new();
    for (sequence, root) in [(1, root), (2, lost), (3, sound)] {
        let record = SnapshotRecord {
            time_secs: 1_764_115_200 + sequence as i64,
            time_nanos: 0,
            hostname: "phone".into(),
            username: "ana".into(),
            tags: Vec::new(),
            paths: vec!["/".into()],
            root,
            sequence,
            previous: None,
            summary: Summary::default(),
            flags: 0,
            program: "test".into(),
        };
        let bytes = hazmat::encode_snapshot(&keys, &record, &[sequence as u8; 12]).unwrap();
        let id = SnapshotId(Id::hash_of(&bytes));
        store.put(FileKind::Snapshot, &id.to_hex(), &bytes).unwrap();
        ids.push(id);
    }
    let mut repo = hazmat::open_with_master_key(
        store.clone(),
        master,
        &OpenOptions { state: packvault::ClientState::Disabled, ..OpenOptions::default() },
    )
    .unwrap();

    let report = repo.repair_snapshots().unwrap();
    assert_eq!(report.dropped, vec![(ids[0], "a/b/lost".to_string()), (ids[1], "/".to_string())]);
    assert_eq!(report.repaired.iter().map(|r| r.0).collect::<Vec<_>>(), ids[..2]);
    let snapshot = |id: SnapshotId| repo.snapshots().unwrap().into_iter().find(|s| s.0 == id).unwrap().1;
    let listed = |rec: &SnapshotRecord| -> Vec<String> {
        repo.list(rec, "", true).unwrap().into_iter().map(|(p, _)| p).collect()
    };
    let first = snapshot(report.repaired[0].1);
    assert_eq!(listed(&first), ["a", "a/b", "a/b/y", "a/z", "keep"]);
    assert_eq!(listed(&snapshot(report.repaired[1].1)), Vec::<String>::new());
    assert_eq!(listed(&snapshot(ids[2])), ["fine"], "a sound snapshot is left as it was");
    let check = repo.check(CheckOptions::default()).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}

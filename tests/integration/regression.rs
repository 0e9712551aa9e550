//! Regression tests for defects found by fuzzing and review, each named after the finding.
//! They run on stable, without the fuzzer.
//!
//! Findings:
//! 1. restore_from_bytes (fuzz, 2026-11-26): a restore whose folder tree blob is damaged
//!    lists the *folder* as not restored; the files below it are absent. The target wrongly
//!    demanded each file be listed; the library's behaviour is the one kept here.
//! 2. lock (fuzz, CI smoke run, 2026-11-26): a lock plaintext whose host name was 65 bytes
//!    decoded, and re-encoding cut it to 64, so the record did not survive a round trip.
//!    Readers now refuse names longer than writers write (format-spec.md §5.14).
//! 3. review, 2026-11-26: every reader walks trees recursively, so a snapshot whose folders
//!    nest without end (only a key holder can write one) ran the walk down the stack. Trees
//!    now nest at most 1024 levels (format-spec.md §7.3); deeper is a clear error.

use std::fs;
use std::sync::Arc;

use packvault::format::blob::BlobKind;
use packvault::format::index::{IndexFile, IndexPack};
use packvault::format::lock;
use packvault::format::snapshot::{Node, NodeContent, SnapshotRecord, Summary, Tree, MAX_TREE_DEPTH};
use packvault::hazmat::{self, MasterKey};
use packvault::{
    CheckOptions, Credentials, ErrorKind, FileKind, FileMeta, Id, MemoryStore, OpenOptions, PackId, PruneOptions,
    RestoreOptions, Store,
};

use crate::{fast_init, PASS};

#[test]
fn fuzz_restore_lost_folder_tree_is_reported_as_the_folder() {
    let store = Arc::new(MemoryStore::new());
    let master = MasterKey::from_bytes([0x42; 32]);
    let mut repo =
        hazmat::init_with_master_key(store.clone(), master.clone(), &Credentials::passphrase(PASS), fast_init(None))
            .unwrap();
    let meta = FileMeta { mode: 0o644, mtime_secs: 1, mtime_nanos: 0 };
    let mut b = repo.backup().unwrap();
    b.add_stream("media/IMG-1.jpg", &[7u8; 3000][..], meta).unwrap();
    b.add_stream("chats/a.json", &b"{}"[..], meta).unwrap();
    let out = b.commit(packvault::SnapshotInfo::default()).unwrap();

    // Damage the tree blob of `media` inside its pack.
    let root = repo.load_tree(&out.record.root).unwrap();
    let media = root.nodes.iter().find(|n| n.name == b"media").unwrap();
    let NodeContent::Dir { tree } = media.content else { panic!() };
    let loc = repo.index().lookup(&tree.0).unwrap().unwrap();
    let path = packvault::FileKind::Pack.path(&loc.pack.to_hex());
    let mut pack = store.snapshot_files()[&path].clone();
    pack[loc.offset as usize + 3] ^= 1;
    store.overwrite(&path, pack);

    let repo = hazmat::open_with_master_key(
        store,
        master,
        &OpenOptions { state: packvault::ClientState::Disabled, ..OpenOptions::default() },
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let r =
        repo.restore(&out.record, &RestoreOptions { target: tmp.path().to_path_buf(), ..Default::default() }).unwrap();
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert_eq!(r.failed[0].0, "media");
    assert!(r.failed[0].1.is_integrity(), "the folder's tree is damaged: {}", r.failed[0].1);
    assert_eq!(fs::read(tmp.path().join("chats/a.json")).unwrap(), b"{}");
    assert!(!tmp.path().join("media/IMG-1.jpg").exists());
}

/// A lock plaintext (§5.14) spelled out byte by byte (§5.7): `u16` length ‖ kind 0 (shared) ‖
/// host name ‖ machine "" ‖ pid 1 ‖ time 0 ‖ operation "" ‖ zeros.
fn lock_plaintext(hostname_len: u8) -> Vec<u8> {
    let mut body = vec![0x00, hostname_len];
    body.extend(std::iter::repeat_n(b'h', usize::from(hostname_len)));
    body.extend([0x00, 0x01, 0x00, 0x00]);
    let mut plain = u16::try_from(body.len()).unwrap().to_le_bytes().to_vec();
    plain.extend(body);
    plain.resize(lock::LOCK_PLAINTEXT_LEN, 0);
    plain
}

#[test]
fn fuzz_lock_host_name_longer_than_writers_write_is_refused() {
    let at_limit = lock::decode_plaintext(&lock_plaintext(64)).unwrap();
    assert_eq!((at_limit.hostname.len(), at_limit.pid, at_limit.time), (64, 1, 0));
    assert_eq!(lock::encode_plaintext(&at_limit).unwrap(), lock_plaintext(64), "the spelled-out bytes are canonical");

    let err = lock::decode_plaintext(&lock_plaintext(65)).unwrap_err();
    assert_eq!(err.kind(), packvault::ErrorKind::Malformed, "{err}");
    assert!(err.to_string().contains("host name is 65 bytes"), "{err}");
}

/// Writes, with the repository key, a snapshot whose root holds one folder `d` nesting
/// `levels` folders deep, and one whose root is empty; returns both records.
fn nested_snapshots(store: &MemoryStore, master: &MasterKey, levels: usize) -> (SnapshotRecord, SnapshotRecord) {
    let keys = hazmat::Keys::derive(master);
    let empty = Tree::default().encode().unwrap();
    let leaf = keys.tree_id(&empty);
    let mut blobs = vec![hazmat::seal_blob(&keys, BlobKind::Tree, &empty, Some(3))];
    let mut root = leaf;
    for _ in 0..levels {
        let content = NodeContent::Dir { tree: root };
        let node = Node { name: b"d".to_vec(), mode: 0o755, mtime_secs: 0, mtime_nanos: 0, content };
        let bytes = Tree { nodes: vec![node] }.encode().unwrap();
        root = keys.tree_id(&bytes);
        blobs.push(hazmat::seal_blob(&keys, BlobKind::Tree, &bytes, Some(3)));
    }
    let (pack, entries) = hazmat::encode_pack(&keys, BlobKind::Tree, &blobs, &[1; 12]);
    let pack_id = PackId(Id::hash_of(&pack));
    store.put(FileKind::Pack, &pack_id.to_hex(), &pack).unwrap();
    let index = IndexFile {
        packs: vec![IndexPack { pack: pack_id, kind: BlobKind::Tree, pack_len: pack.len() as u32, entries }],
    };
    let index = hazmat::encode_index(&keys, &index, &[2; 12]);
    store.put(FileKind::Index, &Id::hash_of(&index).to_hex(), &index).unwrap();
    let record = |root, sequence| SnapshotRecord {
        time_secs: 1_764_115_200,
        time_nanos: 0,
        hostname: "phone".into(),
        username: "ana".into(),
        tags: Vec::new(),
        paths: vec!["/".into()],
        root,
        sequence,
        previous: None,
        summary: Summary { dirs: levels as u64 + 1, ..Summary::default() },
        flags: 0,
        program: "test".into(),
    };
    let (deep, flat) = (record(root, 1), record(leaf, 2));
    for (r, nonce) in [(&deep, [3; 12]), (&flat, [4; 12])] {
        let bytes = hazmat::encode_snapshot(&keys, r, &nonce).unwrap();
        store.put(FileKind::Snapshot, &Id::hash_of(&bytes).to_hex(), &bytes).unwrap();
    }
    (deep, flat)
}

#[test]
fn review_folders_nested_past_the_limit_are_refused_by_every_reader() {
    let store = Arc::new(MemoryStore::new());
    let master = MasterKey::from_bytes([0x17; 32]);
    drop(
        hazmat::init_with_master_key(store.clone(), master.clone(), &Credentials::passphrase(PASS), fast_init(None))
            .unwrap(),
    );
    let levels = MAX_TREE_DEPTH + 50;
    let (deep, flat) = nested_snapshots(&store, &master, levels);
    let mut repo = hazmat::open_with_master_key(
        store.clone(),
        master,
        &OpenOptions { state: packvault::ClientState::Disabled, ..OpenOptions::default() },
    )
    .unwrap();
    let too_deep = |e: packvault::Error| {
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
        assert!(e.to_string().contains("folder nesting is 1025, above the limit of 1024"), "{e}");
    };

    too_deep(repo.list(&deep, "", true).unwrap_err());
    assert_eq!(repo.list(&deep, "", false).unwrap().len(), 1, "one level is no walk");
    too_deep(repo.diff(&deep, &flat).unwrap_err());
    let deep_id = repo.snapshots().unwrap().into_iter().find(|(_, r)| r.root == deep.root).unwrap().0;
    let names_snapshot =
        |e: &packvault::Error| assert!(e.to_string().contains(&format!("snapshot {}", deep_id.short())), "{e}");
    let err = repo.stats(None).unwrap_err();
    names_snapshot(&err);
    too_deep(err);
    too_deep(repo.find("*").unwrap_err());
    let at_limit = vec!["d"; MAX_TREE_DEPTH].join("/");
    assert_eq!(repo.list(&deep, &at_limit, false).unwrap().len(), 2, "the deepest tree allowed lists");
    too_deep(repo.list(&deep, &format!("{at_limit}/d"), false).unwrap_err());

    let report = repo.check(CheckOptions::default()).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].message.contains("folder nesting"), "{:?}", report.problems);

    // Prune cannot know what the folders past the limit need: it refuses, naming the folder.
    let err = repo.prune(PruneOptions { dry_run: true, ..PruneOptions::default() }).unwrap_err();
    names_snapshot(&err);
    assert!(err.to_string().contains(&format!(" {at_limit}/d: folder nesting")), "{err}");
    too_deep(err);

    // Restore brings back the folders down to the limit and names the one it stopped at.
    let tmp = tempfile::tempdir().unwrap();
    let r = repo.restore(&deep, &RestoreOptions { target: tmp.path().to_path_buf(), ..Default::default() }).unwrap();
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert_eq!(r.failed[0].0, format!("{at_limit}/d"));
    let e = &r.failed[0].1;
    assert!(e.kind() == packvault::ErrorKind::LimitExceeded && e.to_string().contains("folder nesting"), "{e}");
    assert!(tmp.path().join(&at_limit).is_dir());

    // Repair does not take "too deep" for lost data: it stops and deletes nothing.
    let err = repo.repair_snapshots().unwrap_err();
    names_snapshot(&err);
    too_deep(err);
    assert_eq!(repo.snapshots().unwrap().len(), 2);
}

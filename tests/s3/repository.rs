//! Repositories over S3: a round trip (init, two backups as two processes would, restore,
//! check), a one-conversation restore that reads only that conversation's packs with ranged
//! GETs, and two concurrent backups followed by a prune.

use std::collections::{BTreeMap, BTreeSet};

use packvault::format::blob::BlobKind;
use packvault::format::snapshot::NodeContent;
use packvault::{
    CheckOptions, Credentials, FileKind, FileMeta, PruneOptions, Repository, RestoreOptions, SnapshotInfo, Store,
};

use crate::compare::assert_same_tree;
use crate::counting::CountingStore;
use crate::history::{write_day, HistoryParams, Rng};
use crate::{fast_init, reopen, scratch, server, PASS};

#[test]
fn init_backup_restore_check_round_trip_over_s3() {
    let Some(s) = server("init_backup_restore_check_round_trip_over_s3") else { return };
    let (_t, dir) = scratch();
    let store = s.store("roundtrip");
    let src = dir.join("day0");
    let params = HistoryParams::default();
    write_day(&src, &params, 0).unwrap();
    let options = packvault::InitOptions { pack_target_size: 1 << 20, ..fast_init(&dir) };
    let mut repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), options).unwrap();
    let mut b = repo.backup().unwrap();
    b.add_dir(&src, "").unwrap();
    let first = b.commit(SnapshotInfo::default()).unwrap();
    drop(repo);

    // The next day, as a new process.
    let src = dir.join("day1");
    write_day(&src, &params, 1).unwrap();
    let mut repo = reopen(store.clone(), &dir);
    let mut b = repo.backup().unwrap();
    b.add_dir(&src, "").unwrap();
    let second = b.commit(SnapshotInfo::default()).unwrap();
    assert_ne!(first.snapshot, second.snapshot);
    let packs = store.list(FileKind::Pack).unwrap().len();
    assert!(packs >= 4, "{packs} packs");

    let repo = reopen(store.clone(), &dir);
    assert_eq!(repo.snapshots().unwrap().len(), 2);
    let target = dir.join("restored");
    let report =
        repo.restore(&second.record, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert!(report.is_complete(), "{:?}", report.failed);
    assert_same_tree(&src, &target);
    let check = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(check.packs_read, packs);
}

const CONVERSATIONS: [&str; 3] = ["alice", "bob", "carol"];

fn conversation(name: &str, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let mut log = String::new();
    while log.len() < 200_000 {
        log.push_str(&format!("{{\"from\":\"{name}\",\"n\":{},\"text\":\"m {}\"}},\n", rng.below(1000), rng.next()));
    }
    let mut media = |len: usize| {
        let mut v = vec![0; len];
        rng.fill(&mut v);
        v
    };
    vec![
        (format!("chats/{name}/messages.json"), log.into_bytes()),
        (format!("chats/{name}/media/IMG-1.jpg"), media(3 << 20)),
        (format!("chats/{name}/media/IMG-2.jpg"), media(2 << 20)),
    ]
}

#[test]
fn a_one_conversation_restore_reads_only_its_packs_with_ranged_gets() {
    let Some(s) = server("a_one_conversation_restore_reads_only_its_packs_with_ranged_gets") else { return };
    let (_t, dir) = scratch();
    let store = CountingStore::new(s.store("one-conversation"));
    let options = packvault::InitOptions { pack_target_size: 1 << 20, ..fast_init(&dir) };
    let mut repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), options).unwrap();
    let meta = FileMeta { mode: 0o640, mtime_secs: 1_700_000_000, mtime_nanos: 5 };
    let mut files = BTreeMap::new();
    let mut record = None;
    for day in 0..CONVERSATIONS.len() {
        let mut b = repo.backup().unwrap();
        for (i, name) in CONVERSATIONS[..=day].iter().enumerate() {
            for (path, data) in conversation(name, i as u64 + 1) {
                b.add_stream(&path, &data[..], meta).unwrap();
                files.insert(path, data);
            }
        }
        record = Some(b.commit(SnapshotInfo::default()).unwrap().record);
    }
    let record = record.unwrap();
    let packs_of = |prefix: &str| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for p in files.keys().filter(|p| p.starts_with(prefix)) {
            let (_, node) = repo.list(&record, p, false).unwrap().pop().unwrap();
            let NodeContent::File { chunks, .. } = node.content else { panic!("{p}") };
            for c in chunks {
                out.insert(repo.index().lookup(&c.0).unwrap().unwrap().pack.to_hex());
            }
        }
        out
    };
    let bob = packs_of("chats/bob/");
    let data_packs: BTreeSet<String> =
        repo.index().packs().filter(|p| p.kind == BlobKind::Data).map(|p| p.id.to_hex()).collect();
    assert!(bob.len() >= 2 && data_packs.len() > bob.len() + 4, "{} of {}", bob.len(), data_packs.len());

    store.reset();
    let target = dir.join("bob");
    let options = RestoreOptions { target: target.clone(), include: vec!["chats/bob".into()], ..Default::default() };
    let report = repo.restore(&record, &options).unwrap();
    assert!(report.is_complete(), "{:?}", report.failed);
    let reads = store.reads();
    let pack_reads: Vec<_> = reads.iter().filter(|r| r.kind == FileKind::Pack).collect();
    let data_read: BTreeSet<String> = store.packs_read().intersection(&data_packs).cloned().collect();
    let bytes: u64 = pack_reads.iter().filter_map(|r| r.range).map(|(_, len)| len as u64).sum();
    eprintln!(
        "one-conversation restore over S3: {} of {} data packs read, {} ranged GETs of packs ({} bytes), {} reads in all",
        data_read.len(),
        data_packs.len(),
        pack_reads.len(),
        bytes,
        reads.len()
    );
    assert_eq!(data_read, bob, "exactly the packs holding bob's chunks");
    assert!(pack_reads.iter().all(|r| r.range.is_some()), "packs are read by ranges only");
    for (p, data) in files.iter().filter(|(p, _)| p.starts_with("chats/bob/")) {
        assert!(std::fs::read(target.join(p)).unwrap() == *data, "{p}");
    }
    assert!(!target.join("chats/alice").exists());
}

/// `len` bytes of noise from `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    Rng::new(seed).fill(&mut v);
    v
}

#[test]
fn two_concurrent_backups_then_a_prune_keep_both_snapshots_whole() {
    let Some(s) = server("two_concurrent_backups_then_a_prune_keep_both_snapshots_whole") else { return };
    let (_t, dir) = scratch();
    let store = s.store("concurrent");
    let options = packvault::InitOptions { pack_target_size: 1 << 20, ..fast_init(&dir) };
    let mut repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), options).unwrap();
    let meta = FileMeta { mode: 0o600, mtime_secs: 1_700_000_000, mtime_nanos: 0 };
    let shared = noise(7, 3 << 20);
    // A first snapshot, forgotten before the prune so that the prune has work.
    let mut b = repo.backup().unwrap();
    b.add_stream("old/bulk.bin", &noise(99, 2 << 20)[..], meta).unwrap();
    let old = b.commit(SnapshotInfo::default()).unwrap().snapshot;
    drop(repo);

    let devices: Vec<(String, Vec<u8>)> =
        vec![("phone".into(), noise(1, 4 << 20)), ("laptop".into(), noise(2, 4 << 20))];
    let outcomes: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = devices
            .iter()
            .map(|(name, own)| {
                let (store, dir, shared) = (store.clone(), dir.join(name), &shared);
                sc.spawn(move || {
                    // Each device has its own client state and cache.
                    std::fs::create_dir_all(&dir).unwrap();
                    let mut repo =
                        Repository::open(store, &Credentials::passphrase(PASS), &crate::open_options(&dir)).unwrap();
                    let mut b = repo.backup().unwrap();
                    b.add_stream(&format!("{name}/own.bin"), &own[..], meta).unwrap();
                    b.add_stream(&format!("{name}/shared.bin"), &shared[..], meta).unwrap();
                    b.commit(SnapshotInfo::default()).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut repo = reopen(store.clone(), &dir);
    assert_eq!(repo.snapshots().unwrap().len(), 3);
    let forgotten = repo.forget(&packvault::ForgetPolicy { ids: vec![old], ..Default::default() }, false).unwrap();
    assert_eq!(forgotten.remove.len(), 1);
    let pruned = repo.prune(PruneOptions { max_unused_percent: 0.0, ..Default::default() }).unwrap();
    eprintln!(
        "prune after two concurrent backups: {} packs deleted, {} repacked, {} written, {} bytes freed",
        pruned.packs_deleted, pruned.packs_repacked, pruned.packs_written, pruned.bytes_freed
    );
    assert!(pruned.packs_deleted > 0, "the forgotten snapshot's packs go");
    let repo = reopen(store.clone(), &dir.join("after"));
    let check = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(repo.snapshots().unwrap().len(), 2);
    for ((name, own), outcome) in devices.iter().zip(&outcomes) {
        let target = dir.join(format!("restore-{name}"));
        let report =
            repo.restore(&outcome.record, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
        assert!(report.is_complete(), "{:?}", report.failed);
        assert!(std::fs::read(target.join(name).join("own.bin")).unwrap() == *own);
        assert!(std::fs::read(target.join(name).join("shared.bin")).unwrap() == shared);
    }
}

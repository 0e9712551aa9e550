//! `Repository::copy_to`: within one key domain (packs and snapshot files as they are) and
//! into another (blobs sealed again, trees rewritten), what it writes, what it skips, and a
//! cancelled copy.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use packvault::hazmat::{init_with_master_key, MasterKey};
use packvault::{
    CancelToken, CheckOptions, CopyOptions, Credentials, ErrorKind, FileKind, ForgetPolicy, InitOptions, MemoryStore,
    Progress, Repository, RestoreOptions, SnapshotId, SnapshotInfo, Store,
};

use crate::compare::assert_same_tree;
use crate::faulty::{FaultyStore, Mode};
use crate::history::{write_day, HistoryParams};
use crate::{fast_init, PASS};

/// A repository in memory (no client state), made around `master` when given.
fn repo_in(store: &Arc<dyn Store>, master: Option<[u8; 32]>) -> Repository {
    let creds = Credentials::passphrase(PASS);
    // Small packs: a few MiB of history make many, so pack counts mean something.
    let options = InitOptions { pack_target_size: 1 << 20, ..fast_init(None) };
    match master {
        Some(m) => init_with_master_key(store.clone(), MasterKey::from_bytes(m), &creds, options).unwrap(),
        None => Repository::init(store.clone(), &creds, options).unwrap(),
    }
}

/// Backs up days 1..=days of the history into `repo`, each from `dir/dayN`; returns the ids.
fn back_up_days(repo: &mut Repository, dir: &Path, days: u32) -> Vec<SnapshotId> {
    let p = HistoryParams { first_day_messages: 3_000, ..HistoryParams::default() };
    let mut ids = Vec::new();
    for day in 1..=days {
        let src = dir.join(format!("day{day}"));
        if !src.exists() {
            write_day(&src, &p, day).unwrap();
        }
        let mut s = repo.backup().unwrap();
        s.add_dir(&src, "").unwrap();
        let info = SnapshotInfo { hostname: Some("phone".into()), ..SnapshotInfo::tagged([format!("day{day}")]) };
        ids.push(s.commit(info).unwrap().snapshot);
    }
    ids
}

fn pack_names(store: &dyn Store) -> BTreeSet<String> {
    store.list(FileKind::Pack).unwrap().into_iter().collect()
}

/// Pack uploads in a counting store's log.
fn pack_uploads(store: &FaultyStore) -> usize {
    store.log().iter().filter(|l| l.starts_with("upload packs/") || l.starts_with("put packs/")).count()
}

fn restore_matches(repo: &Repository, id: &SnapshotId, original: &Path, target: &Path) {
    let rec = repo.load_snapshot(id).unwrap();
    let report = repo.restore(&rec, &RestoreOptions { target: target.to_path_buf(), ..Default::default() }).unwrap();
    assert!(report.is_complete(), "{:?}", report.failed);
    assert_same_tree(original, target);
}

fn check_read_data(repo: &Repository) {
    let report = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn same_domain_copy_is_byte_identical_and_uploads_only_missing_packs() {
    let tmp = tempfile::tempdir().unwrap();
    let master = [0x5a; 32];
    let src_store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut src = repo_in(&src_store, Some(master));
    let ids = back_up_days(&mut src, tmp.path(), 3);

    let dest_mem = MemoryStore::new();
    let counting = FaultyStore::new(Arc::new(dest_mem.clone()), None, Mode::Crash);
    let dest_store: Arc<dyn Store> = counting.clone();
    let mut dest = repo_in(&dest_store, Some(master));

    // Day 1 only.
    let before = counting.ops();
    let r1 = src.copy_to(&mut dest, &ids[..1], CopyOptions::default()).unwrap();
    assert!(r1.same_domain);
    assert_eq!(r1.copied.len(), 1);
    assert_eq!(r1.copied[0].destination, ids[0], "same id in one key domain");
    let first = pack_names(dest_store.as_ref());
    assert!(first.is_subset(&pack_names(src_store.as_ref())), "only the source's own packs");
    assert_eq!(pack_uploads(&counting), first.len(), "each pack uploaded once");
    assert_eq!(r1.packs_written, first.len() as u64);
    assert!(first.len() < pack_names(src_store.as_ref()).len(), "day 1 does not need every pack");
    let puts: Vec<String> =
        counting.log()[before as usize..].iter().filter(|l| !l.contains("locks/")).cloned().collect();
    let last_pack = puts.iter().rposition(|l| l.contains("packs/")).unwrap();
    let flush = puts.iter().rposition(|l| l == "flush").unwrap();
    let index = puts.iter().position(|l| l.starts_with("put index/")).unwrap();
    let snap = puts.iter().position(|l| l.starts_with("put snapshots/")).unwrap();
    assert!(last_pack < flush && flush < index && index < snap, "packs, flush, index, snapshot: {puts:?}");

    // Then everything: day 1 is skipped, only the packs the destination lacks are uploaded.
    let uploads = pack_uploads(&counting);
    let r2 = src.copy_to(&mut dest, &[], CopyOptions::default()).unwrap();
    assert_eq!(r2.skipped.iter().map(|s| s.source).collect::<Vec<_>>(), ids[..1]);
    assert_eq!(r2.copied.iter().map(|s| s.source).collect::<Vec<_>>(), ids[1..]);
    let all = pack_names(dest_store.as_ref());
    assert_eq!(all, pack_names(src_store.as_ref()), "nothing forgotten or pruned: every pack is needed");
    assert_eq!(pack_uploads(&counting) - uploads, all.len() - first.len(), "only the missing packs");
    assert!(r2.blobs_present > 0, "day 2 shares blobs with day 1");

    // Snapshot files are the same bytes under the same names.
    let src_files = match src_store.list(FileKind::Snapshot) {
        Ok(mut n) => {
            n.sort();
            n
        }
        Err(e) => panic!("{e}"),
    };
    let mut dest_files = dest_store.list(FileKind::Snapshot).unwrap();
    dest_files.sort();
    assert_eq!(src_files, dest_files);
    for name in &src_files {
        assert_eq!(src_store.get(FileKind::Snapshot, name).unwrap(), dest_store.get(FileKind::Snapshot, name).unwrap());
    }

    // A third copy writes nothing at all (no pack, no index file, no snapshot).
    let ops = counting.log().len();
    let r3 = src.copy_to(&mut dest, &[], CopyOptions::default()).unwrap();
    assert_eq!((r3.copied.len(), r3.skipped.len(), r3.index_file), (0, 3, None));
    assert!(counting.log()[ops..].iter().all(|l| l.contains("locks/")), "{:?}", &counting.log()[ops..]);

    // The destination restores every day, and a fresh open checks clean.
    let dest = crate::reopen(Arc::new(dest_mem), None);
    for (day, id) in ids.iter().enumerate() {
        let day = day + 1;
        restore_matches(&dest, id, &tmp.path().join(format!("day{day}")), &tmp.path().join(format!("r{day}")));
    }
    check_read_data(&dest);
}

#[test]
fn same_domain_copy_forgets_what_the_source_forgot() {
    let tmp = tempfile::tempdir().unwrap();
    let master = [0x33; 32];
    let src_store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut src = repo_in(&src_store, Some(master));
    let ids = back_up_days(&mut src, tmp.path(), 3);
    src.forget(&ForgetPolicy { ids: vec![ids[0]], ..Default::default() }, false).unwrap();

    let dest_store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut dest = repo_in(&dest_store, Some(master));
    let r = src.copy_to(&mut dest, &[], CopyOptions::default()).unwrap();
    assert_eq!(r.copied.len(), 2);
    assert_eq!(r.forgotten_predecessors, vec![ids[0]]);
    // Day 2's predecessor was forgotten on purpose: the destination says so, no broken link.
    let dest = crate::reopen(dest_store, None);
    assert!(dest.history_report().is_clean(), "{:?}", dest.history_report());
    check_read_data(&dest);
    // Forgetting in the source is not a reason to refuse a chosen snapshot that is still there.
    let e = src.copy_to(
        &mut repo_in(&(Arc::new(MemoryStore::new()) as Arc<dyn Store>), Some(master)),
        &ids[..1],
        CopyOptions::default(),
    );
    assert_eq!(e.unwrap_err().kind(), ErrorKind::NotFound, "a forgotten snapshot is not copied");
}

#[test]
fn cross_domain_copy_restores_bit_exact_and_adds_nothing_the_second_time() {
    let tmp = tempfile::tempdir().unwrap();
    let src_store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut src = repo_in(&src_store, None);
    let ids = back_up_days(&mut src, tmp.path(), 3);
    let dest_mem = MemoryStore::new();
    let counting = FaultyStore::new(Arc::new(dest_mem.clone()), None, Mode::Crash);
    let dest_store: Arc<dyn Store> = counting.clone();
    let mut dest = repo_in(&dest_store, None);

    // Day 1, then the rest: day 2 and 3 dedup against day 1's resealed chunks.
    let r1 = src.copy_to(&mut dest, &ids[..1], CopyOptions::default()).unwrap();
    assert!(!r1.same_domain);
    assert_ne!(r1.copied[0].destination, ids[0], "another key domain: another id");
    let r2 = src.copy_to(&mut dest, &[], CopyOptions::default()).unwrap();
    assert_eq!(r2.skipped.len(), 1);
    assert_eq!(r2.copied.len(), 2);
    // Ids map one to one across domains, so the copy stores exactly the blobs each backup
    // stored in the source: what day 1 already brought is found, not written again.
    let new_blobs = |ids: &[SnapshotId]| -> u64 {
        ids.iter().map(|id| src.load_snapshot(id).unwrap().summary).map(|s| s.new_data_blobs + s.new_tree_blobs).sum()
    };
    assert_eq!(r1.blobs_written, new_blobs(&ids[..1]));
    assert_eq!(r2.blobs_written, new_blobs(&ids[1..]));
    assert!(r2.blobs_present > 0, "day 2 and 3 share chunks with day 1");

    // Records: descriptions kept, history the destination's own.
    let copied: Vec<_> = r1.copied.iter().chain(&r2.copied).collect();
    for (c, src_id) in copied.iter().zip(&ids) {
        let original = src.load_snapshot(src_id).unwrap();
        let rec = &c.record;
        assert_eq!(
            (rec.time_secs, rec.time_nanos, &rec.hostname, &rec.tags, &rec.paths, &rec.summary, &rec.program),
            (
                original.time_secs,
                original.time_nanos,
                &original.hostname,
                &original.tags,
                &original.paths,
                &original.summary,
                &original.program
            )
        );
    }
    assert_eq!(copied.iter().map(|c| c.record.sequence).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(copied[1].record.previous, Some(copied[0].destination));
    assert_eq!(copied[2].record.previous, Some(copied[1].destination));

    // A second copy of everything adds nothing: no pack, no index file, no snapshot.
    let ops = counting.log().len();
    let again = src.copy_to(&mut dest, &[], CopyOptions::default()).unwrap();
    assert_eq!((again.copied.len(), again.skipped.len(), again.packs_written), (0, 3, 0));
    assert!(counting.log()[ops..].iter().all(|l| l.contains("locks/")), "{:?}", &counting.log()[ops..]);

    let dest = crate::reopen(Arc::new(dest_mem), None);
    assert!(dest.history_report().is_clean());
    for (day, c) in copied.iter().enumerate() {
        let day = day + 1;
        restore_matches(
            &dest,
            &c.destination,
            &tmp.path().join(format!("day{day}")),
            &tmp.path().join(format!("r{day}")),
        );
    }
    check_read_data(&dest);
}

/// Cancels its token once `after` bytes were reported.
struct CancelAfter {
    bytes: AtomicU64,
    after: u64,
    token: CancelToken,
}

impl Progress for CancelAfter {
    fn advance(&self, bytes: u64, _items: u64) {
        if self.bytes.fetch_add(bytes, Ordering::SeqCst) + bytes >= self.after {
            self.token.cancel();
        }
    }
}

#[test]
fn a_cancelled_copy_leaves_the_destination_valid_and_the_next_one_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    for same_domain in [false, true] {
        let master = same_domain.then_some([0x44; 32]);
        let src_store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut src = repo_in(&src_store, master);
        let dir = tmp.path().join(format!("same-{same_domain}"));
        let ids = back_up_days(&mut src, &dir, 2);
        let dest_store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut dest = repo_in(&dest_store, master);

        let token = CancelToken::new();
        let progress = Arc::new(CancelAfter { bytes: AtomicU64::new(0), after: 3 << 20, token: token.clone() });
        let options = CopyOptions { progress: Some(progress), cancel: Some(token) };
        let e = src.copy_to(&mut dest, &[], options).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cancelled);
        assert!(dest_store.list(FileKind::Snapshot).unwrap().is_empty(), "no snapshot after a cancel");
        assert!(!dest_store.list(FileKind::Pack).unwrap().is_empty(), "some packs were written before the cancel");
        // Seen from a new process: valid, nothing refers to anything missing.
        let fresh = crate::reopen(dest_store.clone(), None);
        check_read_data(&fresh);
        drop(fresh);

        // The next copy (same handle) finishes, naming the packs the first one wrote.
        let r = src.copy_to(&mut dest, &[], CopyOptions::default()).unwrap();
        assert_eq!(r.copied.len(), 2);
        let fresh = crate::reopen(dest_store.clone(), None);
        let report = fresh.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
        assert!(report.is_ok(), "same domain {same_domain}: {:?}", report.problems.first());
        assert!(report.unreferenced_packs.is_empty(), "the packs of the cancelled copy are indexed now");
        for (day, c) in r.copied.iter().enumerate() {
            let day = day + 1;
            restore_matches(
                &fresh,
                &c.destination,
                &dir.join(format!("day{day}")),
                &dir.join(format!("r{day}-{}", ids.len())),
            );
        }
    }
}

#[test]
fn cross_domain_copy_of_folders_nested_to_the_limit_needs_no_deep_stack() {
    let limit = packvault::format::snapshot::MAX_TREE_DEPTH;
    let deep = format!("{}/f", vec!["d"; limit].join("/"));
    let src_store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut src = repo_in(&src_store, None);
    // The backup's own tree writer recurses: it gets a big stack; the copy runs on the test
    // thread's (2 MiB, without optimizations: frames are large).
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(s, || {
                let mut b = src.backup().unwrap();
                let meta = packvault::FileMeta { mode: 0o644, mtime_secs: 1, mtime_nanos: 0 };
                b.add_stream(&deep, &b"at the limit"[..], meta).unwrap();
                b.commit(SnapshotInfo::default()).unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    });
    let dest_store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut dest = repo_in(&dest_store, None);
    let r = src.copy_to(&mut dest, &[], CopyOptions::default()).unwrap();
    assert_eq!(r.copied.len(), 1);
    assert_eq!(r.blobs_written, 1 + limit as u64 + 1, "one chunk and every folder's tree");
    let mut file = dest.open_file(&r.copied[0].record, &deep).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).unwrap();
    assert_eq!(text, "at the limit");
}

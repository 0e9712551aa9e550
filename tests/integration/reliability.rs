//! Reliability: faults injected at every mutating store operation of a backup and of a prune,
//! resumed backups, forget and prune, concurrent backups racing a prune. After each,
//! `check --read-data` passes and every snapshot that should exist restores bit-exact. Damage
//! to every kind of repository file and repair are in `repository_damage.rs`, which shares
//! this file's helpers.
//!
//! `PACKVAULT_LONG_TESTS=1` runs more rounds of the concurrency test.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use packvault::{
    CheckOptions, Credentials, ErrorKind, FileKind, ForgetPolicy, InitOptions, LocalStore, OpenOptions, PruneOptions,
    Repository, RestoreOptions, SnapshotId, Store,
};

use crate::compare::assert_same_tree;
use crate::faulty::{FaultyStore, Mode};
use crate::history::{write_day, HistoryParams};
use crate::{fast_init, PASS};

pub(crate) fn long() -> bool {
    std::env::var_os("PACKVAULT_LONG_TESTS").is_some()
}

pub(crate) fn small_params() -> HistoryParams {
    HistoryParams {
        first_day_messages: 2_000,
        db_pages: 200,
        media_per_day: 6,
        media_max_bytes: 150_000,
        ..Default::default()
    }
}

/// Small packs, so a backup writes several and a prune has packs to choose between.
pub(crate) fn init_options(cache: &Path) -> InitOptions {
    InitOptions { pack_target_size: 1 << 20, ..fast_init(Some(cache)) }
}

pub(crate) fn open_at(store: Arc<dyn Store>, cache: &Path) -> Repository {
    Repository::open(
        store,
        &Credentials::passphrase(PASS),
        &OpenOptions {
            cache_dir: Some(cache.to_path_buf()),
            state: crate::state_for(Some(cache)),
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else if ft.is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

pub(crate) fn backup(repo: &mut Repository, src: &Path) -> packvault::Result<SnapshotId> {
    let mut s = repo.backup()?;
    s.add_dir(src, "")?;
    Ok(s.commit(packvault::SnapshotInfo::default())?.snapshot)
}

/// Restores `snap` into a fresh folder under `scratch` and compares it with `src`.
pub(crate) fn assert_restores(repo: &Repository, snap: &SnapshotId, src: &Path, scratch: &Path) {
    let target = scratch.join(format!("restore-{}", snap.short()));
    let _ = fs::remove_dir_all(&target);
    let rec = repo.load_snapshot(snap).unwrap();
    let r = repo.restore(&rec, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert!(r.is_complete(), "snapshot {}: {:?}", snap.short(), r.failed);
    assert_same_tree(src, &target);
    fs::remove_dir_all(&target).unwrap();
}

pub(crate) fn assert_check_ok(repo: &Repository, what: &str) {
    let report = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(report.is_ok(), "{what}: {:?}", report.problems);
}

/// The crashed "process" left its lock behind; a real crash leaves a dead PID, which other
/// clients treat as stale. Here the PID is ours and alive, so the test removes it.
pub(crate) fn clear_locks(repo: &Repository) {
    repo.unlock(true).unwrap();
}

pub(crate) struct Days {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) srcs: Vec<PathBuf>,
}

pub(crate) fn days(n: u32) -> Days {
    days_with(n, &small_params())
}

pub(crate) fn days_with(n: u32, params: &HistoryParams) -> Days {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let srcs = (1..=n)
        .map(|d| {
            let p = dir.join(format!("src{d}"));
            write_day(&p, params, d).unwrap();
            p
        })
        .collect();
    Days { _tmp: tmp, dir, srcs }
}

#[test]
fn a_fault_at_every_store_operation_of_a_backup_loses_nothing() {
    // About 6 MiB a day in 1 MiB packs, so faults land between packs too: the first backup
    // (into an empty repository) and the next day's (over an existing snapshot).
    let d = days_with(2, &HistoryParams::default());
    let base0 = d.dir.join("base0");
    let store = Arc::new(LocalStore::create(base0.join("repo")).unwrap());
    Repository::init(store, &Credentials::passphrase(PASS), init_options(&base0.join("cache"))).unwrap();
    let (n0, injected0, resumed0) = fault_every_backup_operation(&d.dir, &base0, &d.srcs[0], &[]);

    let base1 = d.dir.join("base1");
    copy_dir(&base0, &base1);
    let s1 =
        backup(&mut open_at(Arc::new(LocalStore::open(base1.join("repo")).unwrap()), &base1.join("cache")), &d.srcs[0])
            .unwrap();
    let (n1, injected1, resumed1) = fault_every_backup_operation(&d.dir, &base1, &d.srcs[1], &[(s1, &d.srcs[0])]);

    assert!(resumed0 + resumed1 > 0, "a crash after all packs were written is resumed without re-upload");
    eprintln!(
        "backup faults injected: {} (first backup {n0} operations, next day {n1}, × 2 modes); {} resumed with no data re-uploaded",
        injected0 + injected1,
        resumed0 + resumed1
    );
}

/// Runs the backup of `src` over a copy of `base` once per mutating operation and mode, with
/// a fault at that operation; then checks the repository, restores `earlier` snapshots, and
/// finishes the backup. Returns (operations, faults injected, resumed without new data).
fn fault_every_backup_operation(
    scratch: &Path,
    base: &Path,
    src: &Path,
    earlier: &[(SnapshotId, &PathBuf)],
) -> (u64, u64, u64) {
    let count_dir = scratch.join("count");
    let _ = fs::remove_dir_all(&count_dir);
    copy_dir(base, &count_dir);
    let counter = FaultyStore::new(Arc::new(LocalStore::open(count_dir.join("repo")).unwrap()), None, Mode::Crash);
    backup(&mut open_at(counter.clone(), &count_dir.join("cache")), src).unwrap();
    let n = counter.ops();
    assert!(n >= 6, "a backup of several packs makes several writes: {:?}", counter.log());

    let (mut injected, mut resumed_without_new_data) = (0, 0);
    for mode in [Mode::Crash, Mode::Transient] {
        for k in 1..=n {
            let run = scratch.join(format!("run-{mode:?}-{k}"));
            copy_dir(base, &run);
            let cache = run.join("cache");
            let faulty = FaultyStore::new(Arc::new(LocalStore::open(run.join("repo")).unwrap()), Some(k), mode);
            let outcome = backup(&mut open_at(faulty.clone(), &cache), src);
            if !faulty.tripped() {
                // Blobs go to two open packs at random (format-spec.md §10), so a run may
                // close one pack fewer than the counting run did and end before operation k.
                assert!(faulty.ops() < k && k + 2 >= n, "{mode:?} k={k} of {n}: the fault was not reached");
                fs::remove_dir_all(&run).unwrap();
                continue;
            }
            injected += 1;
            let what = format!("{mode:?} fault at operation {k} of {n} ({})", faulty.log()[k as usize - 1]);

            // A new process opens the repository as it was left.
            let mut repo = open_at(Arc::new(LocalStore::open(run.join("repo")).unwrap()), &cache);
            clear_locks(&repo);
            assert_check_ok(&repo, &what);
            for (s, from) in earlier {
                assert_restores(&repo, s, from, &run);
            }
            match outcome {
                Ok(s2) => assert_restores(&repo, &s2, src, &run),
                Err(_) => {
                    // The next backup finishes the job, reusing what was uploaded.
                    let packs_before = repo.store().list(FileKind::Pack).unwrap().len();
                    let mut s = repo.backup().unwrap();
                    s.add_dir(src, "").unwrap();
                    let out = s.commit(packvault::SnapshotInfo::default()).unwrap();
                    if out.record.summary.new_data_blobs == 0 && packs_before > 1 {
                        resumed_without_new_data += 1;
                    }
                    assert_check_ok(&repo, &format!("{what}, after the next backup"));
                    assert_restores(&repo, &out.snapshot, src, &run);
                    for (s, from) in earlier {
                        assert_restores(&repo, s, from, &run);
                    }
                }
            }
            fs::remove_dir_all(&run).unwrap();
        }
    }
    assert!(injected + 4 >= 2 * n, "faults injected at {injected} of 2 × {n} operations");
    (n, injected, resumed_without_new_data)
}

#[test]
fn a_resumed_backup_does_not_upload_written_packs_again() {
    let d = days(1);
    let dir = d.dir.join("r");
    let store = Arc::new(LocalStore::create(dir.join("repo")).unwrap());
    Repository::init(store.clone(), &Credentials::passphrase(PASS), init_options(&dir.join("cache"))).unwrap();
    // Crash at the index file: every data pack is written, nothing refers to them. (A dry
    // run on a copy finds which operation that is.)
    let probe_dir = d.dir.join("probe");
    copy_dir(&dir, &probe_dir);
    let probe = FaultyStore::new(Arc::new(LocalStore::open(probe_dir.join("repo")).unwrap()), None, Mode::Crash);
    backup(&mut open_at(probe.clone(), &probe_dir.join("cache")), &d.srcs[0]).unwrap();
    let k = probe.log().iter().position(|op| op.starts_with("put index/")).unwrap() as u64 + 1;

    let faulty = FaultyStore::new(store.clone(), Some(k), Mode::Crash);
    assert!(backup(&mut open_at(faulty, &dir.join("cache")), &d.srcs[0]).is_err());
    let stray = store.list(FileKind::Pack).unwrap().len();
    assert!(stray >= 2);

    let mut repo = open_at(store.clone(), &dir.join("cache"));
    clear_locks(&repo);
    let report = repo.check(CheckOptions::default()).unwrap();
    assert_eq!(report.unreferenced_packs.len(), stray, "left packs are reported, not as problems");
    assert!(report.is_ok());
    let mut s = repo.backup().unwrap();
    s.add_dir(&d.srcs[0], "").unwrap();
    let out = s.commit(packvault::SnapshotInfo::default()).unwrap();
    assert_eq!(out.record.summary.new_data_blobs, 0, "no data chunk is sealed and uploaded again");
    assert!(store.list(FileKind::Pack).unwrap().len() <= stray + 1, "at most one new (tree) pack");
    assert!(repo.check(CheckOptions::default()).unwrap().unreferenced_packs.is_empty(), "adopted packs are indexed");
    assert_restores(&repo, &out.snapshot, &d.srcs[0], &d.dir);
}

/// A repository with three daily snapshots, the first forgotten: prune has packs to delete
/// and packs to rewrite.
fn prune_base(d: &Days) -> (PathBuf, Vec<SnapshotId>) {
    let base = d.dir.join("base");
    let store = Arc::new(LocalStore::create(base.join("repo")).unwrap());
    let mut repo = Repository::init(store, &Credentials::passphrase(PASS), init_options(&base.join("cache"))).unwrap();
    let snaps: Vec<SnapshotId> = d.srcs.iter().map(|s| backup(&mut repo, s).unwrap()).collect();
    let report = repo.forget(&ForgetPolicy { ids: vec![snaps[0]], ..Default::default() }, false).unwrap();
    assert_eq!(report.remove.len(), 1);
    (base, snaps)
}

#[test]
fn a_fault_at_every_store_operation_of_a_prune_loses_nothing() {
    let d = days(3);
    let (base, snaps) = prune_base(&d);
    let kept = [(snaps[1], &d.srcs[1]), (snaps[2], &d.srcs[2])];
    let prune = PruneOptions { max_unused_percent: 0.0, dry_run: false };

    let count_dir = d.dir.join("count");
    copy_dir(&base, &count_dir);
    let counter = FaultyStore::new(Arc::new(LocalStore::open(count_dir.join("repo")).unwrap()), None, Mode::Crash);
    let report = open_at(counter.clone(), &count_dir.join("cache")).prune(prune).unwrap();
    assert!(report.packs_deleted + report.packs_repacked > 0, "{report:?}");
    let n = counter.ops();

    let mut injected = 0;
    for mode in [Mode::Crash, Mode::Transient] {
        for k in 1..=n {
            let run = d.dir.join(format!("run-{mode:?}-{k}"));
            copy_dir(&base, &run);
            let cache = run.join("cache");
            let faulty = FaultyStore::new(Arc::new(LocalStore::open(run.join("repo")).unwrap()), Some(k), mode);
            let _ = open_at(faulty.clone(), &cache).prune(prune);
            assert!(faulty.tripped());
            injected += 1;
            let what = format!("{mode:?} fault at prune operation {k} of {n} ({})", faulty.log()[k as usize - 1]);

            let mut repo = open_at(Arc::new(LocalStore::open(run.join("repo")).unwrap()), &cache);
            clear_locks(&repo);
            assert_check_ok(&repo, &what);
            for (s, src) in kept {
                assert_restores(&repo, &s, src, &run);
            }
            // The next prune finishes the job: afterwards nothing unused is left.
            repo.prune(prune).unwrap();
            let after = repo.prune(PruneOptions { dry_run: true, ..prune }).unwrap();
            assert_eq!((after.unused_blobs, after.packs_deleted, after.packs_repacked), (0, 0, 0), "{what}: {after:?}");
            assert_check_ok(&repo, &format!("{what}, after the next prune"));
            for (s, src) in kept {
                assert_restores(&repo, &s, src, &run);
            }
            fs::remove_dir_all(&run).unwrap();
        }
    }
    eprintln!("prune faults injected: {injected} ({n} operations × 2 modes)");
}

#[test]
fn forget_policies_and_prune_free_space_and_keep_what_they_keep() {
    let d = days(3);
    let (base, snaps) = prune_base(&d);
    let store = Arc::new(LocalStore::open(base.join("repo")).unwrap());
    let mut repo = open_at(store.clone(), &base.join("cache"));
    let before: u64 = pack_bytes(&store);
    let dry = repo.prune(PruneOptions { max_unused_percent: 0.0, dry_run: true }).unwrap();
    assert_eq!(pack_bytes(&store), before, "a dry run changes nothing");
    assert!(dry.unused_blobs > 0 && dry.bytes_freed > 0, "{dry:?}");
    let done = repo.prune(PruneOptions { max_unused_percent: 0.0, dry_run: false }).unwrap();
    assert_eq!(done.bytes_freed, dry.bytes_freed, "the dry run predicted the prune");
    let after = pack_bytes(&store);
    assert!(after < before, "space is freed: {before} → {after}");
    assert!(before - after <= done.bytes_freed, "freed counts deleted packs; rewritten blobs take space again");
    assert_eq!(store.list(FileKind::Index).unwrap().len(), 1, "one index file replaces the others");
    assert_check_ok(&repo, "after prune");
    assert_restores(&repo, &snaps[1], &d.srcs[1], &d.dir);
    assert_restores(&repo, &snaps[2], &d.srcs[2], &d.dir);

    // keep-last keeps the newest; the removed one is gone from the list, data stays until prune.
    let report = repo.forget(&ForgetPolicy { keep_last: Some(1), ..Default::default() }, true).unwrap();
    assert_eq!(report.keep.iter().map(|k| k.0).collect::<Vec<_>>(), vec![snaps[2]]);
    assert_eq!(repo.snapshots().unwrap().len(), 2, "dry run");
    repo.forget(&ForgetPolicy { keep_last: Some(1), ..Default::default() }, false).unwrap();
    assert_eq!(repo.snapshots().unwrap().iter().map(|s| s.0).collect::<Vec<_>>(), vec![snaps[2]]);
    // All snapshots were taken within a second: one day, one week, one month.
    let r =
        repo.forget(&ForgetPolicy { keep_daily: Some(7), keep_weekly: Some(4), ..Default::default() }, true).unwrap();
    assert_eq!(r.keep[0].2, vec!["daily".to_string(), "weekly".to_string()]);
    let e = repo.forget(&ForgetPolicy::default(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    repo.prune(PruneOptions::default()).unwrap();
    assert_check_ok(&repo, "after the second prune");
    assert_restores(&repo, &snaps[2], &d.srcs[2], &d.dir);
}

/// A pack the provider swapped for a longer or a huge (sparse) file: prune refuses before it
/// reads more than a pack can be, and before it deletes anything.
#[test]
fn prune_refuses_packs_whose_length_changed() {
    let d = days(3);
    let (base, snaps) = prune_base(&d);
    let store = Arc::new(LocalStore::open(base.join("repo")).unwrap());
    let mut repo = open_at(store.clone(), &base.join("cache"));
    let prune = PruneOptions { max_unused_percent: 0.0, dry_run: false };
    assert!(repo.prune(PruneOptions { dry_run: true, ..prune }).unwrap().packs_repacked > 0);
    let packs: Vec<(PathBuf, u64)> = store
        .list(FileKind::Pack)
        .unwrap()
        .iter()
        .map(|p| (store.local_path(FileKind::Pack, p).unwrap(), store.size(FileKind::Pack, p).unwrap()))
        .collect();
    let index_files = || {
        let mut names = store.list(FileKind::Index).unwrap();
        names.sort();
        names
    };
    let index_before = index_files();
    let set_lengths = |f: &dyn Fn(u64) -> u64| {
        for (path, len) in &packs {
            fs::File::options().write(true).open(path).unwrap().set_len(f(*len)).unwrap();
        }
    };

    set_lengths(&|len| len + 1);
    let err = repo.prune(prune).unwrap_err();
    assert!(err.to_string().contains("the index says"), "{err}");
    set_lengths(&|len| len - 1);
    let err = repo.prune(prune).unwrap_err();
    assert!(err.to_string().contains("the index says"), "{err}");
    set_lengths(&|_| packvault::format::pack::MAX_PACK_LEN + 1);
    let err = repo.prune(prune).unwrap_err();
    assert!(err.to_string().contains("larger than the") && err.to_string().contains("the index says"), "{err}");
    assert_eq!(store.list(FileKind::Pack).unwrap().len(), packs.len(), "no pack deleted");
    assert_eq!(index_files(), index_before, "no index file replaced");

    set_lengths(&|len| len);
    let len_of = |path: &Path| fs::metadata(path).unwrap().len();
    assert!(packs.iter().all(|(path, len)| len_of(path) == *len));
    repo.prune(prune).unwrap();
    assert_check_ok(&repo, "after the packs were put back and pruned");
    assert_restores(&repo, &snaps[2], &d.srcs[2], &d.dir);
}

pub(crate) fn pack_bytes(store: &LocalStore) -> u64 {
    store.list(FileKind::Pack).unwrap().iter().map(|p| store.size(FileKind::Pack, p).unwrap()).sum()
}

#[test]
fn duplicate_packs_from_concurrent_sessions_are_deduplicated_by_prune() {
    let d = days(1);
    let dir = d.dir.join("r");
    let store: Arc<dyn Store> = Arc::new(LocalStore::create(dir.join("repo")).unwrap());
    Repository::init(store.clone(), &Credentials::passphrase(PASS), init_options(&dir.join("c0"))).unwrap();
    let mut a = open_at(store.clone(), &dir.join("ca"));
    let mut b = open_at(store.clone(), &dir.join("cb"));
    // Both sessions start before either writes: each uploads the same chunks.
    let mut sa = a.backup().unwrap();
    let mut sb = b.backup().unwrap();
    sa.add_dir(&d.srcs[0], "").unwrap();
    sb.add_dir(&d.srcs[0], "").unwrap();
    let (oa, ob) = (
        sa.commit(packvault::SnapshotInfo::default()).unwrap(),
        sb.commit(packvault::SnapshotInfo::default()).unwrap(),
    );
    assert_eq!(oa.record.root, ob.record.root, "same content, same tree");
    let mut c = open_at(store.clone(), &dir.join("cc"));
    assert_check_ok(&c, "duplicates are not damage");
    let dry = c.prune(PruneOptions { max_unused_percent: 0.0, dry_run: true }).unwrap();
    assert!(dry.unused_blobs > 0, "the second copies are unused: {dry:?}");
    c.prune(PruneOptions { max_unused_percent: 0.0, dry_run: false }).unwrap();
    let after = c.prune(PruneOptions { max_unused_percent: 0.0, dry_run: true }).unwrap();
    assert_eq!(after.unused_blobs, 0);
    assert_check_ok(&c, "after prune");
    assert_restores(&c, &oa.snapshot, &d.srcs[0], &d.dir);
    assert_restores(&c, &ob.snapshot, &d.srcs[0], &d.dir);
}

#[test]
fn concurrent_backups_and_a_racing_prune_lose_nothing() {
    let rounds = if long() { 6 } else { 2 };
    let mut runs = 0;
    for writers in [2usize, 4] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let store: Arc<dyn Store> = Arc::new(LocalStore::create(dir.join("repo")).unwrap());
        Repository::init(store.clone(), &Credentials::passphrase(PASS), init_options(&dir.join("c-init"))).unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wait = OpenOptions { lock_wait: Duration::from_secs(120), ..OpenOptions::default() };
        let open = |cache: PathBuf| {
            Repository::open(
                store.clone(),
                &Credentials::passphrase(PASS),
                &OpenOptions { state: crate::state_for(Some(&cache)), cache_dir: Some(cache), ..wait.clone() },
            )
            .unwrap()
        };
        let pruner = {
            let mut repo = open(dir.join("c-prune"));
            let done = done.clone();
            std::thread::spawn(move || {
                let mut prunes = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    repo.prune(PruneOptions { max_unused_percent: 0.0, dry_run: false }).unwrap();
                    prunes += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                prunes
            })
        };
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let mut repo = open(dir.join(format!("c-{w}")));
                let dir = dir.clone();
                std::thread::spawn(move || {
                    // Each writer backs up the same history (so chunks collide across writers)
                    // plus a file of its own, a few days running.
                    let mut made = Vec::new();
                    for round in 1..=rounds {
                        let src = dir.join(format!("src-{w}-{round}"));
                        write_day(&src, &small_params(), round).unwrap();
                        fs::write(src.join(format!("own-{w}.txt")), format!("writer {w} round {round}\n").repeat(5000))
                            .unwrap();
                        made.push((backup(&mut repo, &src).unwrap(), src));
                    }
                    made
                })
            })
            .collect();
        let made: Vec<(SnapshotId, PathBuf)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let prunes = pruner.join().unwrap();
        runs += made.len();

        let repo = open(dir.join("c-final"));
        assert!(repo.locks().unwrap().is_empty(), "every lock released");
        assert_check_ok(&repo, &format!("{writers} writers"));
        assert_eq!(repo.snapshots().unwrap().len(), made.len());
        for (s, src) in &made {
            assert_restores(&repo, s, src, &dir);
        }
        eprintln!("{writers} concurrent writers: {} backups, {prunes} prunes racing them, all restored", made.len());
    }
    assert!(runs >= 12);
}

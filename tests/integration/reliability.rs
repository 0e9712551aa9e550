//! Reliability: faults injected at every mutating store operation of a backup and of a prune,
//! resumed backups, forget and prune, repair, concurrent backups racing a prune, and damage to
//! every kind of repository file. After each, `check --read-data` passes (or names what is
//! damaged) and every snapshot that should exist restores bit-exact.
//!
//! `PACKVAULT_LONG_TESTS=1` runs more rounds of the concurrency test.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use packvault::{
    CheckOptions, Credentials, DataSubset, ErrorKind, FileKind, ForgetPolicy, InitOptions, LocalStore, OpenOptions,
    PruneOptions, Repository, RestoreOptions, SnapshotId, Store,
};

use crate::compare::assert_same_tree;
use crate::faulty::{FaultyStore, Mode};
use crate::history::{write_day, HistoryParams};
use crate::{fast_init, PASS};

fn long() -> bool {
    std::env::var_os("PACKVAULT_LONG_TESTS").is_some()
}

fn small_params() -> HistoryParams {
    HistoryParams {
        first_day_messages: 2_000,
        db_pages: 200,
        media_per_day: 6,
        media_max_bytes: 150_000,
        ..Default::default()
    }
}

/// Small packs, so a backup writes several and a prune has packs to choose between.
fn init_options(cache: &Path) -> InitOptions {
    InitOptions { pack_target_size: 1 << 20, ..fast_init(Some(cache)) }
}

fn open_at(store: Arc<dyn Store>, cache: &Path) -> Repository {
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

fn copy_dir(from: &Path, to: &Path) {
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

fn backup(repo: &mut Repository, src: &Path) -> packvault::Result<SnapshotId> {
    let mut s = repo.backup()?;
    s.add_dir(src, "")?;
    Ok(s.commit(packvault::SnapshotInfo::default())?.snapshot)
}

/// Restores `snap` into a fresh folder under `scratch` and compares it with `src`.
fn assert_restores(repo: &Repository, snap: &SnapshotId, src: &Path, scratch: &Path) {
    let target = scratch.join(format!("restore-{}", snap.short()));
    let _ = fs::remove_dir_all(&target);
    let rec = repo.load_snapshot(snap).unwrap();
    let r = repo.restore(&rec, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert!(r.is_complete(), "snapshot {}: {:?}", snap.short(), r.failed);
    assert_same_tree(src, &target);
    fs::remove_dir_all(&target).unwrap();
}

fn assert_check_ok(repo: &Repository, what: &str) {
    let report = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(report.is_ok(), "{what}: {:?}", report.problems);
}

/// The crashed "process" left its lock behind; a real crash leaves a dead PID, which other
/// clients treat as stale. Here the PID is ours and alive, so the test removes it.
fn clear_locks(repo: &Repository) {
    repo.unlock(true).unwrap();
}

struct Days {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    srcs: Vec<PathBuf>,
}

fn days(n: u32) -> Days {
    days_with(n, &small_params())
}

fn days_with(n: u32, params: &HistoryParams) -> Days {
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

fn pack_bytes(store: &LocalStore) -> u64 {
    store.list(FileKind::Pack).unwrap().iter().map(|p| store.size(FileKind::Pack, p).unwrap()).sum()
}

/// A two-snapshot repository with a passphrase slot and a recovery-code slot.
struct Pristine {
    days: Days,
    base: PathBuf,
    snaps: Vec<SnapshotId>,
    code: String,
    pass_slot: String,
    code_slot: String,
}

fn pristine() -> Pristine {
    let days = days(2);
    let base = days.dir.join("base");
    let store = Arc::new(LocalStore::create(base.join("repo")).unwrap());
    let mut repo = Repository::init(store, &Credentials::passphrase(PASS), init_options(&base.join("cache"))).unwrap();
    let pass_slot = repo.keys().list().unwrap()[0].id.to_string();
    let (code_slot, code) = repo.keys().add_recovery_code("drawer").unwrap();
    let code_slot = code_slot.to_string();
    let snaps = days.srcs.iter().map(|s| backup(&mut repo, s).unwrap()).collect();
    Pristine { days, base, snaps, code: code.to_text().to_string(), pass_slot, code_slot }
}

/// Regular files under `root`, relative, `/`-separated.
fn files_under(root: &Path, prefix: &str, out: &mut Vec<String>) {
    for e in fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        let rel = crate::join_rel(prefix, &e.file_name().to_string_lossy());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            files_under(&e.path(), &rel, out);
        } else if ft.is_file() {
            out.push(rel);
        }
    }
}

/// Restores `snap`: every file not reported failed is bit-exact; failed ones are absent.
/// Returns the number of failed files, or the error when not even the root folder reads.
fn restore_what_can_be(repo: &Repository, snap: &SnapshotId, src: &Path, target: &Path) -> packvault::Result<usize> {
    let _ = fs::remove_dir_all(target);
    let rec = repo.load_snapshot(snap).unwrap();
    let r = repo.restore(&rec, &RestoreOptions { target: target.to_path_buf(), ..Default::default() })?;
    let mut files = Vec::new();
    files_under(src, "", &mut files);
    // A failed folder (its tree lost) stands for everything below it.
    let failed = |f: &str| r.failed.iter().any(|(p, _)| p == f || f.starts_with(&format!("{p}/")));
    for f in &files {
        if failed(f) {
            assert!(!target.join(f).exists(), "{f} failed but is left under its name");
        } else {
            let restored = fs::read(target.join(f)).unwrap_or_else(|e| panic!("{f}: {e}; failed: {:?}", r.failed));
            assert!(fs::read(src.join(f)).unwrap() == restored, "{f} differs");
        }
    }
    if r.failed.is_empty() {
        assert_same_tree(src, target);
    }
    Ok(r.failed.len())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Damage {
    Flip(usize),
    FlipFromEnd(usize),
    Truncate(usize),
}

impl Damage {
    fn apply(self, path: &Path) {
        let mut b = fs::read(path).unwrap();
        match self {
            Damage::Flip(i) => {
                let at = i.min(b.len() - 1);
                b[at] ^= 0x10;
            }
            Damage::FlipFromEnd(i) => {
                let at = b.len() - 1 - i.min(b.len() - 1);
                b[at] ^= 0x10;
            }
            Damage::Truncate(n) => {
                let keep = n.min(b.len() - 1);
                b.truncate(keep);
            }
        }
        fs::write(path, b).unwrap();
    }
}

#[test]
fn damage_to_every_kind_of_repository_file_is_named_by_check_and_contained() {
    let p = pristine();
    let store = LocalStore::open(p.base.join("repo")).unwrap();
    let repo = open_at(Arc::new(LocalStore::open(p.base.join("repo")).unwrap()), &p.base.join("cache"));
    let root = store.root().to_path_buf();
    let rel = |kind: FileKind, name: &str| kind.path(name);

    // (file relative to the repository, the name check must mention, damage, whether file
    // contents may be lost)
    let mut cases: Vec<(String, String, Damage, bool)> = Vec::new();
    for d in [Damage::Flip(0), Damage::Flip(10), Damage::Flip(40), Damage::FlipFromEnd(0), Damage::Truncate(30)] {
        cases.push(("config".into(), "config".into(), d, false));
    }
    for slot in [&p.code_slot, &p.pass_slot] {
        let path = rel(FileKind::Key, slot);
        let len = fs::metadata(root.join(&path)).unwrap().len() as usize;
        for d in [
            Damage::Flip(0),
            Damage::Flip(10),
            Damage::Flip(44),
            Damage::Flip(60),
            Damage::Flip(90),
            Damage::FlipFromEnd(120),
            Damage::FlipFromEnd(80),
            Damage::FlipFromEnd(40),
            Damage::FlipFromEnd(0),
            Damage::Truncate(len - 1),
        ] {
            cases.push((path.clone(), path.clone(), d, false));
        }
    }
    for name in store.list(FileKind::Index).unwrap() {
        let path = rel(FileKind::Index, &name);
        for d in [Damage::Flip(0), Damage::Flip(30), Damage::FlipFromEnd(0), Damage::Truncate(100)] {
            cases.push((path.clone(), path.clone(), d, false));
        }
    }
    for name in store.list(FileKind::Snapshot).unwrap() {
        let path = rel(FileKind::Snapshot, &name);
        for d in [Damage::Flip(0), Damage::Flip(30), Damage::FlipFromEnd(0), Damage::Truncate(100)] {
            cases.push((path.clone(), path.clone(), d, false));
        }
    }
    for pack in repo.index().packs().map(|p| p.id).collect::<std::collections::BTreeSet<_>>() {
        let dir = repo.pack_directory(&pack).unwrap();
        let body_end = dir.entries.iter().map(|e| e.offset as usize + e.sealed_len as usize).max().unwrap();
        let first = dir.entries.iter().map(|e| e.offset as usize).min().unwrap();
        let path = rel(FileKind::Pack, &pack.to_hex());
        for (d, lossy) in [
            (Damage::Flip(first + 20), true),
            (Damage::Flip(body_end + 3), false),
            (Damage::FlipFromEnd(2), false),
            (Damage::FlipFromEnd(9), false),
            (Damage::Truncate(body_end / 2), true),
        ] {
            cases.push((path.clone(), pack.to_hex(), d, lossy));
        }
    }

    let (mut detected, mut restores) = (0, 0);
    for (i, (file, needle, damage, lossy)) in cases.iter().enumerate() {
        let run = p.days.dir.join(format!("case{i}"));
        copy_dir(&p.base.join("repo"), &run.join("repo"));
        damage.apply(&run.join("repo").join(file));
        let what = format!("{damage:?} in {file}");
        let store: Arc<dyn Store> = Arc::new(LocalStore::open(run.join("repo")).unwrap());
        // Opened with the credential whose slot is intact, and a fresh cache (so that damaged
        // index files are read, not bypassed).
        let creds = if file.ends_with(&p.pass_slot) {
            Credentials::recovery_code(&p.code).unwrap()
        } else {
            Credentials::passphrase(PASS)
        };
        let options = OpenOptions {
            cache_dir: Some(run.join("cache")),
            state: crate::state_for(Some(&run.join("cache"))),
            ..OpenOptions::default()
        };
        let repo = match Repository::open(store, &creds, &options) {
            Ok(r) => r,
            Err(e) => {
                assert_eq!(file, "config", "{what}: only a damaged config stops the opening: {e}");
                assert!(e.to_string().contains("config"), "{what}: {e}");
                detected += 1;
                fs::remove_dir_all(&run).unwrap();
                continue;
            }
        };
        assert_ne!(file, "config", "{what}: a damaged config must not open");
        let report = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
        assert!(
            report.problems.iter().any(|pr| pr.message.contains(needle.as_str())),
            "{what}: no problem names {needle}: {:?}",
            report.problems
        );
        detected += 1;
        // Every snapshot still listed restores; only pack damage may cost file contents.
        for (s, src) in p.snaps.iter().zip(&p.days.srcs) {
            if repo.snapshots().unwrap().iter().all(|(id, _)| id != s) {
                assert!(file.starts_with("snapshots/"), "{what}: snapshot {} vanished", s.short());
                continue;
            }
            match restore_what_can_be(&repo, s, src, &run.join("restore")) {
                Ok(failed) => {
                    assert!(failed == 0 || *lossy, "{what}: {failed} files lost to damage that loses no data")
                }
                // The root folder's tree was in the damaged part: nothing to deliver, and the
                // error names the pack.
                Err(e) => assert!(*lossy && e.to_string().contains(needle.as_str()), "{what}: {e}"),
            }
            restores += 1;
        }
        fs::remove_dir_all(&run).unwrap();
    }
    assert_eq!(detected, cases.len());
    eprintln!("damaged files: {} cases, {detected} detected and named, {restores} restores checked", cases.len());
}

#[test]
fn lost_packs_and_index_files_are_repaired() {
    let p = pristine();
    let root = p.base.join("repo");
    let store: Arc<dyn Store> = Arc::new(LocalStore::open(&root).unwrap());
    let repo = open_at(store.clone(), &p.base.join("cache"));

    // An index file lost: its packs are named by nothing, their chunks are "in no index".
    let index_files = store.list(FileKind::Index).unwrap();
    fs::remove_file(root.join(FileKind::Index.path(&index_files[0]))).unwrap();
    let mut repo2 = open_at(store.clone(), &p.days.dir.join("cache2"));
    let report = repo2.check(CheckOptions::default()).unwrap();
    assert!(!report.is_ok() && !report.unreferenced_packs.is_empty(), "{report:?}");
    assert!(report.problems.iter().any(|pr| pr.message.contains("in no index") && !pr.affected.is_empty()));
    let (packs, bad) = repo2.repair_index().unwrap();
    assert!(bad.is_empty() && packs as usize == store.list(FileKind::Pack).unwrap().len());
    assert_check_ok(&repo2, "after repair index");
    for (s, src) in p.snaps.iter().zip(&p.days.srcs) {
        assert_restores(&repo2, s, src, &p.days.dir);
    }
    drop(repo2);
    drop(repo);
    let mut repo = open_at(store.clone(), &p.base.join("cache"));

    // A data pack lost: check names it and the files; repair snapshots drops exactly those.
    let victim = repo.index().packs().find(|pk| pk.kind == packvault::format::blob::BlobKind::Data).unwrap().id;
    fs::remove_file(root.join(FileKind::Pack.path(&victim.to_hex()))).unwrap();
    let report = repo.check(CheckOptions::default()).unwrap();
    let problem = report.problems.iter().find(|pr| pr.pack == Some(victim)).unwrap();
    assert!(problem.message.contains("missing"));
    let e = repo.prune(PruneOptions::default()).unwrap_err();
    assert!(e.to_string().contains("repair the index"), "prune refuses to run over lost data: {e}");
    let (_, bad) = repo.repair_index().unwrap();
    assert!(bad.is_empty());
    let report = repo.check(CheckOptions::default()).unwrap();
    assert!(report.problems.iter().all(|pr| pr.message.contains("in no index")), "{:?}", report.problems);
    let repaired = repo.repair_snapshots().unwrap();
    assert!(!repaired.dropped.is_empty());
    for (_, path) in &repaired.dropped {
        assert!(problem.affected.iter().any(|a| a.ends_with(path.as_str())), "{path} was not reported by check");
    }
    assert_check_ok(&repo, "after repair snapshots");
    for (id, rec) in repo.snapshots().unwrap() {
        let repaired_from = repaired.repaired.iter().find(|(_, new)| *new == id).map(|(old, _)| *old);
        let original = repaired_from.unwrap_or(id);
        assert_eq!(repaired_from.is_some(), rec.flags & packvault::format::snapshot::FLAG_REPAIRED != 0);
        let src = &p.days.srcs[p.snaps.iter().position(|s| *s == original).unwrap()];
        let target = p.days.dir.join("r");
        let _ = fs::remove_dir_all(&target);
        let r = repo.restore(&rec, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
        assert!(r.is_complete(), "a repaired snapshot restores fully: {:?}", r.failed);
        let mut files = Vec::new();
        files_under(src, "", &mut files);
        for f in files {
            if repaired.dropped.iter().any(|(s, path)| *s == original && *path == f) {
                assert!(!target.join(&f).exists());
            } else {
                assert!(fs::read(src.join(&f)).unwrap() == fs::read(target.join(&f)).unwrap(), "{f}");
            }
        }
    }
    repo.prune(PruneOptions::default()).unwrap();
    assert_check_ok(&repo, "after prune");
}

#[test]
fn a_backup_over_a_damaged_index_file_names_every_pack_it_uses() {
    let p = pristine();
    let root = p.base.join("repo");
    let store: Arc<dyn Store> = Arc::new(LocalStore::open(&root).unwrap());
    // Damage the first backup's index file; a client without a cache (a new device) opens,
    // finds the damaged file's packs through their directories, and backs up.
    let mut index_files = store.list(FileKind::Index).unwrap();
    index_files.sort();
    let damaged = index_files[0].clone();
    Damage::Flip(40).apply(&root.join(FileKind::Index.path(&damaged)));
    let mut repo = open_at(store.clone(), &p.days.dir.join("device-cache"));
    let snap = backup(&mut repo, &p.days.srcs[1]).unwrap();
    drop(repo);
    // The same device again, with its cache: still whole.
    let again = open_at(store.clone(), &p.days.dir.join("device-cache"));
    assert_restores(&again, &snap, &p.days.srcs[1], &p.days.dir);
    drop(again);
    // The damaged file disappears altogether: the new snapshot must still be whole for a new
    // device (no cache), through the index files alone.
    fs::remove_file(root.join(FileKind::Index.path(&damaged))).unwrap();
    let fresh = open_at(store.clone(), &p.days.dir.join("fresh-cache"));
    assert!(fresh.check(CheckOptions::default()).unwrap().unreferenced_packs.is_empty());
    assert_restores(&fresh, &snap, &p.days.srcs[1], &p.days.dir);
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
fn read_data_subsets_split_the_packs() {
    let p = pristine();
    let repo = open_at(Arc::new(LocalStore::open(p.base.join("repo")).unwrap()), &p.base.join("cache"));
    let all = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert_eq!(all.packs_read, all.packs);
    let mut total = 0;
    for n in 1..=3 {
        let subset = Some(DataSubset::parse(&format!("{n}/3")).unwrap());
        let r = repo.check(CheckOptions { read_data: true, read_data_subset: subset, ..Default::default() }).unwrap();
        assert!(r.is_ok());
        total += r.packs_read;
    }
    assert_eq!(total, all.packs, "parts 1/3..3/3 read every pack exactly once");
    let half = Some(DataSubset::parse("50%").unwrap());
    let r = repo.check(CheckOptions { read_data: true, read_data_subset: half, ..Default::default() }).unwrap();
    assert_eq!(r.packs_read, all.packs.div_ceil(2));
    for bad in ["0/3", "4/3", "3", "0%", "101%", "x%", "1/0"] {
        assert!(DataSubset::parse(bad).is_err(), "{bad}");
    }
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

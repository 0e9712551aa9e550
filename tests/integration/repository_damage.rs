//! Damage to every kind of repository file, lost packs and index files, a damaged index
//! under a backup: `check` names what is damaged, the damage stays contained (every file not
//! reported restores bit-exact), and `repair` brings back what can be. Helpers shared with
//! `reliability.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use packvault::{
    CheckOptions, Credentials, DataSubset, FileKind, LocalStore, OpenOptions, PruneOptions, Repository, RestoreOptions,
    SnapshotId, Store,
};

use crate::compare::assert_same_tree;
use crate::reliability::*;
use crate::PASS;

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

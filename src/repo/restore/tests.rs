//! Unit tests of the restore internals: the paths an ordinary restore rarely takes (no spare
//! descriptors, no `RENAME_NOREPLACE`) and the checks on handles reopened by name.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, CWD};

use super::target::{self, Dirs, FileId, Made};
use super::{Budget, RestoreOptions};
use crate::{Credentials, ErrorKind, InitOptions, MemoryStore, Repository};

/// The class of a failure, to compare results.
fn kind(r: crate::Result<()>) -> Result<(), ErrorKind> {
    r.map_err(|e| e.kind())
}

fn open_dir(dir: &Path) -> OwnedFd {
    rustix::fs::openat(CWD, dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap()
}

fn random(len: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![0; len];
    blake3::Hasher::new().update(&[seed]).finalize_xof().fill(&mut v);
    v
}

/// Panics unless `b` holds what `a` holds: names, bytes, permission bits, modification times.
fn assert_same(a: &Path, b: &Path) {
    let mut names: Vec<_> = fs::read_dir(a).unwrap().map(|e| e.unwrap().file_name()).collect();
    let mut names_b: Vec<_> = fs::read_dir(b).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    names_b.sort();
    assert_eq!(names, names_b, "{}", b.display());
    for n in names {
        let (pa, pb) = (a.join(&n), b.join(&n));
        let (ma, mb) = (fs::symlink_metadata(&pa).unwrap(), fs::symlink_metadata(&pb).unwrap());
        assert_eq!((ma.mode(), ma.mtime(), ma.mtime_nsec()), (mb.mode(), mb.mtime(), mb.mtime_nsec()), "{pb:?}");
        if ma.is_dir() {
            assert_same(&pa, &pb);
        } else {
            assert!(fs::read(&pa).unwrap() == fs::read(&pb).unwrap(), "content of {pb:?}");
        }
    }
}

#[test]
fn restore_without_spare_descriptors_gives_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    // Files bigger than one pack read (8 MiB) are written over several reads.
    let files: [(&str, usize, u32); 5] = [
        ("a/b/c/big.bin", 12 << 20, 0o640),
        ("a/b/two.bin", 9 << 20, 0o600),
        ("a/small.txt", 100, 0o644),
        ("a/b/c/empty", 0, 0o400),
        ("top", 10, 0o600),
    ];
    for (i, (f, len, mode)) in files.into_iter().enumerate() {
        fs::write(src.join(f), random(len, i as u8)).unwrap();
        fs::set_permissions(src.join(f), fs::Permissions::from_mode(mode)).unwrap();
    }
    for (d, mode) in [("a/b/c", 0o750), ("a/b", 0o500), ("a", 0o755)] {
        fs::set_permissions(src.join(d), fs::Permissions::from_mode(mode)).unwrap();
    }
    let options =
        InitOptions { kdf: crate::format::keyslot::Argon2Params { m_kib: 8192, t: 1, p: 1 }, ..Default::default() };
    let mut repo =
        Repository::init(Arc::new(MemoryStore::new()), &Credentials::passphrase("restore unit test"), options).unwrap();
    let mut s = repo.backup().unwrap();
    s.add_dir(&src, "").unwrap();
    let record = s.commit(crate::SnapshotInfo::default()).unwrap().record;
    // No folder held (each reopened from the target), no file handle kept between two writes
    // (each reopened and checked), one of each, and plenty; small files anonymous or named.
    let budgets = [(0, 0), (1, 1), (1000, 1000)].into_iter().flat_map(|b| [(b, true), (b, false)]);
    for (i, (budget, anon)) in budgets.enumerate() {
        let target = tmp.path().join(format!("restored-{i}"));
        let options = RestoreOptions { target: target.clone(), ..Default::default() };
        let budget = Budget { dirs: budget.0, files: budget.1, anon };
        let report = repo.restore_within(&record, &options, budget).unwrap();
        assert!(report.is_complete(), "{budget:?}: {:?}", report.failed);
        assert_eq!((report.files, report.dirs), (5, 3), "{budget:?}");
        assert_same(&src, &target);
        assert_no_temporary_names(&target);
    }
}

/// Panics if a temporary name is left anywhere under `dir`.
fn assert_no_temporary_names(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        assert!(!e.file_name().to_string_lossy().starts_with(".pv-restore-"), "{:?} left", e.path());
        if e.file_type().unwrap().is_dir() {
            assert_no_temporary_names(&e.path());
        }
    }
}

#[test]
fn anonymous_file_gets_its_name_only_complete_and_never_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, dir) = (tmp.path(), open_dir(tmp.path()));
    let Some(file) = target::create_anon(&dir, Mode::from_raw_mode(0o640)).unwrap() else {
        eprintln!("skipped: this file system has no O_TMPFILE");
        return;
    };
    std::io::Write::write_all(&mut &file, b"data").unwrap();
    assert_eq!(fs::read_dir(p).unwrap().count(), 0, "no name before the link");
    fs::write(p.join("taken"), b"old").unwrap();
    for proc_only in [false, true] {
        let flag = AtomicBool::new(proc_only);
        assert_eq!(kind(target::link_anon(&file, dir.as_fd(), "taken".as_ref(), &flag)), Err(ErrorKind::AlreadyExists));
        assert_eq!(fs::read(p.join("taken")).unwrap(), b"old");
    }
    assert_eq!(kind(target::link_anon(&file, dir.as_fd(), "new".as_ref(), &AtomicBool::new(true))), Ok(()));
    assert_eq!(fs::read(p.join("new")).unwrap(), b"data");
    assert_eq!(fs::metadata(p.join("new")).unwrap().mode() & 0o777, 0o640 & !target::current_umask().unwrap());
    // Dropped unlinked, an anonymous file leaves nothing behind.
    let gone = target::create_anon(&dir, Mode::from_raw_mode(0o600)).unwrap().unwrap();
    drop(gone);
    let mut names: Vec<_> = fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["new", "taken"]);
}

#[test]
fn link_fallback_never_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, dir) = (tmp.path(), open_dir(tmp.path()));
    fs::write(p.join("t1"), b"new").unwrap();
    fs::write(p.join("x"), b"old").unwrap();
    assert_eq!(kind(target::link_into_place(dir.as_fd(), "t1", "x".as_ref())), Err(ErrorKind::AlreadyExists));
    assert_eq!(fs::read(p.join("x")).unwrap(), b"old");
    assert!(p.join("t1").exists(), "the temporary file stays for the caller to remove");
    assert_eq!(kind(target::link_into_place(dir.as_fd(), "t1", "y".as_ref())), Ok(()));
    assert_eq!(fs::read(p.join("y")).unwrap(), b"new");
    assert!(!p.join("t1").exists());

    // `place` the same, whether the file system has RENAME_NOREPLACE or not.
    for no_noreplace in [true, false] {
        let flag = AtomicBool::new(no_noreplace);
        fs::write(p.join("t2"), b"newer").unwrap();
        assert_eq!(kind(target::place(dir.as_fd(), "t2", "y".as_ref(), false, &flag)), Err(ErrorKind::AlreadyExists));
        assert_eq!(fs::read(p.join("y")).unwrap(), b"new");
        assert_eq!(kind(target::place(dir.as_fd(), "t2", "z".as_ref(), false, &flag)), Ok(()));
        assert_eq!(fs::read(p.join("z")).unwrap(), b"newer");
        fs::remove_file(p.join("z")).unwrap();
    }
    // With `overwrite`, a plain rename.
    fs::write(p.join("t3"), b"newest").unwrap();
    assert_eq!(kind(target::place(dir.as_fd(), "t3", "y".as_ref(), true, &AtomicBool::new(false))), Ok(()));
    assert_eq!(fs::read(p.join("y")).unwrap(), b"newest");
}

#[test]
fn reopened_temporary_file_must_be_the_one_created() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, dir) = (tmp.path(), open_dir(tmp.path()));
    let file = target::create_temp(&dir, "t").unwrap();
    assert_eq!(fs::metadata(p.join("t")).unwrap().mode() & 0o777, 0o600);
    let id = FileId::of(&file).unwrap();
    drop(file);
    assert!(target::reopen_temp(&dir, "t", id).is_ok());

    fs::rename(p.join("t"), p.join("t.mine")).unwrap();
    fs::write(p.join("t"), b"someone else's").unwrap();
    assert!(target::reopen_temp(&dir, "t", id).is_err(), "another file under the name");
    assert!(target::create_temp(&dir, "t").is_err(), "creating never opens an existing file");

    fs::remove_file(p.join("t")).unwrap();
    symlink(p.join("t.mine"), p.join("t")).unwrap();
    assert!(target::reopen_temp(&dir, "t", id).is_err(), "a symlink, even to the right file");
    assert!(target::create_temp(&dir, "t").is_err(), "creating never follows a symlink");

    fs::remove_file(p.join("t")).unwrap();
    rustix::fs::mkfifoat(&dir, "t", Mode::from_raw_mode(0o600)).unwrap();
    assert!(target::reopen_temp(&dir, "t", id).is_err(), "a FIFO fails at once");
}

#[test]
fn folder_reopened_by_name_must_be_the_one_made() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let mut dirs = Dirs::new(open_dir(p), 0);
    assert!(matches!(dirs.make("a".as_ref(), Ok(None)), Made::Ready));
    assert!(matches!(dirs.make("b".as_ref(), Ok(Some(0))), Made::Ready));
    assert!(dirs.is_fresh(Some(1)));
    assert_eq!(fs::metadata(p.join("a/b")).unwrap().mode() & 0o777, 0o700);
    assert!(dirs.get(Some(1)).is_ok());

    fs::rename(p.join("a"), p.join("a.moved")).unwrap();
    fs::create_dir_all(p.join("a/b")).unwrap();
    assert!(dirs.get(Some(1)).is_err(), "another folder under the name");
    fs::remove_dir_all(p.join("a")).unwrap();
    symlink(p.join("a.moved"), p.join("a")).unwrap();
    assert!(dirs.get(Some(1)).is_err(), "a symlink, even to the right folder");

    // A symlink under a planned folder's name fails it, and what is below it.
    symlink(p.join("a.moved"), p.join("c")).unwrap();
    assert!(matches!(dirs.make("c".as_ref(), Ok(None)), Made::Failed(_)));
    assert!(matches!(dirs.make("d".as_ref(), Ok(Some(2))), Made::UnderFailed));
    // An existing folder is used, but is not this restore's own.
    fs::create_dir(p.join("e")).unwrap();
    assert!(matches!(dirs.make("e".as_ref(), Ok(None)), Made::Ready));
    assert!(!dirs.is_fresh(Some(4)));
}

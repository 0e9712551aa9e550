//! Restores against other local users and a hostile target folder (issue 10): nothing readable
//! by others mid-restore, no symlink inside the target followed for writing (planted before or
//! during the restore), no file replaced that appeared during the restore, no setuid bits by
//! default, and a warning for a world-writable target.
//!
//! "During the restore" is a [`HookStore`]: it runs a closure before each read of file data,
//! which is after the folders are made and before (or between) the files' writes. The tests act as the
//! other user from there, with the test's own permissions.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use packvault::{FileKind, Repository, RestoreOptions, RestoreReport, Result, Store, Upload};

use crate::history::Rng;
use crate::{new_local_repo, reopen};

/// A store that calls `hook(n)` before the restore's n-th read of file data (from 1: the
/// ranged pack reads into a reused buffer; trees are read with plain ranged reads while the
/// restore plans); everything else passes through.
/// Hooks run one at a time, and a read starts only after its hook returned: nothing the
/// restore does after read n can come before hook n - 1 is done.
struct HookStore {
    inner: Arc<dyn Store>,
    reads: Mutex<usize>,
    hook: Box<dyn Fn(usize) + Send + Sync>,
}

impl HookStore {
    fn before_read(&self, kind: FileKind) {
        if kind == FileKind::Pack {
            let mut n = self.reads.lock().unwrap();
            *n += 1;
            (self.hook)(*n);
        }
    }
}

impl Store for HookStore {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.inner.put(kind, name, data)
    }
    fn put_parts(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.inner.put_parts(kind, name, parts)
    }
    fn put_deferred(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.inner.put_deferred(kind, name, parts)
    }
    fn begin(&self, kind: FileKind) -> Result<Box<dyn Upload>> {
        self.inner.begin(kind)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.inner.get_range(kind, name, offset, len)
    }
    fn get_range_into(&self, kind: FileKind, name: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        self.before_read(kind);
        self.inner.get_range_into(kind, name, offset, len, buf)
    }
    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }
    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        self.inner.delete(kind, name)
    }
    fn describe(&self) -> String {
        format!("hooked {}", self.inner.describe())
    }
}

/// Sets `path`'s permission bits exactly (no umask).
fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// The source tree: a big database that spans several pack reads, small files, a subfolder,
/// with distinct modes; returns each relative path's mode.
fn write_source(src: &Path) -> HashMap<PathBuf, u32> {
    let files: [(&str, usize, u32); 6] = [
        ("big.bin", 20 << 20, 0o640),
        ("top.txt", 300, 0o644),
        ("chats/a.db", 12 << 20, 0o600),
        ("chats/b.txt", 1000, 0o640),
        ("chats/media/img.bin", 3 << 20, 0o644),
        ("chats/empty", 0, 0o604),
    ];
    let dirs = [("chats", 0o750), ("chats/media", 0o755)];
    let mut modes = HashMap::new();
    for (d, _) in dirs {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    for (i, (f, len, mode)) in files.into_iter().enumerate() {
        fs::write(src.join(f), random(len, i as u64 + 1)).unwrap();
        chmod(&src.join(f), mode);
        modes.insert(PathBuf::from(f), mode);
    }
    for (d, mode) in dirs {
        chmod(&src.join(d), mode);
        modes.insert(PathBuf::from(d), mode);
    }
    modes
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
    store: Arc<dyn Store>,
    record: packvault::format::snapshot::SnapshotRecord,
    modes: HashMap<PathBuf, u32>,
}

impl Setup {
    /// A repository holding one snapshot of [`write_source`].
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let (store, mut repo) = new_local_repo(&root);
        let src = root.join("src");
        let modes = write_source(&src);
        let mut s = repo.backup().unwrap();
        s.add_dir(&src, "").unwrap();
        let record = s.commit(packvault::SnapshotInfo::default()).unwrap().record;
        Setup { cache: root.join("cache"), root, store, record, modes, _tmp: tmp }
    }

    /// The repository, opened over a store that runs `hook` before each pack read.
    fn hooked(&self, hook: impl Fn(usize) + Send + Sync + 'static) -> Repository {
        let store = Arc::new(HookStore { inner: self.store.clone(), reads: Mutex::new(0), hook: Box::new(hook) });
        reopen(store, Some(&self.cache))
    }

    fn restore(&self, repo: &Repository, target: &Path) -> RestoreReport {
        repo.restore(&self.record, &RestoreOptions { target: target.to_path_buf(), ..Default::default() }).unwrap()
    }

    fn source(&self, rel: impl AsRef<Path>) -> Vec<u8> {
        fs::read(self.root.join("src").join(rel)).unwrap()
    }
}

/// Every entry below `dir` (relative path, metadata), symlinks not followed; entries that
/// vanish while listing (renamed by the restore) are skipped.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(md) = fs::symlink_metadata(e.path()) else { continue };
        let r = rel.join(e.file_name());
        if md.is_dir() {
            walk(&e.path(), &r, out);
        }
        out.push((r, md));
    }
}

#[test]
fn nothing_is_readable_by_others_while_restoring() {
    let s = Setup::new();
    let target = s.root.join("restored");
    let modes = s.modes.clone();
    // Each file's bytes, to tell a complete temporary file (mode set, rename next) from one
    // being written.
    let complete: Vec<(u32, Vec<u8>)> =
        s.modes.iter().filter(|(r, _)| s.root.join("src").join(r).is_file()).map(|(r, m)| (*m, s.source(r))).collect();
    let (t, checked) = (target.clone(), Arc::new(Mutex::new((Vec::<String>::new(), 0usize))));
    let seen = checked.clone();
    let repo = s.hooked(move |_| {
        let mut entries = Vec::new();
        walk(&t, Path::new(""), &mut entries);
        let mut seen = seen.lock().unwrap();
        for (rel, md) in entries {
            seen.1 += 1;
            let mode = md.mode() & 0o7777;
            let name = rel.file_name().unwrap().to_string_lossy();
            let ok = if md.is_dir() {
                // Folders stay the owner's alone until everything in them is restored.
                mode & 0o077 == 0
            } else if name.starts_with(".pv-restore-") {
                // Being written: the owner's alone; or complete with its final mode, just
                // before its rename.
                mode & 0o077 == 0
                    || match fs::read(t.join(&rel)) {
                        Ok(data) => complete.iter().any(|(m, c)| *m == mode && *c == data),
                        // Renamed into place meanwhile, which only a complete file is.
                        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
                    }
            } else {
                // Under its final name: complete, with its final mode.
                modes.get(&rel) == Some(&mode)
            };
            if !ok {
                seen.0.push(format!("{} has mode {mode:o} mid-restore", rel.display()));
            }
        }
    });
    let report = s.restore(&repo, &target);
    assert!(report.is_complete(), "{:?}", report.failed);
    let (violations, looked_at) = &*checked.lock().unwrap();
    assert!(*looked_at > 0, "the hook saw the restore's folders");
    assert!(violations.is_empty(), "{violations:#?}");
    for (rel, mode) in &s.modes {
        let md = fs::symlink_metadata(target.join(rel)).unwrap();
        assert_eq!(md.mode() & 0o7777, *mode, "final mode of {}", rel.display());
    }
    assert!(fs::read(target.join("chats/a.db")).unwrap() == s.source("chats/a.db"), "content of chats/a.db");
}

#[test]
fn symlink_planted_as_a_folder_is_reported_and_not_followed() {
    let s = Setup::new();
    let (target, outside) = (s.root.join("restored"), s.root.join("outside"));
    fs::create_dir_all(&target).unwrap();
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("chats")).unwrap();
    let repo = reopen(s.store.clone(), Some(&s.cache));
    let report = s.restore(&repo, &target);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "nothing written through the symlink");
    let failed: Vec<&str> = report.failed.iter().map(|(p, _)| p.as_str()).collect();
    assert!(failed.contains(&"chats"), "{:?}", report.failed);
    assert!(failed.iter().all(|p| p.starts_with("chats")), "{:?}", report.failed);
    assert!(fs::read(target.join("big.bin")).unwrap() == s.source("big.bin"), "the rest is restored");
    assert!(fs::read(target.join("top.txt")).unwrap() == s.source("top.txt"), "the rest is restored");
}

#[test]
fn folder_swapped_for_a_symlink_mid_restore_is_not_followed() {
    let s = Setup::new();
    let (target, outside) = (s.root.join("restored"), s.root.join("outside"));
    fs::create_dir_all(&outside).unwrap();
    let (t, o) = (target.clone(), outside.clone());
    let repo = s.hooked(move |n| {
        if n != 1 {
            return;
        }
        // The other user moves the folder away, plants their own (empty) files under the names
        // the restore's temporary files have in it, and links the folder's name to theirs.
        fs::rename(t.join("chats"), t.join("chats.moved")).unwrap();
        for e in fs::read_dir(t.join("chats.moved")).unwrap().flatten() {
            fs::write(o.join(e.file_name()), b"").unwrap();
        }
        std::os::unix::fs::symlink(&o, t.join("chats")).unwrap();
    });
    let report = s.restore(&repo, &target);
    let mut outside_entries = Vec::new();
    walk(&outside, Path::new(""), &mut outside_entries);
    for (rel, md) in &outside_entries {
        assert_eq!(md.len(), 0, "{} was written through the symlink", rel.display());
        assert!(!rel.to_string_lossy().contains("a.db"), "{} was placed through the symlink", rel.display());
    }
    // What was in flight went where the folder really is, inside the target.
    assert!(report.is_complete(), "{:?}", report.failed);
    assert!(fs::read(target.join("chats.moved/a.db")).unwrap() == s.source("chats/a.db"), "content of a.db");
}

#[test]
fn temporary_file_swapped_for_a_symlink_is_not_followed() {
    let s = Setup::new();
    let (target, outside) = (s.root.join("restored"), s.root.join("outside"));
    fs::create_dir_all(&target).unwrap();
    fs::create_dir_all(&outside).unwrap();
    let (t, o) = (target.clone(), outside.clone());
    let victims = Arc::new(AtomicUsize::new(0));
    let planted = victims.clone();
    let repo = s.hooked(move |_| {
        // The other user (who can write to the target) replaces each temporary file in it with a
        // symlink to a file of the victim's.
        for e in fs::read_dir(&t).unwrap().flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with(".pv-restore-") && e.file_type().unwrap().is_file() {
                let victim = o.join(format!("victim-{}", planted.fetch_add(1, Ordering::SeqCst)));
                fs::write(&victim, b"victim's own file").unwrap();
                chmod(&victim, 0o600);
                // The restore may have renamed it into place meanwhile.
                if fs::remove_file(e.path()).is_ok() {
                    std::os::unix::fs::symlink(&victim, e.path()).unwrap();
                }
            }
        }
    });
    let report = s.restore(&repo, &target);
    for e in fs::read_dir(&outside).unwrap().flatten() {
        assert!(fs::read(e.path()).unwrap() == b"victim's own file", "{:?} was written through", e.path());
        assert_eq!(e.metadata().unwrap().mode() & 0o7777, 0o600, "{:?} was chmod'ed through", e.path());
    }
    // Files that were not tampered with are restored; none is written outside.
    assert!(fs::read(target.join("chats/a.db")).unwrap() == s.source("chats/a.db"), "{:?}", report.failed);
}

#[test]
fn file_created_during_the_restore_is_not_replaced() {
    let s = Setup::new();
    let target = s.root.join("restored");
    let t = target.clone();
    let repo = s.hooked(move |n| {
        if n == 1 {
            // Between the restore's check and its rename.
            fs::write(t.join("top.txt"), b"planted").unwrap();
            fs::write(t.join("chats/b.txt"), b"planted").unwrap();
        }
    });
    let report = s.restore(&repo, &target);
    assert!(fs::read(target.join("top.txt")).unwrap() == b"planted", "top.txt was replaced");
    assert!(fs::read(target.join("chats/b.txt")).unwrap() == b"planted", "chats/b.txt was replaced");
    let failed: HashMap<&str, packvault::ErrorKind> =
        report.failed.iter().map(|(p, w)| (p.as_str(), w.kind())).collect();
    assert_eq!(failed.len(), 2, "{:?}", report.failed);
    for p in ["top.txt", "chats/b.txt"] {
        assert_eq!(failed.get(p), Some(&packvault::ErrorKind::AlreadyExists), "{p}: {:?}", report.failed);
    }
    assert!(fs::read(target.join("big.bin")).unwrap() == s.source("big.bin"), "content of big.bin");
    let names: Vec<_> = fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|n| !n.to_string_lossy().starts_with(".pv-restore")), "{names:?}");
}

#[test]
fn special_bits_are_dropped_unless_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, mut repo) = new_local_repo(tmp.path());
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("shared")).unwrap();
    fs::write(src.join("tool"), b"#!/bin/sh\n").unwrap();
    fs::write(src.join("shared/g"), b"g").unwrap();
    chmod(&src.join("tool"), 0o4755);
    chmod(&src.join("shared/g"), 0o2750);
    chmod(&src.join("shared"), 0o3775);
    let mut s = repo.backup().unwrap();
    s.add_dir(&src, "").unwrap();
    let record = s.commit(packvault::SnapshotInfo::default()).unwrap().record;
    let mode = |p: PathBuf| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    for (keep, expect) in [(false, [0o755, 0o750, 0o775]), (true, [0o4755, 0o2750, 0o3775])] {
        let target = tmp.path().join(format!("keep-{keep}"));
        let options = RestoreOptions { target: target.clone(), keep_special_bits: keep, ..Default::default() };
        let report = repo.restore(&record, &options).unwrap();
        assert!(report.is_complete(), "{:?}", report.failed);
        let got = [mode(target.join("tool")), mode(target.join("shared/g")), mode(target.join("shared"))];
        assert_eq!(got, expect, "keep_special_bits: {keep}");
    }
}

#[test]
fn world_writable_target_gives_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, mut repo) = new_local_repo(tmp.path());
    let mut s = repo.backup().unwrap();
    let meta = packvault::FileMeta { mode: 0o600, mtime_secs: 0, mtime_nanos: 0 };
    s.add_stream("a.txt", &b"hello"[..], meta).unwrap();
    let record = s.commit(packvault::SnapshotInfo::default()).unwrap().record;
    let restore = |target: &Path| {
        let report =
            repo.restore(&record, &RestoreOptions { target: target.to_path_buf(), ..Default::default() }).unwrap();
        assert!(report.is_complete(), "{:?}", report.failed);
        report.warnings.iter().map(|w| (w.path().to_path_buf(), w.to_string())).collect::<Vec<_>>()
    };
    let base = fs::canonicalize(tmp.path()).unwrap();

    let open = base.join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let w = restore(&open);
    assert_eq!(w.iter().map(|(p, _)| p).collect::<Vec<_>>(), [&open], "{w:?}");
    assert!(w[0].1.contains("writable by every user"), "{w:?}");

    // A folder above the target counts too; the folders the restore creates are its own.
    let w = restore(&open.join("deeper/target"));
    assert_eq!(w.iter().map(|(p, _)| p).collect::<Vec<_>>(), [&open], "{w:?}");
    assert_eq!(fs::symlink_metadata(open.join("deeper")).unwrap().mode() & 0o777, 0o700);

    // The sticky bit (as on /tmp) stops others from replacing what is there: no warning.
    let sticky = base.join("sticky");
    fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    assert_eq!(restore(&sticky), []);
    assert_eq!(restore(&base.join("private")), []);
}

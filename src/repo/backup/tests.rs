//! The nightly no-op: an unchanged file is not opened, an unchanged folder's tree is neither
//! encoded nor hashed, and nothing that changed — content behind a restored mtime, permissions,
//! a symlink's target, an entry added by the app — is missed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::format::snapshot::NodeContent;
use crate::repo::{ClientState, InitOptions};
use crate::store::MemoryStore;
use crate::{Credentials, Repository, SnapshotInfo};

/// Files opened, trees encoded, trees reused, and the outcome of one backup of `src` at "".
fn back_up(repo: &mut Repository, src: &Path) -> ((u64, u64, u64), crate::BackupOutcome) {
    back_up_with(repo, src, |_| {})
}

fn back_up_with(
    repo: &mut Repository,
    src: &Path,
    more: impl FnOnce(&mut super::BackupSession<'_>),
) -> ((u64, u64, u64), crate::BackupOutcome) {
    let mut s = repo.backup().unwrap();
    let probe = s.probe.clone();
    s.add_dir(src, "").unwrap();
    more(&mut s);
    let out = s.commit(SnapshotInfo::default()).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    ((n(&probe.opened), n(&probe.trees_encoded), n(&probe.trees_reused)), out)
}

/// Lets the files' ctimes age past the files cache's racy window.
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

const PAST: u64 = 1_700_000_000;

fn write_past(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(PAST);
    fs::File::options().write(true).open(path).unwrap().set_modified(when).unwrap();
}

fn node(repo: &Repository, out: &crate::BackupOutcome, path: &str) -> crate::format::snapshot::Node {
    repo.list(&out.record, path, false).unwrap().remove(0).1
}

/// root: top, a/ (x, y, b/ (f, g, link → f)), c/ (x, z): four folders, seven files.
fn sample(src: &Path) {
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::create_dir_all(src.join("c")).unwrap();
    for (i, f) in ["top", "a/x", "a/y", "a/b/f", "a/b/g", "c/x", "c/z"].into_iter().enumerate() {
        write_past(&src.join(f), format!("file {i} {f}").as_bytes());
    }
    std::os::unix::fs::symlink("f", src.join("a/b/link")).unwrap();
}

fn new_repo(tmp: &Path) -> Repository {
    let options = InitOptions {
        kdf: crate::format::keyslot::Argon2Params { m_kib: 8192, t: 1, p: 1 },
        cache_dir: Some(tmp.join("cache")),
        state: ClientState::Dir(tmp.join("state")),
        ..Default::default()
    };
    Repository::init(Arc::new(MemoryStore::new()), &Credentials::passphrase("no-op unit test"), options).unwrap()
}

#[test]
fn an_unchanged_tree_is_neither_opened_nor_encoded_and_changes_are_not_missed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample(&src);
    let mut repo = new_repo(tmp.path());
    settle();
    let (counts, first) = back_up(&mut repo, &src);
    assert_eq!(counts, (7, 4, 0), "the first backup opens every file and encodes every folder");

    // Unchanged: no file opened, only the root (never cached) encoded, the same root.
    let (counts, second) = back_up(&mut repo, &src);
    assert_eq!(counts, (0, 1, 3), "opened, encoded, reused");
    assert_eq!((second.files_unchanged, second.files_new + second.files_changed), (7, 0));
    assert_eq!(second.record.root, first.record.root);

    // The reused trees are the bytes a full encode gives: with no caches, the same root.
    let caches = tmp.path().join("cache").join(repo.id().to_string());
    for name in ["files.cache", "folders.cache"] {
        fs::remove_file(caches.join(name)).unwrap();
    }
    let (counts, full) = back_up(&mut repo, &src);
    assert_eq!(counts, (7, 4, 0));
    assert_eq!(full.record.root, second.record.root);

    // Same size, mtime put back, new content: only the ctime tells. c/x is read again; c and
    // the root are encoded again, a and a/b reused.
    let old_x = node(&repo, &full, "c/x");
    write_past(&src.join("c/x"), b"FILE 5 c/x");
    settle();
    let (counts, changed) = back_up(&mut repo, &src);
    assert_eq!(counts, (1, 2, 2), "opened, encoded, reused");
    let new_x = node(&repo, &changed, "c/x");
    assert_eq!((new_x.mtime_secs, new_x.mode), (old_x.mtime_secs, old_x.mode));
    assert_ne!(new_x.content, old_x.content, "the new content is recorded");
    assert_eq!(node(&repo, &changed, "a").content, node(&repo, &full, "a").content);

    // Permissions alone: a/b/g is opened (its ctime changed), a/b, a and the root get new trees.
    fs::set_permissions(src.join("a/b/g"), fs::Permissions::from_mode(0o600)).unwrap();
    settle();
    let (counts, chmod) = back_up(&mut repo, &src);
    assert_eq!(counts, (1, 3, 1), "opened, encoded, reused (c)");
    assert_eq!(node(&repo, &chmod, "a/b/g").mode, 0o600);
    assert_ne!(node(&repo, &chmod, "a/b").content, node(&repo, &changed, "a/b").content);

    // A symlink pointing elsewhere, nothing else changed: new trees up to the root.
    fs::remove_file(src.join("a/b/link")).unwrap();
    std::os::unix::fs::symlink("g", src.join("a/b/link")).unwrap();
    settle();
    let (counts, relinked) = back_up(&mut repo, &src);
    assert_eq!(counts, (0, 3, 1), "opened, encoded, reused (c)");
    assert_eq!(node(&repo, &relinked, "a/b/link").content, NodeContent::Symlink { target: b"g".to_vec() });

    // An entry the app adds to a folder the walk found unchanged: that folder is encoded.
    let (counts, added) = back_up_with(&mut repo, &src, |s| {
        let meta = super::FileMeta { mode: 0o644, mtime_secs: 0, mtime_nanos: 0 };
        s.add_stream("a/b/extra", &b"from the app"[..], meta).unwrap();
    });
    assert_eq!(counts, (0, 3, 1), "opened, encoded (a/b, a, root), reused (c)");
    assert!(matches!(node(&repo, &added, "a/b/extra").content, NodeContent::File { size: 12, .. }));

    // The folders that held the app's entry were not recorded: the next backup encodes them
    // (the same trees as before the entry), the one after is back to the root alone.
    let (counts, again) = back_up(&mut repo, &src);
    assert_eq!(counts, (0, 3, 1));
    assert_eq!(again.record.root, relinked.record.root);
    let (counts, again) = back_up(&mut repo, &src);
    assert_eq!(counts, (0, 1, 3));
    assert_eq!(again.record.root, relinked.record.root);
}

#[test]
fn a_folder_added_over_another_is_not_reused_as_the_walks_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    for (d, f) in [(&one, "a"), (&two, "b")] {
        fs::create_dir_all(d).unwrap();
        write_past(&d.join(f), f.as_bytes());
    }
    let mut repo = new_repo(tmp.path());
    settle();
    let run = |repo: &mut Repository, both: bool| {
        let mut s = repo.backup().unwrap();
        let probe = s.probe.clone();
        s.add_dir(&one, "x").unwrap();
        if both {
            s.add_dir(&two, "x").unwrap();
        }
        let out = s.commit(SnapshotInfo::default()).unwrap();
        (probe.trees_reused.load(Ordering::Relaxed), repo.list(&out.record, "x", true).unwrap().len())
    };
    assert_eq!(run(&mut repo, false), (0, 2), "x and x/a");
    assert_eq!(run(&mut repo, false), (1, 2), "x reused");
    assert_eq!(run(&mut repo, true), (0, 3), "x holds both folders' files: not reused");
}

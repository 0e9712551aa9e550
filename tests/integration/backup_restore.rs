//! Backup → restore round trips, dedup across days, partial restores, odd names.

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use packvault::format::snapshot::NodeContent;
use packvault::{Credentials, ErrorKind, FileMeta, MemoryStore, OpenOptions, Repository, RestoreOptions, Store};

use crate::compare::assert_same_tree;
use crate::history::{write_day, HistoryParams};
use crate::{dir_size, fast_init, new_local_repo, reopen, PASS};

#[test]
fn message_history_round_trips_bit_exact_over_three_days() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, mut repo) = new_local_repo(tmp.path());
    let p = HistoryParams::default();
    let mut snaps = Vec::new();
    for day in 1..=3 {
        let src = tmp.path().join(format!("day{day}"));
        write_day(&src, &p, day).unwrap();
        let mut s = repo.backup().unwrap();
        s.add_dir(&src, "").unwrap();
        let out = s.commit(packvault::SnapshotInfo::tagged([format!("day{day}")])).unwrap();
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        assert_eq!(out.record.summary.total_bytes, dir_size(&src));
        assert_eq!(out.record.sequence, u64::from(day));
        snaps.push(out);
    }
    assert_eq!(snaps[1].record.previous, Some(snaps[0].snapshot));

    // Restore every day from a freshly opened repository, with and without a cache.
    for cache in [Some(tmp.path().join("cache")), None] {
        let repo = reopen(store.clone(), cache.as_deref());
        assert_eq!(repo.snapshots().unwrap().len(), 3);
        for (day, snap) in snaps.iter().enumerate() {
            let target = tmp.path().join(format!("restore-{day}-{}", cache.is_some()));
            // Flushed to disk before the renames on one pass, not on the other.
            let options = RestoreOptions { target: target.clone(), sync: cache.is_some(), ..Default::default() };
            let report = repo.restore(&snap.record, &options).unwrap();
            assert!(report.is_complete(), "{:?}", report.failed);
            assert_same_tree(&tmp.path().join(format!("day{}", day + 1)), &target);
        }
    }
    // A partial restore keeps the ancestors' own modes and times.
    let part = tmp.path().join("partial");
    let rec = &snaps[2].record;
    let r = repo
        .restore(
            rec,
            &RestoreOptions {
                target: part.clone(),
                include: vec!["export/messages/inbox".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert!(r.is_complete(), "{:?}", r.failed);
    assert_same_tree(&tmp.path().join("day3/export/messages/inbox"), &part.join("export/messages/inbox"));
    for ancestor in ["export", "export/messages"] {
        let (a, b) =
            (fs::metadata(tmp.path().join("day3").join(ancestor)).unwrap(), fs::metadata(part.join(ancestor)).unwrap());
        use std::os::unix::fs::MetadataExt;
        assert_eq!((a.mode(), a.mtime(), a.mtime_nsec()), (b.mode(), b.mtime(), b.mtime_nsec()), "{ancestor}");
    }

    let report = repo.check(packvault::CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.unreferenced_packs.is_empty());
}

#[test]
fn unchanged_second_backup_adds_under_one_percent_and_changes_upload_only_new_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, mut repo) = new_local_repo(tmp.path());
    let p = HistoryParams::default();
    let day1 = tmp.path().join("day1");
    write_day(&day1, &p, 1).unwrap();
    let input = dir_size(&day1);
    let repo_size = || dir_size(store.root());

    let mut s = repo.backup().unwrap();
    s.add_dir(&day1, "").unwrap();
    s.commit(packvault::SnapshotInfo::default()).unwrap();
    let after_first = repo_size();

    let mut s = repo.backup().unwrap();
    s.add_dir(&day1, "").unwrap();
    let second = s.commit(packvault::SnapshotInfo::default()).unwrap();
    let growth = repo_size() - after_first;
    assert!(growth * 100 < input, "unchanged backup grew the repository by {growth} bytes for {input} bytes of input");
    assert_eq!(second.record.summary.new_data_blobs, 0);
    assert_eq!(second.record.summary.new_tree_blobs, 0, "unchanged trees dedup");

    // Day 2 rewrites a few pages of the database in place, appends pages, prepends messages
    // to every JSON export and adds media: only the chunks that changed go up.
    let day2 = tmp.path().join("day2");
    write_day(&day2, &p, 2).unwrap();
    let before = repo_size();
    let mut s = repo.backup().unwrap();
    s.add_dir(&day2, "").unwrap();
    let third = s.commit(packvault::SnapshotInfo::default()).unwrap();
    let sum = &third.record.summary;
    assert!(
        sum.new_raw_bytes < dir_size(&day2) / 2,
        "day 2 re-stored {} of {} bytes",
        sum.new_raw_bytes,
        dir_size(&day2)
    );
    // Packs add their Padmé padding (at most 1/8) to the sealed blobs; index and snapshot
    // files are a few KiB.
    let grown = repo_size() - before;
    assert!(
        grown < sum.new_stored_bytes * 9 / 8 + 64 * 1024,
        "grew {grown} for {} bytes of new blobs",
        sum.new_stored_bytes
    );

    let chunks_of = |rec: &packvault::format::snapshot::SnapshotRecord| match repo
        .list(rec, "databases/msgstore.db", false)
        .unwrap()
        .pop()
        .unwrap()
        .1
        .content
    {
        NodeContent::File { chunks, .. } => chunks,
        _ => panic!("not a file"),
    };
    let old: HashSet<_> = chunks_of(&second.record).into_iter().collect();
    let new = chunks_of(&third.record);
    let fresh = new.iter().filter(|c| !old.contains(c)).count();
    // 12 pages rewritten in place and 15 appended touch at most 12 + 2 chunks.
    assert!(new.len() > 20, "the database is cut into {} chunks", new.len());
    assert!(fresh <= 14, "{fresh} of {} database chunks are new", new.len());
}

#[test]
fn wrong_passphrase_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = new_local_repo(tmp.path());
    let err = Repository::open(store.clone(), &Credentials::passphrase("not it"), &OpenOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongPassphrase);
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    let empty = Arc::new(MemoryStore::new());
    let err = Repository::open(empty, &Credentials::passphrase(PASS), &OpenOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotARepository, "{err}");
    let err = Repository::init(store, &Credentials::passphrase(PASS), fast_init(None)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
}

#[test]
fn memory_store_streams_subtree_restore_and_odd_names() {
    let store = Arc::new(MemoryStore::new());
    let mut repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), fast_init(None)).unwrap();
    let meta = FileMeta { mode: 0o640, mtime_secs: 1_600_000_000, mtime_nanos: 123 };
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 16) as u8).collect();
    let mut s = repo.backup().unwrap();
    s.add_stream("a/big.bin", &big[..], meta).unwrap();
    s.add_stream("a/b/small.txt", &b"hello"[..], meta).unwrap();
    s.add_stream("empty", &b""[..], meta).unwrap();
    assert!(s.add_stream("a/big.bin/x", &b""[..], meta).is_err(), "a file cannot be a folder");
    assert!(s.add_stream("../escape", &b""[..], meta).is_err(), "`..` is refused");
    let out = s.commit(packvault::SnapshotInfo::default()).unwrap();
    assert_eq!(out.record.summary.files, 3);

    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("t");
    let restore_only = |target: &std::path::Path, include: &str| {
        let include = vec![include.to_string()];
        repo.restore(&out.record, &RestoreOptions { target: target.to_path_buf(), include, ..Default::default() })
    };
    let r = restore_only(&target, "a/b").unwrap();
    assert!(r.is_complete());
    assert_eq!(fs::read(target.join("a/b/small.txt")).unwrap(), b"hello");
    assert!(!target.join("a/big.bin").exists(), "only the included subtree");
    let r = repo.restore(&out.record, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert_eq!(r.failed.len(), 1, "the existing file is not overwritten: {:?}", r.failed);
    assert_eq!(fs::read(target.join("a/big.bin")).unwrap(), big);
    assert_eq!(fs::read(target.join("empty")).unwrap(), b"");
    let r = repo
        .restore(&out.record, &RestoreOptions { target: target.clone(), overwrite: true, ..Default::default() })
        .unwrap();
    assert!(r.is_complete(), "{:?}", r.failed);
    let err = restore_only(&target, "a/nope").unwrap_err();
    assert_eq!((err.kind(), err.to_string().contains("a/nope in the snapshot")), (ErrorKind::NotFound, true), "{err}");

    // One file deep in the tree: its folders come along, nothing else.
    let one = tmp.path().join("one");
    let r = restore_only(&one, "./a//b/small.txt").unwrap();
    assert_eq!((r.files, r.dirs), (1, 2), "{r:?}");
    assert_eq!(fs::read(one.join("a/b/small.txt")).unwrap(), b"hello");
    assert!(!one.join("a/big.bin").exists() && !one.join("empty").exists());

    // Listing follows the same paths, and names what is wrong with a bad one.
    let names = |path: &str| -> Vec<String> {
        repo.list(&out.record, path, true).unwrap().into_iter().map(|(p, _)| p).collect()
    };
    assert_eq!(names("a/b"), ["a/b", "a/b/small.txt"]);
    assert_eq!(names("a/big.bin"), ["a/big.bin"]);
    assert_eq!(names("").len(), 5, "{:?}", names(""));
    let err = repo.list(&out.record, "a/missing/x", false).unwrap_err();
    assert!(err.to_string().contains("a/missing in the snapshot"), "{err}");
    let err = repo.list(&out.record, "a/big.bin/x", false).unwrap_err();
    assert!(err.to_string().contains("a/big.bin is not a folder"), "{err}");

    // Non-UTF-8 and unusual names survive a folder backup.
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9 \n\t name");
    fs::write(src.join(odd), b"latin-1").unwrap();
    fs::write(src.join("-dash"), b"").unwrap();
    let mut s = repo.backup().unwrap();
    s.add_dir(&src, "").unwrap();
    let out = s.commit(packvault::SnapshotInfo::default()).unwrap();
    let back = tmp.path().join("back");
    assert!(repo
        .restore(&out.record, &RestoreOptions { target: back.clone(), ..Default::default() })
        .unwrap()
        .is_complete());
    crate::compare::assert_same_tree(&src, &back);
    assert!(store.list(packvault::FileKind::Snapshot).unwrap().len() == 2);
}

#[test]
fn files_cache_skips_unchanged_files_and_rereads_changed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, mut repo) = new_local_repo(tmp.path());
    let src = tmp.path().join("src");
    write_day(&src, &HistoryParams::default(), 1).unwrap();
    let first = back_up_settled(&mut repo, &src);
    assert_eq!(first.files_unchanged, 0);

    let mut b = repo.backup().unwrap();
    b.add_dir(&src, "").unwrap();
    let second = b.commit(packvault::SnapshotInfo::default()).unwrap();
    assert_eq!(second.files_unchanged, first.record.summary.files, "every file comes from the cache");
    assert_eq!(second.record.summary.bytes_read, 0, "nothing is read");
    assert_eq!(second.record.root, first.record.root, "the same tree");

    // Change one file (same size, new content and time): only it is read again.
    let f = src.join("export/messages/inbox/thread_0/message_1.json");
    let mut data = fs::read(&f).unwrap();
    data[10] ^= 1;
    fs::write(&f, &data).unwrap();
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_060);
    fs::File::options().write(true).open(&f).unwrap().set_modified(when).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    drop(repo);
    let mut repo = crate::reopen(store, Some(&tmp.path().join("cache")));
    let mut b = repo.backup().unwrap();
    b.add_dir(&src, "").unwrap();
    let third = b.commit(packvault::SnapshotInfo::default()).unwrap();
    assert_eq!(third.files_unchanged, first.record.summary.files - 1);
    assert_eq!(third.record.summary.bytes_read, data.len() as u64);
    let target = tmp.path().join("restore");
    assert!(repo
        .restore(&third.record, &RestoreOptions { target: target.clone(), ..Default::default() })
        .unwrap()
        .is_complete());
    assert_same_tree(&src, &target);
}

/// A files-cache entry whose chunks do not make up the file (damage, tampering) is not
/// trusted: the file is read again, and the snapshot restores bit-exact. (Changed bytes now
/// fail the cache's MAC, so the whole cache is refused: `caches.rs` tests that further.)
#[test]
fn a_files_cache_entry_that_does_not_add_up_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, mut repo) = new_local_repo(tmp.path());
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(src.join("big.bin"), &big).unwrap();
    fs::write(src.join("small.txt"), b"hello").unwrap();
    let first = back_up_settled(&mut repo, &src);
    let chunks_of = |name: &str| match repo.list(&first.record, name, false).unwrap().remove(0).1.content {
        NodeContent::File { chunks, .. } => chunks,
        other => panic!("{other:?}"),
    };
    let (big_chunk, small_chunk) = (chunks_of("big.bin")[0], chunks_of("small.txt")[0]);

    // The cache now says small.txt is made of big.bin's first chunk.
    let cache_file =
        fs::read_dir(tmp.path().join("cache")).unwrap().next().unwrap().unwrap().path().join("files.cache");
    let mut cache = fs::read(&cache_file).unwrap();
    let at = cache.windows(32).position(|w| w == small_chunk.0 .0).expect("small.txt's chunk is in the cache");
    cache[at..at + 32].copy_from_slice(&big_chunk.0 .0);
    fs::write(&cache_file, &cache).unwrap();
    drop(repo);

    let mut repo = crate::reopen(store, Some(&tmp.path().join("cache")));
    let mut b = repo.backup().unwrap();
    b.add_dir(&src, "").unwrap();
    let second = b.commit(packvault::SnapshotInfo::default()).unwrap();
    assert_eq!(second.files_unchanged, 0, "the changed cache is refused as a whole");
    assert_eq!(second.record.summary.bytes_read, big.len() as u64 + 5, "both files are read again");
    assert_eq!(second.record.root, first.record.root, "the same tree as before the damage");
    let target = tmp.path().join("restore");
    let r = repo.restore(&second.record, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert!(r.is_complete(), "{:?}", r.failed);
    assert_same_tree(&src, &target);
}

/// Backs up `src` after setting its files' times in the past and waiting until their ctime
/// is not "racy" (around the backup's start) any more, so the files cache may be used.
fn back_up_settled(repo: &mut Repository, src: &std::path::Path) -> packvault::BackupOutcome {
    set_mtimes(src, std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut b = repo.backup().unwrap();
    b.add_dir(src, "").unwrap();
    b.commit(packvault::SnapshotInfo::default()).unwrap()
}

fn set_mtimes(dir: &std::path::Path, t: std::time::SystemTime) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            set_mtimes(&e.path(), t);
        } else if ft.is_file() {
            fs::File::options().write(true).open(e.path()).unwrap().set_modified(t).unwrap();
        }
    }
}

#[test]
fn folders_nested_past_the_limit_are_skipped_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let (_store, mut repo) = new_local_repo(tmp.path());
    let src = tmp.path().join("src");
    let limit = packvault::format::snapshot::MAX_TREE_DEPTH;
    // One-letter folders keep the deepest path (about 2 × 1030 bytes) under PATH_MAX.
    let deepest_kept = src.join(vec!["d"; limit].join("/"));
    fs::create_dir_all(deepest_kept.join(["d"; 6].join("/"))).unwrap();
    fs::write(deepest_kept.join("kept.txt"), b"at the limit").unwrap();
    fs::write(deepest_kept.join("d/lost.txt"), b"below it").unwrap();
    let mut s = repo.backup().unwrap();
    s.add_dir(&src, "").unwrap();
    let out = s.commit(packvault::SnapshotInfo::default()).unwrap();
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert_eq!(out.warnings[0].0, deepest_kept.join("d"));
    assert!(out.warnings[0].1.to_string().contains("folder nesting is 1025"), "{}", out.warnings[0].1);
    assert_eq!(out.record.summary.dirs as usize, limit + 1, "the root and the folders down to the limit");

    let target = tmp.path().join("t");
    let r = repo.restore(&out.record, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert!(r.is_complete(), "{:?}", r.failed);
    let kept = target.join(vec!["d"; limit].join("/"));
    assert_eq!(fs::read(kept.join("kept.txt")).unwrap(), b"at the limit");
    assert!(!kept.join("d").exists());

    // Streams and folders added at a path are held to the same limit.
    let mut s = repo.backup().unwrap();
    let meta = FileMeta { mode: 0o644, mtime_secs: 1, mtime_nanos: 0 };
    let deepest_file = vec!["d"; limit + 1].join("/");
    s.add_stream(&deepest_file, &b"ok"[..], meta).unwrap();
    let err = s.add_stream(&format!("d/{deepest_file}"), &b"no"[..], meta).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = s.add_dir(&src, &vec!["d"; limit + 1].join("/")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

/// A file from before 1970 (−1.5 s) keeps its time through backup and restore: stored as
/// (−2 s, 500 000 000 ns) as format-spec.md §5.8 says, restored to the same instant.
#[test]
fn times_before_1970_round_trip() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let old = std::time::UNIX_EPOCH - std::time::Duration::from_millis(1500);
    fs::write(src.join("old.txt"), b"from the sixties").unwrap();
    fs::File::options().write(true).open(src.join("old.txt")).unwrap().set_modified(old).unwrap();
    let (_store, mut repo) = new_local_repo(tmp.path());
    let mut b = repo.backup().unwrap();
    b.add_dir(&src, "").unwrap();
    let out = b.commit(packvault::SnapshotInfo::default()).unwrap();
    let node = repo.list(&out.record, "old.txt", false).unwrap().remove(0).1;
    assert_eq!((node.mtime_secs, node.mtime_nanos), (-2, 500_000_000));
    let target = tmp.path().join("out");
    let report = repo.restore(&out.record, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert!(report.is_complete());
    let md = fs::metadata(target.join("old.txt")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (-2, 500_000_000));
}

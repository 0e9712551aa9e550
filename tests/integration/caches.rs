//! The local caches (issue 10): a backup acts on them — a files-cache entry makes it skip a
//! file, an index entry makes it take a chunk as stored — so someone who can write the cache
//! folder but holds no repository key must not be able to steer it, and nobody else may read
//! them (they hold absolute paths and every chunk's plaintext length).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use packvault::format::snapshot::NodeContent;
use packvault::{ChunkId, ErrorKind, Repository, RestoreOptions};

use crate::compare::assert_same_tree;
use crate::{new_local_repo, reopen};

/// The folder of the repository's caches under `cache`.
fn repo_cache_dir(cache: &Path, repo: &Repository) -> PathBuf {
    cache.join(repo.id().to_string())
}

fn chunks_of(repo: &Repository, record: &packvault::format::snapshot::SnapshotRecord, name: &str) -> Vec<ChunkId> {
    match repo.list(record, name, false).unwrap().remove(0).1.content {
        NodeContent::File { chunks, .. } => chunks,
        other => panic!("{other:?}"),
    }
}

/// Backs up `src` once its files' times are in the past and their ctime is not "racy" any
/// more (more than a second before the backup starts), so the files cache may be used.
fn back_up_settled(repo: &mut Repository, src: &Path) -> packvault::BackupOutcome {
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for e in fs::read_dir(src).unwrap() {
        fs::File::options().write(true).open(e.unwrap().path()).unwrap().set_modified(when).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    back_up(repo, src)
}

fn back_up(repo: &mut Repository, src: &Path) -> packvault::BackupOutcome {
    let mut b = repo.backup().unwrap();
    b.add_dir(src, "").unwrap();
    let out = b.commit(packvault::SnapshotInfo::default()).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    out
}

fn restores_bit_exact(repo: &Repository, out: &packvault::BackupOutcome, src: &Path, target: &Path) {
    let r = repo.restore(&out.record, &RestoreOptions { target: target.to_path_buf(), ..Default::default() }).unwrap();
    assert!(r.is_complete(), "{:?}", r.failed);
    assert_same_tree(src, target);
}

/// A files-cache entry rewritten to name another stored chunk of the same length: every check
/// on the chunks passes (they are stored and add up to the size), so only the MAC can tell.
/// The next backup must read the file and record what it holds.
#[test]
fn a_forged_files_cache_entry_does_not_make_a_backup_skip_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, mut repo) = new_local_repo(tmp.path());
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"hello").unwrap();
    fs::write(src.join("b.txt"), b"world").unwrap();
    let first = back_up_settled(&mut repo, &src);
    let (a, b) = (chunks_of(&repo, &first.record, "a.txt")[0], chunks_of(&repo, &first.record, "b.txt")[0]);
    let cache_file = repo_cache_dir(&tmp.path().join("cache"), &repo).join("files.cache");
    let mut bytes = fs::read(&cache_file).unwrap();
    let at = bytes.windows(32).position(|w| w == a.0 .0).expect("a.txt's chunk is in the files cache");
    bytes[at..at + 32].copy_from_slice(&b.0 .0);
    fs::write(&cache_file, &bytes).unwrap();
    drop(repo);

    let mut repo = reopen(store, Some(&tmp.path().join("cache")));
    let second = back_up(&mut repo, &src);
    assert_eq!((second.files_unchanged, second.record.summary.bytes_read), (0, 10), "both files are read");
    assert_eq!(second.record.root, first.record.root, "a.txt still says hello");
    restores_bit_exact(&repo, &second, &src, &tmp.path().join("restore"));
    let w: Vec<_> = second.cache_warnings.iter().map(|w| (w.path.clone(), w.error.kind())).collect();
    assert_eq!(w, [(cache_file, ErrorKind::Integrity)], "the forgery is reported");
}

/// Both caches forged the way the previous version checked them — the files cache had no
/// checksum, the index cache an unkeyed BLAKE3 of its body — so that a file's entry names a
/// chunk that is not stored and the index claims it is. The backup must read the file.
#[test]
fn forged_caches_naming_chunks_that_are_not_stored_do_not_make_a_backup_skip_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, mut repo) = new_local_repo(tmp.path());
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = src.join("big.bin");
    fs::write(&file, &data).unwrap();
    let first = back_up_settled(&mut repo, &src);
    let dir = repo_cache_dir(&tmp.path().join("cache"), &repo);
    let fake = [0xab; 32];

    // files.cache, version 1: big.bin, unchanged, is the one chunk `fake`.
    let md = fs::metadata(&file).unwrap();
    let path = file.as_os_str().as_bytes();
    let mut fc = b"PVFCAC".to_vec();
    fc.extend_from_slice(&1u16.to_le_bytes());
    fc.extend_from_slice(&1u64.to_le_bytes());
    fc.extend_from_slice(&(path.len() as u32).to_le_bytes());
    fc.extend_from_slice(path);
    fc.extend_from_slice(&md.len().to_le_bytes());
    fc.extend_from_slice(&md.mtime().to_le_bytes());
    fc.extend_from_slice(&(md.mtime_nsec() as u32).to_le_bytes());
    fc.extend_from_slice(&md.ctime().to_le_bytes());
    fc.extend_from_slice(&(md.ctime_nsec() as u32).to_le_bytes());
    fc.extend_from_slice(&md.ino().to_le_bytes());
    fc.extend_from_slice(&md.dev().to_le_bytes());
    fc.extend_from_slice(&1u32.to_le_bytes());
    fc.extend_from_slice(&fake);
    fs::write(dir.join("files.cache"), &fc).unwrap();

    // index.cache, version 1: covers no index file (so every real one is merged in at open)
    // and lists `fake`, of big.bin's length, in a pack that does not exist.
    let mut ic = b"PVICAC".to_vec();
    ic.extend_from_slice(&1u16.to_le_bytes());
    ic.extend_from_slice(repo.id().as_bytes());
    for n in [0u64, 1, 1] {
        ic.extend_from_slice(&n.to_le_bytes());
    }
    ic.resize(128, 0);
    ic.extend_from_slice(&[0xcd; 32]); // pack id
    ic.extend_from_slice(&[0, 0, 0, 0]); // kind data, zero
    ic.extend_from_slice(&(1u32 << 20).to_le_bytes());
    ic.extend_from_slice(&fake);
    for w in [0u32, 0, 1000, data.len() as u32] {
        ic.extend_from_slice(&w.to_le_bytes()); // pack number, offset, sealed length, raw length
    }
    let checksum = blake3::hash(&ic[128..]);
    ic[48..80].copy_from_slice(checksum.as_bytes());
    fs::write(dir.join("index.cache"), &ic).unwrap();
    let _ = fs::remove_file(dir.join("index.delta"));
    drop(repo);

    let mut repo = reopen(store, Some(&tmp.path().join("cache")));
    assert!(!repo.index().contains(&packvault::Id(fake)), "the forged index entry is not used");
    let second = back_up(&mut repo, &src);
    assert_eq!(second.files_unchanged, 0, "big.bin is not taken from the cache");
    assert_eq!(second.record.summary.bytes_read, data.len() as u64, "big.bin is read");
    assert_eq!(second.record.root, first.record.root);
    restores_bit_exact(&repo, &second, &src, &tmp.path().join("restore"));
    assert!(
        second.cache_warnings.iter().any(|w| w.error.kind() == ErrorKind::UnsupportedVersion),
        "{:?}",
        second.cache_warnings
    );
}

/// An index table whose entry was changed and whose checksum was recomputed as version 1
/// defined it is refused, reported, and rebuilt from the repository's index files.
#[test]
fn a_tampered_index_cache_is_rejected_and_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (store, mut repo) = new_local_repo(tmp.path());
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("note.txt"), b"a message of some length").unwrap();
    let first = back_up(&mut repo, &src);
    let chunk = chunks_of(&repo, &first.record, "note.txt")[0];
    let real = repo.index().lookup(&chunk.0).unwrap().expect("stored").raw_len;
    drop(repo);

    // The chunk's entry is in one of the two tables (a first backup's go to the delta).
    let dir = repo_cache_dir(&cache, &reopen(store.clone(), Some(&cache)));
    let mut tampered = None;
    for name in ["index.cache", "index.delta"] {
        let Ok(mut bytes) = fs::read(dir.join(name)) else { continue };
        let Some(at) = bytes[128..].windows(32).position(|w| w == chunk.0 .0).map(|p| p + 128) else { continue };
        bytes[at + 44..at + 48].copy_from_slice(&(real + 1).to_le_bytes());
        let checksum = blake3::hash(&bytes[128..]);
        bytes[48..80].copy_from_slice(checksum.as_bytes());
        fs::write(dir.join(name), &bytes).unwrap();
        tampered = Some(dir.join(name));
    }
    let tampered = tampered.expect("the chunk is in a cache table");

    let repo = reopen(store.clone(), Some(&cache));
    assert_eq!(repo.index().lookup(&chunk.0).unwrap().unwrap().raw_len, real, "the tampered entry is not used");
    let w: Vec<_> = repo.index().cache_warnings().iter().map(|w| (w.path.clone(), w.error.kind())).collect();
    assert_eq!(w, [(tampered, ErrorKind::Integrity)]);
    drop(repo);
    let repo = reopen(store, Some(&cache));
    assert!(repo.index().cache_warnings().is_empty(), "rebuilt: {:?}", repo.index().cache_warnings());
    assert!(repo.index().is_mapped());
    assert_eq!(repo.index().lookup(&chunk.0).unwrap().unwrap().raw_len, real);
}

/// After a backup, the cache folders are 0700 and every cache file 0600 — also when the
/// folders existed with wider modes (as older versions made them).
#[test]
fn cache_files_are_private_after_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (_store, mut repo) = new_local_repo(tmp.path());
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("note.txt"), b"a message").unwrap();
    let dir = repo_cache_dir(&cache, &repo);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let check = |what: &str| {
        assert_eq!(mode(&cache), 0o700, "{what}: the cache folder");
        assert_eq!(mode(&dir), 0o700, "{what}: the repository's cache folder");
        let files: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(files.iter().any(|f| f.ends_with("files.cache")) && files.iter().any(|f| f.ends_with("index.cache")));
        for f in files {
            assert_eq!(mode(&f), 0o600, "{what}: {}", f.display());
        }
    };
    back_up(&mut repo, &src);
    check("new folders");
    for d in [&cache, &dir] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(src.join("other.txt"), b"another message").unwrap();
    back_up(&mut repo, &src);
    check("folders an older version made");
}

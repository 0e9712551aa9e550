//! Damaged repositories: check finds the damage and names what it affects; restore delivers
//! every unaffected file and names the others.

use std::fs;
use std::path::{Path, PathBuf};

use packvault::format::snapshot::NodeContent;
use packvault::{CheckOptions, LocalStore, Repository, RestoreOptions, SnapshotId};

use crate::history::{write_day, HistoryParams};
use crate::{fast_init, new_local_repo_with};

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: std::sync::Arc<LocalStore>,
    repo: Repository,
    snap: SnapshotId,
    src: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // Small packs, so the media spreads over several.
    let options = packvault::InitOptions { pack_target_size: 1 << 20, ..fast_init(Some(&dir.join("cache"))) };
    let (store, mut repo) = new_local_repo_with(&dir, options);
    let src = dir.join("src");
    write_day(&src, &HistoryParams::default(), 1).unwrap();
    let mut s = repo.backup().unwrap();
    s.add_dir(&src, "").unwrap();
    let snap = s.commit(packvault::SnapshotInfo::default()).unwrap().snapshot;
    Fixture { _tmp: tmp, dir, store, repo, snap, src }
}

/// The pack file and offset of the first chunk of `path` in the snapshot.
fn chunk_site(f: &Fixture, path: &str) -> (PathBuf, u64, packvault::PackId) {
    let rec = f.repo.load_snapshot(&f.snap).unwrap();
    let (_, node) = f.repo.list(&rec, path, false).unwrap().pop().unwrap();
    let NodeContent::File { chunks, .. } = node.content else { panic!("{path} is not a file") };
    let loc = f.repo.index().lookup(&chunks[0].0).unwrap().unwrap();
    let hex = loc.pack.to_hex();
    (f.store.root().join("packs").join(&hex[..2]).join(&hex), u64::from(loc.offset), loc.pack)
}

fn media_files(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for t in fs::read_dir(src.join("media")).unwrap() {
        let t = t.unwrap();
        for f in fs::read_dir(t.path()).unwrap() {
            let f = f.unwrap();
            out.push(format!("media/{}/{}", t.file_name().to_string_lossy(), f.file_name().to_string_lossy()));
        }
    }
    out.sort();
    out
}

#[test]
fn flipped_byte_in_a_blob_is_found_named_and_contained() {
    let f = fixture();
    let victim = media_files(&f.src).into_iter().find(|p| !p.contains("FWD-")).unwrap();
    let (pack_path, offset, pack_id) = chunk_site(&f, &victim);
    let mut bytes = fs::read(&pack_path).unwrap();
    bytes[offset as usize + 10] ^= 0x20;
    fs::write(&pack_path, &bytes).unwrap();

    // Structure alone cannot see it; reading the data does, and names the file.
    assert!(f.repo.check(CheckOptions { read_data: false, ..Default::default() }).unwrap().is_ok());
    let report = f.repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(!report.is_ok());
    let blob_problem = report.problems.iter().find(|p| p.offset == Some(offset)).expect("the blob is pinned down");
    assert_eq!(blob_problem.pack, Some(pack_id));
    assert!(blob_problem.message.contains(&pack_id.to_hex()), "{}", blob_problem.message);
    assert!(blob_problem.affected.iter().any(|a| a.ends_with(&victim)), "{:?}", blob_problem.affected);
    assert!(report.problems.iter().any(|p| p.message.contains("does not hash to its name")));

    // Restore: everything but the damaged file (and any file sharing the damaged chunk).
    let target = f.dir.join("restore");
    let rec = f.repo.load_snapshot(&f.snap).unwrap();
    let r = f.repo.restore(&rec, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert!(!r.is_complete());
    let why = r.failed.iter().find(|(p, _)| *p == victim).map(|f| &f.1);
    assert!(why.is_some_and(|e| e.is_integrity() && e.to_string().contains("authentication failed")), "{:?}", r.failed);
    assert!(!target.join(&victim).exists(), "a damaged file is not left under its name");
    let leftovers: Vec<_> = walk(&target).into_iter().filter(|p| p.contains(".pv-restore-")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    for m in media_files(&f.src) {
        if r.failed.iter().any(|(p, _)| *p == m) {
            continue;
        }
        assert_eq!(fs::read(target.join(&m)).unwrap(), fs::read(f.src.join(&m)).unwrap(), "{m}");
    }
    assert_eq!(
        fs::read(target.join("databases/msgstore.db")).unwrap(),
        fs::read(f.src.join("databases/msgstore.db")).unwrap()
    );
}

#[test]
fn missing_and_truncated_packs_are_reported() {
    let f = fixture();
    let files = media_files(&f.src);
    let (missing_path, _, missing_id) = chunk_site(&f, &files[0]);
    let other = files.iter().find(|p| chunk_site(&f, p).2 != missing_id).expect("media spread over two packs");
    let (trunc_path, _, trunc_id) = chunk_site(&f, other);
    fs::remove_file(&missing_path).unwrap();
    let bytes = fs::read(&trunc_path).unwrap();
    fs::write(&trunc_path, &bytes[..bytes.len() / 2]).unwrap();

    let report = f.repo.check(CheckOptions { read_data: false, ..Default::default() }).unwrap();
    let missing = report.problems.iter().find(|p| p.pack == Some(missing_id)).unwrap();
    assert!(missing.message.contains("missing"), "{}", missing.message);
    assert!(missing.affected.iter().any(|a| a.ends_with(&files[0])), "{:?}", missing.affected);
    let trunc = report.problems.iter().find(|p| p.pack == Some(trunc_id)).unwrap();
    assert!(trunc.message.contains("the index says"), "{}", trunc.message);

    let report = f.repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(report.problems.iter().any(|p| p.pack == Some(trunc_id) && p.offset.is_some()), "{:?}", report.problems);

    let rec = f.repo.load_snapshot(&f.snap).unwrap();
    let target = f.dir.join("restore");
    let r = f.repo.restore(&rec, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert!(r.failed.iter().any(|(p, _)| *p == files[0]));
    assert!(r.failed.iter().any(|(p, _)| p == other));
    assert!(
        target.join("databases/msgstore.db").exists() || r.failed.iter().any(|(p, _)| p == "databases/msgstore.db")
    );
}

fn walk(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        out.push(e.path().display().to_string());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn a_damaged_snapshot_file_hides_only_that_snapshot() {
    let f = fixture();
    let mut repo = f.repo;
    let mut b = repo.backup().unwrap();
    b.add_stream("later.txt", &b"later"[..], packvault::FileMeta { mode: 0o600, mtime_secs: 5, mtime_nanos: 0 })
        .unwrap();
    let second = b.commit(packvault::SnapshotInfo::default()).unwrap();
    drop(repo);
    let path = f.store.root().join("snapshots").join(f.snap.to_hex());
    let mut bytes = fs::read(&path).unwrap();
    bytes[30] ^= 1;
    fs::write(&path, bytes).unwrap();

    // Opening with rollback detection on still works; the damaged snapshot is named, not fatal.
    let options = packvault::OpenOptions {
        cache_dir: Some(f.dir.join("cache")),
        state: packvault::ClientState::Dir(f.dir.join("state")),
        ..Default::default()
    };
    let repo = Repository::open(f.store.clone(), &packvault::Credentials::passphrase(crate::PASS), &options).unwrap();
    let (good, bad) = repo.snapshots_with_errors().unwrap();
    assert_eq!(good.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![second.snapshot]);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, f.snap);
    assert!(bad[0].1.is_integrity(), "{}", bad[0].1);
    let target = f.dir.join("restore");
    let r = repo.restore(&good[0].1, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
    assert!(r.is_complete());
    assert_eq!(fs::read(target.join("later.txt")).unwrap(), b"later");
    let report = repo.check(CheckOptions { read_data: false, ..Default::default() }).unwrap();
    assert!(report.problems.iter().any(|p| p.message.contains(&f.snap.short())), "{:?}", report.problems);
}

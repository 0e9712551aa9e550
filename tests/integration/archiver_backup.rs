//! What an app embedding the library needs from a backup session: cancellation that leaves a
//! valid repository, progress per file, its own device name, per-stream compression.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use packvault::{
    CancelToken, CheckOptions, CompressionHint, ErrorKind, FileKind, FileMeta, InitOptions, Progress, Sequential,
    SnapshotInfo, Store, StreamOptions,
};

use crate::append::restored;
use crate::vectors::noise::noise;
use crate::{fast_init, new_local_repo, new_local_repo_with, reopen};

const MIB: usize = 1 << 20;
const META: FileMeta = FileMeta { mode: 0o600, mtime_secs: 1_700_000_000, mtime_nanos: 0 };

/// Hands out `data` and cancels `token` once `after` bytes are out (as an app's UI thread
/// would, at any moment), then goes on reading.
struct CancelAfter<'a> {
    data: &'a [u8],
    handed: usize,
    after: usize,
    token: CancelToken,
}

impl Read for CancelAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.handed).min(64 << 10);
        buf[..n].copy_from_slice(&self.data[self.handed..self.handed + n]);
        self.handed += n;
        if self.handed >= self.after {
            self.token.cancel();
        }
        Ok(n)
    }
}

#[test]
fn cancelling_a_backup_leaves_a_valid_repository_and_no_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    // Small packs, so that the cancelled run has written some.
    let options = InitOptions { pack_target_size: 1 << 20, ..fast_init(Some(&cache)) };
    let (store, mut repo) = new_local_repo_with(tmp.path(), options);
    let data = noise(32 * MIB, 0xCA);

    let token = CancelToken::new();
    let mut s = repo.backup().unwrap();
    s.set_cancel(token.clone());
    s.add_stream("note.txt", &b"accepted before the cancel"[..], META).unwrap();
    let source = CancelAfter { data: &data, handed: 0, after: 16 * MIB, token: token.clone() };
    let err = s.add_stream("big.log", source, META).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    let err = s.add_stream("later.txt", &b"x"[..], META).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "a cancelled session takes nothing more");
    let err = s.commit(SnapshotInfo::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "commit is refused: {err}");
    assert!(repo.snapshots().unwrap().is_empty());
    assert!(store.list(FileKind::Snapshot).unwrap().is_empty(), "no snapshot file");
    assert!(store.list(FileKind::Index).unwrap().is_empty(), "no index file");
    let report = repo.check(CheckOptions::default()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // Another client sees valid packs that no index file names yet.
    let other = reopen(store.clone(), None);
    let report = other.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let left = report.unreferenced_packs.len();
    assert!(left >= 4, "the cancelled run wrote packs before it stopped ({left})");
    drop(other);

    // The same handle backs up again: it completes, and reuses what the cancelled run stored.
    let mut s = repo.backup().unwrap();
    s.add_stream("big.log", &data[..], META).unwrap();
    let out = s.commit(SnapshotInfo::default()).unwrap();
    assert!(
        out.record.summary.new_raw_bytes < (data.len() - 8 * MIB) as u64,
        "stored {} of {} bytes again",
        out.record.summary.new_raw_bytes,
        data.len()
    );
    // A new device (no index cache): every chunk is named by an index file, the data restores.
    let repo = reopen(store.clone(), None);
    let report = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.unreferenced_packs.is_empty(), "the cancelled run's packs are indexed now");
    let (_, record) = repo.find_snapshot("latest").unwrap();
    assert!(repo.list(&record, "note.txt", false).is_err(), "nothing of the cancelled session");
    assert_eq!(restored(&repo, &record, "big.log", tmp.path()), data);
}

#[test]
fn a_cancelled_folder_backup_stops_and_the_next_one_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        std::fs::write(src.join(format!("{i}.bin")), noise(2 * MIB, i)).unwrap();
    }
    let (store, mut repo) = new_local_repo(tmp.path());
    let token = CancelToken::new();
    token.cancel();
    let mut s = repo.backup().unwrap();
    s.set_cancel(token);
    assert_eq!(s.add_dir(&src, "").unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(s.commit(SnapshotInfo::default()).unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(store.list(FileKind::Snapshot).unwrap().is_empty());
    let mut s = repo.backup().unwrap();
    s.add_dir(&src, "").unwrap();
    let out = s.commit(SnapshotInfo::default()).unwrap();
    assert_eq!(out.record.summary.files, 8);
    assert!(repo.check(CheckOptions::default()).unwrap().is_ok());
}

/// Records the paths a backup names as it reads them.
#[derive(Default)]
struct Current(Mutex<Vec<String>>);

impl Progress for Current {
    fn current(&self, path: &str) {
        self.0.lock().unwrap().push(path.to_string());
    }
}

#[test]
fn progress_names_each_file_read_and_no_file_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("threads")).unwrap();
    std::fs::write(src.join("db.sqlite"), noise(100_000, 1)).unwrap();
    std::fs::write(src.join("threads/a.log"), noise(50_000, 2)).unwrap();
    std::fs::write(src.join("threads/b.log"), noise(50_000, 3)).unwrap();
    // Files changed within a second of a backup's start are read again whatever their stamp.
    let settle = || std::thread::sleep(Duration::from_millis(1100));
    settle();
    let (_store, mut repo) = new_local_repo(tmp.path());
    let backup = |repo: &mut packvault::Repository| {
        let seen = Arc::new(Current::default());
        let mut s = repo.backup().unwrap();
        s.set_progress(seen.clone());
        s.add_dir(&src, "").unwrap();
        s.add_stream("export.json", &b"{}"[..], META).unwrap();
        s.commit(SnapshotInfo::default()).unwrap();
        let mut v = seen.0.lock().unwrap().clone();
        v.sort();
        v
    };
    assert_eq!(backup(&mut repo), ["db.sqlite", "export.json", "threads/a.log", "threads/b.log"]);
    std::fs::write(src.join("threads/b.log"), noise(60_000, 4)).unwrap();
    settle();
    assert_eq!(backup(&mut repo), ["export.json", "threads/b.log"], "files taken from the files cache are not named");
}

#[test]
fn snapshot_info_names_the_device_not_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, mut repo) = new_local_repo(tmp.path());
    let mut s = repo.backup().unwrap();
    s.add_stream("a", &b"a"[..], META).unwrap();
    let info = SnapshotInfo {
        tags: vec!["nightly".into()],
        hostname: Some("alice-phone".into()),
        username: Some("alice".into()),
    };
    let out = s.commit(info).unwrap();
    assert_eq!((out.record.hostname.as_str(), out.record.username.as_str()), ("alice-phone", "alice"));
    let repo = reopen(store.clone(), Some(&tmp.path().join("cache")));
    let (_, record) = repo.find_snapshot("latest").unwrap();
    assert_eq!(record.hostname, "alice-phone");
    assert_eq!(record.username, "alice");
    assert_eq!(record.tags, ["nightly"]);
    drop(repo);

    // None: the environment's, as before.
    let mut repo = reopen(store.clone(), Some(&tmp.path().join("cache")));
    let mut s = repo.backup().unwrap();
    s.add_stream("b", &b"b"[..], META).unwrap();
    let out = s.commit(SnapshotInfo::tagged(["x"])).unwrap();
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string());
    if let Ok(machine) = machine {
        assert_eq!(out.record.hostname, machine);
    }
    // A name no snapshot reader would show is refused before anything is written.
    let mut s = repo.backup().unwrap();
    s.add_stream("c", &b"c"[..], META).unwrap();
    let long = SnapshotInfo { hostname: Some("h".repeat(5000)), ..SnapshotInfo::default() };
    assert_eq!(s.commit(long).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(store.list(FileKind::Snapshot).unwrap().len(), 2);
}

#[test]
fn store_hint_keeps_a_compressible_stream_uncompressed_and_it_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let text: Vec<u8> = (0..120_000)
        .flat_map(|i| format!("{{\"id\":{i},\"from\":\"alice\",\"text\":\"see you at {}\"}}\n", i % 97).into_bytes())
        .collect();
    let stored = |hint: CompressionHint, name: &str| {
        let (_store, mut repo) = new_local_repo(&tmp.path().join(name));
        let mut s = repo.backup().unwrap();
        let options = StreamOptions { compression: hint, ..StreamOptions::default() };
        s.add_stream_with("chat.jsonl", Sequential::new(&text[..]), META, options).unwrap();
        let out = s.commit(SnapshotInfo::default()).unwrap();
        assert_eq!(restored(&repo, &out.record, "chat.jsonl", &tmp.path().join(name)), text);
        let summary = out.record.summary;
        (summary.new_stored_bytes, summary.new_raw_bytes)
    };
    let (auto, _) = stored(CompressionHint::Auto, "auto");
    let (store, raw) = stored(CompressionHint::Store, "store");
    assert!(raw >= text.len() as u64);
    assert!(store >= raw, "stored raw: {store} bytes sealed for {raw} raw");
    assert!(auto * 4 < store, "zstd shrinks this text: {auto} vs {store}");
}

//! Append-aware streams: a log that only grows costs its new bytes, stores exactly the chunks a
//! full read stores, and is read in full (and says why) when it did not only grow.
//!
//! Sources here count the bytes they hand out, so "read" means read from the source, not
//! what the library says it read (both are compared).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use packvault::format::snapshot::{NodeContent, SnapshotRecord};
use packvault::{
    AppendFallback, BackupOutcome, ChunkId, ChunkPolicy, DirOptions, FileMeta, Repository, RestoreOptions, Sequential,
    SnapshotInfo, StreamOptions,
};

use crate::new_local_repo;
use crate::vectors::noise::noise;

const MIB: usize = 1 << 20;

/// These tests check append mode's mechanics with the repository's chunker (whose maximum
/// chunk they bound reads by), so every stream names that policy: by default an append
/// stream is cut by it unsniffed and a plain one is sniffed (`db_chunking.rs` tests those).
const CDC: StreamOptions =
    StreamOptions { chunking: ChunkPolicy::Cdc, compression: packvault::CompressionHint::Auto, append: false };
const CDC_APPEND: StreamOptions = StreamOptions { append: true, ..CDC };
const META: FileMeta = FileMeta { mode: 0o600, mtime_secs: 1_700_000_000, mtime_nanos: 0 };

/// The first `len` bytes of shared data as a seekable source that counts what it hands out.
pub struct Counted {
    data: Arc<Vec<u8>>,
    len: usize,
    pos: usize,
    handed: Arc<AtomicU64>,
}

impl Counted {
    pub fn new(data: &Arc<Vec<u8>>, len: usize) -> (Counted, Arc<AtomicU64>) {
        let handed = Arc::new(AtomicU64::new(0));
        (Counted { data: data.clone(), len, pos: 0, handed: handed.clone() }, handed)
    }
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.len.saturating_sub(self.pos));
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        self.handed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for Counted {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(o) => return Ok(self.set(o)),
            SeekFrom::End(d) => (self.len as i64, d),
            SeekFrom::Current(d) => (self.pos as i64, d),
        };
        Ok(self.set(u64::try_from(base.0 + base.1).map_err(|_| io::ErrorKind::InvalidInput)?))
    }
}

impl Counted {
    fn set(&mut self, o: u64) -> u64 {
        self.pos = usize::try_from(o).unwrap().min(self.len);
        o
    }
}

/// The chunk list and size of the file at `path` in `record`.
pub fn file_chunks(repo: &Repository, record: &SnapshotRecord, path: &str) -> (u64, Vec<ChunkId>) {
    let nodes = repo.list(record, path, false).unwrap();
    match &nodes[0].1.content {
        NodeContent::File { size, chunks } => (*size, chunks.clone()),
        other => panic!("{path} is not a file: {other:?}"),
    }
}

/// The bytes of `path` as restored from `record`.
pub fn restored(repo: &Repository, record: &SnapshotRecord, path: &str, scratch: &Path) -> Vec<u8> {
    let target = scratch.join(format!("restore-{}", record.sequence));
    let options = RestoreOptions { target: target.clone(), include: vec![path.into()], ..Default::default() };
    let report = repo.restore(record, &options).unwrap();
    assert!(report.is_complete(), "{:?}", report.failed);
    std::fs::read(target.join(path)).unwrap()
}

/// One session adding `data[..len]` at `path` as an append stream; the outcome and the bytes
/// the source handed out.
fn append(repo: &mut Repository, path: &str, data: &Arc<Vec<u8>>, len: usize) -> (BackupOutcome, u64) {
    let (source, handed) = Counted::new(data, len);
    let mut s = repo.backup().unwrap();
    s.add_stream_with(path, source, META, CDC_APPEND).unwrap();
    let out = s.commit(SnapshotInfo::default()).unwrap();
    let handed = handed.load(Ordering::Relaxed);
    assert_eq!(out.record.summary.bytes_read, handed, "the summary counts what the source handed out");
    assert_eq!(out.appends.len(), 1);
    assert_eq!(out.appends[0].bytes_read, handed);
    assert_eq!(out.appends[0].size, len as u64);
    (out, handed)
}

fn plain(repo: &mut Repository, path: &str, bytes: &[u8]) -> BackupOutcome {
    let mut s = repo.backup().unwrap();
    s.add_stream_with(path, Sequential::new(bytes), META, CDC).unwrap();
    s.commit(SnapshotInfo::default()).unwrap()
}

#[test]
fn one_mib_appended_to_a_200_mib_log_reads_the_tail_and_stores_the_chunks_of_a_full_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (_store, mut repo) = new_local_repo(tmp.path());
    let max_chunk = repo.settings().chunker.max_size as u64;
    let data = Arc::new(noise(201 * MIB, 0xA11CE));
    let day1 = plain(&mut repo, "chats/alice.log", &data[..200 * MIB]);

    let (day2, handed) = append(&mut repo, "chats/alice.log", &data, 201 * MIB);
    let a = &day2.appends[0];
    assert!(a.resumed(), "{a:?}");
    assert!(handed < (2 * MIB) as u64 + max_chunk, "read {handed} bytes for 1 MiB appended");
    assert!(handed >= MIB as u64, "the new bytes are read");
    let (_, old_chunks) = file_chunks(&repo, &day1.record, "chats/alice.log");
    assert_eq!(a.reused_chunks, old_chunks.len() as u64 - 1, "every old chunk but the last is reused");

    // The same grown log read in full, in another session: the same chunks, none of them new.
    let full = plain(&mut repo, "full/alice.log", &data[..]);
    assert_eq!(full.record.summary.new_data_blobs, 0, "a full read finds every chunk stored already");
    let (size, resumed) = file_chunks(&repo, &day2.record, "chats/alice.log");
    let (full_size, full_chunks) = file_chunks(&repo, &full.record, "full/alice.log");
    assert_eq!((size, &resumed), (full_size, &full_chunks), "the stored chunk list is a full re-chunk's");
    assert_eq!(resumed[..old_chunks.len() - 1], old_chunks[..old_chunks.len() - 1]);
    eprintln!(
        "200 MiB log + 1 MiB: read {handed} bytes (max chunk {max_chunk}), reused {} of {} chunks",
        a.reused_chunks,
        resumed.len()
    );
}

#[test]
fn a_rewritten_last_chunk_or_a_truncated_log_is_read_in_full_and_restores_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let (_store, mut repo) = new_local_repo(tmp.path());
    let data = noise(6 * MIB, 7);
    let day1 = plain(&mut repo, "log", &data[..4 * MIB]);
    let (_, old) = file_chunks(&repo, &day1.record, "log");
    let last_len = {
        let index = repo.index();
        index.lookup(&old.last().unwrap().0).unwrap().unwrap().raw_len as usize
    };

    // A byte flipped in the middle of the old last chunk, and the log grown.
    let mut flipped = data.clone();
    flipped[4 * MIB - last_len / 2] ^= 0x40;
    let flipped = Arc::new(flipped);
    let (out, handed) = append(&mut repo, "log", &flipped, 5 * MIB);
    assert_eq!(out.appends[0].fallback, Some(AppendFallback::LastChunkChanged));
    assert_eq!(handed, (last_len + 5 * MIB) as u64, "the last chunk checked, then everything");
    assert_eq!(restored(&repo, &out.record, "log", tmp.path()), flipped[..5 * MIB]);

    // Truncated below the old size: the length check catches it without reading.
    let data = Arc::new(data);
    let (out, handed) = append(&mut repo, "log", &data, 3 * MIB);
    assert_eq!(
        out.appends[0].fallback,
        Some(AppendFallback::Shrunk { old_size: 5 * MIB as u64, new_size: 3 * MIB as u64 })
    );
    assert_eq!(handed, 3 * MIB as u64);
    assert_eq!(restored(&repo, &out.record, "log", tmp.path()), data[..3 * MIB]);
    let (_, chunks) = file_chunks(&repo, &out.record, "log");
    let full = plain(&mut repo, "full", &data[..3 * MIB]);
    assert_eq!(chunks, file_chunks(&repo, &full.record, "full").1);
}

/// The contract of append mode, stated as a test: only the length and the old last chunk are
/// checked, so bytes rewritten in place before the last chunk go unnoticed and the snapshot
/// keeps the old bytes there. Data that can change in place must not use append mode.
#[test]
fn a_change_before_the_last_chunk_is_not_seen_by_the_cheap_check() {
    let tmp = tempfile::tempdir().unwrap();
    let (_store, mut repo) = new_local_repo(tmp.path());
    let data = noise(4 * MIB, 8);
    plain(&mut repo, "log", &data);
    let mut changed = data.clone();
    changed[MIB] ^= 1;
    changed.extend_from_slice(&noise(1000, 9));
    let len = changed.len();
    let (out, _) = append(&mut repo, "log", &Arc::new(changed.clone()), len);
    assert!(out.appends[0].resumed());
    let back = restored(&repo, &out.record, "log", tmp.path());
    assert_eq!(back[MIB], data[MIB], "the old byte is kept");
    assert_eq!(back[MIB + 1..], changed[MIB + 1..]);
}

#[test]
fn unchanged_append_streams_read_only_their_last_chunk() {
    // A scaled-down "unchanged 1 GiB tree of append streams": 64 logs of 4 MiB.
    const STREAMS: usize = 64;
    let tmp = tempfile::tempdir().unwrap();
    let (_store, mut repo) = new_local_repo(tmp.path());
    let max_chunk = repo.settings().chunker.max_size as u64;
    let logs: Vec<Arc<Vec<u8>>> = (0..STREAMS).map(|i| Arc::new(noise(4 * MIB, 100 + i as u64))).collect();
    let mut s = repo.backup().unwrap();
    for (i, log) in logs.iter().enumerate() {
        s.add_stream_with(&format!("logs/{i}.log"), Sequential::new(&log[..]), META, CDC).unwrap();
    }
    let day1 = s.commit(SnapshotInfo::default()).unwrap();

    let mut s = repo.backup().unwrap();
    let mut counters = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let (source, handed) = Counted::new(log, log.len());
        s.add_stream_with(&format!("logs/{i}.log"), source, META, CDC_APPEND).unwrap();
        counters.push(handed);
    }
    let day2 = s.commit(SnapshotInfo::default()).unwrap();
    let handed: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let mut last_chunks = 0u64;
    for (i, a) in day2.appends.iter().enumerate() {
        assert!(a.resumed(), "{a:?}");
        let path = format!("logs/{i}.log");
        let (_, old) = file_chunks(&repo, &day1.record, &path);
        assert_eq!(file_chunks(&repo, &day2.record, &path).1, old);
        last_chunks += repo.index().lookup(&old.last().unwrap().0).unwrap().unwrap().raw_len as u64;
    }
    assert_eq!(handed, last_chunks, "each unchanged stream reads exactly its last chunk");
    assert!(handed <= STREAMS as u64 * max_chunk, "{handed} bytes read of {} MiB", STREAMS * 4);
    assert_eq!(day2.record.summary.bytes_read, handed);
    assert_eq!(day2.record.summary.new_data_blobs, 0);
    eprintln!("64 unchanged 4 MiB append streams: read {handed} bytes of {} (last chunks only)", STREAMS * 4 * MIB);
}

#[test]
fn append_without_an_old_version_or_a_seekable_source_reads_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    let (_store, mut repo) = new_local_repo(tmp.path());
    let data = Arc::new(noise(2 * MIB, 21));
    // No snapshot yet: nothing to resume from.
    let (first, handed) = append(&mut repo, "a.log", &data, MIB);
    assert_eq!(first.appends[0].fallback, Some(AppendFallback::NoOldVersion));
    assert_eq!(handed, MIB as u64);

    // A reader that cannot seek.
    let mut s = repo.backup().unwrap();
    s.add_stream_with("a.log", Sequential::new(&data[..]), META, CDC_APPEND).unwrap();
    let out = s.commit(SnapshotInfo::default()).unwrap();
    assert_eq!(out.appends[0].fallback, Some(AppendFallback::CannotSeek));
    assert_eq!(out.record.summary.bytes_read, 2 * MIB as u64);

    // The newest snapshot holds no such file; an explicitly chosen parent does.
    plain(&mut repo, "other", b"something else");
    let (source, handed) = Counted::new(&data, 2 * MIB);
    let mut s = repo.backup().unwrap();
    s.add_stream_with("a.log", source, META, CDC_APPEND).unwrap();
    assert_eq!(s.commit(SnapshotInfo::default()).unwrap().appends[0].fallback, Some(AppendFallback::NoOldVersion));
    assert_eq!(handed.load(Ordering::Relaxed), 2 * MIB as u64);
    let (source, handed) = Counted::new(&data, 2 * MIB);
    let mut s = repo.backup().unwrap();
    s.set_parent(first.snapshot).unwrap();
    s.add_stream_with("a.log", source, META, CDC_APPEND).unwrap();
    let out = s.commit(SnapshotInfo::default()).unwrap();
    assert!(out.appends[0].resumed(), "{:?}", out.appends[0]);
    assert!(handed.load(Ordering::Relaxed) <= MIB as u64 + repo.settings().chunker.max_size as u64);
    assert_eq!(restored(&repo, &out.record, "a.log", tmp.path()), data[..]);
}

#[test]
fn append_only_files_of_a_folder_resume_from_the_files_cache_or_the_parent() {
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("threads")).unwrap();
    let log = src.join("threads/alice.log");
    let other = src.join("threads/notes.txt");
    let data = noise(6 * MIB, 31);
    let write = |path: &Path, bytes: &[u8]| std::fs::write(path, bytes).unwrap();
    // A file changed within a second of a backup's start is never taken from the files cache
    // (nor kept in it): the backups below wait that second out.
    let settle = || std::thread::sleep(Duration::from_millis(1100));
    write(&log, &data[..4 * MIB]);
    write(&other, &data[..2 * MIB]);
    settle();
    let options = DirOptions {
        append_only: vec!["**/*.log".into()],
        chunking: vec![("**".into(), ChunkPolicy::Cdc)],
        ..Default::default()
    };
    let backup_with = |repo: &mut Repository, parent: Option<packvault::SnapshotId>| {
        let mut s = repo.backup().unwrap();
        if let Some(p) = parent {
            s.set_parent(p).unwrap();
        }
        s.add_dir_with(&src, "", &options).unwrap();
        s.commit(SnapshotInfo::default()).unwrap()
    };
    let backup = |repo: &mut Repository| backup_with(repo, None);

    // With a files cache, and a parent (of another folder) without the log: the old version
    // comes from the cache.
    let (_store, mut repo) = new_local_repo(tmp.path());
    let max_chunk = repo.settings().chunker.max_size as usize;
    let elsewhere = plain(&mut repo, "elsewhere", b"another folder").snapshot;
    let day1 = backup(&mut repo);
    assert_eq!(day1.appends.len(), 1);
    assert_eq!(day1.appends[0].fallback, Some(AppendFallback::NoOldVersion));
    write(&log, &data[..5 * MIB]);
    write(&other, &data[MIB..3 * MIB]);
    settle();
    let day2 = backup_with(&mut repo, Some(elsewhere));
    assert_eq!(day2.appends.len(), 1, "only the glob's files: {:?}", day2.appends);
    assert_eq!(day2.appends[0].path, "threads/alice.log");
    assert!(day2.appends[0].resumed(), "{:?}", day2.appends[0]);
    assert!(day2.appends[0].bytes_read <= (MIB + max_chunk) as u64);
    assert_eq!(day2.record.summary.bytes_read, day2.appends[0].bytes_read + 2 * MIB as u64, "notes.txt in full");
    assert_eq!(restored(&repo, &day2.record, "threads/alice.log", tmp.path()), data[..5 * MIB]);
    // Unchanged now: the files cache takes it without reading, append mode is not needed.
    let day3 = backup(&mut repo);
    assert!(day3.appends.is_empty() && day3.record.summary.bytes_read == 0, "{:?}", day3.appends);

    // Without a files cache: the parent snapshot gives the old version.
    let tmp2 = tempfile::tempdir().unwrap();
    let store = Arc::new(packvault::LocalStore::create(tmp2.path().join("repo")).unwrap());
    let mut repo =
        Repository::init(store, &packvault::Credentials::passphrase(crate::PASS), crate::fast_init(None)).unwrap();
    backup(&mut repo);
    write(&log, &data);
    let out = backup(&mut repo);
    assert!(out.appends[0].resumed(), "{:?}", out.appends[0]);
    assert!(out.appends[0].bytes_read <= (MIB + max_chunk) as u64);
    assert_eq!(restored(&repo, &out.record, "threads/alice.log", tmp2.path()), data[..]);
}

//! Reading back without a folder, as an archiver does: random access to one file
//! (`open_file`), a restore into the app's own storage (`restore_to` with a `MemorySink`), a
//! one-conversation restore that reads only that conversation's packs (counted with
//! `support/counting.rs`), damage that fails only the files that need it, and cancellation.
//!
//! The fixture: three conversations (alice, bob, carol), each added on its own backup day, so
//! each one's data lies in its own packs (1 MiB packs: several per conversation); the third
//! snapshot holds all three.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use packvault::format::blob::BlobKind;
use packvault::format::snapshot::{NodeContent, SnapshotRecord};
use packvault::{
    CancelToken, Credentials, ErrorKind, FileKind, FileMeta, LocalStore, MemorySink, Progress, Repository,
    RestoreOptions, SinkOptions, Store,
};

use crate::counting::CountingStore;
use crate::history::{write_day, HistoryParams, Rng};
use crate::{fast_init, PASS};

const CONVERSATIONS: [&str; 3] = ["alice", "bob", "carol"];

/// One conversation's files: a message log, two photos, an empty file; carol also has a video
/// (so the whole snapshot is more than one `restore_to` window of 16 MiB).
fn conversation(name: &str, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let mut log = String::new();
    while log.len() < 200_000 {
        log.push_str(&format!(
            "{{\"from\":\"{name}\",\"n\":{},\"text\":\"message {}\"}},\n",
            rng.below(1000),
            rng.next()
        ));
    }
    let mut media = |len: usize| {
        let mut v = vec![0; len];
        rng.fill(&mut v);
        v
    };
    let mut files = vec![
        (format!("chats/{name}/messages.json"), log.into_bytes()),
        (format!("chats/{name}/media/IMG-1.jpg"), media(3 << 20)),
        (format!("chats/{name}/media/IMG-2.jpg"), media(2 << 20)),
        (format!("chats/{name}/empty.txt"), Vec::new()),
    ];
    if name == "carol" {
        files.push((format!("chats/{name}/media/VID-1.mp4"), media(8 << 20)));
    }
    files
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    local: Arc<LocalStore>,
    store: Arc<CountingStore>,
    repo: Repository,
    record: SnapshotRecord,
    /// Every file of the last snapshot, with its content.
    files: BTreeMap<String, Vec<u8>>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let local = Arc::new(LocalStore::create(dir.join("repo")).unwrap());
    let store = CountingStore::new(local.clone());
    let options = packvault::InitOptions { pack_target_size: 1 << 20, ..fast_init(None) };
    let mut repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), options).unwrap();
    let meta = FileMeta { mode: 0o640, mtime_secs: 1_700_000_000, mtime_nanos: 5 };
    let mut files = BTreeMap::new();
    let mut record = None;
    for day in 0..CONVERSATIONS.len() {
        let mut b = repo.backup().unwrap();
        for (i, name) in CONVERSATIONS[..=day].iter().enumerate() {
            for (path, data) in conversation(name, i as u64 + 1) {
                b.add_stream(&path, &data[..], meta).unwrap();
                files.insert(path, data);
            }
        }
        record = Some(b.commit(packvault::SnapshotInfo::default()).unwrap().record);
    }
    Fixture { _tmp: tmp, dir, local, store, repo, record: record.unwrap(), files }
}

impl Fixture {
    /// The file's chunks, as (chunk id, pack name) in file order.
    fn chunks(&self, path: &str) -> Vec<(packvault::Id, String)> {
        let (_, node) = self.repo.list(&self.record, path, false).unwrap().pop().unwrap();
        let NodeContent::File { chunks, .. } = node.content else { panic!("{path} is not a file") };
        chunks.iter().map(|c| (c.0, self.repo.index().lookup(&c.0).unwrap().unwrap().pack.to_hex())).collect()
    }

    /// The packs holding the data of the files under `prefix`.
    fn data_packs_under(&self, prefix: &str) -> BTreeSet<String> {
        let paths: Vec<String> = self.files.keys().filter(|p| p.starts_with(prefix)).cloned().collect();
        paths.iter().flat_map(|p| self.chunks(p)).map(|(_, pack)| pack).collect()
    }

    fn data_packs(&self) -> BTreeSet<String> {
        self.repo.index().packs().filter(|p| p.kind == BlobKind::Data).map(|p| p.id.to_hex()).collect()
    }

    fn pack_path(&self, name: &str) -> PathBuf {
        self.local.local_path(FileKind::Pack, name).unwrap()
    }

    /// Flips one byte inside the blob of `chunk`.
    fn damage_chunk(&self, chunk: &packvault::Id) {
        let loc = self.repo.index().lookup(chunk).unwrap().unwrap();
        let path = self.pack_path(&loc.pack.to_hex());
        let mut bytes = fs::read(&path).unwrap();
        bytes[loc.offset as usize + 20] ^= 0x40;
        fs::write(&path, bytes).unwrap();
    }
}

/// Reads until `len` bytes or the end.
fn read_up_to(r: &mut impl Read, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    let mut n = 0;
    while n < len {
        match r.read(&mut out[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    out.truncate(n);
    out
}

#[test]
fn open_file_reads_the_right_bytes_at_random_offsets_and_fetches_only_what_it_touches() {
    let f = fixture();
    let path = "chats/bob/media/IMG-1.jpg";
    let want = &f.files[path];
    assert!(f.chunks(path).len() > 20, "a file of many chunks");
    let mut r = f.repo.open_file(&f.record, path).unwrap();
    assert_eq!(r.size(), want.len() as u64);
    assert_eq!((r.path(), r.meta().mode), (path, 0o640));

    // A small read in the middle: one chunk (two at a boundary) of one pack.
    f.store.reset();
    r.seek(SeekFrom::Start(want.len() as u64 / 2)).unwrap();
    assert_eq!(read_up_to(&mut r, 100), want[want.len() / 2..want.len() / 2 + 100]);
    let (packs, reads) = (f.store.packs_read(), f.store.pack_reads());
    eprintln!("a 100-byte read: {reads} pack reads of {} pack(s), {} chunk(s)", packs.len(), r.chunks_fetched());
    assert_eq!(packs.len(), 1, "{packs:?}");
    assert!(reads <= 2 && reads as u64 == r.chunks_fetched(), "{reads} reads");

    // 1,000 seeded seeks and reads of every kind against the plain bytes.
    let size = want.len() as u64;
    let mut rng = Rng::new(42);
    let mut pos = r.stream_position().unwrap();
    for op in 0..1000 {
        pos = match rng.below(4) {
            0 => r.seek(SeekFrom::Start(rng.below(want.len() + 1000) as u64)).unwrap(),
            1 => {
                let back = rng.below(want.len() + 1) as i64;
                let ahead = rng.below(2) as i64 * 500;
                r.seek(SeekFrom::End(ahead - back)).unwrap()
            }
            2 => {
                let delta = rng.below(400_000) as i64 - pos.min(200_000) as i64;
                r.seek(SeekFrom::Current(delta)).unwrap()
            }
            _ => pos,
        };
        let len = match rng.below(5) {
            0 => 0,
            1 => rng.below(64),
            _ => rng.below(300_000),
        };
        let got = read_up_to(&mut r, len);
        let start = pos.min(size) as usize;
        let end = (pos + len as u64).min(size) as usize;
        assert!(got == want[start..end.max(start)], "op {op}: {len} bytes at {pos}");
        pos += got.len() as u64;
        assert_eq!(r.stream_position().unwrap(), pos, "op {op}");
    }
    eprintln!("1000 random reads fetched {} chunks of {}", r.chunks_fetched(), f.chunks(path).len());
    assert_eq!(r.seek(SeekFrom::Current(-(pos as i64) - 1)).unwrap_err().kind(), IoKind::InvalidInput);
    r.seek(SeekFrom::End(10)).unwrap();
    assert_eq!(r.read(&mut [0; 10]).unwrap(), 0, "past the end reads nothing");

    // Clear errors for what is not a file.
    let kind = |p: &str| f.repo.open_file(&f.record, p).unwrap_err().kind();
    assert_eq!(kind("chats/bob"), ErrorKind::InvalidArgument);
    assert_eq!(kind(""), ErrorKind::InvalidArgument);
    assert_eq!(kind("chats/nobody/x"), ErrorKind::NotFound);
    let e = f.repo.open_file(&f.record, "chats/bob/media").unwrap_err();
    assert!(e.to_string().contains("chats/bob/media"), "{e}");
}

#[test]
fn open_file_names_the_path_of_a_damaged_chunk_and_reads_the_rest() {
    let f = fixture();
    let path = "chats/alice/media/IMG-2.jpg";
    let chunks = f.chunks(path);
    f.damage_chunk(&chunks[3].0);
    let mut r = f.repo.open_file(&f.record, path).unwrap();
    let err = read_up_to_err(&mut r);
    assert_eq!(err.kind(), IoKind::InvalidData);
    let inner = err.into_inner().unwrap().downcast::<packvault::Error>().unwrap();
    assert!(inner.is_integrity() && inner.to_string().contains(path), "{inner}");
    // What lies before the damaged chunk still reads.
    r.seek(SeekFrom::Start(0)).unwrap();
    assert_eq!(read_up_to(&mut r, 1000), f.files[path][..1000]);
}

/// Reads a whole reader, expecting an error on the way.
fn read_up_to_err(r: &mut impl Read) -> std::io::Error {
    let mut buf = vec![0; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => panic!("read to the end without an error"),
            Ok(_) => {}
            Err(e) => return e,
        }
    }
}

#[test]
fn a_one_conversation_restore_reads_only_that_conversations_packs() {
    let f = fixture();
    let bob = f.data_packs_under("chats/bob/");
    let others: BTreeSet<String> =
        f.data_packs_under("chats/alice/").union(&f.data_packs_under("chats/carol/")).cloned().collect();
    assert!(bob.is_disjoint(&others), "the fixture puts each conversation in its own packs");
    let all = f.data_packs();
    assert!(bob.len() >= 2 && all.len() > bob.len() + 4, "{} of {} data packs", bob.len(), all.len());
    let bobs_files: BTreeMap<&String, &Vec<u8>> = f.files.iter().filter(|(p, _)| p.starts_with("chats/bob/")).collect();

    // Into a folder.
    f.store.reset();
    let target = f.dir.join("bob");
    let options = RestoreOptions { target: target.clone(), include: vec!["chats/bob".into()], ..Default::default() };
    let report = f.repo.restore(&f.record, &options).unwrap();
    let read: BTreeSet<String> = f.store.packs_read().intersection(&all).cloned().collect();
    eprintln!(
        "folder restore of one conversation: {} of {} data packs read, {} pack reads",
        read.len(),
        all.len(),
        f.store.pack_reads()
    );
    assert_eq!(read, bob, "exactly the packs holding bob's chunks");
    assert!(report.is_complete(), "{:?}", report.failed);
    assert_eq!(report.files, bobs_files.len() as u64);
    for (p, data) in &bobs_files {
        assert!(fs::read(target.join(p)).unwrap() == **data, "{p}");
    }
    assert!(!target.join("chats/alice").exists());

    // Into memory.
    f.store.reset();
    let mut sink = MemorySink::default();
    let options = SinkOptions { include: vec!["chats/bob".into()], ..Default::default() };
    let report = f.repo.restore_to(&f.record, &options, &mut sink).unwrap();
    let read: BTreeSet<String> = f.store.packs_read().intersection(&all).cloned().collect();
    eprintln!("restore_to of one conversation: {} data packs read, {} pack reads", read.len(), f.store.pack_reads());
    assert_eq!(read, bob, "exactly the packs holding bob's chunks");
    assert!(report.is_complete(), "{:?}", report.failed);
    let got: BTreeMap<&String, &Vec<u8>> = sink.files.iter().collect();
    assert!(got == bobs_files, "the same files and bytes");
}

/// Records the paths `Progress::current` names.
#[derive(Default)]
struct Paths(Mutex<Vec<String>>);

impl Progress for Paths {
    fn current(&self, path: &str) {
        self.0.lock().unwrap().push(path.to_string());
    }
}

#[test]
fn restore_to_gives_what_a_folder_restore_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_day(&src, &HistoryParams::default(), 2).unwrap();
    let store = Arc::new(LocalStore::create(tmp.path().join("repo")).unwrap());
    let mut repo = Repository::init(store, &Credentials::passphrase(PASS), fast_init(None)).unwrap();
    let mut b = repo.backup().unwrap();
    b.add_dir(&src, "").unwrap();
    let record = b.commit(packvault::SnapshotInfo::default()).unwrap().record;

    let target = tmp.path().join("restored");
    let folder_paths = Arc::new(Paths::default());
    let options = RestoreOptions { target: target.clone(), progress: Some(folder_paths.clone()), ..Default::default() };
    let folder = repo.restore(&record, &options).unwrap();
    assert!(folder.is_complete(), "{:?}", folder.failed);

    let mut sink = MemorySink::default();
    let sink_paths = Arc::new(Paths::default());
    let options = SinkOptions { progress: Some(sink_paths.clone()), ..Default::default() };
    let memory = repo.restore_to(&record, &options, &mut sink).unwrap();
    assert!(memory.is_complete(), "{:?}", memory.failed);
    let counts = |r: &packvault::RestoreReport| (r.files, r.dirs, r.symlinks, r.bytes);
    assert_eq!(counts(&memory), counts(&folder));

    let (mut files, mut dirs, mut links) = (BTreeMap::new(), BTreeSet::new(), BTreeMap::new());
    walk(&target, "", &mut files, &mut dirs, &mut links);
    assert_eq!(sink.files.keys().collect::<Vec<_>>(), files.keys().collect::<Vec<_>>());
    for (p, data) in &files {
        assert!(sink.files[p] == *data, "{p}");
    }
    assert_eq!(sink.dirs, dirs);
    assert_eq!(sink.symlinks, links);
    assert!(links.contains_key("export/latest") && sink.files.contains_key("export/.nomedia"));
    for (p, meta) in &sink.meta {
        let md = fs::symlink_metadata(target.join(p)).unwrap();
        if !md.is_symlink() {
            use std::os::unix::fs::MetadataExt;
            assert_eq!((meta.mode, meta.mtime_secs), (md.mode() & 0o7777, md.mtime()), "{p}");
        }
    }

    // Progress names every file once as it starts: in walk order for the sink.
    let order: Vec<String> = sink_paths.0.lock().unwrap().clone();
    assert_eq!(order.iter().collect::<BTreeSet<_>>(), sink.files.keys().collect::<BTreeSet<_>>());
    assert_eq!(order.len(), sink.files.len());
    let mut folder_order = folder_paths.0.lock().unwrap().clone();
    folder_order.sort();
    assert_eq!(folder_order, sink.files.keys().cloned().collect::<Vec<_>>());
}

/// Files (with content), folders and symlinks under `root`, by relative path.
fn walk(
    root: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, Vec<u8>>,
    dirs: &mut BTreeSet<String>,
    links: &mut BTreeMap<String, Vec<u8>>,
) {
    use std::os::unix::ffi::OsStrExt;
    for e in fs::read_dir(root.join(prefix)).unwrap() {
        let e = e.unwrap();
        let rel = crate::join_rel(prefix, &e.file_name().to_string_lossy());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            dirs.insert(rel.clone());
            walk(root, &rel, files, dirs, links);
        } else if ft.is_symlink() {
            links.insert(rel, fs::read_link(e.path()).unwrap().as_os_str().as_bytes().to_vec());
        } else {
            files.insert(rel, fs::read(e.path()).unwrap());
        }
    }
}

#[test]
fn damage_fails_only_the_files_that_need_it_in_restore_to() {
    let f = fixture();
    // One damaged blob in a photo of bob's; one of carol's packs gone.
    let photo = "chats/bob/media/IMG-2.jpg";
    f.damage_chunk(&f.chunks(photo)[5].0);
    let gone = f.chunks("chats/carol/media/VID-1.mp4")[0].1.clone();
    fs::remove_file(f.pack_path(&gone)).unwrap();
    let mut expected: BTreeSet<String> =
        f.files.keys().filter(|p| f.chunks(p).iter().any(|(_, pack)| *pack == gone)).cloned().collect();
    expected.insert(photo.to_string());
    assert!(expected.len() < f.files.len() / 2, "{expected:?}");

    let mut sink = MemorySink::default();
    let report = f.repo.restore_to(&f.record, &SinkOptions::default(), &mut sink).unwrap();
    let failed: BTreeSet<String> = report.failed.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(failed, expected);
    for (p, e) in &report.failed {
        let want = if p == photo { ErrorKind::Integrity } else { ErrorKind::NotFound };
        assert_eq!(e.kind(), want, "{p}: {e}");
    }
    for (p, data) in &f.files {
        if expected.contains(p) {
            assert!(!sink.files.contains_key(p), "{p} was kept although it failed");
        } else {
            assert!(sink.files.get(p) == Some(data), "{p}");
        }
    }
    // The folder restore agrees.
    let target = f.dir.join("restored");
    let folder = f.repo.restore(&f.record, &RestoreOptions { target, ..Default::default() }).unwrap();
    assert_eq!(folder.failed.iter().map(|(p, _)| p.clone()).collect::<BTreeSet<_>>(), expected);
}

#[test]
fn a_cancelled_restore_stops_and_leaves_no_partial_file() {
    let f = fixture();
    let data_packs: HashSet<String> = f.data_packs().into_iter().collect();
    // Cancel as the first data pack is read (tree packs are read before, while planning).
    let cancel_on_data = |token: &CancelToken| {
        let (token, packs) = (token.clone(), data_packs.clone());
        f.store.set_hook(move |r| {
            if r.kind == FileKind::Pack && packs.contains(&r.name) {
                token.cancel();
            }
        });
    };

    let token = CancelToken::new();
    cancel_on_data(&token);
    let target = f.dir.join("restored");
    let options = RestoreOptions { target: target.clone(), cancel: Some(token), ..Default::default() };
    let err = f.repo.restore(&f.record, &options).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let (mut files, mut dirs, mut links) = (BTreeMap::new(), BTreeSet::new(), BTreeMap::new());
    walk(&target, "", &mut files, &mut dirs, &mut links);
    let temporaries: Vec<&String> = files.keys().filter(|p| p.contains(".pv-restore-")).collect();
    assert!(temporaries.is_empty(), "{temporaries:?}");
    for (p, data) in &files {
        assert!(f.files[p] == *data, "{p} is under its name but not complete");
    }
    let non_empty = f.files.values().filter(|d| !d.is_empty()).count();
    eprintln!("folder restore cancelled: {} of {} files complete", files.len(), f.files.len());
    assert!(files.values().filter(|d| !d.is_empty()).count() < non_empty, "the cancel stopped the restore");

    let token = CancelToken::new();
    cancel_on_data(&token);
    let mut sink = MemorySink::default();
    let options = SinkOptions { cancel: Some(token), ..Default::default() };
    let err = f.repo.restore_to(&f.record, &options, &mut sink).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    for (p, data) in &sink.files {
        assert!(f.files[p] == *data, "{p} went to the sink incomplete");
    }
    eprintln!("restore_to cancelled: {} of {} files delivered", sink.files.len(), f.files.len());
    assert!(sink.files.len() < f.files.len(), "the cancel stopped the restore");

    // Cancelled before it starts: nothing is read.
    let token = CancelToken::new();
    token.cancel();
    f.store.reset();
    let options = SinkOptions { cancel: Some(token), ..Default::default() };
    assert_eq!(
        f.repo.restore_to(&f.record, &options, &mut MemorySink::default()).unwrap_err().kind(),
        ErrorKind::Cancelled
    );
    assert_eq!(f.store.pack_reads(), 0);
}

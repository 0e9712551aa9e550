//! The backup pipeline: a reader stage (files cache lookups, reading, chunking), workers
//! (hashing, dedup, sealing) and a pack writer, joined by bounded channels (see the
//! module docs of `backup`).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use crate::chunker::stream::{ChunkerSet, Cutting, StreamCutter};
use crate::chunker::Chunker;
use crate::crypto::KeySet;
use crate::error::{Error, ErrorKind, Result};
use crate::format::blob::{BlobKind, SealedBlob};
use crate::format::snapshot::Summary;
use crate::id::{ChunkId, Id};
use crate::index::Index;
use crate::pack::{PackWriter, WrittenPack};
use crate::progress::{CancelToken, Progress};
use crate::repo::files_cache::FilesCache;
use crate::repo::Repository;

use super::append::{AppendBase, AppendFallback, AppendOutcome, AppendSource};
use super::options::ChunkPolicy;
use super::{BackupSession, Broken, FileRecord};

/// Bytes of input gathered before a batch is hashed and sealed in parallel.
pub const BATCH_BYTES: usize = 1 << 20;
/// Bytes asked of a reader per call.
const READ_BYTES: u64 = 512 << 10;
/// Batches queued between the reader and the workers.
const BATCH_QUEUE: usize = 1;
/// Sealed blobs queued between the workers and the pack writer.
const BLOB_QUEUE: usize = 16;
/// Batches being hashed and sealed at once.
const BATCHES_IN_FLIGHT: u64 = 2;
/// Per-file messages (done, failed) the reader gathers before handing them over in one:
/// sent one by one, a tree of small files cost a channel hand-over, and its futex calls, per
/// file (174,918 `futex` calls for 43,000 files before).
const FILE_MSGS: usize = 256;

/// Where the bytes of one file come from.
pub(super) enum Source<'a> {
    /// A local file (found by `add_dir`): the files cache may spare reading it.
    Path(PathBuf),
    /// A stream added by the app.
    Stream(Box<dyn AppendSource + 'a>),
}

/// One file for the reader stage.
pub(super) struct Job<'a> {
    pub(super) file: usize,
    pub(super) source: Source<'a>,
    /// The file's path in the snapshot (for progress and reports).
    pub(super) name: String,
    /// How it is cut.
    pub(super) chunking: ChunkPolicy,
    /// The zstd level of its chunks (`None`: stored raw).
    pub(super) level: Option<i32>,
    /// Append mode: the old version to resume from, or why there is none.
    pub(super) append: Option<std::result::Result<AppendBase, AppendFallback>>,
}

/// The chunkers of a run, one per policy: the pipeline asks for a file's cutter by its
/// policy, so policies can differ between files of one backup.
pub(super) struct Chunkers {
    set: ChunkerSet,
}

impl Chunkers {
    pub(super) fn new(default: Chunker) -> Result<Chunkers> {
        Ok(Chunkers { set: ChunkerSet::new(default)? })
    }

    /// A cutter for a stream whose bytes start at `offset` of the file.
    pub(super) fn cutter(&self, cutting: Cutting, offset: u64) -> StreamCutter<'_> {
        self.set.cutter(cutting, offset)
    }
}

/// One chunk cut from a batch: whose, where, and how it is compressed.
struct Cut {
    file: usize,
    range: Range<usize>,
    level: Option<i32>,
}

#[derive(Default)]
pub(super) struct Batch {
    data: Vec<u8>,
    chunks: Vec<Cut>,
}

/// What the reader sends to the workers, in file order.
pub(super) enum Msg {
    Batch(Batch),
    /// The first chunks of `file` are those of its old version (append mode), `bytes` long;
    /// sent before any batch with the rest of its chunks.
    Reuse {
        file: usize,
        chunks: Vec<ChunkId>,
        bytes: u64,
    },
    /// All bytes of `file` were read (its chunks are in batches sent before or with this):
    /// it is `size` bytes long, `read` of which were read from the source (append mode reads
    /// less, or more when it falls back); `known` when the files cache had an older version.
    Done {
        file: usize,
        size: u64,
        read: u64,
        known: bool,
        append: Option<AppendOutcome>,
    },
    /// `file` could not be read; chunks already sent for it are ignored.
    Failed {
        file: usize,
        path: PathBuf,
        error: Error,
    },
    /// Several `Done` and `Failed`, in order.
    Files(Vec<Msg>),
}

/// True when every chunk a files-cache entry lists is in the index and their lengths add up to
/// the file's size. Anything else (a pruned chunk, a damaged or tampered cache) and the file
/// is read again: a snapshot never records a file its chunks do not make up.
pub(super) fn chunks_make_up(index: &crate::index::Index, chunks: &[ChunkId], size: u64) -> bool {
    let mut total = 0u64;
    for c in chunks {
        match index.lookup(&c.0) {
            Ok(Some(loc)) if loc.kind == BlobKind::Data => total = total.saturating_add(u64::from(loc.raw_len)),
            _ => return false,
        }
    }
    total == size
}

impl BackupSession<'_> {
    /// Runs the reader, workers and pack writer over `jobs` until all are done. Returns the
    /// files that could not be read (they are left out of the snapshot).
    ///
    /// A failed run (cancelled, or a store error) marks the session broken: blobs the pack
    /// writer had not written yet are lost, and files of earlier calls may refer to them. The
    /// packs it did write are kept in the session's list (and handed to the repository when
    /// the session is dropped), so the next backup names them in its index file.
    pub(super) fn run_jobs(&mut self, jobs: Vec<Job<'_>>) -> Result<Vec<(usize, PathBuf, Error)>> {
        let repo: &Repository = self.repo;
        let mut tally = Tally {
            files: &mut self.files,
            summary: &mut self.summary,
            counts: &mut self.counts,
            appends: &mut self.appends,
        };
        let chunkers = Chunkers::new(repo.chunker.clone())?;
        let keys = &repo.keys;
        let index = &repo.index;
        let store = repo.store.as_ref();
        let cache = &self.cache;
        let progress = self.progress.clone();
        let cancel = self.cancel.clone();
        let probe = &*self.probe;
        let seen = Mutex::new(std::mem::take(&mut self.seen));
        let mut packer = self.data_packs.take().expect("the data pack writer is present between runs");

        let mut failures = Vec::new();
        let (worked, read, wrote) = std::thread::scope(|scope| {
            let (msg_tx, msg_rx) = sync_channel::<Msg>(BATCH_QUEUE);
            let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(BATCH_QUEUE + 2);
            let (blob_tx, blob_rx) = sync_channel::<SealedBlob>(BLOB_QUEUE);
            let progress_ref = progress.as_ref();
            let reader = scope.spawn(move || {
                let mut stage = ReadStage {
                    chunkers: &chunkers,
                    cache,
                    keys,
                    progress: progress_ref,
                    cancel: &cancel,
                    probe,
                    out: msg_tx,
                    recycled: recycle_rx,
                    batch: Batch::default(),
                    files_done: Vec::new(),
                };
                stage.run(jobs)
            });
            let writer = scope.spawn(move || -> (Result<()>, PackWriter, Vec<WrittenPack>) {
                let mut written = Vec::new();
                for b in blob_rx {
                    match packer.add(store, keys, b) {
                        Ok(w) => written.extend(w),
                        Err(e) => {
                            // Packs the failed call finished before the error are real too.
                            written.extend(packer.take_written());
                            return (Err(e), packer, written);
                        }
                    }
                }
                (Ok(()), packer, written)
            });
            let shared = Shared { keys, index, seen: &seen, progress: progress.as_ref(), dicts: &self.dicts };
            let worked = tally.work(&shared, &msg_rx, &recycle_tx, &blob_tx, &mut failures);
            // Stop the other stages whatever happened here, then collect their results.
            drop(msg_rx);
            drop(blob_tx);
            let read =
                reader.join().unwrap_or_else(|_| Err(Error::InvalidArgument("the reader thread panicked".into())));
            let wrote = writer.join().map_err(|_| Error::InvalidArgument("the pack writer panicked".into()));
            (worked, read, wrote)
        });
        self.seen = seen.into_inner().unwrap_or_else(PoisonError::into_inner);
        let target = self.repo.settings.pack_target_size as usize;
        let wrote = match wrote {
            Ok((result, packer, written)) => {
                // Written packs are real, whatever else failed: they join the index.
                for w in written {
                    self.record_pack(w);
                }
                result.map(|()| packer)
            }
            Err(e) => Err(e),
        };
        // The cause, not its echoes: a cancellation or a store error stops the other stages,
        // which then fail with "backup stopped".
        let outcome = match (worked, read, wrote) {
            (_, Err(e), _) if e.kind() == ErrorKind::Cancelled => Err(e),
            (_, _, Err(e)) | (Err(e), _, _) | (_, Err(e), _) => Err(e),
            (Ok(()), Ok(()), Ok(packer)) => Ok(packer),
        };
        match outcome {
            Ok(packer) => {
                self.data_packs = Some(packer);
                Ok(failures)
            }
            Err(e) => {
                self.broken = Some(if e.kind() == ErrorKind::Cancelled {
                    Broken::Cancelled
                } else {
                    Broken::Failed(e.to_string())
                });
                self.data_packs = Some(PackWriter::new(BlobKind::Data, target));
                Err(e)
            }
        }
    }
}

/// A processed batch: each chunk's id, and its sealed blob when it is new.
type Sealed = Vec<(ChunkId, Option<SealedBlob>)>;

/// The session state the workers update.
struct Tally<'s> {
    files: &'s mut Vec<FileRecord>,
    summary: &'s mut Summary,
    /// Files new, changed and unchanged since the files cache's backup.
    counts: &'s mut (u64, u64, u64),
    /// What append mode did for each file that asked for it.
    appends: &'s mut Vec<AppendOutcome>,
}

/// What the workers read: keys, the index, this session's set of stored blobs.
struct Shared<'a> {
    keys: &'a KeySet,
    index: &'a Index,
    seen: &'a Mutex<HashSet<Id>>,
    progress: &'a dyn Progress,
    /// Compresses with the session's dictionary, or samples for one (backup/dictionary.rs).
    dicts: &'a super::dictionary::DictHook,
}

impl Tally<'_> {
    /// The workers' side: hash, dedup and seal every batch; record chunk lists and failures.
    fn work(
        &mut self,
        sh: &Shared<'_>,
        msgs: &Receiver<Msg>,
        recycle: &SyncSender<Vec<u8>>,
        blobs: &SyncSender<SealedBlob>,
        failures: &mut Vec<(usize, PathBuf, Error)>,
    ) -> Result<()> {
        let Shared { keys, index, seen, progress, dicts } = *sh;
        // Hash, look up and seal one batch (on the rayon pool).
        let process = |batch: &Batch| -> Sealed {
            batch
                .chunks
                .par_iter()
                .map(|cut| {
                    let data = &batch.data[cut.range.clone()];
                    let id = keys.chunk_id(data);
                    let fresh =
                        !index.contains(&id.0) && seen.lock().unwrap_or_else(PoisonError::into_inner).insert(id.0);
                    (id, fresh.then(|| dicts.seal(keys, id, data, cut.level)))
                })
                .collect()
        };
        type Done = (u64, Batch, Sealed);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Done>();
        rayon::in_place_scope(|scope| -> Result<()> {
            // Batches run concurrently (no idle cores at the end of each), but their results
            // are applied in order, since a file's chunks span batches.
            let (mut issued, mut applied) = (0u64, 0u64);
            let mut ready: BTreeMap<u64, (Batch, Sealed)> = BTreeMap::new();
            for msg in msgs.iter().flat_map(|m| match m {
                Msg::Files(list) => list,
                m => vec![m],
            }) {
                match msg {
                    Msg::Batch(batch) => {
                        let (tx, seq) = (done_tx.clone(), issued);
                        issued += 1;
                        let process = &process;
                        scope.spawn(move |_| {
                            let results = process(&batch);
                            let _ = tx.send((seq, batch, results));
                        });
                        while issued - applied > BATCHES_IN_FLIGHT {
                            let Ok((seq, batch, results)) = done_rx.recv() else { break };
                            ready.insert(seq, (batch, results));
                            if !self.apply_ready(&mut ready, &mut applied, blobs, recycle, progress) {
                                // The pack writer stopped: its error is reported by the caller.
                                return Ok(());
                            }
                        }
                    }
                    Msg::Reuse { file, chunks, bytes } => {
                        self.summary.chunks += chunks.len() as u64;
                        self.files[file].chunks.extend(chunks);
                        progress.advance(bytes, 0);
                    }
                    Msg::Done { file, size, read, known, append } => {
                        self.summary.bytes_read += read;
                        self.appends.extend(append);
                        *if known { &mut self.counts.1 } else { &mut self.counts.0 } += 1;
                        self.finish_file(file, size);
                        progress.advance(0, 1);
                    }
                    Msg::Failed { file, path, error } => {
                        let rec = &mut self.files[file];
                        rec.failed = true;
                        rec.chunks.clear();
                        failures.push((file, path, error));
                        progress.advance(0, 1);
                    }
                    Msg::Files(_) => unreachable!("flattened above"),
                }
            }
            while applied < issued {
                let Ok((seq, batch, results)) = done_rx.recv() else { break };
                ready.insert(seq, (batch, results));
                if !self.apply_ready(&mut ready, &mut applied, blobs, recycle, progress) {
                    return Ok(());
                }
            }
            Ok(())
        })
    }

    /// Applies the processed batches that are next in order; false when the pack writer has
    /// stopped.
    fn apply_ready(
        &mut self,
        ready: &mut BTreeMap<u64, (Batch, Sealed)>,
        applied: &mut u64,
        blobs: &SyncSender<SealedBlob>,
        recycle: &SyncSender<Vec<u8>>,
        progress: &dyn Progress,
    ) -> bool {
        while let Some((mut batch, results)) = ready.remove(applied) {
            *applied += 1;
            if !self.apply_batch(&batch, results, blobs) {
                return false;
            }
            progress.advance(batch.data.len() as u64, 0);
            batch.data.clear();
            let _ = recycle.try_send(std::mem::take(&mut batch.data));
        }
        true
    }

    /// Records a processed batch's chunk ids and sends its new blobs, in id order, to the pack
    /// writer. False when the pack writer has stopped.
    fn apply_batch(&mut self, batch: &Batch, results: Sealed, blobs: &SyncSender<SealedBlob>) -> bool {
        let mut fresh = Vec::new();
        for (cut, (id, sealed)) in batch.chunks.iter().zip(results) {
            self.files[cut.file].chunks.push(id);
            self.summary.chunks += 1;
            if let Some(s) = sealed {
                self.summary.new_data_blobs += 1;
                self.summary.new_raw_bytes += u64::from(s.raw_len);
                self.summary.new_stored_bytes += s.bytes.len() as u64;
                fresh.push(s);
            }
        }
        // In id order, not input order, inside each batch (the pack writer then shuffles them
        // further); the attack tests' weakened configuration keeps the input order.
        if !crate::pack::weakened::weakened() {
            fresh.sort_unstable_by_key(|s| s.id);
        }
        fresh.into_iter().all(|s| blobs.send(s).is_ok())
    }

    fn finish_file(&mut self, file: usize, size: u64) {
        self.files[file].size = size;
        self.summary.files += 1;
        self.summary.total_bytes += size;
    }
}

/// The reader stage: reading and cutting into batches (the walk settled the files the files
/// cache vouches for). Checks the
/// cancel token before each file and each read, so a cancellation stops the run within one
/// read ([`READ_BYTES`]).
pub(super) struct ReadStage<'a> {
    pub(super) chunkers: &'a Chunkers,
    pub(super) cache: &'a FilesCache,
    pub(super) keys: &'a KeySet,
    pub(super) progress: &'a dyn Progress,
    pub(super) cancel: &'a CancelToken,
    /// Counts the files opened.
    pub(super) probe: &'a super::Probe,
    pub(super) out: SyncSender<Msg>,
    pub(super) recycled: Receiver<Vec<u8>>,
    /// The batch being filled.
    pub(super) batch: Batch,
    /// Per-file messages not handed over yet.
    pub(super) files_done: Vec<Msg>,
}

/// What reading one file gave: its size and the bytes read from the source.
pub(super) struct FileRead {
    pub(super) size: u64,
    pub(super) read: u64,
    pub(super) append: Option<AppendOutcome>,
}

impl ReadStage<'_> {
    /// Bytes in the current batch.
    pub(super) fn batch_len(&self) -> usize {
        self.batch.data.len()
    }

    /// Drops the batch's bytes from `pos` on (bytes no chunk was cut from).
    pub(super) fn truncate_batch(&mut self, pos: usize) {
        debug_assert!(self.batch.chunks.last().is_none_or(|c| c.range.end <= pos));
        self.batch.data.truncate(pos);
    }

    /// The keyed chunk id of the batch's bytes from `pos` on.
    pub(super) fn chunk_id_from(&self, pos: usize) -> ChunkId {
        self.keys.chunk_id(&self.batch.data[pos..])
    }

    /// Hands `m` to the workers, in order with everything sent before it; per-file messages
    /// are gathered and handed over [`FILE_MSGS`] at a time (or before the next other one).
    pub(super) fn send(&mut self, m: Msg) -> Result<()> {
        if matches!(m, Msg::Done { .. } | Msg::Failed { .. }) {
            self.files_done.push(m);
            if self.files_done.len() < FILE_MSGS {
                return Ok(());
            }
        } else {
            self.flush_files()?;
            return self.out.send(m).map_err(|_| Error::InvalidArgument("backup stopped".into()));
        }
        self.flush_files()
    }

    /// Hands over the gathered per-file messages.
    fn flush_files(&mut self) -> Result<()> {
        if self.files_done.is_empty() {
            return Ok(());
        }
        let list = std::mem::take(&mut self.files_done);
        self.out.send(Msg::Files(list)).map_err(|_| Error::InvalidArgument("backup stopped".into()))
    }

    /// Reads every job, in order.
    fn run(&mut self, jobs: Vec<Job<'_>>) -> Result<()> {
        for job in jobs {
            self.cancel.check()?;
            let Job { file, source, name, chunking, level, append } = job;
            let cutting = chunking.cutting(append.is_some());
            let chunkers = self.chunkers;
            let (mut source, path): (Box<dyn AppendSource + '_>, PathBuf) = match source {
                Source::Stream(s) => (s, PathBuf::new()),
                Source::Path(path) => {
                    // The walk already took the files the files cache vouches for: this one
                    // is read.
                    self.probe.opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match File::open(&path) {
                        Ok(f) => (Box::new(f), path),
                        Err(e) => {
                            self.send(Msg::Failed { file, path, error: e.into() })?;
                            continue;
                        }
                    }
                }
            };
            let known = !path.as_os_str().is_empty() && self.cache.knows(path.as_os_str().as_bytes());
            self.progress.current(&name);
            let result = match append {
                Some(base) => self.read_append(file, source.as_mut(), base, name, cutting, level),
                None => source.read_from(0).map_err(Error::from).and_then(|mut r| {
                    let pos = self.batch.data.len();
                    let read = self.read_file(file, &mut r, &mut chunkers.cutter(cutting, 0), level, pos)?;
                    Ok(FileRead { size: read, read, append: None })
                }),
            };
            match result {
                Ok(FileRead { size, read, append }) => self.send(Msg::Done { file, size, read, known, append })?,
                Err(e) if e.kind() == ErrorKind::Cancelled => return Err(e),
                Err(e) => self.send(Msg::Failed { file, path, error: e })?,
            }
        }
        if !self.batch.chunks.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            self.send(Msg::Batch(batch))?;
        }
        self.flush_files()
    }

    /// Reads one file to its end into the current batch, cutting chunks and sending full
    /// batches on. The file's bytes start at `pos` in the batch (bytes already there from
    /// `pos` on are its first ones: append mode puts the old last chunk there). Returns the
    /// bytes read from `reader`.
    pub(super) fn read_file(
        &mut self,
        file: usize,
        reader: &mut dyn std::io::Read,
        cutter: &mut StreamCutter<'_>,
        level: Option<i32>,
        mut pos: usize,
    ) -> Result<u64> {
        let mut eof = false;
        let mut total = 0u64;
        loop {
            while let Some(len) = cutter.next_cut(&self.batch.data[pos..], eof) {
                if len == 0 {
                    break;
                }
                self.batch.chunks.push(Cut { file, range: pos..pos + len, level });
                pos += len;
            }
            if eof {
                return Ok(total);
            }
            if self.batch.data.len() >= BATCH_BYTES && !self.batch.chunks.is_empty() {
                // Hand the full batch on; the uncut tail starts the next one.
                let mut next =
                    self.recycled.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES + READ_BYTES as usize));
                next.clear();
                next.extend_from_slice(&self.batch.data[pos..]);
                let full = std::mem::replace(&mut self.batch, Batch { data: next, chunks: Vec::new() });
                self.send(Msg::Batch(full))?;
                pos = 0;
            }
            let n = self.read_some(reader, READ_BYTES)?;
            total += n;
            eof = n < READ_BYTES;
        }
    }

    /// Appends up to `want` bytes of `reader` to the batch (fewer only at the end of the
    /// stream); checks the cancel token first.
    pub(super) fn read_some(&mut self, reader: &mut dyn std::io::Read, want: u64) -> Result<u64> {
        self.cancel.check()?;
        let before = self.batch.data.len();
        loop {
            match reader.take(want).read_to_end(&mut self.batch.data) {
                Ok(n) => return Ok(n as u64),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.batch.data.truncate(before);
                    return Err(e.into());
                }
            }
        }
    }
}

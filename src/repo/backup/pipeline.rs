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

use crate::chunker::Chunker;
use crate::crypto::KeySet;
use crate::error::{Error, Result};
use crate::format::blob::{self, BlobKind, SealedBlob};
use crate::format::snapshot::Summary;
use crate::id::{ChunkId, Id};
use crate::index::Index;
use crate::pack::{PackWriter, WrittenPack};
use crate::progress::Progress;
use crate::repo::files_cache::{FilesCache, Stamp};
use crate::repo::Repository;

use super::{BackupSession, FileRecord};

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

/// Where the bytes of one file come from.
pub(super) enum Source<'a> {
    Path(PathBuf),
    Reader(Box<dyn Read + Send + 'a>),
}

pub(super) struct Job<'a> {
    pub(super) file: usize,
    pub(super) source: Source<'a>,
}

#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    chunks: Vec<(usize, Range<usize>)>,
}

/// What the reader sends to the workers, in file order.
enum Msg {
    Batch(Batch),
    /// All bytes of `file` were read (its chunks are in batches sent before or with this);
    /// `known` when the files cache had an older version of it.
    Done {
        file: usize,
        size: u64,
        known: bool,
    },
    /// `file` could not be read; chunks already sent for it are ignored.
    Failed {
        file: usize,
        path: PathBuf,
        error: Error,
    },
    /// `file` is unchanged: its chunks come from the files cache.
    Cached {
        file: usize,
        size: u64,
        chunks: Vec<ChunkId>,
    },
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
    pub(super) fn run_jobs(&mut self, jobs: Vec<Job<'_>>) -> Result<Vec<(usize, PathBuf, Error)>> {
        let repo: &Repository = self.repo;
        let mut tally = Tally { files: &mut self.files, summary: &mut self.summary, counts: &mut self.counts };
        let chunker = repo.chunker.clone();
        let keys = &repo.keys;
        let index = &repo.index;
        let store = repo.store.as_ref();
        let level = repo.settings.zstd_level;
        let cache = &self.cache;
        let started = self.started;
        let progress = self.progress.clone();
        let seen = Mutex::new(std::mem::take(&mut self.seen));
        let mut packer = self.data_packs.take().expect("the data pack writer is present between runs");

        let mut failures = Vec::new();
        let outcome = std::thread::scope(|scope| -> Result<(PackWriter, Vec<WrittenPack>)> {
            let (msg_tx, msg_rx) = sync_channel::<Msg>(BATCH_QUEUE);
            let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(BATCH_QUEUE + 2);
            let (blob_tx, blob_rx) = sync_channel::<SealedBlob>(BLOB_QUEUE);
            let reader = scope.spawn(move || read_all(jobs, &chunker, cache, index, started, &msg_tx, &recycle_rx));
            let writer = scope.spawn(move || -> Result<(PackWriter, Vec<WrittenPack>)> {
                let mut written = Vec::new();
                for b in blob_rx {
                    written.extend(packer.add(store, keys, b)?);
                }
                Ok((packer, written))
            });
            let shared = Shared { keys, index, seen: &seen, level, progress: progress.as_ref() };
            let worked = tally.work(&shared, &msg_rx, &recycle_tx, &blob_tx, &mut failures);
            // Stop the other stages whatever happened here, then collect their results.
            drop(msg_rx);
            drop(blob_tx);
            let read =
                reader.join().unwrap_or_else(|_| Err(Error::InvalidArgument("the reader thread panicked".into())));
            let wrote =
                writer.join().unwrap_or_else(|_| Err(Error::InvalidArgument("the pack writer panicked".into())));
            worked?;
            read?;
            wrote
        });
        self.seen = seen.into_inner().unwrap_or_else(PoisonError::into_inner);
        let (packer, written) = match outcome {
            Ok(x) => x,
            Err(e) => {
                // The pack writer's unwritten blobs are lost with it, and files of earlier
                // calls may refer to them: this session must not commit.
                self.broken = Some(e.to_string());
                self.data_packs = Some(PackWriter::new(BlobKind::Data, self.repo.settings.pack_target_size as usize));
                return Err(e);
            }
        };
        self.data_packs = Some(packer);
        for w in written {
            self.record_pack(w);
        }
        Ok(failures)
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
}

/// What the workers read: keys, the index, this session's set of stored blobs.
struct Shared<'a> {
    keys: &'a KeySet,
    index: &'a Index,
    seen: &'a Mutex<HashSet<Id>>,
    level: i32,
    progress: &'a dyn Progress,
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
        let Shared { keys, index, seen, level, progress } = *sh;
        // Hash, look up and seal one batch (on the rayon pool).
        let process = |batch: &Batch| -> Sealed {
            batch
                .chunks
                .par_iter()
                .map(|(_, r)| {
                    let data = &batch.data[r.clone()];
                    let id = keys.chunk_id(data);
                    let fresh =
                        !index.contains(&id.0) && seen.lock().unwrap_or_else(PoisonError::into_inner).insert(id.0);
                    (id, fresh.then(|| blob::seal(keys, BlobKind::Data, id.0, data, Some(level))))
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
            for msg in msgs {
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
                    Msg::Done { file, size, known } => {
                        self.summary.bytes_read += size;
                        *if known { &mut self.counts.1 } else { &mut self.counts.0 } += 1;
                        self.finish_file(file, size);
                        progress.advance(0, 1);
                    }
                    Msg::Cached { file, size, chunks } => {
                        self.summary.chunks += chunks.len() as u64;
                        self.files[file].chunks = chunks;
                        self.counts.2 += 1;
                        self.finish_file(file, size);
                        progress.advance(size, 1);
                    }
                    Msg::Failed { file, path, error } => {
                        let rec = &mut self.files[file];
                        rec.failed = true;
                        rec.chunks.clear();
                        failures.push((file, path, error));
                        progress.advance(0, 1);
                    }
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
        for ((file, _), (id, sealed)) in batch.chunks.iter().zip(results) {
            self.files[*file].chunks.push(id);
            self.summary.chunks += 1;
            if let Some(s) = sealed {
                self.summary.new_data_blobs += 1;
                self.summary.new_raw_bytes += u64::from(s.raw_len);
                self.summary.new_stored_bytes += s.bytes.len() as u64;
                fresh.push(s);
            }
        }
        // In id order, not input order, inside each batch.
        fresh.sort_unstable_by_key(|s| s.id);
        fresh.into_iter().all(|s| blobs.send(s).is_ok())
    }

    fn finish_file(&mut self, file: usize, size: u64) {
        self.files[file].size = size;
        self.summary.files += 1;
        self.summary.total_bytes += size;
    }
}

/// The reader stage: files cache lookups, then reading and cutting into batches.
fn read_all(
    jobs: Vec<Job<'_>>,
    chunker: &Chunker,
    cache: &FilesCache,
    index: &Index,
    started: (i64, u32),
    out: &SyncSender<Msg>,
    recycled: &Receiver<Vec<u8>>,
) -> Result<()> {
    let mut batch = Batch { data: Vec::with_capacity(BATCH_BYTES + (READ_BYTES as usize)), chunks: Vec::new() };
    let send = |m: Msg| out.send(m).map_err(|_| Error::InvalidArgument("backup stopped".into()));
    for job in jobs {
        let (mut reader, path): (Box<dyn Read + Send + '_>, PathBuf) = match job.source {
            Source::Reader(r) => (r, PathBuf::new()),
            Source::Path(path) => {
                let opened = File::open(&path).and_then(|f| {
                    let md = f.metadata()?;
                    Ok((f, md))
                });
                let (f, md) = match opened {
                    Ok(x) => x,
                    Err(e) => {
                        send(Msg::Failed { file: job.file, path, error: e.into() })?;
                        continue;
                    }
                };
                let stamp = Stamp::of(&md);
                let hit = cache
                    .get(path.as_os_str().as_bytes(), &stamp)
                    .filter(|chunks| !stamp.is_racy(started) && chunks_make_up(index, chunks, stamp.size));
                if let Some(chunks) = hit {
                    send(Msg::Cached { file: job.file, size: stamp.size, chunks: chunks.to_vec() })?;
                    continue;
                }
                (Box::new(f), path)
            }
        };
        let known = !path.as_os_str().is_empty() && cache.knows(path.as_os_str().as_bytes());
        match read_file(job.file, &mut reader, chunker, &mut batch, out, recycled) {
            Ok(size) => send(Msg::Done { file: job.file, size, known })?,
            Err(e) => send(Msg::Failed { file: job.file, path, error: e })?,
        }
    }
    if !batch.chunks.is_empty() {
        send(Msg::Batch(batch))?;
    }
    Ok(())
}

/// Reads one file into the current batch, cutting chunks and sending full batches on.
fn read_file(
    file: usize,
    reader: &mut dyn Read,
    chunker: &Chunker,
    batch: &mut Batch,
    out: &SyncSender<Msg>,
    recycled: &Receiver<Vec<u8>>,
) -> Result<u64> {
    let mut pos = batch.data.len();
    let mut eof = false;
    let mut total = 0u64;
    loop {
        while let Some(len) = chunker.next_cut(&batch.data[pos..], eof) {
            if len == 0 {
                break;
            }
            batch.chunks.push((file, pos..pos + len));
            pos += len;
        }
        if eof {
            return Ok(total);
        }
        if batch.data.len() >= BATCH_BYTES && !batch.chunks.is_empty() {
            // Hand the full batch on; the uncut tail starts the next one.
            let mut next =
                recycled.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES + READ_BYTES as usize));
            next.clear();
            next.extend_from_slice(&batch.data[pos..]);
            let full = std::mem::replace(batch, Batch { data: next, chunks: Vec::new() });
            out.send(Msg::Batch(full)).map_err(|_| Error::InvalidArgument("backup stopped".into()))?;
            pos = 0;
        }
        let before = batch.data.len();
        let n = loop {
            match reader.take(READ_BYTES).read_to_end(&mut batch.data) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    batch.data.truncate(before);
                    return Err(e.into());
                }
            }
        };
        total += n as u64;
        eof = (n as u64) < READ_BYTES;
    }
}

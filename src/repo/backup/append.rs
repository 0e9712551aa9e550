//! Append-aware streams: a file that only grows (one message log per conversation) costs its
//! new bytes, not its whole history.
//!
//! The old version of the file (from the files cache, or from the parent snapshot) gives its
//! size and chunk list. Before trusting it, the stream is checked cheaply: it must be at least
//! as long as the old version, and the bytes where the old last chunk lay must still have that
//! chunk's keyed id (one chunk re-read, at most [`Chunker::max_size`]). Then every old chunk
//! but the last is reused without reading, and chunking resumes at the start of the old last
//! chunk, so only that chunk and the new bytes are read.
//!
//! Why resuming there gives exactly the chunks a full read would: every cut of the old version
//! but the last was found before the end of the data (a content-defined cut, or the maximum
//! size), and FastCDC finds the same first cut whatever follows it (`fastcdc::v2020::cut_gear`
//! scans forward from the chunk's start with a hash that starts at zero, and the mask used at
//! each position depends only on the distance from that start). So the end of the second-to-
//! last chunk is a cut a full read of the grown file also makes, and from there the chunking
//! only depends on the bytes that follow. The last chunk's end, on the other hand, was the end
//! of the data, not a cut: the new bytes may extend it. The tests compare resumed and full
//! chunk lists (`tests/integration/append.rs`).
//!
//! What the cheap check does not see: a change inside the old prefix *before* the last chunk
//! (a byte rewritten in place) goes unnoticed, and the snapshot keeps the old bytes there.
//! That is the contract of append mode: use it only for data that only grows. A change that
//! shrinks the file, or touches its last old chunk, is caught and the file is read in full,
//! and [`AppendOutcome::fallback`] says why.
//!
//! Measured (tests/integration/append.rs, default chunker, 256 KiB maximum chunk; the figures
//! vary a little with each repository's chunker key): 1 MiB appended to a 200 MiB log reads
//! 1.05–1.08 MiB instead of 201 MiB (runs: 1,099,960 and 1,128,875 bytes), cutting only about
//! 20 of its ~2,620 chunks afresh; 64 unchanged 4 MiB append streams read 3.2–3.4 MiB of
//! 256 MiB, their last chunks; `packtool backup --append-only` read 1,049,180 bytes.
//! The check costs one chunk per stream, so a nightly run over thousands of conversation logs
//! reads about (new bytes + streams × 64 KiB average chunk).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use crate::chunker::stream::Cutting;
use crate::error::Result;
use crate::format::blob::BlobKind;
use crate::format::snapshot::{NodeContent, Tree};
use crate::id::{ChunkId, SnapshotId, TreeId};
use crate::index::Index;

use super::pipeline::{FileRead, Msg, ReadStage};
use super::BackupSession;

/// A source of bytes that can tell its length and read from an offset: what an append stream
/// needs to re-read only its tail. Every `Read + Seek + Send` type is one (a [`File`], a
/// [`Cursor`]); a plain reader that cannot seek is one through [`Sequential`].
///
/// [`File`]: std::fs::File
/// [`Cursor`]: std::io::Cursor
#[allow(clippy::len_without_is_empty)] // a length to compare with the old size, not a collection
pub trait AppendSource: Send {
    /// The source's length in bytes now. An error of kind
    /// [`Unsupported`](io::ErrorKind::Unsupported) means the source cannot tell: append mode
    /// then reads it in full.
    ///
    /// # Errors
    /// The source's I/O errors.
    fn len(&mut self) -> io::Result<u64>;

    /// A reader of the bytes from `offset` to the end. Called at most twice per backup of a
    /// stream (the tail, then, if the old version does not match, from 0).
    ///
    /// # Errors
    /// The source's I/O errors; [`Unsupported`](io::ErrorKind::Unsupported) when it cannot
    /// start there.
    fn read_from(&mut self, offset: u64) -> io::Result<Box<dyn Read + Send + '_>>;
}

impl<T: Read + Seek + Send> AppendSource for T {
    fn len(&mut self) -> io::Result<u64> {
        self.seek(SeekFrom::End(0))
    }

    fn read_from(&mut self, offset: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        self.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(self))
    }
}

/// A reader that cannot seek, as an [`AppendSource`]: it is read once from the start, and
/// append mode falls back to that full read ([`AppendFallback::CannotSeek`]).
#[derive(Debug)]
pub struct Sequential<R> {
    reader: R,
    used: bool,
}

impl<R> Sequential<R> {
    /// Wraps `reader`.
    pub fn new(reader: R) -> Sequential<R> {
        Sequential { reader, used: false }
    }
}

impl<R: Read + Send> AppendSource for Sequential<R> {
    fn len(&mut self) -> io::Result<u64> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "a sequential stream cannot tell its length"))
    }

    fn read_from(&mut self, offset: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        if offset != 0 || self.used {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "a sequential stream is read once, from its start"));
        }
        self.used = true;
        Ok(Box::new(&mut self.reader))
    }
}

/// What append mode did for one file (see [`BackupOutcome::appends`](crate::BackupOutcome::appends)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The file's path in the snapshot.
    pub path: String,
    /// Its size now.
    pub size: u64,
    /// Bytes read from the source: the old last chunk and the new bytes when resumed; when it
    /// fell back, whatever the check read plus the whole file.
    pub bytes_read: u64,
    /// Chunks of the old version taken without reading (all but its last).
    pub reused_chunks: u64,
    /// Their bytes.
    pub reused_bytes: u64,
    /// Why the file was read in full; `None` when chunking resumed.
    pub fallback: Option<AppendFallback>,
}

impl AppendOutcome {
    /// True when chunking resumed from the old version.
    #[must_use]
    pub fn resumed(&self) -> bool {
        self.fallback.is_none()
    }
}

/// Why an append stream was read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendFallback {
    /// No old version: no files-cache entry and no regular file at this path in the parent
    /// snapshot (or no parent snapshot, or its trees could not be read).
    NoOldVersion,
    /// A chunk of the old version is not in the index (pruned, or its index file is damaged),
    /// or the chunks do not add up to its size.
    OldChunksMissing,
    /// The source cannot tell its length or start at an offset.
    CannotSeek,
    /// The source is shorter than the old version: it was truncated or replaced.
    Shrunk {
        /// The old version's size.
        old_size: u64,
        /// The source's length now.
        new_size: u64,
    },
    /// The bytes where the old version's last chunk lay changed: the file was rewritten.
    LastChunkChanged,
    /// The stream is cut page-aligned ([`ChunkPolicy::Database`](crate::ChunkPolicy::Database)),
    /// which reads the SQLite header at the file's start.
    PageAligned,
}

impl fmt::Display for AppendFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendFallback::NoOldVersion => f.write_str("no old version in the files cache or the parent snapshot"),
            AppendFallback::OldChunksMissing => f.write_str("chunks of the old version are not in the index"),
            AppendFallback::CannotSeek => f.write_str("the source cannot seek"),
            AppendFallback::Shrunk { old_size, new_size } => {
                write!(f, "shorter than the old version ({new_size} bytes, was {old_size})")
            }
            AppendFallback::LastChunkChanged => f.write_str("the old version's last chunk changed"),
            AppendFallback::PageAligned => f.write_str("page-aligned chunking reads the file from its start"),
        }
    }
}

/// The old version of an append stream, checked against the index: its chunks are all there
/// and add up to its size.
#[derive(Debug)]
pub(super) struct AppendBase {
    chunks: Vec<ChunkId>,
    size: u64,
    /// Raw length of the last chunk (0 for an empty file).
    last_len: u64,
}

impl AppendBase {
    /// The old version with these chunks, if the index has every one of them as data and
    /// their lengths add up to `size`.
    pub(super) fn checked(
        index: &Index,
        size: u64,
        chunks: &[ChunkId],
    ) -> std::result::Result<AppendBase, AppendFallback> {
        let mut total = 0u64;
        let mut last_len = 0u64;
        for c in chunks {
            match index.lookup(&c.0) {
                Ok(Some(loc)) if loc.kind == BlobKind::Data => {
                    last_len = u64::from(loc.raw_len);
                    total = total.saturating_add(last_len);
                }
                _ => return Err(AppendFallback::OldChunksMissing),
            }
        }
        if total != size {
            return Err(AppendFallback::OldChunksMissing);
        }
        Ok(AppendBase { chunks: chunks.to_vec(), size, last_len })
    }
}

/// The parent snapshot's folders, loaded as append streams need them.
#[derive(Default)]
pub(super) struct ParentTrees {
    /// The parent's root tree: `None` until first needed, then `Some(None)` when there is no
    /// usable parent.
    root: Option<Option<TreeId>>,
    /// Folder trees by path (`None`: not a folder there, or unreadable).
    dirs: HashMap<Vec<Vec<u8>>, Option<Tree>>,
}

impl BackupSession<'_> {
    /// Chooses the snapshot whose files append streams resume from (by default the newest
    /// snapshot of the repository when the session needs it first).
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) when the snapshot does not exist; errors
    /// reading it.
    pub fn set_parent(&mut self, snapshot: SnapshotId) -> Result<()> {
        let record = self.repo.load_snapshot(&snapshot)?;
        self.parent = ParentTrees { root: Some(Some(record.root)), dirs: HashMap::new() };
        Ok(())
    }

    /// The old version of the file at `parts` in the snapshot: the files-cache entry of
    /// `local` (a local file's absolute path) if it has a sound one, else the parent
    /// snapshot's file.
    pub(super) fn old_version(
        &mut self,
        parts: &[Vec<u8>],
        local: Option<&[u8]>,
    ) -> std::result::Result<AppendBase, AppendFallback> {
        if let Some((size, chunks)) = local.and_then(|p| self.cache.old_version(p)) {
            if let Ok(base) = AppendBase::checked(&self.repo.index, size, chunks) {
                return Ok(base);
            }
        }
        match self.parent_file(parts) {
            Some((size, chunks)) => AppendBase::checked(&self.repo.index, size, &chunks),
            None => Err(AppendFallback::NoOldVersion),
        }
    }

    /// Size and chunks of the regular file at `parts` in the parent snapshot.
    fn parent_file(&mut self, parts: &[Vec<u8>]) -> Option<(u64, Vec<ChunkId>)> {
        let (name, dirs) = parts.split_last()?;
        let tree = self.parent_dir(dirs)?;
        match &tree.nodes.iter().find(|n| n.name == *name)?.content {
            NodeContent::File { size, chunks } => Some((*size, chunks.clone())),
            _ => None,
        }
    }

    /// The parent snapshot's folder at `dirs`, loading the trees on the way once.
    fn parent_dir(&mut self, dirs: &[Vec<u8>]) -> Option<&Tree> {
        if self.parent.root.is_none() {
            let root = self
                .repo
                .newest_snapshot()
                .ok()
                .flatten()
                .and_then(|(_, id)| self.repo.load_snapshot(&id).ok())
                .map(|r| r.root);
            self.parent.root = Some(root);
        }
        let root = self.parent.root.flatten()?;
        for depth in 0..=dirs.len() {
            let key = &dirs[..depth];
            if self.parent.dirs.contains_key(key) {
                continue;
            }
            let tree = match key.split_last() {
                None => self.repo.load_tree(&root).ok(),
                Some((last, above)) => {
                    let sub = self.parent.dirs.get(above).and_then(Option::as_ref).and_then(|t| {
                        t.nodes.iter().find(|n| n.name == *last).and_then(|n| match n.content {
                            NodeContent::Dir { tree } => Some(tree),
                            _ => None,
                        })
                    });
                    sub.and_then(|id| self.repo.load_tree(&id).ok())
                }
            };
            self.parent.dirs.insert(key.to_vec(), tree);
        }
        self.parent.dirs.get(dirs).and_then(Option::as_ref)
    }
}

impl ReadStage<'_> {
    /// Reads an append stream: resumes from `base` when the source still matches it, else
    /// reads it in full. Either way the outcome says what happened.
    pub(super) fn read_append(
        &mut self,
        file: usize,
        source: &mut dyn AppendSource,
        base: std::result::Result<AppendBase, AppendFallback>,
        path: String,
        cutting: Cutting,
        level: Option<i32>,
    ) -> Result<FileRead> {
        let mut read = 0u64;
        let fallback = match base {
            Err(why) => why,
            // Page groups need the header at the file's start: no resuming.
            Ok(_) if cutting == Cutting::SniffPages => AppendFallback::PageAligned,
            Ok(base) => match self.resume(file, source, &base, cutting, level, &mut read)? {
                Ok((size, reused_chunks)) => {
                    let reused_bytes = base.size - base.last_len;
                    let outcome =
                        AppendOutcome { path, size, bytes_read: read, reused_chunks, reused_bytes, fallback: None };
                    return Ok(FileRead { size, read, append: Some(outcome) });
                }
                Err(why) => why,
            },
        };
        let mut reader = source.read_from(0)?;
        let pos = self.batch_len();
        let chunkers = self.chunkers;
        let size = self.read_file(file, &mut reader, &mut chunkers.cutter(cutting, 0), level, pos)?;
        read += size;
        let outcome =
            AppendOutcome { path, size, bytes_read: read, reused_chunks: 0, reused_bytes: 0, fallback: Some(fallback) };
        Ok(FileRead { size, read, append: Some(outcome) })
    }

    /// Checks the source against the old version and, when it matches, reuses the old chunks
    /// but the last and chunks the rest. Returns the file's size and the chunks reused, or why
    /// it cannot resume (nothing of the file has been sent then). Adds the bytes read to
    /// `read`.
    fn resume(
        &mut self,
        file: usize,
        source: &mut dyn AppendSource,
        base: &AppendBase,
        cutting: Cutting,
        level: Option<i32>,
        read: &mut u64,
    ) -> Result<std::result::Result<(u64, u64), AppendFallback>> {
        let unsupported = |e: &io::Error| e.kind() == io::ErrorKind::Unsupported;
        let len = match source.len() {
            Ok(len) => len,
            Err(e) if unsupported(&e) => return Ok(Err(AppendFallback::CannotSeek)),
            Err(e) => return Err(e.into()),
        };
        if len < base.size {
            return Ok(Err(AppendFallback::Shrunk { old_size: base.size, new_size: len }));
        }
        let start = base.size - base.last_len;
        let mut reader = match source.read_from(start) {
            Ok(r) => r,
            Err(e) if unsupported(&e) => return Ok(Err(AppendFallback::CannotSeek)),
            Err(e) => return Err(e.into()),
        };
        // The old last chunk, re-read into the batch: if it matches, it is where chunking
        // resumes, so it is read only once.
        let pos = self.batch_len();
        let got = self.read_some(&mut reader, base.last_len)?;
        *read += got;
        let (reused, last) = match base.chunks.split_last() {
            Some((last, reused)) => (reused, Some(last)),
            None => (&[][..], None),
        };
        if let Some(last) = last {
            if got < base.last_len || self.chunk_id_from(pos) != *last {
                self.truncate_batch(pos);
                return Ok(Err(AppendFallback::LastChunkChanged));
            }
        }
        let reused_chunks = reused.len() as u64;
        if !reused.is_empty() {
            self.send(Msg::Reuse { file, chunks: reused.to_vec(), bytes: start })?;
        }
        let chunkers = self.chunkers;
        let n = self.read_file(file, &mut reader, &mut chunkers.cutter(cutting, start), level, pos)?;
        *read += n;
        Ok(Ok((start + got + n, reused_chunks)))
    }
}

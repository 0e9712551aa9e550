//! Restoring without a folder: [`Repository::restore_to`] hands each folder, file and symlink
//! of a snapshot (or of the included paths) to a [`RestoreSink`], in walk order, each file as
//! a stream. An app writes them into its own database; [`MemorySink`] keeps them in memory.
//!
//! # How the data is read
//!
//! Every file's chunks are resolved through the index first (no pack read). The files' chunks,
//! in the order the sink will read them, form one stream; it is read a *window* at a time:
//! the next chunks up to [`WINDOW`] bytes of plaintext (at least one chunk), their distinct
//! blobs planned into coalesced ranges (`pack::coalesce`: one read per run of nearby blobs of
//! a pack) and opened. Many small files (one conversation's messages and attachments) thus
//! cost a few pack reads, not one per chunk; a chunk shared by several files of a window is
//! read once; memory stays at one window whatever the restore's size. The sink reads each
//! file through a `Read` that walks the window and loads the next one when it runs out. Only
//! packs that hold chunks of the planned files are read (plus the tree packs on the way).
//!
//! # Failures
//!
//! A file whose chunks cannot be read fails alone: its `Read` returns an error (after the
//! bytes before the damaged chunk), the sink should drop what it received, and the path goes
//! to [`RestoreReport::failed`] with the library's error, whatever the sink returned; the next
//! file goes on. A file whose chunks are not in the index fails without reaching the sink. An
//! error the sink returns for its own reasons stops the restore and is returned. A cancelled
//! restore returns [`Error::Cancelled`] (checked between files and before each window's reads).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, Read};
use std::ops::Range;

use rayon::prelude::*;

use super::file_reader::io_error;
use super::plan::Entry;
use super::{cancelled, check_cancel, RestoreReport};
use crate::error::{Error, Location, Result};
use crate::format::snapshot::{Node, NodeContent, SnapshotRecord};
use crate::id::{Id, PackId};
use crate::pack::{coalesce, BlobLocation, PackReader};
use crate::progress::{CancelToken, Progress};
use crate::repo::{FileMeta, Repository};

/// Plaintext bytes of chunks read ahead at a time (at least one chunk).
pub(crate) const WINDOW: u64 = 16 << 20;

/// Receives what [`Repository::restore_to`] restores, in walk order: each folder before what it
/// holds, names in byte order within a folder.
pub trait RestoreSink {
    /// A folder. By default, nothing.
    ///
    /// # Errors
    /// An error stops the restore and is returned.
    fn dir(&mut self, _path: &str, _meta: &FileMeta) -> Result<()> {
        Ok(())
    }

    /// A file of `size` bytes, whose content `data` streams. Reading `data` to its end is not
    /// required (what is not read is not fetched, unless it shares a window with later files).
    /// When `data` fails, the file is damaged: drop what was received; the file is reported
    /// failed whatever this returns.
    ///
    /// # Errors
    /// An error that does not come from `data` stops the restore and is returned.
    fn file(&mut self, path: &str, meta: &FileMeta, size: u64, data: &mut dyn Read) -> Result<()>;

    /// A symlink to `target` (bytes as recorded). By default, nothing.
    ///
    /// # Errors
    /// An error stops the restore and is returned.
    fn symlink(&mut self, _path: &str, _target: &[u8], _meta: &FileMeta) -> Result<()> {
        Ok(())
    }
}

/// What [`Repository::restore_to`] restores, and how.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// Snapshot paths to restore (each with everything below it); empty means everything.
    pub include: Vec<String>,
    /// Take no lock (for a read-only repository; a prune running at the same time then shows
    /// as missing data).
    pub no_lock: bool,
    /// Receives progress: each file's path as it starts, then its bytes.
    pub progress: Option<std::sync::Arc<dyn Progress>>,
    /// Stops the restore (see [`Repository::restore_to`]).
    pub cancel: Option<CancelToken>,
}

/// A [`RestoreSink`] that keeps everything in memory: for tests and small restores (one
/// conversation), not for a whole device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemorySink {
    /// Files by path, with their content.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Folders.
    pub dirs: BTreeSet<String>,
    /// Symlinks by path, with their targets.
    pub symlinks: BTreeMap<String, Vec<u8>>,
    /// Mode and time of every entry.
    pub meta: BTreeMap<String, FileMeta>,
}

impl RestoreSink for MemorySink {
    fn dir(&mut self, path: &str, meta: &FileMeta) -> Result<()> {
        self.dirs.insert(path.to_string());
        self.meta.insert(path.to_string(), *meta);
        Ok(())
    }

    fn file(&mut self, path: &str, meta: &FileMeta, size: u64, data: &mut dyn Read) -> Result<()> {
        // The size comes from a tree: reserve no more than a window on its word.
        let mut content = Vec::with_capacity(usize::try_from(size.min(WINDOW)).unwrap_or(0));
        data.read_to_end(&mut content)?;
        self.files.insert(path.to_string(), content);
        self.meta.insert(path.to_string(), *meta);
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &[u8], meta: &FileMeta) -> Result<()> {
        self.symlinks.insert(path.to_string(), target.to_vec());
        self.meta.insert(path.to_string(), *meta);
        Ok(())
    }
}

fn meta_of(node: &Node) -> FileMeta {
    FileMeta { mode: node.mode, mtime_secs: node.mtime_secs, mtime_nanos: node.mtime_nanos }
}

impl Repository {
    /// Restores `snapshot` (or the paths in `options.include`) into `sink`: every folder,
    /// file (as a stream) and symlink, in walk order (each folder before what it holds).
    ///
    /// Only the packs holding chunks of the restored files are read, plus the trees on the
    /// way. The files' chunks are read ahead 16 MiB of plaintext at a time, each such window
    /// with one read per run of nearby blobs of a pack: a conversation of many small files
    /// costs a few pack reads, and memory stays at one window whatever the restore's size.
    ///
    /// A file whose data cannot be read fails alone: its stream returns an error, the sink
    /// should drop what it received, and the path goes to [`RestoreReport::failed`]; the
    /// restore goes on with the next file.
    ///
    /// Returns a report like [`Repository::restore`]'s: files that could not be read are in
    /// [`RestoreReport::failed`], every other file went to the sink.
    ///
    /// # Errors
    /// [`Error::Cancelled`] once `options.cancel` is cancelled; an error the sink returns for
    /// its own reasons; and, as for [`Repository::restore`], an unreadable root tree or an
    /// include path that does not exist.
    pub fn restore_to(
        &self,
        snapshot: &SnapshotRecord,
        options: &SinkOptions,
        sink: &mut dyn RestoreSink,
    ) -> Result<RestoreReport> {
        let cancel = options.cancel.as_ref();
        check_cancel(cancel)?;
        let _lock =
            if options.no_lock { None } else { Some(self.lock(crate::repo::lock::LockKind::Shared, "restore")?) };
        let mut plan = self.plan(snapshot, &options.include)?;
        let mut report = RestoreReport { failed: std::mem::take(&mut plan.failed), ..Default::default() };

        // Every file's chunks, resolved (in parallel), laid end to end in reading order.
        let resolved: Vec<Result<Vec<BlobLocation>>> = plan
            .files
            .par_iter()
            .map(|f| match &f.node.content {
                NodeContent::File { size, chunks } => self.resolve_chunks(chunks, *size),
                _ => Err(Error::malformed("tree", None, "a planned file is not a file")),
            })
            .collect();
        let mut stream: Vec<(Id, BlobLocation)> = Vec::new();
        let mut spans: Vec<Result<Range<usize>>> = Vec::with_capacity(plan.files.len());
        for (f, r) in plan.files.iter().zip(resolved) {
            spans.push(r.map(|locs| {
                let NodeContent::File { chunks, .. } = &f.node.content else { unreachable!("resolved above") };
                let start = stream.len();
                stream.extend(chunks.iter().map(|c| c.0).zip(locs));
                start..stream.len()
            }));
        }
        let mut feed = Feed {
            reader: PackReader::new(self.store.as_ref(), &self.keys),
            pack_lens: self.index.packs().map(|p| (p.id, u64::from(p.len))).collect(),
            stream,
            window: 0..0,
            chunks: HashMap::new(),
            cancel,
        };

        let progress: &dyn Progress = options.progress.as_deref().unwrap_or(&crate::NoProgress);
        let total = plan
            .files
            .iter()
            .map(|f| if let NodeContent::File { size, .. } = f.node.content { size } else { 0 })
            .fold(0, u64::saturating_add);
        progress.start("restore", total, plan.files.len() as u64);
        for entry in &plan.order {
            match *entry {
                Entry::Dir(i) => {
                    let d = &plan.dirs[i];
                    sink.dir(&d.path, &meta_of(&d.node))?;
                    report.dirs += 1;
                }
                Entry::Link(i) => {
                    let l = &plan.links[i];
                    if let NodeContent::Symlink { target } = &l.node.content {
                        sink.symlink(&l.path, target, &meta_of(&l.node))?;
                        report.symlinks += 1;
                    }
                }
                Entry::File(i) => {
                    check_cancel(cancel)?;
                    let f = &plan.files[i];
                    let span = match std::mem::replace(&mut spans[i], Ok(0..0)) {
                        Ok(span) => span,
                        Err(e) => {
                            report.failed.push((f.path.clone(), e));
                            continue;
                        }
                    };
                    let NodeContent::File { size, .. } = f.node.content else { continue };
                    progress.current(&f.path);
                    let mut data = FileStream {
                        feed: &mut feed,
                        path: &f.path,
                        next: span.start,
                        end: span.end,
                        within: 0,
                        failure: None,
                        bytes: 0,
                    };
                    let sent = sink.file(&f.path, &meta_of(&f.node), size, &mut data);
                    let (failure, bytes) = (data.failure.take(), data.bytes);
                    progress.advance(bytes, 1);
                    match (failure, sent) {
                        (Some(e), _) if e.kind() == crate::ErrorKind::Cancelled => return Err(e),
                        (Some(e), _) => report.failed.push((f.path.clone(), e)),
                        (None, Err(e)) => return Err(e),
                        (None, Ok(())) => {
                            report.files += 1;
                            report.bytes += bytes;
                        }
                    }
                }
            }
        }
        progress.finish();
        if cancelled(cancel) {
            return Err(Error::Cancelled);
        }
        report.failed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(report)
    }
}

/// The chunks of every file, in reading order, read a window at a time (see the module
/// documentation).
struct Feed<'r> {
    reader: PackReader<'r>,
    pack_lens: HashMap<PackId, u64>,
    stream: Vec<(Id, BlobLocation)>,
    /// The stream positions whose chunks `chunks` holds.
    window: Range<usize>,
    /// The window's distinct chunks: plaintext, or why it could not be read.
    chunks: HashMap<Id, Result<Vec<u8>>>,
    cancel: Option<&'r CancelToken>,
}

impl Feed<'_> {
    /// The plaintext of the chunk at stream position `at`, loading the window that starts
    /// there when it is not in the current one.
    fn chunk(&mut self, at: usize) -> Result<&[u8]> {
        if !self.window.contains(&at) {
            self.load(at)?;
        }
        match self.chunks.get(&self.stream[at].0) {
            Some(Ok(plain)) => Ok(plain),
            Some(Err(e)) => Err(e.duplicate()),
            None => Err(Error::Io(io::Error::other("a chunk of the window was not read"))),
        }
    }

    /// Reads the window starting at stream position `start`.
    fn load(&mut self, start: usize) -> Result<()> {
        check_cancel(self.cancel)?;
        self.chunks.clear();
        let mut wanted: Vec<(Id, BlobLocation)> = Vec::new();
        let mut seen: HashSet<Id> = HashSet::new();
        let (mut end, mut bytes) = (start, 0u64);
        while end < self.stream.len() && (end == start || bytes < WINDOW) {
            let (id, loc) = self.stream[end];
            if seen.insert(id) {
                bytes += u64::from(loc.raw_len);
                wanted.push((id, loc));
            }
            end += 1;
        }
        let (wanted, ranges) = coalesce(wanted);
        for r in &ranges {
            let blobs = &wanted[r.blobs.clone()];
            let chunks = &mut self.chunks;
            let read = self.reader.read_range(r, self.pack_lens.get(&r.pack).copied(), blobs, |(id, _), opened| {
                chunks.insert(*id, opened.map(|o| o.plain.to_vec()));
            });
            if let Err(e) = read {
                for (id, _) in blobs {
                    self.chunks.insert(*id, Err(e.duplicate()));
                }
            }
        }
        self.window = start..end;
        Ok(())
    }
}

/// One file's content, as the sink reads it.
struct FileStream<'f, 'r> {
    feed: &'f mut Feed<'r>,
    path: &'f str,
    /// Stream position of the chunk being read, and one past the file's last.
    next: usize,
    end: usize,
    /// Bytes of the current chunk already handed out.
    within: usize,
    /// Why the file cannot be read, once a chunk failed.
    failure: Option<Error>,
    /// Bytes handed out.
    bytes: u64,
}

impl Read for FileStream<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failure {
            return Err(io_error(e.duplicate().at(Location::SnapshotPath(self.path.to_string()))));
        }
        while !buf.is_empty() && self.next < self.end {
            let data = match self.feed.chunk(self.next) {
                Ok(data) => data,
                Err(e) => {
                    let located = e.duplicate().at(Location::SnapshotPath(self.path.to_string()));
                    self.failure = Some(e);
                    return Err(io_error(located));
                }
            };
            let rest = data.get(self.within..).unwrap_or_default();
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.within += n;
            if self.within >= data.len() {
                self.next += 1;
                self.within = 0;
            }
            if n > 0 {
                self.bytes += n as u64;
                return Ok(n);
            }
        }
        Ok(0)
    }
}

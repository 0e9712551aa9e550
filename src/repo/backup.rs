//! Backup: walk sources, chunk, dedup, seal, pack; then trees, index file, snapshot.
//!
//! Pipeline per batch of about [`BATCH_BYTES`]: files are read and cut sequentially into one
//! batch buffer; the batch's chunks are hashed in parallel (rayon); new chunks (not in the
//! index, not seen earlier in this session) are compressed and sealed in parallel; sealed blobs
//! go to the pack writer. Memory is bounded by the batch and one pack per kind, whatever the
//! input size.
//!
//! Durability order at commit: packs, then the index file naming them, then the snapshot.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::crypto::random_array;
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::{self, BlobKind};
use crate::format::index::IndexFile;
use crate::format::snapshot::{self, valid_name, Node, NodeContent, SnapshotRecord, Summary, Tree, MODE_MASK};
use crate::id::{ChunkId, Id, IndexId, SnapshotId, TreeId};
use crate::pack::{PackWriter, WrittenPack};
use crate::repo::{now, Repository};
use crate::store::FileKind;

/// Bytes of input gathered before a batch is hashed and sealed in parallel.
pub const BATCH_BYTES: usize = 8 << 20;
/// Bytes asked of a reader per call.
const READ_BYTES: u64 = 1 << 20;

/// Metadata of a file or directory added to a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime_secs: i64,
    /// Nanoseconds part.
    pub mtime_nanos: u32,
}

impl FileMeta {
    fn from_fs(md: &fs::Metadata) -> FileMeta {
        FileMeta {
            mode: md.permissions().mode() & MODE_MASK,
            mtime_secs: md.mtime(),
            mtime_nanos: u32::try_from(md.mtime_nsec()).unwrap_or(0),
        }
    }

    fn default_dir() -> FileMeta {
        FileMeta { mode: 0o755, mtime_secs: 0, mtime_nanos: 0 }
    }
}

enum Entry {
    File { meta: FileMeta, file: usize },
    Dir { meta: FileMeta, children: BTreeMap<Vec<u8>, Entry> },
    Symlink { meta: FileMeta, target: Vec<u8> },
}

struct FileRecord {
    size: u64,
    chunks: Vec<ChunkId>,
}

#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    chunks: Vec<(usize, Range<usize>)>,
}

/// A backup in progress. Add sources, then [`commit`](BackupSession::commit). Dropping a
/// session without committing leaves only packs that no index names; a later backup's packs
/// are written fresh, and prune removes the leftovers.
pub struct BackupSession<'r> {
    repo: &'r mut Repository,
    root: BTreeMap<Vec<u8>, Entry>,
    files: Vec<FileRecord>,
    batch: Batch,
    data_packs: PackWriter,
    tree_packs: PackWriter,
    written: Vec<WrittenPack>,
    seen: HashSet<Id>,
    summary: Summary,
    paths: Vec<String>,
    warnings: Vec<(PathBuf, Error)>,
}

/// What a committed backup did.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The new snapshot.
    pub snapshot: SnapshotId,
    /// Its record.
    pub record: SnapshotRecord,
    /// Files that could not be read and were left out, with why.
    pub warnings: Vec<(PathBuf, Error)>,
}

impl Repository {
    /// Starts a backup.
    pub fn backup(&mut self) -> BackupSession<'_> {
        let target = self.settings.pack_target_size as usize;
        BackupSession {
            repo: self,
            root: BTreeMap::new(),
            files: Vec::new(),
            batch: Batch::default(),
            data_packs: PackWriter::new(BlobKind::Data, target),
            tree_packs: PackWriter::new(BlobKind::Tree, target),
            written: Vec::new(),
            seen: HashSet::new(),
            summary: Summary::default(),
            paths: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

fn split_path(path: &str) -> Result<Vec<Vec<u8>>> {
    let parts: Vec<Vec<u8>> = path.split('/').filter(|p| !p.is_empty()).map(|p| p.as_bytes().to_vec()).collect();
    if let Some(bad) = parts.iter().find(|p| !valid_name(p)) {
        return Err(Error::InvalidArgument(format!(
            "{path:?}: {:?} is not a valid file name",
            String::from_utf8_lossy(bad)
        )));
    }
    Ok(parts)
}

impl BackupSession<'_> {
    /// The directory map at `parts` (created with default metadata where missing).
    fn dir_at(&mut self, parts: &[Vec<u8>]) -> Result<&mut BTreeMap<Vec<u8>, Entry>> {
        let mut cur = &mut self.root;
        for p in parts {
            let e = cur
                .entry(p.clone())
                .or_insert_with(|| Entry::Dir { meta: FileMeta::default_dir(), children: BTreeMap::new() });
            match e {
                Entry::Dir { children, .. } => cur = children,
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "{} is already a file in this backup",
                        String::from_utf8_lossy(p)
                    )))
                }
            }
        }
        Ok(cur)
    }

    /// Adds the contents of the local folder `dir` at `at` in the snapshot ("" for the root).
    /// Files that cannot be read are skipped and reported in [`BackupOutcome::warnings`].
    ///
    /// # Errors
    /// [`Error::Io`] when `dir` itself cannot be read; repository write errors.
    pub fn add_dir(&mut self, dir: &Path, at: &str) -> Result<()> {
        let parts = split_path(at)?;
        let md = fs::metadata(dir).at(|| Location::Path(dir.to_path_buf()))?;
        if !md.is_dir() {
            return Err(Error::InvalidArgument(format!("{} is not a folder", dir.display())));
        }
        self.paths.push(fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()).display().to_string());
        if let Some((last, parents)) = parts.split_last() {
            let parent = self.dir_at(parents)?;
            let e = parent
                .entry(last.clone())
                .or_insert_with(|| Entry::Dir { meta: FileMeta::from_fs(&md), children: BTreeMap::new() });
            if let Entry::Dir { meta, .. } = e {
                *meta = FileMeta::from_fs(&md);
            }
        }
        self.summary.dirs += u64::from(!parts.is_empty());
        self.walk(dir, &parts)
    }

    fn walk(&mut self, dir: &Path, at: &[Vec<u8>]) -> Result<()> {
        let mut entries: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        for e in fs::read_dir(dir).at(|| Location::Path(dir.to_path_buf()))? {
            let e = e.at(|| Location::Path(dir.to_path_buf()))?;
            entries.push((e.file_name().as_bytes().to_vec(), e.path()));
        }
        entries.sort();
        for (name, path) in entries {
            let md = match fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(e) => {
                    self.warnings.push((path, e.into()));
                    continue;
                }
            };
            let ft = md.file_type();
            let mut sub = at.to_vec();
            sub.push(name.clone());
            if ft.is_dir() {
                let meta = FileMeta::from_fs(&md);
                self.dir_at(at)?.insert(name, Entry::Dir { meta, children: BTreeMap::new() });
                self.summary.dirs += 1;
                if let Err(e) = self.walk(&path, &sub) {
                    if matches!(e.kind(), crate::ErrorKind::Io) {
                        self.warnings.push((path, e));
                    } else {
                        return Err(e);
                    }
                }
            } else if ft.is_symlink() {
                match fs::read_link(&path) {
                    Ok(t) => {
                        let meta = FileMeta::from_fs(&md);
                        self.dir_at(at)?
                            .insert(name, Entry::Symlink { meta, target: t.as_os_str().as_bytes().to_vec() });
                        self.summary.symlinks += 1;
                    }
                    Err(e) => self.warnings.push((path, e.into())),
                }
            } else if ft.is_file() {
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        self.warnings.push((path, e.into()));
                        continue;
                    }
                };
                if let Err(e) = self.add_file_inner(at, name, file, FileMeta::from_fs(&md)) {
                    if matches!(e.kind(), crate::ErrorKind::Io) {
                        self.warnings.push((path, e));
                    } else {
                        return Err(e);
                    }
                }
            } else {
                self.warnings
                    .push((path, Error::InvalidArgument("not a regular file, folder or symlink: skipped".into())));
            }
        }
        Ok(())
    }

    /// Adds a stream as a file at `path` in the snapshot.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad path; the reader's errors; repository write errors.
    pub fn add_stream(&mut self, path: &str, reader: impl Read, meta: FileMeta) -> Result<()> {
        let parts = split_path(path)?;
        let (name, parents) =
            parts.split_last().ok_or_else(|| Error::InvalidArgument("a stream needs a file name".into()))?;
        self.add_file_inner(parents, name.clone(), reader, meta).at(|| Location::SnapshotPath(path.to_string()))
    }

    fn add_file_inner(&mut self, at: &[Vec<u8>], name: Vec<u8>, mut reader: impl Read, meta: FileMeta) -> Result<()> {
        // Refuse a path through a file before reading anything.
        self.dir_at(at)?;
        let file = self.files.len();
        self.files.push(FileRecord { size: 0, chunks: Vec::new() });
        match self.read_chunks(file, &mut reader) {
            Ok(size) => {
                self.files[file].size = size;
                self.summary.files += 1;
                self.summary.total_bytes += size;
                self.dir_at(at)?.insert(name, Entry::File { meta, file });
                Ok(())
            }
            Err(e) => {
                // Drop the chunks of the half-read file from the batch (they were all added
                // after any other file's), so the file leaves no trace.
                self.batch.chunks.retain(|(f, _)| *f != file);
                Err(e)
            }
        }
    }

    /// Reads `reader` into the batch, cutting chunks; returns the bytes read.
    fn read_chunks(&mut self, file: usize, reader: &mut dyn Read) -> Result<u64> {
        let chunker = self.repo.chunker.clone();
        let mut pos = self.batch.data.len();
        let mut eof = false;
        let mut total = 0u64;
        loop {
            while let Some(len) = chunker.next_cut(&self.batch.data[pos..], eof) {
                if len == 0 {
                    break;
                }
                self.batch.chunks.push((file, pos..pos + len));
                pos += len;
            }
            if eof {
                return Ok(total);
            }
            if self.batch.data.len() >= BATCH_BYTES {
                let tail = self.batch.data[pos..].to_vec();
                self.flush_batch()?;
                self.batch.data.extend_from_slice(&tail);
                pos = 0;
            }
            let before = self.batch.data.len();
            let n = loop {
                match reader.take(READ_BYTES).read_to_end(&mut self.batch.data) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.batch.data.truncate(before);
                        return Err(e.into());
                    }
                }
            };
            total += n as u64;
            self.summary.bytes_read += n as u64;
            eof = (n as u64) < READ_BYTES;
        }
    }

    /// Hashes, dedups, seals and packs the current batch.
    fn flush_batch(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let keys = &self.repo.keys;
        let ids: Vec<ChunkId> = batch.chunks.par_iter().map(|(_, r)| keys.chunk_id(&batch.data[r.clone()])).collect();
        let mut fresh = Vec::new();
        for (i, ((file, _), id)) in batch.chunks.iter().zip(&ids).enumerate() {
            self.files[*file].chunks.push(*id);
            if !self.repo.index.contains(&id.0) && self.seen.insert(id.0) {
                fresh.push(i);
            }
        }
        self.summary.chunks += ids.len() as u64;
        let level = Some(self.repo.settings.zstd_level);
        let sealed: Vec<blob::SealedBlob> = fresh
            .par_iter()
            .map(|&i| blob::seal(keys, BlobKind::Data, ids[i].0, &batch.data[batch.chunks[i].1.clone()], level))
            .collect();
        for s in sealed {
            self.summary.new_data_blobs += 1;
            self.summary.new_raw_bytes += u64::from(s.raw_len);
            self.summary.new_stored_bytes += s.bytes.len() as u64;
            if self.data_packs.add(s) {
                self.flush_pack(BlobKind::Data)?;
            }
        }
        // Keep the allocation for the next batch.
        self.batch.data = batch.data;
        self.batch.data.clear();
        Ok(())
    }

    fn flush_pack(&mut self, kind: BlobKind) -> Result<()> {
        let writer = match kind {
            BlobKind::Data => &mut self.data_packs,
            BlobKind::Tree => &mut self.tree_packs,
        };
        if let Some(w) = writer.flush(self.repo.store.as_ref(), &self.repo.keys)? {
            self.repo.index.add_pack(w.info, &w.record.entries);
            self.summary.new_packs += 1;
            self.written.push(w);
        }
        Ok(())
    }

    /// Seals one directory's tree (children first) and returns its id.
    fn store_tree(&mut self, children: BTreeMap<Vec<u8>, Entry>, path: &str) -> Result<TreeId> {
        let mut nodes = Vec::with_capacity(children.len());
        for (name, entry) in children {
            let (meta, content) = match entry {
                Entry::File { meta, file } => {
                    let rec = std::mem::replace(&mut self.files[file], FileRecord { size: 0, chunks: Vec::new() });
                    (meta, NodeContent::File { size: rec.size, chunks: rec.chunks })
                }
                Entry::Dir { meta, children } => (
                    meta,
                    NodeContent::Dir {
                        tree: self.store_tree(children, &crate::repo::join(path, &String::from_utf8_lossy(&name)))?,
                    },
                ),
                Entry::Symlink { meta, target } => (meta, NodeContent::Symlink { target }),
            };
            nodes.push(Node {
                name,
                mode: meta.mode,
                mtime_secs: meta.mtime_secs,
                mtime_nanos: meta.mtime_nanos,
                content,
            });
        }
        let bytes = Tree { nodes }.encode()?;
        if bytes.len() > blob::MAX_BLOB_RAW as usize {
            // A folder with about a million entries, or a file of millions of chunks: refused
            // here rather than written as a blob no reader accepts.
            return Err(Error::LimitExceeded {
                what: "encoded folder size",
                found: bytes.len() as u64,
                limit: u64::from(blob::MAX_BLOB_RAW),
            }
            .at(Location::SnapshotPath(if path.is_empty() { "/".into() } else { path.to_string() })));
        }
        let id = self.repo.keys.tree_id(&bytes);
        if !self.repo.index.contains(&id.0) && self.seen.insert(id.0) {
            let s = blob::seal(&self.repo.keys, BlobKind::Tree, id.0, &bytes, Some(self.repo.settings.zstd_level));
            self.summary.new_tree_blobs += 1;
            self.summary.new_raw_bytes += u64::from(s.raw_len);
            self.summary.new_stored_bytes += s.bytes.len() as u64;
            if self.tree_packs.add(s) {
                self.flush_pack(BlobKind::Tree)?;
            }
        }
        Ok(id)
    }

    /// Finishes the backup: seals the last chunks and the trees, writes the packs, the index
    /// file and the snapshot, and updates the local index cache.
    ///
    /// # Errors
    /// Repository write errors; nothing is referenced by a snapshot until every pack and the
    /// index file are durable.
    pub fn commit(mut self, tags: Vec<String>) -> Result<BackupOutcome> {
        self.flush_batch()?;
        let root = std::mem::take(&mut self.root);
        let root_id = self.store_tree(root, "")?;
        self.summary.dirs += 1;
        self.flush_pack(BlobKind::Data)?;
        self.flush_pack(BlobKind::Tree)?;
        debug_assert!(self.data_packs.is_empty() && self.tree_packs.is_empty());

        let repo = &mut *self.repo;
        let mut index_id = None;
        if !self.written.is_empty() {
            let file = IndexFile { packs: self.written.iter().map(|w| w.record.clone()).collect() };
            let bytes = crate::format::index::encode(repo.keys.meta_key(), &file, &random_array()?);
            let id = IndexId(Id::hash_of(&bytes));
            repo.store.put(FileKind::Index, &id.to_hex(), &bytes)?;
            index_id = Some(id);
        }

        let (sequence, previous) = match repo.newest_snapshot()? {
            Some((seq, id)) => (seq + 1, Some(id)),
            None => (1, None),
        };
        let now = now();
        let record = SnapshotRecord {
            time_secs: now.0,
            time_nanos: now.1,
            hostname: hostname(),
            username: std::env::var("USER").unwrap_or_default(),
            tags,
            paths: std::mem::take(&mut self.paths),
            root: root_id,
            sequence,
            previous,
            summary: std::mem::take(&mut self.summary),
            flags: 0,
            program: format!("packvault {}", env!("CARGO_PKG_VERSION")),
        };
        let bytes = snapshot::encode(repo.keys.meta_key(), &record, &random_array()?)?;
        let id = SnapshotId(Id::hash_of(&bytes));
        repo.store.put(FileKind::Snapshot, &id.to_hex(), &bytes)?;
        repo.record_seen(record.sequence, id)?;
        repo.refresh_index_cache(index_id)?;
        Ok(BackupOutcome { snapshot: id, record, warnings: std::mem::take(&mut self.warnings) })
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

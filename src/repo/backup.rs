//! Backup: walk sources, chunk, dedup, seal, pack; then trees, index file, snapshot.
//!
//! The pipeline (format-spec.md §8 for the write order), three stages running at once:
//!
//! 1. a **reader** thread walks the file list: files whose (size, mtime, ctime, inode) match
//!    the files cache are taken without being read; the others are read into batches of about
//!    [`BATCH_BYTES`](pipeline::BATCH_BYTES) and cut into chunks (FastCDC is sequential per stream);
//! 2. the **workers** (rayon, the calling thread waits on them) hash each batch's chunks, look
//!    them up in the index and in this session's set, and compress and seal the new ones;
//! 3. a **pack writer** thread collects sealed blobs into packs and writes them, so disk
//!    writes never stall hashing.
//!
//! The stages are joined by bounded channels and batch buffers are recycled: memory is a few
//! batches plus one pack, whatever the input size. Durability order at commit: packs, then the
//! index file naming them, then the snapshot.
//!
//! Per stream, the app chooses the chunking policy (the pipeline takes a chunker per file, not
//! one per run), compression (already-compressed media does not shrink: zstd's attempt is
//! time spent before the chunk is stored raw anyway) and append mode (a log that grew by
//! 1 MiB reads about 1.1 MiB instead of its whole history: `backup/append.rs` gives the
//! reasoning and the figures). The reader checks a [`CancelToken`] before each file and each
//! read (512 KiB): a cancelled session writes no snapshot, and the packs it wrote are named by
//! the next backup's index file and reused, so a cancelled nightly run on a phone loses only
//! the chunks that were not yet in a written pack.
//!
//! Rooms: this file is the session API ([`BackupSession`], [`BackupOutcome`], the `add_*`
//! methods and `commit`); `backup/pipeline.rs` runs the three stages; `backup/walk.rs` lists
//! the folders of `add_dir`; `backup/trees.rs` seals the folders into trees at commit;
//! `backup/append.rs` resumes streams that grew; `backup/options.rs`
//! holds the choices; `backup/entries.rs` the folder tree a session builds before commit.

mod append;
mod dictionary;
mod entries;
mod options;
mod pipeline;
#[cfg(test)]
mod tests;
mod trees;
mod walk;

pub use append::{AppendFallback, AppendOutcome, AppendSource, Sequential};
pub use dictionary::DictionaryOutcome;
pub use entries::FileMeta;
pub use options::{ChunkPolicy, CompressionHint, DirOptions, SnapshotInfo, StreamOptions};

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::random_array;
use crate::error::{CacheWarning, Error, Location, Result, ResultExt};
use crate::format::blob::BlobKind;
use crate::format::index::IndexFile;
use crate::format::snapshot::{self, valid_name, SnapshotRecord, Summary, MAX_TREE_DEPTH};
use crate::id::{Id, IndexId, SnapshotId};
use crate::index::Index;
use crate::pack::{PackWriter, WrittenPack};
use crate::progress::{CancelToken, NoProgress, Progress};
use crate::repo::files_cache::FilesCache;
use crate::repo::folder_cache::FolderCache;
use crate::repo::lock::{hostname, LockKind, RepoLock};
use crate::repo::{now, Repository};
use crate::store::FileKind;

use append::ParentTrees;
pub(crate) use entries::Probe;
use entries::{Entry, FileRecord, Fold};
use pipeline::{Job, Source};

/// A backup in progress. Add sources, then [`commit`](BackupSession::commit). Dropping a
/// session without committing (or cancelling it) writes no snapshot and leaves only packs that
/// no index file names yet: the next backup names them in its index file and reuses their
/// chunks, and prune removes what no snapshot needs.
pub struct BackupSession<'r> {
    repo: &'r mut Repository,
    root: BTreeMap<Vec<u8>, Entry>,
    files: Vec<FileRecord>,
    data_packs: Option<PackWriter>,
    tree_packs: PackWriter,
    written: Vec<WrittenPack>,
    seen: HashSet<Id>,
    summary: Summary,
    paths: Vec<String>,
    warnings: Vec<(PathBuf, Error)>,
    cache_warnings: Vec<CacheWarning>,
    cache: FilesCache,
    new_cache: FilesCache,
    /// Trees of unchanged folders, from the last backup, and for the next one.
    folders: FolderCache,
    new_folders: FolderCache,
    probe: Arc<Probe>,
    started: (i64, u32),
    progress: Arc<dyn Progress>,
    /// Files new, changed and unchanged (see [`BackupOutcome`]).
    counts: (u64, u64, u64),
    /// What append mode did, per file that asked for it.
    appends: Vec<AppendOutcome>,
    /// The snapshot append streams resume from.
    parent: ParentTrees,
    /// Stops the session's reading.
    cancel: CancelToken,
    /// Set when a run failed in a way that loses data already accepted: commit refuses.
    broken: Option<Broken>,
    /// Set once the index file naming `written` is durable.
    indexed: bool,
    /// The shared lock, held until the session is committed or dropped.
    lock: RepoLock,
    /// The session's compression dictionary, or its sample to train one.
    dicts: dictionary::DictHook,
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
    /// Local caches (index, files) that failed their checks and were ignored and rebuilt: the
    /// snapshot is complete, but a cache whose MAC failed was changed by someone without the
    /// repository's keys, or damaged.
    pub cache_warnings: Vec<CacheWarning>,
    /// Files read that the files cache did not know (all files when there is no cache).
    pub files_new: u64,
    /// Files read because their size, times or inode changed since the cached backup.
    pub files_changed: u64,
    /// Files taken from the files cache without being read.
    pub files_unchanged: u64,
    /// What append mode did for each append stream and each append-only file that was read
    /// (files taken unread from the files cache are not listed): resumed, or read in full and
    /// why.
    pub appends: Vec<AppendOutcome>,
    /// What the session did about a compression dictionary (format-spec.md §5.17).
    pub dictionary: DictionaryOutcome,
}

/// Why a session cannot commit.
enum Broken {
    /// The caller cancelled a run.
    Cancelled,
    /// A run failed after accepting data it then lost.
    Failed(String),
}

impl Repository {
    /// Starts a backup: takes a shared lock (held until the session ends), brings the index
    /// up to date with index files other clients wrote, and adopts packs that an interrupted
    /// backup left without an index (their content is then not uploaded again).
    ///
    /// # Errors
    /// [`Error::Locked`] when a prune or repair runs; store errors.
    pub fn backup(&mut self) -> Result<BackupSession<'_>> {
        let lock = self.lock(LockKind::Shared, "backup")?;
        self.sync_index()?;
        let mut adopted = self.adopted.clone();
        for w in self.adopt_unindexed_packs()? {
            if !adopted.iter().any(|a| a.info.id == w.info.id) {
                adopted.push(w);
            }
        }
        let target = self.settings.pack_target_size as usize;
        let mut cache_warnings = self.index.take_cache_warnings();
        let (cache, folders) = match &self.cache_dir {
            Some(d) => {
                let (cache, warning) = FilesCache::load(d, &self.repo_id, &self.keys.cache_key());
                cache_warnings.extend(warning);
                let (folders, warning) = FolderCache::load(d, &self.repo_id, &self.keys.cache_key());
                cache_warnings.extend(warning);
                (cache, folders)
            }
            None => (FilesCache::default(), FolderCache::default()),
        };
        let dicts = dictionary::DictHook::new(self.store.as_ref(), &self.keys, true)?;
        Ok(BackupSession {
            dicts,
            repo: self,
            root: BTreeMap::new(),
            files: Vec::new(),
            data_packs: Some(PackWriter::new(BlobKind::Data, target)),
            tree_packs: PackWriter::new(BlobKind::Tree, target),
            written: adopted,
            seen: HashSet::new(),
            summary: Summary::default(),
            paths: Vec::new(),
            warnings: Vec::new(),
            cache_warnings,
            cache,
            new_cache: FilesCache::default(),
            folders,
            new_folders: FolderCache::default(),
            probe: Arc::default(),
            started: now(),
            progress: Arc::new(NoProgress),
            counts: (0, 0, 0),
            appends: Vec::new(),
            parent: ParentTrees::default(),
            cancel: CancelToken::new(),
            broken: None,
            indexed: false,
            lock,
        })
    }

    /// Reads index files other clients wrote since this handle loaded the index, or rebuilds
    /// it when some it was built from are gone (a prune replaced them). Backup and prune do
    /// this themselves; a long-lived handle calls it before `check` or `restore` to see other
    /// clients' snapshots' data.
    ///
    /// # Errors
    /// Store errors.
    pub fn refresh_index(&mut self) -> Result<()> {
        self.sync_index()
    }

    pub(crate) fn sync_index(&mut self) -> Result<()> {
        let present: Vec<IndexId> =
            crate::store::list_ids(self.store.as_ref(), FileKind::Index)?.into_iter().map(IndexId).collect();
        let covered = self.index.covered();
        if covered == present {
            return Ok(());
        }
        if covered.iter().all(|c| present.binary_search(c).is_ok()) {
            let new: Vec<IndexId> = present.iter().filter(|p| covered.binary_search(p).is_err()).copied().collect();
            // A damaged index file is skipped, as at open (`check` reports it).
            crate::index::add_index_files(&mut self.index, self.store.as_ref(), self.keys.meta_key(), &new)?;
            let index = std::mem::replace(&mut self.index, Index::empty());
            let cache = if self.adopted.is_empty() { self.cache_dir.as_deref() } else { None };
            self.index = crate::index::persist(index, cache)?;
        } else {
            self.index = self.reload_index()?;
        }
        Ok(())
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
    // The last part may be a file inside the deepest tree.
    if parts.len() > MAX_TREE_DEPTH + 1 {
        return Err(Error::InvalidArgument(format!(
            "a path of {} parts nests deeper than {MAX_TREE_DEPTH} folders",
            parts.len()
        )));
    }
    Ok(parts)
}

impl BackupSession<'_> {
    /// Reports progress to `progress` (bytes and files of the sources added after this call).
    pub fn set_progress(&mut self, progress: Arc<dyn Progress>) {
        self.progress = progress;
    }

    /// Stops the session when `cancel` is cancelled: the `add_*` call reading at that moment
    /// returns [`Error::Cancelled`] within one read, and the session can no longer commit (no
    /// snapshot is written). The repository stays valid: packs already written are named by
    /// the next backup's index file and their chunks are reused.
    pub fn set_cancel(&mut self, cancel: CancelToken) {
        self.cancel = cancel;
    }

    /// Turns compression dictionaries (format-spec.md §5.17) off for this session: no chunk is
    /// compressed with the repository's dictionary and none is trained. On by default: a
    /// session uses the repository's dictionary on its chunks of at most 32 KiB, or, when there
    /// is none, trains one at commit and stores it only when it pays (see
    /// [`BackupOutcome::dictionary`]). Call before adding files.
    pub fn disable_dictionaries(&mut self) {
        self.dicts.disable();
    }

    /// Refuses a session that was cancelled or lost data (see [`BackupSession::commit`]).
    fn check_usable(&self) -> Result<()> {
        match &self.broken {
            None => Ok(()),
            Some(Broken::Cancelled) => Err(Error::Cancelled),
            Some(Broken::Failed(why)) => {
                Err(Error::InvalidArgument(format!("this backup failed earlier and cannot be committed: {why}")))
            }
        }
    }

    /// The directory map at `parts` (created with default metadata where missing). Every
    /// folder on the way loses its [`Fold`]: what the caller adds changes their trees.
    fn dir_at(&mut self, parts: &[Vec<u8>]) -> Result<&mut BTreeMap<Vec<u8>, Entry>> {
        let mut cur = &mut self.root;
        for p in parts {
            if !cur.contains_key(p) {
                cur.insert(
                    p.clone(),
                    Entry::Dir { meta: FileMeta::default_dir(), children: BTreeMap::new(), fold: None },
                );
            }
            let e = cur.get_mut(p).expect("inserted above");
            match e {
                Entry::Dir { children, fold, .. } => {
                    *fold = None;
                    cur = children;
                }
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
    /// [`Error::Io`] when `dir` itself cannot be read; [`Error::Cancelled`]; repository write
    /// errors.
    pub fn add_dir(&mut self, dir: &Path, at: &str) -> Result<()> {
        self.add_dir_with(dir, at, &DirOptions::default())
    }

    /// [`add_dir`](BackupSession::add_dir) with choices: files that only grow (see
    /// [`DirOptions::append_only`]), compression.
    ///
    /// # Errors
    /// As [`add_dir`](BackupSession::add_dir).
    pub fn add_dir_with(&mut self, dir: &Path, at: &str, options: &DirOptions) -> Result<()> {
        self.check_usable()?;
        self.cancel.check()?;
        let parts = split_path(at)?;
        if parts.len() > MAX_TREE_DEPTH {
            return Err(Error::InvalidArgument(format!("{at:?} nests deeper than {MAX_TREE_DEPTH} folders")));
        }
        let md = fs::metadata(dir).at(|| Location::Path(dir.to_path_buf()))?;
        if !md.is_dir() {
            return Err(Error::InvalidArgument(format!("{} is not a folder", dir.display())));
        }
        let abs = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        self.paths.push(abs.display().to_string());
        // A folder added where another one's entries already are merges with them: its tree is
        // then not the walk's alone, and the walk must not mark it for reuse.
        let mut fresh = true;
        if let Some((last, parents)) = parts.split_last() {
            let parent = self.dir_at(parents)?;
            fresh = match parent.get_mut(last) {
                None => true,
                Some(Entry::Dir { children, fold, .. }) => {
                    *fold = None;
                    children.is_empty()
                }
                Some(_) => false,
            };
            let e = parent.entry(last.clone()).or_insert_with(|| Entry::Dir {
                meta: FileMeta::from_fs(&md),
                children: BTreeMap::new(),
                fold: None,
            });
            if let Entry::Dir { meta, .. } = e {
                *meta = FileMeta::from_fs(&md);
            }
        }
        self.summary.dirs += u64::from(!parts.is_empty());
        let mut jobs = Vec::new();
        let mut tally = walk::WalkTally::default();
        let walk = walk::WalkOptions {
            root_depth: parts.len(),
            fresh,
            append_only: &options.append_only,
            chunking: &options.chunking,
            level: options.compression.level(self.repo.settings.zstd_level),
        };
        self.walk(&abs, &parts, &walk, &mut jobs, &mut tally)?;
        let files = jobs.len() as u64 + tally.cached_files;
        self.progress.start("backup", tally.job_bytes + tally.cached_bytes, files);
        self.progress.advance(tally.cached_bytes, tally.cached_files);
        let result = self.run_jobs(jobs);
        self.progress.finish();
        for (file, path, error) in result? {
            let _ = file;
            self.warnings.push((path, error));
        }
        Ok(())
    }

    /// Adds a stream as a file at `path` in the snapshot, read to its end with the default
    /// [`StreamOptions`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad path; the reader's errors; [`Error::Cancelled`];
    /// repository write errors.
    pub fn add_stream(&mut self, path: &str, reader: impl Read + Send, meta: FileMeta) -> Result<()> {
        self.add_stream_with(path, Sequential::new(reader), meta, StreamOptions::default())
    }

    /// Adds a stream that only grows (a message log) at `path`: if the parent snapshot (see
    /// [`set_parent`](BackupSession::set_parent)) has a file there whose last chunk the source
    /// still holds at the same place, its chunks are reused and only that last chunk and the
    /// new bytes are read; otherwise the stream is read in full. The chunks stored are the
    /// same either way. [`BackupOutcome::appends`] says which happened, and why.
    ///
    /// Only the length and the last chunk are checked: bytes changed in place before the last
    /// chunk go unnoticed. Use it for data that only grows.
    ///
    /// # Errors
    /// As [`add_stream`](BackupSession::add_stream).
    pub fn add_append_stream(&mut self, path: &str, source: impl AppendSource, meta: FileMeta) -> Result<()> {
        self.add_stream_with(path, source, meta, StreamOptions { append: true, ..StreamOptions::default() })
    }

    /// Adds a stream at `path` with explicit choices: chunking policy, compression, append
    /// mode. A plain reader that cannot seek is passed as [`Sequential`].
    ///
    /// # Errors
    /// As [`add_stream`](BackupSession::add_stream).
    pub fn add_stream_with(
        &mut self,
        path: &str,
        source: impl AppendSource,
        meta: FileMeta,
        options: StreamOptions,
    ) -> Result<()> {
        self.check_usable()?;
        self.cancel.check()?;
        let parts = split_path(path)?;
        let (name, parents) =
            parts.split_last().ok_or_else(|| Error::InvalidArgument("a stream needs a file name".into()))?;
        // Refuse a path through a file before reading anything.
        self.dir_at(parents)?;
        let file = self.files.len();
        self.files.push(FileRecord::default());
        let append = options.append.then(|| self.old_version(&parts, None));
        let job = Job {
            file,
            source: Source::Stream(Box::new(source)),
            name: parts.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>().join("/"),
            chunking: options.chunking,
            level: options.compression.level(self.repo.settings.zstd_level),
            append,
        };
        // The session outlives this call, the source does not: it is run to completion here.
        if let Some((_, _, error)) = self.run_jobs(vec![job])?.into_iter().next() {
            return Err(error.at(Location::SnapshotPath(path.to_string())));
        }
        self.dir_at(parents)?.insert(name.clone(), Entry::File { meta, file });
        Ok(())
    }

    fn record_pack(&mut self, w: WrittenPack) {
        self.repo.index.add_pack(w.info, &w.record.entries);
        self.summary.new_packs += 1;
        self.written.push(w);
    }

    /// Finishes the backup: seals the last chunks and the trees, writes the packs, the index
    /// file and the snapshot, and updates the local caches. `info` describes the snapshot;
    /// its `None`s are taken from the environment.
    ///
    /// # Errors
    /// [`Error::Cancelled`] when the session was cancelled (nothing is written);
    /// [`Error::InvalidArgument`] when an earlier call failed in a way that lost data, or for a
    /// host or user name above 4096 bytes; repository write errors. Nothing is referenced by
    /// a snapshot until every pack and the index file are durable.
    pub fn commit(mut self, info: SnapshotInfo) -> Result<BackupOutcome> {
        self.check_usable()?;
        self.cancel.check()?;
        for (what, value) in [("host name", &info.hostname), ("user name", &info.username)] {
            if value.as_ref().is_some_and(|v| v.len() > snapshot::MAX_SNAPSHOT_STRINGS) {
                return Err(Error::InvalidArgument(format!(
                    "the {what} is longer than {} bytes",
                    snapshot::MAX_SNAPSHOT_STRINGS
                )));
            }
        }
        if let Some(mut packer) = self.data_packs.take() {
            for w in packer.flush(self.repo.store.as_ref(), &self.repo.keys)? {
                self.record_pack(w);
            }
        }
        // A new dictionary is durable before any index file names a blob that uses it
        // (format-spec.md §8); this session's blobs do not, later sessions' will.
        let dictionary = self.dicts.finish(self.repo.store.as_ref(), &self.repo.keys, self.repo.settings.zstd_level)?;
        let root = std::mem::take(&mut self.root);
        let root_id = self.store_tree(root, "")?;
        self.summary.dirs += 1;
        self.flush_tree_pack()?;

        let repo = &mut *self.repo;
        // Every pack durable before the index file that names them (format-spec.md §8).
        repo.store.flush()?;
        // Nothing is referenced if a prune may have started beside us (our lock went stale).
        self.lock.ensure_held()?;
        let mut index_id = None;
        if !self.written.is_empty() {
            let file = IndexFile { packs: self.written.iter().map(|w| w.record.clone()).collect() };
            let bytes = crate::format::index::encode(repo.keys.meta_key(), &file, &random_array()?);
            let id = IndexId(Id::hash_of(&bytes));
            repo.store.put(FileKind::Index, &id.to_hex(), &bytes)?;
            self.indexed = true;
            index_id = Some(id);
            // Packs adopted at open are named by a sound index file now.
            repo.adopted.clear();
        }

        let (sequence, previous) = match repo.history_head()? {
            Some((seq, id)) => (seq + 1, Some(id)),
            None => (1, None),
        };
        let now = now();
        let (files_new, files_changed, files_unchanged) = self.counts;
        let record = SnapshotRecord {
            time_secs: now.0,
            time_nanos: now.1,
            hostname: info.hostname.unwrap_or_else(hostname),
            username: info.username.unwrap_or_else(|| std::env::var("USER").unwrap_or_default()),
            tags: info.tags,
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
        // Again right before the snapshot, the step that makes the data referenced.
        self.lock.ensure_held()?;
        repo.store.put(FileKind::Snapshot, &id.to_hex(), &bytes)?;
        repo.record_seen(record.sequence, id)?;
        repo.refresh_index_cache(index_id)?;
        if let Some(dir) = &repo.cache_dir {
            // Only a cache: failing to write it costs the next backup time, not data.
            let _ = self.new_cache.save(dir, &repo.repo_id, &repo.keys.cache_key());
            let _ = self.new_folders.save(dir, &repo.repo_id, &repo.keys.cache_key());
        }
        Ok(BackupOutcome {
            snapshot: id,
            record,
            warnings: std::mem::take(&mut self.warnings),
            cache_warnings: std::mem::take(&mut self.cache_warnings),
            files_new,
            files_changed,
            files_unchanged,
            appends: std::mem::take(&mut self.appends),
            dictionary,
        })
    }
}

impl Drop for BackupSession<'_> {
    /// A session that ends without its index file (dropped, cancelled, or failed) leaves its
    /// packs in the store and their chunks in this handle's index: the handle remembers them
    /// as adopted, so the next backup's index file names them before any snapshot relies on
    /// their chunks.
    fn drop(&mut self) {
        if self.indexed {
            return;
        }
        for w in std::mem::take(&mut self.written) {
            if !self.repo.adopted.iter().any(|a| a.info.id == w.info.id) {
                self.repo.adopted.push(w);
            }
        }
    }
}

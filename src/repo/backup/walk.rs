//! The folder walk of `add_dir`: folders and symlinks go into the tree, files become jobs.
//! A file matching an append-only glob gets its old version here (files cache first, then the
//! parent snapshot), while the session is at hand; the reader stage decides whether it is used.
//!
//! Unchanged files are settled here, from the `lstat` the walk needs anyway: before, each was
//! a job the reader thread opened and `fstat`ed again before asking the files cache, and handed
//! to the workers as one message (an unchanged re-backup of 43,000 files made 46,582 `openat`,
//! two `statx` per file and 174,918 `futex` calls).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::BlobKind;
use crate::format::snapshot;
use crate::repo::files_cache::Stamp;
use crate::repo::inspect::glob_match;

use super::options::ChunkPolicy;
use super::pipeline::{chunks_make_up, Job, Source};
use super::{BackupSession, Entry, FileMeta, FileRecord, Fold};

/// What `add_dir_with` asked for, for the whole walk.
pub(super) struct WalkOptions<'a> {
    /// Parts of the snapshot path the folder is added at: paths relative to the folder start
    /// after them.
    pub(super) root_depth: usize,
    /// The folder is added where no entries were yet (its tree is the walk's alone).
    pub(super) fresh: bool,
    /// Globs of files that only grow.
    pub(super) append_only: &'a [String],
    /// Chunking policies by glob, first match wins.
    pub(super) chunking: &'a [(String, ChunkPolicy)],
    /// The zstd level of the folder's chunks.
    pub(super) level: Option<i32>,
}

/// What the walk found: bytes and files to read (jobs), and bytes and files taken from the
/// files cache without a job.
#[derive(Default)]
pub(super) struct WalkTally {
    pub(super) job_bytes: u64,
    pub(super) cached_bytes: u64,
    pub(super) cached_files: u64,
}

/// One folder being listed.
struct Frame {
    /// Its snapshot path.
    at: Vec<Vec<u8>>,
    /// Its local path.
    path: PathBuf,
    /// Its entries not yet visited.
    entries: std::vec::IntoIter<(Vec<u8>, PathBuf)>,
    /// The fingerprint of its entries' stamps so far (see `repo/folder_cache.rs`).
    fingerprint: blake3::Hasher,
    /// Every file so far came from the files cache and every subfolder was reused.
    clean: bool,
    /// No entry so far gave a warning.
    complete: bool,
}

impl Frame {
    fn new(at: Vec<Vec<u8>>, path: PathBuf, entries: Vec<(Vec<u8>, PathBuf)>) -> Frame {
        Frame {
            at,
            path,
            entries: entries.into_iter(),
            fingerprint: blake3::Hasher::new(),
            clean: true,
            complete: true,
        }
    }

    /// Adds one entry's name and stamp to the fingerprint.
    fn stamp(&mut self, name: &[u8], md: &fs::Metadata) {
        let s = Stamp::of(md);
        let h = &mut self.fingerprint;
        h.update(&(name.len() as u64).to_le_bytes()).update(name);
        h.update(&md.mode().to_le_bytes()).update(&s.size.to_le_bytes());
        h.update(&s.mtime.0.to_le_bytes()).update(&s.mtime.1.to_le_bytes());
        h.update(&s.ctime.0.to_le_bytes()).update(&s.ctime.1.to_le_bytes());
        h.update(&s.inode.to_le_bytes()).update(&s.device.to_le_bytes());
    }
}

impl BackupSession<'_> {
    /// Lists a folder and everything below it: folders and symlinks go into the tree now, files
    /// the files cache vouches for too (one `lstat` each, no `open`, nothing handed to the
    /// reader thread); the other files become jobs. Depth first in name order, with an
    /// explicit stack rather than recursion (a folder tree nested to the format's limit must
    /// not exhaust the thread's stack). A folder whose entries all came from the caches, with
    /// the fingerprint the folder cache has for it, keeps its tree id (`backup/trees.rs` then
    /// neither encodes nor hashes it).
    pub(super) fn walk(
        &mut self,
        dir: &Path,
        at: &[Vec<u8>],
        options: &WalkOptions<'_>,
        jobs: &mut Vec<Job<'static>>,
        tally: &mut WalkTally,
    ) -> Result<()> {
        self.cancel.check()?;
        let mut stack = vec![Frame::new(at.to_vec(), dir.to_path_buf(), read_sorted(dir)?)];
        while let Some(top) = stack.last_mut() {
            let Some((name, path)) = top.entries.next() else {
                let done = stack.pop().expect("the loop holds the top frame");
                // The folder the walk started at, merged with entries already there, is not
                // the walk's alone.
                let reused = if stack.is_empty() && !options.fresh { false } else { self.folder_done(done)? };
                if let Some(parent) = stack.last_mut() {
                    parent.clean &= reused;
                }
                continue;
            };
            let at = top.at.clone();
            let md = match fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(e) => {
                    (top.clean, top.complete) = (false, false);
                    self.warnings.push((path, e.into()));
                    continue;
                }
            };
            top.stamp(&name, &md);
            let ft = md.file_type();
            let meta = FileMeta::from_fs(&md);
            // The folder's tree would sit one level below `at`.
            let too_deep = if ft.is_dir() { snapshot::check_tree_level(at.len() + 1).err() } else { None };
            if let Some(e) = too_deep {
                (top.clean, top.complete) = (false, false);
                self.warnings.push((path, e));
            } else if ft.is_dir() {
                self.dir_at(&at)?.insert(name.clone(), Entry::Dir { meta, children: BTreeMap::new(), fold: None });
                self.summary.dirs += 1;
                self.cancel.check()?;
                match read_sorted(&path) {
                    Ok(children) => {
                        let mut sub = at;
                        sub.push(name);
                        stack.push(Frame::new(sub, path, children));
                    }
                    // An unreadable folder stays in the snapshot, empty, with a warning.
                    Err(e) if matches!(e.kind(), crate::ErrorKind::Io) => {
                        (top.clean, top.complete) = (false, false);
                        self.warnings.push((path, e));
                    }
                    Err(e) => return Err(e),
                }
            } else if ft.is_symlink() {
                match fs::read_link(&path) {
                    Ok(t) => {
                        let target = t.as_os_str().as_bytes().to_vec();
                        top.fingerprint.update(&(target.len() as u64).to_le_bytes()).update(&target);
                        self.dir_at(&at)?.insert(name, Entry::Symlink { meta, target });
                        self.summary.symlinks += 1;
                    }
                    Err(e) => {
                        (top.clean, top.complete) = (false, false);
                        self.warnings.push((path, e.into()));
                    }
                }
            } else if ft.is_file() {
                let file = self.files.len();
                let stamp = Stamp::of(&md);
                let key = path.as_os_str().as_bytes().to_vec();
                let hit = self.cache.get(&key, &stamp).filter(|chunks| {
                    !stamp.is_racy(self.started) && chunks_make_up(&self.repo.index, chunks, stamp.size)
                });
                if let Some(chunks) = hit {
                    // Unchanged: taken here, without a job (no open, no hand-over).
                    let chunks = chunks.to_vec();
                    self.summary.chunks += chunks.len() as u64;
                    self.summary.files += 1;
                    self.summary.total_bytes += stamp.size;
                    self.counts.2 += 1;
                    tally.cached_bytes += stamp.size;
                    tally.cached_files += 1;
                    self.files.push(FileRecord {
                        size: stamp.size,
                        chunks,
                        failed: false,
                        cache_key: Some((key, stamp)),
                    });
                    self.dir_at(&at)?.insert(name, Entry::File { meta, file });
                    continue;
                }
                top.clean = false;
                self.files.push(FileRecord { cache_key: Some((key, stamp)), ..FileRecord::default() });
                let mut parts = at.clone();
                parts.push(name.clone());
                let relative = parts[options.root_depth..].join(&b'/');
                let append = options
                    .append_only
                    .iter()
                    .any(|g| glob_match(g.as_bytes(), &relative))
                    .then(|| self.old_version(&parts, Some(path.as_os_str().as_bytes())));
                self.dir_at(&at)?.insert(name, Entry::File { meta, file });
                tally.job_bytes += md.len();
                jobs.push(Job {
                    file,
                    source: Source::Path(path),
                    name: String::from_utf8_lossy(&parts.join(&b'/')).into_owned(),
                    chunking: options
                        .chunking
                        .iter()
                        .find(|(g, _)| glob_match(g.as_bytes(), &relative))
                        .map_or(ChunkPolicy::Auto, |(_, p)| *p),
                    level: options.level,
                    append,
                });
            } else {
                // Skipped the same way every time: its stamp is in the fingerprint.
                self.warnings
                    .push((path, Error::InvalidArgument("not a regular file, folder or symlink: skipped".into())));
            }
        }
        Ok(())
    }

    /// Marks a folder whose listing is done with its fingerprint (when no entry gave a
    /// warning) and, when all its entries came from the caches and the folder cache has its
    /// tree for that fingerprint, with the tree to reuse. True when it is reused. The folder
    /// the walk started at is marked too, unless it is the snapshot's root.
    fn folder_done(&mut self, done: Frame) -> Result<bool> {
        let Some((name, parent)) = done.at.split_last() else { return Ok(false) };
        if !done.complete {
            return Ok(false);
        }
        let fingerprint: [u8; 32] = done.fingerprint.finalize().into();
        let path = done.path.as_os_str().as_bytes().to_vec();
        let reuse = if done.clean {
            self.folders
                .get(&path, &fingerprint)
                .filter(|t| matches!(self.repo.index.lookup(&t.0), Ok(Some(loc)) if loc.kind == BlobKind::Tree))
        } else {
            None
        };
        if let Some(Entry::Dir { fold, .. }) = self.dir_at(parent)?.get_mut(name) {
            *fold = Some(Box::new(Fold { path, fingerprint, reuse }));
        }
        Ok(reuse.is_some())
    }
}

/// A folder's entries (name, path), sorted by name.
fn read_sorted(dir: &Path) -> Result<Vec<(Vec<u8>, PathBuf)>> {
    let mut entries: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    for e in fs::read_dir(dir).at(|| Location::Path(dir.to_path_buf()))? {
        let e = e.at(|| Location::Path(dir.to_path_buf()))?;
        entries.push((e.file_name().as_bytes().to_vec(), e.path()));
    }
    entries.sort();
    Ok(entries)
}

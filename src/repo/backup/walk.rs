//! The folder walk of `add_dir`: folders and symlinks go into the tree, files become jobs.
//! A file matching an append-only glob gets its old version here (files cache first, then the
//! parent snapshot), while the session is at hand; the reader stage decides whether it is used.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Location, Result, ResultExt};
use crate::format::snapshot;
use crate::repo::files_cache::Stamp;
use crate::repo::inspect::glob_match;

use super::options::ChunkPolicy;
use super::pipeline::{Job, Source};
use super::{BackupSession, Entry, FileMeta, FileRecord};

/// What `add_dir_with` asked for, for the whole walk.
pub(super) struct WalkOptions<'a> {
    /// Parts of the snapshot path the folder is added at: paths relative to the folder start
    /// after them.
    pub(super) root_depth: usize,
    /// Globs of files that only grow.
    pub(super) append_only: &'a [String],
    /// Chunking policies by glob, first match wins.
    pub(super) chunking: &'a [(String, ChunkPolicy)],
    /// The zstd level of the folder's chunks.
    pub(super) level: Option<i32>,
}

impl BackupSession<'_> {
    /// Lists a folder and everything below it: folders and symlinks go into the tree now, files
    /// become jobs. Depth first in name order, with an explicit stack rather than recursion
    /// (a folder tree nested to the format's limit must not exhaust the thread's stack).
    pub(super) fn walk(
        &mut self,
        dir: &Path,
        at: &[Vec<u8>],
        options: &WalkOptions<'_>,
        jobs: &mut Vec<Job<'static>>,
        total: &mut u64,
    ) -> Result<()> {
        self.cancel.check()?;
        // Each frame: the folder's snapshot path and its entries not yet visited.
        let mut stack = vec![(at.to_vec(), read_sorted(dir)?.into_iter())];
        while let Some((at, entries)) = stack.last_mut() {
            let Some((name, path)) = entries.next() else {
                stack.pop();
                continue;
            };
            let at = at.clone();
            let md = match fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(e) => {
                    self.warnings.push((path, e.into()));
                    continue;
                }
            };
            let ft = md.file_type();
            let meta = FileMeta::from_fs(&md);
            // The folder's tree would sit one level below `at`.
            let too_deep = if ft.is_dir() { snapshot::check_tree_level(at.len() + 1).err() } else { None };
            if let Some(e) = too_deep {
                self.warnings.push((path, e));
            } else if ft.is_dir() {
                self.dir_at(&at)?.insert(name.clone(), Entry::Dir { meta, children: BTreeMap::new() });
                self.summary.dirs += 1;
                self.cancel.check()?;
                match read_sorted(&path) {
                    Ok(children) => {
                        let mut sub = at;
                        sub.push(name);
                        stack.push((sub, children.into_iter()));
                    }
                    // An unreadable folder stays in the snapshot, empty, with a warning.
                    Err(e) if matches!(e.kind(), crate::ErrorKind::Io) => self.warnings.push((path, e)),
                    Err(e) => return Err(e),
                }
            } else if ft.is_symlink() {
                match fs::read_link(&path) {
                    Ok(t) => {
                        self.dir_at(&at)?
                            .insert(name, Entry::Symlink { meta, target: t.as_os_str().as_bytes().to_vec() });
                        self.summary.symlinks += 1;
                    }
                    Err(e) => self.warnings.push((path, e.into())),
                }
            } else if ft.is_file() {
                let file = self.files.len();
                let stamp = Stamp::of(&md);
                self.files.push(FileRecord {
                    cache_key: Some((path.as_os_str().as_bytes().to_vec(), stamp)),
                    ..FileRecord::default()
                });
                let mut parts = at.clone();
                parts.push(name.clone());
                let relative = parts[options.root_depth..].join(&b'/');
                let append = options
                    .append_only
                    .iter()
                    .any(|g| glob_match(g.as_bytes(), &relative))
                    .then(|| self.old_version(&parts, Some(path.as_os_str().as_bytes())));
                self.dir_at(&at)?.insert(name, Entry::File { meta, file });
                *total += md.len();
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
                self.warnings
                    .push((path, Error::InvalidArgument("not a regular file, folder or symlink: skipped".into())));
            }
        }
        Ok(())
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

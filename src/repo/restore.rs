//! Restore: plan every file, resolve all chunks through the index, group them by pack, read
//! coalesced ranges and open blobs in parallel, write chunks with positioned writes into
//! temporary files, and rename each file into place as soon as it is complete.
//!
//! A damaged pack or blob fails only the files that need it: every other file is restored,
//! and the report names the failed ones. A file is never left under its final name unless it
//! is complete.
//!
//! # What a restore guarantees about the target folder
//!
//! A restore writes decrypted chats into a folder that other local users may be able to see,
//! and sometimes write (a shared folder, a world-writable parent). So:
//!
//! - **Nothing is readable by others before it is complete.** Files are created 0600 and
//!   folders 0700; a file gets its final mode (through its open handle) only once all of its
//!   data is written, and a folder only after everything in it is restored. A user who opens a
//!   file mid-restore to keep the handle can therefore only do so where they could read the
//!   complete file anyway. A small file created anonymous (`O_TMPFILE`) has its final mode from
//!   the start, but no name until it is complete: no other user can open it before.
//! - **No symlink inside the target is ever followed for writing.** The target is opened once
//!   (it may itself be a symlink: the caller chose it); below it every folder is created or
//!   opened from its parent's handle with `O_NOFOLLOW`, and every creation, mode change, time
//!   change and rename names one component inside an open folder handle (see `target.rs`). A
//!   symlink planted at any path inside the target fails that path (reported) and never
//!   redirects a write, even if it appears during the restore.
//! - **No reopening by path.** A file is written through the handle that created it
//!   (`O_CREAT | O_EXCL`, which never opens a planted file, or `O_TMPFILE`). Only a restore with more large files
//!   in flight than the descriptor budget closes a handle between two reads and reopens it by
//!   name in its held folder, refusing anything that is not the same inode (see `fill.rs`).
//! - **Existing files are never replaced without `overwrite`**, not even one created between
//!   the check and the rename: renames use `RENAME_NOREPLACE` (or, where the file system lacks
//!   it, a hard link, which fails on an existing name, never a plain rename), and a file that
//!   appeared is reported as failed.
//! - **No setuid, setgid or sticky bits** unless [`RestoreOptions::keep_special_bits`]: owners
//!   are not recorded, so a restore as root would otherwise create setuid-root programs from
//!   whatever the snapshot says.
//! - **Warnings** ([`RestoreReport::warnings`]) name the target or a folder above it when every
//!   user may write there without a sticky bit: the restore goes ahead (nothing is readable
//!   early), but another user can rename, remove or replace the restored files afterwards.
//!
//! What a restore does not defend against: a user who can write into a folder *after* it holds
//! the restored files (a world-writable target); another process of the same user.
//!
//! # Without a folder
//!
//! `file_reader` gives random access to one file ([`Repository::open_file`]); `sink` restores
//! into the caller's own storage ([`Repository::restore_to`], files as streams). Both read
//! through the same pack reader and range planner (`crate::pack`) as the folder restore.
//!
//! # Cancellation
//!
//! [`RestoreOptions::cancel`] is checked between batches of planning and before each pack
//! read; a cancelled restore returns [`Error::Cancelled`] rather than a report: files completed
//! before the cancel stay under their names, every other file's temporary file is removed, and
//! nothing partial is ever under a final name.
//!
//! Cost: a small file whose data comes in one pack read takes five system calls: `openat`
//! (`O_TMPFILE`: an anonymous file, born with its final mode since nobody can open it by name),
//! `pwrite`, `futimens`, `linkat` (which, like `RENAME_NOREPLACE`, never replaces a name) and
//! `close`; an `fchmod` only when the umask took bits from the mode. Where anonymous files are
//! not available, and for files written over several reads, with `overwrite` or with `sync`, a
//! named temporary file takes six (`openat`, `pwrite`, `fchmod`, `futimens`, `renameat2`,
//! `close`), against sixteen before this design (create, truncate, close, reopen twice by path,
//! `getpid` for every temporary name). `tests/integration/restore_syscalls.rs` counts them.

mod file_reader;
mod fill;
mod plan;
mod sink;
mod target;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use self::file_reader::FileReader;
pub use self::sink::{MemorySink, RestoreSink, SinkOptions};

use self::fill::{FileJob, Files};
use self::plan::{Need, Plan, Target};
use self::target::{Dirs, Made};
use crate::error::{Error, Result};
use crate::format::snapshot::{NodeContent, SnapshotRecord};
use crate::id::{Id, PackId};
use crate::pack::{BlobLocation, PackReader};
use crate::progress::CancelToken;
use crate::repo::Repository;

/// What to restore, and where.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Folder to restore into (created if missing, 0700). Paths of the snapshot land below it.
    pub target: PathBuf,
    /// Snapshot paths to restore (each with everything below it); empty means everything.
    pub include: Vec<String>,
    /// Replace files that already exist in the target (otherwise they are reported as
    /// failures and left alone).
    pub overwrite: bool,
    /// Flush restored files to disk before renaming them into place, and the renames after.
    /// Without it, a restore that is interrupted (killed, out of space) still never leaves a
    /// partial file under its real name, but after a *power loss* a renamed file may not have
    /// reached the disk yet. Costs the time to write everything to disk.
    pub sync: bool,
    /// Take no lock (for a read-only repository; a prune running at the same time then
    /// shows as missing data).
    pub no_lock: bool,
    /// Restore setuid, setgid and sticky bits as the snapshot records them. Off by default:
    /// snapshots do not record owners, so these bits would land on files owned by whoever
    /// restores (root, say).
    pub keep_special_bits: bool,
    /// Receives progress: bytes written, and the path of each file as its data starts.
    pub progress: Option<std::sync::Arc<dyn crate::Progress>>,
    /// Stops the restore (checked before each pack read). A cancelled restore returns
    /// [`Error::Cancelled`](crate::Error::Cancelled): files completed before the cancel stay
    /// under their names, no partial or temporary file is left, and folders keep the 0700 they
    /// were created with (their final modes come last, which a cancelled restore never reaches).
    pub cancel: Option<CancelToken>,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Files restored completely.
    pub files: u64,
    /// Folders created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Bytes written into files.
    pub bytes: u64,
    /// Snapshot paths that could not be restored, with why, in path order. A folder listed
    /// here was restored, but what is in it could not be read (or nests too deep).
    pub failed: Vec<(String, Error)>,
    /// Things about the target the user should know; the restore went ahead.
    pub warnings: Vec<RestoreWarning>,
}

impl RestoreReport {
    /// True when every planned path was restored.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// A warning about the restore's target (see [`RestoreReport::warnings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreWarning {
    /// The target folder, or a folder above it, is writable by every local user and has no
    /// sticky bit: any of them can rename, remove or replace what the restore puts there once
    /// it is complete (nothing is readable by them before).
    WorldWritable {
        /// The folder (symlinks resolved).
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl RestoreWarning {
    /// The folder the warning is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            RestoreWarning::WorldWritable { path, .. } => path,
        }
    }
}

impl fmt::Display for RestoreWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreWarning::WorldWritable { path, mode } => write!(
                f,
                "{} is writable by every user (mode {mode:o}, no sticky bit): other users can rename, remove or \
                 replace the restored files",
                path.display()
            ),
        }
    }
}

/// Descriptors a restore may hold open: folders (held from creation to their final mode) and
/// files whose data spans several pack reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub dirs: usize,
    pub files: usize,
    /// Create files written in one go anonymous (`O_TMPFILE`) where possible; off only in
    /// tests of the named temporary files.
    pub anon: bool,
}

/// True once `cancel` was cancelled.
fn cancelled(cancel: Option<&CancelToken>) -> bool {
    cancel.is_some_and(CancelToken::is_cancelled)
}

/// `Err(Error::Cancelled)` once `cancel` was cancelled.
fn check_cancel(cancel: Option<&CancelToken>) -> Result<()> {
    cancel.map_or(Ok(()), CancelToken::check)
}

/// Files prepared (checked, resolved) per parallel batch, so the resolved chunk lists in flight
/// stay bounded.
const PREPARE_BATCH: usize = 4096;

impl Repository {
    /// Restores `snapshot` (or the paths in `options.include`) into `options.target`.
    ///
    /// Returns a report; files that could not be restored are listed in
    /// [`RestoreReport::failed`] and every other file is restored. See the module
    /// documentation for what the restore guarantees about the target folder.
    ///
    /// # Errors
    /// Only for failures that stop everything: the root tree cannot be read, the target
    /// cannot be created, an include path does not exist, (with `sync`) flushing fails, or
    /// the restore was cancelled ([`Error::Cancelled`]).
    pub fn restore(&self, snapshot: &SnapshotRecord, options: &RestoreOptions) -> Result<RestoreReport> {
        let total = target::descriptor_budget();
        self.restore_within(snapshot, options, Budget { dirs: total / 2, files: total / 2, anon: true })
    }

    /// [`Repository::restore`] holding at most `budget` descriptors.
    pub(crate) fn restore_within(
        &self,
        snapshot: &SnapshotRecord,
        options: &RestoreOptions,
        budget: Budget,
    ) -> Result<RestoreReport> {
        check_cancel(options.cancel.as_ref())?;
        let _lock =
            if options.no_lock { None } else { Some(self.lock(crate::repo::lock::LockKind::Shared, "restore")?) };
        let mut plan = self.plan(snapshot, &options.include)?;
        let target_path = &options.target;
        let (root, warnings) = target::open_root(target_path)?;
        let mut report = RestoreReport { failed: std::mem::take(&mut plan.failed), warnings, ..Default::default() };
        let keep = options.keep_special_bits;

        // Folders, parents first (the plan lists them in walk order).
        let dir_index: HashMap<&Path, usize> =
            plan.dirs.iter().enumerate().map(|(i, d)| (d.rel.as_path(), i)).collect();
        let mut dirs = Dirs::new(root, budget.dirs);
        for d in &plan.dirs {
            if let Made::Failed(why) = dirs.make(OsStr::from_bytes(&d.node.name), Plan::parent_of(&dir_index, &d.rel)) {
                report.failed.push((d.path.clone(), why));
            }
        }
        let dirs = dirs;

        // Files: check each against its folder and resolve its chunks (both cores, a batch at
        // a time); files are created later, by the worker that brings their first chunk.
        let parents: Vec<_> = plan.files.iter().map(|f| Plan::parent_of(&dir_index, &f.rel)).collect();
        let jobs = plan
            .files
            .iter()
            .zip(&parents)
            .map(|(f, parent)| {
                FileJob::new(
                    &f.path,
                    OsStr::from_bytes(&f.node.name),
                    parent.as_ref().ok().copied().flatten(),
                    target::final_mode(f.node.mode, keep),
                    target::mtime(&f.node),
                )
            })
            .collect();
        let progress: &dyn crate::Progress = options.progress.as_deref().unwrap_or(&crate::NoProgress);
        let mut files = Files::new(jobs, &dirs, options, budget, progress);
        let prepare = |i: usize| -> Result<Vec<BlobLocation>> {
            let f = &plan.files[i];
            let parent = match &parents[i] {
                Ok(p) => *p,
                Err(e) => return Err(e.duplicate()),
            };
            if !dirs.is_ready(parent) {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "its folder could not be created",
                )));
            }
            let NodeContent::File { size, chunks } = &f.node.content else {
                return Err(Error::malformed("tree", None, "a planned file is not a file"));
            };
            // A folder this restore created holds only what it put there: no check needed.
            if !options.overwrite && !dirs.is_fresh(parent) {
                let dir = dirs.get(parent).map_err(|e| target::local("cannot open the folder it is in", e))?;
                if target::exists(&dir, OsStr::from_bytes(&f.node.name)) {
                    return Err(target::exists_error());
                }
            }
            self.resolve_chunks(chunks, *size)
        };
        let mut by_chunk: HashMap<Id, usize> = HashMap::new();
        let mut needs: Vec<Need> = Vec::new();
        let mut empty = Vec::new();
        for batch_start in (0..plan.files.len()).step_by(PREPARE_BATCH) {
            check_cancel(options.cancel.as_ref())?;
            let batch = batch_start..(batch_start + PREPARE_BATCH).min(plan.files.len());
            let prepared: Vec<_> = batch.clone().into_par_iter().map(prepare).collect();
            for (i, p) in batch.zip(prepared) {
                let locs = match p {
                    Ok(locs) => locs,
                    Err(why) => {
                        files.fail(i, why);
                        continue;
                    }
                };
                let NodeContent::File { chunks, .. } = &plan.files[i].node.content else {
                    continue;
                };
                let mut offset = 0u64;
                for (id, loc) in chunks.iter().zip(locs) {
                    let n = *by_chunk.entry(id.0).or_insert_with(|| {
                        needs.push(Need { id: id.0, loc, targets: Vec::new() });
                        needs.len() - 1
                    });
                    needs[n].targets.push(Target { file: i, offset });
                    files.expect_write(i);
                    offset += u64::from(loc.raw_len);
                }
                if files.expected(i) == 0 {
                    empty.push(i);
                }
            }
        }
        drop(by_chunk);

        // Read coalesced ranges in parallel, each worker with its own reader (and buffers);
        // each file is finished by the worker that writes its last chunk.
        let pack_lens: HashMap<PackId, u64> = self.index.packs().map(|p| (p.id, u64::from(p.len))).collect();
        let (needs, ranges) = crate::pack::coalesce(needs);
        let files = files;
        // Saturating: sizes come from trees, and a tree may claim anything up to u64::MAX.
        let total: u64 = plan
            .files
            .iter()
            .map(|f| if let NodeContent::File { size, .. } = f.node.content { size } else { 0 })
            .fold(0, u64::saturating_add);
        progress.start("restore", total, plan.files.len() as u64);
        report.bytes = ranges
            .into_par_iter()
            .map_init(
                || PackReader::new(self.store.as_ref(), &self.keys),
                |reader, r| {
                    let needs = &needs[r.blobs.clone()];
                    if cancelled(options.cancel.as_ref()) {
                        for t in needs.iter().flat_map(|n| &n.targets) {
                            files.skip(t.file, Error::Cancelled);
                        }
                        return 0;
                    }
                    let pack_len = pack_lens.get(&r.pack).copied();
                    let n = fill::restore_range(reader, &r, pack_len, needs, &files);
                    progress.advance(n, 0);
                    n
                },
            )
            .sum();
        progress.finish();
        if cancelled(options.cancel.as_ref()) {
            // Whatever is not complete fails, and its temporary file goes.
            (0..files.jobs.len()).into_par_iter().for_each(|i| {
                let _ = files.outcome(i);
            });
            return Err(Error::Cancelled);
        }
        empty.into_par_iter().for_each(|i| files.finish(i));

        // With `sync`, complete files wait under their temporary names until they are on disk.
        if options.sync {
            if let Err(e) = target::sync(dirs.root(), "restored data", target_path) {
                (0..files.jobs.len()).into_par_iter().for_each(|i| {
                    files.fail(i, Error::Io(std::io::Error::other("not renamed: flushing failed")));
                });
                return Err(e);
            }
            (0..files.jobs.len()).into_par_iter().for_each(|i| files.place_ready(i));
        }
        for (i, f) in plan.files.iter().enumerate() {
            match files.outcome(i) {
                Ok(()) => report.files += 1,
                Err(why) => report.failed.push((f.path.clone(), why)),
            }
        }

        // Symlinks, after the files.
        for l in &plan.links {
            let NodeContent::Symlink { target: link } = &l.node.content else {
                continue;
            };
            let made = Plan::parent_of(&dir_index, &l.rel).and_then(|parent| {
                if !dirs.is_ready(parent) {
                    return Err(Error::Io(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "its folder could not be created",
                    )));
                }
                let dir = dirs.get(parent).map_err(|e| target::local("cannot open the folder it is in", e))?;
                let name = OsStr::from_bytes(&l.node.name);
                target::symlink(dir.as_fd(), name, link, options.overwrite, &target::both_times(&l.node))
            });
            match made {
                Ok(()) => report.symlinks += 1,
                Err(why) => report.failed.push((l.path.clone(), why)),
            }
        }

        // Folder modes and times last, deepest first (writing into a folder changes its mtime,
        // and a folder must stay 0700 until what is in it is complete).
        for (d, node) in plan.dirs.iter().enumerate().rev() {
            if !dirs.is_ready(Some(d)) {
                continue;
            }
            match dirs.finish(d, target::final_mode(node.node.mode, keep), &target::mtime(&node.node)) {
                Ok(()) => report.dirs += 1,
                Err(e) => report.failed.push((node.path.clone(), target::local("cannot set folder metadata", e))),
            }
        }
        if options.sync {
            target::sync(dirs.root(), "restored file names", target_path)?;
        }
        report.failed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(report)
    }
}

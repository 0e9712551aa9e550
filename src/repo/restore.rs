//! Restore: plan every file, resolve all chunks through the index, group them by pack, read
//! coalesced ranges and open blobs in parallel, write chunks with positioned writes into
//! preallocated temporary files, then rename each complete file into place.
//!
//! A damaged pack or blob fails only the files that need it: every other file is restored,
//! and the report names the failed ones. A file is never left under its final name unless it
//! is complete.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::{self, BlobKind};
use crate::format::snapshot::{check_tree_depth, Node, NodeContent, SnapshotRecord, Tree};
use crate::id::{ChunkId, Id, PackId};
use crate::index::BlobLocation;
use crate::repo::{join, Repository};
use crate::store::FileKind;

/// One read of a pack: bytes `first..end`.
///
/// Packs are read into per-thread buffers, not memory-mapped: mapping the packs of a 1.1 GB
/// restore made it slower (1.8 s against 1.3 s) and put every touched pack page in the
/// resident set (874 MB against 45 MB), see BENCHMARKS.md.
#[derive(Clone, Copy)]
struct Range {
    pack: PackId,
    first: u64,
    end: u64,
}

thread_local! {
    /// Per worker thread: the pack range read, the decrypted blob, the decompressed blob.
    static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>, Vec<u8>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Blobs closer than this in a pack are fetched with one read.
const COALESCE_GAP: u64 = 256 << 10;
/// Reads start and end on multiples of this (or the pack's end), so the provider does not see
/// where blobs begin and end.
pub const READ_ALIGN: u64 = 64 << 10;
/// Largest single read.
const MAX_READ: u64 = 8 << 20;

/// What to restore, and where.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Folder to restore into (created if missing). Paths of the snapshot land below it.
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
    /// Receives progress: bytes written and files finished.
    pub progress: Option<std::sync::Arc<dyn crate::Progress>>,
}

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct RestoreReport {
    /// Files restored completely.
    pub files: u64,
    /// Folders created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Bytes written into files.
    pub bytes: u64,
    /// Snapshot paths that could not be restored, with why.
    pub failed: Vec<(String, String)>,
}

impl RestoreReport {
    /// True when every planned path was restored.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

struct PlanNode {
    /// Display path inside the snapshot.
    path: String,
    /// Relative local path (exact name bytes).
    rel: PathBuf,
    node: Node,
}

#[derive(Default)]
struct Plan {
    dirs: Vec<PlanNode>,
    files: Vec<PlanNode>,
    links: Vec<PlanNode>,
    failed: Vec<(String, String)>,
    seen: HashSet<PathBuf>,
}

impl Plan {
    fn push(&mut self, path: String, rel: PathBuf, node: Node) -> bool {
        if !self.seen.insert(rel.clone()) {
            return false;
        }
        let entry = PlanNode { path, rel, node };
        match entry.node.content {
            NodeContent::Dir { .. } => self.dirs.push(entry),
            NodeContent::File { .. } => self.files.push(entry),
            NodeContent::Symlink { .. } => self.links.push(entry),
        }
        true
    }
}

struct Target {
    file: usize,
    offset: u64,
}

struct Need {
    id: Id,
    loc: BlobLocation,
    targets: Vec<Target>,
}

fn mtime_of(node: &Node) -> SystemTime {
    let d = Duration::new(node.mtime_secs.unsigned_abs(), node.mtime_nanos);
    let t = if node.mtime_secs >= 0 { UNIX_EPOCH.checked_add(d) } else { UNIX_EPOCH.checked_sub(d) };
    // Times the platform cannot represent fall back to the epoch rather than panic.
    t.unwrap_or(UNIX_EPOCH)
}

/// Creates `path` as a real folder; refuses to go through a symlink or a file.
fn ensure_dir(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is not a folder")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(path),
        Err(e) => Err(e),
    }
}

/// Files prepared (checked, resolved, created) per parallel batch.
const PREPARE_BATCH: usize = 4096;

fn temp_path(final_path: &Path, n: usize) -> PathBuf {
    final_path.with_file_name(format!(".pv-restore-{}-{n}", std::process::id()))
}

impl Repository {
    /// Restores `snapshot` (or the paths in `options.include`) into `options.target`.
    ///
    /// Returns a report; files that could not be restored are listed in
    /// [`RestoreReport::failed`] and every other file is restored.
    ///
    /// # Errors
    /// Only for failures that stop everything: the root tree cannot be read, the target
    /// cannot be created, or an include path does not exist.
    pub fn restore(&self, snapshot: &SnapshotRecord, options: &RestoreOptions) -> Result<RestoreReport> {
        let _lock =
            if options.no_lock { None } else { Some(self.lock(crate::repo::lock::LockKind::Shared, "restore")?) };
        let plan = self.plan(snapshot, &options.include)?;
        let target = &options.target;
        fs::create_dir_all(target).at(|| Location::Path(target.clone()))?;
        let mut report = RestoreReport { failed: plan.failed, ..RestoreReport::default() };

        // Folders, parents first (the plan lists them in walk order).
        let mut bad_dirs: Vec<String> = Vec::new();
        let under_bad = |p: &str, bad: &[String]| {
            bad.iter().any(|b| p.starts_with(b.as_str()) && p.as_bytes().get(b.len()) == Some(&b'/'))
        };
        let mut dirs_made = Vec::new();
        for d in &plan.dirs {
            if under_bad(&d.path, &bad_dirs) {
                continue;
            }
            match ensure_dir(&target.join(&d.rel)) {
                Ok(()) => dirs_made.push(d),
                Err(e) => {
                    report.failed.push((d.path.clone(), format!("cannot create folder: {e}")));
                    bad_dirs.push(d.path.clone());
                }
            }
        }

        // Files: check, then create preallocated temporary files.
        let failures: Mutex<HashMap<usize, String>> = Mutex::new(HashMap::new());
        let fail = |file: usize, why: String| {
            failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(file).or_insert(why);
        };
        let mut by_chunk: HashMap<Id, usize> = HashMap::new();
        let mut needs: Vec<Need> = Vec::new();
        // Temporary files this restore created (only these are ever removed).
        let mut created_tmp = vec![false; plan.files.len()];
        // Creating files is most of the kernel's work in a restore: both cores do it, a batch
        // at a time (so the resolved chunk lists in flight stay bounded).
        let prepare = |i: usize| -> Option<(bool, std::result::Result<Vec<BlobLocation>, String>)> {
            let f = &plan.files[i];
            if under_bad(&f.path, &bad_dirs) {
                return Some((false, Err("its folder could not be created".into())));
            }
            let NodeContent::File { size, chunks } = &f.node.content else {
                return None;
            };
            let final_path = target.join(&f.rel);
            if !options.overwrite && fs::symlink_metadata(&final_path).is_ok() {
                return Some((false, Err("already exists in the target (not overwritten)".into())));
            }
            let locs = match self.resolve_chunks(chunks, *size) {
                Ok(locs) => locs,
                Err(e) => return Some((false, Err(e.to_string()))),
            };
            // create_new: never follow a symlink or reuse a file planted at this name.
            match OpenOptions::new().write(true).create_new(true).open(temp_path(&final_path, i)) {
                Ok(file) => match file.set_len(*size) {
                    Ok(()) => Some((true, Ok(locs))),
                    Err(e) => Some((true, Err(format!("cannot allocate {size} bytes: {e}")))),
                },
                Err(e) => Some((false, Err(format!("cannot create a temporary file: {e}")))),
            }
        };
        for batch_start in (0..plan.files.len()).step_by(PREPARE_BATCH) {
            let batch = batch_start..(batch_start + PREPARE_BATCH).min(plan.files.len());
            let prepared: Vec<_> = batch.clone().into_par_iter().map(prepare).collect();
            for (i, p) in batch.zip(prepared) {
                let Some((created, result)) = p else { continue };
                created_tmp[i] = created;
                let locs = match result {
                    Ok(locs) => locs,
                    Err(why) => {
                        fail(i, why);
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
                    offset += u64::from(loc.raw_len);
                }
            }
        }

        // Group by pack, sort by offset, read coalesced ranges in parallel.
        let mut by_pack: HashMap<PackId, Vec<Need>> = HashMap::new();
        for n in needs {
            by_pack.entry(n.loc.pack).or_default().push(n);
        }
        let mut groups: Vec<(PackId, Vec<Need>)> = by_pack.into_iter().collect();
        let pack_lens: HashMap<PackId, u64> = self.index.packs().map(|p| (p.id, u64::from(p.len))).collect();
        // Cut each pack's needs into coalesced, aligned ranges; all ranges of all packs then run
        // in parallel, so a few big packs do not leave a core idle.
        let mut ranges = Vec::new();
        for (g, (pack, needs)) in groups.iter_mut().enumerate() {
            needs.sort_by_key(|n| n.loc.offset);
            let mut start = 0;
            while start < needs.len() {
                let first = u64::from(needs[start].loc.offset);
                let mut end = start + 1;
                let mut range_end = needs[start].loc.entry(needs[start].id).end();
                while end < needs.len() {
                    let e = needs[end].loc.entry(needs[end].id);
                    if u64::from(e.offset) > range_end + COALESCE_GAP || e.end() - first > MAX_READ {
                        break;
                    }
                    range_end = range_end.max(e.end());
                    end += 1;
                }
                // Widen to aligned block boundaries (never past the pack's end).
                let pack_len = pack_lens.get(pack).copied().unwrap_or(range_end).max(range_end);
                let aligned_first = first - first % READ_ALIGN;
                let aligned_end = range_end.div_ceil(READ_ALIGN).saturating_mul(READ_ALIGN).min(pack_len);
                ranges.push((g, aligned_first, aligned_end, start..end));
                start = end;
            }
        }
        let progress: &dyn crate::Progress = options.progress.as_deref().unwrap_or(&crate::NoProgress);
        // Saturating: sizes come from trees, and a tree may claim anything up to u64::MAX.
        let total: u64 = plan
            .files
            .iter()
            .map(|f| if let NodeContent::File { size, .. } = f.node.content { size } else { 0 })
            .fold(0, u64::saturating_add);
        progress.start("restore", total, plan.files.len() as u64);
        let written: u64 = ranges
            .into_par_iter()
            .map(|(g, first, end, r)| {
                let (pack, needs) = &groups[g];
                let range = Range { pack: *pack, first, end };
                let n = self.restore_range(&range, &needs[r], &plan.files, target, &fail);
                progress.advance(n, 0);
                n
            })
            .sum();
        progress.finish();
        report.bytes = written;

        // Finish files: metadata on the complete temporary files, flush them all to disk, then
        // rename them into place and flush the renames. Incomplete ones are removed. Both
        // steps run on both cores: they are a system call or three per file.
        let failures = failures.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let finished: Vec<std::result::Result<(), String>> = (0..plan.files.len())
            .into_par_iter()
            .map(|i| {
                let f = &plan.files[i];
                let tmp = temp_path(&target.join(&f.rel), i);
                if let Some(why) = failures.get(&i) {
                    if created_tmp[i] {
                        let _ = fs::remove_file(&tmp);
                    }
                    return Err(why.clone());
                }
                let meta = || -> std::io::Result<()> {
                    let file = OpenOptions::new().write(true).open(&tmp)?;
                    file.set_permissions(fs::Permissions::from_mode(f.node.mode))?;
                    file.set_times(FileTimes::new().set_modified(mtime_of(&f.node)))
                };
                meta().map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    format!("cannot set metadata: {e}")
                })
            })
            .collect();
        let sync = |what: &str| -> Result<()> {
            if !options.sync {
                return Ok(());
            }
            let dir = File::open(target).at(|| Location::Path(target.clone()))?;
            rustix::fs::syncfs(&dir).map_err(|e| {
                Error::Io(std::io::Error::other(format!("flushing {what} to disk: {e}")))
                    .at(Location::Path(target.clone()))
            })
        };
        if let Err(e) = sync("restored data") {
            // Nothing was renamed yet: take the complete temporary files away too.
            for (i, ready) in finished.iter().enumerate() {
                if ready.is_ok() {
                    let _ = fs::remove_file(temp_path(&target.join(&plan.files[i].rel), i));
                }
            }
            return Err(e);
        }
        let renamed: Vec<std::result::Result<(), String>> = finished
            .into_par_iter()
            .enumerate()
            .map(|(i, ready)| {
                ready?;
                let final_path = target.join(&plan.files[i].rel);
                let tmp = temp_path(&final_path, i);
                fs::rename(&tmp, &final_path).map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    format!("cannot rename into place: {e}")
                })
            })
            .collect();
        for (f, r) in plan.files.iter().zip(renamed) {
            match r {
                Ok(()) => report.files += 1,
                Err(why) => report.failed.push((f.path.clone(), why)),
            }
        }

        // Symlinks, after the files so that nothing is written through them.
        for l in &plan.links {
            let NodeContent::Symlink { target: link } = &l.node.content else {
                continue;
            };
            if under_bad(&l.path, &bad_dirs) {
                report.failed.push((l.path.clone(), "its folder could not be created".into()));
                continue;
            }
            let p = target.join(&l.rel);
            if fs::symlink_metadata(&p).is_ok() {
                if !options.overwrite || fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                    report.failed.push((l.path.clone(), "already exists in the target (not overwritten)".into()));
                    continue;
                }
                let _ = fs::remove_file(&p);
            }
            let made = std::os::unix::fs::symlink(OsStr::from_bytes(link), &p).and_then(|()| {
                // The link's own time (not its target's).
                let t = mtime_of(&l.node).duration_since(UNIX_EPOCH).unwrap_or_default();
                let ts = rustix::fs::Timestamps {
                    last_access: rustix::fs::Timespec { tv_sec: t.as_secs() as i64, tv_nsec: t.subsec_nanos().into() },
                    last_modification: rustix::fs::Timespec {
                        tv_sec: t.as_secs() as i64,
                        tv_nsec: t.subsec_nanos().into(),
                    },
                };
                rustix::fs::utimensat(rustix::fs::CWD, &p, &ts, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(std::io::Error::from)
            });
            match made {
                Ok(()) => report.symlinks += 1,
                Err(e) => report.failed.push((l.path.clone(), format!("cannot create symlink: {e}"))),
            }
        }

        // Folder modes and times last, deepest first (writing into a folder changes its mtime).
        for d in dirs_made.iter().rev() {
            let p = target.join(&d.rel);
            let r = File::open(&p)
                .and_then(|f| f.set_times(FileTimes::new().set_modified(mtime_of(&d.node))))
                .and_then(|()| fs::set_permissions(&p, fs::Permissions::from_mode(d.node.mode)));
            match r {
                Ok(()) => report.dirs += 1,
                Err(e) => report.failed.push((d.path.clone(), format!("cannot set folder metadata: {e}"))),
            }
        }
        sync("restored file names")?;
        report.failed.sort();
        Ok(report)
    }

    /// Reads one coalesced range of a pack and writes every blob in it to its targets.
    #[allow(clippy::too_many_arguments)]
    fn restore_range(
        &self,
        range: &Range,
        needs: &[Need],
        files: &[PlanNode],
        target: &Path,
        fail: &(dyn Fn(usize, String) + Sync),
    ) -> u64 {
        let Range { pack, first, end } = *range;
        let fail_all = |why: &str| {
            for n in needs {
                for t in &n.targets {
                    fail(t.file, why.to_string());
                }
            }
        };
        let len = usize::try_from(end - first).unwrap_or(usize::MAX);
        BUFFERS.with(|cell| {
            let mut bufs = cell.borrow_mut();
            let (read_buf, scratch, out) = &mut *bufs;
            if let Err(e) = self.store.get_range_into(FileKind::Pack, &pack.to_hex(), first, len, read_buf) {
                fail_all(&e.at(Location::Pack { pack, offset: Some(first) }).to_string());
                return 0;
            }
            let data: &[u8] = read_buf;
            let mut bytes = 0;
            // Files written by this range, opened once each.
            let mut open_files: HashMap<usize, File> = HashMap::new();
            for n in needs {
                let e = n.loc.entry(n.id);
                let s = (u64::from(e.offset) - first) as usize;
                let sealed = &data[s..s + e.sealed_len as usize];
                let plain = match blob::open_into(
                    &self.keys,
                    BlobKind::Data,
                    &n.id,
                    e.codec,
                    e.raw_len,
                    sealed,
                    scratch,
                    out,
                ) {
                    Ok(p) => p,
                    Err(err) => {
                        let msg = err.at(Location::Pack { pack, offset: Some(u64::from(e.offset)) }).to_string();
                        for t in &n.targets {
                            fail(t.file, msg.clone());
                        }
                        continue;
                    }
                };
                for t in &n.targets {
                    let file = match open_files.entry(t.file) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            let path = temp_path(&target.join(&files[t.file].rel), t.file);
                            match OpenOptions::new().write(true).open(&path) {
                                Ok(f) => v.insert(f),
                                Err(err) => {
                                    fail(t.file, format!("cannot open for writing: {err}"));
                                    continue;
                                }
                            }
                        }
                    };
                    match file.write_all_at(plain, t.offset) {
                        Ok(()) => bytes += plain.len() as u64,
                        Err(err) => fail(t.file, format!("write failed: {err}")),
                    }
                }
            }
            bytes
        })
    }

    /// Looks up every chunk of a file; the lengths must add up to the file's size.
    fn resolve_chunks(&self, chunks: &[ChunkId], size: u64) -> Result<Vec<BlobLocation>> {
        let mut total = 0u64;
        let mut out = Vec::with_capacity(chunks.len());
        for c in chunks {
            let loc = self
                .index
                .lookup(&c.0)?
                .filter(|l| l.kind == BlobKind::Data)
                .ok_or_else(|| Error::NotFound(format!("chunk {} is in no index (lost data)", c.short())))?;
            total += u64::from(loc.raw_len);
            out.push(loc);
        }
        if total != size {
            return Err(Error::Integrity(format!("chunks add up to {total} bytes, the tree says {size}")));
        }
        Ok(out)
    }

    /// Lists what to restore. Unreadable subtrees become failures, not errors.
    fn plan(&self, snapshot: &SnapshotRecord, include: &[String]) -> Result<Plan> {
        let mut plan = Plan::default();
        let root = self.load_tree(&snapshot.root).at(|| Location::SnapshotPath("/".into()))?;
        if include.is_empty() {
            self.plan_tree("", Path::new(""), &root, &mut plan);
            return Ok(plan);
        }
        for inc in include {
            let steps = self.follow_path(&root, inc)?;
            let Some(last) = steps.len().checked_sub(1) else {
                self.plan_tree("", Path::new(""), &root, &mut plan);
                continue;
            };
            // The included path's ancestors come with their own metadata.
            let mut rel = PathBuf::new();
            for (i, step) in steps.into_iter().enumerate() {
                rel.push(OsStr::from_bytes(&step.node.name));
                plan.push(step.path.clone(), rel.clone(), step.node);
                if let (true, Some(tree)) = (i == last, &step.tree) {
                    self.plan_tree(&step.path, &rel, tree, &mut plan);
                }
            }
        }
        Ok(plan)
    }

    fn plan_tree(&self, prefix: &str, prefix_rel: &Path, tree: &Tree, plan: &mut Plan) {
        for node in &tree.nodes {
            let path = join(prefix, &node.name_lossy());
            let rel = prefix_rel.join(OsStr::from_bytes(&node.name));
            let sub = if let NodeContent::Dir { tree } = &node.content { Some(*tree) } else { None };
            if !plan.push(path.clone(), rel.clone(), node.clone()) {
                continue;
            }
            if let Some(t) = sub {
                if let Err(e) = check_tree_depth(&path) {
                    plan.failed.push((path, format!("folder contents not restored: {e}")));
                    continue;
                }
                match self.load_tree(&t) {
                    Ok(subtree) => self.plan_tree(&path, &rel, &subtree, plan),
                    Err(e) => plan.failed.push((path, format!("folder contents lost: {e}"))),
                }
            }
        }
    }
}

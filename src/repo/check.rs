//! Check: structure (every snapshot's trees and chunks resolve through the index to packs that
//! exist with the right size) and, with `read_data`, content (every pack hashes to its name,
//! its directory decrypts and matches the index, every blob opens). Each problem names the
//! snapshots and paths it affects.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;

use crate::error::Location;
use crate::format::blob::BlobKind;
use crate::format::snapshot::{NodeContent, Tree};
use crate::id::{ChunkId, Id, IndexId, PackId, SnapshotId, TreeId};
use crate::pack::{BlobLocation, PackInfo, PackReader};
use crate::repo::lock::LockKind;
use crate::repo::walk::{self, Step, TreeSource, TreeWalk};
use crate::repo::Repository;
use crate::store::{list_ids, FileKind};
use crate::Result;

/// Which packs `read_data` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataSubset {
    /// Part `n` of `m` (1 ≤ n ≤ m): the packs whose id, read as a number, is n−1 modulo m.
    /// Running parts 1/m … m/m on successive days reads every pack once.
    Part {
        /// Which part, from 1.
        n: u32,
        /// How many parts.
        m: u32,
    },
    /// About this percentage (0–100) of the packs, chosen at random at each run.
    Percent(f64),
}

impl DataSubset {
    /// Parses `N/M` or `P%`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] for anything else, or out-of-range values.
    pub fn parse(s: &str) -> Result<DataSubset> {
        let bad = || {
            crate::Error::InvalidArgument(format!(
                "read-data subset {s:?}: expected N/M (1 ≤ N ≤ M) or P% (0 < P ≤ 100)"
            ))
        };
        let subset = if let Some(p) = s.strip_suffix('%') {
            DataSubset::Percent(p.trim().parse().map_err(|_| bad())?)
        } else {
            let (n, m) = s.split_once('/').ok_or_else(bad)?;
            DataSubset::Part { n: n.trim().parse().map_err(|_| bad())?, m: m.trim().parse().map_err(|_| bad())? }
        };
        subset.validate().map_err(|_| bad())?;
        Ok(subset)
    }

    /// Refuses a part outside 1 ≤ N ≤ M and a percentage outside (0, 100].
    fn validate(&self) -> Result<()> {
        match *self {
            DataSubset::Part { n, m } if n == 0 || m == 0 || n > m => {
                Err(crate::Error::InvalidArgument(format!("read-data subset {n}/{m}: expected 1 ≤ N ≤ M")))
            }
            DataSubset::Percent(pc) if !(pc > 0.0 && pc <= 100.0) => {
                Err(crate::Error::InvalidArgument(format!("read-data subset {pc}%: expected 0 < P ≤ 100")))
            }
            _ => Ok(()),
        }
    }

    /// The packs of `packs` this subset reads.
    fn select(&self, packs: &[PackInfo]) -> Result<Vec<PackInfo>> {
        self.validate()?;
        match *self {
            DataSubset::Part { n, m } => Ok(packs
                .iter()
                .filter(|p| {
                    let head = u64::from_be_bytes(p.id.0 .0[..8].try_into().expect("8 bytes"));
                    head % u64::from(m) == u64::from(n - 1)
                })
                .copied()
                .collect()),
            DataSubset::Percent(pc) => {
                let salt: [u8; 32] = crate::crypto::random_array()?;
                let mut keyed: Vec<([u8; 32], PackInfo)> =
                    packs.iter().map(|p| (*blake3::keyed_hash(&salt, &p.id.0 .0).as_bytes(), *p)).collect();
                keyed.sort_by_key(|k| k.0);
                let take = ((packs.len() as f64) * pc / 100.0).ceil() as usize;
                Ok(keyed.into_iter().take(take).map(|(_, p)| p).collect())
            }
        }
    }
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read every pack and open every blob.
    pub read_data: bool,
    /// With `read_data`, read only these packs (the structure is still checked in full).
    pub read_data_subset: Option<DataSubset>,
    /// Take no lock (for a read-only repository; a prune running at the same time then
    /// shows as missing packs).
    pub no_lock: bool,
    /// Receives progress while packs are read (bytes and packs).
    pub progress: Option<std::sync::Arc<dyn crate::Progress>>,
}

/// One problem found by [`Repository::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub message: String,
    /// The pack concerned, if any.
    pub pack: Option<PackId>,
    /// Offset of the damaged blob in the pack, if known.
    pub offset: Option<u64>,
    /// Affected snapshot paths, as `snapshot-short:path`.
    pub affected: Vec<String>,
}

/// The result of a check.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Distinct trees read.
    pub trees: usize,
    /// Packs the index names.
    pub packs: usize,
    /// Packs read (with `read_data`).
    pub packs_read: usize,
    /// Index files read and verified.
    pub index_files: usize,
    /// Keyslots whose structure was verified.
    pub keyslots: usize,
    /// Blobs opened (with `read_data`).
    pub blobs_read: usize,
    /// Compression dictionaries (`dicts/`, format-spec.md §5.17) read and verified.
    pub dictionaries: usize,
    /// Packs in the store that no index names (left by an interrupted backup; prune removes
    /// them). Not a problem.
    pub unreferenced_packs: Vec<PackId>,
    /// Temporary files that writes killed mid-way left, idle for longer than
    /// an hour (prune removes them). Not a problem.
    pub stale_temporaries: u64,
    /// Whether the store refuses a write to a taken name by itself (`Some(false)`: an S3
    /// server that ignores `If-None-Match`, where the store looks before it writes). Asked
    /// with a probe object unless `no_lock`. Not a problem.
    pub create_only: Option<bool>,
    /// Problems, each with what it affects.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// True when no problem was found.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The trees check walks, read through a memo: a tree that many snapshots (or folders) share
/// is read once, and one whose blob is already known damaged, or that failed before, is not
/// read again. The walk itself still goes through every occurrence, so each problem lists
/// every snapshot path it affects.
struct CheckedTrees<'r> {
    repo: &'r Repository,
    /// What check found so far; the walk adds to it (between the walk's steps, so the borrows
    /// never overlap).
    damage: RefCell<Damage>,
    /// Every tree met: `Some` when it read, `None` when it did not (its problem reported).
    memo: RefCell<HashMap<TreeId, Option<Tree>>>,
    /// Set by a read refused with nothing new to report, taken at the walk's next error:
    /// `Some(n)` when the tree's blob suffers problem `n` (found reading packs), `None` when
    /// the tree failed before.
    known: Cell<Option<Option<usize>>>,
}

impl TreeSource for CheckedTrees<'_> {
    fn tree(&self, id: &TreeId) -> Result<Tree> {
        // Stands for a refusal `known` explains; never shown.
        let refused = || crate::Error::NotFound(format!("tree {}", id.short()));
        if let Some(seen) = self.memo.borrow().get(id) {
            return seen.clone().ok_or_else(|| {
                self.known.set(Some(None));
                refused()
            });
        }
        let loaded = match self.repo.index.lookup(&id.0) {
            Ok(Some(loc)) if loc.kind == BlobKind::Tree => {
                if let Some(n) = self.damage.borrow().for_blob(&id.0, &loc) {
                    self.memo.borrow_mut().insert(*id, None);
                    self.known.set(Some(Some(n)));
                    return Err(refused());
                }
                self.repo.load_tree(id)
            }
            Ok(_) => Err(crate::Error::NotFound(format!("tree {} is in no index", id.short()))),
            Err(e) => Err(e),
        };
        self.memo.borrow_mut().insert(*id, loaded.as_ref().ok().cloned());
        loaded
    }
}

impl<'r> CheckedTrees<'r> {
    fn new(repo: &'r Repository, damage: Damage) -> Self {
        CheckedTrees { repo, damage: RefCell::new(damage), memo: RefCell::new(HashMap::new()), known: Cell::new(None) }
    }

    /// Walks the snapshot `snap` from its root tree: every folder's tree must read (and lie
    /// within the nesting limit), every file's chunks resolve to a sound blob.
    fn check_snapshot(&self, snap: &SnapshotId, root: TreeId) {
        let here = |path: &str| format!("{}:{}", snap.short(), if path.is_empty() { "/" } else { path });
        // The folder whose tree the walk reads next (an error is about it) and that tree.
        let (mut folder, mut tree) = (String::new(), root);
        for step in TreeWalk::new(self, root, "") {
            match step {
                Ok(Step::Node { path, node }) => match node.content {
                    NodeContent::Dir { tree: t } => (folder, tree) = (path, t),
                    NodeContent::File { chunks, .. } => {
                        self.damage.borrow_mut().check_chunks(&self.repo.index, &chunks, || here(&path))
                    }
                    NodeContent::Symlink { .. } => {}
                },
                Ok(Step::Leave { .. }) => {}
                Err(e) => {
                    let mut damage = self.damage.borrow_mut();
                    let n = match self.known.take() {
                        Some(None) => continue,
                        Some(Some(n)) => n,
                        None => damage.add(format!("tree {}: {}", tree.short(), walk::unplaced(e)), None, None),
                    };
                    damage.affect(n, here(&folder));
                }
            }
        }
    }
}

/// One thing reading a pack found wrong: the damaged blob and its offset (if it is about one),
/// the message, and the dictionary the blob could not get (if that is why).
type Finding = (Option<(Id, u64)>, String, Option<Id>);
/// What reading one pack found: (pack, findings, blobs opened).
type PackFindings = (PackId, Vec<Finding>, usize);

/// Blobs listed per dictionary problem.
const DICT_EXAMPLES: usize = 3;

/// Problems keyed by what they break, so the tree walk can attach affected paths.
#[derive(Default)]
struct Damage {
    problems: Vec<Problem>,
    by_pack: HashMap<PackId, usize>,
    by_blob: HashMap<Id, usize>,
    missing_chunks: BTreeMap<Id, usize>,
    /// Per dictionary that cannot be had: its problem, why, and the blobs that need it.
    by_dict: BTreeMap<Id, (usize, String, Vec<Id>)>,
}

impl Damage {
    fn add(&mut self, message: String, pack: Option<PackId>, offset: Option<u64>) -> usize {
        self.problems.push(Problem { message, pack, offset, affected: Vec::new() });
        self.problems.len() - 1
    }

    /// The problem a blob at `loc` suffers from, if any.
    fn for_blob(&self, id: &Id, loc: &BlobLocation) -> Option<usize> {
        self.by_blob.get(id).or_else(|| self.by_pack.get(&loc.pack)).copied()
    }

    /// Every chunk of a file must be in the index as data, in a blob no problem affects;
    /// `here` names the file (`snapshot-short:path`) in the problems it is affected by.
    fn check_chunks(&mut self, index: &crate::Index, chunks: &[ChunkId], here: impl Fn() -> String) {
        for c in chunks {
            let problem = match index.lookup(&c.0) {
                Ok(Some(loc)) if loc.kind == BlobKind::Data => self.for_blob(&c.0, &loc),
                _ => Some(*self.missing_chunks.entry(c.0).or_insert_with(|| {
                    self.problems.push(Problem {
                        message: format!("chunk {} is in no index", c.short()),
                        pack: None,
                        offset: None,
                        affected: Vec::new(),
                    });
                    self.problems.len() - 1
                })),
            };
            if let Some(n) = problem {
                self.affect(n, here());
            }
        }
    }

    /// A dictionary that cannot be had (`why`); `blob` needs it. One problem per dictionary,
    /// whose message counts the blobs and names a few.
    fn dictionary(&mut self, dict: Id, why: String, blob: Option<Id>) -> usize {
        let n = match self.by_dict.get(&dict) {
            Some((n, ..)) => *n,
            None => {
                let n = self.add(String::new(), None, None);
                self.by_dict.insert(dict, (n, why, Vec::new()));
                n
            }
        };
        let (_, why, blobs) = self.by_dict.get_mut(&dict).expect("inserted above");
        if let Some(b) = blob {
            blobs.push(b);
            self.by_blob.insert(b, n);
        }
        let mut msg = format!("dictionary {dict} cannot be used ({why})");
        if blobs.is_empty() {
            msg.push_str("; a check that reads data names the blobs compressed with it");
        } else {
            let some: Vec<String> = blobs.iter().take(DICT_EXAMPLES).map(Id::short).collect();
            msg.push_str(&format!(
                "; {} blob{} compressed with it cannot be opened: {}{}",
                blobs.len(),
                if blobs.len() == 1 { "" } else { "s" },
                some.join(", "),
                if blobs.len() > DICT_EXAMPLES { ", …" } else { "" }
            ));
        }
        self.problems[n].message = msg;
        n
    }

    fn affect(&mut self, problem: usize, what: String) {
        let a = &mut self.problems[problem].affected;
        if a.len() < 1000 && a.last() != Some(&what) {
            a.push(what);
        }
    }
}

impl Repository {
    /// Checks the repository. Problems are reported, not returned as errors.
    ///
    /// # Errors
    /// Only when the store cannot be listed.
    pub fn check(&self, options: CheckOptions) -> Result<CheckReport> {
        let _lock = if options.no_lock { None } else { Some(self.lock(LockKind::Shared, "check")?) };
        let mut report = CheckReport::default();
        let mut damage = Damage::default();

        // Keyslots: structure, repository, and the check tag under the master key (so every
        // slot is verified, also those this client has no credential for).
        let slots = crate::repo::keys::load_slots_each(self.store.as_ref(), &self.repo_id)?;
        for (name, slot) in slots {
            report.keyslots += 1;
            let loc = || Location::RepoFile(FileKind::Key.path(&name));
            if let Err(e) = slot.and_then(|s| s.verify(&self.master).map_err(|e| e.at(loc()))) {
                damage.add(e.to_string(), None, None);
            }
        }

        // History, as found at open: snapshots gone without a tombstone, predecessors gone
        // without one, removed keyslots put back, tombstones that do not read.
        let h = self.history_report();
        for (id, seq) in &h.vanished {
            damage.add(
                format!("snapshot {} (sequence {seq}), seen by this client, is gone without a tombstone: someone without the key deleted it", id.short()),
                None,
                None,
            );
        }
        for (child, prev) in &h.broken_links {
            damage.add(
                format!(
                    "snapshot {}: its predecessor {} is gone without a tombstone: someone without the key deleted it",
                    child.short(),
                    prev.short()
                ),
                None,
                None,
            );
        }
        for k in &h.reappeared_keyslots {
            damage.add(
                format!("keyslot {k} was removed and is back: someone without the key put it back; it opens nothing here (delete keys/{k})"),
                None,
                None,
            );
        }
        for id in &h.missing_tombstones {
            damage.add(
                format!("the tombstone of forgotten snapshot {} is gone: someone without the key deleted it (the snapshot stays forgotten)", id.short()),
                None,
                None,
            );
        }
        for name in &h.damaged_tombstones {
            damage.add(format!("tombstone {name} does not read (damaged or forged)"), None, None);
        }

        // Index files: each must read, hash to its name and decrypt. A damaged one is left
        // out of the index at open, so its packs show up below as unreferenced.
        let index_ids: Vec<IndexId> =
            list_ids(self.store.as_ref(), FileKind::Index)?.into_iter().map(IndexId).collect();
        report.index_files = index_ids.len();
        for (_, r) in crate::index::read_index_files_each(self.store.as_ref(), self.keys.meta_key(), &index_ids) {
            match r {
                Ok(_) => {}
                Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
                Err(e) => {
                    damage.add(format!("{e} (repair the index)"), None, None);
                }
            }
        }

        // Dictionaries (format-spec.md §5.17): each must read, open and hash to its name.
        for id in crate::dict::list(self.store.as_ref())? {
            report.dictionaries += 1;
            match crate::dict::load(self.store.as_ref(), &self.keys, &id) {
                Ok(_) => {}
                Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
                Err(e) => {
                    damage.dictionary(id, dict_reason(&e), None);
                }
            }
        }

        // Packs: the index's view against the store's.
        let in_store: HashSet<Id> = list_ids(self.store.as_ref(), FileKind::Pack)?.into_iter().collect();
        let mut indexed: Vec<_> = self.index.packs().copied().collect();
        indexed.sort_by_key(|p| p.id);
        indexed.dedup_by_key(|p| p.id);
        report.packs = indexed.len();
        let indexed_ids: HashSet<Id> = indexed.iter().map(|p| p.id.0).collect();
        report.unreferenced_packs =
            in_store.iter().filter(|id| !indexed_ids.contains(id)).map(|id| PackId(*id)).collect();
        report.unreferenced_packs.sort();
        // Counted only: check never removes anything.
        report.stale_temporaries = self.store.sweep_temporaries(crate::repo::TEMPORARY_IDLE, true)?.0;
        report.create_only = if options.no_lock { self.store.create_only() } else { self.store.probe_create_only()? };
        for p in &indexed {
            if !in_store.contains(&p.id.0) {
                let n = damage.add(
                    format!("pack {} is missing (repair the index, then the snapshots, to drop what it held)", p.id),
                    Some(p.id),
                    None,
                );
                damage.by_pack.insert(p.id, n);
                continue;
            }
            match self.store.size(FileKind::Pack, &p.id.to_hex()) {
                Ok(len) if len == u64::from(p.len) => {}
                Ok(len) => {
                    let n =
                        damage.add(format!("pack {} is {len} bytes, the index says {}", p.id, p.len), Some(p.id), None);
                    // Reading the data pins down which blobs are lost; without it, assume all.
                    if !options.read_data {
                        damage.by_pack.insert(p.id, n);
                    }
                }
                Err(e) => {
                    let n = damage.add(format!("pack {}: {e}", p.id), Some(p.id), None);
                    damage.by_pack.insert(p.id, n);
                }
            }
        }

        if options.read_data {
            let progress: &dyn crate::Progress = options.progress.as_deref().unwrap_or(&crate::NoProgress);
            let to_read = match &options.read_data_subset {
                Some(subset) => subset.select(&indexed)?,
                None => indexed.clone(),
            };
            report.packs_read = to_read.len();
            progress.start("check", to_read.iter().map(|p| u64::from(p.len)).sum(), to_read.len() as u64);
            self.read_all_data(&to_read, &mut damage, &mut report, progress);
            progress.finish();
        }

        // Snapshots and trees: every file's chunks must resolve to a sound blob.
        let trees = CheckedTrees::new(self, damage);
        for id in list_ids(self.store.as_ref(), FileKind::Snapshot)? {
            let sid = SnapshotId(id);
            match self.load_snapshot(&sid) {
                Ok(rec) => {
                    report.snapshots += 1;
                    trees.check_snapshot(&sid, rec.root);
                }
                Err(e) => {
                    trees.damage.borrow_mut().add(format!("snapshot {}: {e}", sid.short()), None, None);
                }
            }
        }
        report.trees = trees.memo.into_inner().len();
        report.problems = trees.damage.into_inner().problems;
        Ok(report)
    }

    /// Reads every pack: hash, directory, and every blob the index places in it.
    fn read_all_data(
        &self,
        packs: &[PackInfo],
        damage: &mut Damage,
        report: &mut CheckReport,
        progress: &dyn crate::Progress,
    ) {
        let mut entries: HashMap<PackId, Vec<(Id, BlobLocation)>> = HashMap::new();
        for item in self.index.iter() {
            match item {
                Ok((id, loc)) => entries.entry(loc.pack).or_default().push((id, loc)),
                Err(e) => {
                    damage.add(format!("index cache: {e}"), None, None);
                }
            }
        }
        let results: Vec<PackFindings> = packs
            .par_iter()
            .filter(|p| !damage.by_pack.contains_key(&p.id))
            .map_init(
                || PackReader::new(self.store.as_ref(), &self.keys),
                |reader, p| {
                    let mut found = Vec::new();
                    let mut blobs = entries.get(&p.id).cloned().unwrap_or_default();
                    blobs.sort_by_key(|(_, l)| l.offset);
                    let read = reader.read_whole(&p.id, &blobs, |(id, loc), opened| {
                        if let Err(e) = opened {
                            let (msg, dict) = match e.dictionary() {
                                Some(d) => (dict_reason(&e), Some(d)),
                                None => (e.to_string(), None),
                            };
                            found.push((Some((*id, u64::from(loc.offset))), msg, dict));
                        }
                    });
                    let whole = match read {
                        Ok(w) => w,
                        Err(e) => return (p.id, vec![(None, e.to_string(), None)], 0),
                    };
                    if !whole.hash_matches {
                        found.push((None, format!("pack {}: content does not hash to its name", p.id), None));
                    }
                    match whole.directory {
                        Ok(dir) => {
                            let listed: HashSet<(Id, u32, u32)> =
                                dir.entries.iter().map(|e| (e.id, e.offset, e.sealed_len)).collect();
                            if dir.kind != p.kind {
                                found.push((
                                    None,
                                    format!(
                                        "pack {}: directory says {} blobs, the index says {}",
                                        p.id,
                                        dir.kind.name(),
                                        p.kind.name()
                                    ),
                                    None,
                                ));
                            }
                            if blobs.iter().any(|(id, l)| !listed.contains(&(*id, l.offset, l.sealed_len))) {
                                found.push((None, format!("pack {}: directory and index disagree", p.id), None));
                            }
                        }
                        Err(e) => found.push((None, e.to_string(), None)),
                    }
                    let opened = blobs.iter().filter(|(_, l)| l.end() <= whole.len).count();
                    progress.advance(u64::from(p.len), 1);
                    (p.id, found, opened)
                },
            )
            .collect();
        for (pack, found, opened) in results {
            report.blobs_read += opened;
            for (blob, message, dict) in found {
                match (blob, dict) {
                    (Some((id, _)), Some(d)) => {
                        // Reported once per dictionary, with the blobs it takes down.
                        let why = damage.by_dict.get(&d).map_or(message, |(_, w, _)| w.clone());
                        damage.dictionary(d, why, Some(id));
                    }
                    (Some((id, offset)), None) => {
                        let n = damage.add(message, Some(pack), Some(offset));
                        damage.by_blob.insert(id, n);
                    }
                    (None, _) => {
                        // A damaged pack hash or directory alone does not stop a restore,
                        // which reads blobs through the index: only blobs that fail to open
                        // affect files.
                        damage.add(message, Some(pack), None);
                    }
                }
            }
        }
    }
}

/// Why a dictionary cannot be used, in a few words: the error inside the
/// [`Error::Dictionary`](crate::Error::Dictionary) wrapper.
fn dict_reason(e: &crate::Error) -> String {
    match e {
        crate::Error::Dictionary { error, .. } => match error.kind() {
            crate::ErrorKind::NotFound => format!("missing: {error}"),
            _ => format!("damaged: {error}"),
        },
        crate::Error::At { error, .. } => dict_reason(error),
        other => other.to_string(),
    }
}

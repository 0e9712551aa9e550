//! Prune: first a [`PrunePlan`], pure data computed from the index files, the packs in the
//! store and the blobs the snapshots need (no I/O: `PrunePlan::decide`); then its execution,
//! which copies what the repacked packs still hold into new packs, writes one index file for
//! everything kept, and deletes last. A dry run is the plan alone. This is the split
//! rustic_core makes (`PrunePlan`, then `do_prune`): the decisions can be tested, printed and
//! reviewed without touching a store.

mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};

pub use plan::{PackAction, PackPlan, PrunePlan};

use self::plan::owners;
use super::delete_if_present;
use crate::crypto::random_array;
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::{BlobKind, SealedBlob};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::snapshot::NodeContent;
use crate::id::{Id, IndexId, PackId};
use crate::pack::{BlobLocation, PackReader, PackWriter, WrittenPack};
use crate::repo::lock::{LockKind, RepoLock};
use crate::repo::walk::Step;
use crate::repo::Repository;
use crate::store::{list_ids, FileKind};

/// How prune works.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Unused space left in partly used packs, as a percentage of all pack bytes, above which
    /// the least used packs are rewritten.
    pub max_unused_percent: f64,
    /// Compute and report, change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { max_unused_percent: 5.0, dry_run: false }
    }
}

/// What prune did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs snapshots still need.
    pub used_blobs: u64,
    /// Bytes (sealed) of those blobs.
    pub used_bytes: u64,
    /// Blobs no snapshot needs (including extra copies of a blob).
    pub unused_blobs: u64,
    /// Their bytes.
    pub unused_bytes: u64,
    /// Packs kept as they are.
    pub packs_kept: u64,
    /// Packs whose needed blobs were copied into new packs, then deleted.
    pub packs_repacked: u64,
    /// Packs deleted because nothing in them is needed (or no index names them).
    pub packs_deleted: u64,
    /// New packs written by repacking.
    pub packs_written: u64,
    /// Bytes of the packs deleted (repacked ones included).
    pub bytes_freed: u64,
    /// Index files replaced by the new one.
    pub index_files_replaced: u64,
    /// Temporary files left by writes that were killed mid-way, removed (idle for longer
    /// than an hour).
    pub temporaries_removed: u64,
    /// Their bytes (what removing them frees).
    pub temporary_bytes: u64,
    /// What went wrong without stopping the prune (its work was done).
    pub warnings: Vec<String>,
    /// The plan prune followed (or, with `dry_run`, would follow): what it decided for each
    /// pack.
    pub plan: PrunePlan,
}

/// How long a temporary file must have been left untouched before prune removes it. Prune
/// holds the exclusive lock, so no lock-respecting client is writing; the margin covers
/// clocks and clients that lost their lock.
pub const TEMPORARY_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What the execution needs beyond the plan: every pack record, and which pack keeps each
/// needed blob.
struct Sources {
    records: BTreeMap<PackId, IndexPack>,
    owner: HashMap<Id, PackId>,
}

impl Repository {
    /// Every blob the snapshots need (data and trees), walking each tree once: a folder whose
    /// tree was walked already (in this snapshot or an earlier one) is skipped. Folders nested
    /// past the limit are refused, as every reader refuses them; errors name the snapshot and
    /// the folder.
    fn reachable(&self) -> Result<HashSet<Id>> {
        let mut blobs = HashSet::new();
        let (snaps, damaged) = self.snapshots_with_errors()?;
        if let Some((id, e)) = damaged.first() {
            // Its data cannot be told apart from garbage: deleting could lose it.
            return Err(Error::Integrity(format!(
                "snapshot {} cannot be read ({e}); prune would not know which data it needs. Restore the file, or forget snapshot {}, then prune",
                id.short(),
                id.to_hex()
            )));
        }
        for (sid, rec) in snaps {
            if !blobs.insert(rec.root.0) {
                continue;
            }
            let mut walk = self.walk(rec.root, "");
            while let Some(step) = walk.next() {
                let Step::Node { node, .. } = step.at(|| Location::Snapshot(sid))? else { continue };
                match node.content {
                    NodeContent::File { chunks, .. } => blobs.extend(chunks.iter().map(|c| c.0)),
                    NodeContent::Dir { tree } => {
                        if !blobs.insert(tree.0) {
                            walk.skip_subtree();
                        }
                    }
                    NodeContent::Symlink { .. } => {}
                }
            }
        }
        Ok(blobs)
    }

    /// Removes data no snapshot needs: deletes unused packs, rewrites the least used ones,
    /// replaces every index file by one. Refuses to run when a snapshot's tree cannot be read
    /// (deleting would then lose data): [`check`](Repository::check), then
    /// [`repair_snapshots`](Repository::repair_snapshots).
    ///
    /// With `dry_run`, computes the plan ([`PruneReport::plan`]) and changes nothing.
    ///
    /// # Errors
    /// [`Error::Locked`]; unreadable trees; store errors.
    pub fn prune(&mut self, options: PruneOptions) -> Result<PruneReport> {
        let held = if options.dry_run { None } else { Some(self.lock(LockKind::Exclusive, "prune")?) };
        // Other clients may have written since this handle loaded the index.
        self.sync_index()?;
        let (plan, sources) = self.prune_plan(options.max_unused_percent)?;
        let mut report = plan.report();
        if options.dry_run {
            (report.temporaries_removed, report.temporary_bytes) =
                self.store.sweep_temporaries(TEMPORARY_IDLE, true)?;
            return Ok(report);
        }
        self.execute_prune(&mut report, &sources, held.as_ref())?;
        Ok(report)
    }

    /// Reads what the plan is decided from (snapshots, trees, index files, the store's pack
    /// list and the strays' lengths) and decides it.
    fn prune_plan(&self, max_unused_percent: f64) -> Result<(PrunePlan, Sources)> {
        let needed = self.reachable()?;
        let files = self.index_files()?;
        let mut records: BTreeMap<PackId, IndexPack> = BTreeMap::new();
        for (_, f) in &files {
            for p in &f.packs {
                records.entry(p.pack).or_insert_with(|| p.clone());
            }
        }
        let in_store: HashSet<PackId> =
            list_ids(self.store.as_ref(), FileKind::Pack)?.into_iter().map(PackId).collect();
        let owner = owners(&records, &in_store, &needed)?;
        let mut strays: Vec<(PackId, u64)> = in_store
            .iter()
            .filter(|p| !records.contains_key(p))
            .map(|p| (*p, self.store.size(FileKind::Pack, &p.to_hex()).unwrap_or(0)))
            .collect();
        strays.sort();
        let index_files = files.into_iter().map(|(id, _)| id).collect();
        let plan = PrunePlan::decide(index_files, &records, &in_store, strays, &owner, max_unused_percent);
        Ok((plan, Sources { records, owner }))
    }

    /// Carries out `report.plan`: new packs, then the new index, then the deletes.
    fn execute_prune(&mut self, report: &mut PruneReport, sources: &Sources, held: Option<&RepoLock>) -> Result<()> {
        let plan = &report.plan;
        // 1. Copy the needed blobs of the repacked packs into new packs (sealed bytes move as
        //    they are: each is opened and checked first).
        let written = self.repack(&plan.repack_order, sources)?;
        report.packs_written = written.len() as u64;
        self.store.flush()?;

        // 2. One index file for everything kept, durable before anything is deleted.
        let gone: HashSet<PackId> = plan.packs.iter().filter(|p| p.action != PackAction::Keep).map(|p| p.id).collect();
        let mut new_index = IndexFile::default();
        for p in plan.with_action(PackAction::Keep) {
            new_index.packs.push(sources.records[&p.id].clone());
        }
        debug_assert!(new_index.packs.iter().all(|p| !gone.contains(&p.pack)));
        new_index.packs.extend(written.iter().map(|w| w.record.clone()));
        let bytes = crate::format::index::encode(self.keys.meta_key(), &new_index, &random_array()?);
        let new_id = IndexId(Id::hash_of(&bytes));
        match self.store.put(FileKind::Index, &new_id.to_hex(), &bytes) {
            Ok(()) | Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }

        // 3. The old index files, then the packs; not if our lock may have lapsed (a backup
        //    may then be running and using them).
        if let Some(lock) = held {
            lock.ensure_held()?;
        }
        for id in &plan.index_files {
            if *id != new_id {
                delete_if_present(self, FileKind::Index, &id.to_hex())?;
            }
        }
        let strays = plan.strays.iter().map(|s| &s.0);
        for p in plan.packs.iter().filter(|p| p.action != PackAction::Keep).map(|p| &p.id).chain(strays) {
            delete_if_present(self, FileKind::Pack, &p.to_hex())?;
        }
        // The index changed under the cache: reload (rebuilds the local tables).
        self.index = self.reload_index()?;
        // Last and best effort: the prune itself is done whatever happens here.
        match self.store.sweep_temporaries(TEMPORARY_IDLE, false) {
            Ok((n, bytes)) => (report.temporaries_removed, report.temporary_bytes) = (n, bytes),
            Err(e) => report.warnings.push(format!("temporary files not removed: {e}")),
        }
        Ok(())
    }

    /// Copies the blobs each pack of `order` keeps into new packs, through the pack reader
    /// (coalesced ranges of the kept blobs only). Every pack's length is checked against the
    /// index first, before anything is read or written: a pack that changed is refused.
    fn repack(&self, order: &[PackId], sources: &Sources) -> Result<Vec<WrittenPack>> {
        let mut reader = PackReader::new(self.store.as_ref(), &self.keys);
        for pid in order {
            let p = &sources.records[pid];
            let size = reader.size(pid)?;
            let whole = || Location::Pack { pack: *pid, offset: None };
            if size > u64::from(p.pack_len) {
                return Err(Error::Integrity(format!(
                    "pack is larger than the {} bytes the index says ({size} bytes): check with read_data",
                    p.pack_len
                ))
                .at(whole()));
            }
            if size < u64::from(p.pack_len) {
                return Err(Error::Integrity(format!(
                    "pack is {size} bytes, the index says {}: check with read_data",
                    p.pack_len
                ))
                .at(whole()));
            }
        }
        let target = self.settings.pack_target_size as usize;
        let mut writers = [PackWriter::new(BlobKind::Data, target), PackWriter::new(BlobKind::Tree, target)];
        let mut written: Vec<WrittenPack> = Vec::new();
        for pid in order {
            let p = &sources.records[pid];
            let kept: Vec<(Id, BlobLocation)> = p
                .entries
                .iter()
                .filter(|e| sources.owner.get(&e.id) == Some(pid))
                .map(|e| {
                    let loc = BlobLocation {
                        pack: *pid,
                        kind: p.kind,
                        offset: e.offset,
                        sealed_len: e.sealed_len,
                        raw_len: e.raw_len,
                        codec: e.codec,
                    };
                    (e.id, loc)
                })
                .collect();
            // Read in pack order (coalesced ranges); the writer then scatters them over its
            // open packs like any other blobs (pack/writer.rs).
            let (kept, ranges) = crate::pack::coalesce(kept);
            for r in &ranges {
                let mut sealed_blobs = Vec::with_capacity(r.blobs.len());
                let mut failed = None;
                reader.read_range(r, Some(u64::from(p.pack_len)), &kept[r.blobs.clone()], |(id, loc), opened| {
                    match opened {
                        Ok(o) if failed.is_none() => sealed_blobs.push(SealedBlob {
                            id: *id,
                            kind: loc.kind,
                            codec: loc.codec,
                            raw_len: loc.raw_len,
                            bytes: o.sealed.to_vec(),
                        }),
                        Ok(_) => {}
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                for s in sealed_blobs {
                    let w = &mut writers[s.kind as usize];
                    written.extend(w.add(self.store.as_ref(), &self.keys, s)?);
                }
            }
        }
        for w in &mut writers {
            written.extend(w.flush(self.store.as_ref(), &self.keys)?);
        }
        Ok(written)
    }
}

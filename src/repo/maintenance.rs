//! Maintenance: forget snapshots, prune unused data, repair the index and snapshots.
//!
//! Prune is the only operation that deletes data, and it does so last: under the exclusive
//! lock it writes the repacked blobs and a new index first (both durable), then deletes the
//! old index files, then the packs nothing needs. Interrupted at any point, it leaves a valid
//! repository (at worst packs and index files that the next prune removes).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::crypto::random_array;
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::{self, BlobKind, SealedBlob};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::snapshot::{self, Node, NodeContent, SnapshotRecord, Tree, FLAG_REPAIRED};
use crate::format::tombstone::{ForgottenSnapshot, TombstoneReason};
use crate::id::{Id, IndexId, PackId, SnapshotId, TreeId};
use crate::pack::{PackWriter, WrittenPack};
use crate::repo::lock::LockKind;
use crate::repo::{now, Repository};
use crate::store::{list_ids, FileKind};

/// Which snapshots `forget` keeps (a snapshot kept by any rule is kept).
#[derive(Debug, Clone, Default)]
pub struct ForgetPolicy {
    /// Snapshots to forget by id (full ids).
    pub ids: Vec<SnapshotId>,
    /// Keep the newest N.
    pub keep_last: Option<usize>,
    /// Keep the newest snapshot of each of the last N days (UTC) that have one.
    pub keep_daily: Option<usize>,
    /// Keep the newest of each of the last N ISO weeks that have one.
    pub keep_weekly: Option<usize>,
    /// Keep the newest of each of the last N months that have one.
    pub keep_monthly: Option<usize>,
}

impl ForgetPolicy {
    fn has_keep_rules(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
    }
}

/// What `forget` decided.
#[derive(Debug, Clone, Default)]
pub struct ForgetReport {
    /// Snapshots kept, oldest first, with why.
    pub keep: Vec<(SnapshotId, SnapshotRecord, Vec<String>)>,
    /// Snapshots removed (or that would be, with `dry_run`), oldest first.
    pub remove: Vec<(SnapshotId, SnapshotRecord)>,
    /// Damaged (unreadable) snapshot files removed because they were named by id.
    pub remove_damaged: Vec<SnapshotId>,
}

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
    /// than [`TEMPORARY_IDLE`]).
    pub temporaries_removed: u64,
    /// Their bytes (what removing them frees).
    pub temporary_bytes: u64,
    /// What went wrong without stopping the prune (its work was done).
    pub warnings: Vec<String>,
}

/// How long a temporary file must have been left untouched before prune removes it. Prune
/// holds the exclusive lock, so no lock-respecting client is writing; the margin covers
/// clocks and clients that lost their lock.
pub const TEMPORARY_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What `repair snapshots` did.
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// Snapshots rewritten, old id → new id.
    pub repaired: Vec<(SnapshotId, SnapshotId)>,
    /// Paths dropped because their data is gone, per old snapshot.
    pub dropped: Vec<(SnapshotId, String)>,
}

/// Day number (days since 1970-01-01) of a time.
fn day(secs: i64) -> i64 {
    secs.div_euclid(86_400)
}

/// A week number that changes every Monday (1970-01-01 was a Thursday).
fn week(days: i64) -> i64 {
    (days + 3).div_euclid(7)
}

impl Repository {
    /// Applies a forget policy: removes the snapshot files it does not keep (nothing with
    /// `dry_run`). Data is only freed by [`Repository::prune`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty policy or an unknown id; [`Error::Locked`];
    /// store errors.
    pub fn forget(&self, policy: &ForgetPolicy, dry_run: bool) -> Result<ForgetReport> {
        if policy.ids.is_empty() && !policy.has_keep_rules() {
            return Err(Error::InvalidArgument("forget needs snapshot ids or at least one --keep rule".into()));
        }
        let rules = [policy.keep_last, policy.keep_daily, policy.keep_weekly, policy.keep_monthly];
        if rules.contains(&Some(0)) {
            return Err(Error::InvalidArgument("a --keep rule of 0 keeps nothing: leave the rule out".into()));
        }
        let _lock = if dry_run { None } else { Some(self.lock(LockKind::Exclusive, "forget")?) };
        let (snaps, damaged) = self.snapshots_with_errors()?;
        for id in &policy.ids {
            if !snaps.iter().any(|(s, _)| s == id) && !damaged.iter().any(|(s, _)| s == id) {
                return Err(Error::NotFound(format!("snapshot {}", id.short())));
            }
        }
        let mut reasons: HashMap<SnapshotId, Vec<String>> = HashMap::new();
        if policy.has_keep_rules() {
            // The rules apply per host: a laptop that backs up weekly keeps its own snapshots
            // however often the phone backs up.
            let mut by_host: BTreeMap<&str, Vec<&(SnapshotId, SnapshotRecord)>> = BTreeMap::new();
            for s in snaps.iter().rev() {
                by_host.entry(s.1.hostname.as_str()).or_default().push(s);
            }
            for newest_first in by_host.values() {
                if let Some(n) = policy.keep_last {
                    for (id, _) in newest_first.iter().take(n) {
                        reasons.entry(*id).or_default().push("last".into());
                    }
                }
                let mut bucket_rule = |n: Option<usize>, name: &str, key: &dyn Fn(i64) -> i64| {
                    let Some(n) = n else { return };
                    let mut seen = HashSet::new();
                    for (id, r) in newest_first {
                        if seen.len() == n {
                            break;
                        }
                        if seen.insert(key(day(r.time_secs))) {
                            reasons.entry(*id).or_default().push(name.into());
                        }
                    }
                };
                bucket_rule(policy.keep_daily, "daily", &|d| d);
                bucket_rule(policy.keep_weekly, "weekly", &week);
                bucket_rule(policy.keep_monthly, "monthly", &|d| {
                    let (y, m, _) = crate::civil::civil_from_days(d);
                    y * 12 + i64::from(m)
                });
            }
        } else {
            for (id, _) in &snaps {
                if !policy.ids.contains(id) {
                    reasons.entry(*id).or_default().push("not named".into());
                }
            }
        }
        for id in &policy.ids {
            reasons.remove(id);
        }
        let mut report = ForgetReport::default();
        for (id, rec) in snaps {
            match reasons.remove(&id) {
                Some(why) => report.keep.push((id, rec, why)),
                None => report.remove.push((id, rec)),
            }
        }
        // Damaged snapshot files go only when named: a keep rule cannot judge them.
        let damaged_named: Vec<SnapshotId> =
            damaged.iter().map(|(id, _)| *id).filter(|id| policy.ids.contains(id)).collect();
        report.remove_damaged.clone_from(&damaged_named);
        if !dry_run {
            // The tombstone first: once it is durable, the snapshots are gone for every reader
            // (also if this stops before the deletes), and no client takes their absence for
            // the provider's doing.
            let forgotten: Vec<ForgottenSnapshot> = report
                .remove
                .iter()
                .map(|(id, rec)| ForgottenSnapshot { id: *id, sequence: rec.sequence })
                .chain(damaged_named.iter().map(|id| ForgottenSnapshot { id: *id, sequence: 0 }))
                .collect();
            self.write_tombstone(TombstoneReason::Forget, forgotten.clone(), Vec::new())?;
            // Files an interrupted forget tombstoned but did not delete go now too.
            let leftovers: Vec<SnapshotId> = crate::store::list_ids(self.store.as_ref(), FileKind::Snapshot)?
                .into_iter()
                .map(SnapshotId)
                .filter(|id| self.is_forgotten(id))
                .collect();
            let ids: Vec<SnapshotId> = forgotten.iter().map(|f| f.id).chain(leftovers).collect();
            for id in &ids {
                match self.store.delete(FileKind::Snapshot, &id.to_hex()) {
                    Ok(()) | Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e.at(Location::Snapshot(*id))),
                }
            }
            let newest = self.newest_snapshot()?;
            self.forget_seen(&ids, newest)?;
        }
        Ok(report)
    }

    /// Every blob the snapshots need (data and trees), walking each tree once.
    fn reachable(&self) -> Result<HashSet<Id>> {
        let mut blobs = HashSet::new();
        let (snaps, damaged) = self.snapshots_with_errors()?;
        if let Some((id, e)) = damaged.first() {
            // Its data cannot be told apart from garbage: deleting could lose it.
            return Err(Error::Integrity(format!(
                "snapshot {} cannot be read ({e}); prune would not know which data it needs. Restore the file, or remove it with `forget {}`, then prune",
                id.short(),
                id.to_hex()
            )));
        }
        let mut stack: Vec<TreeId> = snaps.into_iter().map(|(_, r)| r.root).collect();
        while let Some(t) = stack.pop() {
            if !blobs.insert(t.0) {
                continue;
            }
            let tree = self.load_tree(&t).at(|| Location::Blob(t.0))?;
            for n in &tree.nodes {
                match &n.content {
                    NodeContent::File { chunks, .. } => blobs.extend(chunks.iter().map(|c| c.0)),
                    NodeContent::Dir { tree } => stack.push(*tree),
                    NodeContent::Symlink { .. } => {}
                }
            }
        }
        Ok(blobs)
    }

    /// Removes data no snapshot needs: deletes unused packs, rewrites the least used ones,
    /// replaces every index file by one. Refuses to run when a snapshot's tree cannot be read
    /// (deleting would then lose data): run `check`, then `repair snapshots`.
    ///
    /// # Errors
    /// [`Error::Locked`]; unreadable trees; store errors.
    pub fn prune(&mut self, options: PruneOptions) -> Result<PruneReport> {
        let held = if options.dry_run { None } else { Some(self.lock(LockKind::Exclusive, "prune")?) };
        // Other clients may have written since this handle loaded the index.
        self.sync_index()?;
        let needed = self.reachable()?;
        let files = self.index_files()?;
        let mut report = PruneReport { index_files_replaced: files.len() as u64, ..PruneReport::default() };

        // Each needed blob is kept in one place: the first pack (by id) that holds it.
        let mut packs: BTreeMap<PackId, IndexPack> = BTreeMap::new();
        for (_, f) in &files {
            for p in &f.packs {
                packs.entry(p.pack).or_insert_with(|| p.clone());
            }
        }
        let in_store: HashSet<Id> = list_ids(self.store.as_ref(), FileKind::Pack)?.into_iter().collect();
        let mut owner: HashMap<Id, PackId> = HashMap::new();
        for (id, p) in &packs {
            if !in_store.contains(&id.0) {
                continue;
            }
            for e in &p.entries {
                if needed.contains(&e.id) {
                    owner.entry(e.id).or_insert(*id);
                }
            }
        }
        if let Some(missing) = needed.iter().find(|b| !owner.contains_key(b)) {
            return Err(Error::Integrity(format!(
                "blob {} that a snapshot needs is in no pack: run `check`, then `repair index` and `repair snapshots`, before pruning",
                missing.short()
            )));
        }
        // Per pack: used and unused bytes.
        let mut usage: Vec<(PackId, u64, u64)> = Vec::new();
        for (id, p) in &packs {
            if !in_store.contains(&id.0) {
                continue;
            }
            let (mut used, mut unused) = (0u64, 0u64);
            for e in &p.entries {
                if owner.get(&e.id) == Some(id) {
                    used += u64::from(e.sealed_len);
                    report.used_blobs += 1;
                } else {
                    unused += u64::from(e.sealed_len);
                    report.unused_blobs += 1;
                }
            }
            report.used_bytes += used;
            report.unused_bytes += unused;
            usage.push((*id, used, unused));
        }
        let total: u64 = usage.iter().map(|(_, u, x)| u + x).sum();
        let delete: Vec<PackId> = usage.iter().filter(|(_, u, _)| *u == 0).map(|(id, _, _)| *id).collect();
        // Partly used packs, least used first, until the unused share is under the limit.
        let mut partly: Vec<&(PackId, u64, u64)> = usage.iter().filter(|(_, u, x)| *u > 0 && *x > 0).collect();
        // used_a / total_a < used_b / total_b, without division (u128: no overflow).
        partly
            .sort_by(|a, b| (u128::from(a.1) * u128::from(b.1 + b.2)).cmp(&(u128::from(b.1) * u128::from(a.1 + a.2))));
        let mut unused_left: u64 = partly.iter().map(|(_, _, x)| *x).sum();
        let limit = (total as f64 * options.max_unused_percent / 100.0) as u64;
        let mut repack: Vec<PackId> = Vec::new();
        for (id, _, x) in partly {
            if unused_left <= limit {
                break;
            }
            repack.push(*id);
            unused_left -= x;
        }
        // Packs in the store that no index names: leftovers of interrupted backups.
        let indexed: HashSet<Id> = packs.keys().map(|p| p.0).collect();
        let strays: Vec<PackId> = in_store.iter().filter(|p| !indexed.contains(p)).map(|p| PackId(*p)).collect();
        report.packs_repacked = repack.len() as u64;
        report.packs_deleted = (delete.len() + strays.len()) as u64;
        report.packs_kept = (usage.len() - delete.len() - repack.len()) as u64;
        let len_of = |p: &PackId| packs.get(p).map_or(0, |ip| u64::from(ip.pack_len));
        report.bytes_freed = delete.iter().chain(&repack).map(len_of).sum::<u64>()
            + strays.iter().map(|p| self.store.size(FileKind::Pack, &p.to_hex()).unwrap_or(0)).sum::<u64>();
        if options.dry_run {
            (report.temporaries_removed, report.temporary_bytes) =
                self.store.sweep_temporaries(TEMPORARY_IDLE, true)?;
            return Ok(report);
        }

        // 1. Copy the needed blobs of the repacked packs into new packs (sealed bytes move as
        //    they are: each was opened and checked first).
        let target = self.settings.pack_target_size as usize;
        let mut writers = [PackWriter::new(BlobKind::Data, target), PackWriter::new(BlobKind::Tree, target)];
        let mut written: Vec<WrittenPack> = Vec::new();
        for pid in &repack {
            let p = &packs[pid];
            let whole = || Location::Pack { pack: *pid, offset: None };
            // Never more than the index says the pack holds (itself at most MAX_PACK_LEN).
            let bytes = match crate::store::get_bounded(
                self.store.as_ref(),
                FileKind::Pack,
                &pid.to_hex(),
                u64::from(p.pack_len),
                "pack length",
            ) {
                Err(e) if e.kind() == crate::ErrorKind::LimitExceeded => {
                    return Err(Error::Integrity(format!(
                        "pack is larger than the {} bytes the index says: run `check --read-data`",
                        p.pack_len
                    ))
                    .at(whole()))
                }
                read => read.at(whole)?,
            };
            if bytes.len() as u64 != u64::from(p.pack_len) {
                return Err(Error::Integrity(format!(
                    "pack is {} bytes, the index says {}: run `check --read-data`",
                    bytes.len(),
                    p.pack_len
                ))
                .at(whole()));
            }
            for e in &p.entries {
                if owner.get(&e.id) != Some(pid) {
                    continue;
                }
                let at = || Location::Pack { pack: *pid, offset: Some(u64::from(e.offset)) };
                let sealed = bytes.get(e.offset as usize..e.end() as usize).ok_or_else(|| {
                    Error::malformed("pack", Some(u64::from(e.offset)), "blob beyond the end").at(at())
                })?;
                blob::open(&self.keys, p.kind, &e.id, e.codec, e.raw_len, sealed).at(at)?;
                let s =
                    SealedBlob { id: e.id, kind: p.kind, codec: e.codec, raw_len: e.raw_len, bytes: sealed.to_vec() };
                let w = &mut writers[p.kind as usize];
                written.extend(w.add(self.store.as_ref(), &self.keys, s)?);
            }
        }
        for w in &mut writers {
            written.extend(w.flush(self.store.as_ref(), &self.keys)?);
        }
        report.packs_written = written.len() as u64;
        self.store.flush()?;

        // 2. One index file for everything kept, durable before anything is deleted.
        let gone: HashSet<PackId> = delete.iter().chain(&repack).copied().collect();
        let mut new_index = IndexFile::default();
        for (id, p) in &packs {
            if in_store.contains(&id.0) && !gone.contains(id) {
                new_index.packs.push(p.clone());
            }
        }
        new_index.packs.extend(written.iter().map(|w| w.record.clone()));
        let bytes = crate::format::index::encode(self.keys.meta_key(), &new_index, &random_array()?);
        let new_id = IndexId(Id::hash_of(&bytes));
        match self.store.put(FileKind::Index, &new_id.to_hex(), &bytes) {
            Ok(()) | Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }

        // 3. The old index files, then the packs; not if our lock may have lapsed (a backup
        //    may then be running and using them).
        if let Some(lock) = &held {
            lock.ensure_held()?;
        }
        for (id, _) in &files {
            if *id != new_id {
                delete_if_present(self, FileKind::Index, &id.to_hex())?;
            }
        }
        for p in gone.iter().chain(&strays) {
            delete_if_present(self, FileKind::Pack, &p.to_hex())?;
        }
        // The index changed under the cache: reload (rebuilds the local tables).
        self.index = self.reload_index()?;
        // Last and best effort: the prune itself is done whatever happens here.
        match self.store.sweep_temporaries(TEMPORARY_IDLE, false) {
            Ok((n, bytes)) => (report.temporaries_removed, report.temporary_bytes) = (n, bytes),
            Err(e) => report.warnings.push(format!("temporary files not removed: {e}")),
        }
        Ok(report)
    }

    /// Rebuilds the index from the packs themselves (their directories): one new index file
    /// listing every readable pack, then the old index files are deleted. For a lost or
    /// damaged index.
    ///
    /// # Errors
    /// [`Error::Locked`]; store errors. Packs whose directory cannot be read are skipped and
    /// listed in the returned value.
    pub fn repair_index(&mut self) -> Result<(u64, Vec<(PackId, Error)>)> {
        let held = self.lock(LockKind::Exclusive, "repair index")?;
        // The old index files first: what they say about a pack whose directory is damaged is
        // kept (its blobs may still open), never thrown away.
        let old: Vec<Id> = list_ids(self.store.as_ref(), FileKind::Index)?;
        let old_ids: Vec<IndexId> = old.iter().copied().map(IndexId).collect();
        let mut known: HashMap<PackId, IndexPack> = HashMap::new();
        for (_, f) in crate::index::read_index_files_each(self.store.as_ref(), self.keys.meta_key(), &old_ids) {
            match f {
                Ok(f) => {
                    for p in f.packs {
                        known.entry(p.pack).or_insert(p);
                    }
                }
                Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
                Err(_) => {}
            }
        }
        let mut file = IndexFile::default();
        let mut bad = Vec::new();
        for id in list_ids(self.store.as_ref(), FileKind::Pack)? {
            let pid = PackId(id);
            match self.pack_record(pid) {
                Ok(record) => file.packs.push(record),
                Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
                Err(e) => {
                    if let Some(p) = known.remove(&pid) {
                        // Directory damaged, but an index file described the pack: keep that.
                        file.packs.push(p);
                    }
                    bad.push((pid, e));
                }
            }
        }
        let bytes = crate::format::index::encode(self.keys.meta_key(), &file, &random_array()?);
        let new_id = Id::hash_of(&bytes);
        match self.store.put(FileKind::Index, &new_id.to_hex(), &bytes) {
            Ok(()) | Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        self.store.flush()?;
        held.ensure_held()?;
        for id in old {
            if id != new_id {
                delete_if_present(self, FileKind::Index, &id.to_hex())?;
            }
        }
        self.index = self.reload_index()?;
        Ok((file.packs.len() as u64, bad))
    }

    /// Rewrites every snapshot that refers to lost data: files whose chunks are gone and
    /// folders whose tree is gone are dropped, the new snapshot is marked repaired, and the
    /// old one deleted.
    ///
    /// # Errors
    /// [`Error::Locked`]; store errors.
    pub fn repair_snapshots(&mut self) -> Result<RepairReport> {
        let _lock = self.lock(LockKind::Exclusive, "repair snapshots")?;
        self.sync_index()?;
        if !self.adopted.is_empty() {
            return Err(Error::Integrity(
                "an index file is damaged, so data looks lost that is not: run `repair index` first".into(),
            ));
        }
        let mut report = RepairReport::default();
        let mut session_trees: Vec<SealedBlob> = Vec::new();
        let mut new_records = Vec::new();
        for (sid, rec) in self.snapshots()? {
            let mut dropped = Vec::new();
            let new_root =
                self.repair_tree(rec.root, "", &mut dropped, &mut session_trees).at(|| Location::Snapshot(sid))?;
            if dropped.is_empty() {
                continue;
            }
            let root = new_root.unwrap_or_else(|| {
                let bytes = Tree::default().encode().expect("an empty tree encodes");
                let id = self.keys.tree_id(&bytes);
                session_trees.push(blob::seal(
                    &self.keys,
                    BlobKind::Tree,
                    id.0,
                    &bytes,
                    Some(self.settings.zstd_level),
                ));
                id
            });
            report.dropped.extend(dropped.into_iter().map(|p| (sid, p)));
            new_records.push((sid, rec, root));
        }
        if new_records.is_empty() {
            return Ok(report);
        }
        // New trees first (durable, indexed), then the new snapshots, then the old ones go.
        let mut writer = PackWriter::new(BlobKind::Tree, self.settings.pack_target_size as usize);
        let mut written = Vec::new();
        let mut stored = HashSet::new();
        for s in session_trees {
            if stored.insert(s.id) && !self.blob_present(&s.id)? {
                written.extend(writer.add(self.store.as_ref(), &self.keys, s)?);
            }
        }
        written.extend(writer.flush(self.store.as_ref(), &self.keys)?);
        self.store.flush()?;
        if !written.is_empty() {
            let file = IndexFile { packs: written.iter().map(|w| w.record.clone()).collect() };
            let bytes = crate::format::index::encode(self.keys.meta_key(), &file, &random_array()?);
            self.store.put(FileKind::Index, &Id::hash_of(&bytes).to_hex(), &bytes)?;
            for w in &written {
                self.index.add_pack(w.info, &w.record.entries);
            }
        }
        let mut seq = self.history_head()?.map_or(0, |(s, _)| s);
        for (old, rec, root) in new_records {
            seq += 1;
            let rec_sequence = rec.sequence;
            let t = now();
            let new = SnapshotRecord {
                root,
                sequence: seq,
                previous: Some(old),
                flags: rec.flags | FLAG_REPAIRED,
                time_secs: rec.time_secs,
                time_nanos: rec.time_nanos,
                program: format!("packvault {} (repaired {})", env!("CARGO_PKG_VERSION"), t.0),
                ..rec
            };
            let bytes = snapshot::encode(self.keys.meta_key(), &new, &random_array()?)?;
            let id = SnapshotId(Id::hash_of(&bytes));
            self.store.put(FileKind::Snapshot, &id.to_hex(), &bytes)?;
            self.record_seen(seq, id)?;
            // The damaged one goes on purpose: a tombstone says so before the delete.
            self.write_tombstone(
                TombstoneReason::Repair,
                vec![ForgottenSnapshot { id: old, sequence: rec_sequence }],
                Vec::new(),
            )?;
            delete_if_present(self, FileKind::Snapshot, &old.to_hex())?;
            self.forget_seen(&[old], Some((seq, id)))?;
            report.repaired.push((old, id));
        }
        let index = std::mem::replace(&mut self.index, crate::Index::empty());
        self.index = crate::index::persist(index, self.cache_dir.as_deref())?;
        Ok(report)
    }

    /// The repaired version of a tree (`None` when the tree itself is lost), sealing new trees
    /// into `out`.
    fn repair_tree(
        &self,
        id: TreeId,
        path: &str,
        dropped: &mut Vec<String>,
        out: &mut Vec<SealedBlob>,
    ) -> Result<Option<TreeId>> {
        // Too deep to walk is not lost data: stop rather than drop it.
        snapshot::check_tree_depth(path).at(|| Location::SnapshotPath(path.to_string()))?;
        let tree = match self.load_tree(&id) {
            Ok(t) => t,
            // Only data that is really gone is dropped; a store that cannot be reached right
            // now stops the repair instead (dropping then would lose what is still there).
            Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
            Err(_) => {
                dropped.push(if path.is_empty() { "/".into() } else { path.to_string() });
                return Ok(None);
            }
        };
        let mut nodes: Vec<Node> = Vec::with_capacity(tree.nodes.len());
        let mut changed = false;
        for n in tree.nodes {
            let p = crate::repo::join(path, &n.name_lossy());
            match &n.content {
                NodeContent::File { chunks, .. } => {
                    let mut ok = true;
                    for c in chunks {
                        if !self.blob_present(&c.0)? {
                            ok = false;
                            break;
                        }
                    }
                    if ok {
                        nodes.push(n);
                    } else {
                        dropped.push(p);
                        changed = true;
                    }
                }
                NodeContent::Dir { tree: sub } => match self.repair_tree(*sub, &p, dropped, out)? {
                    Some(new) => {
                        changed |= new != *sub;
                        nodes.push(Node { content: NodeContent::Dir { tree: new }, ..n });
                    }
                    None => changed = true,
                },
                NodeContent::Symlink { .. } => nodes.push(n),
            }
        }
        if !changed {
            return Ok(Some(id));
        }
        let bytes = Tree { nodes }.encode()?;
        let new = self.keys.tree_id(&bytes);
        out.push(blob::seal(&self.keys, BlobKind::Tree, new.0, &bytes, Some(self.settings.zstd_level)));
        Ok(Some(new))
    }
}

impl Repository {
    /// True when the index places `id` in a pack that exists; store I/O errors are errors,
    /// not "absent".
    fn blob_present(&self, id: &Id) -> Result<bool> {
        let Some(loc) = self.index.lookup(id)? else { return Ok(false) };
        match self.store.size(FileKind::Pack, &loc.pack.to_hex()) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn delete_if_present(repo: &Repository, kind: FileKind, name: &str) -> Result<()> {
    match repo.store.delete(kind, name) {
        Ok(()) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e.at(Location::RepoFile(kind.path(name)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_buckets() {
        // 2024-02-29 is day 19782; 2024-03-01 is in the next month.
        let month = |d| crate::civil::civil_from_days(d).1;
        assert_ne!(month(19_782), month(19_783));
        // Weeks change on Mondays: 2024-03-03 was a Sunday, 2024-03-04 a Monday.
        assert_eq!(week(19_785), week(19_784));
        assert_ne!(week(19_786), week(19_785));
    }

    /// A repository with one real snapshot, plus copies of its record with other hosts and
    /// times (same data), as (id, host, day) for each.
    fn with_hosts(snaps: &[(&str, i64)]) -> (Repository, Vec<SnapshotId>) {
        let store = std::sync::Arc::new(crate::MemoryStore::new());
        let options = crate::InitOptions {
            kdf: crate::format::keyslot::Argon2Params { m_kib: 8192, t: 1, p: 1 },
            ..Default::default()
        };
        let mut repo = Repository::init(store, &crate::Credentials::passphrase("forget test pass"), options).unwrap();
        let mut b = repo.backup().unwrap();
        let meta = crate::FileMeta { mode: 0o600, mtime_secs: 0, mtime_nanos: 0 };
        b.add_stream("a.txt", &b"hello"[..], meta).unwrap();
        let base = b.commit(crate::SnapshotInfo::default()).unwrap();
        repo.store.delete(FileKind::Snapshot, &base.snapshot.to_hex()).unwrap();
        let mut ids = Vec::new();
        for (i, (host, day)) in snaps.iter().enumerate() {
            let rec = SnapshotRecord {
                hostname: (*host).into(),
                time_secs: day * 86_400 + i as i64,
                sequence: i as u64 + 1,
                ..base.record.clone()
            };
            let bytes = snapshot::encode(repo.keys.meta_key(), &rec, &[i as u8; 12]).unwrap();
            let id = SnapshotId(Id::hash_of(&bytes));
            repo.store.put(FileKind::Snapshot, &id.to_hex(), &bytes).unwrap();
            ids.push(id);
        }
        (repo, ids)
    }

    #[test]
    fn keep_rules_apply_per_host() {
        // The phone backs up daily, the laptop once, long ago.
        let (repo, ids) =
            with_hosts(&[("laptop", 100), ("phone", 200), ("phone", 201), ("phone", 202), ("phone", 202)]);
        let r = repo.forget(&ForgetPolicy { keep_last: Some(1), ..Default::default() }, true).unwrap();
        let kept: Vec<SnapshotId> = r.keep.iter().map(|k| k.0).collect();
        assert_eq!(kept, vec![ids[0], ids[4]], "the newest of each host");
        let r = repo.forget(&ForgetPolicy { keep_daily: Some(2), ..Default::default() }, true).unwrap();
        let kept: Vec<SnapshotId> = r.keep.iter().map(|k| k.0).collect();
        assert_eq!(kept, vec![ids[0], ids[2], ids[4]], "per host, the newest of each of the last 2 days");
        let e = repo.forget(&ForgetPolicy { keep_daily: Some(0), ..Default::default() }, true).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
    }

    #[test]
    fn a_damaged_snapshot_stops_prune_until_it_is_forgotten() {
        let (mut repo, ids) = with_hosts(&[("phone", 200), ("phone", 201)]);
        let mut bytes = repo.store.get(FileKind::Snapshot, &ids[0].to_hex()).unwrap();
        bytes[40] ^= 1;
        repo.store.delete(FileKind::Snapshot, &ids[0].to_hex()).unwrap();
        repo.store.put(FileKind::Snapshot, &ids[0].to_hex(), &bytes).unwrap();
        let e = repo.prune(PruneOptions::default()).unwrap_err();
        assert!(e.to_string().contains("cannot be read") && e.to_string().contains("forget"), "{e}");
        let r = repo.forget(&ForgetPolicy { ids: vec![ids[0]], ..Default::default() }, false).unwrap();
        assert_eq!(r.remove_damaged, vec![ids[0]]);
        repo.prune(PruneOptions::default()).unwrap();
        assert!(repo.check(crate::CheckOptions { read_data: true, ..Default::default() }).unwrap().is_ok());
    }
}

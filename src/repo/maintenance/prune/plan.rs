//! The prune plan: pure data, decided from the index files, the packs the store holds and the
//! blobs the snapshots need, with no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::PruneReport;
use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::index::IndexPack;
use crate::id::{Id, IndexId, PackId};

/// What prune does with one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PackAction {
    /// Kept as it is.
    Keep,
    /// Its needed blobs are copied into new packs, then it is deleted.
    Repack,
    /// Deleted: nothing in it is needed.
    Delete,
}

impl PackAction {
    /// Lowercase name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            PackAction::Keep => "keep",
            PackAction::Repack => "repack",
            PackAction::Delete => "delete",
        }
    }
}

/// Prune's decision about one pack, with its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackPlan {
    /// The pack.
    pub id: PackId,
    /// Kind of its blobs.
    pub kind: BlobKind,
    /// Length of the pack file (as the index says).
    pub len: u64,
    /// Blobs in it that prune keeps (a needed blob is kept in one pack only).
    pub used_blobs: u64,
    /// Their sealed bytes.
    pub used_bytes: u64,
    /// Blobs in it nothing needs, or needed blobs kept in another pack.
    pub unused_blobs: u64,
    /// Their sealed bytes.
    pub unused_bytes: u64,
    /// What prune does with it.
    pub action: PackAction,
}

/// What prune will do, decided before anything is written or deleted: pure data, printable
/// (its `Display` lists every pack that changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Every pack that an index file names and the store holds, in id order.
    pub packs: Vec<PackPlan>,
    /// The packs to rewrite, in the order prune rewrites them (least used first).
    pub repack_order: Vec<PackId>,
    /// Packs in the store that no index file names (left by interrupted backups), with their
    /// lengths: deleted.
    pub strays: Vec<(PackId, u64)>,
    /// Packs that an index file names but the store does not hold: left out of the new index.
    pub missing: Vec<PackId>,
    /// The index files replaced by the one new index file.
    pub index_files: Vec<IndexId>,
}

impl PrunePlan {
    /// Decides what to do with every pack (pure: no I/O).
    ///
    /// - `index_files` and `records`: the index files read, and every pack record they hold
    ///   (the first record of a pack wins);
    /// - `in_store`: the packs the store holds; `strays`: those no record names, with lengths;
    /// - `needed`: every blob a snapshot needs;
    /// - `owner`: for each needed blob, the one pack that keeps it (from [`owners`]).
    ///
    /// Packs whose blobs are all unused are deleted; partly used packs are rewritten, least
    /// used first, until the unused bytes left in partly used packs are at most
    /// `max_unused_percent` of all pack bytes.
    pub(crate) fn decide(
        index_files: Vec<IndexId>,
        records: &BTreeMap<PackId, IndexPack>,
        in_store: &HashSet<PackId>,
        strays: Vec<(PackId, u64)>,
        owner: &HashMap<Id, PackId>,
        max_unused_percent: f64,
    ) -> PrunePlan {
        let mut plan = PrunePlan { strays, index_files, ..PrunePlan::default() };
        for (id, p) in records {
            if !in_store.contains(id) {
                plan.missing.push(*id);
                continue;
            }
            let mut pp = PackPlan {
                id: *id,
                kind: p.kind,
                len: u64::from(p.pack_len),
                used_blobs: 0,
                used_bytes: 0,
                unused_blobs: 0,
                unused_bytes: 0,
                action: PackAction::Keep,
            };
            for e in &p.entries {
                if owner.get(&e.id) == Some(id) {
                    pp.used_blobs += 1;
                    pp.used_bytes += u64::from(e.sealed_len);
                } else {
                    pp.unused_blobs += 1;
                    pp.unused_bytes += u64::from(e.sealed_len);
                }
            }
            if pp.used_blobs == 0 {
                pp.action = PackAction::Delete;
            }
            plan.packs.push(pp);
        }
        let total: u64 = plan.packs.iter().map(|p| p.used_bytes + p.unused_bytes).sum();
        // Partly used packs, least used first (a stable sort: ties stay in id order).
        let mut partly: Vec<usize> =
            (0..plan.packs.len()).filter(|&i| plan.packs[i].used_bytes > 0 && plan.packs[i].unused_bytes > 0).collect();
        // used_a / total_a < used_b / total_b, without division (u128: no overflow).
        let share = |p: &PackPlan| (u128::from(p.used_bytes), u128::from(p.used_bytes + p.unused_bytes));
        partly.sort_by(|&a, &b| {
            let ((ua, ta), (ub, tb)) = (share(&plan.packs[a]), share(&plan.packs[b]));
            (ua * tb).cmp(&(ub * ta))
        });
        let mut unused_left: u64 = partly.iter().map(|&i| plan.packs[i].unused_bytes).sum();
        let limit = (total as f64 * max_unused_percent / 100.0) as u64;
        for i in partly {
            if unused_left <= limit {
                break;
            }
            plan.packs[i].action = PackAction::Repack;
            plan.repack_order.push(plan.packs[i].id);
            unused_left -= plan.packs[i].unused_bytes;
        }
        plan
    }

    /// The packs with the given action, in id order.
    pub fn with_action(&self, action: PackAction) -> impl Iterator<Item = &PackPlan> {
        self.packs.iter().filter(move |p| p.action == action)
    }

    /// Packs that go: deleted, rewritten, and strays.
    #[must_use]
    pub fn packs_removed(&self) -> usize {
        self.packs.iter().filter(|p| p.action != PackAction::Keep).count() + self.strays.len()
    }

    /// Bytes of the pack files that go (rewritten ones included, before their blobs are
    /// written again).
    #[must_use]
    pub fn bytes_freed(&self) -> u64 {
        self.packs.iter().filter(|p| p.action != PackAction::Keep).map(|p| p.len).sum::<u64>()
            + self.strays.iter().map(|s| s.1).sum::<u64>()
    }

    /// The counts of a [`PruneReport`] (what a dry run reports).
    pub(super) fn report(self) -> PruneReport {
        let count = |a| self.with_action(a).count() as u64;
        PruneReport {
            used_blobs: self.packs.iter().map(|p| p.used_blobs).sum(),
            used_bytes: self.packs.iter().map(|p| p.used_bytes).sum(),
            unused_blobs: self.packs.iter().map(|p| p.unused_blobs).sum(),
            unused_bytes: self.packs.iter().map(|p| p.unused_bytes).sum(),
            packs_kept: count(PackAction::Keep),
            packs_repacked: count(PackAction::Repack),
            packs_deleted: count(PackAction::Delete) + self.strays.len() as u64,
            bytes_freed: self.bytes_freed(),
            index_files_replaced: self.index_files.len() as u64,
            plan: self,
            ..PruneReport::default()
        }
    }
}

impl fmt::Display for PrunePlan {
    /// One line per pack that changes (`repack`, `delete`, `stray`, `missing`), then totals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for id in &self.repack_order {
            if let Some(p) = self.packs.iter().find(|p| p.id == *id) {
                writeln!(
                    f,
                    "repack  {} {:<4} {:>12} bytes, {} of them used ({} blobs kept, {} dropped)",
                    p.id.short(),
                    p.kind.name(),
                    p.len,
                    p.used_bytes,
                    p.used_blobs,
                    p.unused_blobs
                )?;
            }
        }
        for p in self.with_action(PackAction::Delete) {
            writeln!(f, "delete  {} {:<4} {:>12} bytes, nothing used", p.id.short(), p.kind.name(), p.len)?;
        }
        for (id, len) in &self.strays {
            writeln!(f, "delete  {} ?    {len:>12} bytes, in no index", id.short())?;
        }
        for id in &self.missing {
            writeln!(f, "missing {} (named by an index file, not in the store)", id.short())?;
        }
        write!(
            f,
            "{} packs kept, {} rewritten, {} deleted; {} bytes freed; {} index files replaced by one",
            self.with_action(PackAction::Keep).count(),
            self.repack_order.len(),
            self.with_action(PackAction::Delete).count() + self.strays.len(),
            self.bytes_freed(),
            self.index_files.len()
        )
    }
}

/// For each needed blob, the one pack that keeps it: the first pack (by id) in the store that
/// holds it.
///
/// # Errors
/// [`Error::Integrity`] when a needed blob is in no pack the store holds.
pub(crate) fn owners(
    records: &BTreeMap<PackId, IndexPack>,
    in_store: &HashSet<PackId>,
    needed: &HashSet<Id>,
) -> Result<HashMap<Id, PackId>> {
    let mut owner: HashMap<Id, PackId> = HashMap::new();
    for (id, p) in records {
        if !in_store.contains(id) {
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
            "blob {} that a snapshot needs is in no pack: check the repository, then repair the index and the snapshots, before pruning",
            missing.short()
        )));
    }
    Ok(owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob::Codec;
    use crate::format::pack::BlobEntry;

    fn pid(n: u8) -> PackId {
        PackId(Id([n; 32]))
    }

    fn blob(n: u8) -> Id {
        Id([100 + n; 32])
    }

    /// A pack record holding `blobs` (id byte, sealed length), back to back.
    fn record(pack: u8, pack_len: u32, blobs: &[(u8, u32)]) -> (PackId, IndexPack) {
        let mut offset = 0;
        let entries = blobs
            .iter()
            .map(|&(b, sealed_len)| {
                let e = BlobEntry { id: blob(b), offset, sealed_len, raw_len: sealed_len, codec: Codec::Raw };
                offset += sealed_len;
                e
            })
            .collect();
        (pid(pack), IndexPack { pack: pid(pack), kind: BlobKind::Data, pack_len, entries })
    }

    /// Packs 1..=5 named by the index, 1..=4 and 6 in the store; blobs 1 and 4 needed.
    /// Pack 1: half used. Pack 2: nothing used. Pack 3: almost all used. Pack 4: a second copy
    /// of blob 1 (kept in pack 1, the first by id). Pack 5: missing. Pack 6: a stray.
    fn plan(max_unused_percent: f64) -> PrunePlan {
        let records: BTreeMap<PackId, IndexPack> = [
            record(1, 300, &[(1, 100), (2, 100)]),
            record(2, 150, &[(3, 100)]),
            record(3, 400, &[(4, 300), (5, 10)]),
            record(4, 150, &[(1, 100)]),
            record(5, 100, &[(6, 50)]),
        ]
        .into_iter()
        .collect();
        let in_store: HashSet<PackId> = [1, 2, 3, 4, 6].into_iter().map(pid).collect();
        let needed: HashSet<Id> = [blob(1), blob(4)].into_iter().collect();
        let owner = owners(&records, &in_store, &needed).unwrap();
        let files = vec![IndexId(Id([7; 32])), IndexId(Id([8; 32]))];
        PrunePlan::decide(files, &records, &in_store, vec![(pid(6), 77)], &owner, max_unused_percent)
    }

    fn actions(p: &PrunePlan) -> Vec<(u8, PackAction)> {
        p.packs.iter().map(|x| (x.id.0 .0[0], x.action)).collect()
    }

    #[test]
    fn the_plan_deletes_unused_packs_and_rewrites_the_least_used_first() {
        use PackAction::{Delete, Keep, Repack};
        // 710 pack bytes; 110 unused in partly used packs (100 in pack 1, 10 in pack 3).
        let p = plan(0.0);
        assert_eq!(actions(&p), vec![(1, Repack), (2, Delete), (3, Repack), (4, Delete)]);
        assert_eq!(p.repack_order, vec![pid(1), pid(3)], "least used first");
        assert_eq!(p.missing, vec![pid(5)]);
        assert_eq!(p.bytes_freed(), 300 + 150 + 400 + 150 + 77);
        let first = &p.packs[0];
        assert_eq!((first.used_blobs, first.used_bytes, first.unused_blobs, first.unused_bytes), (1, 100, 1, 100));
        let dup = &p.packs[3];
        assert_eq!((dup.used_blobs, dup.unused_bytes), (0, 100), "a second copy of a needed blob is unused");

        // 5% of 710 is 35: rewriting pack 1 leaves 10 unused bytes, under the limit.
        let p = plan(5.0);
        assert_eq!(actions(&p), vec![(1, Repack), (2, Delete), (3, Keep), (4, Delete)]);
        assert_eq!(p.bytes_freed(), 300 + 150 + 150 + 77);
        // 20% is 142: nothing needs rewriting, unused packs still go.
        let p = plan(20.0);
        assert_eq!(actions(&p), vec![(1, Keep), (2, Delete), (3, Keep), (4, Delete)]);
        assert!(p.repack_order.is_empty());

        let r = plan(5.0).report();
        assert_eq!((r.used_blobs, r.used_bytes, r.unused_blobs, r.unused_bytes), (2, 400, 4, 310));
        assert_eq!((r.packs_kept, r.packs_repacked, r.packs_deleted, r.index_files_replaced), (1, 1, 3, 2));
        let text = r.plan.to_string();
        assert!(text.contains(&format!("repack  {}", pid(1).short())), "{text}");
        assert!(text.contains(&format!("delete  {} ?", pid(6).short())), "{text}");
        assert!(text.ends_with("1 packs kept, 1 rewritten, 3 deleted; 677 bytes freed; 2 index files replaced by one"));
    }

    #[test]
    fn a_needed_blob_in_no_stored_pack_stops_the_plan() {
        let records: BTreeMap<PackId, IndexPack> = [record(5, 100, &[(6, 50)])].into_iter().collect();
        let needed: HashSet<Id> = [blob(6)].into_iter().collect();
        let e = owners(&records, &HashSet::new(), &needed).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Integrity);
    }
}

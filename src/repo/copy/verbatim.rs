//! Copy within one key domain: the packs the destination lacks are streamed over as they are
//! (checked against their names on the way), one index file names them, and the snapshot files
//! follow byte for byte.
//!
//! Packs, not blobs, are the unit: a pack that holds one blob the destination lacks is copied
//! whole, blobs the destination already has included (prune there removes the duplicates).
//! Copying sealed packs needs no decryption and no new sealing, and a pack is read in large
//! sequential pieces instead of blob by blob.

use std::collections::{BTreeSet, HashSet};

use super::{CopiedSnapshot, CopyReport, Run};
use crate::error::{Error, Location, Result};
use crate::format::blob::BlobKind;
use crate::format::snapshot::{NodeContent, SnapshotRecord};
use crate::format::tombstone::{ForgottenSnapshot, TombstoneReason};
use crate::id::{Id, PackId, SnapshotId};
use crate::index::PackInfo;
use crate::pack::{PackReader, WrittenPack};
use crate::repo::walk::Step;
use crate::repo::Repository;
use crate::store::FileKind;

impl Repository {
    /// The same-domain road of [`Repository::copy_to`].
    pub(super) fn copy_verbatim(
        &self,
        dest: &mut Repository,
        chosen: Vec<(SnapshotId, SnapshotRecord)>,
        run: &Run<'_>,
        report: &mut CopyReport,
    ) -> Result<()> {
        // Dictionaries first (format-spec.md §8): a copied blob may name one. Same key domain,
        // so the same dictionary seals to the same file under the same name.
        let there: HashSet<Id> = crate::dict::list(dest.store.as_ref())?.into_iter().collect();
        for id in crate::dict::list(self.store.as_ref())? {
            if !there.contains(&id) {
                match crate::dict::load(self.store.as_ref(), &self.keys, &id) {
                    Ok(d) => {
                        crate::dict::save(dest.store.as_ref(), &dest.keys, d.bytes)?;
                    }
                    // Damaged or another domain's (left by an old rotation): no blob this copy
                    // can read names it, so it is not worth a failed copy; the blobs that did
                    // name a damaged one fail below, each naming it.
                    Err(e) if e.kind() == crate::ErrorKind::Integrity => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let held = dest.snapshots_by_identity()?;
        let mut todo = Vec::new();
        for (id, rec) in chosen {
            if held.ids.contains(&id) {
                report.skipped.push(CopiedSnapshot { source: id, destination: id, record: rec });
            } else {
                todo.push((id, rec));
            }
        }
        let packs = self.packs_lacking(dest, &todo, report)?;
        let mut written = Vec::new();
        for pid in packs {
            if let Err(e) = run.cancel.check().and_then(|()| self.copy_pack(dest, pid, run)).map(|w| written.push(w)) {
                // Written, not yet named: this handle's next index file names them.
                dest.adopted.extend(written);
                return Err(e);
            }
            let w = written.last().expect("pushed above");
            report.packs_written += 1;
            report.pack_bytes += u64::from(w.info.len);
            report.blobs_written += w.record.entries.len() as u64;
        }
        report.index_file = dest.commit_packs(written, run)?;

        // Predecessors the source forgot: forgotten in the destination too (module docs).
        let copying: HashSet<SnapshotId> = todo.iter().map(|(id, _)| *id).collect();
        let mut forgotten = Vec::new();
        for (_, rec) in &todo {
            let Some(p) = rec.previous else { continue };
            if held.ids.contains(&p) || copying.contains(&p) || dest.is_forgotten(&p) {
                continue;
            }
            if let Some(sequence) = self.forgotten_sequence(&p) {
                if !forgotten.iter().any(|f: &ForgottenSnapshot| f.id == p) {
                    forgotten.push(ForgottenSnapshot { id: p, sequence });
                }
            }
        }
        run.cancel.check()?;
        run.ensure_held()?;
        report.forgotten_predecessors = forgotten.iter().map(|f| f.id).collect();
        dest.write_tombstone(TombstoneReason::Forget, forgotten, Vec::new())?;
        for (id, rec) in todo {
            run.cancel.check()?;
            let bytes = self.snapshot_bytes(&id)?;
            dest.put_snapshot(&id, &bytes, rec.sequence)?;
            run.progress.advance(0, 1);
            report.copied.push(CopiedSnapshot { source: id, destination: id, record: rec });
        }
        Ok(())
    }

    /// The sequence a tombstone of this repository gives a forgotten snapshot.
    fn forgotten_sequence(&self, id: &SnapshotId) -> Option<u64> {
        self.tombstones.read().unwrap_or_else(std::sync::PoisonError::into_inner).snapshots.get(id).copied()
    }

    /// The source packs that hold blobs `todo` reaches and `dest`'s index lacks, data packs
    /// first. A tree the destination holds is not walked: a valid repository holds what its
    /// trees refer to. Copies keep that true even when they stop half-way, by copying every
    /// data pack before the first tree pack (as a backup writes its data before its trees).
    fn packs_lacking(
        &self,
        dest: &Repository,
        todo: &[(SnapshotId, SnapshotRecord)],
        report: &mut CopyReport,
    ) -> Result<Vec<PackId>> {
        let mut packs: BTreeSet<(bool, PackId)> = BTreeSet::new();
        let mut seen: HashSet<Id> = HashSet::new();
        let mut need =
            |id: &Id, kind: BlobKind, snap: &SnapshotId, path: &str, report: &mut CopyReport| -> Result<bool> {
                if !seen.insert(*id) {
                    return Ok(false);
                }
                if dest.index.contains(id) {
                    report.blobs_present += 1;
                    return Ok(false);
                }
                let loc = self.index.lookup(id)?.filter(|l| l.kind == kind).ok_or_else(|| {
                    Error::NotFound(format!("{} blob {} is in no index of the source", kind.name(), id.short()))
                        .at(Location::SnapshotPath(if path.is_empty() { "/".into() } else { path.to_string() }))
                        .at(Location::Snapshot(*snap))
                })?;
                packs.insert((kind == BlobKind::Tree, loc.pack));
                Ok(true)
            };
        for (sid, rec) in todo {
            if !need(&rec.root.0, BlobKind::Tree, sid, "", report)? {
                continue;
            }
            let mut walk = self.walk(rec.root, "");
            while let Some(step) = walk.next() {
                let Step::Node { path, node } = step? else { continue };
                match &node.content {
                    NodeContent::Dir { tree } => {
                        if !need(&tree.0, BlobKind::Tree, sid, &path, report)? {
                            walk.skip_subtree();
                        }
                    }
                    NodeContent::File { chunks, .. } => {
                        for c in chunks {
                            need(&c.0, BlobKind::Data, sid, &path, report)?;
                        }
                    }
                    NodeContent::Symlink { .. } => {}
                }
            }
        }
        Ok(packs.into_iter().map(|(_, p)| p).collect())
    }

    /// Streams one pack into `dest` (same name, same bytes) and returns its index record
    /// (from its own directory, which must decrypt: one key domain). Refused, and nothing
    /// left in `dest`, when its bytes do not hash to its name.
    fn copy_pack(&self, dest: &mut Repository, pack: PackId, run: &Run<'_>) -> Result<WrittenPack> {
        let at = || Location::Pack { pack, offset: None };
        let record = self.pack_record(pack)?;
        let mut upload = dest.store.begin(FileKind::Pack)?;
        let mut reader = PackReader::new(self.store.as_ref(), &self.keys);
        let intact = reader.stream_whole(&pack, u64::from(record.pack_len), |piece| {
            upload.write(piece)?;
            run.progress.advance(piece.len() as u64, 0);
            Ok(())
        })?;
        if !intact {
            // Dropping the upload leaves nothing in the destination.
            return Err(Error::Integrity("content does not hash to its name".into()).at(at()));
        }
        match upload.finish(dest.store.as_ref(), &pack.to_hex()) {
            Ok(()) | Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e.at(at())),
        }
        let info = PackInfo { id: pack, kind: record.kind, len: record.pack_len };
        dest.index.add_pack(info, &record.entries);
        Ok(WrittenPack { info, record })
    }
}

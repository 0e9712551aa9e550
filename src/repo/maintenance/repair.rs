//! Repair: rebuild the index from the packs' own directories, and rewrite snapshots that
//! refer to lost data.

use std::collections::{HashMap, HashSet};

use super::delete_if_present;
use crate::crypto::random_array;
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::{self, BlobKind, SealedBlob};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::snapshot::{self, Node, NodeContent, SnapshotRecord, Tree, FLAG_REPAIRED};
use crate::format::tombstone::{ForgottenSnapshot, TombstoneReason};
use crate::id::{Id, IndexId, PackId, SnapshotId, TreeId};
use crate::pack::PackWriter;
use crate::repo::lock::LockKind;
use crate::repo::walk::{self, Step};
use crate::repo::{now, Repository};
use crate::store::{list_ids, FileKind};

/// What `repair snapshots` did.
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// Snapshots rewritten, old id → new id.
    pub repaired: Vec<(SnapshotId, SnapshotId)>,
    /// Paths dropped because their data is gone, per old snapshot.
    pub dropped: Vec<(SnapshotId, String)>,
}

impl Repository {
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
                "an index file is damaged, so data looks lost that is not: repair the index first".into(),
            ));
        }
        let mut report = RepairReport::default();
        let mut session_trees: Vec<SealedBlob> = Vec::new();
        let mut new_records = Vec::new();
        for (sid, rec) in self.snapshots()? {
            let mut dropped = Vec::new();
            let new_root =
                self.repair_tree(rec.root, &mut dropped, &mut session_trees).at(|| Location::Snapshot(sid))?;
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

    /// The repaired version of the snapshot tree `root` (`None` when the root tree itself is
    /// lost), sealing new trees into `out`. Bottom up: a folder's new tree is known when the
    /// walk leaves it, and goes into its parent's rebuilt entries.
    fn repair_tree(
        &self,
        root: TreeId,
        dropped: &mut Vec<String>,
        out: &mut Vec<SealedBlob>,
    ) -> Result<Option<TreeId>> {
        let mut top = Rebuild::new(root);
        // The folders being rebuilt below the root, the innermost last, with their nodes.
        let mut open: Vec<(Node, Rebuild)> = Vec::new();
        // The folder whose tree the walk reads next: an error is about it.
        let mut entered = String::new();
        for step in self.walk(root, "") {
            let here = open.last_mut().map_or(&mut top, |(_, r)| r);
            match step {
                Ok(Step::Node { path, node }) => match &node.content {
                    NodeContent::File { chunks, .. } => {
                        let mut ok = true;
                        for c in chunks {
                            if !self.blob_present(&c.0)? {
                                ok = false;
                                break;
                            }
                        }
                        if ok {
                            here.nodes.push(node);
                        } else {
                            dropped.push(path);
                            here.changed = true;
                        }
                    }
                    NodeContent::Dir { tree } => {
                        let tree = *tree;
                        open.push((node, Rebuild::new(tree)));
                        entered = path;
                    }
                    NodeContent::Symlink { .. } => here.nodes.push(node),
                },
                Ok(Step::Leave { .. }) => {
                    let (node, done) = open.pop().expect("a folder left was entered");
                    let was = done.id;
                    let rebuilt = self.rebuilt(done, out)?;
                    let parent = open.last_mut().map_or(&mut top, |(_, r)| r);
                    match rebuilt {
                        Some(new) => {
                            parent.changed |= new != was;
                            parent.nodes.push(Node { content: NodeContent::Dir { tree: new }, ..node });
                        }
                        None => parent.changed = true,
                    }
                }
                // Too deep to walk is not lost data: stop rather than drop it. Nor is what a
                // store that cannot be reached right now does not give: dropping it then would
                // lose what is still there.
                Err(e) if walk::is_too_deep(&e) || e.kind() == crate::ErrorKind::Io => return Err(e),
                // Only data that is really gone is dropped (with the folder's Leave, next).
                Err(_) => {
                    let path = std::mem::take(&mut entered);
                    dropped.push(if path.is_empty() { "/".into() } else { path });
                    here.lost = true;
                }
            }
        }
        self.rebuilt(top, out)
    }

    /// A folder's new tree once all its entries are known: the old one when nothing changed,
    /// `None` when its tree is lost; a new tree is sealed into `out`.
    fn rebuilt(&self, folder: Rebuild, out: &mut Vec<SealedBlob>) -> Result<Option<TreeId>> {
        if folder.lost {
            return Ok(None);
        }
        if !folder.changed {
            return Ok(Some(folder.id));
        }
        let bytes = Tree { nodes: folder.nodes }.encode()?;
        let new = self.keys.tree_id(&bytes);
        out.push(blob::seal(&self.keys, BlobKind::Tree, new.0, &bytes, Some(self.settings.zstd_level)));
        Ok(Some(new))
    }
}

/// A folder `repair snapshots` is rebuilding.
struct Rebuild {
    /// Its tree as the snapshot has it.
    id: TreeId,
    /// The entries kept so far (folders with their rebuilt trees).
    nodes: Vec<Node>,
    /// An entry was dropped or a folder's tree changed: the folder needs a new tree.
    changed: bool,
    /// Its tree did not read: the folder is dropped.
    lost: bool,
}

impl Rebuild {
    fn new(id: TreeId) -> Self {
        Rebuild { id, nodes: Vec::new(), changed: false, lost: false }
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

//! Copy into another key domain: each data blob opened with the source's keys and sealed again
//! under the destination's, each tree rewritten bottom-up with the new ids, new snapshot
//! records. No re-chunking: a chunk keeps its bytes, only its id and sealing change.
//!
//! Per snapshot, oldest first:
//! 1. walk its trees (skipping those already rewritten in this run) and collect the chunks not
//!    yet moved, with their places in the source;
//! 2. move them in batches of about [`BATCH_BYTES`] sealed bytes: plan coalesced reads
//!    (`pack::coalesce`, as restore does), read and open them in parallel, one pack reader per
//!    worker, each chunk sealed under the destination's keys as soon as it is opened (so only
//!    the sealed bytes of one batch are in memory), unless the destination holds its new id
//!    already; then hand the sealed blobs to the data pack writer in order. The collection is
//!    cut every [`PENDING_MAX`] chunks, so its list stays bounded too;
//! 3. rewrite its trees bottom-up: a tree's new encoding needs its children's new ids.
//!
//! Then packs are flushed, one index file names them, and the new snapshot records are written:
//! time, host, user, tags, paths, summary, flags and program as in the source; the root is the
//! rewritten one; sequence and predecessor follow the destination's own history (as a backup
//! there would have them), so the destination's history checks hold.
//!
//! A chunk that was stored raw in the source (incompressible, or its stream asked for no
//! compression) is stored raw again; the others are compressed at the destination's level.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::{CopiedSnapshot, CopyReport, IdentityKey, Run};
use crate::crypto::random_array;
use crate::error::{Error, Location, Result};
use crate::format::blob::{self, BlobKind, Codec, SealedBlob};
use crate::format::snapshot::{self, Node, NodeContent, SnapshotRecord, Tree};
use crate::id::{ChunkId, Id, PackId, SnapshotId, TreeId};
use crate::pack::{BlobLocation, PackReader, PackWriter, ReadRange, WrittenPack};
use crate::repo::walk::Step;
use crate::repo::Repository;

/// Sealed bytes read (and held, sealed again) per batch.
const BATCH_BYTES: u64 = 32 << 20;
/// Chunks collected before they are moved, whatever the walk has left to see.
const PENDING_MAX: usize = 1 << 16;

/// One chunk after a batch: its old and new id, and its new sealed blob unless the destination
/// holds it already.
struct Moved {
    old: Id,
    new: ChunkId,
    raw_len: u32,
    sealed: Option<SealedBlob>,
}

/// The state of one cross-domain copy run.
struct Reseal<'s, 'd> {
    src: &'s Repository,
    dest: &'d mut Repository,
    /// Old chunk id → new chunk id, for every chunk moved or found in this run.
    chunks: HashMap<Id, ChunkId>,
    /// Old tree id → new tree id.
    trees: HashMap<TreeId, TreeId>,
    /// Tree ids stored in this run (the destination's index knows the rest).
    trees_stored: HashSet<TreeId>,
    data: PackWriter,
    tree_packs: PackWriter,
    written: Vec<WrittenPack>,
    /// The source's pack lengths (reads are aligned within them).
    pack_lens: HashMap<PackId, u64>,
}

impl Repository {
    /// The cross-domain road of [`Repository::copy_to`].
    pub(super) fn copy_resealed(
        &self,
        dest: &mut Repository,
        chosen: Vec<(SnapshotId, SnapshotRecord)>,
        run: &Run<'_>,
        report: &mut CopyReport,
    ) -> Result<()> {
        let held = dest.snapshots_by_identity()?;
        let mut todo = Vec::new();
        for (id, rec) in chosen {
            match held.by_identity.get(&IdentityKey::of(&rec)) {
                Some((there, record)) => {
                    report.skipped.push(CopiedSnapshot { source: id, destination: *there, record: record.clone() });
                }
                None => todo.push((id, rec)),
            }
        }
        let target = dest.settings.pack_target_size as usize;
        let mut r = Reseal {
            src: self,
            dest,
            chunks: HashMap::new(),
            trees: HashMap::new(),
            trees_stored: HashSet::new(),
            data: PackWriter::new(BlobKind::Data, target),
            tree_packs: PackWriter::new(BlobKind::Tree, target),
            written: Vec::new(),
            pack_lens: self.index.packs().map(|p| (p.id, u64::from(p.len))).collect(),
        };
        let roots = match r.move_all(&todo, run, report) {
            Ok(roots) => roots,
            Err(e) => {
                // Written, not yet named: this handle's next index file names them.
                let written = std::mem::take(&mut r.written);
                r.dest.adopted.extend(written);
                return Err(e);
            }
        };
        let written = std::mem::take(&mut r.written);
        report.packs_written = written.len() as u64;
        report.pack_bytes = written.iter().map(|w| u64::from(w.info.len)).sum();
        report.index_file = dest.commit_packs(written, run)?;

        // The new records, in the source's order, each following the destination's newest.
        run.cancel.check()?;
        let mut head = dest.history_head()?;
        for ((id, rec), root) in todo.into_iter().zip(roots) {
            run.ensure_held()?;
            let (sequence, previous) = match head {
                Some((seq, prev)) => (seq + 1, Some(prev)),
                None => (1, None),
            };
            let record = SnapshotRecord { root, sequence, previous, ..rec };
            let bytes = snapshot::encode(dest.keys.meta_key(), &record, &random_array()?)?;
            let new_id = SnapshotId(Id::hash_of(&bytes));
            dest.put_snapshot(&new_id, &bytes, sequence)?;
            head = Some((sequence, new_id));
            run.progress.advance(0, 1);
            report.copied.push(CopiedSnapshot { source: id, destination: new_id, record });
        }
        Ok(())
    }
}

impl Reseal<'_, '_> {
    /// Moves every chunk and tree of `todo` and returns the new root of each snapshot.
    fn move_all(
        &mut self,
        todo: &[(SnapshotId, SnapshotRecord)],
        run: &Run<'_>,
        report: &mut CopyReport,
    ) -> Result<Vec<TreeId>> {
        let mut roots = Vec::with_capacity(todo.len());
        for (sid, rec) in todo {
            run.cancel.check()?;
            self.move_chunks(sid, rec.root, run, report)?;
            let root = self.rewrite_trees(rec.root, run, report).map_err(|e| in_snapshot(e, sid))?;
            roots.push(root);
        }
        for kind in [BlobKind::Data, BlobKind::Tree] {
            let writer = if kind == BlobKind::Data { &mut self.data } else { &mut self.tree_packs };
            for w in writer.flush(self.dest.store.as_ref(), &self.dest.keys)? {
                self.dest.index.add_pack(w.info, &w.record.entries);
                self.written.push(w);
            }
        }
        Ok(roots)
    }

    /// Step 1 and 2 of the module documentation for one snapshot.
    fn move_chunks(&mut self, sid: &SnapshotId, root: TreeId, run: &Run<'_>, report: &mut CopyReport) -> Result<()> {
        if self.trees.contains_key(&root) {
            return Ok(());
        }
        let mut pending: Vec<(Id, BlobLocation)> = Vec::new();
        let mut queued: HashSet<Id> = HashSet::new();
        let mut walk = self.src.walk(root, "");
        while let Some(step) = walk.next() {
            let Step::Node { path, node } = step.map_err(|e| in_snapshot(e, sid))? else { continue };
            match &node.content {
                NodeContent::Dir { tree } if self.trees.contains_key(tree) => walk.skip_subtree(),
                NodeContent::File { chunks, .. } => {
                    for c in chunks {
                        if self.chunks.contains_key(&c.0) || !queued.insert(c.0) {
                            continue;
                        }
                        let loc =
                            self.src.index.lookup(&c.0)?.filter(|l| l.kind == BlobKind::Data).ok_or_else(|| {
                                Error::NotFound(format!("chunk {} is in no index of the source", c.short()))
                                    .at(Location::SnapshotPath(path.clone()))
                                    .at(Location::Snapshot(*sid))
                            })?;
                        pending.push((c.0, loc));
                    }
                    if pending.len() >= PENDING_MAX {
                        self.move_batches(std::mem::take(&mut pending), run, report)?;
                        queued.clear();
                    }
                }
                _ => {}
            }
        }
        self.move_batches(pending, run, report)
    }

    /// Reads, opens, seals again and stores `pending`, in batches (module documentation).
    fn move_batches(&mut self, pending: Vec<(Id, BlobLocation)>, run: &Run<'_>, report: &mut CopyReport) -> Result<()> {
        let (pending, ranges) = crate::pack::coalesce(pending);
        let mut start = 0;
        while start < ranges.len() {
            run.cancel.check()?;
            let mut end = start;
            let mut bytes = 0;
            while end < ranges.len() && (end == start || bytes < BATCH_BYTES) {
                bytes += ranges[end].end - ranges[end].first;
                end += 1;
            }
            let moved = open_and_seal(self.src, self.dest, &self.pack_lens, &pending, &ranges[start..end])?;
            for m in moved {
                self.chunks.insert(m.old, m.new);
                report.resealed_bytes += u64::from(m.raw_len);
                run.progress.advance(u64::from(m.raw_len), 0);
                match m.sealed {
                    None => report.blobs_present += 1,
                    Some(s) => {
                        report.blobs_written += 1;
                        for w in self.data.add(self.dest.store.as_ref(), &self.dest.keys, s)? {
                            self.dest.index.add_pack(w.info, &w.record.entries);
                            self.written.push(w);
                        }
                    }
                }
            }
            start = end;
        }
        Ok(())
    }

    /// Step 3: the snapshot's trees below `root`, each with every chunk and subtree id replaced
    /// by its new one and stored unless the destination holds it; returns the new root.
    /// Bottom-up without recursion: the walk's `Leave` step closes a folder, whose children
    /// are all rewritten by then (trees nest up to 1024 levels).
    fn rewrite_trees(&mut self, root: TreeId, run: &Run<'_>, report: &mut CopyReport) -> Result<TreeId> {
        if let Some(new) = self.trees.get(&root) {
            return Ok(*new);
        }
        /// A folder being rewritten: its old tree, its node in the parent (none for the
        /// root), the children rewritten so far.
        struct Open {
            old: TreeId,
            node: Option<Node>,
            children: Vec<Node>,
        }
        let mut open = vec![Open { old: root, node: None, children: Vec::new() }];
        let mut walk = self.src.walk(root, "");
        while let Some(step) = walk.next() {
            match step? {
                Step::Node { path, mut node } => {
                    match &mut node.content {
                        NodeContent::File { chunks, .. } => {
                            for c in chunks.iter_mut() {
                                // Every chunk was moved by step 2, which walked these trees.
                                *c = *self.chunks.get(&c.0).ok_or_else(|| {
                                    Error::NotFound(format!("chunk {} was not copied", c.short()))
                                        .at(Location::SnapshotPath(path.clone()))
                                })?;
                            }
                        }
                        NodeContent::Dir { tree } => {
                            if let Some(new) = self.trees.get(tree) {
                                *tree = *new;
                                walk.skip_subtree();
                            } else {
                                let old = *tree;
                                open.push(Open { old, node: Some(node), children: Vec::new() });
                                continue;
                            }
                        }
                        NodeContent::Symlink { .. } => {}
                    }
                    open.last_mut().expect("the root stays open").children.push(node);
                }
                Step::Leave { .. } => {
                    let done = open.pop().expect("a folder was entered");
                    let new = self.store_tree(done.old, done.children, run, report)?;
                    let mut node = done.node.expect("only entered folders are left");
                    node.content = NodeContent::Dir { tree: new };
                    open.last_mut().expect("the root stays open").children.push(node);
                }
            }
        }
        let root_folder = open.pop().expect("the root");
        debug_assert!(open.is_empty());
        self.store_tree(root_folder.old, root_folder.children, run, report)
    }

    /// Encodes a rewritten tree, stores it unless the destination holds it, and maps `old`
    /// to its new id.
    fn store_tree(&mut self, old: TreeId, nodes: Vec<Node>, run: &Run<'_>, report: &mut CopyReport) -> Result<TreeId> {
        run.cancel.check()?;
        let bytes = Tree { nodes }.encode()?;
        let new = self.dest.keys.tree_id(&bytes);
        if self.dest.index.contains(&new.0) || self.trees_stored.contains(&new) {
            report.blobs_present += 1;
        } else {
            let s = blob::seal(&self.dest.keys, BlobKind::Tree, new.0, &bytes, Some(self.dest.settings.zstd_level));
            report.blobs_written += 1;
            self.trees_stored.insert(new);
            for w in self.tree_packs.add(self.dest.store.as_ref(), &self.dest.keys, s)? {
                self.dest.index.add_pack(w.info, &w.record.entries);
                self.written.push(w);
            }
        }
        self.trees.insert(old, new);
        Ok(new)
    }
}

/// Reads `ranges` of `pending` from the source in parallel (one pack reader per worker), opens
/// each chunk, and seals it under the destination's keys unless the destination holds its new
/// id; in the order of `pending`.
fn open_and_seal(
    src: &Repository,
    dest: &Repository,
    pack_lens: &HashMap<PackId, u64>,
    pending: &[(Id, BlobLocation)],
    ranges: &[ReadRange],
) -> Result<Vec<Moved>> {
    let level = dest.settings.zstd_level;
    let per_range: Vec<Result<Vec<Moved>>> = ranges
        .par_iter()
        .map_init(
            || PackReader::new(src.store.as_ref(), &src.keys),
            |reader, range| {
                let blobs = &pending[range.blobs.clone()];
                let mut out = Vec::with_capacity(blobs.len());
                let mut failed = None;
                let pack_len = pack_lens.get(&range.pack).copied();
                reader.read_range(range, pack_len, blobs, |(old, loc), opened| match opened {
                    Ok(o) if failed.is_none() => {
                        let new = dest.keys.chunk_id(o.plain);
                        let sealed = (!dest.index.contains(&new.0)).then(|| {
                            let level = (loc.codec != Codec::Raw).then_some(level);
                            blob::seal(&dest.keys, BlobKind::Data, new.0, o.plain, level)
                        });
                        out.push(Moved { old: *old, new, raw_len: loc.raw_len, sealed });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                })?;
                failed.map_or(Ok(out), Err)
            },
        )
        .collect();
    let mut moved = Vec::with_capacity(pending.len());
    for r in per_range {
        moved.extend(r?);
    }
    Ok(moved)
}

/// Names the snapshot an error of its walk came from.
fn in_snapshot(e: Error, sid: &SnapshotId) -> Error {
    e.at(Location::Snapshot(*sid))
}

//! Looking inside a repository: statistics, path search, snapshot diffs, pack directories,
//! index files and single blobs. Everything here only reads.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::BlobKind;
use crate::format::index::IndexFile;
use crate::format::pack::PackDirectory;
use crate::format::snapshot::{Node, NodeContent, SnapshotRecord};
use crate::id::{ChunkId, Id, IndexId, PackId, SnapshotId, TreeId};
use crate::index;
use crate::pack::BlobLocation;
use crate::repo::walk::{self, Step};
use crate::repo::{join, Repository};
use crate::store::{list_ids, FileKind};

/// One bucket of a size histogram: sizes in `[low, high)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Smallest size in the bucket.
    pub low: u64,
    /// One more than the largest size in the bucket.
    pub high: u64,
    /// How many.
    pub count: u64,
}

/// Repository statistics, for all snapshots or one.
///
/// *Logical* bytes are what the snapshots hold (every file of every snapshot counted);
/// *unique* chunks are the distinct data chunks they refer to, with their plaintext (raw) and
/// sealed (stored) sizes. `dedup_ratio = logical_bytes / unique_raw_bytes` and
/// `compression_ratio = unique_raw_bytes / unique_stored_bytes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Snapshots counted.
    pub snapshots: usize,
    /// Files, counted in every snapshot they appear in.
    pub files: u64,
    /// Sum of the file sizes, counted in every snapshot.
    pub logical_bytes: u64,
    /// Chunk references (with repeats).
    pub chunk_refs: u64,
    /// Distinct data chunks referred to.
    pub unique_chunks: u64,
    /// Their plaintext bytes.
    pub unique_raw_bytes: u64,
    /// Their sealed bytes.
    pub unique_stored_bytes: u64,
    /// Distinct trees (folders) referred to.
    pub trees: u64,
    /// Packs in the index, and their total length.
    pub packs: u64,
    /// Total length of those packs.
    pub pack_bytes: u64,
    /// `logical_bytes / unique_raw_bytes` (1 when there is no data).
    pub dedup_ratio: f64,
    /// `unique_raw_bytes / unique_stored_bytes` (1 when there is no data).
    pub compression_ratio: f64,
    /// Unique chunks by plaintext size, in powers of two.
    pub chunk_sizes: Vec<Bucket>,
    /// Packs by length, in powers of two.
    pub pack_sizes: Vec<Bucket>,
}

/// How a path differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// In both, with other content (or another kind).
    Modified,
    /// In both, same content, other mode or time.
    Metadata,
}

impl Change {
    /// Lowercase name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
            Change::Metadata => "metadata",
        }
    }
}

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    /// Path inside the snapshots.
    pub path: String,
    /// What changed.
    pub change: Change,
    /// File size in the first snapshot (0 for folders, links and added paths).
    pub size_before: u64,
    /// File size in the second snapshot (0 for folders, links and removed paths).
    pub size_after: u64,
}

fn histogram(sizes: impl Iterator<Item = u64>) -> Vec<Bucket> {
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for s in sizes {
        *counts.entry(64 - s.max(1).leading_zeros() - 1).or_default() += 1;
    }
    let mut out: Vec<Bucket> =
        counts.into_iter().map(|(b, count)| Bucket { low: 1 << b, high: 1u64 << (b + 1), count }).collect();
    out.sort_by_key(|b| b.low);
    out
}

/// Files, their bytes and their chunk references below a tree (saturating: trees claim
/// sizes, and a shared subtree counts once per path).
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    files: u64,
    bytes: u64,
    refs: u64,
}

impl Totals {
    fn add(&mut self, t: Totals) {
        self.files = self.files.saturating_add(t.files);
        self.bytes = self.bytes.saturating_add(t.bytes);
        self.refs = self.refs.saturating_add(t.refs);
    }
}

fn file_size(n: &Node) -> u64 {
    match &n.content {
        NodeContent::File { size, .. } => *size,
        _ => 0,
    }
}

impl Repository {
    /// Statistics over every snapshot, or over the one given.
    ///
    /// # Errors
    /// Unreadable trees or snapshots; store errors.
    pub fn stats(&self, snapshot: Option<&SnapshotId>) -> Result<Stats> {
        let snaps: Vec<(SnapshotId, SnapshotRecord)> = match snapshot {
            Some(id) => vec![(*id, self.load_snapshot(id)?)],
            None => self.snapshots()?,
        };
        // Per distinct tree: files, bytes and chunk references below it (computed once).
        let mut totals: HashMap<TreeId, Totals> = HashMap::new();
        let mut chunks: HashSet<ChunkId> = HashSet::new();
        let mut all = Totals::default();
        for (id, s) in &snaps {
            let t = self.tree_totals(s.root, &mut totals, &mut chunks).at(|| Location::Snapshot(*id))?;
            all.add(t);
        }
        let Totals { files, bytes: logical, refs } = all;
        let (mut raw, mut stored, mut sizes) = (0u64, 0u64, Vec::with_capacity(chunks.len()));
        for c in &chunks {
            let loc = self
                .index
                .lookup(&c.0)?
                .ok_or_else(|| Error::NotFound(format!("chunk {} is in no index", c.short())))?;
            raw += u64::from(loc.raw_len);
            stored += u64::from(loc.sealed_len);
            sizes.push(u64::from(loc.raw_len));
        }
        let mut packs: Vec<_> = self.index.packs().copied().collect();
        packs.sort_by_key(|p| p.id);
        packs.dedup_by_key(|p| p.id);
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        Ok(Stats {
            snapshots: snaps.len(),
            files,
            logical_bytes: logical,
            chunk_refs: refs,
            unique_chunks: chunks.len() as u64,
            unique_raw_bytes: raw,
            unique_stored_bytes: stored,
            trees: totals.len() as u64,
            packs: packs.len() as u64,
            pack_bytes: packs.iter().map(|p| u64::from(p.len)).sum(),
            dedup_ratio: ratio(logical, raw),
            compression_ratio: ratio(raw, stored),
            chunk_sizes: histogram(sizes.into_iter()),
            pack_sizes: histogram(packs.iter().map(|p| u64::from(p.len))),
        })
    }

    /// The totals below the tree `root`, and of every tree under it, each distinct tree walked
    /// once (a tree already in `totals` is skipped).
    fn tree_totals(
        &self,
        root: TreeId,
        totals: &mut HashMap<TreeId, Totals>,
        chunks: &mut HashSet<ChunkId>,
    ) -> Result<Totals> {
        if let Some(t) = totals.get(&root) {
            return Ok(*t);
        }
        // The folders being walked, the innermost last, with their totals so far.
        let mut open: Vec<(TreeId, Totals)> = vec![(root, Totals::default())];
        let mut walk = self.walk(root, "");
        while let Some(step) = walk.next() {
            match step? {
                Step::Node { node, .. } => {
                    let here = &mut open.last_mut().expect("the root stays open").1;
                    match node.content {
                        NodeContent::File { size, chunks: cs } => {
                            here.add(Totals { files: 1, bytes: size, refs: cs.len() as u64 });
                            chunks.extend(cs);
                        }
                        NodeContent::Dir { tree } => match totals.get(&tree) {
                            Some(t) => {
                                here.add(*t);
                                walk.skip_subtree();
                            }
                            None => open.push((tree, Totals::default())),
                        },
                        NodeContent::Symlink { .. } => {}
                    }
                }
                Step::Leave { .. } => {
                    let (id, t) = open.pop().expect("a folder left was entered");
                    totals.insert(id, t);
                    open.last_mut().expect("the root stays open").1.add(t);
                }
            }
        }
        let (id, t) = open.pop().expect("the root");
        totals.insert(id, t);
        Ok(t)
    }

    /// Every path matching `pattern` in every snapshot, as (snapshot, time, path), oldest
    /// snapshot first. `*` matches within a name, `**` across folders, `?` one character; a
    /// pattern without `/` is matched against names only.
    ///
    /// # Errors
    /// Unreadable trees; store errors.
    pub fn find(&self, pattern: &str) -> Result<Vec<(SnapshotId, SnapshotRecord, String)>> {
        let mut out = Vec::new();
        let names_only = !pattern.contains('/');
        for (id, rec) in self.snapshots()? {
            for step in self.walk(rec.root, "") {
                let Step::Node { path, .. } = step? else { continue };
                let subject = if names_only { path.rsplit('/').next().unwrap_or(&path) } else { path.as_str() };
                if glob_match(pattern.as_bytes(), subject.as_bytes()) {
                    out.push((id, rec.clone(), path));
                }
            }
        }
        Ok(out)
    }

    /// What changed from snapshot `a` to snapshot `b`, in path order. Folders whose tree is
    /// the same in both are skipped without being read.
    ///
    /// # Errors
    /// Unreadable trees.
    pub fn diff(&self, a: &SnapshotRecord, b: &SnapshotRecord) -> Result<Vec<DiffEntry>> {
        let mut out = Vec::new();
        self.diff_trees("", 0, a.root, b.root, &mut out)?;
        Ok(out)
    }

    /// The differences below the folder at `prefix` (whose trees lie at `level`), present in
    /// both snapshots.
    ///
    /// Two trees walked in step, a merge of two name-ordered lists, so this is not a
    /// [`TreeWalk`](super::walk::TreeWalk) (which follows one tree): entering a folder goes
    /// through [`walk::enter`], the walker's own depth check and read, and the paths present on
    /// one side only are listed by the walker ([`Repository::diff_one_side`]).
    fn diff_trees(&self, prefix: &str, level: usize, a: TreeId, b: TreeId, out: &mut Vec<DiffEntry>) -> Result<()> {
        if a == b {
            return Ok(());
        }
        let (ta, tb) = (walk::enter(self, &a, prefix, level)?, walk::enter(self, &b, prefix, level)?);
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let (na, nb) = (ta.nodes.get(i), tb.nodes.get(j));
            let order = match (na, nb) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let n = na.expect("a node");
                    self.diff_one_side(prefix, n, Change::Removed, out)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let n = nb.expect("a node");
                    self.diff_one_side(prefix, n, Change::Added, out)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (x, y) = (na.expect("a node"), nb.expect("a node"));
                    let path = join(prefix, &x.name_lossy());
                    match (&x.content, &y.content) {
                        (NodeContent::Dir { tree: p }, NodeContent::Dir { tree: q }) => {
                            if (x.mode, x.mtime_secs, x.mtime_nanos) != (y.mode, y.mtime_secs, y.mtime_nanos) {
                                out.push(DiffEntry {
                                    path: path.clone(),
                                    change: Change::Metadata,
                                    size_before: 0,
                                    size_after: 0,
                                });
                            }
                            self.diff_trees(&path, level + 1, *p, *q, out)?;
                        }
                        (cx, cy) if cx == cy => {
                            if x != y {
                                let (sb, sa) = (file_size(x), file_size(y));
                                out.push(DiffEntry { path, change: Change::Metadata, size_before: sb, size_after: sa });
                            }
                        }
                        (NodeContent::Dir { .. }, _) | (_, NodeContent::Dir { .. }) => {
                            // A folder became a file or link, or the reverse.
                            self.diff_one_side(prefix, x, Change::Removed, out)?;
                            self.diff_one_side(prefix, y, Change::Added, out)?;
                        }
                        _ => out.push(DiffEntry {
                            path,
                            change: Change::Modified,
                            size_before: file_size(x),
                            size_after: file_size(y),
                        }),
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// A path present on one side only: itself and, for a folder, everything below it.
    fn diff_one_side(&self, prefix: &str, n: &Node, change: Change, out: &mut Vec<DiffEntry>) -> Result<()> {
        let entry = |path: String, n: &Node| {
            let size = file_size(n);
            let (size_before, size_after) = if change == Change::Added { (0, size) } else { (size, 0) };
            DiffEntry { path, change, size_before, size_after }
        };
        let path = join(prefix, &n.name_lossy());
        out.push(entry(path.clone(), n));
        if let NodeContent::Dir { tree } = &n.content {
            for step in self.walk(*tree, &path) {
                if let Step::Node { path, node } = step? {
                    out.push(entry(path, &node));
                }
            }
        }
        Ok(())
    }

    /// The decrypted directory of a pack, read with one ranged read of its last 64 KiB (a
    /// second for a directory that does not fit).
    ///
    /// # Errors
    /// [`Error::NotFound`], and integrity errors naming the pack.
    pub fn pack_directory(&self, pack: &PackId) -> Result<PackDirectory> {
        crate::pack::PackReader::new(self.store.as_ref(), &self.keys).directory(pack)
    }

    /// Every index file of the repository, decrypted, in id order.
    ///
    /// # Errors
    /// Unreadable or damaged index files.
    pub fn index_files(&self) -> Result<Vec<(IndexId, IndexFile)>> {
        let ids: Vec<IndexId> = list_ids(self.store.as_ref(), FileKind::Index)?.into_iter().map(IndexId).collect();
        index::read_index_files(self.store.as_ref(), self.keys.meta_key(), &ids)
    }

    /// Reads, opens and checks one blob (data or tree) by id.
    ///
    /// Takes an untyped [`Id`], unlike the rest of the API: this is the inspection tool's
    /// entry, for an id the user typed ([`Repository::resolve_blob`]) whose kind only the
    /// index knows (the returned [`BlobLocation::kind`]). Readers that know the kind use
    /// [`Repository::load_tree`] for trees.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no index knows it; integrity errors naming the pack and offset.
    pub fn read_blob(&self, id: &Id) -> Result<(BlobLocation, Vec<u8>)> {
        let loc = self.index.lookup(id)?.ok_or_else(|| Error::NotFound(format!("blob {id} is in no index")))?;
        Ok((loc, crate::pack::PackReader::new(self.store.as_ref(), &self.keys).read_blob(id, &loc)?))
    }

    /// The blob whose id is `spec` or starts with it (at least 8 hex digits). Untyped: data and
    /// tree blobs share one id space in the index, and the kind is what the caller asks next
    /// ([`Repository::blob_kind`]).
    ///
    /// # Errors
    /// [`Error::NotFound`], or [`Error::InvalidArgument`] for a short or ambiguous prefix.
    pub fn resolve_blob(&self, spec: &str) -> Result<Id> {
        if let Ok(id) = Id::from_hex(spec) {
            return Ok(id);
        }
        let spec = spec.to_ascii_lowercase();
        if spec.len() < 8 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidArgument(format!("{spec:?} is not a blob id (at least 8 hex digits)")));
        }
        let mut found: Vec<Id> = Vec::new();
        for item in self.index.iter() {
            let (id, _) = item?;
            if id.to_hex().starts_with(&spec) && !found.contains(&id) {
                found.push(id);
            }
        }
        match found.as_slice() {
            [] => Err(Error::NotFound(format!("blob {spec}"))),
            [one] => Ok(*one),
            _ => Err(Error::InvalidArgument(format!("blob prefix {spec} matches {} blobs", found.len()))),
        }
    }

    /// The pack whose id is `spec` or starts with it (at least 4 hex digits), among the
    /// packs in the store.
    ///
    /// # Errors
    /// [`Error::NotFound`], or [`Error::InvalidArgument`] for a short or ambiguous prefix.
    pub fn resolve_pack(&self, spec: &str) -> Result<PackId> {
        resolve_in(&list_ids(self.store.as_ref(), FileKind::Pack)?, spec, "pack").map(PackId)
    }

    /// Kind of a blob id, when the index knows it (an untyped [`Id`], as
    /// [`Repository::read_blob`] takes: the id of a blob whose kind is yet unknown).
    ///
    /// # Errors
    /// Damaged cache entries.
    pub fn blob_kind(&self, id: &Id) -> Result<Option<BlobKind>> {
        Ok(self.index.lookup(id)?.map(|l| l.kind))
    }
}

/// Resolves an id or unique prefix among `ids`.
pub(crate) fn resolve_in(ids: &[Id], spec: &str, what: &str) -> Result<Id> {
    let spec = spec.to_ascii_lowercase();
    if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!("{spec:?} is not a {what} id (at least 4 hex digits)")));
    }
    let found: Vec<&Id> = ids.iter().filter(|id| id.to_hex().starts_with(&spec)).collect();
    match found.as_slice() {
        [] => Err(Error::NotFound(format!("{what} {spec}"))),
        [one] => Ok(**one),
        _ => Err(Error::InvalidArgument(format!("{what} prefix {spec} matches {} {what}s", found.len()))),
    }
}

/// Glob matching: `*` any run of characters but `/`, `**` any run including `/`, `?` one
/// character but `/`.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') if pattern.get(1) == Some(&b'*') => {
            let rest = &pattern[2..];
            (0..=text.len()).any(|i| glob_match(rest, &text[i..]))
        }
        Some(b'*') => {
            let rest = &pattern[1..];
            let stop = text.iter().position(|&c| c == b'/').unwrap_or(text.len());
            (0..=stop).any(|i| glob_match(rest, &text[i..]))
        }
        Some(b'?') => text.first().is_some_and(|&c| c != b'/') && glob_match(&pattern[1..], &text[1..]),
        Some(&c) => text.first() == Some(&c) && glob_match(&pattern[1..], &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.jpg", b"IMG-1.jpg"));
        assert!(!glob_match(b"*.jpg", b"media/IMG-1.jpg"));
        assert!(glob_match(b"media/*.jpg", b"media/IMG-1.jpg"));
        assert!(glob_match(b"**/*.json", b"export/messages/inbox/t/message_1.json"));
        assert!(glob_match(b"IMG-?.jpg", b"IMG-7.jpg"));
        assert!(!glob_match(b"IMG-?.jpg", b"IMG-77.jpg"));
        assert!(glob_match(b"**", b"a/b/c"));
    }

    #[test]
    fn histograms_bucket_by_powers_of_two() {
        let h = histogram([1, 2, 3, 1000, 1024, 65_536].into_iter());
        let as_tuples: Vec<(u64, u64, u64)> = h.iter().map(|b| (b.low, b.high, b.count)).collect();
        assert_eq!(as_tuples, vec![(1, 2, 1), (2, 4, 2), (512, 1024, 1), (1024, 2048, 1), (65_536, 131_072, 1)]);
    }
}

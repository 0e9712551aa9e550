//! The merged index: blob id → (pack, offset, length), as sorted fixed-width tables.
//!
//! At open, every index file of the repository is merged into a sorted table kept as a local
//! cache file (format-spec.md §5.12; the cache is local, never stored in the repository) and
//! memory-mapped: a lookup is an interpolation search over the mapping (ids are uniformly
//! distributed keyed hashes), with no per-entry heap objects. 48 bytes per blob.
//!
//! After a backup, the new blobs are not merged into the big table: they go into a small
//! second table (`index.delta`) that is rewritten alone, so the cost of keeping the cache
//! current follows what changed, not the repository's size. When the delta grows past an
//! eighth of the base, both are merged into a new base. Blobs added since the tables were
//! written sit in a small in-memory overlay. The cache records which index files it covers:
//! when new index files appear, only those are read and merged in; when one disappears
//! (prune), everything is rebuilt.
//!
//! The table layout and lookups are in `table`; the cache files' privacy, MAC and version
//! (why a backup may trust them) in `cache`.

mod cache;
mod table;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;

use crate::crypto::SecretKey;
use crate::error::{CacheWarning, Error, Location, Result, ResultExt};
use crate::format::index::{self as index_format, IndexFile};
use crate::format::pack::BlobEntry;
use crate::id::{Id, IndexId, PackId};
use crate::store::{FileKind, Store};

pub use cache::cache_path;
#[cfg(feature = "hazmat")]
pub(crate) use cache::open_cached;
pub(crate) use cache::{cache_header, check_cache_header, repo_dir as cache_repo_dir, write_private};
use table::{Bytes, Row, Table};

// Defined with the packs (the index sits above them); re-exported so `crate::BlobLocation` and
// `crate::PackInfo` keep their place in the public API.
pub use crate::pack::{BlobLocation, PackInfo};

/// The delta is merged into the base once it holds more than this many entries and more
/// than an eighth of the base's.
const DELTA_MIN: usize = 1 << 16;

/// The tables (heap or memory-mapped) plus the overlay of recent additions.
pub struct Index {
    repo_id: [u8; 16],
    /// The key of the cache files' MAC (see `cache`).
    cache_key: SecretKey,
    base: Table,
    delta: Option<Table>,
    overlay: HashMap<Id, BlobLocation>,
    overlay_packs: Vec<PackInfo>,
    /// Index files whose content is in the overlay (written by this client since the load).
    overlay_covered: Vec<IndexId>,
    /// Cache files refused while this index was loaded (see [`Index::cache_warnings`]).
    cache_warnings: Vec<CacheWarning>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("base", &self.base.count)
            .field("delta", &self.delta.as_ref().map(|d| d.count))
            .field("overlay", &self.overlay.len())
            .finish()
    }
}

impl Index {
    /// An empty index.
    #[must_use]
    pub fn empty() -> Index {
        Index::from_rows(&[0; 16], cache::tool_key(), Vec::new(), Vec::new(), Vec::new())
    }

    /// An empty index of a repository, built without its keys (hazmat tools and benchmarks):
    /// its cache files are written under a public key, and opened only by
    /// [`open_cached`], never by a repository.
    #[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat`
    pub(crate) fn for_repo(repo_id: &[u8; 16]) -> Index {
        Index::keyed(repo_id, cache::tool_key())
    }

    /// An empty index of a repository whose cache files carry MACs under `cache_key`.
    fn keyed(repo_id: &[u8; 16], cache_key: SecretKey) -> Index {
        Index::from_rows(repo_id, cache_key, Vec::new(), Vec::new(), Vec::new())
    }

    fn from_rows(
        repo_id: &[u8; 16],
        cache_key: SecretKey,
        covered: Vec<IndexId>,
        packs: Vec<PackInfo>,
        mut rows: Vec<Row>,
    ) -> Index {
        rows.par_sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let base = Table::built(repo_id, &cache_key, covered, packs, &rows, &[0; 32]);
        Index::from_tables(*repo_id, cache_key, base, None)
    }

    fn from_tables(repo_id: [u8; 16], cache_key: SecretKey, base: Table, delta: Option<Table>) -> Index {
        Index {
            repo_id,
            cache_key,
            base,
            delta,
            overlay: HashMap::new(),
            overlay_packs: Vec::new(),
            overlay_covered: Vec::new(),
            cache_warnings: Vec::new(),
        }
    }

    /// Local cache files that were refused (forged, damaged, or from an older version) and
    /// rebuilt while this index was loaded; empty when the cache was sound or absent.
    #[must_use]
    pub fn cache_warnings(&self) -> &[CacheWarning] {
        &self.cache_warnings
    }

    /// Takes the cache warnings (a backup reports them in its outcome).
    pub(crate) fn take_cache_warnings(&mut self) -> Vec<CacheWarning> {
        std::mem::take(&mut self.cache_warnings)
    }

    fn tables(&self) -> impl Iterator<Item = &Table> {
        self.delta.iter().chain(std::iter::once(&self.base))
    }

    /// The newest table's pack list (the delta's includes the base's).
    fn table_packs(&self) -> &[PackInfo] {
        self.delta.as_ref().map_or(&self.base.packs, |d| &d.packs)
    }

    /// Number of entries (tables and overlay).
    #[must_use]
    pub fn len(&self) -> usize {
        self.tables().map(|t| t.count).sum::<usize>() + self.overlay.len()
    }

    /// True when the index knows no blob.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packs the index knows, tables first.
    pub fn packs(&self) -> impl Iterator<Item = &PackInfo> {
        self.table_packs().iter().chain(self.overlay_packs.iter())
    }

    /// The index files the index was built from.
    #[must_use]
    pub fn covered(&self) -> Vec<IndexId> {
        let mut c = self.delta.as_ref().map_or(&self.base.covered, |d| &d.covered).clone();
        c.extend_from_slice(&self.overlay_covered);
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Bytes of the tables (mapped or on the heap).
    #[must_use]
    pub fn table_bytes(&self) -> usize {
        self.tables().map(|t| t.bytes.as_slice().len()).sum()
    }

    /// Entries in the base table and in the delta table.
    #[must_use]
    pub fn table_counts(&self) -> (usize, usize) {
        (self.base.count, self.delta.as_ref().map_or(0, |d| d.count))
    }

    /// True when the base table is memory-mapped from a cache file.
    #[must_use]
    pub fn is_mapped(&self) -> bool {
        matches!(self.base.bytes, Bytes::Mapped(_))
    }

    /// Where the blob `id` is stored, if the index knows it.
    ///
    /// # Errors
    /// [`Error::Malformed`] when the cache entry is damaged.
    pub fn lookup(&self, id: &Id) -> Result<Option<BlobLocation>> {
        if let Some(loc) = self.overlay.get(id) {
            return Ok(Some(*loc));
        }
        for t in self.tables() {
            if let Some(i) = t.search(id) {
                return Ok(Some(t.decode_entry(i)?.1));
            }
        }
        Ok(None)
    }

    /// True when the index knows the blob.
    #[must_use]
    pub fn contains(&self, id: &Id) -> bool {
        self.overlay.contains_key(id) || self.tables().any(|t| t.search(id).is_some())
    }

    /// Every entry of the tables and the overlay, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(Id, BlobLocation)>> + '_ {
        self.tables()
            .flat_map(|t| (0..t.count).map(move |i| t.decode_entry(i)))
            .chain(self.overlay.iter().map(|(k, v)| Ok((*k, *v))))
    }

    /// Records the blobs of a pack just written.
    pub(crate) fn add_pack(&mut self, pack: PackInfo, entries: &[BlobEntry]) {
        self.overlay_packs.push(pack);
        for e in entries {
            self.overlay.entry(e.id).or_insert(BlobLocation {
                pack: pack.id,
                kind: pack.kind,
                offset: e.offset,
                sealed_len: e.sealed_len,
                raw_len: e.raw_len,
                codec: e.codec,
            });
        }
    }

    /// Records that the index file `id` lists what the overlay holds.
    pub(crate) fn add_covered(&mut self, id: IndexId) {
        self.overlay_covered.push(id);
    }

    /// Parses a cache table from untrusted bytes (fuzzing, tools): with `verify_mac` false the
    /// table is used as is, which is only safe because every lookup is bounds-checked; with
    /// it, the MAC must verify under the key of tables built without a repository's keys
    /// (see [`Index::for_repo`]).
    #[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat`
    pub(crate) fn from_untrusted_bytes(bytes: Vec<u8>, verify_mac: bool) -> Result<Index> {
        let key = cache::tool_key();
        let base = Table::parse(Bytes::Heap(bytes), None, verify_mac.then_some(&key))?;
        Ok(Index::from_tables([0; 16], key, base, None))
    }

    /// Checks that table entries are sorted and name known packs (used by tests and `check`).
    ///
    /// # Errors
    /// [`Error::Malformed`] naming the first bad entry.
    pub fn verify_table(&self) -> Result<()> {
        for t in self.tables() {
            for i in 0..t.count {
                t.decode_entry(i)?;
                if i > 0 && t.entry_id(i - 1) > t.entry_id(i) {
                    return Err(Error::malformed("index cache", None, format!("entry {i} out of order")));
                }
            }
        }
        Ok(())
    }

    /// Folds the overlay into the tables: into the delta, or into a new base when the delta
    /// has grown past an eighth of the base. Returns whether the base was rewritten.
    fn fold(&mut self) -> Result<bool> {
        if self.overlay.is_empty() && self.overlay_packs.is_empty() && self.overlay_covered.is_empty() {
            return Ok(false);
        }
        let mut packs = self.table_packs().to_vec();
        let mut numbers: HashMap<PackId, u32> = packs.iter().enumerate().map(|(i, p)| (p.id, i as u32)).collect();
        for p in &self.overlay_packs {
            numbers.entry(p.id).or_insert_with(|| {
                packs.push(*p);
                (packs.len() - 1) as u32
            });
        }
        let mut rows: Vec<Row> = self
            .overlay
            .iter()
            .map(|(id, l)| Row {
                id: *id,
                pack: numbers[&l.pack],
                offset: l.offset,
                sealed_len: l.sealed_len,
                raw_len: l.raw_len,
                codec: l.codec,
            })
            .collect();
        if let Some(d) = &self.delta {
            rows.extend(d.rows()?);
        }
        let covered = self.covered();
        let delta_count = rows.len();
        let rebase = delta_count > DELTA_MIN && delta_count > self.base.count / 8;
        if rebase {
            rows.extend(self.base.rows()?);
            let warnings = self.take_cache_warnings();
            *self = Index::from_rows(&self.repo_id, self.cache_key.clone(), covered, packs, rows);
            self.cache_warnings = warnings;
            return Ok(true);
        }
        rows.par_sort_unstable_by(|a, b| a.id.cmp(&b.id));
        self.delta = Some(Table::built(&self.repo_id, &self.cache_key, covered, packs, &rows, &self.base.mac));
        self.overlay.clear();
        self.overlay_packs.clear();
        self.overlay_covered.clear();
        Ok(false)
    }
}

/// Reads, decrypts and decodes the index files `ids`, in parallel; fails on the first bad one.
pub(crate) fn read_index_files(
    store: &dyn Store,
    meta_key: &SecretKey,
    ids: &[IndexId],
) -> Result<Vec<(IndexId, IndexFile)>> {
    read_index_files_each(store, meta_key, ids).into_iter().map(|(id, r)| r.map(|f| (id, f))).collect()
}

/// Reads, decrypts and decodes the index files `ids`, in parallel, each with its own result.
pub(crate) fn read_index_files_each(
    store: &dyn Store,
    meta_key: &SecretKey,
    ids: &[IndexId],
) -> Vec<(IndexId, Result<IndexFile>)> {
    ids.par_iter()
        .map(|id| {
            let name = id.to_hex();
            let loc = || Location::RepoFile(FileKind::Index.path(&name));
            let read = || -> Result<IndexFile> {
                let bytes = crate::store::get_bounded(
                    store,
                    FileKind::Index,
                    &name,
                    index_format::MAX_INDEX_FILE,
                    "index file length",
                )
                .at(loc)?;
                if crate::id::Id::hash_of(&bytes) != id.0 {
                    return Err(Error::Integrity("content does not hash to its name".into()).at(loc()));
                }
                index_format::decode(meta_key, &bytes).at(loc)
            };
            (*id, read())
        })
        .collect()
}

/// Loads the index for the repository: from the cache when it covers exactly the index files
/// present, reading only the new ones when it covers a subset, rebuilding otherwise. With no
/// cache folder, the tables are built on the heap. The cache files must carry a MAC under the
/// key derived from `meta_key`; one that does not is ignored, rebuilt, and reported in
/// [`Index::cache_warnings`].
///
/// A damaged index file is left out (and not marked covered, so the next load tries it
/// again): the blobs it lists look missing, which `check` reports and `repair index` fixes,
/// while everything else stays readable. Store I/O errors still fail the load. The flag says
/// whether some index file was left out.
pub(crate) fn load(
    store: &dyn Store,
    meta_key: &SecretKey,
    repo_id: &[u8; 16],
    cache_dir: Option<&Path>,
) -> Result<(Index, bool)> {
    let key = crate::crypto::cache_mac_key(meta_key);
    let present: Vec<IndexId> = crate::store::list_ids(store, FileKind::Index)?.into_iter().map(IndexId).collect();
    let mut warnings = Vec::new();
    let cached = cache_dir
        .and_then(|d| cache::open_keyed(d, repo_id, &key, &mut warnings))
        .filter(|idx| idx.covered().iter().all(|c| present.binary_search(c).is_ok()));
    let from_cache = cached.is_some();
    let mut index = cached.unwrap_or_else(|| Index::keyed(repo_id, key));
    index.cache_warnings = warnings;
    let covered = index.covered();
    let missing: Vec<IndexId> = present.iter().filter(|p| covered.binary_search(p).is_err()).copied().collect();
    if missing.is_empty() && from_cache {
        return Ok((index, false));
    }
    let damaged = add_index_files(&mut index, store, meta_key, &missing)?;
    Ok((persist(index, cache_dir)?, damaged))
}

/// Reads the index files `ids` into `index`'s overlay, each marked covered; a damaged one is
/// skipped (see [`load`]) and makes the result true. Store I/O errors fail.
pub(crate) fn add_index_files(
    index: &mut Index,
    store: &dyn Store,
    meta_key: &SecretKey,
    ids: &[IndexId],
) -> Result<bool> {
    let mut damaged = false;
    for (id, file) in read_index_files_each(store, meta_key, ids) {
        let file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
            Err(_) => {
                damaged = true;
                continue;
            }
        };
        for p in &file.packs {
            index.add_pack(PackInfo { id: p.pack, kind: p.kind, len: p.pack_len }, &p.entries);
        }
        index.add_covered(id);
    }
    Ok(damaged)
}

/// Folds the overlay into the tables and, with a cache folder, writes what changed (the delta,
/// or a new base) and maps it back. The base is written whenever it is not the cache's own
/// (rebuilt on the heap: no cache yet, or the cache was refused).
pub(crate) fn persist(mut index: Index, cache_dir: Option<&Path>) -> Result<Index> {
    let rebased = index.fold()?;
    let Some(dir) = cache_dir else { return Ok(index) };
    let repo_id = index.repo_id;
    if rebased || !index.is_mapped() {
        write_private(dir, &repo_id, "index.cache", index.base.bytes.as_slice())?;
        let _ = std::fs::remove_file(cache::delta_path(dir, &repo_id));
    }
    if let Some(d) = &index.delta {
        write_private(dir, &repo_id, "index.delta", d.bytes.as_slice())?;
    }
    let mut warnings = index.take_cache_warnings();
    let mut reopened = cache::open_keyed(dir, &repo_id, &index.cache_key, &mut warnings).ok_or_else(|| {
        Error::Io(std::io::Error::other("the index cache just written does not read back"))
            .at(Location::Path(cache_path(dir, &repo_id)))
    })?;
    reopened.cache_warnings = warnings;
    Ok(reopened)
}

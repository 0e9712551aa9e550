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

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::crypto::SecretKey;
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::{BlobKind, Codec, MAX_BLOB_RAW, MAX_BLOB_SEALED};
use crate::format::index::{self as index_format, IndexFile};
use crate::format::pack::BlobEntry;
use crate::format::{check_header, header};
use crate::id::{Id, IndexId, PackId, ID_LEN};
use crate::store::{FileKind, Store};

/// Magic of the local index cache.
pub const MAGIC_CACHE: [u8; 6] = *b"PVICAC";
/// Length of the cache header.
pub const CACHE_HEADER_LEN: usize = 128;
/// Length of a cache pack record.
pub const CACHE_PACK_LEN: usize = 40;
/// Length of a cache entry.
pub const CACHE_ENTRY_LEN: usize = 48;
const CODEC_BIT: u32 = 1 << 31;
/// The delta is merged into the base once it holds more than this many entries and more
/// than an eighth of the base's.
const DELTA_MIN: usize = 1 << 16;

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: PackId,
    /// The blob's kind (the pack's kind).
    pub kind: BlobKind,
    /// Offset in the pack.
    pub offset: u32,
    /// Sealed length.
    pub sealed_len: u32,
    /// Plaintext length.
    pub raw_len: u32,
    /// Codec.
    pub codec: Codec,
}

impl BlobLocation {
    /// The pack-directory entry for this location.
    #[must_use]
    pub fn entry(&self, id: Id) -> BlobEntry {
        BlobEntry { id, offset: self.offset, sealed_len: self.sealed_len, raw_len: self.raw_len, codec: self.codec }
    }
}

/// A pack as the table knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackInfo {
    /// Pack id.
    pub id: PackId,
    /// Kind of its blobs.
    pub kind: BlobKind,
    /// Length of the pack file.
    pub len: u32,
}

enum Bytes {
    Heap(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Heap(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}

/// One sorted table (a cache file, or built in memory).
struct Table {
    bytes: Bytes,
    covered: Vec<IndexId>,
    packs: Vec<PackInfo>,
    entries_at: usize,
    count: usize,
    checksum: [u8; 32],
    base_checksum: [u8; 32],
}

/// One row before it is written into a table.
#[derive(Clone, Copy)]
struct Row {
    id: Id,
    pack: u32,
    offset: u32,
    sealed_len: u32,
    raw_len: u32,
    codec: Codec,
}

/// The first 8 bytes of an id as a number (ids are uniform: this locates them).
fn key(id: &[u8]) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&id[..8]);
    u64::from_be_bytes(k)
}

impl Table {
    fn entry_bytes(&self, i: usize) -> Option<&[u8]> {
        let start = self.entries_at.checked_add(i.checked_mul(CACHE_ENTRY_LEN)?)?;
        self.bytes.as_slice().get(start..start.checked_add(CACHE_ENTRY_LEN)?)
    }

    fn entry_id(&self, i: usize) -> Option<&[u8]> {
        self.entry_bytes(i).map(|e| &e[..ID_LEN])
    }

    fn decode_entry(&self, i: usize) -> Result<(Id, BlobLocation)> {
        let corrupt = |d: &str| {
            Error::malformed("index cache", Some((self.entries_at + i * CACHE_ENTRY_LEN) as u64), d.to_string())
        };
        let e = self.entry_bytes(i).ok_or_else(|| corrupt("entry out of range"))?;
        let word = |at: usize| u32::from_le_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]);
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&e[..ID_LEN]);
        let pack = self.packs.get(word(32) as usize).ok_or_else(|| corrupt("pack number out of range"))?;
        let sealed = word(40);
        // The same bounds a pack directory entry has: a damaged cache names no impossible blob.
        let (sealed_len, raw_len) = (sealed & !CODEC_BIT, word(44));
        if sealed_len as usize <= crate::crypto::TAG_LEN || sealed_len > MAX_BLOB_SEALED || raw_len > MAX_BLOB_RAW {
            return Err(corrupt("impossible blob length"));
        }
        Ok((
            Id(id),
            BlobLocation {
                pack: pack.id,
                kind: pack.kind,
                offset: word(36),
                sealed_len,
                raw_len,
                codec: if sealed & CODEC_BIT != 0 { Codec::Zstd } else { Codec::Raw },
            },
        ))
    }

    /// Interpolation search for the first entry with `id`: a few probes guided by the id's
    /// value narrow the range, then a binary search finishes. Every probe is bounds-checked
    /// and the number of interpolation steps is capped, so an unsorted (damaged) table gives
    /// a wrong answer at worst, never a panic or a long loop.
    fn search(&self, id: &Id) -> Option<usize> {
        let target = key(&id.0);
        let (mut lo, mut hi) = (0usize, self.count);
        for _ in 0..8 {
            if hi - lo <= 32 {
                break;
            }
            let (klo, khi) = (key(self.entry_id(lo)?), key(self.entry_id(hi - 1)?));
            if target < klo || target > khi || khi <= klo {
                break;
            }
            let span = (hi - 1 - lo) as u128;
            let guess = lo + ((u128::from(target - klo) * span) / u128::from(khi - klo)) as usize;
            // Probe a small window around the guess; shrink [lo, hi) to it when it brackets.
            let w = 16.max((hi - lo) >> 10);
            let (a, b) = (guess.saturating_sub(w).max(lo), (guess + w).min(hi - 1));
            if self.entry_id(a)? < &id.0[..] {
                lo = a + 1;
            } else {
                hi = a.max(lo);
                break;
            }
            if self.entry_id(b)? >= &id.0[..] {
                hi = b;
            } else {
                lo = b + 1;
            }
            if lo >= hi {
                break;
            }
        }
        let (mut lo, mut hi) = (lo.min(self.count), hi.min(self.count));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry_id(mid)?.cmp(&id.0[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                _ => hi = mid,
            }
        }
        (lo < self.count && self.entry_id(lo)? == &id.0[..]).then_some(lo)
    }

    fn rows(&self) -> Result<Vec<Row>> {
        let pack_numbers: HashMap<PackId, u32> = self.packs.iter().enumerate().map(|(i, p)| (p.id, i as u32)).collect();
        (0..self.count)
            .map(|i| {
                let (id, l) = self.decode_entry(i)?;
                Ok(Row {
                    id,
                    pack: pack_numbers[&l.pack],
                    offset: l.offset,
                    sealed_len: l.sealed_len,
                    raw_len: l.raw_len,
                    codec: l.codec,
                })
            })
            .collect()
    }

    fn encode(
        repo_id: &[u8; 16],
        covered: &[IndexId],
        packs: &[PackInfo],
        rows: &[Row],
        base_checksum: &[u8; 32],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            CACHE_HEADER_LEN + covered.len() * ID_LEN + packs.len() * CACHE_PACK_LEN + rows.len() * CACHE_ENTRY_LEN,
        );
        out.extend_from_slice(&header(MAGIC_CACHE));
        out.extend_from_slice(repo_id);
        for n in [covered.len(), packs.len(), rows.len()] {
            out.extend_from_slice(&(n as u64).to_le_bytes());
        }
        out.resize(80, 0); // the checksum, filled below
        out.extend_from_slice(base_checksum);
        out.resize(CACHE_HEADER_LEN, 0);
        for c in covered {
            out.extend_from_slice(c.as_bytes());
        }
        for p in packs {
            out.extend_from_slice(p.id.as_bytes());
            out.push(p.kind as u8);
            out.extend_from_slice(&[0; 3]);
            out.extend_from_slice(&p.len.to_le_bytes());
        }
        for r in rows {
            out.extend_from_slice(&r.id.0);
            out.extend_from_slice(&r.pack.to_le_bytes());
            out.extend_from_slice(&r.offset.to_le_bytes());
            let codec = if r.codec == Codec::Zstd { CODEC_BIT } else { 0 };
            out.extend_from_slice(&(r.sealed_len | codec).to_le_bytes());
            out.extend_from_slice(&r.raw_len.to_le_bytes());
        }
        let sum = blake3::hash(&out[CACHE_HEADER_LEN..]);
        out[48..80].copy_from_slice(sum.as_bytes());
        out
    }

    fn parse(bytes: Bytes, repo_id: Option<&[u8; 16]>, verify_checksum: bool) -> Result<Table> {
        let b = bytes.as_slice();
        check_header(b, MAGIC_CACHE, "index cache")?;
        if b.len() < CACHE_HEADER_LEN {
            return Err(Error::malformed("index cache", None, "truncated header"));
        }
        if repo_id.is_some_and(|r| &b[8..24] != r) {
            return Err(Error::malformed("index cache", Some(8), "belongs to another repository"));
        }
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let (c, p, n) = (word(24), word(32), word(40));
        let checksum: [u8; 32] = b[48..80].try_into().expect("32 bytes");
        let base_checksum: [u8; 32] = b[80..112].try_into().expect("32 bytes");
        let body_len = c
            .checked_mul(ID_LEN as u64)
            .and_then(|x| x.checked_add(p.checked_mul(CACHE_PACK_LEN as u64)?))
            .and_then(|x| x.checked_add(n.checked_mul(CACHE_ENTRY_LEN as u64)?))
            .ok_or_else(|| Error::malformed("index cache", Some(24), "counts overflow"))?;
        if body_len != (b.len() - CACHE_HEADER_LEN) as u64 {
            return Err(Error::malformed("index cache", Some(24), "counts do not match the file length"));
        }
        if verify_checksum && blake3::hash(&b[CACHE_HEADER_LEN..]).as_bytes() != &checksum {
            return Err(Error::Integrity("index cache: checksum mismatch".into()));
        }
        let (c, p, n) = (c as usize, p as usize, n as usize);
        let mut at = CACHE_HEADER_LEN;
        let covered = (0..c)
            .map(|i| {
                let s = at + i * ID_LEN;
                IndexId(Id(b[s..s + ID_LEN].try_into().expect("32 bytes")))
            })
            .collect();
        at += c * ID_LEN;
        let mut packs = Vec::with_capacity(p);
        for i in 0..p {
            let r = &b[at + i * CACHE_PACK_LEN..at + (i + 1) * CACHE_PACK_LEN];
            let kind =
                BlobKind::from_u8(r[32]).ok_or_else(|| Error::malformed("index cache", None, "bad pack kind"))?;
            packs.push(PackInfo {
                id: PackId(Id(r[..32].try_into().expect("32 bytes"))),
                kind,
                len: u32::from_le_bytes(r[36..40].try_into().expect("4 bytes")),
            });
        }
        at += p * CACHE_PACK_LEN;
        Ok(Table { bytes, covered, packs, entries_at: at, count: n, checksum, base_checksum })
    }

    fn built(repo_id: &[u8; 16], covered: Vec<IndexId>, packs: Vec<PackInfo>, rows: &[Row], base: &[u8; 32]) -> Table {
        let bytes = Table::encode(repo_id, &covered, &packs, rows, base);
        Table::parse(Bytes::Heap(bytes), Some(repo_id), false).expect("a freshly encoded table parses")
    }
}

/// The tables (heap or memory-mapped) plus the overlay of recent additions.
pub struct Index {
    repo_id: [u8; 16],
    base: Table,
    delta: Option<Table>,
    overlay: HashMap<Id, BlobLocation>,
    overlay_packs: Vec<PackInfo>,
    /// Index files whose content is in the overlay (written by this client since the load).
    overlay_covered: Vec<IndexId>,
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
        Index::from_rows(&[0; 16], Vec::new(), Vec::new(), Vec::new())
    }

    pub(crate) fn for_repo(repo_id: &[u8; 16]) -> Index {
        Index::from_rows(repo_id, Vec::new(), Vec::new(), Vec::new())
    }

    fn from_rows(repo_id: &[u8; 16], covered: Vec<IndexId>, packs: Vec<PackInfo>, mut rows: Vec<Row>) -> Index {
        rows.par_sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Index {
            repo_id: *repo_id,
            base: Table::built(repo_id, covered, packs, &rows, &[0; 32]),
            delta: None,
            overlay: HashMap::new(),
            overlay_packs: Vec::new(),
            overlay_covered: Vec::new(),
        }
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

    /// Parses a cache from untrusted bytes (fuzzing, tools): with `verify_checksum` false the
    /// table is used as is, which is only safe because every lookup is bounds-checked.
    #[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat`
    pub(crate) fn from_untrusted_bytes(bytes: Vec<u8>, verify_checksum: bool) -> Result<Index> {
        let base = Table::parse(Bytes::Heap(bytes), None, verify_checksum)?;
        Ok(Index {
            repo_id: [0; 16],
            base,
            delta: None,
            overlay: HashMap::new(),
            overlay_packs: Vec::new(),
            overlay_covered: Vec::new(),
        })
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
            *self = Index::from_rows(&self.repo_id, covered, packs, rows);
            return Ok(true);
        }
        rows.par_sort_unstable_by(|a, b| a.id.cmp(&b.id));
        self.delta = Some(Table::built(&self.repo_id, covered, packs, &rows, &self.base.checksum));
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

/// Where the cache for a repository lives under a cache folder.
#[must_use]
pub fn cache_path(cache_dir: &Path, repo_id: &[u8; 16]) -> PathBuf {
    cache_dir.join(crate::id::hex_encode(repo_id)).join("index.cache")
}

fn delta_path(cache_dir: &Path, repo_id: &[u8; 16]) -> PathBuf {
    cache_path(cache_dir, repo_id).with_file_name("index.delta")
}

/// Loads the index for the repository: from the cache when it covers exactly the index files
/// present, reading only the new ones when it covers a subset, rebuilding otherwise. With no
/// cache folder, the tables are built on the heap.
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
    let present: Vec<IndexId> = crate::store::list_ids(store, FileKind::Index)?.into_iter().map(IndexId).collect();
    let cached = cache_dir
        .and_then(|d| open_cached(d, repo_id))
        .filter(|idx| idx.covered().iter().all(|c| present.binary_search(c).is_ok()));
    let from_cache = cached.is_some();
    let mut index = cached.unwrap_or_else(|| Index::for_repo(repo_id));
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
/// or a new base) and maps it back.
pub(crate) fn persist(mut index: Index, cache_dir: Option<&Path>) -> Result<Index> {
    let rebased = index.fold()?;
    let Some(dir) = cache_dir else { return Ok(index) };
    let repo_id = index.repo_id;
    let (base_path, delta_path) = (cache_path(dir, &repo_id), delta_path(dir, &repo_id));
    if rebased || !base_path.exists() {
        write_atomic(&base_path, index.base.bytes.as_slice())?;
        let _ = fs::remove_file(&delta_path);
    }
    if let Some(d) = &index.delta {
        write_atomic(&delta_path, d.bytes.as_slice())?;
    }
    open_cached(dir, &repo_id).ok_or_else(|| {
        Error::Io(std::io::Error::other("the index cache just written does not read back"))
            .at(Location::Path(base_path))
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let loc = || Location::Path(path.to_path_buf());
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).at(loc)?;
    // Unique per writer: several processes (or threads) may refresh the same cache at once;
    // the last rename wins and each reader validates what it maps.
    let tmp = parent.join(format!(
        ".{}.{}.{}",
        path.file_name().map_or("cache".into(), |n| n.to_string_lossy()),
        std::process::id(),
        crate::id::hex_encode(&crate::crypto::random_array::<4>()?)
    ));
    {
        let mut f = File::create(&tmp).at(loc)?;
        f.write_all(bytes).at(loc)?;
        f.sync_all().at(loc)?;
    }
    fs::rename(&tmp, path).at(loc)
}

/// Maps the base table and, when it belongs to that base, the delta; `None` when the cache is
/// missing or damaged (the caller rebuilds).
pub(crate) fn open_cached(dir: &Path, repo_id: &[u8; 16]) -> Option<Index> {
    let base = map_table(&cache_path(dir, repo_id), repo_id).ok()?;
    let delta = map_table(&delta_path(dir, repo_id), repo_id).ok().filter(|d| d.base_checksum == base.checksum);
    if let Some(d) = &delta {
        // The delta's pack list extends the base's: entries of the base resolve through it.
        if d.packs.get(..base.packs.len()) != Some(&base.packs[..]) {
            return None;
        }
    }
    Some(Index {
        repo_id: *repo_id,
        base,
        delta,
        overlay: HashMap::new(),
        overlay_packs: Vec::new(),
        overlay_covered: Vec::new(),
    })
}

#[allow(unsafe_code)]
fn map_table(path: &Path, repo_id: &[u8; 16]) -> Result<Table> {
    let f = File::open(path)?;
    if f.metadata()?.len() < CACHE_HEADER_LEN as u64 {
        return Err(Error::malformed("index cache", None, "truncated"));
    }
    // SAFETY: cache files are private to this client and only ever replaced by rename, never
    // modified or truncated in place, so the mapping stays valid and unchanged while mapped.
    // Every access through it is bounds-checked (`entry_bytes`), and its content was verified
    // against the checksum in its header by `parse`.
    let map = unsafe { memmap2::Mmap::map(&f)? };
    Table::parse(Bytes::Mapped(map), Some(repo_id), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::IndexPack;

    fn file(seed: u8, packs: u8, per_pack: u32) -> IndexFile {
        IndexFile {
            packs: (0..packs)
                .map(|p| IndexPack {
                    pack: PackId(Id::hash_of(&[seed, p])),
                    kind: BlobKind::Data,
                    pack_len: 1 << 20,
                    entries: (0..per_pack)
                        .map(|i| BlobEntry {
                            id: Id::hash_of(&[seed, p, i as u8, (i >> 8) as u8, (i >> 16) as u8]),
                            offset: i * 100,
                            sealed_len: 100,
                            raw_len: 90 + i,
                            codec: if i % 2 == 0 { Codec::Zstd } else { Codec::Raw },
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn add(index: &mut Index, id: IndexId, f: &IndexFile) {
        for p in &f.packs {
            index.add_pack(PackInfo { id: p.pack, kind: p.kind, len: p.pack_len }, &p.entries);
        }
        index.add_covered(id);
    }

    fn check_all(idx: &Index, files: &[&IndexFile]) {
        idx.verify_table().unwrap();
        for f in files {
            for p in &f.packs {
                for e in &p.entries {
                    let loc = idx.lookup(&e.id).unwrap().expect("present");
                    assert_eq!(loc.pack, p.pack);
                    assert_eq!(loc.entry(e.id), *e);
                }
            }
        }
        assert_eq!(idx.lookup(&Id([0xee; 32])).unwrap(), None);
        assert_eq!(idx.lookup(&Id([0; 32])).unwrap(), None);
        assert_eq!(idx.lookup(&Id([0xff; 32])).unwrap(), None);
    }

    #[test]
    fn base_delta_and_rebase_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let repo = [4u8; 16];
        let f1 = file(1, 3, 400);
        let f2 = file(2, 2, 300);
        let mut idx = Index::from_rows(&repo, Vec::new(), Vec::new(), Vec::new());
        add(&mut idx, IndexId(Id([1; 32])), &f1);
        let idx = persist(idx, Some(dir.path())).unwrap();
        assert!(idx.is_mapped());
        assert_eq!(idx.table_counts(), (0, 1200), "the first fold goes to the delta");
        check_all(&idx, &[&f1]);

        let mut idx = open_cached(dir.path(), &repo).unwrap();
        add(&mut idx, IndexId(Id([2; 32])), &f2);
        let idx = persist(idx, Some(dir.path())).unwrap();
        assert_eq!(idx.table_counts(), (0, 1800));
        assert_eq!(idx.covered().len(), 2);
        check_all(&idx, &[&f1, &f2]);

        // Past the threshold, the delta is merged into a new base.
        let big = file(3, 1, 70_000);
        let mut idx = open_cached(dir.path(), &repo).unwrap();
        add(&mut idx, IndexId(Id([3; 32])), &big);
        let idx = persist(idx, Some(dir.path())).unwrap();
        assert_eq!(idx.table_counts(), (71_800, 0));
        assert!(!delta_path(dir.path(), &repo).exists());
        check_all(&idx, &[&f1, &f2, &big]);

        // Then small additions go to a delta again, whose packs extend the base's.
        let f4 = file(4, 1, 10);
        let mut idx = open_cached(dir.path(), &repo).unwrap();
        add(&mut idx, IndexId(Id([4; 32])), &f4);
        let idx = persist(idx, Some(dir.path())).unwrap();
        assert_eq!(idx.table_counts(), (71_800, 10));
        check_all(&open_cached(dir.path(), &repo).unwrap(), &[&f1, &f2, &big, &f4]);
    }

    #[test]
    fn cache_file_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = [4u8; 16];
        let mut idx = Index::from_rows(&repo, Vec::new(), Vec::new(), Vec::new());
        add(&mut idx, IndexId(Id([1; 32])), &file(1, 2, 40));
        let big = file(3, 1, 70_000);
        add(&mut idx, IndexId(Id([3; 32])), &big);
        persist(idx, Some(dir.path())).unwrap();
        let path = cache_path(dir.path(), &repo);
        assert!(open_cached(dir.path(), &[5; 16]).is_none(), "another repository's cache is refused");
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(open_cached(dir.path(), &repo).is_none(), "a damaged cache is refused");
        fs::write(&path, &bytes[..n - 48]).unwrap();
        assert!(open_cached(dir.path(), &repo).is_none(), "a truncated cache is refused");
    }

    #[test]
    fn interpolation_search_agrees_with_a_scan() {
        let repo = [0u8; 16];
        let f = file(9, 4, 5000);
        let mut idx = Index::from_rows(&repo, Vec::new(), Vec::new(), Vec::new());
        add(&mut idx, IndexId(Id([9; 32])), &f);
        let idx = persist(idx, None).unwrap();
        check_all(&idx, &[&f]);
        // Ids just above and below every stored id are absent.
        for p in &f.packs {
            for e in p.entries.iter().take(500) {
                let mut near = e.id;
                near.0[31] ^= 1;
                assert!(!idx.contains(&near) || f.packs.iter().any(|q| q.entries.iter().any(|x| x.id == near)));
            }
        }
    }

    #[test]
    fn hostile_table_lookups_do_not_panic() {
        // An unsorted table with pack numbers out of range, bypassing the checksum.
        let repo = [0u8; 16];
        let rows: Vec<Row> = (0..200u8)
            .rev()
            .map(|i| Row {
                id: Id([i; 32]),
                pack: u32::from(i) * 1000,
                offset: 0,
                sealed_len: 20,
                raw_len: 1,
                codec: Codec::Raw,
            })
            .collect();
        let bytes = Table::encode(&repo, &[], &[], &rows, &[0; 32]);
        let idx = Index::from_untrusted_bytes(bytes, false).unwrap();
        assert!(idx.verify_table().is_err());
        for i in 0..=255u8 {
            let _ = idx.lookup(&Id([i; 32]));
        }
    }

    #[test]
    fn impossible_blob_lengths_in_a_cache_are_refused() {
        let repo = [0u8; 16];
        let packs = vec![PackInfo { id: PackId(Id([1; 32])), kind: BlobKind::Data, len: 1 << 20 }];
        let row = |i: u8, sealed_len: u32, raw_len: u32| Row {
            id: Id([i; 32]),
            pack: 0,
            offset: 0,
            sealed_len,
            raw_len,
            codec: Codec::Zstd,
        };
        let rows = vec![
            row(1, 100, 80),
            row(2, crate::crypto::TAG_LEN as u32, 0),
            row(3, MAX_BLOB_SEALED + 1, 10),
            row(4, 100, MAX_BLOB_RAW + 1),
        ];
        let bytes = Table::encode(&repo, &[], &packs, &rows, &[0; 32]);
        let idx = Index::from_untrusted_bytes(bytes, false).unwrap();
        let found = idx.lookup(&Id([1; 32])).unwrap().unwrap();
        assert_eq!((found.sealed_len, found.raw_len, found.codec), (100, 80, Codec::Zstd));
        for i in 2..=4u8 {
            let err = idx.lookup(&Id([i; 32])).unwrap_err();
            assert!(err.to_string().contains("impossible blob length"), "row {i}: {err}");
        }
    }
}

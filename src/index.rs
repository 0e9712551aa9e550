//! The merged index: blob id → (pack, offset, length), as one sorted fixed-width table.
//!
//! At open, every index file of the repository is merged into a table kept as a local cache
//! file (format-spec.md §5.12; the cache is local, never stored in the repository) and
//! memory-mapped, so a lookup is a binary search over the mapping, with no per-entry heap
//! objects. Blobs added since the table was built sit in a small overlay until the next
//! rebuild. The cache records which index files it covers: when new index files appear, only
//! those are read and merged in; when one disappears (prune), the table is rebuilt.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::crypto::SecretKey;
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::{BlobKind, Codec};
use crate::format::index::{self as index_format, IndexFile};
use crate::format::pack::BlobEntry;
use crate::format::{check_header, header};
use crate::id::{Id, IndexId, PackId, ID_LEN};
use crate::store::{FileKind, Store};

/// Magic of the local index cache.
pub const MAGIC_CACHE: [u8; 6] = *b"PVICAC";
/// Length of the cache header.
pub const CACHE_HEADER_LEN: usize = 96;
/// Length of a cache pack record.
pub const CACHE_PACK_LEN: usize = 40;
/// Length of a cache entry.
pub const CACHE_ENTRY_LEN: usize = 48;
const CODEC_BIT: u32 = 1 << 31;

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

/// The sorted table (heap or memory-mapped) plus the overlay of recent additions.
pub struct Index {
    bytes: Bytes,
    covered: Vec<IndexId>,
    packs: Vec<PackInfo>,
    entries_at: usize,
    count: usize,
    overlay: HashMap<Id, BlobLocation>,
    overlay_packs: Vec<PackInfo>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("entries", &self.count)
            .field("packs", &self.packs.len())
            .field("overlay", &self.overlay.len())
            .finish()
    }
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

impl Index {
    /// An empty index.
    #[must_use]
    pub fn empty() -> Index {
        Index::from_parts(&[0; 16], Vec::new(), Vec::new(), Vec::new())
    }

    /// Number of entries (table and overlay).
    #[must_use]
    pub fn len(&self) -> usize {
        self.count + self.overlay.len()
    }

    /// True when the index knows no blob.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packs the index knows, table first.
    pub fn packs(&self) -> impl Iterator<Item = &PackInfo> {
        self.packs.iter().chain(self.overlay_packs.iter())
    }

    /// The index files the table was built from.
    #[must_use]
    pub fn covered(&self) -> &[IndexId] {
        &self.covered
    }

    /// Bytes of the table (mapped or on the heap).
    #[must_use]
    pub fn table_bytes(&self) -> usize {
        self.bytes.as_slice().len()
    }

    /// True when the table is memory-mapped from a cache file.
    #[must_use]
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    fn entry_bytes(&self, i: usize) -> Option<&[u8]> {
        let start = self.entries_at.checked_add(i.checked_mul(CACHE_ENTRY_LEN)?)?;
        self.bytes.as_slice().get(start..start + CACHE_ENTRY_LEN)
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
        let pack_idx = word(32) as usize;
        let pack = self.packs.get(pack_idx).ok_or_else(|| corrupt("pack number out of range"))?;
        let sealed = word(40);
        Ok((
            Id(id),
            BlobLocation {
                pack: pack.id,
                kind: pack.kind,
                offset: word(36),
                sealed_len: sealed & !CODEC_BIT,
                raw_len: word(44),
                codec: if sealed & CODEC_BIT != 0 { Codec::Zstd } else { Codec::Raw },
            },
        ))
    }

    /// Binary search for the first table entry with `id`.
    fn search(&self, id: &Id) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry_id(mid)?.cmp(&id.0[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                _ => hi = mid,
            }
        }
        (lo < self.count && self.entry_id(lo)? == &id.0[..]).then_some(lo)
    }

    /// Where the blob `id` is stored, if the index knows it.
    ///
    /// # Errors
    /// [`Error::Malformed`] when the cache entry is damaged.
    pub fn lookup(&self, id: &Id) -> Result<Option<BlobLocation>> {
        if let Some(loc) = self.overlay.get(id) {
            return Ok(Some(*loc));
        }
        match self.search(id) {
            Some(i) => Ok(Some(self.decode_entry(i)?.1)),
            None => Ok(None),
        }
    }

    /// True when the index knows the blob.
    #[must_use]
    pub fn contains(&self, id: &Id) -> bool {
        self.overlay.contains_key(id) || self.search(id).is_some()
    }

    /// Every entry of the table and overlay, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(Id, BlobLocation)>> + '_ {
        (0..self.count).map(|i| self.decode_entry(i)).chain(self.overlay.iter().map(|(k, v)| Ok((*k, *v))))
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

    fn from_parts(repo_id: &[u8; 16], covered: Vec<IndexId>, packs: Vec<PackInfo>, rows: Vec<Row>) -> Index {
        let bytes = encode_table(repo_id, &covered, &packs, &rows);
        Index::parse(Bytes::Heap(bytes), repo_id).expect("freshly encoded table parses")
    }

    fn parse(bytes: Bytes, repo_id: &[u8; 16]) -> Result<Index> {
        Index::parse_with(bytes, Some(repo_id), true)
    }

    /// Parses a cache from untrusted bytes (fuzzing, tools): with `verify_checksum` false the
    /// table is used as is, which is only safe because every lookup is bounds-checked.
    pub(crate) fn from_untrusted_bytes(bytes: Vec<u8>, verify_checksum: bool) -> Result<Index> {
        Index::parse_with(Bytes::Heap(bytes), None, verify_checksum)
    }

    fn parse_with(bytes: Bytes, repo_id: Option<&[u8; 16]>, verify_checksum: bool) -> Result<Index> {
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
        Ok(Index {
            bytes,
            covered,
            packs,
            entries_at: at,
            count: n,
            overlay: HashMap::new(),
            overlay_packs: Vec::new(),
        })
    }

    /// Checks that table entries are sorted and name known packs (used by tests and `check`).
    ///
    /// # Errors
    /// [`Error::Malformed`] naming the first bad entry.
    pub fn verify_table(&self) -> Result<()> {
        for i in 0..self.count {
            self.decode_entry(i)?;
            if i > 0 && self.entry_id(i - 1) > self.entry_id(i) {
                return Err(Error::malformed("index cache", None, format!("entry {i} out of order")));
            }
        }
        Ok(())
    }
}

fn encode_table(repo_id: &[u8; 16], covered: &[IndexId], packs: &[PackInfo], rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        CACHE_HEADER_LEN + covered.len() * ID_LEN + packs.len() * CACHE_PACK_LEN + rows.len() * CACHE_ENTRY_LEN,
    );
    out.extend_from_slice(&header(MAGIC_CACHE));
    out.extend_from_slice(repo_id);
    for n in [covered.len(), packs.len(), rows.len()] {
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    out.resize(CACHE_HEADER_LEN, 0); // checksum (filled below) and reserved bytes
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

/// Reads, decrypts and decodes the index files `ids`, in parallel.
pub(crate) fn read_index_files(
    store: &dyn Store,
    meta_key: &SecretKey,
    ids: &[IndexId],
) -> Result<Vec<(IndexId, IndexFile)>> {
    ids.par_iter()
        .map(|id| {
            let name = id.to_hex();
            let loc = || Location::RepoFile(FileKind::Index.path(&name));
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
            Ok((*id, index_format::decode(meta_key, &bytes).at(loc)?))
        })
        .collect()
}

/// Where the cache for a repository lives under a cache folder.
#[must_use]
pub fn cache_path(cache_dir: &Path, repo_id: &[u8; 16]) -> PathBuf {
    cache_dir.join(crate::id::hex_encode(repo_id)).join("index.cache")
}

/// Loads the index for the repository: from the cache when it covers exactly the index files
/// present, merging in new ones when it covers a subset, rebuilding otherwise. With no cache
/// folder, the table is built on the heap.
pub(crate) fn load(
    store: &dyn Store,
    meta_key: &SecretKey,
    repo_id: &[u8; 16],
    cache_dir: Option<&Path>,
) -> Result<Index> {
    let present: Vec<IndexId> = crate::store::list_ids(store, FileKind::Index)?.into_iter().map(IndexId).collect();
    let cached = cache_dir.and_then(|d| open_cache(&cache_path(d, repo_id), repo_id).ok());
    if let Some(idx) = &cached {
        if idx.covered == present {
            return Ok(cached.expect("checked above"));
        }
    }
    let (base, missing): (Option<Index>, Vec<IndexId>) = match cached {
        Some(idx) if idx.covered.iter().all(|c| present.binary_search(c).is_ok()) => {
            let missing = present.iter().filter(|p| idx.covered.binary_search(p).is_err()).copied().collect();
            (Some(idx), missing)
        }
        _ => (None, present.clone()),
    };
    let files = read_index_files(store, meta_key, &missing)?;
    let index = merge(repo_id, base.as_ref(), &files, &[])?;
    persist(index, repo_id, cache_dir)
}

/// Writes the table to the cache (when there is a cache folder) and maps it back.
pub(crate) fn persist(index: Index, repo_id: &[u8; 16], cache_dir: Option<&Path>) -> Result<Index> {
    let Some(dir) = cache_dir else { return Ok(index) };
    let path = cache_path(dir, repo_id);
    let loc = || Location::Path(path.clone());
    let parent = path.parent().unwrap_or(dir);
    fs::create_dir_all(parent).at(loc)?;
    let tmp = parent.join(format!(".index.cache.{}", std::process::id()));
    {
        let mut f = File::create(&tmp).at(loc)?;
        f.write_all(index.bytes.as_slice()).at(loc)?;
        f.sync_all().at(loc)?;
    }
    fs::rename(&tmp, &path).at(loc)?;
    open_cache(&path, repo_id).at(loc)
}

#[allow(unsafe_code)]
fn open_cache(path: &Path, repo_id: &[u8; 16]) -> Result<Index> {
    let f = File::open(path)?;
    if f.metadata()?.len() < CACHE_HEADER_LEN as u64 {
        return Err(Error::malformed("index cache", None, "truncated"));
    }
    // SAFETY: the cache file is private to this client and only ever replaced by rename, never
    // modified or truncated in place, so the mapping stays valid and unchanged while mapped.
    // Every access through it is bounds-checked (`entry_bytes`), and its content was verified
    // against the checksum in its header by `parse`.
    let map = unsafe { memmap2::Mmap::map(&f)? };
    Index::parse(Bytes::Mapped(map), repo_id)
}

/// A new table: `base`'s entries (with its pack numbers kept), the entries of `files`, and
/// the overlay of `base`, sorted by id. `extra_covered` are index files whose content is
/// already in `base`'s overlay.
pub(crate) fn merge(
    repo_id: &[u8; 16],
    base: Option<&Index>,
    files: &[(IndexId, IndexFile)],
    extra_covered: &[IndexId],
) -> Result<Index> {
    let mut packs: Vec<PackInfo> = base.map(|b| b.packs.clone()).unwrap_or_default();
    let mut covered: Vec<IndexId> = base.map(|b| b.covered.clone()).unwrap_or_default();
    let mut pack_numbers: HashMap<PackId, u32> = packs.iter().enumerate().map(|(i, p)| (p.id, i as u32)).collect();
    let mut add_pack = |info: PackInfo, packs: &mut Vec<PackInfo>| -> u32 {
        *pack_numbers.entry(info.id).or_insert_with(|| {
            packs.push(info);
            (packs.len() - 1) as u32
        })
    };
    let mut new_rows = Vec::new();
    for (id, file) in files {
        covered.push(*id);
        for p in &file.packs {
            let n = add_pack(PackInfo { id: p.pack, kind: p.kind, len: p.pack_len }, &mut packs);
            new_rows.extend(p.entries.iter().map(|e| Row {
                id: e.id,
                pack: n,
                offset: e.offset,
                sealed_len: e.sealed_len,
                raw_len: e.raw_len,
                codec: e.codec,
            }));
        }
    }
    if let Some(b) = base {
        for info in &b.overlay_packs {
            add_pack(*info, &mut packs);
        }
        for (id, loc) in &b.overlay {
            let n = pack_numbers[&loc.pack];
            new_rows.push(Row {
                id: *id,
                pack: n,
                offset: loc.offset,
                sealed_len: loc.sealed_len,
                raw_len: loc.raw_len,
                codec: loc.codec,
            });
        }
    }
    covered.extend_from_slice(extra_covered);
    covered.sort_unstable();
    covered.dedup();
    new_rows.par_sort_unstable_by(|a, b| a.id.cmp(&b.id).then(a.pack.cmp(&b.pack)));
    // Merge the base table (already sorted) with the new rows.
    let mut rows = Vec::with_capacity(base.map_or(0, |b| b.count) + new_rows.len());
    let mut new_iter = new_rows.into_iter().peekable();
    if let Some(b) = base {
        for i in 0..b.count {
            let (id, loc) = b.decode_entry(i)?;
            while new_iter.peek().is_some_and(|r| r.id < id) {
                rows.push(new_iter.next().expect("peeked"));
            }
            rows.push(Row {
                id,
                pack: pack_numbers[&loc.pack],
                offset: loc.offset,
                sealed_len: loc.sealed_len,
                raw_len: loc.raw_len,
                codec: loc.codec,
            });
        }
    }
    rows.extend(new_iter);
    Ok(Index::from_parts(repo_id, covered, packs, rows))
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
                            id: Id::hash_of(&[seed, p, i as u8, (i >> 8) as u8]),
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

    #[test]
    fn merge_lookup_and_incremental_merge() {
        let repo = [3u8; 16];
        let f1 = (IndexId(Id([1; 32])), file(1, 3, 50));
        let f2 = (IndexId(Id([2; 32])), file(2, 2, 70));
        let full = merge(&repo, None, &[f1.clone(), f2.clone()], &[]).unwrap();
        let step = merge(
            &repo,
            Some(&merge(&repo, None, std::slice::from_ref(&f1), &[]).unwrap()),
            std::slice::from_ref(&f2),
            &[],
        )
        .unwrap();
        for idx in [&full, &step] {
            assert_eq!(idx.len(), 3 * 50 + 2 * 70);
            idx.verify_table().unwrap();
            for (_, f) in [&f1, &f2] {
                for p in &f.packs {
                    for e in &p.entries {
                        let loc = idx.lookup(&e.id).unwrap().expect("present");
                        assert_eq!(loc.pack, p.pack);
                        assert_eq!(loc.entry(e.id), *e);
                    }
                }
            }
            assert_eq!(idx.lookup(&Id([0xee; 32])).unwrap(), None);
            assert_eq!(idx.covered().len(), 2);
        }
    }

    #[test]
    fn cache_file_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let repo = [4u8; 16];
        let f1 = (IndexId(Id([1; 32])), file(1, 2, 40));
        let idx =
            persist(merge(&repo, None, std::slice::from_ref(&f1), &[]).unwrap(), &repo, Some(dir.path())).unwrap();
        assert!(idx.is_mapped());
        let e = &f1.1.packs[1].entries[7];
        assert_eq!(idx.lookup(&e.id).unwrap().unwrap().entry(e.id), *e);
        let path = cache_path(dir.path(), &repo);
        assert!(open_cache(&path, &[5; 16]).is_err(), "another repository's cache is refused");
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(open_cache(&path, &repo).is_err(), "a damaged cache is refused");
        fs::write(&path, &bytes[..n - 48]).unwrap();
        assert!(open_cache(&path, &repo).is_err(), "a truncated cache is refused");
    }

    #[test]
    fn hostile_table_lookups_do_not_panic() {
        // An unsorted table with a pack number out of range, bypassing the checksum.
        let repo = [0u8; 16];
        let rows: Vec<Row> = (0..20u8)
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
        let idx = Index::from_parts(&repo, Vec::new(), Vec::new(), rows);
        assert!(idx.verify_table().is_err());
        for i in 0..25u8 {
            let _ = idx.lookup(&Id([i; 32]));
        }
    }
}

//! One sorted index table: its bytes (format-spec.md §5.12), the checks that make them safe to
//! map, and lookups over them.
//!
//! A table is the layout of both index cache files (`index.cache`, the base, and
//! `index.delta`) and of an index built on the heap. Lookups never trust the bytes to be
//! sorted or in range: a table that passed its MAC is what this client wrote, but the search
//! stays bounded and bounds-checked anyway, so the unauthenticated reader (fuzzing, hazmat)
//! cannot be made to panic or loop either.

use std::collections::HashMap;

use crate::crypto::SecretKey;
use crate::error::{Error, Result};
use crate::format::blob::{BlobKind, Codec, MAX_BLOB_RAW, MAX_BLOB_SEALED};
use crate::id::{Id, IndexId, PackId, ID_LEN};

use super::cache::{cache_header, check_cache_header};
use super::{BlobLocation, PackInfo};

/// Magic of the local index cache.
pub(crate) const MAGIC_CACHE: [u8; 6] = *b"PVICAC";
/// Length of the cache header.
pub(crate) const CACHE_HEADER_LEN: usize = 128;
/// Length of a cache pack record.
pub(crate) const CACHE_PACK_LEN: usize = 40;
/// Length of a cache entry.
pub(crate) const CACHE_ENTRY_LEN: usize = 48;
/// Where the MAC sits in the header.
const MAC_AT: usize = 48;
/// The codec rides in the top two bits of the sealed length (format-spec.md §5.12), which is
/// below 2^27: bit 31 is codec 1 (zstd), bit 30 codec 2 (zstd with a dictionary).
const CODEC_BIT: u32 = 1 << 31;
const DICT_CODEC_BIT: u32 = 1 << 30;
const CODEC_BITS: u32 = CODEC_BIT | DICT_CODEC_BIT;

/// `KEYED(cache key, bytes[0..48] ‖ bytes[80..])`: every byte of the table but the MAC field.
fn table_mac(key: &SecretKey, bytes: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key.bytes());
    h.update(&bytes[..MAC_AT]);
    h.update(&bytes[MAC_AT + 32..]);
    *h.finalize().as_bytes()
}

pub(super) enum Bytes {
    Heap(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Bytes {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Heap(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}

/// One sorted table (a cache file, or built in memory).
pub(super) struct Table {
    pub(super) bytes: Bytes,
    pub(super) covered: Vec<IndexId>,
    pub(super) packs: Vec<PackInfo>,
    entries_at: usize,
    pub(super) count: usize,
    /// The table's MAC (bytes 48..80): what a delta names its base by.
    pub(super) mac: [u8; 32],
    /// A delta's base's MAC; zero in a base.
    pub(super) base_mac: [u8; 32],
}

/// One row before it is written into a table.
#[derive(Clone, Copy)]
pub(super) struct Row {
    pub(super) id: Id,
    pub(super) pack: u32,
    pub(super) offset: u32,
    pub(super) sealed_len: u32,
    pub(super) raw_len: u32,
    pub(super) codec: Codec,
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

    pub(super) fn entry_id(&self, i: usize) -> Option<&[u8]> {
        self.entry_bytes(i).map(|e| &e[..ID_LEN])
    }

    pub(super) fn decode_entry(&self, i: usize) -> Result<(Id, BlobLocation)> {
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
        let (sealed_len, raw_len) = (sealed & !CODEC_BITS, word(44));
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
                codec: match sealed & CODEC_BITS {
                    0 => Codec::Raw,
                    CODEC_BIT => Codec::Zstd,
                    DICT_CODEC_BIT => Codec::ZstdDict,
                    _ => return Err(corrupt("unknown codec")),
                },
            },
        ))
    }

    /// Interpolation search for the first entry with `id`: a few probes guided by the id's
    /// value narrow the range, then a binary search finishes. Every probe is bounds-checked
    /// and the number of interpolation steps is capped, so an unsorted (damaged) table gives
    /// a wrong answer at worst, never a panic or a long loop.
    pub(super) fn search(&self, id: &Id) -> Option<usize> {
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

    pub(super) fn rows(&self) -> Result<Vec<Row>> {
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

    /// The bytes of a table (format-spec.md §5.12), MAC included.
    pub(super) fn encode(
        repo_id: &[u8; 16],
        key: &SecretKey,
        covered: &[IndexId],
        packs: &[PackInfo],
        rows: &[Row],
        base_mac: &[u8; 32],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            CACHE_HEADER_LEN + covered.len() * ID_LEN + packs.len() * CACHE_PACK_LEN + rows.len() * CACHE_ENTRY_LEN,
        );
        out.extend_from_slice(&cache_header(MAGIC_CACHE));
        out.extend_from_slice(repo_id);
        for n in [covered.len(), packs.len(), rows.len()] {
            out.extend_from_slice(&(n as u64).to_le_bytes());
        }
        out.resize(MAC_AT + 32, 0); // the MAC, filled below
        out.extend_from_slice(base_mac);
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
            let codec = match r.codec {
                Codec::Raw => 0,
                Codec::Zstd => CODEC_BIT,
                Codec::ZstdDict => DICT_CODEC_BIT,
            };
            out.extend_from_slice(&(r.sealed_len | codec).to_le_bytes());
            out.extend_from_slice(&r.raw_len.to_le_bytes());
        }
        let mac = table_mac(key, &out);
        out[MAC_AT..MAC_AT + 32].copy_from_slice(&mac);
        out
    }

    /// Parses a table; with `key`, its MAC must verify before anything else is read from it
    /// (without, the caller accepts unauthenticated bytes: fuzzing and the hazmat reader).
    pub(super) fn parse(bytes: Bytes, repo_id: Option<&[u8; 16]>, key: Option<&SecretKey>) -> Result<Table> {
        let b = bytes.as_slice();
        check_cache_header(b, MAGIC_CACHE, "index cache")?;
        if b.len() < CACHE_HEADER_LEN {
            return Err(Error::malformed("index cache", None, "truncated header"));
        }
        let mac: [u8; 32] = b[MAC_AT..MAC_AT + 32].try_into().expect("32 bytes");
        if key.is_some_and(|k| !crate::crypto::ct_eq(&table_mac(k, b), &mac)) {
            return Err(Error::Integrity(
                "index cache: MAC mismatch (written without this repository's key, or damaged)".into(),
            ));
        }
        if repo_id.is_some_and(|r| &b[8..24] != r) {
            return Err(Error::malformed("index cache", Some(8), "belongs to another repository"));
        }
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let (c, p, n) = (word(24), word(32), word(40));
        let base_mac: [u8; 32] = b[80..112].try_into().expect("32 bytes");
        let body_len = c
            .checked_mul(ID_LEN as u64)
            .and_then(|x| x.checked_add(p.checked_mul(CACHE_PACK_LEN as u64)?))
            .and_then(|x| x.checked_add(n.checked_mul(CACHE_ENTRY_LEN as u64)?))
            .ok_or_else(|| Error::malformed("index cache", Some(24), "counts overflow"))?;
        if body_len != (b.len() - CACHE_HEADER_LEN) as u64 {
            return Err(Error::malformed("index cache", Some(24), "counts do not match the file length"));
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
        Ok(Table { bytes, covered, packs, entries_at: at, count: n, mac, base_mac })
    }

    /// A table built in memory (its bytes are those a cache file gets).
    pub(super) fn built(
        repo_id: &[u8; 16],
        key: &SecretKey,
        covered: Vec<IndexId>,
        packs: Vec<PackInfo>,
        rows: &[Row],
        base_mac: &[u8; 32],
    ) -> Table {
        let bytes = Table::encode(repo_id, key, &covered, &packs, rows, base_mac);
        Table::parse(Bytes::Heap(bytes), Some(repo_id), None).expect("a freshly encoded table parses")
    }
}

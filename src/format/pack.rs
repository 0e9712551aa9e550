//! Pack files (format-spec.md §5.5).
//!
//! ```text
//! pack      = blob_0 ‖ … ‖ blob_{n-1} ‖ filler ‖ directory ‖ trailer
//! filler    = DERIVE_XOF(PACK_FILLER, meta_key ‖ nonce, G)      G: up to the Padmé length
//! directory = AES-256-GCM-SIV(meta_key, nonce, dir AD, dir_plain)       (D = 24 + 48·N bytes)
//! dir AD    = "PVPACK" ‖ u16 version ‖ u64 pack_len ‖ u64 blobs_len
//! trailer   = nonce (12) ‖ AES-256-GCM-SIV(trailer_key, nonce, "PVPACK" ‖ u16 v ‖ u64 pack_len,
//!                                          u32 blobs_len ‖ u32 D) (24) ‖ "PVPACK" ‖ u16 v   (44)
//! ```
//! Nothing in a pack's plaintext says more than its (Padmé) length: the blob area's length
//! and the directory's are sealed in the trailer, and the filler that pads the pack to its
//! Padmé length is a keyed pseudo-random stream, so the provider cannot see where the blobs
//! end either. Version 1 kept `D` in the clear, which gave the exact total of sealed blob
//! bytes of every pack (of a pack holding one tree, that tree's sealed length).
//!
//! A reader finds the directory from the last [`TRAILER_LEN`] bytes alone, and with the
//! directory and the trailer at the very end, one read of a pack's last 64 KiB gets both for
//! every pack of up to 1 363 blobs (`pack::reader`).

use crate::crypto::{self, contexts, SecretKey, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::format::blob::{BlobKind, Codec, SealedBlob, MAX_BLOB_RAW, MAX_BLOB_SEALED};
use crate::format::padding::padme;
use crate::format::{check_header, header, ByteReader, HEADER_LEN, MAGIC_PACK};
use crate::id::Id;

/// Length of one directory (and index) entry.
pub const ENTRY_LEN: usize = 48;
/// Length of the trailer: nonce, sealed lengths (8 bytes and a 16-byte tag), header.
pub const TRAILER_LEN: usize = NONCE_LEN + SEALED_LENGTHS_LEN + HEADER_LEN;
/// Length of the trailer's sealed part: `u32 blobs_len ‖ u32 D` and the tag.
const SEALED_LENGTHS_LEN: usize = 8 + TAG_LEN;
/// Length of the directory plaintext header.
pub const DIR_HEADER_LEN: usize = 8;
/// Largest pack a reader accepts (offsets are `u32`).
pub const MAX_PACK_LEN: u64 = 1 << 30;
/// Length of a directory without entries (its header and tag).
pub const MIN_DIR_LEN: usize = DIR_HEADER_LEN + TAG_LEN;
/// Smallest possible pack: an empty directory and the trailer.
pub const MIN_PACK_LEN: u64 = (MIN_DIR_LEN + TRAILER_LEN) as u64;

/// Where one blob sits in a pack, and how to open it (48 bytes on disk, format-spec.md §5.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobEntry {
    /// Blob id.
    pub id: Id,
    /// Offset of the sealed blob from the start of the pack.
    pub offset: u32,
    /// Length of the sealed blob (ciphertext and tag).
    pub sealed_len: u32,
    /// Length of the plaintext.
    pub raw_len: u32,
    /// Codec of the plaintext.
    pub codec: Codec,
}

impl BlobEntry {
    /// Appends the 48-byte encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.sealed_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.push(self.codec as u8);
        out.extend_from_slice(&[0; 3]);
    }

    pub(crate) fn decode(r: &mut ByteReader<'_>) -> Result<BlobEntry> {
        let id = Id(r.array()?);
        let offset = r.u32()?;
        let sealed_len = r.u32()?;
        let raw_len = r.u32()?;
        let codec_byte = r.u8()?;
        let codec = Codec::from_u8(codec_byte).ok_or_else(|| r.err(format!("unknown codec {codec_byte}")))?;
        r.zeros(3, "entry reserved bytes")?;
        if sealed_len as usize <= TAG_LEN || sealed_len > MAX_BLOB_SEALED {
            return Err(r.err(format!("blob {} has impossible sealed length {sealed_len}", id.short())));
        }
        if raw_len > MAX_BLOB_RAW {
            return Err(r.err(format!("blob {} declares {raw_len} bytes, limit {MAX_BLOB_RAW}", id.short())));
        }
        Ok(BlobEntry { id, offset, sealed_len, raw_len, codec })
    }

    /// End offset of the blob.
    #[must_use]
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.sealed_len)
    }
}

/// The decrypted directory of a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackDirectory {
    /// Kind of every blob in the pack.
    pub kind: BlobKind,
    /// The blobs, in pack order.
    pub entries: Vec<BlobEntry>,
}

/// `"PVPACK" ‖ u16 version ‖ u64 pack_len ‖ u64 blobs_len`: the directory's associated data.
fn directory_ad(pack_len: u64, blobs_len: u64) -> [u8; 24] {
    let mut ad = [0u8; 24];
    ad[..8].copy_from_slice(&header(MAGIC_PACK));
    ad[8..16].copy_from_slice(&pack_len.to_le_bytes());
    ad[16..].copy_from_slice(&blobs_len.to_le_bytes());
    ad
}

/// `"PVPACK" ‖ u16 version ‖ u64 pack_len`: the trailer's associated data.
fn trailer_ad(pack_len: u64) -> [u8; 16] {
    let mut ad = [0u8; 16];
    ad[..8].copy_from_slice(&header(MAGIC_PACK));
    ad[8..].copy_from_slice(&pack_len.to_le_bytes());
    ad
}

fn trailer_key(meta_key: &SecretKey) -> SecretKey {
    SecretKey::derive(contexts::PACK_TRAILER, meta_key.bytes())
}

/// The filler of a pack whose trailer nonce is `nonce`: `len` bytes of
/// `DERIVE_XOF("packvault 2026-12-01 v2 pack filler", meta_key ‖ nonce)`. Without the key it
/// cannot be told from the sealed blobs before it.
fn filler(meta_key: &SecretKey, nonce: &[u8; NONCE_LEN], len: usize) -> Vec<u8> {
    let mut h = blake3::Hasher::new_derive_key(contexts::PACK_FILLER);
    h.update(meta_key.bytes());
    h.update(nonce);
    let mut out = vec![0u8; len];
    h.finalize_xof().fill(&mut out);
    out
}

/// The sealed length of a directory of `count` entries.
#[must_use]
pub fn directory_len(count: usize) -> usize {
    MIN_DIR_LEN + count * ENTRY_LEN
}

/// The length of a pack whose blobs take `blobs_len` bytes and whose directory `dir_len`:
/// PADME of the unpadded length (format-spec.md §5.5).
#[must_use]
pub fn pack_len_for(blobs_len: u64, dir_len: u64) -> u64 {
    padme(blobs_len + dir_len + TRAILER_LEN as u64)
}

/// Assembles a pack from sealed blobs, in the order given. Returns the pack bytes and the
/// directory entries.
#[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat`
pub(crate) fn encode(
    meta_key: &SecretKey,
    kind: BlobKind,
    blobs: &[SealedBlob],
    nonce: &[u8; NONCE_LEN],
) -> (Vec<u8>, Vec<BlobEntry>) {
    let (tail, entries) = encode_tail(meta_key, kind, blobs, nonce);
    let mut pack = Vec::with_capacity(blobs.iter().map(|b| b.bytes.len()).sum::<usize>() + tail.len());
    for b in blobs {
        pack.extend_from_slice(&b.bytes);
    }
    pack.extend_from_slice(&tail);
    (pack, entries)
}

/// The part of a pack after its blobs (filler, directory and trailer), for writers that write
/// the blobs from where they already are instead of copying them into one buffer.
#[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat`
pub(crate) fn encode_tail(
    meta_key: &SecretKey,
    kind: BlobKind,
    blobs: &[SealedBlob],
    nonce: &[u8; NONCE_LEN],
) -> (Vec<u8>, Vec<BlobEntry>) {
    let mut entries = Vec::with_capacity(blobs.len());
    let mut offset = 0u32;
    for b in blobs {
        debug_assert_eq!(b.kind, kind);
        let sealed_len = u32::try_from(b.bytes.len()).expect("blob below MAX_BLOB_SEALED");
        entries.push(BlobEntry { id: b.id, offset, sealed_len, raw_len: b.raw_len, codec: b.codec });
        offset += sealed_len;
    }
    (encode_tail_for(meta_key, kind, &entries, nonce), entries)
}

/// The filler, directory and trailer for blobs already written, described by `entries`
/// (which must tile the blob area from offset 0). `nonce` is fresh and random.
pub(crate) fn encode_tail_for(
    meta_key: &SecretKey,
    kind: BlobKind,
    entries: &[BlobEntry],
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    let blobs_len = entries.last().map_or(0, BlobEntry::end);
    let mut dir = encode_directory_plaintext(kind, entries);
    let dir_len = (dir.len() + TAG_LEN) as u64;
    let pack_len = pack_len_for(blobs_len, dir_len);
    let filler_len = pack_len - blobs_len - dir_len - TRAILER_LEN as u64;
    crypto::aead_seal(meta_key, nonce, &directory_ad(pack_len, blobs_len), &mut dir);
    let mut tail = filler(meta_key, nonce, usize::try_from(filler_len).expect("filler below MAX_PACK_LEN"));
    tail.reserve(dir.len() + TRAILER_LEN);
    tail.extend_from_slice(&dir);
    let trailer = Trailer {
        blobs_len: u32::try_from(blobs_len).expect("blobs below MAX_PACK_LEN"),
        dir_len: u32::try_from(dir_len).expect("directory below MAX_PACK_LEN"),
        nonce: *nonce,
    };
    tail.extend_from_slice(&trailer.encode(meta_key, pack_len));
    debug_assert_eq!(blobs_len + tail.len() as u64, pack_len);
    tail
}

/// Encodes a directory plaintext (format-spec.md §5.5.2).
#[must_use]
pub fn encode_directory_plaintext(kind: BlobKind, entries: &[BlobEntry]) -> Vec<u8> {
    let mut dir = Vec::with_capacity(DIR_HEADER_LEN + entries.len() * ENTRY_LEN);
    dir.push(kind as u8);
    dir.extend_from_slice(&[0; 3]);
    dir.extend_from_slice(&u32::try_from(entries.len()).expect("count below MAX_PACK_LEN").to_le_bytes());
    for e in entries {
        e.encode(&mut dir);
    }
    dir
}

/// The last [`TRAILER_LEN`] bytes of a pack (format-spec.md §5.5.1), decoded: where the blobs
/// end and how long the directory is, both sealed under a key derived from the metadata key,
/// and the nonce of the pack (trailer, directory and filler).
///
/// ```text
/// offset 0  12 bytes nonce
/// offset 12 24 bytes AES-256-GCM-SIV(trailer_key, nonce, "PVPACK" ‖ u16 v ‖ u64 pack_len,
///                                    u32 blobs_len ‖ u32 D)
/// offset 36 6 bytes "PVPACK"
/// offset 42 u16 LE  version
/// ```
/// [`Trailer::decode`] applies every check a reader must make; [`TrailerFields`] shows the
/// plaintext fields (magic and version), unchecked, for inspection tools without a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Length of the blob area: the blobs tile `0..blobs_len`.
    pub blobs_len: u32,
    /// Length of the sealed directory (ciphertext and tag), the bytes just before the trailer.
    pub dir_len: u32,
    /// The pack's nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl Trailer {
    /// Decodes and checks the trailer of a pack of `pack_len` bytes, given its last
    /// [`TRAILER_LEN`] bytes: the length range, then the magic and version (before anything
    /// the version governs), then the sealed lengths, which must describe exactly a pack of
    /// `pack_len` bytes (PADME of blobs, directory and trailer; a directory of whole entries).
    ///
    /// # Errors
    /// [`Error::Malformed`] for a pack length out of range, a bad magic or lengths that do not
    /// give this pack's length; [`Error::UnsupportedVersion`] for another version;
    /// [`Error::Integrity`] when the sealed lengths do not authenticate.
    pub fn decode(meta_key: &SecretKey, pack_len: u64, trailer: &[u8]) -> Result<Trailer> {
        const WHAT: &str = "pack trailer";
        if !(MIN_PACK_LEN..=MAX_PACK_LEN).contains(&pack_len) {
            return Err(Error::malformed(
                WHAT,
                None,
                format!("pack length {pack_len} out of range {MIN_PACK_LEN}..={MAX_PACK_LEN}"),
            ));
        }
        if trailer.len() != TRAILER_LEN {
            return Err(Error::malformed(WHAT, None, format!("trailer is {} bytes, not {TRAILER_LEN}", trailer.len())));
        }
        let at = pack_len - TRAILER_LEN as u64;
        check_header(&trailer[TRAILER_LEN - HEADER_LEN..], MAGIC_PACK, WHAT)?;
        let nonce: [u8; NONCE_LEN] = trailer[..NONCE_LEN].try_into().expect("length checked");
        let mut lengths = trailer[NONCE_LEN..NONCE_LEN + SEALED_LENGTHS_LEN].to_vec();
        crypto::aead_open(&trailer_key(meta_key), &nonce, &trailer_ad(pack_len), &mut lengths)
            .map_err(|_| Error::Integrity("pack trailer: authentication failed".into()))?;
        let blobs_len = u32::from_le_bytes(lengths[..4].try_into().expect("8 bytes"));
        let dir_len = u32::from_le_bytes(lengths[4..8].try_into().expect("8 bytes"));
        let entries_len = (dir_len as usize).checked_sub(MIN_DIR_LEN);
        if entries_len.is_none_or(|n| n % ENTRY_LEN != 0) {
            return Err(Error::malformed(
                WHAT,
                Some(at),
                format!("directory length {dir_len} is not a whole directory"),
            ));
        }
        let canonical = pack_len_for(u64::from(blobs_len), u64::from(dir_len));
        if canonical != pack_len {
            return Err(Error::malformed(
                WHAT,
                Some(at),
                format!(
                    "blobs of {blobs_len} bytes and a directory of {dir_len} make a pack of {canonical} bytes, not {pack_len}"
                ),
            ));
        }
        Ok(Trailer { blobs_len, dir_len, nonce })
    }

    /// The [`TRAILER_LEN`]-byte encoding for a pack of `pack_len` bytes (current magic and
    /// version).
    #[must_use]
    pub fn encode(&self, meta_key: &SecretKey, pack_len: u64) -> [u8; TRAILER_LEN] {
        let mut lengths = Vec::with_capacity(SEALED_LENGTHS_LEN);
        lengths.extend_from_slice(&self.blobs_len.to_le_bytes());
        lengths.extend_from_slice(&self.dir_len.to_le_bytes());
        crypto::aead_seal(&trailer_key(meta_key), &self.nonce, &trailer_ad(pack_len), &mut lengths);
        let mut out = [0u8; TRAILER_LEN];
        out[..NONCE_LEN].copy_from_slice(&self.nonce);
        out[NONCE_LEN..NONCE_LEN + SEALED_LENGTHS_LEN].copy_from_slice(&lengths);
        out[TRAILER_LEN - HEADER_LEN..].copy_from_slice(&header(MAGIC_PACK));
        out
    }

    /// Where the directory starts in a pack of `pack_len` bytes (for a trailer decoded against
    /// that length, which guarantees it fits).
    #[must_use]
    pub fn directory_start(&self, pack_len: u64) -> u64 {
        pack_len.saturating_sub(TRAILER_LEN as u64 + u64::from(self.dir_len))
    }

    /// Length of the filler between the blobs and the directory.
    #[must_use]
    pub fn filler_len(&self, pack_len: u64) -> u64 {
        self.directory_start(pack_len).saturating_sub(u64::from(self.blobs_len))
    }
}

/// A trailer's plaintext fields as written, without any check: what an inspection tool without
/// the key shows (everything else in a pack is ciphertext or indistinguishable from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailerFields {
    /// The magic field (`"PVPACK"` in a sound pack).
    pub magic: [u8; 6],
    /// The version field.
    pub version: u16,
}

impl TrailerFields {
    /// Reads the fields from exactly [`TRAILER_LEN`] bytes; `None` for any other length.
    #[must_use]
    pub fn parse(trailer: &[u8]) -> Option<TrailerFields> {
        let t: &[u8; TRAILER_LEN] = trailer.try_into().ok()?;
        let h = &t[TRAILER_LEN - HEADER_LEN..];
        Some(TrailerFields { magic: [h[0], h[1], h[2], h[3], h[4], h[5]], version: u16::from_le_bytes([h[6], h[7]]) })
    }
}

/// Decrypts and checks the directory of a pack of `pack_len` bytes whose trailer is
/// `trailer`. `dir` is the sealed directory, the `trailer.dir_len` bytes before the trailer.
///
/// # Errors
/// [`Error::Integrity`] when authentication fails, [`Error::Malformed`] when the plaintext is
/// not a valid directory: unknown kind, non-zero reserved bytes, an entry count other than
/// the directory's length gives, blobs that do not tile `0..blobs_len`.
pub fn decode_directory(meta_key: &SecretKey, pack_len: u64, trailer: &Trailer, dir: &[u8]) -> Result<PackDirectory> {
    const WHAT: &str = "pack directory";
    if dir.len() != trailer.dir_len as usize {
        return Err(Error::malformed(WHAT, None, format!("{} bytes, the trailer says {}", dir.len(), trailer.dir_len)));
    }
    let blobs_len = u64::from(trailer.blobs_len);
    let mut plain = dir.to_vec();
    crypto::aead_open(meta_key, &trailer.nonce, &directory_ad(pack_len, blobs_len), &mut plain)
        .map_err(|_| Error::Integrity("pack directory: authentication failed".into()))?;
    decode_directory_plaintext(&plain, blobs_len)
}

/// Decodes a decrypted directory for a pack whose blobs take `blobs_len` bytes. The plaintext
/// holds exactly the header and the entries: no padding (the filler pads the pack).
///
/// # Errors
/// [`Error::Malformed`] as for [`decode_directory`].
pub fn decode_directory_plaintext(plain: &[u8], blobs_len: u64) -> Result<PackDirectory> {
    let mut r = ByteReader::new(plain, "pack directory");
    let kind_byte = r.u8()?;
    let kind = BlobKind::from_u8(kind_byte).ok_or_else(|| r.err(format!("unknown blob kind {kind_byte}")))?;
    r.zeros(3, "reserved bytes")?;
    let count = r.u32()? as usize;
    if r.remaining() % ENTRY_LEN != 0 || count != r.remaining() / ENTRY_LEN {
        return Err(r.err(format!("{count} entries do not fill {} bytes exactly", r.remaining())));
    }
    let entries = decode_entries(&mut r, count)?;
    let end = entries.last().map_or(0, BlobEntry::end);
    if end != blobs_len {
        return Err(r.err(format!("blobs cover {end} bytes but the pack holds {blobs_len}")));
    }
    Ok(PackDirectory { kind, entries })
}

/// Decodes `count` entries that must follow each other without gaps from offset 0.
pub(crate) fn decode_entries(r: &mut ByteReader<'_>, count: usize) -> Result<Vec<BlobEntry>> {
    let mut entries = Vec::with_capacity(count);
    let mut expected = 0u64;
    for _ in 0..count {
        let at = r.pos();
        let e = BlobEntry::decode(r)?;
        if u64::from(e.offset) != expected {
            return Err(Error::malformed(
                "pack directory",
                Some(at as u64),
                format!("blob {} at offset {} but the previous blob ends at {expected}", e.id.short(), e.offset),
            ));
        }
        expected = e.end();
        entries.push(e);
    }
    Ok(entries)
}

/// Reads and checks a whole pack in memory: trailer, directory, and the filler (which must be
/// exactly the pack's keyed stream: a canonical pack has one form).
///
/// # Errors
/// As [`Trailer::decode`] and [`decode_directory`]; [`Error::Malformed`] for a filler that is
/// not the pack's.
pub fn decode_pack(meta_key: &SecretKey, pack: &[u8]) -> Result<PackDirectory> {
    let len = pack.len() as u64;
    if len < MIN_PACK_LEN {
        return Err(Error::malformed("pack", None, format!("{len} bytes is shorter than the smallest pack")));
    }
    let trailer_at = pack.len() - TRAILER_LEN;
    let trailer = Trailer::decode(meta_key, len, &pack[trailer_at..])?;
    let dir_start = trailer_at - trailer.dir_len as usize;
    let dir = decode_directory(meta_key, len, &trailer, &pack[dir_start..trailer_at])?;
    let fill = &pack[trailer.blobs_len as usize..dir_start];
    // The filler is public (it lies in the pack): a plain comparison leaks nothing.
    if fill != filler(meta_key, &trailer.nonce, fill.len()) {
        return Err(Error::malformed("pack", Some(u64::from(trailer.blobs_len)), "the filler is not the pack's"));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests;

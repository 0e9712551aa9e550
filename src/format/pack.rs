//! Pack files (format-spec.md §5.5).
//!
//! ```text
//! pack      = blob_0 ‖ … ‖ blob_{n-1} ‖ directory ‖ trailer
//! directory = nonce (12) ‖ AES-256-GCM-SIV(meta_key, nonce, AD, dir_plain) (incl. 16-byte tag)
//! AD        = "PVPACK" ‖ u16 version ‖ u64 blobs_len
//! trailer   = u32 directory length ‖ "PVPACK" ‖ u16 version        (12 bytes)
//! ```
//! The directory plaintext is zero-padded so that the whole pack's length is a Padmé length:
//! the provider sees neither blob boundaries nor the exact amount of data.

use crate::crypto::{self, SecretKey, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::format::blob::{BlobKind, Codec, SealedBlob, MAX_BLOB_RAW, MAX_BLOB_SEALED};
use crate::format::padding::padme;
use crate::format::{check_header, header, ByteReader, MAGIC_PACK};
use crate::id::Id;

/// Length of one directory (and index) entry.
pub const ENTRY_LEN: usize = 48;
/// Length of the trailer.
pub const TRAILER_LEN: usize = 12;
/// Length of the directory plaintext header.
pub const DIR_HEADER_LEN: usize = 8;
/// Largest pack a reader accepts (offsets are `u32`).
pub const MAX_PACK_LEN: u64 = 1 << 30;
/// Smallest possible pack: an empty directory and the trailer.
pub const MIN_PACK_LEN: u64 = (NONCE_LEN + DIR_HEADER_LEN + TAG_LEN + TRAILER_LEN) as u64;

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

fn directory_ad(blobs_len: u64) -> [u8; 16] {
    let mut ad = [0u8; 16];
    ad[..8].copy_from_slice(&header(MAGIC_PACK));
    ad[8..].copy_from_slice(&blobs_len.to_le_bytes());
    ad
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

/// The part of a pack after its blobs (directory and trailer), for writers that write the
/// blobs from where they already are instead of copying them into one buffer.
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

/// The directory and trailer for blobs already written, described by `entries` (which must
/// tile the blob area from offset 0).
pub(crate) fn encode_tail_for(
    meta_key: &SecretKey,
    kind: BlobKind,
    entries: &[BlobEntry],
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    let blobs_len = entries.last().map_or(0, |e| e.end() as usize);
    let mut dir = encode_directory_plaintext(kind, entries);
    let unpadded = (blobs_len + NONCE_LEN + dir.len() + TAG_LEN + TRAILER_LEN) as u64;
    dir.resize(dir.len() + (padme(unpadded) - unpadded) as usize, 0);
    crypto::aead_seal(meta_key, nonce, &directory_ad(blobs_len as u64), &mut dir);
    let mut tail = Vec::with_capacity(NONCE_LEN + dir.len() + TRAILER_LEN);
    tail.extend_from_slice(nonce);
    tail.extend_from_slice(&dir);
    let dir_len = u32::try_from(NONCE_LEN + dir.len()).expect("directory below MAX_PACK_LEN");
    tail.extend_from_slice(&Trailer { dir_len }.encode());
    debug_assert_eq!((blobs_len + tail.len()) as u64, padme(unpadded));
    tail
}

/// Encodes a directory plaintext without its padding (format-spec.md §5.5.2).
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

/// The last [`TRAILER_LEN`] bytes of a pack (format-spec.md §5.5.1): the directory's length,
/// then the pack magic and the format version.
///
/// ```text
/// offset 0  u32 LE  directory length D
/// offset 4  6 bytes "PVPACK"
/// offset 10 u16 LE  version (1)
/// ```
/// [`Trailer::decode`] applies every check a reader must make; [`TrailerFields`] shows the
/// fields as written, unchecked, for inspection tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Length of the directory (nonce, ciphertext and tag), the bytes just before the trailer.
    pub dir_len: u32,
}

impl Trailer {
    /// Decodes and checks the trailer of a pack of `pack_len` bytes, given its last
    /// [`TRAILER_LEN`] bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a pack length out of range, a bad magic or a directory length
    /// that does not fit the pack; [`Error::UnsupportedVersion`] for another version.
    pub fn decode(pack_len: u64, trailer: &[u8]) -> Result<Trailer> {
        const WHAT: &str = "pack trailer";
        if !(MIN_PACK_LEN..=MAX_PACK_LEN).contains(&pack_len) {
            return Err(Error::malformed(
                WHAT,
                None,
                format!("pack length {pack_len} out of range {MIN_PACK_LEN}..={MAX_PACK_LEN}"),
            ));
        }
        let fields = TrailerFields::parse(trailer).ok_or_else(|| {
            Error::malformed(WHAT, None, format!("trailer is {} bytes, not {TRAILER_LEN}", trailer.len()))
        })?;
        check_header(&trailer[4..], MAGIC_PACK, WHAT)?;
        let dir_len = fields.dir_len;
        let min = (NONCE_LEN + DIR_HEADER_LEN + TAG_LEN) as u64;
        if u64::from(dir_len) < min || u64::from(dir_len) > pack_len - TRAILER_LEN as u64 {
            return Err(Error::malformed(
                WHAT,
                Some(pack_len - TRAILER_LEN as u64),
                format!("directory length {dir_len} does not fit a pack of {pack_len} bytes"),
            ));
        }
        Ok(Trailer { dir_len })
    }

    /// The 12-byte encoding (current magic and version).
    #[must_use]
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..4].copy_from_slice(&self.dir_len.to_le_bytes());
        out[4..].copy_from_slice(&header(MAGIC_PACK));
        out
    }

    /// Where the directory starts in a pack of `pack_len` bytes (for a trailer decoded against
    /// that length, which guarantees it fits).
    #[must_use]
    pub fn directory_start(&self, pack_len: u64) -> u64 {
        pack_len.saturating_sub(TRAILER_LEN as u64 + u64::from(self.dir_len))
    }
}

/// A trailer's fields as written, without any check: what an inspection tool shows of a
/// trailer that [`Trailer::decode`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailerFields {
    /// The directory length field.
    pub dir_len: u32,
    /// The magic field (`"PVPACK"` in a sound pack).
    pub magic: [u8; 6],
    /// The version field.
    pub version: u16,
}

impl TrailerFields {
    /// Splits exactly [`TRAILER_LEN`] bytes into their fields; `None` for any other length.
    #[must_use]
    pub fn parse(trailer: &[u8]) -> Option<TrailerFields> {
        let t: &[u8; TRAILER_LEN] = trailer.try_into().ok()?;
        Some(TrailerFields {
            dir_len: u32::from_le_bytes([t[0], t[1], t[2], t[3]]),
            magic: [t[4], t[5], t[6], t[7], t[8], t[9]],
            version: u16::from_le_bytes([t[10], t[11]]),
        })
    }
}

/// Reads the trailer of a pack of `pack_len` bytes, given its last [`TRAILER_LEN`] bytes.
/// Returns the directory's length. Same as [`Trailer::decode`].
///
/// # Errors
/// As [`Trailer::decode`].
pub fn decode_trailer(pack_len: u64, trailer: &[u8]) -> Result<u32> {
    Trailer::decode(pack_len, trailer).map(|t| t.dir_len)
}

/// Decrypts and checks the directory of a pack of `pack_len` bytes. `dir` is the directory
/// (nonce ‖ ciphertext ‖ tag), the `dir_len` bytes before the trailer.
///
/// # Errors
/// [`Error::Integrity`] when authentication fails, [`Error::Malformed`] when the plaintext is
/// not a valid directory: unknown kind, non-zero reserved bytes or padding, blobs that do not
/// tile the pack from offset 0 to the directory.
pub fn decode_directory(meta_key: &SecretKey, pack_len: u64, dir: &[u8]) -> Result<PackDirectory> {
    const WHAT: &str = "pack directory";
    let blobs_len = pack_len
        .checked_sub(dir.len() as u64 + TRAILER_LEN as u64)
        .ok_or_else(|| Error::malformed(WHAT, None, "directory longer than the pack"))?;
    if dir.len() < NONCE_LEN + DIR_HEADER_LEN + TAG_LEN {
        return Err(Error::malformed(WHAT, None, format!("{} bytes is too short", dir.len())));
    }
    let (nonce, body) = dir.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Error::malformed(WHAT, None, "nonce"))?;
    let mut plain = body.to_vec();
    crypto::aead_open(meta_key, &nonce, &directory_ad(blobs_len), &mut plain)
        .map_err(|_| Error::Integrity("pack directory: authentication failed".into()))?;
    decode_directory_plaintext(&plain, blobs_len)
}

/// Decodes a decrypted directory for a pack whose blobs take `blobs_len` bytes.
///
/// # Errors
/// [`Error::Malformed`] as for [`decode_directory`].
pub fn decode_directory_plaintext(plain: &[u8], blobs_len: u64) -> Result<PackDirectory> {
    let mut r = ByteReader::new(plain, "pack directory");
    let kind_byte = r.u8()?;
    let kind = BlobKind::from_u8(kind_byte).ok_or_else(|| r.err(format!("unknown blob kind {kind_byte}")))?;
    r.zeros(3, "reserved bytes")?;
    let count = r.u32()? as usize;
    if count > r.remaining() / ENTRY_LEN {
        return Err(r.err(format!("{count} entries do not fit in {} bytes", r.remaining())));
    }
    let entries = decode_entries(&mut r, count)?;
    let end = entries.last().map_or(0, BlobEntry::end);
    if end != blobs_len {
        return Err(r.err(format!("blobs cover {end} bytes but the pack holds {blobs_len}")));
    }
    let rest = r.remaining();
    r.zeros(rest, "directory padding")?;
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

/// Reads and checks the header fields of a whole pack in memory: trailer, then directory.
///
/// # Errors
/// As [`decode_trailer`] and [`decode_directory`].
pub fn decode_pack(meta_key: &SecretKey, pack: &[u8]) -> Result<PackDirectory> {
    let len = pack.len() as u64;
    if len < MIN_PACK_LEN {
        return Err(Error::malformed("pack", None, format!("{len} bytes is shorter than the smallest pack")));
    }
    let dir_len = Trailer::decode(len, &pack[pack.len() - TRAILER_LEN..])?.dir_len as usize;
    let dir_start = pack.len() - TRAILER_LEN - dir_len;
    decode_directory(meta_key, len, &pack[dir_start..pack.len() - TRAILER_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeySet, MasterKey};
    use crate::format::blob;

    fn sample() -> (KeySet, Vec<u8>, Vec<BlobEntry>) {
        let ks = KeySet::derive(&MasterKey::from_bytes([5; 32]));
        let blobs: Vec<SealedBlob> = (0..5u8)
            .map(|i| {
                let data = vec![i; 1000 + usize::from(i) * 37];
                blob::seal(&ks, BlobKind::Data, ks.chunk_id(&data).0, &data, Some(3))
            })
            .collect();
        let (pack, entries) = encode(ks.meta_key(), BlobKind::Data, &blobs, &[1; 12]);
        (ks, pack, entries)
    }

    #[test]
    fn round_trip_and_padded_length() {
        let (ks, pack, entries) = sample();
        assert_eq!(pack.len() as u64, padme(pack.len() as u64));
        let dir = decode_pack(ks.meta_key(), &pack).unwrap();
        assert_eq!(dir.kind, BlobKind::Data);
        assert_eq!(dir.entries, entries);
        for e in &dir.entries {
            let sealed = &pack[e.offset as usize..e.end() as usize];
            blob::open(&ks, BlobKind::Data, &e.id, e.codec, e.raw_len, sealed).unwrap();
        }
    }

    #[test]
    fn trailer_round_trip_and_fields() {
        let (_, pack, _) = sample();
        let len = pack.len() as u64;
        let bytes = &pack[pack.len() - TRAILER_LEN..];
        let t = Trailer::decode(len, bytes).unwrap();
        assert_eq!(t.encode().as_slice(), bytes);
        assert!(t.directory_start(len) < len);
        let f = TrailerFields::parse(bytes).unwrap();
        assert_eq!((f.dir_len, &f.magic, f.version), (t.dir_len, b"PVPACK", 1));
        assert!(TrailerFields::parse(&bytes[1..]).is_none());
        let mut other = t.encode();
        other[10] = 2;
        assert!(matches!(Trailer::decode(len, &other), Err(Error::UnsupportedVersion { found: 2, .. })));
        assert_eq!(TrailerFields::parse(&other).unwrap().version, 2, "the fields show what is written");
        let too_long = Trailer { dir_len: u32::try_from(len).unwrap() }.encode();
        assert!(Trailer::decode(len, &too_long).is_err());
    }

    #[test]
    fn every_truncation_is_rejected() {
        let (ks, pack, _) = sample();
        for n in 0..pack.len() {
            assert!(decode_pack(ks.meta_key(), &pack[..n]).is_err(), "prefix of {n} bytes accepted");
            assert!(decode_pack(ks.meta_key(), &pack[pack.len() - n..]).is_err(), "suffix of {n} bytes accepted");
        }
    }

    #[test]
    fn directory_and_trailer_flips_are_rejected() {
        let (ks, pack, entries) = sample();
        let blobs_end = entries.last().unwrap().end() as usize;
        for i in blobs_end..pack.len() {
            let mut bad = pack.clone();
            bad[i] ^= 0x01;
            assert!(decode_pack(ks.meta_key(), &bad).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn plaintext_checks() {
        // Entries that overlap, leave a gap, or overrun are refused.
        let e = |offset, sealed_len| BlobEntry { id: Id([1; 32]), offset, sealed_len, raw_len: 10, codec: Codec::Raw };
        let build = |es: &[BlobEntry], kind: u8| {
            let mut p = vec![kind, 0, 0, 0];
            p.extend_from_slice(&(es.len() as u32).to_le_bytes());
            for x in es {
                x.encode(&mut p);
            }
            p
        };
        assert!(decode_directory_plaintext(&build(&[e(0, 40), e(40, 40)], 0), 80).is_ok());
        assert!(decode_directory_plaintext(&build(&[e(0, 40), e(39, 41)], 0), 80).is_err());
        assert!(decode_directory_plaintext(&build(&[e(0, 40), e(41, 39)], 0), 80).is_err());
        assert!(decode_directory_plaintext(&build(&[e(0, 40)], 0), 80).is_err());
        assert!(decode_directory_plaintext(&build(&[e(0, 40)], 2), 40).is_err());
        assert!(decode_directory_plaintext(&build(&[e(0, 16)], 0), 16).is_err());
        let mut padded = build(&[e(0, 40)], 0);
        padded.extend_from_slice(&[0, 0, 1]);
        assert!(decode_directory_plaintext(&padded, 40).is_err());
        // A count that cannot fit is refused before any allocation.
        let mut huge = vec![0, 0, 0, 0];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_directory_plaintext(&huge, 0).is_err());
    }
}

//! Index files (format-spec.md §5.6): which blobs each pack of one backup holds.
//!
//! ```text
//! file  = "PVINDX" ‖ u16 version ‖ nonce (12) ‖ AES-256-GCM-SIV(meta_key, nonce, AD = first 8 bytes, plain)
//! plain = u32 pack count ‖ u32 zero ‖ pack record* ‖ zero padding (file length is a Padmé length)
//! pack record = pack id (32) ‖ kind u8 ‖ 3 zero bytes ‖ u32 pack length ‖ u32 blob count ‖ entry (48)*
//! ```

use crate::crypto::{SecretKey, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::pack::{decode_entries, BlobEntry, ENTRY_LEN, MAX_PACK_LEN, MIN_PACK_LEN};
use crate::format::padding::padme;
use crate::format::{check_header, header, open_envelope, seal_envelope, ByteReader, HEADER_LEN, MAGIC_INDEX};
use crate::id::{Id, PackId};

/// Fixed part of a pack record.
pub const PACK_RECORD_LEN: usize = 44;
/// Largest index file a reader accepts.
pub const MAX_INDEX_FILE: u64 = 256 << 20;

/// One pack as an index file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    /// The pack.
    pub pack: PackId,
    /// Kind of every blob in the pack.
    pub kind: BlobKind,
    /// Length of the pack file.
    pub pack_len: u32,
    /// The pack's blobs, in pack order.
    pub entries: Vec<BlobEntry>,
}

/// The decoded content of an index file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexFile {
    /// The packs, in the order written.
    pub packs: Vec<IndexPack>,
}

/// Encodes an index file's plaintext without its padding (format-spec.md §5.6).
#[must_use]
pub fn encode_plaintext(index: &IndexFile) -> Vec<u8> {
    let mut plain = Vec::new();
    plain.extend_from_slice(&u32::try_from(index.packs.len()).expect("pack count fits u32").to_le_bytes());
    plain.extend_from_slice(&[0; 4]);
    for p in &index.packs {
        plain.extend_from_slice(p.pack.as_bytes());
        plain.push(p.kind as u8);
        plain.extend_from_slice(&[0; 3]);
        plain.extend_from_slice(&p.pack_len.to_le_bytes());
        plain.extend_from_slice(&u32::try_from(p.entries.len()).expect("entry count fits u32").to_le_bytes());
        for e in &p.entries {
            e.encode(&mut plain);
        }
    }
    plain
}

/// Encrypts an index file.
pub(crate) fn encode(meta_key: &SecretKey, index: &IndexFile, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut plain = encode_plaintext(index);
    let unpadded = (HEADER_LEN + NONCE_LEN + plain.len() + TAG_LEN) as u64;
    plain.resize(plain.len() + (padme(unpadded) - unpadded) as usize, 0);
    seal_envelope(meta_key, &header(MAGIC_INDEX), nonce, plain)
}

/// Decrypts and checks an index file.
///
/// # Errors
/// [`Error::Malformed`], [`Error::UnsupportedVersion`] or [`Error::Integrity`] as the file is
/// truncated, of another version, or fails authentication; [`Error::Malformed`] for a pack
/// record whose blobs do not tile the pack from offset 0, or do not fit its length.
pub fn decode(meta_key: &SecretKey, bytes: &[u8]) -> Result<IndexFile> {
    const WHAT: &str = "index file";
    if bytes.len() as u64 > MAX_INDEX_FILE {
        return Err(Error::LimitExceeded {
            what: "index file length",
            found: bytes.len() as u64,
            limit: MAX_INDEX_FILE,
        });
    }
    check_header(bytes, MAGIC_INDEX, WHAT)?;
    let plain = open_envelope(meta_key, bytes, HEADER_LEN, WHAT)?;
    decode_plaintext(&plain)
}

/// Decodes the decrypted body of an index file.
///
/// # Errors
/// [`Error::Malformed`] as for [`decode`].
pub fn decode_plaintext(plain: &[u8]) -> Result<IndexFile> {
    let mut r = ByteReader::new(plain, "index file");
    let count = r.u32()? as usize;
    r.zeros(4, "reserved bytes")?;
    if count > r.remaining() / PACK_RECORD_LEN {
        return Err(r.err(format!("{count} pack records do not fit in {} bytes", r.remaining())));
    }
    let mut packs = Vec::with_capacity(count);
    for _ in 0..count {
        let pack = PackId(Id(r.array()?));
        let kind_byte = r.u8()?;
        let kind = BlobKind::from_u8(kind_byte)
            .ok_or_else(|| r.err(format!("pack {}: unknown blob kind {kind_byte}", pack.short())))?;
        r.zeros(3, "pack record reserved bytes")?;
        let pack_len = r.u32()?;
        let n = r.u32()? as usize;
        if n > r.remaining() / ENTRY_LEN {
            return Err(r.err(format!("pack {}: {n} entries do not fit in {} bytes", pack.short(), r.remaining())));
        }
        if !(MIN_PACK_LEN..=MAX_PACK_LEN).contains(&u64::from(pack_len)) {
            return Err(r.err(format!("pack {}: length {pack_len} out of range", pack.short())));
        }
        let entries = decode_entries(&mut r, n)?;
        let end = entries.last().map_or(0, BlobEntry::end);
        if end + MIN_PACK_LEN > u64::from(pack_len) {
            return Err(r.err(format!("pack {}: blobs end at {end}, beyond a pack of {pack_len} bytes", pack.short())));
        }
        packs.push(IndexPack { pack, kind, pack_len, entries });
    }
    let rest = r.remaining();
    r.zeros(rest, "padding")?;
    Ok(IndexFile { packs })
}

/// Checks only the header of an index file (magic and version), without a key.
///
/// # Errors
/// As [`decode`] for the header.
pub fn check_file_header(bytes: &[u8]) -> Result<()> {
    check_header(bytes, MAGIC_INDEX, "index file")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeySet, MasterKey};
    use crate::format::blob::Codec;

    fn sample() -> IndexFile {
        let entry = |i: u8, offset, sealed_len| BlobEntry {
            id: Id([i; 32]),
            offset,
            sealed_len,
            raw_len: 100,
            codec: Codec::Zstd,
        };
        IndexFile {
            packs: vec![
                IndexPack {
                    pack: PackId(Id([0xaa; 32])),
                    kind: BlobKind::Data,
                    pack_len: 4096,
                    entries: vec![entry(1, 0, 50), entry(2, 50, 70)],
                },
                IndexPack {
                    pack: PackId(Id([0xbb; 32])),
                    kind: BlobKind::Tree,
                    pack_len: 200,
                    entries: vec![entry(3, 0, 60)],
                },
            ],
        }
    }

    #[test]
    fn round_trip_padded() {
        let ks = KeySet::derive(&MasterKey::from_bytes([2; 32]));
        let bytes = encode(ks.meta_key(), &sample(), &[4; 12]);
        assert_eq!(bytes.len() as u64, padme(bytes.len() as u64));
        assert_eq!(decode(ks.meta_key(), &bytes).unwrap(), sample());
        for n in 0..bytes.len() {
            assert!(decode(ks.meta_key(), &bytes[..n]).is_err(), "truncated to {n}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(ks.meta_key(), &bad).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn blobs_must_fit_pack() {
        let mut s = sample();
        s.packs[1].pack_len = 100; // above the smallest pack, below its blob's end and a trailer
        let ks = KeySet::derive(&MasterKey::from_bytes([2; 32]));
        let bytes = encode(ks.meta_key(), &s, &[4; 12]);
        assert!(decode(ks.meta_key(), &bytes).unwrap_err().to_string().contains("beyond"));
    }
}

//! Compression dictionary objects (format-spec.md §5.17): a zstd dictionary sealed under its own
//! key and stored as `dicts/<dictionary id>`.
//!
//! ```text
//! file = "PVDICT" ‖ u16 version ‖ AES-256-GCM-SIV(dict key, 0 × 12, AD, P)   (P ends with the tag)
//! P    = D ‖ 0x80 ‖ 0x00* up to PADME(len(D) + 1)
//! AD   = "PVDICT" ‖ u16 version ‖ dictionary id (32) ‖ u32 len(P)
//! id   = KEYED(dict_id_key, D);  dict key = DERIVE("…dictionary key", seal_key ‖ id)
//! ```
//!
//! **Why a file of its own and not a blob in a pack.** A blob that uses a dictionary names it
//! by id; a reader (restore on a new phone, `check`) must find it from that id alone, before it
//! has any pack directory open. A store folder keyed by the id is one `GET` away, needs no index
//! entry (the index keeps its 48-byte rows and the index cache its layout), and prune, which
//! only rewrites packs, can never drop it by accident. The provider sees one more small file
//! (at most 128 KiB + 25 bytes, padded like a blob) and when it was written — nothing else: its
//! name is a keyed hash, and there is at most one per repository in practice (a session reuses
//! the one it finds).
//!
//! **Why sealed like a blob (zero nonce, derived key) and not like metadata (random nonce).**
//! The same dictionary always gives the same file under the same name: a retried or doubled
//! upload writes identical bytes, so the create-only put is idempotent and two devices never
//! store two copies of one dictionary. The key is derived from the secret seal key and the
//! keyed id, so it is never predictable from anything the provider sees, and is used for one
//! plaintext only (a zero nonce is then safe, as for blobs). Recomputing the keyed id after
//! decryption makes the object key-committing.

use crate::crypto::{self, KeySet, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::format::padding;
use crate::format::{check_header, header, HEADER_LEN, MAGIC_DICT};
use crate::id::Id;

/// Largest dictionary (its plaintext bytes `D`) a writer stores and a reader accepts.
pub const MAX_DICT_LEN: usize = 128 << 10;
/// Smallest dictionary a reader accepts (zstd needs at least 8 bytes of content).
pub const MIN_DICT_LEN: usize = 8;
/// Largest dictionary file: header (8), the padded maximum dictionary (PADME(128 KiB + 1) =
/// 135168) and the tag (16). A reader refuses a longer file before reading it.
pub const MAX_DICT_FILE: u64 = 135_192;

/// The associated data: `header(PVDICT) ‖ id ‖ u32 padded length` (44 bytes).
fn associated_data(id: &Id, padded_len: u32) -> [u8; 44] {
    let mut ad = [0u8; 44];
    ad[..HEADER_LEN].copy_from_slice(&header(MAGIC_DICT));
    ad[HEADER_LEN..HEADER_LEN + 32].copy_from_slice(&id.0);
    ad[HEADER_LEN + 32..].copy_from_slice(&padded_len.to_le_bytes());
    ad
}

/// Seals a dictionary: its id (the file's name) and the file's bytes. The same dictionary in
/// the same repository always gives the same bytes.
///
/// # Errors
/// [`Error::LimitExceeded`] for a dictionary outside [`MIN_DICT_LEN`]`..=`[`MAX_DICT_LEN`].
pub(crate) fn encode(keys: &KeySet, dictionary: &[u8]) -> Result<(Id, Vec<u8>)> {
    check_len(dictionary.len())?;
    let id = keys.dict_id(dictionary);
    let mut p = Vec::with_capacity(dictionary.len() + dictionary.len() / 8 + TAG_LEN + 1);
    p.extend_from_slice(dictionary);
    padding::pad_marker(&mut p);
    let ad = associated_data(&id, u32::try_from(p.len()).expect("below MAX_DICT_FILE"));
    crypto::aead_seal(&keys.dict_key(&id), &[0u8; NONCE_LEN], &ad, &mut p);
    let mut file = Vec::with_capacity(HEADER_LEN + p.len());
    file.extend_from_slice(&header(MAGIC_DICT));
    file.extend_from_slice(&p);
    Ok((id, file))
}

fn check_len(len: usize) -> Result<()> {
    if !(MIN_DICT_LEN..=MAX_DICT_LEN).contains(&len) {
        return Err(Error::LimitExceeded { what: "dictionary length", found: len as u64, limit: MAX_DICT_LEN as u64 });
    }
    Ok(())
}

/// Opens the dictionary file `bytes` stored as `dicts/<id>`: checks the length bound, the
/// header, the tag, the padding, the dictionary's length and that it hashes to `id`.
///
/// # Errors
/// [`Error::LimitExceeded`] for a file above [`MAX_DICT_FILE`] or a dictionary outside the
/// bounds; [`Error::Malformed`] / [`Error::UnsupportedVersion`] for a bad header;
/// [`Error::Integrity`] for a failed tag, bad padding or a wrong id.
pub(crate) fn decode(keys: &KeySet, id: &Id, bytes: &[u8]) -> Result<Vec<u8>> {
    const WHAT: &str = "dictionary";
    if bytes.len() as u64 > MAX_DICT_FILE {
        return Err(Error::LimitExceeded {
            what: "dictionary file length",
            found: bytes.len() as u64,
            limit: MAX_DICT_FILE,
        });
    }
    check_header(bytes, MAGIC_DICT, WHAT)?;
    let sealed = &bytes[HEADER_LEN..];
    if sealed.len() <= TAG_LEN {
        return Err(Error::malformed(WHAT, Some(HEADER_LEN as u64), format!("{} sealed bytes", sealed.len())));
    }
    let padded_len = sealed.len() - TAG_LEN;
    let ad = associated_data(id, padded_len as u32);
    let mut padded = vec![0u8; padded_len];
    crypto::aead_open_into(&keys.dict_key(id), &[0u8; NONCE_LEN], &ad, sealed, &mut padded)
        .map_err(|_| Error::Integrity(format!("dictionary {}: authentication failed", id.short())))?;
    let len = padding::unpad_marker(&padded)
        .ok_or_else(|| Error::Integrity(format!("dictionary {}: padding is not canonical", id.short())))?;
    padded.truncate(len);
    check_len(len)?;
    if !crypto::ct_eq(&keys.dict_id(&padded).0, &id.0) {
        return Err(Error::Integrity(format!("dictionary {}: content does not hash to its id", id.short())));
    }
    Ok(padded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::format::padding::padme;

    fn keys() -> KeySet {
        KeySet::derive(&MasterKey::from_bytes([9; 32]))
    }

    #[test]
    fn round_trip_is_convergent_and_key_committing() {
        let ks = keys();
        let d = b"some dictionary content, repeated; ".repeat(30);
        let (id, a) = encode(&ks, &d).unwrap();
        let (id2, b) = encode(&ks, &d).unwrap();
        assert_eq!((id, &a), (id2, &b), "the same dictionary seals to the same file");
        assert_eq!(decode(&ks, &id, &a).unwrap(), d);
        assert_eq!(a.len() as u64, HEADER_LEN as u64 + padme(d.len() as u64 + 1) + TAG_LEN as u64);
        let other = KeySet::derive(&MasterKey::from_bytes([8; 32]));
        assert!(decode(&other, &id, &a).unwrap_err().is_integrity());
        assert!(decode(&ks, &Id([1; 32]), &a).unwrap_err().is_integrity());
        for i in 0..a.len() {
            let mut bad = a.clone();
            bad[i] ^= 0x10;
            assert!(decode(&ks, &id, &bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn hostile_sizes_are_refused() {
        let ks = keys();
        assert!(matches!(encode(&ks, &[0; 7]), Err(Error::LimitExceeded { .. })));
        assert!(matches!(encode(&ks, &vec![0; MAX_DICT_LEN + 1]), Err(Error::LimitExceeded { .. })));
        assert_eq!(MAX_DICT_FILE, HEADER_LEN as u64 + padme(MAX_DICT_LEN as u64 + 1) + TAG_LEN as u64);
        let (id, max) = encode(&ks, &vec![7; MAX_DICT_LEN]).unwrap();
        assert_eq!(max.len() as u64, MAX_DICT_FILE);
        let mut long = max.clone();
        long.push(0);
        assert!(matches!(decode(&ks, &id, &long), Err(Error::LimitExceeded { .. })));
        assert!(decode(&ks, &id, &max[..HEADER_LEN + TAG_LEN]).is_err());
        assert!(decode(&ks, &id, &[]).is_err());
    }
}

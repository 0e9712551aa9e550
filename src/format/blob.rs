//! Sealed blobs (format-spec.md §5.4): compress → pad → AES-256-GCM-SIV under a per-blob key
//! with an all-zero nonce. The same plaintext in the same repository always seals to the same
//! bytes.

use std::cell::RefCell;

use crate::crypto::{self, KeySet, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::format::padding;
use crate::format::{header, MAGIC_BLOB};
use crate::id::Id;

/// Largest plaintext of any blob (a tree blob; data chunks are bounded by the chunker's
/// maximum, at most 16 MiB).
pub const MAX_BLOB_RAW: u32 = 64 << 20;

/// Largest sealed blob: the padded maximum plaintext plus its marker and tag.
pub const MAX_BLOB_SEALED: u32 = MAX_BLOB_RAW + (MAX_BLOB_RAW >> 3) + TAG_LEN as u32;

/// What a blob holds. Data and tree blobs live in separate packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlobKind {
    /// A chunk of file content.
    Data = 0,
    /// An encoded directory tree.
    Tree = 1,
}

impl BlobKind {
    /// The kind for a stored byte; `None` for every other value.
    #[must_use]
    pub fn from_u8(b: u8) -> Option<BlobKind> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }

    /// Lowercase name, as shown by `packtool`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Data => "data",
            BlobKind::Tree => "tree",
        }
    }
}

/// How a blob's plaintext is encoded before padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is.
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
    /// The 32-byte id of a compression dictionary (format-spec.md §5.17), then one zstd frame
    /// compressed with that dictionary.
    ZstdDict = 2,
}

impl Codec {
    /// The codec for a stored byte; `None` for every other value.
    #[must_use]
    pub fn from_u8(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::ZstdDict),
            _ => None,
        }
    }
}

/// A sealed blob, ready to be appended to a pack.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlob {
    /// Blob id.
    pub id: Id,
    /// Blob kind.
    pub kind: BlobKind,
    /// Codec of the plaintext.
    pub codec: Codec,
    /// Length of the plaintext before compression.
    pub raw_len: u32,
    /// `ciphertext ‖ tag`.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SealedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBlob")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("codec", &self.codec)
            .field("raw_len", &self.raw_len)
            .field("sealed_len", &self.bytes.len())
            .finish()
    }
}

/// The associated data of a blob: `header(PVBLOB) ‖ kind ‖ codec ‖ id ‖ u32 padded length`.
fn associated_data(kind: BlobKind, codec: Codec, id: &Id, padded_len: u32) -> [u8; 46] {
    let mut ad = [0u8; 46];
    ad[..8].copy_from_slice(&header(MAGIC_BLOB));
    ad[8] = kind as u8;
    ad[9] = codec as u8;
    ad[10..42].copy_from_slice(&id.0);
    ad[42..].copy_from_slice(&padded_len.to_le_bytes());
    ad
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    /// A compressor with a dictionary loaded, for one (level, dictionary id).
    static DICT_COMPRESSOR: RefCell<Option<(i32, Id, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    /// A decompressor with a dictionary loaded, for one dictionary id.
    static DICT_DECOMPRESSOR: RefCell<Option<(Id, zstd::bulk::Decompressor<'static>)>> = const { RefCell::new(None) };
}

/// Length of the dictionary id at the start of a codec-2 body.
pub const DICT_REF_LEN: usize = 32;

/// Data chunks up to this length are tried with the session's dictionary (format-spec.md §5.4,
/// codec rule step 3). Larger chunks have enough context of their own: on the measured data a
/// dictionary changed their frames by less than the 32-byte reference it costs.
pub const DICT_MAX_CHUNK: usize = 32 << 10;

/// A compression dictionary as the codec uses it: its id and its bytes (format-spec.md §5.17).
#[derive(Clone, PartialEq, Eq)]
pub struct Dictionary {
    /// The dictionary's id, `KEYED(dict_id_key, bytes)`.
    pub id: Id,
    /// The zstd dictionary.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dictionary({}, {} bytes)", self.id.short(), self.bytes.len())
    }
}

/// Where a reader finds the dictionaries that codec-2 blobs name (the repository's
/// `dicts/` folder, with a cache). Implementations wrap a failure in
/// [`Error::Dictionary`] naming the dictionary.
pub(crate) trait DictSource {
    /// The dictionary with this id, checked (format-spec.md §5.17).
    fn dictionary(&mut self, id: &Id) -> Result<&Dictionary>;
}

/// A source with no dictionaries: every codec-2 blob fails, naming its dictionary.
#[cfg(any(test, feature = "hazmat"))]
pub(crate) struct NoDictionaries;

#[cfg(any(test, feature = "hazmat"))]
impl DictSource for NoDictionaries {
    fn dictionary(&mut self, id: &Id) -> Result<&Dictionary> {
        Err(Error::Dictionary {
            dictionary: *id,
            error: Box::new(Error::NotFound(format!("dictionary {}", id.short()))),
        })
    }
}

/// A zstd frame of `raw` compressed with `dict` at `level`; `None` if zstd fails.
fn compress_with_dict(raw: &[u8], level: i32, dict: &Dictionary) -> Option<Vec<u8>> {
    DICT_COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, id, _)| *l != level || *id != dict.id) {
            *slot = Some((level, dict.id, zstd::bulk::Compressor::with_dictionary(level, &dict.bytes).ok()?));
        }
        let (_, _, c) = slot.as_mut()?;
        let mut out = Vec::with_capacity(DICT_REF_LEN + raw.len() + raw.len() / 8 + TAG_LEN + 1);
        out.extend_from_slice(&dict.id.0);
        let mut frame = Vec::with_capacity(raw.len() + raw.len() / 8 + 64);
        c.compress_to_buffer(raw, &mut frame).ok()?;
        out.extend_from_slice(&frame);
        Some(out)
    })
}

/// As [`decompress_into`], with a dictionary.
fn decompress_with_dict_into(body: &[u8], raw_len: usize, dict: &Dictionary, out: &mut Vec<u8>) -> Result<(), String> {
    DICT_DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(id, _)| *id != dict.id) {
            let d = zstd::bulk::Decompressor::with_dictionary(&dict.bytes).map_err(|e| e.to_string())?;
            *slot = Some((dict.id, d));
        }
        let (_, d) = slot.as_mut().ok_or("no zstd context")?;
        out.clear();
        out.reserve_exact(raw_len);
        let n = d.decompress_to_buffer(body, out).map_err(|e| e.to_string())?;
        if n != raw_len {
            return Err(format!("decompressed to {n} bytes, {raw_len} declared"));
        }
        Ok(())
    })
}

/// Chunks at least this long are sampled before being compressed.
const SAMPLE_FROM: usize = 16 << 10;
/// Size of the compressibility sample.
const SAMPLE: usize = 4 << 10;

/// Compresses with a per-thread zstd context; `None` when compression does not shrink the data.
fn compress(raw: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, c) = slot.as_mut()?;
        // Media is incompressible: a 4 KiB sample from the middle of a large chunk that does not
        // shrink by 3 % settles it without compressing the whole chunk. (A deterministic test,
        // so the same chunk always seals the same way.)
        if raw.len() >= SAMPLE_FROM {
            let mid = raw.len() / 2 - SAMPLE / 2;
            let mut probe = Vec::with_capacity(SAMPLE + SAMPLE / 8);
            match c.compress_to_buffer(&raw[mid..mid + SAMPLE], &mut probe) {
                Ok(n) if n < SAMPLE * 97 / 100 => {}
                _ => return None,
            }
        }
        // Room for the marker, padding and tag, so sealing does not reallocate.
        let mut out = Vec::with_capacity(raw.len() + raw.len() / 8 + TAG_LEN + 1);
        match c.compress_to_buffer(raw, &mut out) {
            Ok(n) if n < raw.len() => Some(out),
            _ => None,
        }
    })
}

/// Decompresses one frame into `out` (cleared first), which must come out exactly `raw_len`
/// bytes long. The buffer never grows to fit the frame: a frame that decodes to more (a "zstd
/// bomb") fails instead.
fn decompress_into(body: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<(), String> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        let d = slot.as_mut().ok_or("no zstd context")?;
        out.clear();
        out.reserve_exact(raw_len);
        // zstd writes at most the buffer's capacity: `raw_len`, or what an earlier, larger blob
        // needed (never more than MAX_BLOB_RAW); anything but exactly `raw_len` is refused.
        let n = d.decompress_to_buffer(body, out).map_err(|e| e.to_string())?;
        if n != raw_len {
            return Err(format!("decompressed to {n} bytes, {raw_len} declared"));
        }
        Ok(())
    })
}

/// Seals `raw` as a blob of `kind` whose id is `id` (computed by the caller with the matching
/// id key). `level` is the zstd level; `None` stores the plaintext uncompressed.
pub(crate) fn seal(keys: &KeySet, kind: BlobKind, id: Id, raw: &[u8], level: Option<i32>) -> SealedBlob {
    debug_assert!(raw.len() <= MAX_BLOB_RAW as usize);
    let (codec, buf) = match level.and_then(|l| compress(raw, l)) {
        Some(c) => (Codec::Zstd, c),
        None => {
            let mut b = Vec::with_capacity(raw.len() + raw.len() / 8 + TAG_LEN + 1);
            b.extend_from_slice(raw);
            (Codec::Raw, b)
        }
    };
    seal_body(keys, kind, id, codec, u32::try_from(raw.len()).expect("blob below MAX_BLOB_RAW"), buf)
}

/// Seals a data chunk as [`seal`] does, and with `dict` tries the dictionary too (format-spec.md
/// §5.4, codec rule step 3): a chunk of at most [`DICT_MAX_CHUNK`] bytes that compresses is
/// stored with codec 2 when `32 + len(dictionary frame)` is shorter than the plain frame.
/// The id does not depend on the codec: a chunk sealed with another dictionary, or none,
/// deduplicates all the same.
pub(crate) fn seal_data(
    keys: &KeySet,
    id: Id,
    raw: &[u8],
    level: Option<i32>,
    dict: Option<&Dictionary>,
) -> SealedBlob {
    let raw_len = u32::try_from(raw.len()).expect("blob below MAX_BLOB_RAW");
    let Some(lvl) = level else { return seal(keys, BlobKind::Data, id, raw, level) };
    let plain = compress(raw, lvl);
    if let (Some(frame), Some(dict)) = (&plain, dict) {
        if raw.len() <= DICT_MAX_CHUNK {
            if let Some(body) = compress_with_dict(raw, lvl, dict) {
                if body.len() < frame.len() {
                    return seal_body(keys, BlobKind::Data, id, Codec::ZstdDict, raw_len, body);
                }
            }
        }
    }
    match plain {
        Some(frame) => seal_body(keys, BlobKind::Data, id, Codec::Zstd, raw_len, frame),
        None => seal(keys, BlobKind::Data, id, raw, None),
    }
}

/// Pads and encrypts an encoded body (`raw` or a zstd frame of it).
pub(crate) fn seal_body(
    keys: &KeySet,
    kind: BlobKind,
    id: Id,
    codec: Codec,
    raw_len: u32,
    mut buf: Vec<u8>,
) -> SealedBlob {
    padding::pad_marker(&mut buf);
    let padded_len = u32::try_from(buf.len()).expect("blob below MAX_BLOB_SEALED");
    let ad = associated_data(kind, codec, &id, padded_len);
    let key = keys.blob_key(&id);
    crypto::aead_seal(&key, &[0u8; NONCE_LEN], &ad, &mut buf);
    SealedBlob { id, kind, codec, raw_len, bytes: buf }
}

/// Opens a sealed blob and checks that its plaintext hashes to `id`. `codec` and `raw_len`
/// come from the pack directory or index; a wrong value fails authentication or the length
/// check, never yields plaintext.
///
/// # Errors
/// [`Error::Malformed`] for impossible lengths, [`Error::Integrity`] when the tag, the padding,
/// the decompressed length or the recomputed id does not match.
#[cfg(any(test, feature = "hazmat"))]
pub(crate) fn open(
    keys: &KeySet,
    kind: BlobKind,
    id: &Id,
    codec: Codec,
    raw_len: u32,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    open_with(keys, kind, id, codec, raw_len, sealed, &mut NoDictionaries)
}

/// As [`open`], finding the dictionary of a codec-2 blob in `dicts`.
///
/// # Errors
/// As [`open`]; [`Error::Dictionary`] when the blob's dictionary cannot be had.
pub(crate) fn open_with(
    keys: &KeySet,
    kind: BlobKind,
    id: &Id,
    codec: Codec,
    raw_len: u32,
    sealed: &[u8],
    dicts: &mut dyn DictSource,
) -> Result<Vec<u8>> {
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let plain = open_into(keys, kind, id, codec, raw_len, sealed, &mut scratch, &mut out, dicts)?;
    Ok(plain.to_vec())
}

/// As [`open`], with caller-owned buffers reused from blob to blob (restores open millions):
/// the ciphertext is decrypted straight into `scratch` and a zstd body decompressed into
/// `out`; the returned plaintext borrows one of them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn open_into<'a>(
    keys: &KeySet,
    kind: BlobKind,
    id: &Id,
    codec: Codec,
    raw_len: u32,
    sealed: &[u8],
    scratch: &'a mut Vec<u8>,
    out: &'a mut Vec<u8>,
    dicts: &mut dyn DictSource,
) -> Result<&'a [u8]> {
    if raw_len > MAX_BLOB_RAW {
        return Err(Error::LimitExceeded {
            what: "declared blob length",
            found: u64::from(raw_len),
            limit: u64::from(MAX_BLOB_RAW),
        });
    }
    if sealed.len() <= TAG_LEN || sealed.len() > MAX_BLOB_SEALED as usize {
        return Err(Error::malformed("blob", None, format!("sealed length {} out of range", sealed.len())));
    }
    let padded_len = sealed.len() - TAG_LEN;
    let ad = associated_data(kind, codec, id, padded_len as u32);
    let key = keys.blob_key(id);
    if scratch.len() < padded_len {
        scratch.resize(padded_len, 0);
    }
    let padded = &mut scratch[..padded_len];
    crypto::aead_open_into(&key, &[0u8; NONCE_LEN], &ad, sealed, padded)
        .map_err(|_| Error::Integrity(format!("{} blob {}: authentication failed", kind.name(), id.short())))?;
    let body_len = padding::unpad_marker(padded)
        .ok_or_else(|| Error::Integrity(format!("blob {}: padding is not canonical", id.short())))?;
    let plain: &[u8] = match codec {
        Codec::Raw => {
            if body_len != raw_len as usize {
                return Err(Error::Integrity(format!(
                    "blob {}: {body_len} bytes stored, {raw_len} declared",
                    id.short()
                )));
            }
            &scratch[..body_len]
        }
        Codec::Zstd => {
            decompress_into(&scratch[..body_len], raw_len as usize, out)
                .map_err(|e| Error::Integrity(format!("blob {}: zstd: {e}", id.short())))?;
            &out[..]
        }
        Codec::ZstdDict => {
            let body = &scratch[..body_len];
            if body.len() <= DICT_REF_LEN {
                return Err(Error::Integrity(format!(
                    "blob {}: {body_len} bytes hold no dictionary id and frame",
                    id.short()
                )));
            }
            let dict_id = Id(body[..DICT_REF_LEN].try_into().expect("32 bytes"));
            let dict = dicts.dictionary(&dict_id)?;
            decompress_with_dict_into(&body[DICT_REF_LEN..], raw_len as usize, dict, out).map_err(|e| {
                Error::Integrity(format!("blob {}: zstd with dictionary {}: {e}", id.short(), dict_id.short()))
            })?;
            &out[..]
        }
    };
    let actual = match kind {
        BlobKind::Data => keys.chunk_id(plain).0,
        BlobKind::Tree => keys.tree_id(plain).0,
    };
    if !crypto::ct_eq(&actual.0, &id.0) {
        return Err(Error::Integrity(format!("blob {}: content does not hash to its id", id.short())));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn keys() -> KeySet {
        KeySet::derive(&MasterKey::from_bytes([9; 32]))
    }

    #[test]
    fn round_trip_both_codecs_and_convergence() {
        let ks = keys();
        let text = b"hello hello hello hello hello hello hello hello".repeat(20);
        let id = ks.chunk_id(&text).0;
        let a = seal(&ks, BlobKind::Data, id, &text, Some(3));
        assert_eq!(a.codec, Codec::Zstd);
        assert!(a.bytes.len() < text.len());
        let b = seal(&ks, BlobKind::Data, id, &text, Some(3));
        assert_eq!(a.bytes, b.bytes, "sealing is deterministic");
        assert_eq!(open(&ks, BlobKind::Data, &id, a.codec, a.raw_len, &a.bytes).unwrap(), text);

        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let id = ks.chunk_id(&random).0;
        let r = seal(&ks, BlobKind::Data, id, &random, Some(3));
        assert_eq!(r.codec, Codec::Raw, "incompressible data is stored raw");
        assert_eq!(open(&ks, BlobKind::Data, &id, r.codec, r.raw_len, &r.bytes).unwrap(), random);
    }

    use crate::test_noise::noise;

    /// `len` compressible bytes whose 4 KiB at the middle (format-spec.md §5.4) are `sample`.
    fn with_sample(len: usize, sample: &[u8]) -> Vec<u8> {
        let mut raw: Vec<u8> = b"see you at 8! ".iter().copied().cycle().take(len).collect();
        let mid = len / 2 - 2048;
        raw[mid..mid + 4096].copy_from_slice(sample);
        raw
    }

    #[test]
    fn codec_rule_has_the_documented_numbers() {
        // format-spec.md §5.4: from 16384 bytes on, the 4096 bytes at len/2 − 2048 are
        // compressed first; a frame of 3973 bytes or more stores the whole blob raw.
        let ks = keys();
        let seal_codec = |raw: &[u8]| seal(&ks, BlobKind::Data, ks.chunk_id(raw).0, raw, Some(3)).codec;
        let frame_len = |b: &[u8]| zstd::bulk::compress(b, 3).unwrap().len();
        // Samples of 210 symbols, whose frames (zstd level 3, libzstd 1.5.7) straddle the
        // threshold by one byte.
        let sample = |seed| noise(4096, seed).iter().map(|&b| b % 210).collect::<Vec<u8>>();
        let (below, at) = (33, 34);
        assert_eq!(frame_len(&sample(below)), 3972);
        assert_eq!(frame_len(&sample(at)), 3973);
        assert_eq!(seal_codec(&with_sample(16384, &sample(below))), Codec::Zstd);
        assert_eq!(seal_codec(&with_sample(16384, &sample(at))), Codec::Raw, "a compressible blob stored raw");
        // For odd and longer blobs too, the sample starts at ⌊len / 2⌋ − 2048.
        assert_eq!(seal_codec(&with_sample(16385, &sample(at))), Codec::Raw);
        assert_eq!(seal_codec(&with_sample(40001, &sample(at))), Codec::Raw);
        // Below 16384 bytes there is no sample test: the whole blob is compressed.
        assert_eq!(seal_codec(&with_sample(16382, &noise(4096, 7))), Codec::Zstd);
        assert_eq!(seal_codec(&with_sample(16384, &noise(4096, 7))), Codec::Raw);
    }

    #[test]
    fn wrong_metadata_is_rejected() {
        let ks = keys();
        let text = b"abcabcabcabcabcabcabcabcabcabc".repeat(10);
        let id = ks.chunk_id(&text).0;
        let s = seal(&ks, BlobKind::Data, id, &text, Some(1));
        assert!(open(&ks, BlobKind::Tree, &id, s.codec, s.raw_len, &s.bytes).is_err());
        assert!(open(&ks, BlobKind::Data, &id, Codec::Raw, s.raw_len, &s.bytes).is_err());
        assert!(open(&ks, BlobKind::Data, &id, s.codec, s.raw_len - 1, &s.bytes).is_err());
        assert!(open(&ks, BlobKind::Data, &id, s.codec, s.raw_len + 1, &s.bytes).is_err());
        let other = ks.chunk_id(b"x").0;
        assert!(open(&ks, BlobKind::Data, &other, s.codec, s.raw_len, &s.bytes).is_err());
        let ks2 = KeySet::derive(&MasterKey::from_bytes([8; 32]));
        assert!(open(&ks2, BlobKind::Data, &id, s.codec, s.raw_len, &s.bytes).is_err());
        assert!(open(&ks, BlobKind::Data, &id, s.codec, s.raw_len, &s.bytes[..s.bytes.len() - 1]).is_err());
        assert!(open(&ks, BlobKind::Data, &id, s.codec, s.raw_len, &[]).is_err());
    }

    #[test]
    fn decompression_bombs_and_lying_lengths_are_refused() {
        let ks = keys();
        let huge = vec![0u8; 16 << 20];
        let frame = zstd::bulk::compress(&huge, 3).unwrap();
        assert!(frame.len() < 4096);
        let id = ks.chunk_id(&huge).0;
        // A valid frame of 16 MiB behind a blob that declares 1000 bytes.
        let bomb = seal_body(&ks, BlobKind::Data, id, Codec::Zstd, 1000, frame.clone());
        let err = open(&ks, BlobKind::Data, &id, Codec::Zstd, 1000, &bomb.bytes).unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
        // Declaring more than the limit is refused before decrypting.
        let err = open(&ks, BlobKind::Data, &id, Codec::Zstd, MAX_BLOB_RAW + 1, &bomb.bytes).unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
        // A frame that yields fewer bytes than declared.
        let short = seal_body(&ks, BlobKind::Data, id, Codec::Zstd, (16 << 20) + 1, frame);
        assert!(open(&ks, BlobKind::Data, &id, Codec::Zstd, (16 << 20) + 1, &short.bytes).is_err());
    }

    #[test]
    fn every_single_byte_flip_is_rejected() {
        let ks = keys();
        let text = b"The quick brown fox jumps over the lazy dog. ".repeat(40);
        let id = ks.chunk_id(&text).0;
        for level in [None, Some(3)] {
            let s = seal(&ks, BlobKind::Data, id, &text, level);
            for i in 0..s.bytes.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = s.bytes.clone();
                    bad[i] ^= bit;
                    let err = open(&ks, BlobKind::Data, &id, s.codec, s.raw_len, &bad).unwrap_err();
                    assert!(err.is_integrity(), "byte {i}: {err}");
                }
            }
        }
    }
}

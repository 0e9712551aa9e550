//! On-disk structures: pure encode/decode, no I/O (format-spec.md §5).
//!
//! Every structure here has a section in `format-spec.md`, which this code must match byte for
//! byte; `tests/vectors/` holds known-answer vectors for each. Integers are little-endian.
//! Decoders take the whole structure as a byte slice, check every length before using it and
//! return [`Error::Malformed`] (naming the structure and offset) instead
//! of panicking.
//!
//! Every stored file starts with an 8-byte header: a 6-byte ASCII magic followed by the format
//! version as a little-endian `u16` ([`FORMAT_VERSION`]).

pub mod blob;
pub mod config;
pub mod dict;
pub(crate) mod encoding;
pub mod index;
pub mod keyslot;
pub mod lock;
pub mod pack;
pub mod padding;
pub mod recovery_code;
pub mod snapshot;
pub mod tombstone;

use crate::crypto::{self, SecretKey, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};

/// The format version this build writes and reads (format-spec.md §6).
pub const FORMAT_VERSION: u16 = 2;

/// Length of the magic-and-version header.
pub const HEADER_LEN: usize = 8;

/// Magic of the repository config file.
pub const MAGIC_CONFIG: [u8; 6] = *b"PVCONF";
/// Magic of a keyslot file.
pub const MAGIC_KEYSLOT: [u8; 6] = *b"PVKEYS";
/// Magic in a pack trailer (and the pack directory's associated data).
pub const MAGIC_PACK: [u8; 6] = *b"PVPACK";
/// Magic of an index file.
pub const MAGIC_INDEX: [u8; 6] = *b"PVINDX";
/// Magic of a snapshot file.
pub const MAGIC_SNAPSHOT: [u8; 6] = *b"PVSNAP";
/// Magic of a tombstone file.
pub const MAGIC_TOMBSTONE: [u8; 6] = *b"PVTOMB";
/// Magic of a compression dictionary file (format-spec.md §5.17).
pub const MAGIC_DICT: [u8; 6] = *b"PVDICT";
/// Magic in a blob's associated data (never stored).
pub const MAGIC_BLOB: [u8; 6] = *b"PVBLOB";

/// `magic ‖ u16 LE version`.
#[must_use]
pub fn header(magic: [u8; 6]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..6].copy_from_slice(&magic);
    h[6..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Checks an 8-byte header: the magic, then the version.
pub(crate) fn check_header(bytes: &[u8], magic: [u8; 6], what: &'static str) -> Result<()> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::malformed(
            what,
            Some(0),
            format!("truncated: {} bytes, the header alone is {HEADER_LEN}", bytes.len()),
        ));
    }
    if bytes[..6] != magic {
        return Err(Error::malformed(
            what,
            Some(0),
            format!(
                "bad magic {:?}, expected {:?}",
                String::from_utf8_lossy(&bytes[..6]),
                String::from_utf8_lossy(&magic)
            ),
        ));
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion { what, found: version, supported: FORMAT_VERSION });
    }
    Ok(())
}

/// Encrypts `plaintext` under the metadata key: `prefix ‖ nonce ‖ ciphertext ‖ tag`, with
/// `prefix` as associated data (format-spec.md §5.1, "metadata envelope").
pub(crate) fn seal_envelope(key: &SecretKey, prefix: &[u8], nonce: &[u8; NONCE_LEN], plaintext: Vec<u8>) -> Vec<u8> {
    let mut body = plaintext;
    crypto::aead_seal(key, nonce, prefix, &mut body);
    let mut out = Vec::with_capacity(prefix.len() + NONCE_LEN + body.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&body);
    out
}

/// Opens an envelope whose first `prefix_len` bytes are its associated data.
pub(crate) fn open_envelope(key: &SecretKey, bytes: &[u8], prefix_len: usize, what: &'static str) -> Result<Vec<u8>> {
    let min = prefix_len + NONCE_LEN + TAG_LEN;
    if bytes.len() < min {
        return Err(Error::malformed(
            what,
            Some(bytes.len() as u64),
            format!("truncated: {} bytes, at least {min} needed", bytes.len()),
        ));
    }
    let (prefix, rest) = bytes.split_at(prefix_len);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Error::malformed(what, None, "nonce"))?;
    let mut buf = body.to_vec();
    crypto::aead_open(key, &nonce, prefix, &mut buf).map_err(|_| {
        Error::Integrity(format!("{what}: authentication failed (damaged, forged, or another repository's key)"))
    })?;
    Ok(buf)
}

/// A padded record file (snapshots §5.9, tombstones §5.15): an envelope with prefix
/// `magic ‖ u16 version` around `u32 length ‖ record ‖ zero padding`, the file's length a
/// Padmé length, at most `limit` bytes.
pub(crate) struct PaddedRecordFile {
    pub magic: [u8; 6],
    /// The structure, in errors ("snapshot").
    pub what: &'static str,
    /// The length bound, in errors ("snapshot file length").
    pub limit_what: &'static str,
    pub limit: u64,
}

impl PaddedRecordFile {
    /// `u32 length ‖ record`: the plaintext before padding.
    pub fn plaintext(&self, body: &[u8]) -> Result<Vec<u8>> {
        let len =
            u32::try_from(body.len()).map_err(|_| Error::InvalidArgument(format!("{} record too large", self.what)))?;
        let mut plain = Vec::with_capacity(body.len() + 64);
        plain.extend_from_slice(&len.to_le_bytes());
        plain.extend_from_slice(body);
        Ok(plain)
    }

    /// Pads `plain` (from [`PaddedRecordFile::plaintext`]) and seals it.
    pub fn seal(&self, key: &SecretKey, mut plain: Vec<u8>, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>> {
        let unpadded = (HEADER_LEN + NONCE_LEN + plain.len() + TAG_LEN) as u64;
        if unpadded > self.limit {
            return Err(Error::LimitExceeded { what: self.limit_what, found: unpadded, limit: self.limit });
        }
        plain.resize(plain.len() + (padding::padme(unpadded) - unpadded) as usize, 0);
        Ok(seal_envelope(key, &header(self.magic), nonce, plain))
    }

    /// Checks the header first (a newer version is "unsupported" whatever its size, never
    /// "damaged": format-spec.md §5.1), then the size, then opens the envelope.
    pub fn open(&self, key: &SecretKey, bytes: &[u8]) -> Result<Vec<u8>> {
        check_header(bytes, self.magic, self.what)?;
        if bytes.len() as u64 > self.limit {
            return Err(Error::LimitExceeded { what: self.limit_what, found: bytes.len() as u64, limit: self.limit });
        }
        open_envelope(key, bytes, HEADER_LEN, self.what)
    }

    /// The record bytes of an opened plaintext; the padding must be zeros.
    pub fn record<'a>(&self, plain: &'a [u8]) -> Result<&'a [u8]> {
        let mut r = ByteReader::new(plain, self.what);
        let len = r.u32()? as usize;
        let body = r.take(len)?;
        let rest = r.remaining();
        r.zeros(rest, "padding")?;
        Ok(body)
    }
}

/// A bounds-checked reader over a byte slice: every read names the structure and offset when
/// the input is too short.
pub(crate) struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        ByteReader { buf, pos: 0, what }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(Error::malformed(
                self.what,
                Some(self.pos as u64),
                format!("truncated: {n} bytes needed, {} left", self.remaining()),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Reads `n` bytes that must all be zero (reserved fields, padding).
    pub(crate) fn zeros(&mut self, n: usize, field: &str) -> Result<()> {
        let at = self.pos;
        let s = self.take(n)?;
        if let Some(i) = s.iter().position(|&b| b != 0) {
            return Err(Error::malformed(self.what, Some((at + i) as u64), format!("{field} must be zero")));
        }
        Ok(())
    }

    pub(crate) fn err(&self, detail: impl Into<String>) -> Error {
        Error::malformed(self.what, Some(self.pos as u64), detail)
    }
}

//! Lock files (format-spec.md §5.14): an envelope around a fixed-size record saying who holds
//! a shared or exclusive lock, and since when.

use serde::{Deserialize, Serialize};

use crate::crypto::SecretKey;
use crate::error::{Error, Result};
use crate::format::{check_header, encoding, header, open_envelope, seal_envelope, HEADER_LEN};

/// Magic of a lock file.
pub const MAGIC_LOCK: [u8; 6] = *b"PVLOCK";
/// Largest lock file a reader accepts.
pub const MAX_LOCK_FILE: u64 = 4096;

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// Backups, restores and checks run side by side.
    Shared,
    /// Forget, prune and repair run alone.
    Exclusive,
}

/// The content of a lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Shared or exclusive.
    pub kind: LockKind,
    /// Host name of the holder (for people; cut to 64 bytes).
    pub hostname: String,
    /// Identity of the holder's process namespace, for telling a dead holder from a live one
    /// (packvault on Linux: the kernel's boot id and the PID namespace, cut to 64 bytes);
    /// empty when unknown, and then only the age makes the lock stale.
    pub machine: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When the lock was written (refreshed), seconds since the Unix epoch.
    pub time: i64,
    /// What the holder does: `backup`, `prune`, …
    pub operation: String,
}

/// Longest host name and machine a lock holds, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest operation a lock holds, in bytes.
pub const MAX_OPERATION: usize = 32;

/// Length of a lock's plaintext: every lock file has the same size, so its length tells
/// nothing about the host name or the operation.
pub const LOCK_PLAINTEXT_LEN: usize = 256;

/// Encrypts a lock record under the metadata key.
///
/// # Errors
/// Only if the record cannot be encoded.
pub fn encode(meta_key: &SecretKey, record: &LockRecord, nonce: &[u8; 12]) -> Result<Vec<u8>> {
    Ok(seal_envelope(meta_key, &header(MAGIC_LOCK), nonce, encode_plaintext(record)?))
}

/// The 256-byte plaintext of a lock (the host name is cut to 64 bytes, the operation to 32).
///
/// # Errors
/// Only if the record cannot be encoded.
pub fn encode_plaintext(record: &LockRecord) -> Result<Vec<u8>> {
    let mut r = record.clone();
    truncate_utf8(&mut r.hostname, MAX_NAME);
    truncate_utf8(&mut r.machine, MAX_NAME);
    truncate_utf8(&mut r.operation, MAX_OPERATION);
    let body = encoding::encode(&r)?;
    let mut plain = Vec::with_capacity(LOCK_PLAINTEXT_LEN);
    // At most 1 + 1+64 + 1+64 + 5 + 10 + 1+32 bytes after the length: always fits.
    plain.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_le_bytes());
    plain.extend_from_slice(&body);
    plain.resize(LOCK_PLAINTEXT_LEN, 0);
    Ok(plain)
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Decrypts a lock file.
///
/// # Errors
/// Malformed, unsupported or forged files.
pub fn decode(meta_key: &SecretKey, bytes: &[u8]) -> Result<LockRecord> {
    if bytes.len() as u64 > MAX_LOCK_FILE {
        return Err(Error::malformed("lock", None, format!("{} bytes is larger than any lock", bytes.len())));
    }
    check_header(bytes, MAGIC_LOCK, "lock")?;
    let plain = open_envelope(meta_key, bytes, HEADER_LEN, "lock")?;
    decode_plaintext(&plain)
}

/// Decodes a lock's plaintext.
///
/// # Errors
/// [`Error::Malformed`] for a wrong length, a record length beyond it, non-zero padding, a
/// record that does not decode, or names longer than a writer writes (a reader that accepted
/// them would hold a record that does not survive re-encoding).
pub fn decode_plaintext(plain: &[u8]) -> Result<LockRecord> {
    if plain.len() != LOCK_PLAINTEXT_LEN {
        return Err(Error::malformed(
            "lock",
            None,
            format!("plaintext is {} bytes, not {LOCK_PLAINTEXT_LEN}", plain.len()),
        ));
    }
    let len = usize::from(u16::from_le_bytes([plain[0], plain[1]]));
    let body =
        plain.get(2..2 + len).ok_or_else(|| Error::malformed("lock", Some(0), "record length beyond the plaintext"))?;
    if plain[2 + len..].iter().any(|&b| b != 0) {
        return Err(Error::malformed("lock", None, "non-zero padding"));
    }
    let record: LockRecord = encoding::decode(body, "lock")?;
    for (field, value, max) in [
        ("host name", &record.hostname, MAX_NAME),
        ("machine", &record.machine, MAX_NAME),
        ("operation", &record.operation, MAX_OPERATION),
    ] {
        if value.len() > max {
            return Err(Error::malformed("lock", None, format!("{field} is {} bytes, more than {max}", value.len())));
        }
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LockRecord {
        LockRecord {
            kind: LockKind::Shared,
            hostname: "phone".into(),
            machine: "b00t/pid:[4026531836]".into(),
            pid: 7,
            time: 1_764_115_200,
            operation: "backup".into(),
        }
    }

    #[test]
    fn round_trip_fixed_size_and_long_names_cut() {
        let key = SecretKey::from_bytes([9; 32]);
        let short = encode(&key, &record(), &[1; 12]).unwrap();
        let long_rec =
            LockRecord { hostname: "é".repeat(100), machine: "m".repeat(100), operation: "x".repeat(100), ..record() };
        let long = encode(&key, &long_rec, &[1; 12]).unwrap();
        assert_eq!(short.len(), long.len(), "the length does not depend on the names");
        assert_eq!(decode(&key, &short).unwrap(), record());
        let back = decode(&key, &long).unwrap();
        assert_eq!((back.hostname.len(), back.machine.len(), back.operation.len()), (64, 64, 32));
        assert!(back.hostname.chars().all(|c| c == 'é'), "cut at a character boundary");
    }

    #[test]
    fn any_flip_or_truncation_is_refused() {
        let key = SecretKey::from_bytes([9; 32]);
        let bytes = encode(&key, &record(), &[1; 12]).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&key, &bad).is_err(), "flip at {i}");
        }
        for n in 0..bytes.len() {
            assert!(decode(&key, &bytes[..n]).is_err(), "truncated to {n}");
        }
        let mut plain = encode_plaintext(&record()).unwrap();
        plain[200] = 1;
        assert!(decode_plaintext(&plain).is_err(), "non-zero padding");
        plain[200] = 0;
        plain[0] = 0xff;
        assert!(decode_plaintext(&plain).is_err(), "record length beyond the plaintext");
    }

    /// Found by the `lock` fuzz target: a hand-made plaintext with a 65-byte host name decoded,
    /// and re-encoding cut it, so the record did not survive a round trip.
    #[test]
    fn names_longer_than_a_writer_writes_are_refused() {
        let hand_made = |rec: &LockRecord| {
            let body = encoding::encode(rec).unwrap();
            let mut plain = u16::try_from(body.len()).unwrap().to_le_bytes().to_vec();
            plain.extend_from_slice(&body);
            plain.resize(LOCK_PLAINTEXT_LEN, 0);
            plain
        };
        let at_limit = LockRecord {
            hostname: "h".repeat(MAX_NAME),
            machine: "m".repeat(MAX_NAME),
            operation: "o".repeat(MAX_OPERATION),
            ..record()
        };
        assert_eq!(decode_plaintext(&hand_made(&at_limit)).unwrap(), at_limit);
        for (rec, field) in [
            (LockRecord { hostname: "h".repeat(MAX_NAME + 1), ..record() }, "host name"),
            (LockRecord { machine: "m".repeat(MAX_NAME + 1), ..record() }, "machine"),
            (LockRecord { operation: "o".repeat(MAX_OPERATION + 1), ..record() }, "operation"),
        ] {
            let err = decode_plaintext(&hand_made(&rec)).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}

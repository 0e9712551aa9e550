//! Tombstones (format-spec.md §5.15): the authenticated record that snapshots were forgotten
//! or keyslots removed on purpose.
//!
//! A client that remembers which snapshots and keyslots it has seen tells a provider that
//! deletes a snapshot, or puts a removed keyslot back, from a key holder who forgot or removed
//! it: the key holder wrote a tombstone first, and a provider cannot write one (it is sealed
//! under the metadata key). One file per `forget`, `repair snapshots`, `key remove` or
//! `key passwd`, named by the hash of its bytes like a snapshot file:
//!
//! ```text
//! file  = "PVTOMB" ‖ u16 version ‖ nonce (12) ‖ AES-256-GCM-SIV(meta_key, nonce, AD = first 8 bytes, plain)
//! plain = u32 record length L ‖ record (L bytes) ‖ zero padding (file length is a Padmé length)
//! ```

use serde::{Deserialize, Serialize};

use crate::crypto::{SecretKey, NONCE_LEN};
use crate::error::{Error, Result};
use crate::format::{encoding, PaddedRecordFile, MAGIC_TOMBSTONE};
use crate::id::SnapshotId;

/// Largest tombstone file a reader accepts.
pub const MAX_TOMBSTONE_FILE: u64 = 4 << 20;
/// Most snapshots plus keyslots one tombstone names.
pub const MAX_TOMBSTONE_ENTRIES: usize = 65_536;

/// Why the snapshots or keyslots of a tombstone went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TombstoneReason {
    /// `forget`: snapshots removed by id or by a keep policy.
    Forget,
    /// `repair snapshots`: a damaged snapshot replaced by its repaired copy.
    Repair,
    /// `key remove`, `key passwd`: keyslots removed; whoever held them can open no more.
    KeyRemoved,
}

/// A snapshot named by a tombstone: its id and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgottenSnapshot {
    /// The snapshot's id.
    pub id: SnapshotId,
    /// Its sequence number (0 when the snapshot could not be read).
    pub sequence: u64,
}

/// One tombstone record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TombstoneRecord {
    /// The repository it belongs to: a tombstone copied from another repository under the
    /// same master key is refused.
    pub repo_id: [u8; 16],
    /// When it was written, seconds since the Unix epoch.
    pub time_secs: i64,
    /// Host name of the machine that wrote it.
    pub hostname: String,
    /// Why.
    pub reason: TombstoneReason,
    /// Snapshots removed on purpose.
    pub snapshots: Vec<ForgottenSnapshot>,
    /// Keyslot ids (the 16 bytes behind `keys/<32 hex>`) removed on purpose.
    pub keyslots: Vec<[u8; 16]>,
}

impl TombstoneRecord {
    fn validate(&self) -> Result<()> {
        if self.snapshots.len() + self.keyslots.len() > MAX_TOMBSTONE_ENTRIES {
            return Err(Error::malformed("tombstone", None, "names too many snapshots and keyslots"));
        }
        if self.hostname.len() > 4096 {
            return Err(Error::malformed("tombstone", None, "host name too long"));
        }
        Ok(())
    }
}

/// Encodes a tombstone file's plaintext without its padding: `u32 length ‖ record`.
///
/// # Errors
/// [`Error::InvalidArgument`] when the record breaks a rule of [`decode_plaintext`].
pub fn encode_plaintext(record: &TombstoneRecord) -> Result<Vec<u8>> {
    record.validate().map_err(|e| Error::InvalidArgument(e.to_string()))?;
    FILE.plaintext(&encoding::encode(record)?)
}

/// The tombstone file's envelope and bounds.
const FILE: PaddedRecordFile = PaddedRecordFile {
    magic: MAGIC_TOMBSTONE,
    what: "tombstone",
    limit_what: "tombstone file length",
    limit: MAX_TOMBSTONE_FILE,
};

/// Encrypts a tombstone file.
pub(crate) fn encode(meta_key: &SecretKey, record: &TombstoneRecord, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>> {
    FILE.seal(meta_key, encode_plaintext(record)?, nonce)
}

/// Decrypts and checks a tombstone file.
///
/// # Errors
/// [`Error::Malformed`], [`Error::UnsupportedVersion`], [`Error::Integrity`] or
/// [`Error::LimitExceeded`] when the file is damaged, of another version, forged, or too big.
pub fn decode(meta_key: &SecretKey, bytes: &[u8]) -> Result<TombstoneRecord> {
    decode_plaintext(&FILE.open(meta_key, bytes)?)
}

/// Decodes the decrypted body of a tombstone file.
///
/// # Errors
/// [`Error::Malformed`] as for [`decode`].
pub fn decode_plaintext(plain: &[u8]) -> Result<TombstoneRecord> {
    let record: TombstoneRecord = encoding::decode(FILE.record(plain)?, "tombstone")?;
    record.validate()?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeySet, MasterKey};
    use crate::id::Id;

    fn record() -> TombstoneRecord {
        TombstoneRecord {
            repo_id: [8; 16],
            time_secs: 1_764_115_200,
            hostname: "phone".into(),
            reason: TombstoneReason::Forget,
            snapshots: vec![ForgottenSnapshot { id: SnapshotId(Id([7; 32])), sequence: 3 }],
            keyslots: vec![[9; 16]],
        }
    }

    #[test]
    fn round_trip_padded_and_authenticated() {
        let keys = KeySet::derive(&MasterKey::from_bytes([1; 32]));
        let bytes = encode(keys.meta_key(), &record(), &[2; 12]).unwrap();
        let padme = crate::format::padding::padme;
        assert_eq!(bytes.len() as u64, padme(bytes.len() as u64), "a Padmé length");
        assert_eq!(decode(keys.meta_key(), &bytes).unwrap(), record());
        let other = KeySet::derive(&MasterKey::from_bytes([3; 32]));
        assert_eq!(decode(other.meta_key(), &bytes).unwrap_err().kind(), crate::ErrorKind::Integrity);
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode(keys.meta_key(), &flipped).is_err());
        assert!(decode(keys.meta_key(), &bytes[..bytes.len() - 1]).is_err());
    }
}

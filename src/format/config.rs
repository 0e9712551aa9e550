//! The repository config file (format-spec.md §5.10).
//!
//! ```text
//! config = "PVCONF" ‖ u16 version ‖ repo id (16) ‖ nonce (12) ‖ AES-256-GCM-SIV(meta_key, nonce, AD = first 24 bytes, settings)
//! ```
//! The first 24 bytes are readable without a key: a reader can tell a packvault repository,
//! its format version and its id before it has a key.

use serde::{Deserialize, Serialize};

use crate::crypto::{SecretKey, NONCE_LEN};
use crate::error::{Error, Result};
use crate::format::{check_header, encoding, header, open_envelope, seal_envelope, HEADER_LEN, MAGIC_CONFIG};
use crate::id::Id;

/// Length of the plaintext prefix (header and repository id).
pub const PREFIX_LEN: usize = HEADER_LEN + 16;
/// Largest config file a reader accepts.
pub const MAX_CONFIG_FILE: usize = 64 << 10;
/// Name, in the `keys/` folder, of the config a key rotation switches to (format-spec.md §4,
/// §8 "Key rotation"): the same layout as `config`, read only while `config` is absent.
/// Keyslot readers skip it (its name is not 32 hex digits).
pub const NEXT_CONFIG: &str = "next-config";

/// Chunker algorithm 1: FastCDC 2020 with a keyed gear table (format-spec.md §5.3).
pub const CHUNKER_FASTCDC_2020: u8 = 1;

/// How files are cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Algorithm; only [`CHUNKER_FASTCDC_2020`] exists.
    pub algorithm: u8,
    /// Smallest chunk, except a file's last.
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
    /// FastCDC normalization level, 0–3.
    pub normalization: u8,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            algorithm: CHUNKER_FASTCDC_2020,
            min_size: 16 << 10,
            avg_size: 64 << 10,
            max_size: 256 << 10,
            normalization: 1,
        }
    }
}

impl ChunkerParams {
    /// Checks the parameters against the bounds of format-spec.md §5.3.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the broken bound.
    pub fn validate(&self) -> Result<()> {
        let err = |d: String| Err(Error::InvalidArgument(format!("chunker parameters: {d}")));
        if self.algorithm != CHUNKER_FASTCDC_2020 {
            return err(format!("unknown chunker algorithm {}", self.algorithm));
        }
        let (min, avg, max) = (self.min_size, self.avg_size, self.max_size);
        if !(64..=(1 << 20)).contains(&min) || !(256..=(4 << 20)).contains(&avg) || !(1024..=(16 << 20)).contains(&max)
        {
            return err(format!("sizes {min}/{avg}/{max} outside 64..1 MiB / 256..4 MiB / 1 KiB..16 MiB"));
        }
        if min % 2 != 0 || avg % 2 != 0 || max % 2 != 0 {
            return err(format!("sizes {min}/{avg}/{max} must be even"));
        }
        if !(min < avg && avg < max) {
            return err(format!("sizes {min}/{avg}/{max} must satisfy min < avg < max"));
        }
        if self.normalization > 3 {
            return err(format!("normalization level {} above 3", self.normalization));
        }
        Ok(())
    }
}

/// The encrypted settings of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Id of the master key; a keyslot that unwraps to another key is refused.
    pub master_id: Id,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// zstd level for data and tree blobs (−7 to 22).
    pub zstd_level: i32,
    /// Target pack size in bytes (1 MiB to 512 MiB).
    pub pack_target_size: u32,
}

impl Settings {
    /// Checks every field's bounds.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the broken bound.
    pub fn validate(&self) -> Result<()> {
        self.chunker.validate()?;
        if !(-7..=22).contains(&self.zstd_level) {
            return Err(Error::InvalidArgument(format!("zstd level {} outside -7..=22", self.zstd_level)));
        }
        if !((1 << 20)..=(512 << 20)).contains(&self.pack_target_size) {
            return Err(Error::InvalidArgument(format!(
                "pack target size {} outside 1 MiB..=512 MiB",
                self.pack_target_size
            )));
        }
        Ok(())
    }
}

/// The decoded config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Random repository id, set at `init`.
    pub repo_id: [u8; 16],
    /// The settings.
    pub settings: Settings,
}

/// Encrypts the config file.
pub(crate) fn encode(meta_key: &SecretKey, config: &ConfigFile, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>> {
    config.settings.validate()?;
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[..HEADER_LEN].copy_from_slice(&header(MAGIC_CONFIG));
    prefix[HEADER_LEN..].copy_from_slice(&config.repo_id);
    Ok(seal_envelope(meta_key, &prefix, nonce, encoding::encode(&config.settings)?))
}

/// Reads the key-less prefix: checks magic and version, returns the repository id.
///
/// # Errors
/// [`Error::NotARepository`] when the magic is wrong, [`Error::UnsupportedVersion`] for
/// another version, [`Error::Malformed`] when truncated.
pub fn decode_prefix(bytes: &[u8]) -> Result<[u8; 16]> {
    if bytes.len() < 6 || bytes[..6] != MAGIC_CONFIG {
        return Err(Error::NotARepository("the config file does not start with the packvault magic".into()));
    }
    check_header(bytes, MAGIC_CONFIG, "config")?;
    if bytes.len() < PREFIX_LEN {
        return Err(Error::malformed("config", Some(bytes.len() as u64), "truncated before the repository id"));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[HEADER_LEN..PREFIX_LEN]);
    Ok(id)
}

/// Decrypts and checks the config file.
///
/// # Errors
/// As [`decode_prefix`]; [`Error::Integrity`] when authentication fails;
/// [`Error::Malformed`] when the settings do not decode or are out of bounds.
pub fn decode(meta_key: &SecretKey, bytes: &[u8]) -> Result<ConfigFile> {
    if bytes.len() > MAX_CONFIG_FILE {
        return Err(Error::LimitExceeded {
            what: "config file length",
            found: bytes.len() as u64,
            limit: MAX_CONFIG_FILE as u64,
        });
    }
    let repo_id = decode_prefix(bytes)?;
    let plain = open_envelope(meta_key, bytes, PREFIX_LEN, "config")?;
    Ok(ConfigFile { repo_id, settings: decode_settings(&plain)? })
}

/// Decodes and checks the decrypted settings record.
///
/// # Errors
/// [`Error::Malformed`] when the record does not decode or is out of bounds.
pub fn decode_settings(plain: &[u8]) -> Result<Settings> {
    let settings: Settings = encoding::decode(plain, "config settings")?;
    settings.validate().map_err(|e| Error::malformed("config settings", None, e.to_string()))?;
    Ok(settings)
}

/// Encodes the settings record (the config's plaintext).
///
/// # Errors
/// [`Error::InvalidArgument`] when the settings are out of bounds.
pub fn encode_settings(settings: &Settings) -> Result<Vec<u8>> {
    settings.validate()?;
    encoding::encode(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeySet, MasterKey};

    #[test]
    fn round_trip_and_bounds() {
        let m = MasterKey::from_bytes([1; 32]);
        let ks = KeySet::derive(&m);
        let cfg = ConfigFile {
            repo_id: [9; 16],
            settings: Settings {
                master_id: m.id(),
                chunker: ChunkerParams::default(),
                zstd_level: 3,
                pack_target_size: 16 << 20,
            },
        };
        let bytes = encode(ks.meta_key(), &cfg, &[0; 12]).unwrap();
        assert_eq!(decode_prefix(&bytes).unwrap(), [9; 16]);
        assert_eq!(decode(ks.meta_key(), &bytes).unwrap(), cfg);
        let mut other_repo = bytes.clone();
        other_repo[10] ^= 1;
        assert!(decode(ks.meta_key(), &other_repo).unwrap_err().is_integrity());
        assert!(matches!(decode_prefix(b"hello world, not a repository"), Err(Error::NotARepository(_))));
        let mut v3 = bytes.clone();
        v3[6] = 3;
        assert!(matches!(decode(ks.meta_key(), &v3), Err(Error::UnsupportedVersion { found: 3, .. })));

        let mut bad = cfg.settings.clone();
        bad.chunker.min_size = 17;
        assert!(bad.validate().is_err());
        bad = cfg.settings.clone();
        bad.chunker.avg_size = bad.chunker.max_size;
        assert!(bad.validate().is_err());
        bad = cfg.settings.clone();
        bad.zstd_level = 40;
        assert!(bad.validate().is_err());
    }
}

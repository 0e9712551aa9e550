//! PIN vaults: the rate limiter that makes a short PIN usable.
//!
//! A 4–6 digit PIN falls to offline guessing whatever the KDF, so a PIN keyslot's wrapping key
//! also needs a 32-byte secret that only a [`PinVault`] holds and that it releases only to
//! someone who proves the PIN — counting failures and destroying the secret after
//! [`MAX_PIN_ATTEMPTS`] wrong PINs in a row. In production the vault is the app's HSM, secure
//! enclave or server-side enclave (Signal's SVR is one such design); the storage provider must
//! not be able to read it.
//!
//! The proof is `auth = DERIVE("packvault 2026-11-26 v1 pin vault auth", ARGON2ID(pin, salt, …))`
//! (format-spec.md §5.11.3): the vault sees neither the PIN nor the wrapping key. Each
//! enrollment is also bound to the slot's public KDF inputs (`binding`): a release with another
//! binding is refused *without* counting an attempt, so whoever controls the repository
//! cannot burn the user's attempts by planting PIN slots with altered salts.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroize;

use crate::crypto::{ct_eq, random_array, SecretKey};
use crate::error::{Error, Location, Result, ResultExt};

/// Wrong PINs in a row after which a vault destroys the secret.
pub const MAX_PIN_ATTEMPTS: u32 = 10;

/// A rate-limiting holder of PIN keyslot secrets.
pub trait PinVault: Send + Sync {
    /// Makes and stores a new 32-byte secret guarded by `auth` and bound to `binding`; returns
    /// its enrollment id and the secret.
    ///
    /// # Errors
    /// When the vault cannot store the enrollment.
    fn enroll(&self, binding: &[u8; 32], auth: &[u8; 32]) -> Result<([u8; 16], SecretKey)>;

    /// Returns the secret of enrollment `id`. First, `binding` must equal the enrollment's:
    /// otherwise the request is refused and **no attempt is counted**. Then, when `auth`
    /// matches, the secret is returned and the failure count reset; otherwise a failure is
    /// counted, and at [`MAX_PIN_ATTEMPTS`] failures in a row the secret is destroyed for good.
    ///
    /// # Errors
    /// [`Error::Integrity`] for another binding, [`Error::WrongPin`] with the attempts left,
    /// [`Error::PinDestroyed`] once destroyed, [`Error::NotFound`] for an unknown id.
    fn release(&self, id: &[u8; 16], binding: &[u8; 32], auth: &[u8; 32]) -> Result<SecretKey>;

    /// Wrong PINs in a row so far for enrollment `id`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id.
    fn failed_attempts(&self, id: &[u8; 16]) -> Result<u32>;

    /// Forgets enrollment `id` (when its keyslot is removed).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id.
    fn remove(&self, id: &[u8; 16]) -> Result<()>;
}

/// **A test vault, not an HSM.** It keeps the PIN proofs and secrets in a plain local file:
/// anyone who can read that file can guess the PIN offline in seconds. It exists for tests,
/// demos and `packtool --vault PATH`; a real deployment puts a [`PinVault`] in hardware or an
/// enclave that enforces the attempt limit.
#[derive(Debug)]
pub struct FileVault {
    path: PathBuf,
    lock: Mutex<()>,
}

const MAGIC: &[u8; 8] = b"PVVAULT2";
const RECORD: usize = 16 + 32 + 32 + 32 + 4 + 1;

struct Record {
    id: [u8; 16],
    binding: [u8; 32],
    auth: [u8; 32],
    secret: [u8; 32],
    failures: u32,
    destroyed: bool,
}

impl Drop for Record {
    fn drop(&mut self) {
        self.secret.zeroize();
        self.auth.zeroize();
    }
}

impl FileVault {
    /// A vault kept in the file `path` (created on first enrollment).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> FileVault {
        FileVault { path: path.into(), lock: Mutex::new(()) }
    }

    /// The vault file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Result<Vec<Record>> {
        let mut bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::Io(e).at(Location::Path(self.path.clone()))),
        };
        let bad = || {
            Error::malformed("PIN vault file", None, "not a packvault test vault").at(Location::Path(self.path.clone()))
        };
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC || (bytes.len() - MAGIC.len()) % RECORD != 0 {
            bytes.zeroize();
            return Err(bad());
        }
        let records = bytes[MAGIC.len()..]
            .chunks_exact(RECORD)
            .map(|r| Record {
                id: r[..16].try_into().expect("16 bytes"),
                binding: r[16..48].try_into().expect("32 bytes"),
                auth: r[48..80].try_into().expect("32 bytes"),
                secret: r[80..112].try_into().expect("32 bytes"),
                failures: u32::from_le_bytes(r[112..116].try_into().expect("4 bytes")),
                destroyed: r[116] != 0,
            })
            .collect();
        bytes.zeroize();
        Ok(records)
    }

    fn save(&self, records: &[Record]) -> Result<()> {
        let mut bytes = MAGIC.to_vec();
        for r in records {
            bytes.extend_from_slice(&r.id);
            bytes.extend_from_slice(&r.binding);
            bytes.extend_from_slice(&r.auth);
            bytes.extend_from_slice(&r.secret);
            bytes.extend_from_slice(&r.failures.to_le_bytes());
            bytes.push(u8::from(r.destroyed));
        }
        let loc = || Location::Path(self.path.clone());
        let tmp = self.path.with_extension(format!("tmp{}", crate::id::hex_encode(&random_array::<4>()?)));
        let result = (|| -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            // Owner-only: the file holds PIN proofs and secrets.
            let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        bytes.zeroize();
        result.at(loc)
    }
}

impl PinVault for FileVault {
    fn enroll(&self, binding: &[u8; 32], auth: &[u8; 32]) -> Result<([u8; 16], SecretKey)> {
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut records = self.load()?;
        let record = Record {
            id: random_array()?,
            binding: *binding,
            auth: *auth,
            secret: random_array()?,
            failures: 0,
            destroyed: false,
        };
        let out = (record.id, SecretKey::from_bytes(record.secret));
        records.push(record);
        self.save(&records)?;
        Ok(out)
    }

    fn release(&self, id: &[u8; 16], binding: &[u8; 32], auth: &[u8; 32]) -> Result<SecretKey> {
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut records = self.load()?;
        let r =
            records.iter_mut().find(|r| r.id == *id).ok_or_else(|| Error::NotFound("PIN vault enrollment".into()))?;
        if r.binding != *binding {
            return Err(Error::Integrity(
                "the PIN keyslot does not match its vault enrollment (the slot was altered); no attempt counted".into(),
            ));
        }
        if r.destroyed {
            return Err(Error::PinDestroyed);
        }
        if ct_eq(&r.auth, auth) {
            let secret = SecretKey::from_bytes(r.secret);
            if r.failures != 0 {
                r.failures = 0;
                self.save(&records)?;
            }
            return Ok(secret);
        }
        r.failures += 1;
        let left = MAX_PIN_ATTEMPTS.saturating_sub(r.failures);
        if left == 0 {
            r.destroyed = true;
            r.secret.zeroize();
        }
        self.save(&records)?;
        Err(if left == 0 { Error::PinDestroyed } else { Error::WrongPin { attempts_left: left } })
    }

    fn failed_attempts(&self, id: &[u8; 16]) -> Result<u32> {
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.load()?
            .iter()
            .find(|r| r.id == *id)
            .map(|r| r.failures)
            .ok_or_else(|| Error::NotFound("PIN vault enrollment".into()))
    }

    fn remove(&self, id: &[u8; 16]) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut records = self.load()?;
        let before = records.len();
        records.retain(|r| r.id != *id);
        if records.len() == before {
            return Err(Error::NotFound("PIN vault enrollment".into()));
        }
        self.save(&records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_failures_resets_on_success_and_destroys_after_ten() {
        let dir = tempfile::tempdir().unwrap();
        let v = FileVault::new(dir.path().join("vault"));
        let (id, secret) = v.enroll(&[5; 32], &[1; 32]).unwrap();
        // Another binding: refused, and not counted.
        for _ in 0..20 {
            assert!(matches!(v.release(&id, &[6; 32], &[2; 32]), Err(Error::Integrity(_))));
        }
        assert_eq!(v.failed_attempts(&id).unwrap(), 0);
        assert_eq!(v.release(&id, &[5; 32], &[1; 32]).unwrap(), secret);
        assert!(matches!(v.release(&id, &[5; 32], &[2; 32]), Err(Error::WrongPin { attempts_left: 9 })));
        assert_eq!(v.failed_attempts(&id).unwrap(), 1);
        assert_eq!(v.release(&id, &[5; 32], &[1; 32]).unwrap(), secret);
        assert_eq!(v.failed_attempts(&id).unwrap(), 0, "a right PIN resets the count");
        for left in (1..10).rev() {
            assert!(
                matches!(v.release(&id, &[5; 32], &[2; 32]), Err(Error::WrongPin { attempts_left }) if attempts_left == left)
            );
        }
        assert!(matches!(v.release(&id, &[5; 32], &[2; 32]), Err(Error::PinDestroyed)));
        assert!(matches!(v.release(&id, &[5; 32], &[1; 32]), Err(Error::PinDestroyed)), "even the right PIN");
        let raw = fs::read(v.path()).unwrap();
        assert!(!raw.windows(32).any(|w| w == secret.bytes()), "the secret is gone from the file");
        assert!(v.release(&[9; 16], &[5; 32], &[1; 32]).is_err());
        v.remove(&id).unwrap();
        assert!(v.failed_attempts(&id).is_err());
    }
}

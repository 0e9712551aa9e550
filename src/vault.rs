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
//!
//! **Count, then compare.** A vault that compares first and writes the count afterwards gives
//! the answer away before the attempt is on record: parallel requests all read the same count
//! (40 parallel wrong PINs against the first version of [`FileVault`] got 28 answers before the
//! secret was destroyed, with a limit of 10), and a write that fails after the comparison lets
//! a guess go uncounted while its outcome (error or secret) already told the guesser whether it
//! was right. So every release first records the attempt durably, under a lock that serializes
//! the requests for the record, and only then looks at `auth`; a vault that cannot record the
//! attempt refuses it. [`PinVault::release`] states the rules every vault must keep.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroize;

use crate::crypto::{ct_eq, random_array, SecretKey};
use crate::error::{Error, Location, Result, ResultExt};

/// Wrong PINs in a row after which a vault destroys the secret.
pub const MAX_PIN_ATTEMPTS: u32 = 10;

/// A rate-limiting holder of PIN keyslot secrets.
///
/// # Rules every vault must keep
///
/// A vault is only as strong as its attempt counter. For each enrollment:
///
/// 1. **Count first.** A release counts the attempt *before* it compares `auth`, and resets the
///    count only after a match.
/// 2. **Durable.** The count is on stable storage (written and flushed, for a file: written to a
///    temporary file, fsynced, renamed, and the folder fsynced) before the comparison; a crash
///    or power cut after an answer never loses the attempt that produced it.
/// 3. **Atomic.** A reader sees the record before or after an update, never half of it.
/// 4. **Serialized per record.** Concurrent releases of one enrollment (threads, processes,
///    servers) are ordered one after the other, so each sees the count the previous one wrote;
///    N parallel guesses cost N attempts.
/// 5. **Destroy after the limit.** At [`MAX_PIN_ATTEMPTS`] failures in a row the secret is
///    destroyed for good (overwritten, not flagged), and a record found at the limit is
///    destroyed before anything else is done.
/// 6. **Never answer before the attempt is recorded.** When the count cannot be recorded (full
///    or read-only disk, lost connection), the attempt is refused with an error that does not
///    depend on `auth`; it never falls back to comparing.
///
/// A request whose `binding` differs from the enrollment's is refused without counting (see the
/// module docs) — it is not an attempt, as it cannot succeed.
pub trait PinVault: Send + Sync {
    /// Makes and stores a new 32-byte secret guarded by `auth` and bound to `binding`; returns
    /// its enrollment id and the secret.
    ///
    /// # Errors
    /// When the vault cannot store the enrollment.
    fn enroll(&self, binding: &[u8; 32], auth: &[u8; 32]) -> Result<([u8; 16], SecretKey)>;

    /// Returns the secret of enrollment `id`. First, `binding` must equal the enrollment's:
    /// otherwise the request is refused and **no attempt is counted**. Then the attempt is
    /// counted and recorded durably; only then is `auth` compared: a match returns the secret
    /// and resets the count (durably), a mismatch leaves the attempt counted, and at
    /// [`MAX_PIN_ATTEMPTS`] failures in a row the secret is destroyed for good. See the trait's
    /// rules.
    ///
    /// # Errors
    /// [`Error::Integrity`] for another binding, [`Error::WrongPin`] with the attempts left,
    /// [`Error::PinDestroyed`] once destroyed, [`Error::NotFound`] for an unknown id, and the
    /// vault's storage error when the attempt (or the reset after a match) cannot be recorded:
    /// the attempt is then refused, whatever the PIN.
    fn release(&self, id: &[u8; 16], binding: &[u8; 32], auth: &[u8; 32]) -> Result<SecretKey>;

    /// Wrong PINs in a row so far for enrollment `id` (an attempt in progress counts).
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
/// **anyone who can read that file can guess the PIN offline** in seconds, and anyone who can
/// write it can reset the count. It exists for tests, demos and `packtool`'s test vault; a real
/// deployment puts a [`PinVault`] in hardware or an enclave that enforces the attempt limit.
///
/// It does keep the counting rules of [`PinVault`], so that tests exercise them: every
/// operation holds an exclusive `flock` on the lock file `<path>.lock` (the vault file itself
/// is replaced by rename, so it cannot carry the lock), which serializes threads and processes
/// alike; every change is written to `<path>.tmp`, fsynced, renamed over `<path>`, and the
/// folder fsynced. A release counts the attempt that way before it compares the PIN proof.
#[derive(Debug)]
pub struct FileVault {
    path: PathBuf,
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

impl Record {
    /// Destroys the secret for good: the next save no longer holds it.
    fn destroy(&mut self) {
        self.destroyed = true;
        self.secret.zeroize();
        self.auth.zeroize();
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.secret.zeroize();
        self.auth.zeroize();
    }
}

/// The exclusive lock on a vault, released when dropped (closing the descriptor drops it).
struct Locked {
    _file: File,
}

/// `path` with `suffix` appended to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

impl FileVault {
    /// A vault kept in the file `path` (created on first enrollment; its folder must exist).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> FileVault {
        FileVault { path: path.into() }
    }

    /// The vault file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the exclusive lock that serializes every operation on this vault file, across
    /// threads and processes: a new descriptor each time, since `flock` locks belong to an
    /// open file description.
    fn lock(&self) -> Result<Locked> {
        let path = beside(&self.path, ".lock");
        let loc = || Location::Path(path.clone());
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .at(loc)?;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => return Ok(Locked { _file: file }),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::Io(e.into()).at(Location::Path(path))),
            }
        }
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

    /// Replaces the vault file durably and atomically: `<path>.tmp` (any stale one removed
    /// first; only the lock holder writes it), fsync, rename, fsync of the folder. Returns
    /// only once the new content survives a crash; any failure is an error.
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
        let tmp = beside(&self.path, ".tmp");
        let folder = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let written = (|| -> std::io::Result<()> {
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            // Owner-only: the file holds PIN proofs and secrets.
            let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            Ok(())
        })();
        bytes.zeroize();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::Io(e).at(Location::Path(tmp)));
        }
        fs::rename(&tmp, &self.path).at(|| Location::Path(self.path.clone()))?;
        File::open(folder).and_then(|d| d.sync_all()).at(|| Location::Path(folder.to_path_buf()))
    }
}

impl PinVault for FileVault {
    fn enroll(&self, binding: &[u8; 32], auth: &[u8; 32]) -> Result<([u8; 16], SecretKey)> {
        let _lock = self.lock()?;
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
        let _lock = self.lock()?;
        let mut records = self.load()?;
        let at =
            records.iter().position(|r| r.id == *id).ok_or_else(|| Error::NotFound("PIN vault enrollment".into()))?;
        let r = &mut records[at];
        if r.binding != *binding {
            return Err(Error::Integrity(
                "the PIN keyslot does not match its vault enrollment (the slot was altered); no attempt counted".into(),
            ));
        }
        if r.destroyed {
            return Err(Error::PinDestroyed);
        }
        if r.failures >= MAX_PIN_ATTEMPTS {
            // The limit was reached but the destruction not recorded (a crash in between).
            r.destroy();
            self.save(&records)?;
            return Err(Error::PinDestroyed);
        }
        // Count the attempt, durably, before looking at `auth`; a failed save refuses it.
        r.failures += 1;
        let failures = r.failures;
        self.save(&records)?;
        let r = &mut records[at];
        if ct_eq(&r.auth, auth) {
            r.failures = 0;
            let secret = SecretKey::from_bytes(r.secret);
            // The success is an answer too: it stands only once the reset is on record.
            self.save(&records)?;
            return Ok(secret);
        }
        if failures >= MAX_PIN_ATTEMPTS {
            r.destroy();
            self.save(&records)?;
            return Err(Error::PinDestroyed);
        }
        Err(Error::WrongPin { attempts_left: MAX_PIN_ATTEMPTS - failures })
    }

    fn failed_attempts(&self, id: &[u8; 16]) -> Result<u32> {
        let _lock = self.lock()?;
        self.load()?
            .iter()
            .find(|r| r.id == *id)
            .map(|r| r.failures)
            .ok_or_else(|| Error::NotFound("PIN vault enrollment".into()))
    }

    fn remove(&self, id: &[u8; 16]) -> Result<()> {
        let _lock = self.lock()?;
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

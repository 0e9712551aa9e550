//! The library's error type.
//!
//! Policy: the library has exactly one public error type, [`Error`]. Its variants keep the
//! failure *classes* apart (malformed bytes, failed authentication, unsupported version, wrong
//! key, missing object, I/O, exceeded limit) so that callers can react to the class without
//! parsing messages. Context (which repository file, which pack and offset, which local path) is
//! added by wrapping an error in [`Error::At`], never by formatting a new string, so the class of
//! the innermost error survives (see [`Error::kind`]).
//!
//! Decoders never panic on input bytes: every length read from the repository is checked before
//! it is used, and an error names the structure and, where it helps, the byte offset.
//!
//! Error messages never contain key material, passphrases or decrypted content, and speak of
//! the library (an option of [`OpenOptions`](crate::OpenOptions), a method of
//! [`Repository`](crate::Repository)), never of a command-line tool's flags: a front end adds
//! its own advice, by [`Error::kind`].
//!
//! Module-internal errors (an id that does not parse: [`IdParseError`]) are their own small
//! types and convert into [`Error`] at the boundary through `From`.

use std::fmt;
use std::path::PathBuf;

use crate::id::{Id, IdParseError, PackId, SlotId, SnapshotId};

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in packvault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes read from the repository (or from a local cache) do not follow `format-spec.md`.
    #[error("malformed {what}{}: {detail}", offset.map(|o| format!(" at offset {o}")).unwrap_or_default())]
    Malformed {
        /// The structure being decoded, e.g. "pack trailer".
        what: &'static str,
        /// Byte offset inside the structure, where known.
        offset: Option<u64>,
        /// What exactly is wrong.
        detail: String,
    },
    /// An authentication tag, a chunk id or a content hash did not match: the data was changed
    /// after it was written, or it belongs to another repository.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// A structure declares a format version this build cannot read.
    #[error("unsupported {what} version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The structure, e.g. "pack".
        what: &'static str,
        /// The version found on disk.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// No keyslot of the repository opens with the given credentials.
    #[error("wrong passphrase: no keyslot of this repository opens with it")]
    WrongPassphrase,
    /// No recovery-code keyslot opens with this (well-formed) recovery code: it belongs to
    /// another repository or was revoked.
    #[error("wrong recovery code: no keyslot of this repository opens with it (it may have been replaced)")]
    WrongRecoveryCode,
    /// A recovery code is mistyped: bad character, wrong length or checksum mismatch.
    #[error("recovery code: {0}")]
    RecoveryCodeInvalid(String),
    /// The PIN is wrong; the vault counts the attempt.
    #[error("wrong PIN ({attempts_left} attempts left before the PIN keyslot is destroyed)")]
    WrongPin {
        /// Attempts left before the vault destroys its secret.
        attempts_left: u32,
    },
    /// The vault destroyed the PIN keyslot's secret (too many wrong PINs): this slot can never
    /// open again.
    #[error("the PIN keyslot is destroyed after too many wrong PINs; use a passphrase or the recovery code")]
    PinDestroyed,
    /// The repository shows an older state than this client has already seen: the provider
    /// may be hiding newer snapshots. Accepted with
    /// [`OpenOptions::allow_rollback`](crate::OpenOptions::allow_rollback), after an intended
    /// restore of the repository from an old copy.
    #[error("repository rolled back: its newest snapshot has sequence {found}, but this client has seen sequence {seen} (snapshot {seen_snapshot}); the provider may be hiding newer snapshots (accept it only if you restored the repository from an old copy yourself)")]
    RolledBack {
        /// Newest sequence number in the repository now.
        found: u64,
        /// Newest sequence number this client saw before.
        seen: u64,
        /// Short id of the snapshot seen with that sequence.
        seen_snapshot: String,
    },
    /// The repository's history forks from what this client has seen: the newest snapshot it
    /// saw is gone, with no tombstone, and another snapshot holds its sequence number. The
    /// provider may be showing different devices different copies of the repository.
    #[error("repository history forked: this client saw snapshot {seen_snapshot} at sequence {sequence}; it is gone without a record of its removal and snapshot {found_snapshot} holds that sequence now (the provider may be serving another copy of the repository)")]
    Forked {
        /// The sequence number.
        sequence: u64,
        /// Short id of the snapshot this client saw there.
        seen_snapshot: String,
        /// Short id of the snapshot the repository shows there now.
        found_snapshot: String,
    },
    /// The repository at a location is not the one this client pinned there (another
    /// repository id or another master key): refused before any key derivation runs. After an
    /// intended replacement, [`forget_pin`](crate::forget_pin) makes the next open a first
    /// contact.
    #[error("the repository at {location} is not the one this client knows there: its fingerprint is {found}, the pinned one {pinned} (the provider may have swapped it; if you replaced it yourself, forget its pin)")]
    RepositoryReplaced {
        /// The store's location.
        location: String,
        /// Fingerprint pinned at first contact.
        pinned: String,
        /// Fingerprint of what the location holds now.
        found: String,
    },
    /// The repository's fingerprint is not the one the caller expected.
    #[error("the repository's fingerprint is {found}, not the expected {expected}")]
    FingerprintMismatch {
        /// The fingerprint the caller gave.
        expected: String,
        /// The repository's (or, before a key opened, that of every keyslot).
        found: String,
    },
    /// The credentials open only a keyslot that was removed (this client removed it or saw
    /// it removed, or a tombstone names it): it was put back, and is refused.
    #[error("keyslot {0} was removed and has reappeared; it no longer opens this repository")]
    KeyslotRevoked(SlotId),
    /// The store holds no repository at this location.
    #[error("not a packvault repository: {0}")]
    NotARepository(String),
    /// A repository file, snapshot or path does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A create-only write found the name already taken.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A value is larger than the format or a configured bound allows.
    #[error("{what} is {found}, above the limit of {limit}")]
    LimitExceeded {
        /// What was too large.
        what: &'static str,
        /// The value found.
        found: u64,
        /// The bound.
        limit: u64,
    },
    /// Another client holds a conflicting lock on the repository (a running prune blocks
    /// backups; a running backup blocks prune).
    #[error("repository is locked: {0}; wait for it to finish, or remove a lock left by a crashed client")]
    Locked(String),
    /// The caller passed an argument that cannot work (bad settings, an odd path, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caller cancelled the operation (a [`CancelToken`](crate::CancelToken)). Nothing was
    /// committed: a cancelled backup wrote no snapshot.
    #[error("cancelled")]
    Cancelled,
    /// An operating-system I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A blob is compressed with a dictionary (format-spec.md §5.17) that cannot be had: the
    /// file `dicts/<id>` is missing, damaged, forged or too large. Every blob that uses the
    /// dictionary fails this way; blobs that do not are unaffected. [`Error::kind`] is the
    /// inner error's ([`ErrorKind::NotFound`] for a missing dictionary,
    /// [`ErrorKind::Integrity`] for a damaged one).
    #[error("dictionary {dictionary}: {error}")]
    Dictionary {
        /// The dictionary's id.
        dictionary: Id,
        /// Why it cannot be had.
        error: Box<Error>,
    },
    /// Another error, with the place where it happened. The message includes the inner
    /// error's, so the inner error is not repeated as a `source`.
    #[error("{at}: {error}")]
    At {
        /// Where the error happened.
        at: Location,
        /// The error itself.
        error: Box<Error>,
    },
}

/// The class of an [`Error`], looking through [`Error::At`] wrappers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::Malformed`].
    Malformed,
    /// See [`Error::Integrity`].
    Integrity,
    /// See [`Error::UnsupportedVersion`].
    UnsupportedVersion,
    /// See [`Error::WrongPassphrase`].
    WrongPassphrase,
    /// See [`Error::WrongRecoveryCode`].
    WrongRecoveryCode,
    /// See [`Error::RecoveryCodeInvalid`].
    RecoveryCodeInvalid,
    /// See [`Error::WrongPin`].
    WrongPin,
    /// See [`Error::PinDestroyed`].
    PinDestroyed,
    /// See [`Error::RolledBack`].
    RolledBack,
    /// See [`Error::Forked`].
    Forked,
    /// See [`Error::RepositoryReplaced`].
    RepositoryReplaced,
    /// See [`Error::FingerprintMismatch`].
    FingerprintMismatch,
    /// See [`Error::KeyslotRevoked`].
    KeyslotRevoked,
    /// See [`Error::NotARepository`].
    NotARepository,
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::AlreadyExists`].
    AlreadyExists,
    /// See [`Error::LimitExceeded`].
    LimitExceeded,
    /// See [`Error::Locked`].
    Locked,
    /// See [`Error::InvalidArgument`].
    InvalidArgument,
    /// See [`Error::Cancelled`].
    Cancelled,
    /// See [`Error::Io`].
    Io,
}

impl Error {
    /// The class of the innermost error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Malformed { .. } => ErrorKind::Malformed,
            Error::Integrity(_) => ErrorKind::Integrity,
            Error::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            Error::WrongPassphrase => ErrorKind::WrongPassphrase,
            Error::WrongRecoveryCode => ErrorKind::WrongRecoveryCode,
            Error::RecoveryCodeInvalid(_) => ErrorKind::RecoveryCodeInvalid,
            Error::WrongPin { .. } => ErrorKind::WrongPin,
            Error::PinDestroyed => ErrorKind::PinDestroyed,
            Error::RolledBack { .. } => ErrorKind::RolledBack,
            Error::Forked { .. } => ErrorKind::Forked,
            Error::RepositoryReplaced { .. } => ErrorKind::RepositoryReplaced,
            Error::FingerprintMismatch { .. } => ErrorKind::FingerprintMismatch,
            Error::KeyslotRevoked(_) => ErrorKind::KeyslotRevoked,
            Error::NotARepository(_) => ErrorKind::NotARepository,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            Error::Locked(_) => ErrorKind::Locked,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Io(_) => ErrorKind::Io,
            Error::At { error, .. } | Error::Dictionary { error, .. } => error.kind(),
        }
    }

    /// True when stored data is damaged or forged: malformed bytes, a failed authentication
    /// tag or hash, or a missing repository file that something else refers to.
    #[must_use]
    pub fn is_integrity(&self) -> bool {
        matches!(self.kind(), ErrorKind::Integrity | ErrorKind::Malformed)
    }

    /// True when trying the same operation again later may succeed: a transient I/O failure
    /// (interrupted, timed out, would block, a connection reset, aborted, refused or not
    /// connected, a broken pipe, an unreachable network or host, a busy resource) or a lock
    /// another client holds ([`Error::Locked`]). False for everything a retry cannot change:
    /// damaged or forged data, a wrong key, a missing file, a refused history, a bad argument,
    /// a cancellation, and I/O errors such as a missing permission or a full disk.
    ///
    /// Looks through [`Error::At`] wrappers, as [`Error::kind`] does. A repository left by a
    /// failed operation is always valid (format-spec.md §8), so a retry needs no repair first.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        use std::io::ErrorKind as Io;
        match self.innermost() {
            Error::Locked(_) => true,
            Error::Io(e) => matches!(
                e.kind(),
                Io::Interrupted
                    | Io::TimedOut
                    | Io::WouldBlock
                    | Io::ConnectionReset
                    | Io::ConnectionAborted
                    | Io::ConnectionRefused
                    | Io::NotConnected
                    | Io::BrokenPipe
                    | Io::HostUnreachable
                    | Io::NetworkUnreachable
                    | Io::NetworkDown
                    | Io::ResourceBusy
            ),
            _ => false,
        }
    }

    /// The dictionary this error is about, looking through [`Error::At`] wrappers: `Some`
    /// when a blob failed to open because its dictionary cannot be had.
    #[must_use]
    pub fn dictionary(&self) -> Option<Id> {
        match self.innermost() {
            Error::Dictionary { dictionary, .. } => Some(*dictionary),
            _ => None,
        }
    }

    /// The error inside every [`Error::At`] wrapper.
    fn innermost(&self) -> &Error {
        let mut e = self;
        while let Error::At { error, .. } = e {
            e = error;
        }
        e
    }

    /// Wraps the error with the place where it happened.
    #[must_use]
    pub fn at(self, at: Location) -> Error {
        Error::At { at, error: Box::new(self) }
    }

    pub(crate) fn malformed(what: &'static str, offset: Option<u64>, detail: impl Into<String>) -> Error {
        Error::Malformed { what, offset, detail: detail.into() }
    }
}

impl From<IdParseError> for Error {
    /// An id the caller gave does not parse: [`Error::InvalidArgument`]. (Ids read from the
    /// repository are decoded from bytes, never parsed from text.)
    fn from(e: IdParseError) -> Error {
        Error::InvalidArgument(e.to_string())
    }
}

impl Error {
    /// A copy of this error for a second place it applies to (one damaged chunk fails every
    /// file that holds it). `Error` is not `Clone` because `std::io::Error` is not: an I/O
    /// error is copied as its kind and message, every other variant exactly.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Malformed { what, offset, detail } => {
                Error::Malformed { what, offset: *offset, detail: detail.clone() }
            }
            Error::Integrity(m) => Error::Integrity(m.clone()),
            Error::UnsupportedVersion { what, found, supported } => {
                Error::UnsupportedVersion { what, found: *found, supported: *supported }
            }
            Error::WrongPassphrase => Error::WrongPassphrase,
            Error::WrongRecoveryCode => Error::WrongRecoveryCode,
            Error::RecoveryCodeInvalid(m) => Error::RecoveryCodeInvalid(m.clone()),
            Error::WrongPin { attempts_left } => Error::WrongPin { attempts_left: *attempts_left },
            Error::PinDestroyed => Error::PinDestroyed,
            Error::RolledBack { found, seen, seen_snapshot } => {
                Error::RolledBack { found: *found, seen: *seen, seen_snapshot: seen_snapshot.clone() }
            }
            Error::Forked { sequence, seen_snapshot, found_snapshot } => Error::Forked {
                sequence: *sequence,
                seen_snapshot: seen_snapshot.clone(),
                found_snapshot: found_snapshot.clone(),
            },
            Error::RepositoryReplaced { location, pinned, found } => {
                Error::RepositoryReplaced { location: location.clone(), pinned: pinned.clone(), found: found.clone() }
            }
            Error::FingerprintMismatch { expected, found } => {
                Error::FingerprintMismatch { expected: expected.clone(), found: found.clone() }
            }
            Error::KeyslotRevoked(m) => Error::KeyslotRevoked(*m),
            Error::NotARepository(m) => Error::NotARepository(m.clone()),
            Error::NotFound(m) => Error::NotFound(m.clone()),
            Error::AlreadyExists(m) => Error::AlreadyExists(m.clone()),
            Error::LimitExceeded { what, found, limit } => Error::LimitExceeded { what, found: *found, limit: *limit },
            Error::Locked(m) => Error::Locked(m.clone()),
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Cancelled => Error::Cancelled,
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
            Error::At { at, error } => Error::At { at: at.clone(), error: Box::new(error.duplicate()) },
            Error::Dictionary { dictionary, error } => {
                Error::Dictionary { dictionary: *dictionary, error: Box::new(error.duplicate()) }
            }
        }
    }
}

/// Where an error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A file of the repository, by its store name (e.g. `index/ab12…`).
    RepoFile(String),
    /// A pack, and the offset of the blob inside it where known.
    Pack {
        /// The pack.
        pack: PackId,
        /// Offset of the blob inside the pack.
        offset: Option<u64>,
    },
    /// A blob, by id.
    Blob(Id),
    /// A snapshot.
    Snapshot(SnapshotId),
    /// A local file or directory.
    Path(PathBuf),
    /// A path inside a snapshot.
    SnapshotPath(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::RepoFile(name) => write!(f, "{name}"),
            Location::Pack { pack, offset: None } => write!(f, "pack {pack}"),
            Location::Pack { pack, offset: Some(o) } => write!(f, "pack {pack} at offset {o}"),
            Location::Blob(id) => write!(f, "blob {id}"),
            Location::Snapshot(id) => write!(f, "snapshot {}", id.short()),
            Location::Path(p) => write!(f, "{}", p.display()),
            Location::SnapshotPath(p) => write!(f, "{p}"),
        }
    }
}

/// A local cache (never part of the repository: format-spec.md §5.12) that failed its checks
/// and was ignored, to be rebuilt. Nothing is lost — a cache only saves time — but the caller
/// should show it: a cache whose MAC fails was written by something without this repository's
/// keys, or damaged.
#[derive(Debug)]
#[non_exhaustive]
pub struct CacheWarning {
    /// The cache file.
    pub path: PathBuf,
    /// Why it was ignored: [`ErrorKind::Integrity`] for a failed MAC (forged or damaged),
    /// [`ErrorKind::UnsupportedVersion`] for a cache an older packvault wrote,
    /// [`ErrorKind::Malformed`] for bytes that do not parse.
    pub error: Error,
}

impl CacheWarning {
    pub(crate) fn new(path: PathBuf, error: Error) -> CacheWarning {
        CacheWarning { path, error }
    }
}

impl fmt::Display for CacheWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: local cache ignored and rebuilt: {}", self.path.display(), self.error)
    }
}

/// Adds a [`Location`] to the error of a `Result`.
pub(crate) trait ResultExt<T> {
    /// Wraps an error with `at`.
    fn at(self, at: impl FnOnce() -> Location) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn at(self, at: impl FnOnce() -> Location) -> Result<T> {
        self.map_err(|e| e.into().at(at()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_looks_through_context() {
        let e = Error::Integrity("tag".into())
            .at(Location::RepoFile("index/00".into()))
            .at(Location::Path("/tmp/x".into()));
        assert_eq!(e.kind(), ErrorKind::Integrity);
        assert!(e.is_integrity());
        assert_eq!(e.to_string(), "/tmp/x: index/00: integrity check failed: tag");
    }

    #[test]
    fn retryable_is_transient_io_and_locks_only() {
        use std::io::{Error as IoError, ErrorKind as Io};
        let io = |k: Io| Error::Io(IoError::new(k, "x"));
        for k in [Io::Interrupted, Io::TimedOut, Io::WouldBlock, Io::ConnectionReset, Io::ConnectionRefused] {
            assert!(io(k).is_retryable(), "{k:?}");
            // Context does not hide the class.
            assert!(io(k).at(Location::RepoFile("packs/00/00".into())).is_retryable(), "{k:?}");
        }
        assert!(Error::Locked("prune by laptop".into()).is_retryable());
        for k in [Io::NotFound, Io::PermissionDenied, Io::StorageFull, Io::InvalidData, Io::Other] {
            assert!(!io(k).is_retryable(), "{k:?}");
        }
        let permanent = [
            Error::Integrity("tag".into()),
            Error::malformed("pack trailer", None, "bad magic"),
            Error::WrongPassphrase,
            Error::WrongPin { attempts_left: 3 },
            Error::NotFound("snapshot 1234".into()),
            Error::Cancelled,
            Error::InvalidArgument("x".into()),
            Error::RolledBack { found: 1, seen: 2, seen_snapshot: "abcd".into() },
            Error::LimitExceeded { what: "x", found: 2, limit: 1 },
        ];
        for e in permanent {
            assert!(!e.is_retryable(), "{e}");
            assert!(!e.at(Location::Path("/tmp".into())).is_retryable());
        }
    }

    #[test]
    fn duplicates_keep_class_and_message() {
        let io = Error::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no"));
        for e in [Error::Integrity("tag".into()).at(Location::Blob(Id([1; 32]))), io, Error::Cancelled] {
            let d = e.duplicate();
            assert_eq!((d.kind(), d.to_string()), (e.kind(), e.to_string()));
        }
    }

    #[test]
    fn id_parse_errors_become_invalid_argument() {
        let e: Error = "nope".parse::<SnapshotId>().unwrap_err().into();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.to_string(), "invalid argument: not a 64-digit hex id: \"nope\"");
    }

    #[test]
    fn malformed_names_offset() {
        let e = Error::malformed("pack trailer", Some(12), "bad magic");
        assert_eq!(e.to_string(), "malformed pack trailer at offset 12: bad magic");
    }
}

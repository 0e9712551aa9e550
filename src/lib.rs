//! packvault: a deduplicating, content-addressed, encrypted archive format.
//!
//! Built for backups of end-to-end-encrypted chat histories on storage the user does not
//! control: the storage provider learns how many packs there are, their (padded) sizes and
//! when they were written, and nothing else.
//!
//! The pipeline: keyed FastCDC chunking → zstd → keyed BLAKE3 chunk ids → convergent
//! AES-256-GCM-SIV sealing → immutable packs plus an index → snapshots. The byte layouts are
//! specified in `format-spec.md`; the types in [`format`](mod@format) implement them.
//!
//! Principal types:
//! - [`Repository`]: [`init`](Repository::init), [`open`](Repository::open),
//!   [`backup`](Repository::backup) (a [`BackupSession`]), [`snapshots`](Repository::snapshots),
//!   [`list`](Repository::list), [`restore`](Repository::restore), [`check`](Repository::check),
//!   [`forget`](Repository::forget) and [`prune`](Repository::prune), [`keys`](Repository::keys)
//!   (a [`KeyManager`]).
//! - [`Store`]: where repository files live — [`LocalStore`] (a folder) or [`MemoryStore`].
//! - [`Credentials`]: what opens a repository — a passphrase, a [`RecoveryCode`], a PIN held by
//!   a [`PinVault`], or this device's key.
//! - [`Error`]: one error type; [`Error::kind`] gives its class, [`Error::is_retryable`] says
//!   whether trying again later may help.
//! - Ids: [`SnapshotId`], [`TreeId`], [`ChunkId`], [`PackId`], [`IndexId`] (32-byte hashes),
//!   [`RepoId`] and [`SlotId`] (16 random bytes), all printed and parsed as hex.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use packvault::{
//!     ClientState, Credentials, FileMeta, InitOptions, LocalStore, Repository, RestoreOptions, SnapshotInfo,
//! };
//! use packvault::format::keyslot::Argon2Params;
//!
//! # fn main() -> packvault::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let store = Arc::new(LocalStore::create(dir.path().join("repo"))?);
//! let creds = Credentials::passphrase("correct horse battery staple");
//! // Cheap KDF settings for the example; the default is Argon2id with 256 MiB and 3 passes.
//! let options = InitOptions {
//!     kdf: Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 },
//!     // This client's pins (trust on first use, history seen) go here; the default is the
//!     // platform's state folder.
//!     state: ClientState::Dir(dir.path().join("state")),
//!     ..InitOptions::default()
//! };
//! let mut repo = Repository::init(store, &creds, options)?;
//!
//! let mut backup = repo.backup()?;
//! let meta = FileMeta { mode: 0o600, mtime_secs: 1_700_000_000, mtime_nanos: 0 };
//! backup.add_stream("chats/alice.json", &b"[{\"text\":\"hi\"}]"[..], meta)?;
//! let outcome = backup.commit(SnapshotInfo::tagged(["daily"]))?;
//!
//! let snapshots = repo.snapshots()?;
//! assert_eq!(snapshots.len(), 1);
//! let target = dir.path().join("restored");
//! let report = repo.restore(&outcome.record, &RestoreOptions { target: target.clone(), ..Default::default() })?;
//! assert!(report.is_complete());
//! assert_eq!(std::fs::read(target.join("chats/alice.json"))?, b"[{\"text\":\"hi\"}]");
//! # Ok(())
//! # }
//! ```
//!
//! # What is public
//! The crate root re-exports what an application that archives data needs; everything else is
//! private. The building blocks behind it (the master key and its subkeys, the keyed chunker,
//! explicit nonces, the index cache's file names) are only reachable through the `hazmat`
//! feature: an application built without it can neither make a repository around a key of
//! its choosing nor read out a repository's subkeys (so no encoder that takes an explicit
//! nonce can be used with them).
//!
//! # Crate features
//! - `hazmat` (off): `packvault::hazmat` — raw subkeys, explicit nonces, repositories made or
//!   opened around a raw master key, the keyed chunker. For test vectors, fuzzing, benchmarks
//!   and inspection tools; not covered by SemVer.
//! - `deterministic-for-tests` (off): adds a hidden `testmode::install` that makes the
//!   calling process's randomness and time deterministic, for golden CLI tests. Nothing turns it
//!   on but an explicit call: no environment variable, no file.
//!
//! The format is versioned (`format-spec.md` §6); the API is pre-1.0 and may change in minor
//! releases.
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(missing_docs)]
#![cfg(unix)]

mod chunker;
mod civil;
mod crypto;
mod error;
pub mod format;
#[cfg(feature = "hazmat")]
pub mod hazmat;
mod id;
mod index;
mod pack;
mod progress;
mod repo;
mod store;
// The project's one xorshift generator, for unit tests (vectors and corpora depend on it).
#[cfg(test)]
#[path = "../tests/support/noise.rs"]
mod test_noise;
#[cfg(feature = "deterministic-for-tests")]
#[doc(hidden)]
pub mod testmode;
mod vault;

pub use crypto::SecretKey;
pub use error::{CacheWarning, Error, ErrorKind, Location, Result};
pub use format::recovery_code::RecoveryCode;
pub use id::{ChunkId, Id, IdParseError, IndexId, PackId, RepoId, SlotId, SnapshotId, TreeId, ID_LEN};
pub use index::{BlobLocation, Index, PackInfo};
pub use progress::{CancelToken, NoProgress, Progress};
pub use repo::{
    check_passphrase_strength, check_pin, fingerprint, forget_pin, has_device_key, pinned_fingerprint, BackupOutcome,
    BackupSession, Bucket, Change, CheckOptions, CheckReport, ClientState, Credentials, DataSubset, DiffEntry,
    FileMeta, ForgetPolicy, ForgetReport, HistoryReport, InitOptions, KeyManager, KeyslotInfo, LockInfo, LockKind,
    LockRecord, OpenOptions, Passphrase, Problem, PruneOptions, PruneReport, RepairReport, RepoLock, Repository,
    RestoreOptions, RestoreReport, RestoreWarning, Stats, MAX_SLOTS_TRIED,
};
pub use repo::{FileReader, MemorySink, PackAction, PackPlan, PrunePlan, RestoreSink, SinkOptions};
// The backup session's choices: per-stream options, append streams, snapshot info.
pub use repo::{
    AppendFallback, AppendOutcome, AppendSource, ChunkPolicy, CompressionHint, DirOptions, Sequential, SnapshotInfo,
    StreamOptions,
};
pub use store::{FileKind, LocalStore, MemoryStore, Store, Upload};
pub use vault::{FileVault, PinVault, MAX_PIN_ATTEMPTS};

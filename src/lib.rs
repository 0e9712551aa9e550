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
//! # An archiver's day
//!
//! An app hands packvault named byte streams, not a folder tree: its message database, one
//! append-only log per conversation, attachments. Each night it opens the repository, starts a
//! [`BackupSession`], adds what it has and commits a snapshot:
//!
//! - [`add_stream`](BackupSession::add_stream) reads a stream whole (the database);
//!   [`add_stream_with`](BackupSession::add_stream_with) chooses per stream how it is chunked
//!   and compressed ([`StreamOptions`]);
//! - [`add_append_stream`](BackupSession::add_append_stream) is for data that only grows (a
//!   conversation's log): the library finds the previous version in the parent snapshot,
//!   checks its length and last chunk, and reads only the new bytes (and that chunk again);
//! - [`add_dir`](BackupSession::add_dir) adds a local folder; the files cache skips files whose
//!   size and times did not change, without opening them;
//! - [`commit`](BackupSession::commit) takes a [`SnapshotInfo`]: the app, not the environment,
//!   names the device. [`set_cancel`](BackupSession::set_cancel) and
//!   [`set_progress`](BackupSession::set_progress) stop and follow long runs.
//!
//! On a new phone the app reads back without a folder:
//! [`restore_to`](Repository::restore_to) hands files as streams to a [`RestoreSink`] (the app's
//! database; [`MemorySink`] for small restores), reading only the packs the chosen paths need;
//! [`open_file`](Repository::open_file) gives one file as `Read + Seek`, fetching only the
//! chunks a read touches. [`restore`](Repository::restore) writes a folder.
//!
//! `examples/chat_backup.rs` does all of this on a real SQLite message store over three
//! simulated days (`cargo run --release --example chat_backup`).
//!
//! # Principal types
//! - [`Repository`]: [`init`](Repository::init), [`open`](Repository::open),
//!   [`backup`](Repository::backup) (a [`BackupSession`]), [`snapshots`](Repository::snapshots),
//!   [`list`](Repository::list), [`restore_to`](Repository::restore_to),
//!   [`open_file`](Repository::open_file), [`restore`](Repository::restore),
//!   [`check`](Repository::check), [`forget`](Repository::forget) and
//!   [`prune`](Repository::prune), [`keys`](Repository::keys) (a [`KeyManager`]),
//!   [`copy_to`](Repository::copy_to) (snapshots into another repository, [`CopyReport`]) and
//!   [`rotate_master`](Repository::rotate_master) (a new key domain in place, [`RotateReport`]).
//! - [`Store`]: where repository files live — [`LocalStore`] (a folder), [`MemoryStore`], or
//!   `S3Store` (feature `s3`: any S3-compatible object store).
//! - [`Credentials`]: what opens a repository — a passphrase, a [`RecoveryCode`], a PIN held by
//!   a [`PinVault`], or this device's key.
//! - [`ClientState`]: where this device keeps what it has seen of each repository (pins against
//!   a swapped or rolled-back repository); an app passes its own folder.
//! - [`Error`]: one error type; [`Error::kind`] gives its class, [`Error::is_retryable`] says
//!   whether trying again later may help.
//! - Ids: [`SnapshotId`], [`TreeId`], [`ChunkId`], [`PackId`], [`IndexId`] (32-byte hashes),
//!   [`RepoId`] and [`SlotId`] (16 random bytes), all printed and parsed as hex.
//!
//! # Example
//!
//! ```
//! use std::io::{Cursor, Read, Seek, SeekFrom};
//! use std::sync::Arc;
//! use packvault::format::keyslot::Argon2Params;
//! use packvault::{
//!     ClientState, Credentials, FileMeta, InitOptions, MemorySink, MemoryStore, OpenOptions, Repository,
//!     SinkOptions, SnapshotInfo,
//! };
//!
//! # fn main() -> packvault::Result<()> {
//! let store = Arc::new(MemoryStore::new());
//! let creds = Credentials::passphrase("correct horse battery staple");
//! // An app keeps this device's pins in its own folder (the default is the platform's state
//! // folder); a memory store is pinned under a name unique to it.
//! let dir = tempfile::tempdir()?;
//! let state = ClientState::Dir(dir.path().join("state"));
//! // Cheap KDF settings for the example; the default is Argon2id with 256 MiB and 3 passes.
//! let kdf = Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 };
//! let mut repo = Repository::init(store.clone(), &creds, InitOptions { kdf, state: state.clone(), ..Default::default() })?;
//! let meta = FileMeta { mode: 0o600, mtime_secs: 1_700_000_000, mtime_nanos: 0 };
//!
//! // Night 1: a conversation's log and an attachment.
//! let mut log = b"{\"from\":\"ana\",\"text\":\"hi\"}\n".to_vec();
//! let mut backup = repo.backup()?;
//! backup.add_append_stream("chats/ana/log.jsonl", Cursor::new(log.clone()), meta)?;
//! backup.add_stream("chats/ana/photo.jpg", &[0xff, 0xd8, 0xff, 0xe0][..], meta)?;
//! backup.commit(SnapshotInfo { hostname: Some("ana-phone".into()), ..SnapshotInfo::default() })?;
//!
//! // Night 2: the log grew; only the new bytes (and its last chunk) are read.
//! log.extend_from_slice(b"{\"from\":\"me\",\"text\":\"hello!\"}\n");
//! let mut backup = repo.backup()?;
//! backup.add_append_stream("chats/ana/log.jsonl", Cursor::new(log.clone()), meta)?;
//! let night2 = backup.commit(SnapshotInfo::default())?;
//! assert!(night2.appends[0].resumed());
//!
//! // A new phone: one conversation into memory, then one file read at an offset.
//! let phone = OpenOptions { state, ..OpenOptions::default() };
//! let repo = Repository::open(store, &creds, &phone)?;
//! let (_, latest) = repo.find_snapshot("latest")?;
//! let mut sink = MemorySink::default();
//! let only = SinkOptions { include: vec!["chats/ana".into()], ..SinkOptions::default() };
//! assert!(repo.restore_to(&latest, &only, &mut sink)?.is_complete());
//! assert_eq!(sink.files["chats/ana/log.jsonl"], log);
//! let mut file = repo.open_file(&latest, "chats/ana/log.jsonl")?;
//! file.seek(SeekFrom::End(-7))?;
//! let mut tail = String::new();
//! file.read_to_string(&mut tail)?;
//! assert_eq!(tail, "llo!\"}\n");
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
//! - `s3` (off; `packtool` turns it on): `S3Store`, repositories on S3-compatible object
//!   stores (AWS, Garage, MinIO, Ceph RGW) through OpenDAL on a private tokio runtime.
//!
//! The format is versioned (`format-spec.md` §6); the API is pre-1.0 and may change in minor
//! releases.
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(missing_docs)]
#![cfg(unix)]

mod chunker;
mod civil;
mod crypto;
mod dict;
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

pub use civil::utc_string;
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
// Compression dictionaries (format-spec.md §5.17): what a backup session did about one.
pub use repo::DictionaryOutcome;
// Copying snapshots between repositories (same key domain or another).
pub use repo::{CopiedSnapshot, CopyOptions, CopyReport};
// Key rotation: a fresh key domain at the same location.
pub use repo::{Retired, RotateOptions, RotateReport};
// The backup session's choices: per-stream options, append streams, snapshot info.
pub use repo::{
    AppendFallback, AppendOutcome, AppendSource, ChunkPolicy, CompressionHint, DirOptions, Sequential, SnapshotInfo,
    StreamOptions,
};
pub use store::{FileKind, LocalStore, MemoryStore, RecordingStore, Store, StoreEvent, StoreOp, Upload};
#[cfg(feature = "s3")]
pub use store::{S3Credentials, S3Options, S3Store};
pub use vault::{FileVault, PinVault, MAX_PIN_ATTEMPTS};

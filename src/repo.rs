//! The repository: init, open, snapshots, trees. Backup, restore and check live in the
//! submodules and are methods of [`Repository`].

mod backup;
mod check;
mod copy;
mod files_cache;
mod folder_cache;
mod history;
mod inspect;
mod keys;
mod lock;
mod maintenance;
mod restore;
mod rotate;
mod trust;
mod walk;

pub use backup::{
    AppendFallback, AppendOutcome, AppendSource, ChunkPolicy, CompressionHint, DirOptions, Sequential, SnapshotInfo,
    StreamOptions,
};
pub use backup::{BackupOutcome, BackupSession, DictionaryOutcome, FileMeta};
pub use check::{CheckOptions, CheckReport, DataSubset, Problem};
pub use copy::{CopiedSnapshot, CopyOptions, CopyReport};
pub use history::HistoryReport;
pub use inspect::{Bucket, Change, DiffEntry, Stats};
pub use keys::{
    check_passphrase_strength, check_pin, Credentials, KeyManager, KeyslotInfo, Passphrase, MAX_SLOTS_TRIED,
};
pub use lock::{LockInfo, LockKind, LockRecord, RepoLock};
pub use maintenance::{
    ForgetPolicy, ForgetReport, PackAction, PackPlan, PruneOptions, PrunePlan, PruneReport, RepairReport,
    TEMPORARY_IDLE,
};
pub use restore::{FileReader, MemorySink, RestoreOptions, RestoreReport, RestoreSink, RestoreWarning, SinkOptions};
pub use rotate::{Retired, RotateOptions, RotateReport};
pub use trust::{fingerprint, forget_pin, has_device_key, pinned_fingerprint, ClientState};
pub(crate) use walk::join;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::chunker::Chunker;
use crate::crypto::{random_array, KeySet, MasterKey};
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::BlobKind;
use crate::format::config::{self, ChunkerParams, ConfigFile, Settings};
use crate::format::keyslot::Argon2Params;
use crate::format::snapshot::{self, SnapshotRecord, Tree};
use crate::id::{Id, RepoId, SnapshotId, TreeId};
use crate::index::{self, Index};
use crate::pack;
use crate::store::{FileKind, Store};

/// Settings chosen at `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Chunker parameters (stored in the config).
    pub chunker: ChunkerParams,
    /// zstd level (stored in the config).
    pub zstd_level: i32,
    /// Target pack size (stored in the config).
    pub pack_target_size: u32,
    /// Argon2id parameters of the first keyslot.
    pub kdf: Argon2Params,
    /// Label of the first keyslot.
    pub label: String,
    /// Local cache folder for the index (see [`OpenOptions::cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// Where this client keeps its pins (see [`OpenOptions::state`]): `init` pins the new
    /// repository.
    pub state: ClientState,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            pack_target_size: 16 << 20,
            kdf: Argon2Params::default(),
            label: "initial".into(),
            cache_dir: None,
            state: ClientState::default(),
        }
    }
}

/// How to open a repository.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Folder for the local index cache (one subfolder per repository, made 0700; files
    /// 0600, each with a MAC under a key of the repository). Without one, the index is rebuilt
    /// in memory at every open.
    pub cache_dir: Option<PathBuf>,
    /// Where this client keeps what it trusts about each repository location: the pinned
    /// repository id and master key, the history it has seen, removed keyslots, its device
    /// key (module `trust`). On by default, in the platform's state folder; opting out
    /// ([`ClientState::Disabled`]) lets a provider swap, fork and roll back unnoticed.
    pub state: ClientState,
    /// At first contact (no pin yet): the fingerprint the repository must have, as shown by
    /// `init` or another device. Slots of any other repository are never tried. With a pin,
    /// it must match the pin.
    pub expect_fingerprint: Option<String>,
    /// Accept a history older than, or forked from, what this client has seen (after an
    /// intended restore of the repository from an old copy), and stop reporting vanished
    /// snapshots: the pin is reset to what the repository shows now.
    pub allow_rollback: bool,
    /// How long to wait for a conflicting lock of another client to go before giving up
    /// with [`Error::Locked`] (zero: fail at once).
    pub lock_wait: std::time::Duration,
}

/// An open repository.
pub struct Repository {
    store: Arc<dyn Store>,
    master: MasterKey,
    opened_slot: String,
    keys: KeySet,
    repo_id: [u8; 16],
    settings: Settings,
    chunker: Chunker,
    index: Index,
    cache_dir: Option<PathBuf>,
    lock_wait: std::time::Duration,
    /// The pin file, when this client keeps state, and the pin as of the last update.
    pin_file: Option<trust::PinFile>,
    pin: std::sync::Mutex<trust::Pin>,
    /// What this repository's tombstones say (grows when this session writes one).
    tombstones: std::sync::RwLock<history::Tombstones>,
    /// What was found wrong with the history at open.
    history: HistoryReport,
    /// True when this open pinned the repository (no pin before).
    first_contact: bool,
    /// Packs found through their own directories at open because an index file is damaged:
    /// the next backup lists them in its index file. Until then the index is not written to
    /// the local cache (it would hold packs that no sound index file names).
    adopted: Vec<crate::pack::WrittenPack>,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("store", &self.store.describe())
            .field("id", &crate::id::hex_encode(&self.repo_id))
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// The current time as (seconds, nanoseconds) since the Unix epoch.
pub(crate) fn now() -> (i64, u32) {
    #[cfg(feature = "deterministic-for-tests")]
    if let Some(t) = crate::testmode::now() {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or((0, 0), |d| (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()))
}

pub(crate) fn now_secs() -> i64 {
    now().0
}

impl Repository {
    /// Creates a repository in an empty store: a random master key, the config, and one
    /// keyslot for `credentials`.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the store already holds a config; [`Error::InvalidArgument`]
    /// for settings out of bounds; store errors.
    pub fn init(store: Arc<dyn Store>, credentials: &Credentials, options: InitOptions) -> Result<Repository> {
        Repository::init_with_master(store, MasterKey::generate()?, credentials, options)
    }

    /// [`Repository::init`] with a given master key (through `hazmat`).
    pub(crate) fn init_with_master(
        store: Arc<dyn Store>,
        master: MasterKey,
        credentials: &Credentials,
        options: InitOptions,
    ) -> Result<Repository> {
        if !store.list(FileKind::Config)?.is_empty() || store.size(FileKind::Key, config::NEXT_CONFIG).is_ok() {
            return Err(Error::AlreadyExists(format!("a repository in {}", store.describe())));
        }
        let keys = KeySet::derive(&master);
        let repo_id: [u8; 16] = random_array()?;
        let settings = Settings {
            master_id: master.id(),
            chunker: options.chunker,
            zstd_level: options.zstd_level,
            pack_target_size: options.pack_target_size,
        };
        settings.validate()?;
        let first = match credentials {
            Credentials::Passphrase(p) => keys::NewCredential::Passphrase(p, options.kdf),
            Credentials::RecoveryCode(c) => keys::NewCredential::RecoveryCode(c),
            Credentials::Pin { pin, vault } => keys::NewCredential::Pin(pin, vault.as_ref(), options.kdf),
            Credentials::DeviceKey => {
                return Err(Error::InvalidArgument(
                    "a new repository needs a passphrase, recovery code or PIN first; add a device key after".into(),
                ))
            }
        };
        // The first write: finds out whether the store refuses writes to taken names by itself
        // (`check` reports it; locks wait for listings to settle where it does not).
        store.probe_create_only()?;
        // A new repository at this location replaces whatever this client pinned here.
        trust::forget_pin(&options.state, &store.location())?;
        keys::write_slot(store.as_ref(), &repo_id, &master, first, &options.label)?;
        let cfg = config::encode(keys.meta_key(), &ConfigFile { repo_id, settings }, &random_array()?)?;
        store.put(FileKind::Config, "config", &cfg)?;
        Repository::open(
            store,
            credentials,
            &OpenOptions {
                cache_dir: options.cache_dir,
                state: options.state,
                expect_fingerprint: None,
                allow_rollback: false,
                lock_wait: std::time::Duration::ZERO,
            },
        )
    }

    /// Opens a repository with `credentials`.
    ///
    /// # Errors
    /// [`Error::NotARepository`] when the store holds no config; [`Error::WrongPassphrase`]
    /// when no keyslot opens; [`Error::Integrity`] / [`Error::Malformed`] for damaged
    /// repository files; store errors.
    ///
    /// With client state on (the default), the location's pin decides what is tried: a
    /// repository whose id differs from the pin is refused ([`Error::RepositoryReplaced`])
    /// before any key derivation runs; only slots that wrap the pinned master key are tried;
    /// removed slots are refused ([`Error::KeyslotRevoked`]); the history is checked against
    /// what this client has seen ([`Error::RolledBack`], [`Error::Forked`], and
    /// [`Repository::history_report`] for deletions).
    pub fn open(store: Arc<dyn Store>, credentials: &Credentials, options: &OpenOptions) -> Result<Repository> {
        let cfg_bytes = read_config(store.as_ref())?;
        let repo_id = config::decode_prefix(&cfg_bytes).at(|| Location::RepoFile("config".into()))?;
        let pin_file = trust::PinFile::for_location(&options.state, &store.location())?;
        let pin = match &pin_file {
            Some(f) => f.load()?,
            None => None,
        };
        let mut filter = keys::SlotFilter::default();
        if let Some(pin) = &pin {
            // A key rotation this client started moved the repository to `rotating`: that
            // one is trusted in place of the pin (this client made its key).
            let (pinned_repo, pinned_master) =
                pin.rotating.filter(|r| r.0 == repo_id).unwrap_or((pin.repo_id, pin.master_id));
            let pinned = trust::fingerprint_of(&pinned_repo, &pinned_master);
            if pinned_repo != repo_id {
                return Err(Error::RepositoryReplaced {
                    location: store.describe(),
                    pinned,
                    found: keys::fingerprints_of_slots(store.as_ref(), &repo_id),
                });
            }
            if let Some(expected) = &options.expect_fingerprint {
                if !trust::same_fingerprint(expected, &pinned) {
                    return Err(Error::FingerprintMismatch { expected: expected.clone(), found: pinned });
                }
            }
            filter.master_id = Some(pinned_master);
            filter.prefer.clone_from(&pin.slot);
            filter.revoked.clone_from(&pin.revoked_slots);
            filter.device.clone_from(&pin.device);
        } else {
            filter.fingerprint.clone_from(&options.expect_fingerprint);
        }
        loop {
            let (master, opened_slot) = keys::unlock(store.as_ref(), &repo_id, credentials, &filter)?;
            let tombs = history::load_tombstones(store.as_ref(), KeySet::derive(&master).meta_key(), &repo_id)?;
            if tombs.keyslots.contains(&opened_slot) {
                // Removed on purpose and put back: never again (the next round says so if no
                // other slot opens).
                filter.revoked.insert(opened_slot);
                continue;
            }
            let trust = TrustInputs { pin_file, pin, tombs };
            return Repository::open_unlocked(store, &cfg_bytes, master, opened_slot, options, trust);
        }
    }

    /// Opens with the master key itself, bypassing keyslots (through `hazmat`).
    #[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat`
    pub(crate) fn open_with_master(
        store: Arc<dyn Store>,
        master: MasterKey,
        options: &OpenOptions,
    ) -> Result<Repository> {
        let cfg_bytes = read_config(store.as_ref())?;
        let pin_file = trust::PinFile::for_location(&options.state, &store.location())?;
        let pin = match &pin_file {
            Some(f) => f.load()?,
            None => None,
        };
        let repo_id = config::decode_prefix(&cfg_bytes).at(|| Location::RepoFile("config".into()))?;
        let tombs = history::load_tombstones(store.as_ref(), KeySet::derive(&master).meta_key(), &repo_id)?;
        Repository::open_unlocked(
            store,
            &cfg_bytes,
            master,
            String::new(),
            options,
            TrustInputs { pin_file, pin, tombs },
        )
    }

    fn open_unlocked(
        store: Arc<dyn Store>,
        cfg_bytes: &[u8],
        master: MasterKey,
        opened_slot: String,
        options: &OpenOptions,
        trust: TrustInputs,
    ) -> Result<Repository> {
        let keys = KeySet::derive(&master);
        let cfg = config::decode(keys.meta_key(), cfg_bytes).at(|| Location::RepoFile("config".into()))?;
        let repo_id = cfg.repo_id;
        if cfg.settings.master_id != master.id() {
            return Err(Error::Integrity("the config belongs to another master key".into())
                .at(Location::RepoFile("config".into())));
        }
        let chunker = Chunker::new(&cfg.settings.chunker, keys.chunker_key())?;
        let (index, damaged_index) =
            index::load(store.as_ref(), keys.meta_key(), &repo_id, options.cache_dir.as_deref())?;
        let repo = Repository {
            store,
            master,
            opened_slot,
            keys,
            repo_id,
            settings: cfg.settings,
            chunker,
            index,
            cache_dir: options.cache_dir.clone(),
            lock_wait: options.lock_wait,
            adopted: Vec::new(),
            pin_file: trust.pin_file,
            first_contact: trust.pin.is_none(),
            pin: std::sync::Mutex::new(trust.pin.unwrap_or_default()),
            tombstones: std::sync::RwLock::new(trust.tombs),
            history: HistoryReport::default(),
        };
        let mut repo = repo;
        if damaged_index {
            // Some index file is damaged (load skipped it): the packs it named are found
            // through their own directories, so everything stays restorable until `repair
            // index` writes a sound index file.
            repo.adopted = repo.adopt_unindexed_packs()?;
        }
        repo.history = repo.establish_trust(options.allow_rollback)?;
        Ok(repo)
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The repository id (16 random bytes chosen at `init`; hex in listings).
    #[must_use]
    pub fn id(&self) -> RepoId {
        RepoId::from_bytes(self.repo_id)
    }

    /// The settings from the config.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The merged index.
    #[must_use]
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// All readable snapshots, oldest first (by time, then sequence). Damaged snapshot files
    /// are skipped; [`Repository::snapshots_with_errors`] names them.
    ///
    /// # Errors
    /// Only when the store cannot be listed.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, SnapshotRecord)>> {
        Ok(self.snapshots_with_errors()?.0)
    }

    /// All snapshots: the readable ones, oldest first, and the damaged ones with why.
    ///
    /// # Errors
    /// Only when the store cannot be listed.
    #[allow(clippy::type_complexity)]
    pub fn snapshots_with_errors(&self) -> Result<(Vec<(SnapshotId, SnapshotRecord)>, Vec<(SnapshotId, Error)>)> {
        let (mut out, mut bad) = self.snapshots_with_errors_unfiltered()?;
        // Forgotten on purpose (a tombstone names them) but not yet deleted (the forget was
        // interrupted): gone for every reader; the next forget deletes the files.
        out.retain(|(id, _)| !self.is_forgotten(id));
        bad.retain(|(id, _)| !self.is_forgotten(id));
        Ok((out, bad))
    }

    /// [`Repository::snapshots_with_errors`], forgotten ones included.
    #[allow(clippy::type_complexity)]
    pub(crate) fn snapshots_with_errors_unfiltered(
        &self,
    ) -> Result<(Vec<(SnapshotId, SnapshotRecord)>, Vec<(SnapshotId, Error)>)> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for id in crate::store::list_ids(self.store.as_ref(), FileKind::Snapshot)? {
            let id = SnapshotId(id);
            match self.load_snapshot(&id) {
                Ok(rec) => out.push((id, rec)),
                Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
                Err(e) => bad.push((id, e)),
            }
        }
        out.sort_by(|a, b| {
            (a.1.time_secs, a.1.time_nanos, a.1.sequence).cmp(&(b.1.time_secs, b.1.time_nanos, b.1.sequence))
        });
        Ok((out, bad))
    }

    /// Reads one snapshot and checks that its content hashes to its id.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Integrity`], [`Error::Malformed`].
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<SnapshotRecord> {
        let bytes = self.snapshot_bytes(id)?;
        snapshot::decode(self.keys.meta_key(), &bytes).at(|| Location::RepoFile(FileKind::Snapshot.path(&id.to_hex())))
    }

    /// A snapshot file's bytes (bounded in size), checked against its name.
    pub(crate) fn snapshot_bytes(&self, id: &SnapshotId) -> Result<Vec<u8>> {
        let name = id.to_hex();
        let loc = || Location::RepoFile(FileKind::Snapshot.path(&name));
        let bytes = crate::store::get_bounded(
            self.store.as_ref(),
            FileKind::Snapshot,
            &name,
            snapshot::MAX_SNAPSHOT_FILE,
            "snapshot file length",
        )
        .at(loc)?;
        if Id::hash_of(&bytes) != id.0 {
            return Err(Error::Integrity("content does not hash to its name".into()).at(loc()));
        }
        Ok(bytes)
    }

    /// Finds a snapshot by `latest`, a full id, or a unique prefix of at least 4 hex digits.
    ///
    /// # Errors
    /// [`Error::NotFound`] when nothing matches, [`Error::InvalidArgument`] when a prefix is
    /// ambiguous or too short.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, SnapshotRecord)> {
        if spec == "latest" {
            return self.snapshots()?.pop().ok_or_else(|| Error::NotFound("no snapshot in the repository".into()));
        }
        let id = self.snapshot_id(spec)?;
        Ok((id, self.load_snapshot(&id)?))
    }

    /// The id a full id or a unique prefix (at least 4 hex digits) names, without reading the
    /// snapshot (so that a damaged one can still be named, e.g. to `forget` it).
    ///
    /// # Errors
    /// [`Error::NotFound`] when nothing matches, [`Error::InvalidArgument`] when a prefix is
    /// ambiguous or too short.
    pub fn snapshot_id(&self, spec: &str) -> Result<SnapshotId> {
        if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidArgument(format!(
                "{spec:?} is not `latest` or a snapshot id (at least 4 hex digits)"
            )));
        }
        let spec_lower = spec.to_ascii_lowercase();
        let matches: Vec<Id> = crate::store::list_ids(self.store.as_ref(), FileKind::Snapshot)?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&spec_lower))
            .collect();
        match matches.as_slice() {
            [] => Err(Error::NotFound(format!("snapshot {spec}"))),
            [one] => Ok(SnapshotId(*one)),
            _ => Err(Error::InvalidArgument(format!("snapshot prefix {spec} matches {} snapshots", matches.len()))),
        }
    }

    /// Reads and decodes a tree blob.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the index does not know the tree; integrity errors.
    pub fn load_tree(&self, id: &TreeId) -> Result<Tree> {
        let loc = self
            .index
            .lookup(&id.0)?
            .filter(|l| l.kind == BlobKind::Tree)
            .ok_or_else(|| Error::NotFound(format!("tree {} is in no index", id.short())))?;
        let bytes = pack::PackReader::new(self.store.as_ref(), &self.keys).read_blob(&id.0, &loc)?;
        Tree::decode(&bytes).at(|| Location::Blob(id.0))
    }

    /// Packs in the store that no index names (left by a backup that stopped before its
    /// index file, or written right now by a concurrent backup): their directories are read
    /// and their blobs join this session's index, so the data is reused instead of uploaded
    /// again. Packs whose directory does not read are left alone (prune removes them).
    pub(crate) fn adopt_unindexed_packs(&mut self) -> Result<Vec<crate::pack::WrittenPack>> {
        let known: std::collections::HashSet<crate::id::PackId> = self.index.packs().map(|p| p.id).collect();
        let mut adopted = Vec::new();
        for id in crate::store::list_ids(self.store.as_ref(), FileKind::Pack)? {
            let pid = crate::id::PackId(id);
            if known.contains(&pid) {
                continue;
            }
            let Ok(record) = self.pack_record(pid) else { continue };
            let info = crate::index::PackInfo { id: pid, kind: record.kind, len: record.pack_len };
            self.index.add_pack(info, &record.entries);
            adopted.push(crate::pack::WrittenPack { info, record });
        }
        Ok(adopted)
    }

    /// A pack's index record, read from its own encrypted directory.
    pub(crate) fn pack_record(&self, pack: crate::id::PackId) -> Result<crate::format::index::IndexPack> {
        let (len, dir) = pack::PackReader::new(self.store.as_ref(), &self.keys).sized_directory(&pack)?;
        let pack_len = u32::try_from(len).map_err(|_| Error::LimitExceeded {
            what: "pack length",
            found: len,
            limit: u64::from(u32::MAX),
        })?;
        Ok(crate::format::index::IndexPack { pack, kind: dir.kind, pack_len, entries: dir.entries })
    }

    /// The index as the store's index files give it now (the cache reused where it can be).
    fn reload_index(&self) -> Result<Index> {
        Ok(index::load(self.store.as_ref(), self.keys.meta_key(), &self.repo_id, self.cache_dir.as_deref())?.0)
    }

    /// Makes the index cache current (after a backup added packs and an index file).
    fn refresh_index_cache(&mut self, new_index_file: Option<crate::id::IndexId>) -> Result<()> {
        if let Some(id) = new_index_file {
            self.index.add_covered(id);
        }
        let index = std::mem::replace(&mut self.index, Index::empty());
        self.index = index::persist(index, self.cache_dir.as_deref())?;
        Ok(())
    }
}

/// What `open` learned about trust before the repository object exists.
struct TrustInputs {
    pin_file: Option<trust::PinFile>,
    pin: Option<trust::Pin>,
    tombs: history::Tombstones,
}

/// Reads the config file (bounded); a store without one holds no repository. While a key
/// rotation switches domains, `config` is briefly absent and `keys/next-config` stands in for
/// it (format-spec.md §8, "Key rotation").
fn read_config(store: &dyn Store) -> Result<Vec<u8>> {
    let read = |kind, name: &str| {
        crate::store::get_bounded(store, kind, name, config::MAX_CONFIG_FILE as u64, "config file length")
            .map_err(|e| if matches!(e, Error::NotFound(_)) { e } else { e.at(Location::RepoFile(kind.path(name))) })
    };
    match read(FileKind::Config, "config") {
        Err(Error::NotFound(_)) => match read(FileKind::Key, config::NEXT_CONFIG) {
            Err(Error::NotFound(_)) => Err(Error::NotARepository(format!("{} has no config file", store.describe()))),
            other => other,
        },
        other => other,
    }
}

//! The repository: init, open, snapshots, trees. Backup, restore and check live in the
//! submodules and are methods of [`Repository`].

mod backup;
mod check;
mod restore;

pub use backup::{BackupOutcome, BackupSession, FileMeta};
pub use check::{CheckOptions, CheckReport, Problem};
pub use restore::{RestoreOptions, RestoreReport};

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::chunker::Chunker;
use crate::crypto::{random_array, KeySet, MasterKey};
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::BlobKind;
use crate::format::config::{self, ChunkerParams, ConfigFile, Settings};
use crate::format::keyslot::{self, Argon2Params, Keyslot, NewSlot, SlotKdf};
use crate::format::snapshot::{self, Node, NodeContent, SnapshotRecord, Tree};
use crate::id::{Id, SnapshotId, TreeId};
use crate::index::{self, Index};
use crate::pack;
use crate::store::{FileKind, Store};

/// Most keyslots tried when opening (each costs one KDF run).
pub const MAX_SLOTS_TRIED: usize = 32;

/// A passphrase, wiped from memory on drop and never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase.
    #[must_use]
    pub fn new(s: impl Into<String>) -> Passphrase {
        Passphrase(Zeroizing::new(s.into()))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase([redacted])")
    }
}

/// What opens a repository.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// A passphrase, tried against every passphrase keyslot.
    Passphrase(Passphrase),
}

impl Credentials {
    /// Credentials from a passphrase.
    #[must_use]
    pub fn passphrase(s: impl Into<String>) -> Credentials {
        Credentials::Passphrase(Passphrase::new(s))
    }
}

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
        }
    }
}

/// How to open a repository.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Folder for the local index cache (one subfolder per repository). Without one, the
    /// index is rebuilt in memory at every open.
    pub cache_dir: Option<PathBuf>,
}

/// An open repository.
pub struct Repository {
    store: Arc<dyn Store>,
    keys: KeySet,
    repo_id: [u8; 16],
    settings: Settings,
    chunker: Chunker,
    index: Index,
    cache_dir: Option<PathBuf>,
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
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or((0, 0), |d| {
            (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos())
        })
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Repository {
    /// Creates a repository in an empty store: a random master key, the config, and one
    /// keyslot for `credentials`.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the store already holds a config; [`Error::InvalidArgument`]
    /// for settings out of bounds; store errors.
    pub fn init(store: Arc<dyn Store>, credentials: &Credentials, options: InitOptions) -> Result<Repository> {
        if !store.list(FileKind::Config)?.is_empty() {
            return Err(Error::AlreadyExists(format!("a repository in {}", store.describe())));
        }
        let master = MasterKey::generate()?;
        let keys = KeySet::derive(&master);
        let repo_id: [u8; 16] = random_array()?;
        let settings = Settings {
            master_id: master.id(),
            chunker: options.chunker,
            zstd_level: options.zstd_level,
            pack_target_size: options.pack_target_size,
        };
        settings.validate()?;
        let Credentials::Passphrase(pass) = credentials;
        add_passphrase_slot(store.as_ref(), &repo_id, &master, pass, options.kdf, &options.label)?;
        let cfg = config::encode(keys.meta_key(), &ConfigFile { repo_id, settings }, &random_array()?)?;
        store.put(FileKind::Config, "config", &cfg)?;
        Repository::open(
            store,
            credentials,
            &OpenOptions {
                cache_dir: options.cache_dir,
            },
        )
    }

    /// Opens a repository with `credentials`.
    ///
    /// # Errors
    /// [`Error::NotARepository`] when the store holds no config; [`Error::WrongPassphrase`]
    /// when no keyslot opens; [`Error::Integrity`] / [`Error::Malformed`] for damaged
    /// repository files; store errors.
    pub fn open(store: Arc<dyn Store>, credentials: &Credentials, options: &OpenOptions) -> Result<Repository> {
        let cfg_bytes = match store.get(FileKind::Config, "config") {
            Ok(b) => b,
            Err(Error::NotFound(_)) => {
                return Err(Error::NotARepository(format!(
                    "{} has no config file",
                    store.describe()
                )));
            }
            Err(e) => return Err(e),
        };
        let repo_id = config::decode_prefix(&cfg_bytes).at(|| Location::RepoFile("config".into()))?;
        let master = unlock(store.as_ref(), &repo_id, credentials)?;
        let keys = KeySet::derive(&master);
        let cfg = config::decode(keys.meta_key(), &cfg_bytes).at(|| Location::RepoFile("config".into()))?;
        if cfg.settings.master_id != master.id() {
            return Err(Error::Integrity("the config belongs to another master key".into())
                .at(Location::RepoFile("config".into())));
        }
        let chunker = Chunker::new(&cfg.settings.chunker, keys.chunker_key())?;
        let index = index::load(store.as_ref(), keys.meta_key(), &repo_id, options.cache_dir.as_deref())?;
        Ok(Repository {
            store,
            keys,
            repo_id,
            settings: cfg.settings,
            chunker,
            index,
            cache_dir: options.cache_dir.clone(),
        })
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The repository id (16 random bytes, hex in listings).
    #[must_use]
    pub fn id(&self) -> [u8; 16] {
        self.repo_id
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

    /// All snapshots, oldest first (by time, then sequence).
    ///
    /// # Errors
    /// Store errors, and integrity errors naming the damaged snapshot file.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, SnapshotRecord)>> {
        let mut out = Vec::new();
        for id in crate::store::list_ids(self.store.as_ref(), FileKind::Snapshot)? {
            let id = SnapshotId(id);
            out.push((id, self.load_snapshot(&id)?));
        }
        out.sort_by(|a, b| {
            (a.1.time_secs, a.1.time_nanos, a.1.sequence).cmp(&(b.1.time_secs, b.1.time_nanos, b.1.sequence))
        });
        Ok(out)
    }

    /// Reads one snapshot and checks that its content hashes to its id.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Integrity`], [`Error::Malformed`].
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<SnapshotRecord> {
        let name = id.to_hex();
        let loc = || Location::RepoFile(FileKind::Snapshot.path(&name));
        let bytes = self.store.get(FileKind::Snapshot, &name).at(loc)?;
        if Id::hash_of(&bytes) != id.0 {
            return Err(Error::Integrity("content does not hash to its name".into()).at(loc()));
        }
        snapshot::decode(self.keys.meta_key(), &bytes).at(loc)
    }

    /// Finds a snapshot by `latest`, a full id, or a unique prefix of at least 4 hex digits.
    ///
    /// # Errors
    /// [`Error::NotFound`] when nothing matches, [`Error::InvalidArgument`] when a prefix is
    /// ambiguous or too short.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, SnapshotRecord)> {
        if spec == "latest" {
            return self
                .snapshots()?
                .pop()
                .ok_or_else(|| Error::NotFound("no snapshot in the repository".into()));
        }
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
            [one] => {
                let id = SnapshotId(*one);
                Ok((id, self.load_snapshot(&id)?))
            }
            _ => Err(Error::InvalidArgument(format!(
                "snapshot prefix {spec} matches {} snapshots",
                matches.len()
            ))),
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
        let bytes = pack::read_blob(self.store.as_ref(), &self.keys, &id.0, &loc)?;
        Tree::decode(&bytes).at(|| Location::Blob(id.0))
    }

    /// The nodes under `path` (a `/`-separated path inside the snapshot, "" for the root),
    /// recursively when `recursive`, as (path, node) pairs in tree order.
    ///
    /// # Errors
    /// [`Error::NotFound`] when `path` does not exist; tree read errors.
    pub fn list(&self, snapshot: &SnapshotRecord, path: &str, recursive: bool) -> Result<Vec<(String, Node)>> {
        let mut out = Vec::new();
        let (prefix, tree) = match self.resolve(snapshot, path)? {
            Resolved::Root(t) => (String::new(), t),
            Resolved::Node(p, node) => match &node.content {
                NodeContent::Dir { tree } => {
                    let t = self.load_tree(tree)?;
                    out.push((p.clone(), node));
                    (p, t)
                }
                _ => return Ok(vec![(p, node)]),
            },
        };
        self.walk_into(&prefix, &tree, recursive, &mut out)?;
        Ok(out)
    }

    fn walk_into(&self, prefix: &str, tree: &Tree, recursive: bool, out: &mut Vec<(String, Node)>) -> Result<()> {
        for node in &tree.nodes {
            let p = join(prefix, &node.name_lossy());
            out.push((p.clone(), node.clone()));
            if let (true, NodeContent::Dir { tree }) = (recursive, &node.content) {
                let sub = self.load_tree(tree).at(|| Location::SnapshotPath(p.clone()))?;
                self.walk_into(&p, &sub, true, out)?;
            }
        }
        Ok(())
    }

    /// Resolves a path inside a snapshot.
    fn resolve(&self, snapshot: &SnapshotRecord, path: &str) -> Result<Resolved> {
        let root = self
            .load_tree(&snapshot.root)
            .at(|| Location::SnapshotPath("/".into()))?;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        if parts.is_empty() {
            return Ok(Resolved::Root(root));
        }
        let mut tree = root;
        let mut so_far = String::new();
        for (i, part) in parts.iter().enumerate() {
            let node = tree
                .nodes
                .iter()
                .find(|n| n.name == part.as_bytes())
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("{} in the snapshot", join(&so_far, part))))?;
            so_far = join(&so_far, part);
            if i + 1 == parts.len() {
                return Ok(Resolved::Node(so_far, node));
            }
            match &node.content {
                NodeContent::Dir { tree: t } => {
                    tree = self.load_tree(t).at(|| Location::SnapshotPath(so_far.clone()))?
                }
                _ => {
                    return Err(Error::NotFound(format!(
                        "{path} in the snapshot ({so_far} is not a directory)"
                    )))
                }
            }
        }
        unreachable!("the loop returns at the last part")
    }

    /// Makes the index cache current (after a backup added packs).
    fn refresh_index_cache(&mut self, new_index_file: Option<crate::id::IndexId>) -> Result<()> {
        let extra: Vec<_> = new_index_file.into_iter().collect();
        let merged = index::merge(&self.repo_id, Some(&self.index), &[], &extra)?;
        self.index = index::persist(merged, &self.repo_id, self.cache_dir.as_deref())?;
        Ok(())
    }
}

enum Resolved {
    Root(Tree),
    Node(String, Node),
}

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn add_passphrase_slot(
    store: &dyn Store,
    repo_id: &[u8; 16],
    master: &MasterKey,
    pass: &Passphrase,
    params: Argon2Params,
    label: &str,
) -> Result<String> {
    if pass.as_bytes().is_empty() {
        return Err(Error::InvalidArgument("the passphrase is empty".into()));
    }
    let salt = random_array()?;
    let kdf_out = keyslot::argon2id(pass.as_bytes(), &salt, params)?;
    let slot = NewSlot {
        repo_id: *repo_id,
        slot_id: random_array()?,
        label: label.to_string(),
        created: now_secs(),
        kdf: SlotKdf::Passphrase { params, salt },
    };
    let bytes = keyslot::encode(&slot, master, &kdf_out, &random_array()?)?;
    let name = crate::id::hex_encode(&slot.slot_id);
    store.put(FileKind::Key, &name, &bytes)?;
    Ok(name)
}

/// Loads every keyslot (bad ones are skipped; the error of the first is kept for reporting).
pub(crate) fn load_slots(store: &dyn Store) -> Result<(Vec<Keyslot>, Option<Error>)> {
    let mut names = store.list(FileKind::Key)?;
    names.sort();
    let mut slots = Vec::new();
    let mut first_err = None;
    for name in names {
        let loc = || Location::RepoFile(FileKind::Key.path(&name));
        match store.get(FileKind::Key, &name).and_then(|b| keyslot::decode(&b)) {
            Ok(s) if s.id_hex() == name => slots.push(s),
            Ok(_) => {
                first_err.get_or_insert(
                    Error::malformed("keyslot", Some(24), "slot id does not match the file name").at(loc()),
                );
            }
            Err(e) => {
                first_err.get_or_insert(e.at(loc()));
            }
        }
    }
    Ok((slots, first_err))
}

fn unlock(store: &dyn Store, repo_id: &[u8; 16], credentials: &Credentials) -> Result<MasterKey> {
    let (slots, slot_err) = load_slots(store)?;
    let Credentials::Passphrase(pass) = credentials;
    let mut tried = 0;
    let mut tamper_err = None;
    for slot in slots.iter().filter(|s| s.repo_id == *repo_id) {
        let SlotKdf::Passphrase { params, salt } = &slot.kdf;
        if tried == MAX_SLOTS_TRIED {
            break;
        }
        tried += 1;
        let kdf_out = keyslot::argon2id(pass.as_bytes(), salt, *params)?;
        match slot.unwrap_master(&kdf_out) {
            Ok(m) => return Ok(m),
            Err(Error::WrongPassphrase) => {}
            Err(e) => {
                tamper_err.get_or_insert(e.at(Location::RepoFile(FileKind::Key.path(&slot.id_hex()))));
            }
        }
    }
    if let Some(e) = tamper_err {
        return Err(e);
    }
    if tried == 0 {
        return Err(slot_err.unwrap_or_else(|| Error::NotFound("the repository has no usable keyslot".into())));
    }
    Err(Error::WrongPassphrase)
}

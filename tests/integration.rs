//! Integration tests of the library, one target with a module per area.
//!
//! Fixtures are generated, not stored: `support/history.rs` writes a deterministic chat
//! history (SQLite-like page file, JSON exports newest-first, media with forwarded copies, a
//! symlink, an empty file and folder) for any day; repositories are made in temporary
//! folders with cheap Argon2 settings.
//!
//! Known-answer vectors live in `tests/vectors/` and are printed in format-spec.md §11. After
//! an intended format change, regenerate both with `cargo run --example gen_vectors`;
//! `vectors::committed_vectors_are_current` fails until then.

#[path = "support/compare.rs"]
mod compare;
#[path = "support/counting.rs"]
mod counting;
#[path = "support/faulty.rs"]
mod faulty;
#[path = "support/history.rs"]
mod history;
#[path = "support/vectors.rs"]
mod vectors;

#[path = "integration/adversary.rs"]
mod adversary;
#[path = "integration/append.rs"]
mod append;
#[path = "integration/archiver_backup.rs"]
mod archiver_backup;
#[path = "integration/archiver_read.rs"]
mod archiver_read;
#[path = "integration/backup_restore.rs"]
mod backup_restore;
#[path = "integration/caches.rs"]
mod caches;
#[path = "integration/copy.rs"]
mod copy;
#[path = "integration/damage.rs"]
mod damage;
#[path = "integration/db_chunking.rs"]
mod db_chunking;
#[path = "integration/dictionaries.rs"]
mod dictionaries;
#[path = "integration/keys.rs"]
mod keys;
#[path = "integration/known_answers.rs"]
mod known_answers;
#[path = "integration/pack_hiding.rs"]
mod pack_hiding;
#[path = "integration/primitives.rs"]
mod primitives;
#[path = "integration/properties.rs"]
mod properties;
#[path = "integration/regression.rs"]
mod regression;
#[path = "integration/reliability.rs"]
mod reliability;
#[path = "integration/repository_damage.rs"]
mod repository_damage;
#[path = "integration/restore_safety.rs"]
mod restore_safety;
#[path = "integration/restore_syscalls.rs"]
mod restore_syscalls;
#[path = "integration/rotate.rs"]
mod rotate;
#[path = "integration/tree_walks.rs"]
mod tree_walks;
#[path = "integration/vault.rs"]
mod vault;

use std::path::Path;
use std::sync::Arc;

use packvault::format::keyslot::Argon2Params;
use packvault::{ClientState, Credentials, InitOptions, LocalStore, OpenOptions, Repository, Store};

/// The passphrase of every test repository.
pub const PASS: &str = "test passphrase";

/// Init options with an Argon2 cost that keeps tests fast.
pub fn fast_init(cache: Option<&Path>) -> InitOptions {
    InitOptions {
        kdf: Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 },
        cache_dir: cache.map(Path::to_path_buf),
        state: state_for(cache),
        ..InitOptions::default()
    }
}

/// The client state of a test: a `state` folder beside its cache folder (so a test that
/// copies a scratch folder copies the client with it), or none for repositories in memory
/// (the tests of pins, `adversary.rs`, choose their own; no test writes under `$HOME`).
pub fn state_for(cache: Option<&Path>) -> ClientState {
    match cache {
        Some(c) => ClientState::Dir(c.with_file_name("state")),
        None => ClientState::Disabled,
    }
}

/// A new repository in `dir/repo`, caching its index under `dir/cache`.
pub fn new_local_repo(dir: &Path) -> (Arc<LocalStore>, Repository) {
    new_local_repo_with(dir, fast_init(Some(&dir.join("cache"))))
}

/// As [`new_local_repo`], with explicit options.
pub fn new_local_repo_with(dir: &Path, options: InitOptions) -> (Arc<LocalStore>, Repository) {
    let store = Arc::new(LocalStore::create(dir.join("repo")).unwrap());
    let repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), options).unwrap();
    (store, repo)
}

/// Opens `store` again, as a new process would.
pub fn reopen(store: Arc<dyn Store>, cache: Option<&Path>) -> Repository {
    Repository::open(
        store,
        &Credentials::passphrase(PASS),
        &OpenOptions { cache_dir: cache.map(Path::to_path_buf), state: state_for(cache), ..OpenOptions::default() },
    )
    .unwrap()
}

/// `prefix/name`, or `name` at the top.
pub fn join_rel(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// Total bytes of the files under a folder.
pub fn dir_size(p: &Path) -> u64 {
    history::tree_bytes(p)
}

//! The S3 store against a real S3 server: Garage, started by `tests/s3/start-garage.sh`.
//!
//! ```text
//! eval "$(tests/s3/start-garage.sh)"
//! cargo test --release --test s3
//! kill "$(cat "$GARAGE_PIDFILE")"
//! ```
//!
//! The tests read the server from the environment the script prints (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `S3_BUCKET`; `GARAGE_BIN` for
//! tests that start their own server). Without it each test prints one line saying how to
//! run it and passes, so that `cargo test` works on a machine without Garage, unless
//! `PACKVAULT_S3_REQUIRED=1` (as `.ci/run` sets): then a missing server fails the test. Each
//! test works under its own key prefix, so tests run in parallel on one bucket; the test that
//! kills its server starts a server of its own.

#[path = "support/compare.rs"]
mod compare;
#[path = "support/counting.rs"]
mod counting;
#[path = "support/history.rs"]
mod history;

#[path = "s3/contract.rs"]
mod contract;
#[path = "s3/failures.rs"]
mod failures;
#[path = "s3/repository.rs"]
mod repository;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use packvault::format::keyslot::Argon2Params;
use packvault::{ClientState, Credentials, InitOptions, OpenOptions, Repository, S3Options, S3Store, Store};

/// The passphrase of every test repository.
pub const PASS: &str = "s3 test passphrase";

/// The S3 server the environment names.
#[derive(Debug, Clone)]
pub struct Server {
    /// `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    /// `S3_BUCKET`.
    pub bucket: String,
}

/// The server, or `None` (after one line on stderr) when the environment names none and
/// `PACKVAULT_S3_REQUIRED` is not 1.
pub fn server(test: &str) -> Option<Server> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    match (var("AWS_ENDPOINT_URL"), var("S3_BUCKET"), var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(endpoint), Some(bucket), Some(_), Some(_)) => Some(Server { endpoint, bucket }),
        _ => {
            assert!(
                std::env::var("PACKVAULT_S3_REQUIRED").as_deref() != Ok("1"),
                "{test}: PACKVAULT_S3_REQUIRED=1 but no S3 server in the environment: eval \"$(tests/s3/start-garage.sh)\" first"
            );
            say_skipped();
            None
        }
    }
}

/// One line per test process, past the test harness's capture (a passing test's output is
/// otherwise hidden).
fn say_skipped() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "S3 tests skipped: no S3 server in the environment; run eval \"$(tests/s3/start-garage.sh)\" first (PACKVAULT_S3_REQUIRED=1 makes this a failure)"
        );
    });
}

impl Server {
    /// `s3:ENDPOINT/BUCKET/PREFIX` with a prefix no other test (or run) uses.
    pub fn url(&self, test: &str) -> String {
        format!("s3:{}/{}/{}", self.endpoint, self.bucket, unique(test))
    }

    /// A store under a fresh prefix.
    pub fn store(&self, test: &str) -> Arc<S3Store> {
        self.store_with(test, S3Options::default())
    }

    /// A store under a fresh prefix, with `options`.
    pub fn store_with(&self, test: &str, options: S3Options) -> Arc<S3Store> {
        Arc::new(S3Store::open(&self.url(test), options).unwrap())
    }
}

/// `test-<time>-<counter>`.
pub fn unique(test: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{test}-{t:x}-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Init options with a cheap Argon2 and client state in `dir` (never under `$HOME`).
pub fn fast_init(dir: &Path) -> InitOptions {
    InitOptions {
        kdf: Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 },
        cache_dir: Some(dir.join("cache")),
        state: ClientState::Dir(dir.join("state")),
        ..InitOptions::default()
    }
}

/// Open options with client state in `dir`.
pub fn open_options(dir: &Path) -> OpenOptions {
    OpenOptions {
        cache_dir: Some(dir.join("cache")),
        state: ClientState::Dir(dir.join("state")),
        ..OpenOptions::default()
    }
}

/// Opens `store` as a new process would.
pub fn reopen(store: Arc<dyn Store>, dir: &Path) -> Repository {
    Repository::open(store, &Credentials::passphrase(PASS), &open_options(dir)).unwrap()
}

/// A temporary folder.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().to_path_buf();
    (t, p)
}

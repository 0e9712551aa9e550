//! The vault server (feature `server`): HTTP on axum/tokio, records in SQLite.
//!
//! Every request is handled synchronously on tokio's blocking pool ([`App::handle`]): the work
//! is a database transaction with an fsync and a few scalar multiplications, and keeping it
//! out of async code keeps the ordering rules readable — above all that a login attempt is
//! committed to disk before the first byte of its answer is produced (vault-protocol.md §5).
//!
//! Open logins live in memory only (the server's OPAQUE state between its answer and the
//! client's finalization, at most [`SESSION_TTL`]). A crash forgets them, which costs nothing:
//! their attempts were counted before they were answered, and at start-up every record that
//! reached its limit is destroyed.

mod db;
mod keys;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::StatusCode;
use opaque_ke::{
    CredentialFinalization, CredentialRequest, RegistrationRequest, RegistrationUpload, ServerLogin,
    ServerLoginParameters, ServerRegistration,
};
use rand_core::RngCore;

use db::{Db, Gate};
pub use db::{RecordInfo, Stats};
pub use keys::key_path;
use keys::VaultKeys;

use crate::protocol::{self, code, path, size, KsfParams, Reader, Suite, VaultKey};

/// How long the server keeps an open login waiting for its finalization.
pub const SESSION_TTL: Duration = Duration::from_secs(30);
/// Most logins open at once; more are refused as busy (before counting).
pub const MAX_OPEN_LOGINS: usize = 4096;
/// The default number of wrong PINs in a row after which a record is destroyed.
pub const DEFAULT_ATTEMPT_LIMIT: u32 = packvault::MAX_PIN_ATTEMPTS;

/// A server error: what failed and where (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeError(pub String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServeError {}

/// How to run a vault.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The database; its key file is [`key_path`] of it.
    pub db: PathBuf,
    /// Where to listen (port 0: any free port, printed at start).
    pub listen: SocketAddr,
    /// Wrong PINs in a row that destroy a record enrolled from now on.
    pub attempt_limit: u32,
}

struct OpenLogin {
    record: [u8; 16],
    login: ServerLogin<Suite>,
    expires: Instant,
}

/// The vault: keys, database and open logins.
pub struct App {
    keys: VaultKeys,
    db: Mutex<Db>,
    logins: Mutex<HashMap<[u8; 16], OpenLogin>>,
    attempt_limit: u32,
    db_path: PathBuf,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

type Reply = (u8, Vec<u8>);

fn reply(c: u8, msg: &str) -> Reply {
    (c, msg.as_bytes().to_vec())
}

impl App {
    /// Opens the vault at `db` (creating the database and key file on first start) and
    /// destroys the records that reached their limit before a crash.
    ///
    /// # Errors
    /// When the database or the key file cannot be opened or created, or the key file is
    /// readable by others.
    pub fn open(db_path: &Path, attempt_limit: u32) -> Result<(App, bool), ServeError> {
        if attempt_limit == 0 {
            return Err(ServeError("the attempt limit must be at least 1".into()));
        }
        let (keys, created) = keys::load_or_create(db_path, true)?;
        let mut db = Db::open(db_path, true)?;
        let dberr = |e: rusqlite::Error| ServeError(format!("vault database {}: {e}", db_path.display()));
        db.destroy_all_exhausted(now()).map_err(dberr)?;
        let app = App {
            keys,
            db: Mutex::new(db),
            logins: Mutex::new(HashMap::new()),
            attempt_limit,
            db_path: db_path.to_path_buf(),
        };
        Ok((app, created))
    }

    /// The vault's public key.
    #[must_use]
    pub fn key(&self) -> VaultKey {
        self.keys.public
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn logins(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], OpenLogin>> {
        self.logins.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles one request: `path` and body in, HTTP status and body out.
    #[must_use]
    pub fn handle(&self, path: &str, request: &[u8]) -> (StatusCode, Vec<u8>) {
        let Some(eph) = request.get(..32).and_then(|e| <[u8; 32]>::try_from(e).ok()) else {
            return (StatusCode::BAD_REQUEST, b"request too short".to_vec());
        };
        let Some(key) = protocol::server_response_key(&self.keys.secret, &self.keys.public, &eph) else {
            return (StatusCode::BAD_REQUEST, b"bad ephemeral key".to_vec());
        };
        let rest = &request[32..];
        let (c, payload) = match path {
            path::REGISTER_START => self.register_start(rest),
            path::REGISTER_FINISH => self.register_finish(rest),
            path::LOGIN_START => self.login_start(rest),
            path::LOGIN_FINISH => self.login_finish(rest),
            path::LOGIN_ABORT => self.login_abort(rest),
            path::ATTEMPTS => self.attempts(rest),
            path::REMOVE => self.remove(rest),
            _ => reply(code::MALFORMED, "unknown path"),
        };
        let status = match c {
            code::OK => StatusCode::OK,
            code::UNKNOWN_RECORD | code::NO_SESSION => StatusCode::NOT_FOUND,
            code::BINDING_MISMATCH | code::EXISTS => StatusCode::CONFLICT,
            code::DESTROYED => StatusCode::GONE,
            code::MALFORMED => StatusCode::BAD_REQUEST,
            code::BUSY => StatusCode::SERVICE_UNAVAILABLE,
            code::LOGIN_FAILED => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, protocol::seal_response(&key, path, request, c, &payload))
    }

    fn internal(&self, e: &dyn std::fmt::Display) -> Reply {
        eprintln!("packvault-vault: database {}: {e}", self.db_path.display());
        reply(code::INTERNAL, "internal error")
    }

    fn register_start(&self, rest: &[u8]) -> Reply {
        let Some(request) = Reader::new(rest)
            .rest_exact(size::REGISTRATION_REQUEST)
            .and_then(|b| RegistrationRequest::<Suite>::deserialize(b).ok())
        else {
            return reply(code::MALFORMED, "registration request");
        };
        let mut id = [0u8; 16];
        protocol::os_rng().fill_bytes(&mut id);
        match ServerRegistration::<Suite>::start(&self.keys.setup, request, &id) {
            Ok(r) => {
                let mut out = id.to_vec();
                out.extend_from_slice(&r.message.serialize());
                (code::OK, out)
            }
            Err(_) => reply(code::MALFORMED, "registration request"),
        }
    }

    fn register_finish(&self, rest: &[u8]) -> Reply {
        let mut r = Reader::new(rest);
        let (Some(id), Some(binding), Some(ksf)) = (r.array::<16>(), r.array::<32>(), r.array::<12>()) else {
            return reply(code::MALFORMED, "registration upload");
        };
        let Some(upload) =
            r.rest_exact(size::REGISTRATION_RECORD).and_then(|b| RegistrationUpload::<Suite>::deserialize(b).ok())
        else {
            return reply(code::MALFORMED, "registration upload");
        };
        if KsfParams::decode(&ksf).argon2().is_none() {
            return reply(code::MALFORMED, "key-stretching parameters");
        }
        let record = ServerRegistration::<Suite>::finish(upload).serialize();
        match self.db().insert(&id, &binding, &record, &ksf, self.attempt_limit, now()) {
            Ok(true) => (code::OK, self.attempt_limit.to_le_bytes().to_vec()),
            Ok(false) => reply(code::EXISTS, "record exists"),
            Err(e) => self.internal(&e),
        }
    }

    fn login_start(&self, rest: &[u8]) -> Reply {
        let mut r = Reader::new(rest);
        let (Some(id), Some(binding)) = (r.array::<16>(), r.array::<32>()) else {
            return reply(code::MALFORMED, "login request");
        };
        // Everything that can be checked without the record is checked before counting.
        let Some(request) = r.rest_exact(size::KE1).and_then(|b| CredentialRequest::<Suite>::deserialize(b).ok())
        else {
            return reply(code::MALFORMED, "login request");
        };
        if self.logins().len() >= MAX_OPEN_LOGINS {
            return reply(code::BUSY, "too many open logins");
        }
        // The attempt is committed (fsync) here, before anything of the answer exists.
        let gate = self.db().begin_login(&id, &binding, now());
        let (registration, ksf, left) = match gate {
            Ok(Gate::Go { registration, ksf, left }) => (registration, ksf, left),
            Ok(Gate::Unknown) => return reply(code::UNKNOWN_RECORD, "unknown record"),
            Ok(Gate::BindingMismatch) => return reply(code::BINDING_MISMATCH, "another binding; not counted"),
            Ok(Gate::Destroyed) => return reply(code::DESTROYED, "destroyed"),
            Err(e) => return self.internal(&e),
        };
        let Ok(registration) = ServerRegistration::<Suite>::deserialize(&registration) else {
            return self.internal(&"stored registration does not decode");
        };
        let params = ServerLoginParameters { context: Some(protocol::OPAQUE_CONTEXT), ..Default::default() };
        let started = match ServerLogin::start(
            &mut protocol::os_rng(),
            &self.keys.setup,
            Some(registration),
            request,
            &id,
            params,
        ) {
            Ok(s) => s,
            Err(_) => return reply(code::MALFORMED, "login request"),
        };
        let mut session = [0u8; 16];
        protocol::os_rng().fill_bytes(&mut session);
        self.logins()
            .insert(session, OpenLogin { record: id, login: started.state, expires: Instant::now() + SESSION_TTL });
        let mut out = session.to_vec();
        out.extend_from_slice(&left.to_le_bytes());
        out.extend_from_slice(&ksf);
        out.extend_from_slice(&started.message.serialize());
        (code::OK, out)
    }

    fn login_finish(&self, rest: &[u8]) -> Reply {
        let mut r = Reader::new(rest);
        let Some(session) = r.array::<16>() else { return reply(code::MALFORMED, "login finalization") };
        let Some(open) = self.logins().remove(&session) else { return reply(code::NO_SESSION, "no such login") };
        if open.expires < Instant::now() {
            self.login_ended(&open.record);
            return reply(code::NO_SESSION, "login expired");
        }
        let finalization = r.rest_exact(size::KE3).and_then(|b| CredentialFinalization::<Suite>::deserialize(b).ok());
        let params = ServerLoginParameters { context: Some(protocol::OPAQUE_CONTEXT), ..Default::default() };
        let verified = finalization.is_some_and(|f| open.login.finish(f, params).is_ok());
        if !verified {
            self.login_ended(&open.record);
            return reply(code::LOGIN_FAILED, "login failed");
        }
        match self.db().complete_login(&open.record, now()) {
            Ok(true) => (code::OK, Vec::new()),
            Ok(false) => reply(code::DESTROYED, "destroyed"),
            Err(e) => self.internal(&e),
        }
    }

    fn login_abort(&self, rest: &[u8]) -> Reply {
        let Some(session) = Reader::new(rest).rest_exact(16).and_then(|s| <[u8; 16]>::try_from(s).ok()) else {
            return reply(code::MALFORMED, "login abort");
        };
        let Some(open) = self.logins().remove(&session) else { return reply(code::NO_SESSION, "no such login") };
        self.login_ended(&open.record);
        (code::OK, Vec::new())
    }

    /// A login of `record` ended without completing: when it was the last open one and the
    /// record is at its limit, the record is destroyed now.
    fn login_ended(&self, record: &[u8; 16]) {
        if self.logins().values().any(|o| o.record == *record) {
            return;
        }
        if let Err(e) = self.db().destroy_if_exhausted(record, now()) {
            eprintln!("packvault-vault: database {}: {e}", self.db_path.display());
        }
    }

    /// Drops expired logins (and destroys the records they exhausted).
    pub fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<[u8; 16]> = {
            let mut logins = self.logins();
            let ids: Vec<[u8; 16]> = logins.iter().filter(|(_, o)| o.expires < now).map(|(s, _)| *s).collect();
            ids.iter().filter_map(|s| logins.remove(s)).map(|o| o.record).collect()
        };
        for record in expired {
            self.login_ended(&record);
        }
    }

    fn id(rest: &[u8]) -> Option<[u8; 16]> {
        Reader::new(rest).rest_exact(16).and_then(|s| s.try_into().ok())
    }

    fn attempts(&self, rest: &[u8]) -> Reply {
        let Some(id) = Self::id(rest) else { return reply(code::MALFORMED, "record id") };
        match self.db().attempts(&id) {
            Ok(Some(Some((failures, limit)))) => {
                let mut out = failures.to_le_bytes().to_vec();
                out.extend_from_slice(&limit.to_le_bytes());
                (code::OK, out)
            }
            Ok(Some(None)) => reply(code::DESTROYED, "destroyed"),
            Ok(None) => reply(code::UNKNOWN_RECORD, "unknown record"),
            Err(e) => self.internal(&e),
        }
    }

    fn remove(&self, rest: &[u8]) -> Reply {
        let Some(id) = Self::id(rest) else { return reply(code::MALFORMED, "record id") };
        self.logins().retain(|_, o| o.record != id);
        match self.db().remove(&id) {
            Ok(true) => (code::OK, Vec::new()),
            Ok(false) => reply(code::UNKNOWN_RECORD, "unknown record"),
            Err(e) => self.internal(&e),
        }
    }
}

/// Runs the vault until SIGTERM or ctrl-c; prints its key and address on stdout first.
///
/// # Errors
/// When the vault cannot open, or the address cannot be bound.
pub fn serve(config: &ServeConfig) -> Result<(), ServeError> {
    let (app, created) = App::open(&config.db, config.attempt_limit)?;
    let app = Arc::new(app);
    if created {
        println!("packvault-vault: created the vault key file {}", key_path(&config.db).display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| ServeError(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener.local_addr().map_err(|e| ServeError(format!("listening socket: {e}")))?;
        println!("packvault-vault: vault key {}", app.key());
        println!("packvault-vault: listening on http://{addr}");
        let mut router = axum::Router::new();
        for p in path::ALL {
            let app = app.clone();
            router = router.route(
                p,
                axum::routing::post(move |body: Bytes| async move {
                    let app = app.clone();
                    tokio::task::spawn_blocking(move || app.handle(p, &body))
                        .await
                        .unwrap_or((StatusCode::INTERNAL_SERVER_ERROR, b"internal error".to_vec()))
                }),
            );
        }
        let router = router.layer(axum::extract::DefaultBodyLimit::max(1024));
        let sweeper = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let app = app.clone();
                    let _ = tokio::task::spawn_blocking(move || app.sweep()).await;
                }
            })
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| ServeError(format!("server: {e}")))?;
        sweeper.abort();
        println!("packvault-vault: stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Counts records in the database at `db` (read-only; the server may be running).
///
/// # Errors
/// When the database cannot be read.
pub fn stats(db: &Path) -> Result<Stats, ServeError> {
    Db::open(db, false)?.stats().map_err(|e| ServeError(format!("vault database {}: {e}", db.display())))
}

/// One record of the database at `db` (read-only), `None` for an unknown id.
///
/// # Errors
/// When the database cannot be read.
pub fn record(db: &Path, id: &[u8; 16]) -> Result<Option<RecordInfo>, ServeError> {
    Db::open(db, false)?.record(id).map_err(|e| ServeError(format!("vault database {}: {e}", db.display())))
}

/// The public key of the vault whose database is `db` (from its key file).
///
/// # Errors
/// When the key file is missing, damaged or readable by others.
pub fn public_key(db: &Path) -> Result<VaultKey, ServeError> {
    Ok(keys::load_or_create(db, false)?.0.public)
}

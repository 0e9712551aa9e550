//! A repository on an S3-compatible object store (feature `s3`): AWS, Garage, MinIO, Ceph
//! RGW, and anything else that speaks the S3 API.
//!
//! **Client.** OpenDAL's S3 service (pinned: 0.57, the newest within the workspace's
//! rust-version), driven by a tokio runtime that the store owns (two worker threads), so the
//! rest of the library stays synchronous: every [`Store`] method blocks on one future. The
//! store drives OpenDAL's async operator itself rather than its `blocking::Operator` (which is
//! the same `block_on` on a runtime handle) because the blocking writer of 0.57 cannot abort a
//! multipart upload. `object_store` would serve as well (conditional puts, multipart, the same
//! reqwest stack); OpenDAL was chosen for its retry and timeout layers and its credential
//! chain (environment, profile files). TLS is rustls with the `ring` provider, installed
//! process-wide on first use unless the process installed another.
//!
//! **Create-only.** Every `put` sends `If-None-Match: *`: AWS (since 2024) and MinIO refuse
//! it with 412 when the name is taken. Garage and older services ignore the header, so unless
//! the store knows that the server honours it ([`S3Options::create_only`], or
//! [`Store::probe_create_only`] found out), a `put` first asks (`HEAD`) whether the name is
//! taken and then reports [`Error::AlreadyExists`]. Two writers of one name can still both
//! write on such a server; nothing depends on it (see [`Store::create_only`]). Where the server
//! refuses with 412, a `PUT` (up to the multipart threshold) that finds exactly its own bytes
//! under the name succeeds: that is a retry whose first attempt landed after a timeout.
//!
//! **Writes.** A `put` is one `PUT` up to [`S3Options::multipart_threshold`] (32 MiB by
//! default, so a pack of the default 16 MiB target is one request), else a multipart upload in
//! [`S3Options::part_size`] parts. A streamed upload ([`Store::begin`]; a pack's name is the
//! hash of its bytes, known only at the end) stays in memory up to the threshold and is then
//! `PUT` under its name; past the threshold it streams as a multipart upload to
//! `tmp/<random>`, is copied server-side to its name at the end, and the temporary object is
//! removed ([`Store::sweep_temporaries`] removes those a killed writer left). A `PUT` that
//! returned is durable: [`Store::flush`] has nothing to wait for.
//!
//! **Reads.** `get_range` is one ranged `GET`, the restore planner's coalesced and aligned
//! ranges go to the server as they are. At most [`S3Options::connections`] requests of one
//! store are in flight (default 8; restore and check read from rayon threads).
//!
//! **Failures.** Each request has a timeout, and failures a retry may cure (5xx, 429,
//! timeouts, refused or reset connections) are retried with exponential backoff and jitter
//! ([`S3Options::retries`]). What is left maps onto the library's error classes (module
//! `errors`). Credentials come from [`S3Options::credentials`], else `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), else the profile files
//! (`~/.aws/credentials`, `AWS_PROFILE`); the EC2 metadata service is never asked. They never
//! appear in `Debug` output, locations or error messages.

mod errors;
mod options;
mod upload;
mod url;

pub use options::{S3Credentials, S3Options};

use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::options::{ListOptions, ReadOptions, WriteOptions};
use opendal::BytesRange;
use opendal::{Buffer, ErrorKind as Dal, HttpTransporter, OperationContext, Operator};
use opendal_http_transport_reqwest::ReqwestTransport;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::id::hex_encode;
use crate::store::{check_range, FileKind, Store, Upload};
use url::S3Url;

/// A store in a bucket of an S3-compatible service, under a key prefix. See the module
/// documentation for what each operation sends.
pub struct S3Store {
    inner: Arc<Inner>,
}

/// What the store and its uploads share.
struct Inner {
    op: Operator,
    runtime: Option<tokio::runtime::Runtime>,
    permits: Permits,
    location: String,
    options: S3Options,
    /// Secrets to cut out of error messages.
    secrets: Vec<Zeroizing<String>>,
    /// What [`Store::probe_create_only`] found.
    probed: OnceLock<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime blocks on its workers, which panics inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("location", &self.inner.location).finish_non_exhaustive()
    }
}

/// A counting semaphore: at most `n` requests in flight.
struct Permits {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a>(&'a Permits);

impl Permits {
    fn new(n: usize) -> Permits {
        Permits { free: Mutex::new(n.max(1)), freed: Condvar::new() }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

impl S3Store {
    /// Opens the store at an `s3:` URL: `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`, or
    /// `s3://BUCKET[/PREFIX]` with the endpoint from `AWS_ENDPOINT_URL` (AWS when unset).
    /// Sends nothing yet: a wrong key or a missing bucket shows at the first request.
    ///
    /// Must not be called, nor the store used, from inside an async runtime (the store blocks
    /// on its own).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming what is wrong with the URL or the options;
    /// [`Error::Io`] when the runtime cannot start.
    pub fn open(url: &str, options: S3Options) -> Result<S3Store> {
        let env_endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
        let url = S3Url::parse(url, env_endpoint.as_deref())?;
        if options.part_size < (5 << 20) {
            return Err(Error::InvalidArgument(format!(
                "S3 part size of {} bytes is below the 5 MiB that S3 requires",
                options.part_size
            )));
        }
        let region = options
            .region
            .clone()
            .or_else(|| env_nonempty("AWS_REGION"))
            .or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        // No-op when the process already installed a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("packvault-s3")
            .enable_all()
            .build()?;
        let mut builder = opendal::services::S3::default()
            .bucket(&url.bucket)
            .root(&format!("/{}", url.prefix))
            .region(&region)
            .disable_ec2_metadata();
        if let Some(e) = &url.endpoint {
            builder = builder.endpoint(e);
        }
        if options.virtual_host_style.unwrap_or(url.endpoint.is_none()) {
            builder = builder.enable_virtual_host_style();
        }
        let mut secrets: Vec<Zeroizing<String>> =
            env_nonempty("AWS_SECRET_ACCESS_KEY").into_iter().map(Zeroizing::new).collect();
        if let Some(c) = &options.credentials {
            builder = builder.access_key_id(&c.access_key_id).secret_access_key(&c.secret_access_key);
            if let Some(t) = &c.session_token {
                builder = builder.session_token(t);
            }
            secrets.push(c.secret_access_key.clone());
        }
        let op = {
            let _in_runtime = runtime.enter();
            // This store's own client: its pooled connections belong to this runtime.
            let client = reqwest::Client::builder()
                .connect_timeout(options.timeout.min(Duration::from_secs(30)))
                .pool_max_idle_per_host(options.connections)
                .build()
                .map_err(|e| {
                    Error::Io(std::io::Error::other(format!("S3 store {}: HTTP client: {e}", url.location())))
                })?;
            let transport = HttpTransporter::new(ReqwestTransport::new(client));
            Operator::new(builder)
                .map_err(|e| Error::InvalidArgument(format!("S3 store {}: {}", url.location(), e.message())))?
                .with_context(OperationContext::new().with_http_transport(transport))
                .layer(TimeoutLayer::new().with_timeout(options.timeout).with_io_timeout(options.io_timeout))
                .layer(
                    RetryLayer::new()
                        .with_max_times(options.retries)
                        .with_min_delay(options.retry_min_delay)
                        .with_max_delay(options.retry_max_delay)
                        .with_factor(2.0)
                        .with_jitter(),
                )
        };
        let inner = Inner {
            op,
            runtime: Some(runtime),
            permits: Permits::new(options.connections),
            location: url.location(),
            options,
            secrets,
            probed: OnceLock::new(),
        };
        Ok(S3Store { inner: Arc::new(inner) })
    }

    /// The options the store was opened with (credentials included, redacted in `Debug`).
    #[must_use]
    pub fn options(&self) -> &S3Options {
        &self.inner.options
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The key of a repository file, relative to the prefix; refuses names that could leave
/// their folder.
fn key(kind: FileKind, name: &str) -> Result<String> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        return Err(Error::InvalidArgument(format!("bad repository file name {name:?}")));
    }
    Ok(kind.path(name))
}

impl Inner {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the store")
    }

    /// Runs one request under a connection permit.
    fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        let _permit = self.permits.acquire();
        self.runtime().block_on(f)
    }

    fn error(&self, e: &opendal::Error, op: &str, path: &str) -> Error {
        errors::map(e, op, path, &self.location, &self.secrets)
    }

    fn create_only(&self) -> Option<bool> {
        self.options.create_only.or_else(|| self.probed.get().copied())
    }

    fn stat(&self, path: &str) -> Result<opendal::Metadata> {
        self.run(self.op.stat(path)).map_err(|e| self.error(&e, "HEAD", path))
    }

    /// `NotFound` for the config, unless the bucket itself is missing: a `HEAD` of a key in
    /// a missing bucket is a bare 404, so one listing asks (only when there is no config).
    fn no_config(&self) -> Error {
        let options = ListOptions { limit: Some(1), ..ListOptions::default() };
        match self.run(self.op.list_options("/", options)) {
            Err(e) if e.kind() != Dal::NotFound => self.error(&e, "LIST", ""),
            _ => Error::NotFound("config".into()),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        match self.stat(path) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A create-only `PUT` (multipart above the threshold).
    fn put(&self, path: &str, data: Buffer) -> Result<()> {
        if self.create_only() != Some(true) && self.exists(path)? {
            return Err(Error::AlreadyExists(path.to_string()));
        }
        match self.put_unchecked(path, data.clone()) {
            // A `PUT` retried after a timeout whose first attempt landed meets its own object
            // (412 from a server that honours `If-None-Match`): the same bytes are no conflict.
            Err(Error::AlreadyExists(p)) if data.len() <= self.options.multipart_threshold => {
                match self.run(self.op.read(path)) {
                    Ok(found) if found.to_bytes() == data.to_bytes() => Ok(()),
                    _ => Err(Error::AlreadyExists(p)),
                }
            }
            r => r,
        }
    }

    /// A `PUT` with `If-None-Match: *` and no look first.
    fn put_unchecked(&self, path: &str, data: Buffer) -> Result<()> {
        let multipart = data.len() > self.options.multipart_threshold;
        let options = WriteOptions {
            if_not_exists: true,
            chunk: multipart.then_some(self.options.part_size),
            concurrent: if multipart { 4 } else { 1 },
            ..WriteOptions::default()
        };
        self.run(self.op.write_options(path, data, options)).map(|_| ()).map_err(|e| self.error(&e, "PUT", path))
    }

    /// A ranged `GET` of `len` bytes at `offset`.
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Buffer> {
        let path = key(kind, name)?;
        let Some(end) = offset.checked_add(len as u64) else {
            let detail = format!("{path}: range of {len} bytes at {offset} runs past the end");
            return Err(Error::malformed("repository file", Some(offset), detail));
        };
        if len == 0 {
            check_range(kind, name, self.stat(&path)?.content_length(), offset, len)?;
            return Ok(Buffer::new());
        }
        let options = ReadOptions { range: BytesRange::new(offset, Some(end - offset)), ..ReadOptions::default() };
        match self.run(self.op.read_options(&path, options)) {
            Ok(buf) if buf.len() == len => Ok(buf),
            // The server stops at the end of the object.
            Ok(buf) => Err(check_range(kind, name, offset + buf.len() as u64, offset, len)
                .err()
                .unwrap_or_else(|| Error::malformed("repository file", Some(offset), format!("{path}: short read")))),
            Err(e) if e.kind() == Dal::NotFound => Err(Error::NotFound(path)),
            Err(e) => {
                // A range past the end is the caller's (or the file's) fault, not the network's.
                if let Ok(meta) = self.stat(&path) {
                    check_range(kind, name, meta.content_length(), offset, len)?;
                }
                Err(self.error(&e, "GET", &path))
            }
        }
    }
}

impl Store for S3Store {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.inner.put(&key(kind, name)?, Buffer::from(data.to_vec()))
    }

    fn put_parts(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.inner.put(&key(kind, name)?, Buffer::from(parts.concat()))
    }

    fn begin(&self, kind: FileKind) -> Result<Box<dyn Upload>> {
        Ok(Box::new(upload::S3Upload::new(self.inner.clone(), kind)))
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let path = key(kind, name)?;
        self.inner.run(self.inner.op.read(&path)).map(|b| b.to_vec()).map_err(|e| self.inner.error(&e, "GET", &path))
    }

    /// A `HEAD`, then a `GET` of at most the size it gave: a file that grew in between
    /// cannot make the reader take more than `limit` bytes.
    fn get_limited(&self, kind: FileKind, name: &str, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        let path = key(kind, name)?;
        let size = match self.inner.stat(&path) {
            Ok(meta) => meta.content_length(),
            Err(Error::NotFound(_)) if kind == FileKind::Config => return Err(self.inner.no_config()),
            Err(e) => return Err(e),
        };
        if size > limit {
            return Err(Error::LimitExceeded { what, found: size, limit });
        }
        let len = usize::try_from(size).map_err(|_| Error::LimitExceeded { what, found: size, limit })?;
        Ok(self.inner.read_range(kind, name, 0, len)?.to_vec())
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        Ok(self.inner.read_range(kind, name, offset, len)?.to_vec())
    }

    fn get_range_into(&self, kind: FileKind, name: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        let data = self.inner.read_range(kind, name, offset, len)?;
        buf.clear();
        buf.reserve(len);
        for chunk in data {
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        Ok(self.inner.stat(&key(kind, name)?)?.content_length())
    }

    /// A paged listing (1000 keys a request) of the kind's folder; packs recursively.
    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        if kind == FileKind::Config {
            return match self.inner.exists("config")? {
                true => Ok(vec!["config".into()]),
                false => match self.inner.no_config() {
                    Error::NotFound(_) => Ok(Vec::new()),
                    e => Err(e),
                },
            };
        }
        let dir = format!("{}/", kind.dir());
        let options = ListOptions { recursive: kind == FileKind::Pack, ..ListOptions::default() };
        let entries = self
            .inner
            .run(self.inner.op.list_options(&dir, options))
            .map_err(|e| self.inner.error(&e, "LIST", &dir))?;
        Ok(entries
            .into_iter()
            .filter(|e| !e.path().ends_with('/'))
            .filter_map(|e| {
                let name = e.name();
                (!name.starts_with('.') && kind.path(name) == e.path()).then(|| name.to_string())
            })
            .collect())
    }

    /// A `HEAD` (S3 deletes a missing key without a word), then the `DELETE`.
    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let path = key(kind, name)?;
        if !self.inner.exists(&path)? {
            return Err(Error::NotFound(path));
        }
        self.inner.run(self.inner.op.delete(&path)).map_err(|e| self.inner.error(&e, "DELETE", &path))
    }

    /// Objects under `tmp/` (streamed uploads a killed writer left, probes) older than
    /// `older_than` by the server's clock... as the listing reports it against this clock.
    fn sweep_temporaries(&self, older_than: Duration, dry_run: bool) -> Result<(u64, u64)> {
        let options = ListOptions { recursive: true, ..ListOptions::default() };
        let entries = self
            .inner
            .run(self.inner.op.list_options(upload::TMP_DIR, options))
            .map_err(|e| self.inner.error(&e, "LIST", upload::TMP_DIR))?;
        let now = SystemTime::now();
        let (mut count, mut bytes) = (0, 0);
        for e in entries.into_iter().filter(|e| !e.path().ends_with('/')) {
            let meta = e.metadata();
            let Some(modified) = meta.last_modified().map(SystemTime::from) else { continue };
            // A clock set back makes every object look new: then nothing is swept.
            if now.duration_since(modified).unwrap_or_default() < older_than {
                continue;
            }
            if !dry_run {
                match self.inner.run(self.inner.op.delete(e.path())) {
                    Ok(()) => {}
                    Err(err) if err.kind() == Dal::NotFound => continue,
                    Err(err) => return Err(self.inner.error(&err, "DELETE", e.path())),
                }
            }
            count += 1;
            bytes += meta.content_length();
        }
        Ok((count, bytes))
    }

    fn describe(&self) -> String {
        self.inner.location.clone()
    }

    /// The normalized URL: scheme, host, port, bucket and prefix, never credentials.
    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn create_only(&self) -> Option<bool> {
        self.inner.create_only()
    }

    /// Writes `tmp/create-only-probe-<random>` twice with `If-None-Match: *`: the server
    /// honours create-only when it refuses the second write. Then removes it.
    fn probe_create_only(&self) -> Result<Option<bool>> {
        if let Some(known) = self.inner.create_only() {
            return Ok(Some(known));
        }
        let path = format!("{}create-only-probe-{}", upload::TMP_DIR, hex_encode(&crate::crypto::random_array::<8>()?));
        self.inner.put_unchecked(&path, Buffer::from(b"probe".to_vec()))?;
        let honoured = match self.inner.put_unchecked(&path, Buffer::from(b"probe".to_vec())) {
            Ok(()) => false,
            Err(Error::AlreadyExists(_)) => true,
            Err(e) => {
                let _ = self.inner.run(self.inner.op.delete(&path));
                return Err(e);
            }
        };
        let _ = self.inner.run(self.inner.op.delete(&path));
        let _ = self.inner.probed.set(honoured);
        Ok(Some(honoured))
    }

    /// Zero on a server that honours create-only writes (AWS, MinIO: they list consistently),
    /// else [`S3Options::lock_settle`]. Probes the server first when that is unknown (four
    /// small requests instead of a wait at every lock).
    fn lock_settle(&self) -> Duration {
        let honoured = match self.inner.create_only() {
            Some(known) => Some(known),
            None => self.probe_create_only().ok().flatten(),
        };
        if honoured == Some(true) {
            Duration::ZERO
        } else {
            self.inner.options.lock_settle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_location_hold_no_secret() {
        let options = S3Options {
            credentials: Some(S3Credentials::new("GKexampleid", "s3cr3t-SECRET-value").with_session_token("tok3n-X")),
            ..S3Options::default()
        };
        let store = S3Store::open("s3:HTTP://LocalHost:3900/bucket/pre//fix/", options).unwrap();
        assert_eq!(store.location(), "s3:http://localhost:3900/bucket/pre/fix");
        assert_eq!(store.describe(), store.location());
        for shown in [format!("{store:?}"), format!("{:?}", store.options()), store.location()] {
            assert!(!shown.contains("s3cr3t") && !shown.contains("tok3n"), "{shown}");
        }
        assert!(format!("{:?}", store.options()).contains("GKexampleid"), "the key id is not secret");
    }

    /// The contract test every store passes, on the S3 server the environment names
    /// (`tests/s3/start-garage.sh` prints it); without one, says so and passes, unless
    /// `PACKVAULT_S3_REQUIRED=1`.
    #[test]
    fn contract_on_a_real_server() {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let (Some(endpoint), Some(bucket)) = (var("AWS_ENDPOINT_URL"), var("S3_BUCKET")) else {
            assert_ne!(var("PACKVAULT_S3_REQUIRED").as_deref(), Some("1"), "no S3 server in the environment");
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "store::s3 contract_on_a_real_server skipped: no S3 server; run eval \"$(tests/s3/start-garage.sh)\" first"
            );
            return;
        };
        let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
        let store =
            S3Store::open(&format!("s3:{endpoint}/{bucket}/unit-contract-{t:x}"), S3Options::default()).unwrap();
        crate::store::tests::exercise(&store);
        assert_eq!(store.sweep_temporaries(Duration::ZERO, true).unwrap(), (0, 0), "no temporary object left");
    }

    #[test]
    fn bad_options_and_names_are_refused() {
        let e = S3Store::open("s3://bucket", S3Options { part_size: 1 << 20, ..S3Options::default() }).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{e}");
        assert!(key(FileKind::Index, "../config").is_err());
        assert!(key(FileKind::Index, "").is_err());
        assert_eq!(key(FileKind::Pack, &"ab".repeat(32)).unwrap(), format!("packs/ab/{}", "ab".repeat(32)));
    }

    #[test]
    fn permits_bound_what_runs_at_once() {
        let permits = Arc::new(Permits::new(3));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..12 {
                let (permits, running, most) = (permits.clone(), running.clone(), most.clone());
                s.spawn(move || {
                    let _p = permits.acquire();
                    let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}

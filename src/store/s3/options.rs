//! The options of an [`S3Store`](super::S3Store) and its credentials, with their defaults.

use std::time::Duration;

use zeroize::Zeroizing;

/// Tunables of an [`S3Store`](super::S3Store). `Default` gives the values below.
#[derive(Clone)]
pub struct S3Options {
    /// Requests in flight at once, at most (default 8).
    pub connections: usize,
    /// Retries of a failed request that a retry may cure (default 5), with exponential
    /// backoff from [`S3Options::retry_min_delay`] to [`S3Options::retry_max_delay`].
    pub retries: usize,
    /// First backoff delay (default 200 ms).
    pub retry_min_delay: Duration,
    /// Longest backoff delay (default 10 s).
    pub retry_max_delay: Duration,
    /// Time limit of a request without a body to stream: stat, delete, list page, copy
    /// (default 60 s).
    pub timeout: Duration,
    /// Time limit of each step of a transfer: a `PUT` of a whole pack, one part, one read
    /// (default 300 s: a 32 MiB `PUT` over a 1 Mbit/s uplink).
    pub io_timeout: Duration,
    /// Writes larger than this go as multipart uploads (default 32 MiB).
    pub multipart_threshold: usize,
    /// Size of a multipart upload's parts (default 16 MiB; S3 wants at least 5 MiB).
    pub part_size: usize,
    /// How long a lock file may take to show in listings on a server not known to honour
    /// create-only writes ([`Store::lock_settle`](crate::Store::lock_settle), default 2 s).
    pub lock_settle: Duration,
    /// The region to sign for; else `AWS_REGION`, `AWS_DEFAULT_REGION`, or `us-east-1`.
    pub region: Option<String>,
    /// Credentials; else the environment and the profile files.
    pub credentials: Option<S3Credentials>,
    /// Whether the server honours `If-None-Match: *`, when known (skips the `HEAD` before each
    /// `put`); `None` to find out with [`Store::probe_create_only`](crate::Store::probe_create_only).
    pub create_only: Option<bool>,
    /// Address buckets as `BUCKET.HOST` instead of `HOST/BUCKET`; by default only for AWS
    /// (an `s3://` URL without `AWS_ENDPOINT_URL`). Custom endpoints get path style.
    pub virtual_host_style: Option<bool>,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            connections: 8,
            retries: 5,
            retry_min_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(300),
            multipart_threshold: 32 << 20,
            part_size: 16 << 20,
            lock_settle: Duration::from_secs(2),
            region: None,
            credentials: None,
            create_only: None,
            virtual_host_style: None,
        }
    }
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("connections", &self.connections)
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .field("io_timeout", &self.io_timeout)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("create_only", &self.create_only)
            .finish_non_exhaustive()
    }
}

/// An S3 access key. The secret is wiped on drop and never shown by `Debug`.
#[derive(Clone)]
pub struct S3Credentials {
    pub(super) access_key_id: String,
    pub(super) secret_access_key: Zeroizing<String>,
    pub(super) session_token: Option<Zeroizing<String>>,
}

impl S3Credentials {
    /// An access key id and its secret.
    #[must_use]
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> S3Credentials {
        S3Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: Zeroizing::new(secret_access_key.into()),
            session_token: None,
        }
    }

    /// With a session token (temporary credentials).
    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<String>) -> S3Credentials {
        self.session_token = Some(Zeroizing::new(token.into()));
        self
    }
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

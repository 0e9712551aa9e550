//! OpenDAL's errors, mapped onto the library's classes.
//!
//! A missing object is [`Error::NotFound`] and a refused create-only write
//! [`Error::AlreadyExists`], both naming the repository file, as the other stores do. The rest
//! become [`Error::Io`] wrapped with the file's name, with an [`io::ErrorKind`] that keeps the
//! class: refused credentials are `PermissionDenied` (not retryable), a missing bucket
//! `NotFound` (not retryable, and not a missing file), and failures that a later attempt may
//! not see (5xx, throttling, timeouts, refused or reset connections, once the store's own
//! retries ran out) are kinds for which [`Error::is_retryable`] is true.
//!
//! Messages carry the service's error code and text, never a request's headers; as a second
//! guard, the secret key the store was given, or found in `AWS_SECRET_ACCESS_KEY`, is cut out
//! of every message. The object's URL (location and key) is in the message, so the error
//! needs no [`Location`](crate::Location) wrapper beyond the one callers add.

use std::io;

use opendal::ErrorKind as Dal;

use zeroize::Zeroizing;

use crate::error::Error;

/// Maps an OpenDAL error of operation `op` (e.g. "PUT") on repository file `path` of the
/// store at `location`. I/O errors name the object (`location/path`); callers add the
/// repository file's name as they do for every store.
pub(super) fn map(e: &opendal::Error, op: &str, path: &str, location: &str, secrets: &[Zeroizing<String>]) -> Error {
    let place = if path.is_empty() { location.to_string() } else { format!("{location}/{path}") };
    let detail = scrub(&describe(e), secrets);
    let io_err = |kind: io::ErrorKind, what: String| Error::Io(io::Error::new(kind, what));
    match e.kind() {
        Dal::NotFound => Error::NotFound(path.to_string()),
        Dal::AlreadyExists | Dal::ConditionNotMatch => Error::AlreadyExists(path.to_string()),
        Dal::PermissionDenied => io_err(
            io::ErrorKind::PermissionDenied,
            format!(
                "{place}: the service refused {op}: check the access key (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile) and its rights on the bucket ({detail})"
            ),
        ),
        Dal::ConfigInvalid if detail.contains("NoSuchBucket") => {
            io_err(io::ErrorKind::NotFound, format!("{place}: the bucket does not exist ({detail})"))
        }
        // No key in the options, the environment or a profile (the signer's own words).
        _ if detail.contains("signing credential") => io_err(
            io::ErrorKind::PermissionDenied,
            format!(
                "{place}: no S3 credentials to sign {op} with: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials ({detail})"
            ),
        ),
        Dal::RateLimited => io_err(io::ErrorKind::ResourceBusy, format!("{place}: the service throttled {op} ({detail})")),
        _ if e.is_temporary() || e.is_persistent() => {
            let kind = io_kind_in_sources(e).unwrap_or(if detail.to_ascii_lowercase().contains("timeout") {
                io::ErrorKind::TimedOut
            } else {
                io::ErrorKind::ResourceBusy
            });
            io_err(kind, format!("{place}: {op} failed, also after retries ({detail})"))
        }
        _ => io_err(io::ErrorKind::Other, format!("{place}: {op} failed ({detail})")),
    }
}

/// The error's message, then its sources' (a connection error's cause is in a source).
fn describe(e: &opendal::Error) -> String {
    let mut s = format!("{}: {}", e.kind(), e.message());
    let mut src = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
        depth += 1;
        if depth > 8 {
            break;
        }
    }
    s
}

/// The first I/O error kind among the sources that says "try again later".
fn io_kind_in_sources(e: &opendal::Error) -> Option<io::ErrorKind> {
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        if let Some(io) = inner.downcast_ref::<io::Error>() {
            let retryable = Error::Io(io::Error::new(io.kind(), "")).is_retryable();
            if retryable {
                return Some(io.kind());
            }
        }
        src = inner.source();
    }
    None
}

/// `text` with every secret replaced.
pub(super) fn scrub(text: &str, secrets: &[Zeroizing<String>]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), "[redacted]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dal(kind: Dal, msg: &str) -> opendal::Error {
        opendal::Error::new(kind, msg)
    }

    #[test]
    fn classes_survive_the_mapping() {
        let m = |e: opendal::Error| map(&e, "GET", "packs/ab/abcd", "s3:http://h/b", &[]);
        assert!(matches!(m(dal(Dal::NotFound, "x")), Error::NotFound(p) if p == "packs/ab/abcd"));
        assert!(matches!(m(dal(Dal::ConditionNotMatch, "412")), Error::AlreadyExists(_)));
        let denied = m(dal(Dal::PermissionDenied, "AccessDenied"));
        assert_eq!(denied.kind(), crate::ErrorKind::Io);
        assert!(!denied.is_retryable());
        assert!(denied.to_string().contains("access key") && denied.to_string().contains("packs/ab/abcd"), "{denied}");
        let bucket = m(dal(Dal::ConfigInvalid, "S3Error { code: \"NoSuchBucket\" }"));
        assert!(bucket.to_string().contains("bucket does not exist") && !bucket.is_retryable(), "{bucket}");
        assert!(m(dal(Dal::Unexpected, "503 SlowDown").set_temporary()).is_retryable());
        assert!(m(dal(Dal::Unexpected, "500").set_persistent()).is_retryable(), "retries ran out: still transient");
        assert!(m(dal(Dal::RateLimited, "429")).is_retryable());
        let timeout = m(dal(Dal::Unexpected, "operation timeout reached").set_temporary());
        assert!(timeout.is_retryable(), "{timeout}");
        let refused = dal(Dal::Unexpected, "send http request")
            .set_source(io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused"))
            .set_persistent();
        let mapped = m(refused);
        assert!(mapped.is_retryable() && mapped.to_string().contains("connection refused"), "{mapped}");
        assert!(!m(dal(Dal::Unexpected, "bad xml")).is_retryable());
        let unsigned =
            m(dal(Dal::Unexpected, "signing http request: failed to load signing credential").set_persistent());
        assert!(!unsigned.is_retryable() && unsigned.to_string().contains("AWS_ACCESS_KEY_ID"), "{unsigned}");
    }

    #[test]
    fn secrets_are_cut_out() {
        let e = dal(Dal::PermissionDenied, "signature for wJalrXUtnFEMI/K7MDENG does not match");
        let mapped = map(&e, "PUT", "config", "s3:http://h/b", &[Zeroizing::new("wJalrXUtnFEMI/K7MDENG".to_string())]);
        assert!(!mapped.to_string().contains("wJalrXUtnFEMI"), "{mapped}");
        assert!(!format!("{mapped:?}").contains("wJalrXUtnFEMI"), "{mapped:?}");
    }
}

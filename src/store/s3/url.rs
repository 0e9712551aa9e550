//! `s3:` repository URLs: parsing, and the normalized form that names a location.
//!
//! Two forms: `s3:http://HOST[:PORT]/BUCKET[/PREFIX]` (or `https`) carries the endpoint, for
//! any S3-compatible service; `s3://BUCKET[/PREFIX]` takes the endpoint from
//! `AWS_ENDPOINT_URL`, or means AWS itself when that is unset. Credentials never belong in a
//! URL: one with a user part is refused, and error messages then do not repeat it.
//!
//! The normalized form (lower-case scheme and host, no default port, no empty or trailing
//! path segments) is what [`Store::location`](crate::Store::location) returns, so that every
//! spelling of one place shares one client pin, and `s3://b/p` with
//! `AWS_ENDPOINT_URL=http://h:1` is the same place as `s3:http://h:1/b/p`.

use crate::error::{Error, Result};

/// Where an S3 repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Url {
    /// `http(s)://host[:port]`, normalized; `None` for AWS's own endpoints.
    pub(crate) endpoint: Option<String>,
    /// The bucket.
    pub(crate) bucket: String,
    /// The key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub(crate) prefix: String,
}

impl S3Url {
    /// Parses an `s3:` URL; `env_endpoint` is `AWS_ENDPOINT_URL` (used by `s3://` only).
    pub(crate) fn parse(url: &str, env_endpoint: Option<&str>) -> Result<S3Url> {
        // A URL with a user part may hold credentials: refused without repeating it.
        if url.contains('@') {
            return Err(Error::InvalidArgument(
                "credentials do not belong in the URL of an S3 repository (an @ in it): use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile file".into(),
            ));
        }
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "{url:?} is not an S3 repository URL ({why}); use s3:http(s)://HOST[:PORT]/BUCKET/PREFIX or s3://BUCKET/PREFIX"
            ))
        };
        let Some(rest) = url.strip_prefix("s3:") else {
            return Err(bad("it does not start with s3:"));
        };
        if url.contains(['?', '#']) {
            return Err(bad("it has a query or fragment"));
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
            return Err(bad("it holds spaces, control characters or backslashes"));
        }
        let (endpoint, path) = if let Some(path) = rest.strip_prefix("//") {
            let endpoint = match env_endpoint.filter(|e| !e.is_empty()) {
                Some(e) => Some(
                    normalize_endpoint(e.trim_end_matches('/'))
                        .map_err(|why| Error::InvalidArgument(format!("AWS_ENDPOINT_URL: {why}")))?,
                ),
                None => None,
            };
            (endpoint, path)
        } else {
            let lower = rest.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                return Err(bad("after s3: comes // or an http(s):// endpoint"));
            }
            let scheme_end = rest.find("://").map_or(0, |i| i + 3);
            let host_end = rest[scheme_end..].find('/').map_or(rest.len(), |i| scheme_end + i);
            let endpoint = normalize_endpoint(&rest[..host_end]).map_err(|why| bad(&why))?;
            (Some(endpoint), rest[host_end..].trim_start_matches('/'))
        };
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let bucket = segments.next().ok_or_else(|| bad("it names no bucket"))?;
        check_bucket(bucket).map_err(|why| bad(&why))?;
        let mut prefix = Vec::new();
        for s in segments {
            if s == "." || s == ".." {
                return Err(bad("the prefix has a . or .. segment"));
            }
            prefix.push(s);
        }
        Ok(S3Url { endpoint, bucket: bucket.to_string(), prefix: prefix.join("/") })
    }

    /// The normalized URL: `s3:ENDPOINT/BUCKET[/PREFIX]`, or `s3://BUCKET[/PREFIX]` on AWS.
    pub(crate) fn location(&self) -> String {
        let mut s = match &self.endpoint {
            Some(e) => format!("s3:{e}/{}", self.bucket),
            None => format!("s3://{}", self.bucket),
        };
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        s
    }
}

/// `http(s)://host[:port]` with a lower-case scheme and host and no default port. Refuses a
/// user part (credentials), a path, and ports that do not parse.
fn normalize_endpoint(e: &str) -> std::result::Result<String, String> {
    let (scheme, authority) = e.split_once("://").ok_or_else(|| "the endpoint has no http(s)://".to_string())?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err("the endpoint's scheme is not http or https".into()),
    };
    if authority.contains('@') {
        return Err("credentials do not belong in the URL: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into());
    }
    if authority.contains('/') {
        return Err("the endpoint has a path".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| "an IPv6 host lacks its ]".to_string())?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| "junk after the IPv6 host".to_string())?),
        };
        (format!("[{}]", h.to_ascii_lowercase()), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err("the endpoint has no host".into());
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':')) {
        return Err("the endpoint's host has characters a host name cannot have".into());
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p.parse().map_err(|_| format!("the port {p:?} is not a number from 1 to 65535"))?;
            if n == 0 {
                return Err("the port is 0".into());
            }
            (n != default_port).then_some(n)
        }
    };
    Ok(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// S3's bucket naming rules (3 to 63 characters: lower-case letters, digits, dots and
/// hyphens, starting and ending with a letter or digit), which Garage, MinIO and Ceph share.
fn check_bucket(b: &str) -> std::result::Result<(), String> {
    let ok_chars = b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    let ends = b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if !(3..=63).contains(&b.len()) || !ok_chars || !ends {
        return Err(format!(
            "bucket {b:?}: 3 to 63 lower-case letters, digits, dots or hyphens, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(u: &str) -> Result<S3Url> {
        S3Url::parse(u, None)
    }

    #[test]
    fn endpoint_in_the_url() {
        let u = parse("s3:http://127.0.0.1:3900/bucket/some/prefix").unwrap();
        assert_eq!(u.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("bucket", "some/prefix"));
        assert_eq!(u.location(), "s3:http://127.0.0.1:3900/bucket/some/prefix");
        assert_eq!(parse("s3:http://h:9000/bkt").unwrap().location(), "s3:http://h:9000/bkt");
        assert_eq!(parse("s3:https://[::1]:3900/bkt/p").unwrap().location(), "s3:https://[::1]:3900/bkt/p");
    }

    #[test]
    fn spellings_of_one_place_normalize_alike() {
        let canonical = "s3:https://s3.example.com/bkt/a/b";
        for spelling in [
            "s3:https://s3.example.com/bkt/a/b",
            "s3:HTTPS://S3.Example.COM:443/bkt/a/b/",
            "s3:https://s3.example.com//bkt//a///b//",
        ] {
            assert_eq!(parse(spelling).unwrap().location(), canonical, "{spelling}");
        }
        assert_eq!(parse("s3:http://h:80/bkt").unwrap().location(), "s3:http://h/bkt");
        assert_ne!(parse("s3:http://h:81/bkt").unwrap().location(), "s3:http://h/bkt");
    }

    #[test]
    fn bucket_urls_take_the_endpoint_from_the_environment() {
        let aws = S3Url::parse("s3://bkt/p", None).unwrap();
        assert_eq!((aws.endpoint.clone(), aws.location()), (None, "s3://bkt/p".to_string()));
        let env = S3Url::parse("s3://bkt/p/", Some("http://127.0.0.1:3900/")).unwrap();
        assert_eq!(env.location(), parse("s3:http://127.0.0.1:3900/bkt/p").unwrap().location());
        let e = S3Url::parse("s3://bkt", Some("ftp://x")).unwrap_err();
        assert!(e.to_string().contains("AWS_ENDPOINT_URL"), "{e}");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("/srv/repo", "does not start with s3:"),
            ("s3:ftp://h/bkt", "http(s)://"),
            ("s3://", "no bucket"),
            ("s3:http://h:3900/", "no bucket"),
            ("s3:http://h:3900", "no bucket"),
            ("s3://Bucket_1/p", "bucket \"Bucket_1\""),
            ("s3://ab", "bucket \"ab\""),
            ("s3:http://h:99999/bkt", "port"),
            ("s3:http://h:x/bkt", "port"),
            ("s3:http://:3900/bkt", "no host"),
            ("s3://bkt/a/../b", ".. segment"),
            ("s3://bkt/p?x=1", "query"),
            ("s3://bkt/a b", "spaces"),
        ] {
            let e = parse(url).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{url}");
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn credentials_in_a_url_are_refused_and_not_repeated() {
        for url in [
            "s3:http://AKIDEXAMPLE:s3cr3tSECRET@h:3900/bkt",
            "s3:https://s3cr3tSECRET@h/bkt/p",
            "s3://k:s3cr3tSECRET@bkt",
        ] {
            let e = parse(url).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
            assert!(e.to_string().contains("credentials do not belong in the URL"), "{e}");
            assert!(!e.to_string().contains("s3cr3tSECRET"), "{e}");
            assert!(!format!("{e:?}").contains("s3cr3tSECRET"), "{e:?}");
        }
    }
}

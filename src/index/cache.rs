//! Local cache files: where they live, how they are written, how they are authenticated.
//!
//! Both caches of a repository — the index tables and the files cache (format-spec.md §5.12) —
//! live in `<cache dir>/<repository id hex>/`. They hold exactly what the provider is never
//! shown: the absolute paths of the user's files and every chunk's plaintext length. And a
//! backup acts on them: a files-cache entry makes it skip reading a file, an index entry makes
//! it take a chunk as stored. So:
//!
//! - **Private.** Folders are created 0700, and the repository's folder (and the cache folder
//!   itself, unless it is a shared sticky folder like `/tmp`) is narrowed to 0700 when a cache
//!   is written into it, which fixes folders an older version made 0755. Files are created
//!   0600 — the temporary file gets that mode at `open`, then is renamed into place — never
//!   made readable and narrowed afterwards.
//! - **Authenticated.** Each file carries `KEYED(cache key, content)` (the cache key derives
//!   from the repository's metadata key, [`crate::crypto::cache_mac_key`]), checked before
//!   anything in it is used. Version 1 carried an unkeyed BLAKE3 checksum (the index tables)
//!   or nothing (the files cache): it caught damage, but anyone who could write the folder could
//!   recompute it and make a backup skip a file, or record chunks that are not stored. The MAC
//!   is the same single BLAKE3 pass the checksum was, so it costs nothing more.
//! - **Versioned apart from the repository.** Cache headers carry [`CACHE_VERSION`], not the
//!   repository format version: a version-1 cache is refused as unsupported and rebuilt, never
//!   read with the new rules.
//!
//! A cache that fails any check is ignored and rebuilt, and reported as a [`CacheWarning`]
//! (a missing cache is not reported). The mapped index tables rely on the files being replaced
//! only by rename: someone who can write them in place is the user themself (0600 in 0700).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::crypto::{contexts, SecretKey};
use crate::error::{CacheWarning, Error, Location, Result, ResultExt};

use super::table::{Bytes, Table, CACHE_HEADER_LEN};
use super::Index;

/// Version of the local cache files (their own, not the repository format's). Version 1 had
/// no MAC.
pub(crate) const CACHE_VERSION: u16 = 2;

/// `magic ‖ u16 CACHE_VERSION`.
pub(crate) fn cache_header(magic: [u8; 6]) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..6].copy_from_slice(&magic);
    h[6..].copy_from_slice(&CACHE_VERSION.to_le_bytes());
    h
}

/// Checks a cache header: the magic, then [`CACHE_VERSION`] (another version is
/// [`Error::UnsupportedVersion`], so a cache an older packvault wrote reads as such).
pub(crate) fn check_cache_header(bytes: &[u8], magic: [u8; 6], what: &'static str) -> Result<()> {
    if bytes.len() < 8 {
        return Err(Error::malformed(what, Some(0), "truncated header"));
    }
    if bytes[..6] != magic {
        return Err(Error::malformed(what, Some(0), "bad magic"));
    }
    let found = u16::from_le_bytes([bytes[6], bytes[7]]);
    if found != CACHE_VERSION {
        return Err(Error::UnsupportedVersion { what, found, supported: CACHE_VERSION });
    }
    Ok(())
}

/// The MAC key of tables built without a repository's keys (hazmat tools and benchmarks):
/// public, so it protects nothing, and no repository ever accepts a table made with it (a
/// repository checks its own key).
pub(super) fn tool_key() -> SecretKey {
    SecretKey::derive(contexts::CACHE_MAC, b"packvault: tables built without a repository key")
}

/// The folder of one repository's caches.
pub(crate) fn repo_dir(cache_dir: &Path, repo_id: &[u8; 16]) -> PathBuf {
    cache_dir.join(crate::id::hex_encode(repo_id))
}

/// Where the index cache (the base table) for a repository lives under a cache folder.
#[must_use]
pub fn cache_path(cache_dir: &Path, repo_id: &[u8; 16]) -> PathBuf {
    repo_dir(cache_dir, repo_id).join("index.cache")
}

pub(super) fn delta_path(cache_dir: &Path, repo_id: &[u8; 16]) -> PathBuf {
    repo_dir(cache_dir, repo_id).join("index.delta")
}

/// Makes `<cache dir>/<repository id hex>` exist and private; returns it.
fn private_repo_dir(cache_dir: &Path, repo_id: &[u8; 16]) -> Result<PathBuf> {
    let dir = repo_dir(cache_dir, repo_id);
    let loc = || Location::Path(dir.clone());
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).at(loc)?;
    // The cache folder itself: narrowed when it is ours to narrow. Best effort — a shared
    // sticky folder (`/tmp`) or someone else's is left alone; the repository's own folder and
    // the 0600 files are what keep the caches private.
    if let Ok(md) = fs::metadata(cache_dir) {
        let mode = md.permissions().mode();
        if mode & 0o077 != 0 && mode & 0o1000 == 0 {
            let _ = fs::set_permissions(cache_dir, fs::Permissions::from_mode(0o700));
        }
    }
    if fs::metadata(&dir).at(loc)?.permissions().mode() & 0o7777 != 0o700 {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).at(loc)?;
    }
    Ok(dir)
}

/// Replaces the cache file `name` of a repository: a temporary file created with mode 0600 in
/// the (private) repository folder, written, fsynced and renamed into place.
pub(crate) fn write_private(cache_dir: &Path, repo_id: &[u8; 16], name: &str, bytes: &[u8]) -> Result<()> {
    let dir = private_repo_dir(cache_dir, repo_id)?;
    let path = dir.join(name);
    let loc = || Location::Path(path.clone());
    // Unique per writer: several processes (or threads) may refresh the same cache at once;
    // the last rename wins and each reader checks what it reads.
    let tmp = dir.join(format!(
        ".{name}.{}.{}",
        std::process::id(),
        crate::id::hex_encode(&crate::crypto::random_array::<4>()?)
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.at(loc)
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound)
}

/// Maps a table file and checks it: header, MAC, repository, counts.
#[allow(unsafe_code)]
fn map_table(path: &Path, repo_id: &[u8; 16], key: &SecretKey) -> Result<Table> {
    let f = File::open(path)?;
    if f.metadata()?.len() < CACHE_HEADER_LEN as u64 {
        return Err(Error::malformed("index cache", None, "truncated"));
    }
    // SAFETY: cache files are private to this client (0600 in a 0700 folder) and only ever
    // replaced by rename, never modified or truncated in place, so the mapping stays valid and
    // unchanged while mapped. Every access through it is bounds-checked (`entry_bytes`), and
    // its content was verified against its MAC by `parse` before any of it is used.
    let map = unsafe { memmap2::Mmap::map(&f)? };
    Table::parse(Bytes::Mapped(map), Some(repo_id), Some(key))
}

/// Maps the base table and, when it belongs to that base, the delta, both checked under `key`;
/// `None` when the cache is missing or fails a check (the caller rebuilds), with a warning
/// for every cache file that is present but refused.
pub(super) fn open_keyed(
    dir: &Path,
    repo_id: &[u8; 16],
    key: &SecretKey,
    warnings: &mut Vec<CacheWarning>,
) -> Option<Index> {
    let base_path = cache_path(dir, repo_id);
    let base = match map_table(&base_path, repo_id, key) {
        Ok(t) => t,
        Err(e) => {
            if !is_not_found(&e) {
                warnings.push(CacheWarning::new(base_path, e));
            }
            return None;
        }
    };
    if base.base_mac != [0; 32] {
        let e = Error::malformed("index cache", Some(80), "a delta table in the base table's place");
        warnings.push(CacheWarning::new(base_path, e));
        return None;
    }
    let delta_path = delta_path(dir, repo_id);
    let delta = match map_table(&delta_path, repo_id, key) {
        Ok(d) if d.base_mac == base.mac => Some(d),
        // A delta of an older base, beside the base another client has just rewritten:
        // stale, not damaged; the index files it covered are read again.
        Ok(_) => None,
        Err(e) => {
            if !is_not_found(&e) {
                warnings.push(CacheWarning::new(delta_path.clone(), e));
            }
            None
        }
    };
    if let Some(d) = &delta {
        // The delta's pack list extends the base's: entries of the base resolve through it.
        if d.packs.get(..base.packs.len()) != Some(&base.packs[..]) {
            let e = Error::malformed("index cache", None, "the delta's pack list does not extend the base's");
            warnings.push(CacheWarning::new(delta_path, e));
            return None;
        }
    }
    Some(Index::from_tables(*repo_id, key.clone(), base, delta))
}

/// [`open_keyed`] under the key of tables built without a repository's keys (hazmat tools and
/// benchmarks, which build them with [`Index::for_repo`]); warnings are dropped. A repository's
/// own cache does not open this way.
#[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat`
pub(crate) fn open_cached(dir: &Path, repo_id: &[u8; 16]) -> Option<Index> {
    open_keyed(dir, repo_id, &tool_key(), &mut Vec::new())
}

//! The files cache: (path, size, mtime, ctime, inode) → chunk list, kept locally so that a
//! backup does not read files that have not changed since the last backup.
//!
//! Local file `<cache dir>/<repository id hex>/files.cache` (never stored in the repository;
//! format-spec.md §5.12): `"PVFCAC" ‖ u16 2 ‖ u64 count ‖ entries ‖ MAC`, each entry
//! `u32 path length ‖ path ‖ u64 size ‖ i64 mtime ‖ u32 mtime nanos ‖ i64 ctime ‖ u32 ctime
//! nanos ‖ u64 inode ‖ u64 device ‖ u32 chunk count ‖ chunk ids (32 each)`, and the MAC
//! `KEYED(cache key, every byte before it)`. A backup acts on an entry without reading the
//! file, so the cache is written 0600 in a 0700 folder (it names the user's files and their
//! chunks) and checked against its MAC before use: one that fails — forged, damaged, or
//! written by an older version, which had no MAC — is ignored (every file is read again) and
//! reported, never trusted. Even a sound entry is used only when its chunks are in the index
//! and add up to the file's size (`backup::pipeline::chunks_make_up`).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::crypto::{ct_eq, SecretKey};
use crate::error::{CacheWarning, Error, Result};
use crate::format::ByteReader;
use crate::id::{ChunkId, Id};
use crate::index::{cache_header, check_cache_header, write_private};

const MAGIC: [u8; 6] = *b"PVFCAC";
/// Files modified this close to the start of a backup are never taken from the cache: a write
/// in the same clock tick as the backup's stat could otherwise go unnoticed.
const RACY_NANOS: i128 = 1_000_000_000;

/// What identifies an unchanged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) size: u64,
    pub(crate) mtime: (i64, u32),
    pub(crate) ctime: (i64, u32),
    pub(crate) inode: u64,
    pub(crate) device: u64,
}

impl Stamp {
    pub(crate) fn of(md: &fs::Metadata) -> Stamp {
        Stamp {
            size: md.len(),
            mtime: (md.mtime(), u32::try_from(md.mtime_nsec()).unwrap_or(0)),
            ctime: (md.ctime(), u32::try_from(md.ctime_nsec()).unwrap_or(0)),
            inode: md.ino(),
            device: md.dev(),
        }
    }

    fn nanos(t: (i64, u32)) -> i128 {
        i128::from(t.0) * 1_000_000_000 + i128::from(t.1)
    }

    /// True when the file changed too recently to trust its times.
    pub(crate) fn is_racy(&self, started: (i64, u32)) -> bool {
        let start = Self::nanos(started);
        Self::nanos(self.mtime) > start - RACY_NANOS || Self::nanos(self.ctime) > start - RACY_NANOS
    }
}

/// The cache of one repository.
#[derive(Debug, Default)]
pub(crate) struct FilesCache {
    entries: HashMap<Vec<u8>, (Stamp, Vec<ChunkId>)>,
}

/// The cache file of a repository.
pub(crate) fn path(cache_dir: &Path, repo_id: &[u8; 16]) -> PathBuf {
    crate::index::cache_repo_dir(cache_dir, repo_id).join(FILE_NAME)
}

const FILE_NAME: &str = "files.cache";
const MAC_LEN: usize = 32;

impl FilesCache {
    /// Loads the cache of a repository. A missing file gives an empty cache; so does one that
    /// fails its MAC or does not parse, with a warning naming it.
    pub(crate) fn load(cache_dir: &Path, repo_id: &[u8; 16], key: &SecretKey) -> (FilesCache, Option<CacheWarning>) {
        let file = path(cache_dir, repo_id);
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (FilesCache::default(), None),
            Err(e) => return (FilesCache::default(), Some(CacheWarning::new(file, e.into()))),
        };
        match Self::decode(&bytes, key) {
            Ok(c) => (c, None),
            Err(e) => (FilesCache::default(), Some(CacheWarning::new(file, e))),
        }
    }

    /// Checks the header and the MAC, then parses; nothing is read from unauthenticated bytes.
    fn decode(bytes: &[u8], key: &SecretKey) -> Result<FilesCache> {
        check_cache_header(bytes, MAGIC, "files cache")?;
        let Some(body_len) = bytes.len().checked_sub(MAC_LEN).filter(|&n| n >= 8) else {
            return Err(Error::malformed("files cache", None, "truncated"));
        };
        let (body, mac) = bytes.split_at(body_len);
        let mac: &[u8; MAC_LEN] = mac.try_into().expect("MAC_LEN bytes");
        if !ct_eq(blake3::keyed_hash(key.bytes(), body).as_bytes(), mac) {
            return Err(Error::Integrity(
                "files cache: MAC mismatch (written without this repository's key, or damaged)".into(),
            ));
        }
        let mut r = ByteReader::new(&body[8..], "files cache");
        let count = r.u64()?;
        let mut entries = HashMap::new();
        for _ in 0..count {
            let len = r.u32()? as usize;
            let path = r.take(len)?.to_vec();
            let stamp = Stamp {
                size: r.u64()?,
                mtime: (r.i64()?, r.u32()?),
                ctime: (r.i64()?, r.u32()?),
                inode: r.u64()?,
                device: r.u64()?,
            };
            let n = r.u32()? as usize;
            if n > r.remaining() / 32 {
                return Err(r.err("chunk count beyond the file"));
            }
            let chunks = (0..n).map(|_| r.array().map(|a| ChunkId(Id(a)))).collect::<Result<Vec<_>>>()?;
            entries.insert(path, (stamp, chunks));
        }
        if r.remaining() != 0 {
            return Err(r.err("trailing bytes"));
        }
        Ok(FilesCache { entries })
    }

    /// The chunks of `path` if its stamp is unchanged.
    pub(crate) fn get(&self, path: &[u8], stamp: &Stamp) -> Option<&[ChunkId]> {
        self.entries.get(path).filter(|(s, _)| s == stamp).map(|(_, c)| c.as_slice())
    }

    /// The size and chunks `path` had at the cached backup, whatever its stamp now (the old
    /// version an append-only file resumes from).
    pub(crate) fn old_version(&self, path: &[u8]) -> Option<(u64, &[ChunkId])> {
        self.entries.get(path).map(|(s, c)| (s.size, c.as_slice()))
    }

    /// True when the cache has an entry for `path` (whatever its stamp).
    pub(crate) fn knows(&self, path: &[u8]) -> bool {
        self.entries.contains_key(path)
    }

    pub(crate) fn insert(&mut self, path: Vec<u8>, stamp: Stamp, chunks: Vec<ChunkId>) {
        self.entries.insert(path, (stamp, chunks));
    }

    /// Writes the cache of a repository with its MAC (a 0600 temporary file in the 0700
    /// repository folder, then rename).
    pub(crate) fn save(&self, cache_dir: &Path, repo_id: &[u8; 16], key: &SecretKey) -> Result<()> {
        write_private(cache_dir, repo_id, FILE_NAME, &self.encode(key))
    }

    fn encode(&self, key: &SecretKey) -> Vec<u8> {
        let mut out = cache_header(MAGIC).to_vec();
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (path, (s, chunks)) in &self.entries {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path);
            out.extend_from_slice(&s.size.to_le_bytes());
            out.extend_from_slice(&s.mtime.0.to_le_bytes());
            out.extend_from_slice(&s.mtime.1.to_le_bytes());
            out.extend_from_slice(&s.ctime.0.to_le_bytes());
            out.extend_from_slice(&s.ctime.1.to_le_bytes());
            out.extend_from_slice(&s.inode.to_le_bytes());
            out.extend_from_slice(&s.device.to_le_bytes());
            out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
            for c in chunks {
                out.extend_from_slice(c.as_bytes());
            }
        }
        let mac = blake3::keyed_hash(key.bytes(), &out);
        out.extend_from_slice(mac.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn round_trip_damage_and_forgery() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, key) = ([3u8; 16], SecretKey::from_bytes([7; 32]));
        let file = path(dir.path(), &repo);
        let mut c = FilesCache::default();
        let s = Stamp { size: 5, mtime: (1, 2), ctime: (3, 4), inode: 5, device: 6 };
        c.insert(b"/a/b".to_vec(), s, vec![ChunkId(Id([1; 32])), ChunkId(Id([2; 32]))]);
        c.save(dir.path(), &repo, &key).unwrap();
        let (back, warning) = FilesCache::load(dir.path(), &repo, &key);
        assert!(warning.is_none());
        assert_eq!(back.get(b"/a/b", &s).unwrap().len(), 2);
        assert!(back.get(b"/a/b", &Stamp { size: 6, ..s }).is_none());
        assert!(s.is_racy((3, 4)) && !s.is_racy((10, 0)));
        let good = fs::read(&file).unwrap();

        let refused = |bytes: &[u8], k: &SecretKey| {
            fs::write(&file, bytes).unwrap();
            let (c, w) = FilesCache::load(dir.path(), &repo, k);
            assert!(c.entries.is_empty(), "an unsound cache is ignored");
            w.expect("and reported").error.kind()
        };
        assert_eq!(refused(&good[..good.len() - 1], &key), ErrorKind::Integrity, "truncated");
        assert_eq!(refused(&good, &SecretKey::from_bytes([8; 32])), ErrorKind::Integrity, "another key");
        // A chunk id swapped, and the MAC recomputed the only way possible without the key.
        let mut forged = good.clone();
        let at = forged.windows(32).position(|w| w == [2; 32]).unwrap();
        forged[at..at + 32].copy_from_slice(&[9; 32]);
        let n = forged.len() - MAC_LEN;
        let unkeyed = blake3::hash(&forged[..n]);
        forged[n..].copy_from_slice(unkeyed.as_bytes());
        assert_eq!(refused(&forged, &key), ErrorKind::Integrity, "forged");
        // What version 1 wrote: no MAC, version 1.
        let mut old = good[..good.len() - MAC_LEN].to_vec();
        old[6..8].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(refused(&old, &key), ErrorKind::UnsupportedVersion, "version 1");
        fs::remove_file(&file).unwrap();
        assert!(FilesCache::load(dir.path(), &repo, &key).1.is_none(), "a missing cache is no warning");
    }
}

//! The folder cache: (local folder, fingerprint of its entries' stamps) → the tree id its
//! contents sealed to at the last backup, so that an unchanged folder's tree is neither
//! encoded nor hashed again (the nightly no-op: most folders of an attachment store are
//! unchanged, and rebuilding their trees was one encode and one keyed hash per folder for
//! nothing).
//!
//! Local file `<cache dir>/<repository id hex>/folders.cache` (never stored in the repository;
//! format-spec.md §5.12): `"PVDCAC" ‖ u16 2 ‖ u64 count ‖ entries ‖ MAC`, each entry
//! `u32 path length ‖ path ‖ fingerprint (32) ‖ tree id (32)`, and the MAC
//! `KEYED(cache key, every byte before it)`, written and checked as the files cache is.
//!
//! The fingerprint (`backup/walk.rs`) hashes, in name order, every entry's name, type, full
//! `st_mode`, size, mtime, ctime, inode and device, and a symlink's target: any change a
//! tree records (content, permissions, times, a rename, an added or removed entry) changes a
//! stamp and so the fingerprint. A backup reuses an entry only when every file of the folder
//! was also taken from the files cache and every subfolder was reused, and only when the tree
//! is in the index; it records one only for folders read without a warning whose files all
//! entered the files cache (none modified around the backup's start).

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use crate::crypto::{ct_eq, SecretKey};
use crate::error::{CacheWarning, Error, Result};
use crate::format::ByteReader;
use crate::id::{Id, TreeId};
use crate::index::{cache_header, check_cache_header, write_private};

const MAGIC: [u8; 6] = *b"PVDCAC";
const FILE_NAME: &str = "folders.cache";
const MAC_LEN: usize = 32;

/// The folder cache of one repository.
#[derive(Debug, Default)]
pub(crate) struct FolderCache {
    entries: HashMap<Vec<u8>, ([u8; 32], TreeId)>,
}

impl FolderCache {
    /// Loads the cache of a repository. A missing file gives an empty cache; so does one that
    /// fails its MAC or does not parse, with a warning naming it.
    pub(crate) fn load(cache_dir: &Path, repo_id: &[u8; 16], key: &SecretKey) -> (FolderCache, Option<CacheWarning>) {
        let file = crate::index::cache_repo_dir(cache_dir, repo_id).join(FILE_NAME);
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (FolderCache::default(), None),
            Err(e) => return (FolderCache::default(), Some(CacheWarning::new(file, e.into()))),
        };
        match Self::decode(&bytes, key) {
            Ok(c) => (c, None),
            Err(e) => (FolderCache::default(), Some(CacheWarning::new(file, e))),
        }
    }

    /// Checks the header and the MAC, then parses; nothing is read from unauthenticated bytes.
    fn decode(bytes: &[u8], key: &SecretKey) -> Result<FolderCache> {
        check_cache_header(bytes, MAGIC, "folder cache")?;
        let Some(body_len) = bytes.len().checked_sub(MAC_LEN).filter(|&n| n >= 8) else {
            return Err(Error::malformed("folder cache", None, "truncated"));
        };
        let (body, mac) = bytes.split_at(body_len);
        let mac: &[u8; MAC_LEN] = mac.try_into().expect("MAC_LEN bytes");
        if !ct_eq(blake3::keyed_hash(key.bytes(), body).as_bytes(), mac) {
            return Err(Error::Integrity(
                "folder cache: MAC mismatch (written without this repository's key, or damaged)".into(),
            ));
        }
        let mut r = ByteReader::new(&body[8..], "folder cache");
        let count = r.u64()?;
        // Each entry is at least 68 bytes: a count beyond that is refused before allocating.
        if count > r.remaining() as u64 / 68 {
            return Err(r.err("entry count beyond the file"));
        }
        let mut entries = HashMap::with_capacity(count as usize);
        for _ in 0..count {
            let len = r.u32()? as usize;
            let path = r.take(len)?.to_vec();
            let fingerprint = r.array()?;
            let tree = TreeId(Id(r.array()?));
            entries.insert(path, (fingerprint, tree));
        }
        if r.remaining() != 0 {
            return Err(r.err("trailing bytes"));
        }
        Ok(FolderCache { entries })
    }

    /// The tree `path` sealed to when its entries had `fingerprint`.
    pub(crate) fn get(&self, path: &[u8], fingerprint: &[u8; 32]) -> Option<TreeId> {
        self.entries.get(path).filter(|(f, _)| f == fingerprint).map(|(_, t)| *t)
    }

    pub(crate) fn insert(&mut self, path: Vec<u8>, fingerprint: [u8; 32], tree: TreeId) {
        self.entries.insert(path, (fingerprint, tree));
    }

    /// Writes the cache of a repository with its MAC (0600, as the files cache).
    pub(crate) fn save(&self, cache_dir: &Path, repo_id: &[u8; 16], key: &SecretKey) -> Result<()> {
        write_private(cache_dir, repo_id, FILE_NAME, &self.encode(key))
    }

    fn encode(&self, key: &SecretKey) -> Vec<u8> {
        let mut out = cache_header(MAGIC).to_vec();
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (path, (fingerprint, tree)) in &self.entries {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path);
            out.extend_from_slice(fingerprint);
            out.extend_from_slice(tree.0.as_bytes());
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
        let mut c = FolderCache::default();
        c.insert(b"/a/b".to_vec(), [1; 32], TreeId(Id([2; 32])));
        c.save(dir.path(), &repo, &key).unwrap();
        let (back, warning) = FolderCache::load(dir.path(), &repo, &key);
        assert!(warning.is_none());
        assert_eq!(back.get(b"/a/b", &[1; 32]), Some(TreeId(Id([2; 32]))));
        assert_eq!(back.get(b"/a/b", &[9; 32]), None, "another fingerprint");
        let file = crate::index::cache_repo_dir(dir.path(), &repo).join(FILE_NAME);
        let good = fs::read(&file).unwrap();
        let refused = |bytes: &[u8], k: &SecretKey| {
            fs::write(&file, bytes).unwrap();
            let (c, w) = FolderCache::load(dir.path(), &repo, k);
            assert!(c.entries.is_empty(), "an unsound cache is ignored");
            w.expect("and reported").error.kind()
        };
        assert_eq!(refused(&good[..good.len() - 1], &key), ErrorKind::Integrity, "truncated");
        assert_eq!(refused(&good, &SecretKey::from_bytes([8; 32])), ErrorKind::Integrity, "another key");
        // A tree id swapped, and the MAC recomputed the only way possible without the key.
        let mut forged = good.clone();
        let at = forged.windows(32).position(|w| w == [2; 32]).unwrap();
        forged[at..at + 32].copy_from_slice(&[9; 32]);
        let n = forged.len() - MAC_LEN;
        let unkeyed = blake3::hash(&forged[..n]);
        forged[n..].copy_from_slice(unkeyed.as_bytes());
        assert_eq!(refused(&forged, &key), ErrorKind::Integrity, "forged");
        // A huge count under a sound MAC is refused, not allocated.
        let mut huge = cache_header(MAGIC).to_vec();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        let mac = blake3::keyed_hash(key.bytes(), &huge);
        huge.extend_from_slice(mac.as_bytes());
        assert_eq!(refused(&huge, &key), ErrorKind::Malformed, "count beyond the file");
    }
}

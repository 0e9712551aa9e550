//! The files cache: (path, size, mtime, ctime, inode) → chunk list, kept locally so that a
//! backup does not read files that have not changed since the last backup.
//!
//! Local file `<cache dir>/<repository id hex>/files.cache` (never stored in the repository;
//! format-spec.md §5.12 lists it): `"PVFCAC" ‖ u16 1 ‖ u64 count ‖ entries`, each entry
//! `u32 path length ‖ path ‖ u64 size ‖ i64 mtime ‖ u32 mtime nanos ‖ i64 ctime ‖ u32 ctime
//! nanos ‖ u64 inode ‖ u64 device ‖ u32 chunk count ‖ chunk ids (32 each)`. A damaged cache is
//! ignored (every file is read again), never trusted.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::format::{check_header, header, ByteReader};
use crate::id::{ChunkId, Id};

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

pub(crate) fn path(cache_dir: &Path, repo_id: &[u8; 16]) -> PathBuf {
    cache_dir.join(crate::id::hex_encode(repo_id)).join("files.cache")
}

impl FilesCache {
    /// Loads the cache; a missing or damaged file gives an empty cache.
    pub(crate) fn load(file: &Path) -> FilesCache {
        fs::read(file).ok().and_then(|b| Self::decode(&b)).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<FilesCache> {
        check_header(bytes, MAGIC, "files cache").ok()?;
        let mut r = ByteReader::new(&bytes[8..], "files cache");
        let count = r.u64().ok()?;
        let mut entries = HashMap::new();
        for _ in 0..count {
            let len = r.u32().ok()? as usize;
            let path = r.take(len).ok()?.to_vec();
            let stamp = Stamp {
                size: r.u64().ok()?,
                mtime: (r.i64().ok()?, r.u32().ok()?),
                ctime: (r.i64().ok()?, r.u32().ok()?),
                inode: r.u64().ok()?,
                device: r.u64().ok()?,
            };
            let n = r.u32().ok()? as usize;
            if n > r.remaining() / 32 {
                return None;
            }
            let chunks = (0..n).map(|_| r.array().map(|a| ChunkId(Id(a)))).collect::<Result<Vec<_>, _>>().ok()?;
            entries.insert(path, (stamp, chunks));
        }
        (r.remaining() == 0).then_some(FilesCache { entries })
    }

    /// The chunks of `path` if its stamp is unchanged.
    pub(crate) fn get(&self, path: &[u8], stamp: &Stamp) -> Option<&[ChunkId]> {
        self.entries.get(path).filter(|(s, _)| s == stamp).map(|(_, c)| c.as_slice())
    }

    /// True when the cache has an entry for `path` (whatever its stamp).
    pub(crate) fn knows(&self, path: &[u8]) -> bool {
        self.entries.contains_key(path)
    }

    pub(crate) fn insert(&mut self, path: Vec<u8>, stamp: Stamp, chunks: Vec<ChunkId>) {
        self.entries.insert(path, (stamp, chunks));
    }

    /// Writes the cache (temporary file, then rename).
    pub(crate) fn save(&self, file: &Path) -> std::io::Result<()> {
        let mut out = header(MAGIC).to_vec();
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
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir)?;
        }
        let unique = crate::crypto::random_array::<4>().map_err(std::io::Error::other)?;
        let tmp = file.with_extension(format!("tmp{}.{}", std::process::id(), crate::id::hex_encode(&unique)));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        fs::rename(&tmp, file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fc");
        let mut c = FilesCache::default();
        let s = Stamp { size: 5, mtime: (1, 2), ctime: (3, 4), inode: 5, device: 6 };
        c.insert(b"/a/b".to_vec(), s, vec![ChunkId(Id([1; 32])), ChunkId(Id([2; 32]))]);
        c.save(&file).unwrap();
        let back = FilesCache::load(&file);
        assert_eq!(back.get(b"/a/b", &s).unwrap().len(), 2);
        assert!(back.get(b"/a/b", &Stamp { size: 6, ..s }).is_none());
        let mut bytes = fs::read(&file).unwrap();
        bytes.truncate(bytes.len() - 1);
        fs::write(&file, &bytes).unwrap();
        assert!(FilesCache::load(&file).entries.is_empty(), "a damaged cache is ignored");
        assert!(s.is_racy((3, 4)) && !s.is_racy((10, 0)));
    }
}

//! What a session collects before commit: the metadata of each entry, the folder tree being
//! built ([`Entry`]), what the walk learned of a folder ([`Fold`]), each file's chunks
//! ([`FileRecord`]), and the test counters ([`Probe`]).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::format::snapshot::MODE_MASK;
use crate::id::ChunkId;
use crate::repo::files_cache::Stamp;

/// Metadata of a file or directory added to a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime_secs: i64,
    /// Nanoseconds part.
    pub mtime_nanos: u32,
}

impl FileMeta {
    pub(super) fn from_fs(md: &fs::Metadata) -> FileMeta {
        FileMeta {
            mode: md.permissions().mode() & MODE_MASK,
            mtime_secs: md.mtime(),
            mtime_nanos: u32::try_from(md.mtime_nsec()).unwrap_or(0),
        }
    }

    pub(super) fn default_dir() -> FileMeta {
        FileMeta { mode: 0o755, mtime_secs: 0, mtime_nanos: 0 }
    }
}

pub(super) enum Entry {
    File {
        meta: FileMeta,
        file: usize,
    },
    /// `fold`: set by the walk for a folder it listed in full (see [`Fold`]); cleared when
    /// anything is added to the folder afterwards.
    Dir {
        meta: FileMeta,
        children: BTreeMap<Vec<u8>, Entry>,
        fold: Option<Box<Fold>>,
    },
    Symlink {
        meta: FileMeta,
        target: Vec<u8>,
    },
}

/// A folder the walk listed in full: its local path and the fingerprint of its entries (the
/// folder cache's key), and the tree to reuse when every entry came from the caches.
pub(super) struct Fold {
    pub(super) path: Vec<u8>,
    pub(super) fingerprint: [u8; 32],
    pub(super) reuse: Option<crate::id::TreeId>,
}

/// Counts of the work a session did, for tests: files opened by the reader, trees encoded and
/// trees reused from the folder cache.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    pub(crate) opened: std::sync::atomic::AtomicU64,
    pub(crate) trees_encoded: std::sync::atomic::AtomicU64,
    pub(crate) trees_reused: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
pub(super) struct FileRecord {
    pub(super) size: u64,
    pub(super) chunks: Vec<ChunkId>,
    /// Set when reading failed: the file is left out of the snapshot.
    pub(super) failed: bool,
    /// Absolute path and stamp, for the files cache.
    pub(super) cache_key: Option<(Vec<u8>, Stamp)>,
}

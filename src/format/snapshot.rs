//! Trees and snapshot records (format-spec.md §5.8, §5.9).
//!
//! A tree is one directory: its entries sorted by name. It is stored as a tree blob whose
//! plaintext is the record encoding of [`Tree`]. A snapshot file holds one
//! [`SnapshotRecord`], encrypted under the metadata key and padded:
//!
//! ```text
//! file  = "PVSNAP" ‖ u16 version ‖ nonce (12) ‖ AES-256-GCM-SIV(meta_key, nonce, AD = first 8 bytes, plain)
//! plain = u32 record length L ‖ record (L bytes) ‖ zero padding (file length is a Padmé length)
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::crypto::{SecretKey, NONCE_LEN};
use crate::error::{Error, Result};
use crate::format::{encoding, PaddedRecordFile, MAGIC_SNAPSHOT};
use crate::id::{ChunkId, SnapshotId, TreeId};

/// Longest file name in a tree.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest symlink target.
pub const MAX_LINK_TARGET: usize = 4096;
/// Largest snapshot file a reader accepts.
pub const MAX_SNAPSHOT_FILE: u64 = 16 << 20;
/// Most strings (tags, paths) in a snapshot record, and longest of them.
pub const MAX_SNAPSHOT_STRINGS: usize = 4096;

/// Permission bits kept in [`Node::mode`].
pub const MODE_MASK: u32 = 0o7777;
/// Deepest tree level (format-spec.md §7.3): the root tree is level 0, a folder's tree one
/// level below its parent's.
pub const MAX_TREE_DEPTH: usize = 1024;

/// What [`check_tree_level`]'s [`Error::LimitExceeded`] names.
pub(crate) const FOLDER_NESTING: &str = "folder nesting";

/// Refuses a tree at `level` (the root tree is 0) deeper than [`MAX_TREE_DEPTH`]. Snapshot
/// readers go through the repository's one tree walker, which applies it; backup applies it
/// to the folders it reads from disk.
///
/// # Errors
/// [`Error::LimitExceeded`].
pub fn check_tree_level(level: usize) -> Result<()> {
    if level > MAX_TREE_DEPTH {
        return Err(Error::LimitExceeded { what: FOLDER_NESTING, found: level as u64, limit: MAX_TREE_DEPTH as u64 });
    }
    Ok(())
}

/// One directory, with its entries sorted by name (bytewise, strictly ascending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tree {
    /// The entries.
    pub nodes: Vec<Node>,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name bytes: not empty, not `.` or `..`, no `/` and no NUL.
    pub name: Vec<u8>,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime_secs: i64,
    /// Modification time, nanoseconds part (below 10^9).
    pub mtime_nanos: u32,
    /// What the entry is.
    pub content: NodeContent,
}

/// What a [`Node`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeContent {
    /// A regular file: its length and its chunks in order.
    File {
        /// Length in bytes; the sum of the chunks' lengths.
        size: u64,
        /// The chunks, in file order.
        chunks: Vec<ChunkId>,
    },
    /// A directory and the id of its tree blob.
    Dir {
        /// The subdirectory's tree.
        tree: TreeId,
    },
    /// A symbolic link, kept as a link.
    Symlink {
        /// The link target, as stored by the file system.
        target: Vec<u8>,
    },
}

impl Node {
    /// The name as text (lossy for names that are not UTF-8).
    #[must_use]
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// The modification time; `None` when the platform cannot represent it.
    #[must_use]
    pub fn mtime(&self) -> Option<SystemTime> {
        system_time(self.mtime_secs, self.mtime_nanos)
    }
}

/// A stored time, `(secs, nanos)` (format-spec.md §5.8): the time is `secs + nanos / 10^9`
/// seconds after the Unix epoch, with `secs` rounded down and `nanos` below 10^9, as POSIX
/// `struct timespec` and Linux's `stat` give it. So 1.5 s before the epoch is
/// `(-2, 500_000_000)`, not `(-1, 500_000_000)`. `None` when `nanos` is out of range or the
/// platform cannot represent the time.
#[must_use]
pub fn system_time(secs: i64, nanos: u32) -> Option<SystemTime> {
    if nanos >= 1_000_000_000 {
        return None;
    }
    let whole = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    whole.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// The stored form of a time: the inverse of [`system_time`] (seconds rounded down, then
/// nanoseconds in `0..10^9`). Times beyond the range of `i64` seconds saturate.
#[must_use]
pub fn time_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()),
        Err(e) => {
            let before = e.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

/// Checks a file name: not empty, not `.` or `..`, no `/`, no NUL, at most [`MAX_NAME_LEN`].
#[must_use]
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

impl Tree {
    /// Encodes the tree (the tree blob's plaintext).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the tree breaks a rule of [`Tree::decode`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate().map_err(|e| Error::InvalidArgument(e.to_string()))?;
        encoding::encode(self)
    }

    /// Decodes and checks a tree blob's plaintext.
    ///
    /// # Errors
    /// [`Error::Malformed`] when the bytes do not decode or the tree breaks a rule: names must
    /// be valid and strictly ascending, mtimes' nanoseconds below 10^9, modes within
    /// `0o7777`, a file's size zero exactly when it has no chunks, symlink targets non-empty and
    /// at most [`MAX_LINK_TARGET`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Tree> {
        let tree: Tree = encoding::decode(bytes, "tree")?;
        tree.validate()?;
        Ok(tree)
    }

    fn validate(&self) -> Result<()> {
        let bad = |i: usize, d: String| Error::malformed("tree", None, format!("entry {i}: {d}"));
        for (i, n) in self.nodes.iter().enumerate() {
            if !valid_name(&n.name) {
                return Err(bad(i, format!("invalid name {:?}", n.name_lossy())));
            }
            if i > 0 && self.nodes[i - 1].name >= n.name {
                return Err(bad(
                    i,
                    format!("{:?} is not sorted after {:?}", n.name_lossy(), self.nodes[i - 1].name_lossy()),
                ));
            }
            if n.mtime_nanos >= 1_000_000_000 {
                return Err(bad(i, "mtime nanoseconds out of range".into()));
            }
            if n.mode & !MODE_MASK != 0 {
                return Err(bad(i, format!("mode {:o} has bits outside 0o7777", n.mode)));
            }
            match &n.content {
                NodeContent::File { size, chunks } => {
                    if (*size == 0) != chunks.is_empty() {
                        return Err(bad(i, format!("size {size} with {} chunks", chunks.len())));
                    }
                    if chunks.len() as u64 > *size {
                        return Err(bad(i, format!("{} chunks for {size} bytes", chunks.len())));
                    }
                }
                NodeContent::Dir { .. } => {}
                NodeContent::Symlink { target } => {
                    if target.is_empty() || target.len() > MAX_LINK_TARGET || target.contains(&0) {
                        return Err(bad(i, "invalid symlink target".into()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Counts stored in a snapshot record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Summary {
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot, the root included.
    pub dirs: u64,
    /// Symbolic links in the snapshot.
    pub symlinks: u64,
    /// Sum of the file sizes.
    pub total_bytes: u64,
    /// Chunk references (with repeats) of all files.
    pub chunks: u64,
    /// Data blobs this backup added to the repository.
    pub new_data_blobs: u64,
    /// Tree blobs this backup added.
    pub new_tree_blobs: u64,
    /// Plaintext bytes of the added blobs.
    pub new_raw_bytes: u64,
    /// Stored (sealed) bytes of the added blobs.
    pub new_stored_bytes: u64,
    /// Packs this backup wrote.
    pub new_packs: u64,
    /// Bytes read from the source files.
    pub bytes_read: u64,
}

/// A snapshot: one backup's root tree and what describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Creation time, seconds since the Unix epoch.
    pub time_secs: i64,
    /// Creation time, nanoseconds part.
    pub time_nanos: u32,
    /// Host name of the machine that made the backup.
    pub hostname: String,
    /// User name that made the backup.
    pub username: String,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// The source paths, as given to the backup.
    pub paths: Vec<String>,
    /// The root tree.
    pub root: TreeId,
    /// One more than the largest sequence number of the snapshots the writer knew.
    pub sequence: u64,
    /// Id of the snapshot with that largest sequence number, if any.
    pub previous: Option<SnapshotId>,
    /// Counts.
    pub summary: Summary,
    /// Bit 0: the snapshot was repaired (references to lost data were dropped). Other bits
    /// are zero.
    pub flags: u32,
    /// The program that wrote the snapshot, e.g. `packvault 0.2.0`.
    pub program: String,
}

/// [`SnapshotRecord::flags`] bit: the snapshot was repaired.
pub const FLAG_REPAIRED: u32 = 1;

impl SnapshotRecord {
    fn validate(&self) -> Result<()> {
        let bad = |d: &str| Error::malformed("snapshot", None, d.to_string());
        if self.time_nanos >= 1_000_000_000 {
            return Err(bad("time nanoseconds out of range"));
        }
        if self.flags & !FLAG_REPAIRED != 0 {
            return Err(bad("unknown flag bits"));
        }
        if self.tags.len() + self.paths.len() > MAX_SNAPSHOT_STRINGS
            || self.tags.iter().chain(&self.paths).any(|s| s.len() > MAX_SNAPSHOT_STRINGS)
        {
            return Err(bad("too many or too long tags or paths"));
        }
        Ok(())
    }
}

/// Encodes a snapshot file's plaintext without its padding: `u32 length ‖ record`
/// (format-spec.md §5.9).
///
/// # Errors
/// [`Error::InvalidArgument`] when the record breaks a rule of [`decode_plaintext`].
pub fn encode_plaintext(record: &SnapshotRecord) -> Result<Vec<u8>> {
    record.validate().map_err(|e| Error::InvalidArgument(e.to_string()))?;
    FILE.plaintext(&encoding::encode(record)?)
}

/// The snapshot file's envelope and bounds.
const FILE: PaddedRecordFile = PaddedRecordFile {
    magic: MAGIC_SNAPSHOT,
    what: "snapshot",
    limit_what: "snapshot file length",
    limit: MAX_SNAPSHOT_FILE,
};

/// Encrypts a snapshot file.
pub(crate) fn encode(meta_key: &SecretKey, record: &SnapshotRecord, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>> {
    FILE.seal(meta_key, encode_plaintext(record)?, nonce)
}

/// Decrypts and checks a snapshot file.
///
/// # Errors
/// [`Error::Malformed`], [`Error::UnsupportedVersion`], [`Error::Integrity`] or
/// [`Error::LimitExceeded`] when the file is damaged, of another version, forged, or too big.
pub fn decode(meta_key: &SecretKey, bytes: &[u8]) -> Result<SnapshotRecord> {
    decode_plaintext(&FILE.open(meta_key, bytes)?)
}

/// Decodes the decrypted body of a snapshot file.
///
/// # Errors
/// [`Error::Malformed`] as for [`decode`].
pub fn decode_plaintext(plain: &[u8]) -> Result<SnapshotRecord> {
    let record: SnapshotRecord = encoding::decode(FILE.record(plain)?, "snapshot")?;
    record.validate()?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeySet, MasterKey};
    use crate::id::Id;

    fn file(name: &str, size: u64, chunks: usize) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            mode: 0o644,
            mtime_secs: 1_700_000_000,
            mtime_nanos: 5,
            content: NodeContent::File { size, chunks: (0..chunks).map(|i| ChunkId(Id([i as u8; 32]))).collect() },
        }
    }

    #[test]
    fn tree_round_trip_and_rules() {
        let t = Tree {
            nodes: vec![
                file("a", 10, 1),
                Node {
                    name: b"d".to_vec(),
                    mode: 0o755,
                    mtime_secs: -5,
                    mtime_nanos: 0,
                    content: NodeContent::Dir { tree: TreeId(Id([7; 32])) },
                },
                Node {
                    name: b"l".to_vec(),
                    mode: 0o777,
                    mtime_secs: 0,
                    mtime_nanos: 0,
                    content: NodeContent::Symlink { target: b"../x".to_vec() },
                },
            ],
        };
        let bytes = t.encode().unwrap();
        assert_eq!(Tree::decode(&bytes).unwrap(), t);
        for bad in [
            Tree { nodes: vec![file("b", 1, 1), file("a", 1, 1)] },
            Tree { nodes: vec![file("a", 1, 1), file("a", 1, 1)] },
            Tree { nodes: vec![file("..", 1, 1)] },
            Tree { nodes: vec![file("a/b", 1, 1)] },
            Tree { nodes: vec![file("", 1, 1)] },
            Tree { nodes: vec![file("a", 0, 1)] },
            Tree { nodes: vec![file("a", 5, 0)] },
        ] {
            assert!(bad.encode().is_err(), "{bad:?}");
            let raw = encoding::encode(&bad).unwrap();
            assert!(Tree::decode(&raw).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_before_1970_round_down_to_the_second() {
        // 1969-12-31T23:59:58.5Z, as `touch -d` and Linux's stat give it.
        let t = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(time_parts(t), (-2, 500_000_000));
        assert_eq!(system_time(-2, 500_000_000), Some(t));
        assert_eq!(time_parts(UNIX_EPOCH - Duration::from_nanos(1)), (-1, 999_999_999));
        assert_eq!(time_parts(UNIX_EPOCH - Duration::from_secs(3)), (-3, 0));
        assert_eq!(time_parts(UNIX_EPOCH + Duration::new(5, 7)), (5, 7));
        for (s, n) in [(-2, 500_000_000), (-1, 999_999_999), (-3, 0), (0, 0), (1_764_115_200, 500)] {
            assert_eq!(time_parts(system_time(s, n).unwrap()), (s, n));
        }
        assert_eq!(system_time(0, 1_000_000_000), None);
        let node = Node {
            name: b"old".to_vec(),
            mode: 0o644,
            mtime_secs: -2,
            mtime_nanos: 500_000_000,
            content: NodeContent::File { size: 0, chunks: vec![] },
        };
        assert_eq!(node.mtime(), Some(t));
    }

    #[test]
    fn a_longer_varint_in_a_tree_is_refused() {
        let t = Tree { nodes: vec![file("a", 10, 1)] };
        let bytes = t.encode().unwrap();
        // Node "a": list length 1, name length 1, 'a', then the mode 0o644 = 420 = fb a4 01.
        assert_eq!(bytes[..6], [1, 1, b'a', 251, 0xa4, 0x01]);
        let mut longer = bytes[..3].to_vec();
        longer.extend_from_slice(&[252, 0xa4, 0x01, 0, 0]);
        longer.extend_from_slice(&bytes[6..]);
        let err = Tree::decode(&longer).unwrap_err();
        assert!(err.to_string().contains("canonical"), "{err}");
    }

    #[test]
    fn a_newer_version_is_unsupported_whatever_its_size() {
        let ks = KeySet::derive(&MasterKey::from_bytes([3; 32]));
        let mut big = vec![0u8; MAX_SNAPSHOT_FILE as usize + 1];
        big[..6].copy_from_slice(&MAGIC_SNAPSHOT);
        big[6..8].copy_from_slice(&3u16.to_le_bytes());
        let err = decode(ks.meta_key(), &big).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { found: 3, .. }), "{err}");
        big[6..8].copy_from_slice(&2u16.to_le_bytes());
        assert!(matches!(decode(ks.meta_key(), &big), Err(Error::LimitExceeded { .. })));
    }

    #[test]
    fn snapshot_round_trip_and_rejects() {
        let ks = KeySet::derive(&MasterKey::from_bytes([3; 32]));
        let rec = SnapshotRecord {
            time_secs: 1_764_000_000,
            time_nanos: 1,
            hostname: "phone".into(),
            username: "ana".into(),
            tags: vec!["daily".into()],
            paths: vec!["/data/chat".into()],
            root: TreeId(Id([1; 32])),
            sequence: 3,
            previous: Some(SnapshotId(Id([2; 32]))),
            summary: Summary { files: 4, ..Summary::default() },
            flags: 0,
            program: "packvault test".into(),
        };
        let bytes = encode(ks.meta_key(), &rec, &[0; 12]).unwrap();
        assert_eq!(bytes.len() as u64, crate::format::padding::padme(bytes.len() as u64));
        assert_eq!(decode(ks.meta_key(), &bytes).unwrap(), rec);
        for n in 0..bytes.len() {
            assert!(decode(ks.meta_key(), &bytes[..n]).is_err());
        }
        let other = KeySet::derive(&MasterKey::from_bytes([4; 32]));
        assert!(decode(other.meta_key(), &bytes).unwrap_err().is_integrity());
    }
}

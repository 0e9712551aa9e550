//! Where repository files live: the [`Store`] trait and its implementations.
//!
//! A store knows names and bytes, nothing of encryption or formats. Names are the paths of
//! format-spec.md §4 (`config`, `keys/<id>`, `packs/<2 hex>/<id>`, `index/<id>`,
//! `snapshots/<id>`, `locks/<id>`).
//!
//! Durability contract: when [`Store::put`] returns `Ok`, the file is complete and durable
//! (local store: written to a temporary name, fsynced, linked into place, directory fsynced),
//! and a reader never sees a partial file. `put` never overwrites: an existing name gives
//! [`Error::AlreadyExists`].

mod local;
mod memory;
mod recording;
#[cfg(feature = "s3")]
mod s3;

pub use local::LocalStore;
pub use memory::MemoryStore;
pub use recording::{RecordingStore, StoreEvent, StoreOp};
#[cfg(feature = "s3")]
pub use s3::{S3Credentials, S3Options, S3Store};

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::id::Id;

/// The kinds of repository files, each with its own folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `config`.
    Config,
    /// `keys/<slot id>`.
    Key,
    /// `packs/<2 hex>/<pack id>`.
    Pack,
    /// `index/<id>`.
    Index,
    /// `snapshots/<id>`.
    Snapshot,
    /// `locks/<id>`.
    Lock,
    /// `tombstones/<id>`.
    Tombstone,
    /// `dicts/<dictionary id>` (format-spec.md §5.17).
    Dict,
}

impl FileKind {
    /// The folder of this kind (empty for the config).
    #[must_use]
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Pack => "packs",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Lock => "locks",
            FileKind::Tombstone => "tombstones",
            FileKind::Dict => "dicts",
        }
    }

    /// The store path of a file of this kind named `name`.
    #[must_use]
    pub fn path(self, name: &str) -> String {
        match self {
            FileKind::Config => "config".to_string(),
            FileKind::Pack => format!("packs/{}/{name}", name.get(..2).unwrap_or("xx")),
            _ => format!("{}/{name}", self.dir()),
        }
    }
}

/// A place that holds repository files.
pub trait Store: Send + Sync {
    /// Creates `kind/name` with `data`, durably. Never overwrites.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the name is taken; [`Error::Io`] otherwise.
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()>;

    /// Creates `kind/name` from the concatenation of `parts` (no copy into one buffer where the
    /// store can avoid it). Same contract as [`Store::put`].
    ///
    /// # Errors
    /// As [`Store::put`].
    fn put_parts(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.put(kind, name, &parts.concat())
    }

    /// As [`Store::put_parts`], but the store may make the file durable later, at the next
    /// [`Store::flush`]: the file is complete under its name for every reader, but might not
    /// survive a power loss before `flush` returns. Backups write packs this way and flush
    /// before writing the index file that names them.
    ///
    /// # Errors
    /// As [`Store::put`].
    fn put_deferred(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.put_parts(kind, name, parts)
    }

    /// Starts writing a file whose name is known only at the end (packs are named by the
    /// hash of their content). Written bytes need not stay in memory. The file appears under
    /// its name at [`Upload::finish`], with the durability of [`Store::put_deferred`].
    ///
    /// # Errors
    /// [`Error::Io`].
    fn begin(&self, kind: FileKind) -> Result<Box<dyn Upload>> {
        Ok(Box::new(BufferedUpload { kind, data: Vec::new() }))
    }

    /// Makes every earlier [`Store::put_deferred`] durable.
    ///
    /// # Errors
    /// [`Error::Io`] when flushing fails (the deferred files may then be incomplete after a
    /// power loss).
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Reads a whole file.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist; [`Error::Io`].
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>>;

    /// Reads a whole file, failing with [`Error::LimitExceeded`] (named `what`) instead of
    /// reading more than `limit` bytes. Stores that can should bound the read itself, so a file
    /// that grows between a size check and the read cannot make the reader allocate more.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`]; as [`Store::get`].
    fn get_limited(&self, kind: FileKind, name: &str, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        let size = self.size(kind, name)?;
        if size > limit {
            return Err(Error::LimitExceeded { what, found: size, limit });
        }
        self.get(kind, name)
    }

    /// Reads `len` bytes at `offset`.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Malformed`] when the range runs past the end; [`Error::Io`].
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// As [`Store::get_range`], into a buffer the caller reuses (no allocation per read).
    ///
    /// # Errors
    /// As [`Store::get_range`].
    fn get_range_into(&self, kind: FileKind, name: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.get_range(kind, name, offset, len)?;
        Ok(())
    }

    /// Length of a file.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Io`].
    fn size(&self, kind: FileKind, name: &str) -> Result<u64>;

    /// Names of all files of a kind (for packs, without the 2-hex folder), in any order.
    ///
    /// # Errors
    /// [`Error::Io`].
    fn list(&self, kind: FileKind) -> Result<Vec<String>>;

    /// Removes a file. Only maintenance (prune, unlock) calls this.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Io`].
    fn delete(&self, kind: FileKind, name: &str) -> Result<()>;

    /// Temporary files that writes killed mid-way left behind (a store that writes to a
    /// temporary name, then links it into place), untouched for longer than `older_than`.
    /// Removes them unless `dry_run`, and returns how many there were and their bytes. Only
    /// maintenance calls this, under an exclusive lock: no other client is writing then.
    ///
    /// # Errors
    /// [`Error::Io`].
    fn sweep_temporaries(&self, _older_than: std::time::Duration, _dry_run: bool) -> Result<(u64, u64)> {
        Ok((0, 0))
    }

    /// The local path of a file, for stores that have one (lets readers memory-map packs).
    fn local_path(&self, _kind: FileKind, _name: &str) -> Option<PathBuf> {
        None
    }

    /// A short description for messages, e.g. the folder.
    fn describe(&self) -> String;

    /// What names this store's location for a client's pins (format-spec.md §5.16): the same
    /// string every time the same place is opened, however it was named (an absolute folder
    /// path, a normalized URL). By default [`Store::describe`].
    fn location(&self) -> String {
        self.describe()
    }

    /// Whether the store itself refuses a `put` to a name that is taken, atomically
    /// (`Some(true)`: a local folder's hard link, S3's `If-None-Match: *` where the server
    /// honours it), does not (`Some(false)`: the store can only look before it writes, so two
    /// writers of one name may both succeed), or has not found out yet (`None`, the default).
    /// Correctness never depends on it: repository files are named by their content, except
    /// the config (written once by `init`) and lock files (random names).
    fn create_only(&self) -> Option<bool> {
        None
    }

    /// Finds out [`Store::create_only`] where it is unknown, by writing one probe object
    /// twice (and removing it), and remembers the answer for this handle. By default, what
    /// [`Store::create_only`] says.
    ///
    /// # Errors
    /// [`Error::Io`] when the probe cannot be written.
    fn probe_create_only(&self) -> Result<Option<bool>> {
        Ok(self.create_only())
    }

    /// How long a lock file may take to appear in [`Store::list`] for other clients after
    /// its `put` returned (format-spec.md §5.14): a client waits this long after writing its
    /// lock before it looks for conflicting ones. Zero (the default) for stores whose listing
    /// shows every completed write at once.
    fn lock_settle(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// Reads a whole file that the format bounds to `limit` bytes, checking the size first so a
/// hostile file cannot make the reader allocate more than the bound.
pub(crate) fn get_bounded(
    store: &dyn Store,
    kind: FileKind,
    name: &str,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>> {
    let data = store.get_limited(kind, name, limit, what)?;
    if data.len() as u64 > limit {
        return Err(Error::LimitExceeded { what, found: data.len() as u64, limit });
    }
    Ok(data)
}

/// A file being written by [`Store::begin`]. Dropping it without `finish` leaves nothing.
pub trait Upload: Send {
    /// Appends bytes.
    ///
    /// # Errors
    /// [`Error::Io`].
    fn write(&mut self, data: &[u8]) -> Result<()>;

    /// Makes the file visible under `name` (create-only) in `store` (the store that began the
    /// upload), durable at the store's next flush.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the name is taken; [`Error::Io`].
    fn finish(self: Box<Self>, store: &dyn Store, name: &str) -> Result<()>;
}

/// The default [`Upload`]: collects the bytes and calls [`Store::put_deferred`].
struct BufferedUpload {
    kind: FileKind,
    data: Vec<u8>,
}

impl Upload for BufferedUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn finish(self: Box<Self>, store: &dyn Store, name: &str) -> Result<()> {
        store.put_deferred(self.kind, name, &[&self.data])
    }
}

/// Lists the files of a kind whose names are 64-hex ids, skipping anything else (temporary
/// files, foreign files).
pub(crate) fn list_ids(store: &dyn Store, kind: FileKind) -> Result<Vec<Id>> {
    let mut ids: Vec<Id> =
        store.list(kind)?.into_iter().filter_map(|n| Id::from_hex(&n).ok().filter(|id| id.to_hex() == n)).collect();
    ids.sort_unstable();
    Ok(ids)
}

pub(crate) fn not_found(kind: FileKind, name: &str) -> Error {
    Error::NotFound(kind.path(name))
}

/// Checks a requested range against a file length.
pub(crate) fn check_range(kind: FileKind, name: &str, file_len: u64, offset: u64, len: usize) -> Result<()> {
    if offset.checked_add(len as u64).is_none_or(|end| end > file_len) {
        return Err(Error::malformed(
            "repository file",
            Some(offset),
            format!("{}: range of {len} bytes at {offset} runs past the end ({file_len} bytes)", kind.path(name)),
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The contract every store must keep.
    pub(crate) fn exercise(store: &dyn Store) {
        assert!(store.list(FileKind::Pack).unwrap().is_empty());
        let name = "ab".repeat(32);
        store.put(FileKind::Pack, &name, b"hello pack").unwrap();
        assert_eq!(store.get(FileKind::Pack, &name).unwrap(), b"hello pack");
        assert_eq!(store.size(FileKind::Pack, &name).unwrap(), 10);
        assert_eq!(store.get_range(FileKind::Pack, &name, 6, 4).unwrap(), b"pack");
        assert!(store.get_range(FileKind::Pack, &name, 6, 5).is_err());
        assert!(store.get_range(FileKind::Pack, &name, u64::MAX, 5).is_err());
        assert!(matches!(store.put(FileKind::Pack, &name, b"other"), Err(Error::AlreadyExists(_))));
        assert_eq!(store.get(FileKind::Pack, &name).unwrap(), b"hello pack", "put never overwrites");
        assert_eq!(store.list(FileKind::Pack).unwrap(), vec![name.clone()]);
        assert!(matches!(store.get(FileKind::Index, &name), Err(Error::NotFound(_))));
        store.put(FileKind::Config, "config", b"cfg").unwrap();
        store.put_deferred(FileKind::Index, &"cd".repeat(32), &[b"def", b"erred"]).unwrap();
        let mut up = store.begin(FileKind::Snapshot).unwrap();
        up.write(b"stream").unwrap();
        up.write(b"ed").unwrap();
        up.finish(store, &"ef".repeat(32)).unwrap();
        drop(store.begin(FileKind::Snapshot).unwrap());
        assert_eq!(
            store.list(FileKind::Snapshot).unwrap(),
            vec!["ef".repeat(32)],
            "an abandoned upload leaves nothing"
        );
        assert_eq!(store.get(FileKind::Snapshot, &"ef".repeat(32)).unwrap(), b"streamed");
        store.flush().unwrap();
        assert_eq!(store.get(FileKind::Index, &"cd".repeat(32)).unwrap(), b"deferred");
        assert!(store.put_deferred(FileKind::Index, &"cd".repeat(32), &[b"x"]).is_err(), "never overwrites");
        assert_eq!(store.get(FileKind::Config, "config").unwrap(), b"cfg");
        store.delete(FileKind::Pack, &name).unwrap();
        assert!(store.list(FileKind::Pack).unwrap().is_empty());
        assert!(matches!(store.delete(FileKind::Pack, &name), Err(Error::NotFound(_))));
    }
}

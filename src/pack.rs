//! Writing and reading packs through a store.

use crate::crypto::{random_array, KeySet};
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob::{self, BlobKind, SealedBlob};
use crate::format::index::IndexPack;
use crate::format::pack as pack_format;
use crate::id::{Id, PackId};
use crate::index::{BlobLocation, PackInfo};
use crate::store::{FileKind, Store};

/// Collects sealed blobs of one kind until the target size, then writes a pack.
///
/// Blobs are written in id order, not input order: ids are keyed hashes, so the order inside a
/// pack says nothing about where the chunks came from.
pub(crate) struct PackWriter {
    kind: BlobKind,
    target: usize,
    blobs: Vec<SealedBlob>,
    bytes: usize,
}

/// A pack that was written.
pub(crate) struct WrittenPack {
    pub(crate) info: PackInfo,
    pub(crate) record: IndexPack,
}

impl PackWriter {
    pub(crate) fn new(kind: BlobKind, target: usize) -> PackWriter {
        PackWriter { kind, target, blobs: Vec::new(), bytes: 0 }
    }

    /// Adds a blob; true when the pack reached its target size and should be written.
    pub(crate) fn add(&mut self, blob: SealedBlob) -> bool {
        debug_assert_eq!(blob.kind, self.kind);
        self.bytes += blob.bytes.len();
        self.blobs.push(blob);
        self.bytes >= self.target
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Seals the directory and writes the pack (nothing when empty).
    pub(crate) fn flush(&mut self, store: &dyn Store, keys: &KeySet) -> Result<Option<WrittenPack>> {
        if self.blobs.is_empty() {
            return Ok(None);
        }
        let mut blobs = std::mem::take(&mut self.blobs);
        self.bytes = 0;
        blobs.sort_unstable_by_key(|b| b.id);
        let nonce = random_array()?;
        let (bytes, entries) = pack_format::encode(keys.meta_key(), self.kind, &blobs, &nonce);
        drop(blobs);
        let id = PackId(Id::hash_of(&bytes));
        let name = id.to_hex();
        match store.put(FileKind::Pack, &name, &bytes) {
            // The name is the hash of the content: an existing file with this name already
            // holds these bytes (a retry, or another writer).
            Ok(()) | Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e.at(Location::Pack { pack: id, offset: None })),
        }
        let len = u32::try_from(bytes.len()).map_err(|_| Error::LimitExceeded {
            what: "pack length",
            found: bytes.len() as u64,
            limit: u64::from(u32::MAX),
        })?;
        Ok(Some(WrittenPack {
            info: PackInfo { id, kind: self.kind, len },
            record: IndexPack { pack: id, kind: self.kind, pack_len: len, entries },
        }))
    }
}

/// Reads one blob through the store and opens it.
pub(crate) fn read_blob(store: &dyn Store, keys: &KeySet, id: &Id, loc: &BlobLocation) -> Result<Vec<u8>> {
    let at = || Location::Pack { pack: loc.pack, offset: Some(u64::from(loc.offset)) };
    let sealed =
        store.get_range(FileKind::Pack, &loc.pack.to_hex(), u64::from(loc.offset), loc.sealed_len as usize).at(at)?;
    blob::open(keys, loc.kind, id, loc.codec, loc.raw_len, &sealed).at(at)
}

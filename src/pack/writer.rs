//! Writing packs: sealed blobs stream to the store, the directory is sealed at the end.

use super::PackInfo;
use crate::crypto::{random_array, KeySet};
use crate::error::{Error, Location, Result};
use crate::format::blob::{BlobKind, SealedBlob};
use crate::format::index::IndexPack;
use crate::format::pack::{self as pack_format, BlobEntry};
use crate::id::{Id, PackId};
use crate::store::{FileKind, Store, Upload};

/// Streams sealed blobs of one kind into a pack until the target size, then seals the
/// directory and names the pack. Only the directory entries stay in memory: the blobs go to
/// the store as they arrive ([`Store::begin`]).
///
/// Blob order inside a pack is the order of arrival. The backup pipeline sends each batch's
/// new blobs (about 1 MiB of input) sorted by id, so the order follows the input only at batch
/// granularity, and the provider never sees blob boundaries anyway.
pub(crate) struct PackWriter {
    kind: BlobKind,
    target: usize,
    upload: Option<Box<dyn Upload>>,
    hasher: blake3::Hasher,
    entries: Vec<BlobEntry>,
    offset: u64,
}

/// A pack that was written.
#[derive(Clone)]
pub(crate) struct WrittenPack {
    pub(crate) info: PackInfo,
    pub(crate) record: IndexPack,
}

impl PackWriter {
    pub(crate) fn new(kind: BlobKind, target: usize) -> PackWriter {
        PackWriter { kind, target, upload: None, hasher: blake3::Hasher::new(), entries: Vec::new(), offset: 0 }
    }

    /// Appends a blob; writes and returns the pack when it reached its target size.
    pub(crate) fn add(&mut self, store: &dyn Store, keys: &KeySet, blob: SealedBlob) -> Result<Option<WrittenPack>> {
        debug_assert_eq!(blob.kind, self.kind);
        if self.upload.is_none() {
            self.upload = Some(store.begin(FileKind::Pack)?);
            self.hasher = blake3::Hasher::new();
            self.entries.clear();
            self.offset = 0;
        }
        let upload = self.upload.as_mut().expect("started above");
        upload.write(&blob.bytes)?;
        self.hasher.update(&blob.bytes);
        let sealed_len = u32::try_from(blob.bytes.len()).expect("blob below MAX_BLOB_SEALED");
        let offset = u32::try_from(self.offset).map_err(|_| Error::LimitExceeded {
            what: "pack length",
            found: self.offset,
            limit: u64::from(u32::MAX),
        })?;
        self.entries.push(BlobEntry { id: blob.id, offset, sealed_len, raw_len: blob.raw_len, codec: blob.codec });
        self.offset += u64::from(sealed_len);
        if self.offset >= self.target as u64 {
            return self.flush(store, keys);
        }
        Ok(None)
    }

    /// Seals the directory and finishes the pack (nothing when no blob is pending).
    pub(crate) fn flush(&mut self, store: &dyn Store, keys: &KeySet) -> Result<Option<WrittenPack>> {
        let Some(mut upload) = self.upload.take() else { return Ok(None) };
        let entries = std::mem::take(&mut self.entries);
        let nonce = random_array()?;
        let tail = pack_format::encode_tail_for(keys.meta_key(), self.kind, &entries, &nonce);
        upload.write(&tail)?;
        self.hasher.update(&tail);
        let id = PackId(Id(*self.hasher.finalize().as_bytes()));
        let total = self.offset + tail.len() as u64;
        // Durable at the store's next flush, which comes before any index names this pack.
        match upload.finish(store, &id.to_hex()) {
            // The name is the hash of the content: an existing file with this name already
            // holds these bytes (a retry, or another writer).
            Ok(()) | Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e.at(Location::Pack { pack: id, offset: None })),
        }
        let len = u32::try_from(total).map_err(|_| Error::LimitExceeded {
            what: "pack length",
            found: total,
            limit: u64::from(u32::MAX),
        })?;
        Ok(Some(WrittenPack {
            info: PackInfo { id, kind: self.kind, len },
            record: IndexPack { pack: id, kind: self.kind, pack_len: len, entries },
        }))
    }
}

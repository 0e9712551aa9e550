//! Writing packs: sealed blobs stream to the store, the directory is sealed at the end.
//!
//! **Blob order hides the input order** (format-spec.md §5.5). A writer keeps up to
//! [`POOL_BYTES`] (at most a quarter of the pack target) of sealed blobs pending and [`OPEN_PACKS`] packs open; once the pool is full,
//! each new blob sends out a pending blob picked at random into an open pack picked at random
//! (restic 0.18 fills several packs at random too). So consecutive chunks of a file neither lie
//! side by side nor share one pack: a 3 MiB file's chunks end up interleaved with about 2 MiB of
//! other data, over two packs (a writer whose blobs all still sit in the pool when it is
//! flushed, a small backup, writes them to one pack in random order). The choices come from the operating system's random source
//! (`shuffle`). Cost, measured (`bench/results/privacy-costs.txt`): the pool's memory, and one
//! more partly filled pack at the end of each writer's life (each open pack is closed then);
//! hashing and sealing are unchanged. Durability is unchanged too: a blob is in no index until
//! the pack holding it was written, and everything pending is written by [`PackWriter::flush`].
//!
//! Only the attack tests' switch ([`weakened`](super::weakened)) makes a writer fill one pack
//! in arrival order.

use super::shuffle::Picks;
use super::PackInfo;
use crate::crypto::{random_array, KeySet};
use crate::error::{Error, Location, Result};
use crate::format::blob::{BlobKind, SealedBlob};
use crate::format::index::IndexPack;
use crate::format::pack::{self as pack_format, BlobEntry};
use crate::id::{Id, PackId};
use crate::store::{FileKind, Store, Upload};

/// Packs a writer fills at once.
pub(crate) const OPEN_PACKS: usize = 2;
/// Sealed bytes a writer holds back before it sends a random one out (at most a quarter of
/// the pack target, so a writer with small packs still writes as it goes). 2 MiB, not 4: on
/// the 1 GiB day-1 backup each MiB of pool costs about 2.7 MB of peak memory (two writers),
/// and the attack tests (`tests/privacy.rs`) find no advantage at 2 MiB either.
pub(crate) const POOL_BYTES: usize = 2 << 20;

/// Streams sealed blobs of one kind into packs until the target size, then seals each
/// directory and names the pack. The blobs go to the store as they leave the pool
/// ([`Store::begin`]); only the pool and the directory entries stay in memory.
pub(crate) struct PackWriter {
    kind: BlobKind,
    target: usize,
    open: Vec<OpenPack>,
    pool: Vec<SealedBlob>,
    pool_bytes: usize,
    /// The pool's bound: [`POOL_BYTES`], or a quarter of the target if that is less.
    pool_limit: usize,
    picks: Picks,
    /// Packs finished and not handed out yet (a failed call keeps them here).
    done: Vec<WrittenPack>,
}

/// One pack being written.
#[derive(Default)]
struct OpenPack {
    upload: Option<Box<dyn Upload>>,
    hasher: blake3::Hasher,
    entries: Vec<BlobEntry>,
    offset: u64,
}

/// Packs in the last [`CLOSE_WINDOW`]th of the target may close early, at the end of their
/// Padmé bucket (see [`closes_before`]).
const CLOSE_WINDOW: u64 = 8;
/// ... when the padding that closing now adds is at most this fraction (1/256) of the pack.
const CLOSE_SLACK: u64 = 256;

/// True when open pack `p` should be closed before a sealed blob of `len` bytes goes in: it
/// is within the last eighth of the `target`, the blob would take it past the Padmé length
/// it would be padded to now (format-spec.md §5.5), and that length wastes at most 1/256 of
/// it. A pack closed at the target instead wastes half a Padmé step on average (256 KiB, 1.5 %
/// of a 16 MiB pack); closing where a bucket ends saves most of it and keeps packs between
/// 7/8 of the target and the target.
fn closes_before(p: &OpenPack, target: u64, len: u64) -> bool {
    if p.upload.is_none() || p.offset < target - target / CLOSE_WINDOW {
        return false;
    }
    let n = p.entries.len();
    let dir = pack_format::directory_len(n) as u64;
    let padded = pack_format::pack_len_for(p.offset, dir);
    let unpadded = p.offset + dir + pack_format::TRAILER_LEN as u64;
    let next = p.offset + len + pack_format::directory_len(n + 1) as u64 + pack_format::TRAILER_LEN as u64;
    next > padded && padded - unpadded <= padded / CLOSE_SLACK
}

/// A pack that was written.
#[derive(Clone)]
pub(crate) struct WrittenPack {
    pub(crate) info: PackInfo,
    pub(crate) record: IndexPack,
}

impl PackWriter {
    pub(crate) fn new(kind: BlobKind, target: usize) -> PackWriter {
        PackWriter {
            kind,
            target,
            open: (0..OPEN_PACKS).map(|_| OpenPack::default()).collect(),
            pool: Vec::new(),
            pool_bytes: 0,
            pool_limit: POOL_BYTES.min(target / 4),
            picks: Picks::new(),
            done: Vec::new(),
        }
    }

    /// Takes a blob; returns the packs that reached their target size and were written.
    pub(crate) fn add(&mut self, store: &dyn Store, keys: &KeySet, blob: SealedBlob) -> Result<Vec<WrittenPack>> {
        debug_assert_eq!(blob.kind, self.kind);
        if super::weakened::weakened() {
            self.put(0, store, keys, blob)?;
            return Ok(std::mem::take(&mut self.done));
        }
        self.pool_bytes += blob.bytes.len();
        self.pool.push(blob);
        while self.pool_bytes > self.pool_limit {
            self.send_one(store, keys)?;
        }
        Ok(std::mem::take(&mut self.done))
    }

    /// Writes everything pending and closes every open pack; returns the packs written.
    pub(crate) fn flush(&mut self, store: &dyn Store, keys: &KeySet) -> Result<Vec<WrittenPack>> {
        if self.open.iter().all(|p| p.upload.is_none()) {
            // Everything is still in the pool (a small backup): one pack, in random order,
            // rather than one per open slot (a daily backup of a few messages would otherwise
            // double its packs).
            while !self.pool.is_empty() {
                let i = self.picks.below(self.pool.len())?;
                let blob = self.pool.swap_remove(i);
                self.pool_bytes -= blob.bytes.len();
                self.put(0, store, keys, blob)?;
            }
        }
        while !self.pool.is_empty() {
            self.send_one(store, keys)?;
        }
        for slot in 0..self.open.len() {
            self.finish(slot, store, keys)?;
        }
        Ok(std::mem::take(&mut self.done))
    }

    /// Packs written by a call that then failed (they exist in the store: they join the
    /// index like any other).
    pub(crate) fn take_written(&mut self) -> Vec<WrittenPack> {
        std::mem::take(&mut self.done)
    }

    /// Sends a random pending blob into a random open pack.
    fn send_one(&mut self, store: &dyn Store, keys: &KeySet) -> Result<()> {
        let i = self.picks.below(self.pool.len())?;
        let blob = self.pool.swap_remove(i);
        self.pool_bytes -= blob.bytes.len();
        let slot = self.picks.below(self.open.len())?;
        self.put(slot, store, keys, blob)
    }

    /// Appends a blob to open pack `slot`; writes the pack when it reached its target size.
    fn put(&mut self, slot: usize, store: &dyn Store, keys: &KeySet, blob: SealedBlob) -> Result<()> {
        if closes_before(&self.open[slot], self.target as u64, blob.bytes.len() as u64) {
            self.finish(slot, store, keys)?;
        }
        let p = &mut self.open[slot];
        if p.upload.is_none() {
            p.upload = Some(store.begin(FileKind::Pack)?);
            p.hasher = blake3::Hasher::new();
            p.entries.clear();
            p.offset = 0;
        }
        let upload = p.upload.as_mut().expect("started above");
        upload.write(&blob.bytes)?;
        p.hasher.update(&blob.bytes);
        let sealed_len = u32::try_from(blob.bytes.len()).expect("blob below MAX_BLOB_SEALED");
        let offset = u32::try_from(p.offset).map_err(|_| Error::LimitExceeded {
            what: "pack length",
            found: p.offset,
            limit: u64::from(u32::MAX),
        })?;
        p.entries.push(BlobEntry { id: blob.id, offset, sealed_len, raw_len: blob.raw_len, codec: blob.codec });
        p.offset += u64::from(sealed_len);
        if p.offset >= self.target as u64 {
            self.finish(slot, store, keys)?;
        }
        Ok(())
    }

    /// Seals the directory of open pack `slot` and finishes the pack (nothing when it holds
    /// no blob).
    fn finish(&mut self, slot: usize, store: &dyn Store, keys: &KeySet) -> Result<()> {
        let p = &mut self.open[slot];
        let Some(mut upload) = p.upload.take() else { return Ok(()) };
        let entries = std::mem::take(&mut p.entries);
        let nonce = random_array()?;
        let tail = pack_format::encode_tail_for(keys.meta_key(), self.kind, &entries, &nonce);
        upload.write(&tail)?;
        p.hasher.update(&tail);
        let id = PackId(Id(*p.hasher.finalize().as_bytes()));
        let total = p.offset + tail.len() as u64;
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
        self.done.push(WrittenPack {
            info: PackInfo { id, kind: self.kind, len },
            record: IndexPack { pack: id, kind: self.kind, pack_len: len, entries },
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::format::padding::padme;
    use crate::id::Id;
    use crate::store::MemoryStore;

    #[test]
    fn full_packs_close_near_the_end_of_their_padme_bucket() {
        let keys = KeySet::derive(&MasterKey::from_bytes([7; 32]));
        let store = MemoryStore::new();
        let target = 1 << 20;
        let mut w = PackWriter::new(BlobKind::Data, target);
        let mut written = Vec::new();
        for i in 0u32..8000 {
            // Sealed blobs of 256 B – 2.3 KiB, as small files and database pages give: below
            // the 4 KiB slack, so every full pack closes at the first bucket end in its window.
            let len = 256 + (i as usize).wrapping_mul(2_654_435_761) % 2048;
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let blob = SealedBlob {
                kind: BlobKind::Data,
                id: Id(id),
                codec: crate::format::blob::Codec::Raw,
                raw_len: 1,
                bytes: vec![0; len],
            };
            written.extend(w.add(&store, &keys, blob).unwrap());
        }
        written.extend(w.flush(&store, &keys).unwrap());
        let full: Vec<_> = written.iter().filter(|p| u64::from(p.info.len) >= (target as u64) * 7 / 8).collect();
        assert!(full.len() >= 6, "{} full packs of {}", full.len(), written.len());
        for p in &full {
            let blobs: u64 = p.record.entries.iter().map(|e| u64::from(e.sealed_len)).sum();
            let unpadded =
                blobs + (pack_format::directory_len(p.record.entries.len()) + pack_format::TRAILER_LEN) as u64;
            assert_eq!(u64::from(p.info.len), padme(unpadded));
            // Without the early close a pack wastes half a Padmé step (8 KiB here) on average.
            assert!(
                u64::from(p.info.len) - unpadded <= u64::from(p.info.len) / CLOSE_SLACK,
                "padding {} of {}",
                u64::from(p.info.len) - unpadded,
                p.info.len
            );
        }
    }
}

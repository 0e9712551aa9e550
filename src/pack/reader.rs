//! Reading packs: a pack's directory, one blob, a planned range of blobs, or a whole pack.
//!
//! Every reader of the library (restore, `open_file`, `restore_to`, check, prune's repack,
//! tree loads, inspection) comes through [`PackReader`], so a pack is parsed and a blob
//! opened in one place. A reader owns its buffers (the bytes read, the decrypted blob, the
//! decompressed blob) and reuses them from read to read: a worker thread keeps one reader.
//!
//! **Where read ranges are decided.** Every request to the store goes through [`window`]: it
//! turns the bytes a caller needs into the bytes asked for. Every read (planned ranges of a
//! restore, `restore_to` or repack, single blobs of tree loads and `open_file`, trailers and
//! directories) starts and ends on a multiple of 64 KiB ([`READ_ALIGN`]) or at the pack's end,
//! so the provider never sees where a blob begins or ends (format-spec.md §9, checked against
//! the provider's view by `tests/privacy.rs`). A single-blob read therefore needs the pack's
//! length; the reader asks the store once per pack and remembers the last few.
//!
//! Measured cost (`bench/results/privacy-costs.txt`, `examples/privacy_costs.rs`): a full
//! restore reads the same bytes (its ranges were aligned already); a tree load of a ~1 KiB tree
//! reads one 64 KiB block instead of its sealed bytes; a 100-byte `open_file` read reads the
//! blocks under its chunk (2 blocks for a 64 KiB chunk) instead of the chunk; a directory read
//! reads the blocks under the pack's tail instead of its exact bytes. Shaping reads for S3
//! ranged GETs is a change to `window` alone.
use super::{BlobLocation, ReadRange};
use crate::crypto::KeySet;
use crate::dict::DictCache;
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::blob;
use crate::format::pack::{self as pack_format, PackDirectory, Trailer};
use crate::id::{Id, PackId};
use crate::store::{FileKind, Store};

/// Planned reads start and end on multiples of this (or the pack's end).
pub(crate) const READ_ALIGN: u64 = 64 << 10;
/// A directory read asks first for this much of a pack's end (or the whole pack when
/// shorter): the trailer and, for packs of up to 1 363 blobs, the whole directory, in one
/// request whose size does not depend on the directory's length. Measured on 16 MiB data
/// packs (256 blobs of 64 KiB): one request of 64 KiB where version 1 made two (12 bytes,
/// then the directory with its padding, 12 KiB–512 KiB).
pub(crate) const DIRECTORY_TAIL: u64 = 64 << 10;
/// Piece size of [`PackReader::stream_whole`] (a multiple of [`READ_ALIGN`]).
pub(crate) const STREAM_PIECE: u64 = 8 << 20;

/// A blob a caller wants read: its id and where it lies.
pub(crate) trait Wanted {
    /// The blob's id.
    fn id(&self) -> Id;
    /// Where it lies.
    fn location(&self) -> &BlobLocation;
}

impl Wanted for (Id, BlobLocation) {
    fn id(&self) -> Id {
        self.0
    }
    fn location(&self) -> &BlobLocation {
        &self.1
    }
}

/// Why a read is made; [`window`] shapes the request by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The trailer or the directory of a pack.
    Directory,
    /// One blob.
    Blob,
    /// A planned, coalesced range of blobs.
    Range,
}

/// The bytes to request from a pack of `pack_len` bytes (when known) for a read that needs
/// `first..end`: the one place where read ranges are decided (see the module documentation).
/// The result always contains `first..end`; it starts on a multiple of [`READ_ALIGN`] and
/// ends on one or at the pack's end, whatever the purpose (a caller that does not know the
/// pack's length gets a read that ends at its need). Only the attack tests' switch
/// ([`weakened`](super::weakened)) makes it return `first..end` itself.
pub(crate) fn window(purpose: Purpose, first: u64, end: u64, pack_len: Option<u64>) -> (u64, u64) {
    if super::weakened::weakened() {
        return (first, end);
    }
    // Every purpose is shaped alike: a trailer, a directory or one blob must not show its
    // bounds any more than a planned range does.
    let _ = purpose;
    let pack_end = pack_len.unwrap_or(end).max(end);
    (first - first % READ_ALIGN, end.div_ceil(READ_ALIGN).saturating_mul(READ_ALIGN).min(pack_end))
}

/// Pack lengths a reader remembers (single-blob reads need them to align; `open_file` reads
/// alternate between a few packs).
const KNOWN_LENGTHS: usize = 8;

/// The lengths of a pack's end that a directory read asks for, from a pack of `pack_len`
/// bytes whose sealed directory is `dir_len` bytes: the first read (the last
/// [`DIRECTORY_TAIL`] bytes, or all of a shorter pack), and, when the directory and the
/// trailer do not fit in it, the smallest `DIRECTORY_TAIL · 2^k` that holds them (capped at
/// the pack) for the second. The provider thus learns at most the power-of-two size class of
/// a directory above 64 KiB, never its length.
pub(crate) fn directory_reads(pack_len: u64, dir_len: u64) -> (u64, u64) {
    let first = pack_len.min(DIRECTORY_TAIL);
    let need = dir_len + pack_format::TRAILER_LEN as u64;
    let mut second = DIRECTORY_TAIL;
    while second < need {
        second = second.saturating_mul(2);
    }
    (first, second.min(pack_len))
}

/// A blob opened from a range read: its sealed bytes as stored and its plaintext.
pub(crate) struct Opened<'b> {
    /// The sealed blob, as it lies in the pack (what a repack copies).
    pub sealed: &'b [u8],
    /// Its plaintext (decrypted, decompressed, id checked).
    pub plain: &'b [u8],
}

/// What reading a whole pack found (see [`PackReader::read_whole`]).
pub(crate) struct WholePack {
    /// Its length as read.
    pub len: u64,
    /// True when its content hashes to its name.
    pub hash_matches: bool,
    /// Its directory, or why it does not decode.
    pub directory: Result<PackDirectory>,
}

/// Reads packs through a store (see the module documentation).
pub(crate) struct PackReader<'a> {
    store: &'a dyn Store,
    keys: &'a KeySet,
    /// The bytes of the last read.
    read: Vec<u8>,
    /// The decrypted (still compressed) blob.
    scratch: Vec<u8>,
    /// The plaintext blob.
    plain: Vec<u8>,
    /// The dictionaries codec-2 blobs named so far (format-spec.md §5.17).
    dicts: DictCache<'a>,
    /// Lengths of the packs read last, newest last.
    lengths: Vec<(PackId, u64)>,
}

impl<'a> PackReader<'a> {
    /// A reader with empty buffers.
    pub fn new(store: &'a dyn Store, keys: &'a KeySet) -> PackReader<'a> {
        PackReader {
            store,
            keys,
            read: Vec::new(),
            scratch: Vec::new(),
            plain: Vec::new(),
            dicts: DictCache::new(store, keys),
            lengths: Vec::new(),
        }
    }

    /// Reads `first..end` of `pack` (widened by [`window`]) into the read buffer; returns the
    /// offset in the pack of the buffer's first byte.
    fn fetch(&mut self, pack: &PackId, purpose: Purpose, first: u64, end: u64, pack_len: Option<u64>) -> Result<u64> {
        let (from, to) = window(purpose, first, end, pack_len);
        let len = usize::try_from(to - from).map_err(|_| Error::LimitExceeded {
            what: "pack read",
            found: to - from,
            limit: usize::MAX as u64,
        })?;
        let at = || Location::Pack { pack: *pack, offset: Some(from) };
        let name = pack.to_hex();
        if purpose == Purpose::Range {
            // Planned ranges are large (up to MAX_READ) and many: into the reused buffer.
            self.store.get_range_into(FileKind::Pack, &name, from, len, &mut self.read).at(at)?;
        } else {
            // Single reads are small; a plain ranged read (which tests that hook the store's
            // reads of planned ranges tell apart from tree loads).
            self.read = self.store.get_range(FileKind::Pack, &name, from, len).at(at)?;
        }
        Ok(from)
    }

    /// Length of a pack file in the store.
    ///
    /// # Errors
    /// [`Error::NotFound`] and store errors, naming the pack.
    pub fn size(&self, pack: &PackId) -> Result<u64> {
        self.store.size(FileKind::Pack, &pack.to_hex()).at(|| Location::Pack { pack: *pack, offset: None })
    }

    /// Length of a pack, remembered for the next reads of it.
    fn known_len(&mut self, pack: &PackId) -> Result<u64> {
        if let Some(&(_, len)) = self.lengths.iter().find(|(p, _)| p == pack) {
            return Ok(len);
        }
        let len = self.size(pack)?;
        if self.lengths.len() == KNOWN_LENGTHS {
            self.lengths.remove(0);
        }
        self.lengths.push((*pack, len));
        Ok(len)
    }

    /// Reads only the directory of a pack: its size, then its tail (see
    /// [`directory_reads`]), then the directory.
    ///
    /// # Errors
    /// Store errors; malformed trailers and directories; a directory that does not
    /// authenticate. All name the pack.
    pub fn directory(&mut self, pack: &PackId) -> Result<PackDirectory> {
        self.sized_directory(pack).map(|(_, dir)| dir)
    }

    /// As [`PackReader::directory`], with the pack's length.
    ///
    /// # Errors
    /// As [`PackReader::directory`].
    pub fn sized_directory(&mut self, pack: &PackId) -> Result<(u64, PackDirectory)> {
        let at = || Location::Pack { pack: *pack, offset: None };
        let len = self.size(pack)?;
        if len < pack_format::MIN_PACK_LEN {
            return Err(
                Error::malformed("pack", None, format!("{len} bytes is shorter than the smallest pack")).at(at())
            );
        }
        let trailer_at = len - pack_format::TRAILER_LEN as u64;
        // First read: the pack's last DIRECTORY_TAIL bytes, whatever the directory's length.
        let tail_from = self.fetch(pack, Purpose::Directory, len - directory_reads(len, 0).0, len, Some(len))?;
        let mut tail = std::mem::take(&mut self.read);
        let short = || Error::malformed("pack", None, "the store returned a short read").at(at());
        let t_at = usize::try_from(trailer_at - tail_from).map_err(|_| short())?;
        let trailer = Trailer::decode(self.keys.meta_key(), len, tail.get(t_at..).ok_or_else(short)?).at(at)?;
        let dir_at = trailer.directory_start(len);
        let mut base = tail_from;
        if dir_at < tail_from {
            // Second read, only for directories longer than the first read: the tail grows to
            // the next power-of-two size class, so the request shows that class, not `D`.
            let (_, more) = directory_reads(len, u64::from(trailer.dir_len));
            base = self.fetch(pack, Purpose::Directory, (len - more).min(dir_at), tail_from, Some(len))?;
            let mut joined = std::mem::take(&mut self.read);
            joined.truncate(usize::try_from(tail_from - base).map_err(|_| short())?);
            joined.extend_from_slice(&tail);
            tail = joined;
        }
        let d = usize::try_from(dir_at - base).map_err(|_| short())?;
        let t = usize::try_from(trailer_at - base).map_err(|_| short())?;
        let dir = tail.get(d..t).ok_or_else(short)?;
        let out = pack_format::decode_directory(self.keys.meta_key(), len, &trailer, dir).at(at);
        self.read = tail;
        Ok((len, out?))
    }

    /// Reads one blob and opens it (decrypt, decompress, check its id).
    ///
    /// # Errors
    /// Store errors and integrity errors, naming the pack and the blob's offset.
    pub fn read_blob(&mut self, id: &Id, loc: &BlobLocation) -> Result<Vec<u8>> {
        let at = || Location::Pack { pack: loc.pack, offset: Some(u64::from(loc.offset)) };
        // Aligning needs the pack's end (a read must not run past it); the weakened reads of
        // the attack tests ask for exact bytes and need no length, as before alignment.
        let pack_len = if super::weakened::weakened() { None } else { Some(self.known_len(&loc.pack)?) };
        let from = self.fetch(&loc.pack, Purpose::Blob, u64::from(loc.offset), loc.end(), pack_len)?;
        let s = usize::try_from(u64::from(loc.offset) - from).unwrap_or(usize::MAX);
        let sealed = self.read.get(s..s.saturating_add(loc.sealed_len as usize)).ok_or_else(|| {
            Error::malformed("pack", Some(u64::from(loc.offset)), "the store returned a short read").at(at())
        })?;
        blob::open_with(self.keys, loc.kind, id, loc.codec, loc.raw_len, sealed, &mut self.dicts).at(at)
    }

    /// Reads one planned range (from [`coalesce`](super::coalesce)) of a pack of `pack_len`
    /// bytes (when known) and opens each of `blobs` (the range's share of the planned list),
    /// handing each its bytes ([`Opened`]) or the error that opening it gave, in order.
    ///
    /// # Errors
    /// When the read itself fails (then no blob was handed out), naming the pack and offset.
    pub fn read_range<T: Wanted>(
        &mut self,
        range: &ReadRange,
        pack_len: Option<u64>,
        blobs: &[T],
        mut each: impl FnMut(&T, Result<Opened<'_>>),
    ) -> Result<()> {
        let pack = range.pack;
        let from = self.fetch(&pack, Purpose::Range, range.first, range.end, pack_len)?;
        for w in blobs {
            let (id, loc) = (w.id(), w.location());
            let at = || Location::Pack { pack, offset: Some(u64::from(loc.offset)) };
            let s = usize::try_from(u64::from(loc.offset).saturating_sub(from)).unwrap_or(usize::MAX);
            let Some(sealed) = self.read.get(s..s.saturating_add(loc.sealed_len as usize)) else {
                let e = Error::malformed("pack", Some(u64::from(loc.offset)), "blob outside the range read");
                each(w, Err(e.at(at())));
                continue;
            };
            let opened = blob::open_into(
                self.keys,
                loc.kind,
                &id,
                loc.codec,
                loc.raw_len,
                sealed,
                &mut self.scratch,
                &mut self.plain,
                &mut self.dicts,
            );
            match opened {
                Ok(plain) => each(w, Ok(Opened { sealed, plain })),
                Err(e) => each(w, Err(e.at(at()))),
            }
        }
        Ok(())
    }

    /// Streams the `len` bytes of a pack to `each`, [`STREAM_PIECE`] at a time (memory stays at
    /// one piece whatever the pack's size), and returns whether they hash to the pack's name.
    /// `copy` moves packs between repositories of one key domain this way: the bytes are
    /// handed on as stored, and the caller keeps them only if the hash matches.
    ///
    /// # Errors
    /// Store errors, naming the pack and the offset; `each`'s errors.
    pub fn stream_whole(&mut self, pack: &PackId, len: u64, mut each: impl FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        let mut hasher = blake3::Hasher::new();
        let mut at = 0;
        while at < len {
            let n = (len - at).min(STREAM_PIECE);
            // Whole pieces of the whole pack: nothing here follows blob boundaries.
            self.fetch(pack, Purpose::Directory, at, at + n, Some(len))?;
            hasher.update(&self.read);
            each(&self.read)?;
            at += n;
        }
        Ok(Id(*hasher.finalize().as_bytes()) == pack.0)
    }

    /// Reads a whole pack (at most [`MAX_PACK_LEN`](pack_format::MAX_PACK_LEN) bytes), checks
    /// that it hashes to its name, decodes its directory, and opens each of `blobs` from it,
    /// handing each the result (a blob past the end of the pack gets an error).
    ///
    /// # Errors
    /// When the read itself fails, naming the pack.
    pub fn read_whole<T: Wanted>(
        &mut self,
        pack: &PackId,
        blobs: &[T],
        mut each: impl FnMut(&T, Result<&[u8]>),
    ) -> Result<WholePack> {
        let at = |offset| Location::Pack { pack: *pack, offset };
        // The store bounds the read itself (a file grown since its size was read cannot make
        // this allocate more); nothing goes through `window`: all of the pack is needed.
        self.read = crate::store::get_bounded(
            self.store,
            FileKind::Pack,
            &pack.to_hex(),
            pack_format::MAX_PACK_LEN,
            "pack length",
        )
        .at(|| at(None))?;
        let bytes = &self.read;
        let whole = WholePack {
            len: bytes.len() as u64,
            hash_matches: Id::hash_of(bytes) == pack.0,
            directory: pack_format::decode_pack(self.keys.meta_key(), bytes).at(|| at(None)),
        };
        for w in blobs {
            let (id, loc) = (w.id(), w.location());
            let offset = u64::from(loc.offset);
            let Some(sealed) = bytes.get(loc.offset as usize..loc.end() as usize) else {
                let e = Error::malformed("pack", Some(offset), format!("blob {} lies beyond its end", id.short()));
                each(w, Err(e.at(at(Some(offset)))));
                continue;
            };
            match blob::open_into(
                self.keys,
                loc.kind,
                &id,
                loc.codec,
                loc.raw_len,
                sealed,
                &mut self.scratch,
                &mut self.plain,
                &mut self.dicts,
            ) {
                Ok(plain) => each(w, Ok(plain)),
                Err(e) => each(w, Err(e.at(at(Some(offset))))),
            }
        }
        Ok(whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_is_aligned_within_the_pack() {
        let k = READ_ALIGN;
        assert_eq!(window(Purpose::Range, 10, 20, Some(10 * k)), (0, k));
        assert_eq!(window(Purpose::Range, k + 1, 2 * k + 1, Some(10 * k)), (k, 3 * k));
        assert_eq!(window(Purpose::Range, k, 2 * k, Some(10 * k)), (k, 2 * k), "aligned already");
        assert_eq!(window(Purpose::Range, 9 * k + 5, 9 * k + 50, Some(9 * k + 60)), (9 * k, 9 * k + 60));
        assert_eq!(window(Purpose::Range, 5, 50, None), (0, 50), "an unknown length ends the read at the need");
        assert_eq!(window(Purpose::Blob, 5, 50, Some(10 * k)), (0, k));
        assert_eq!(window(Purpose::Blob, k - 1, k + 1, Some(10 * k)), (0, 2 * k), "a blob across a block edge");
        assert_eq!(window(Purpose::Directory, 10 * k - 12, 10 * k, Some(10 * k)), (9 * k, 10 * k));
        assert_eq!(window(Purpose::Directory, 5, 50, Some(60)), (0, 60), "a small pack is read whole");
    }

    #[test]
    fn directory_reads_depend_on_the_size_class_only() {
        let t = DIRECTORY_TAIL;
        assert_eq!(directory_reads(1000, 100), (1000, 1000), "a short pack is read whole");
        assert_eq!(directory_reads(16 << 20, 12_000), (t, t));
        assert_eq!(directory_reads(16 << 20, t), (t, 2 * t), "the trailer too must fit");
        assert_eq!(directory_reads(16 << 20, 2 * t + 1), (t, 4 * t));
        assert_eq!(directory_reads(16 << 20, 3 * t), (t, 4 * t), "one class, one request size");
        assert_eq!(directory_reads(3 * t, 2 * t + 1), (t, 3 * t), "capped at the pack");
    }
}

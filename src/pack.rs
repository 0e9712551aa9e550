//! Packs through a store: the only code that writes or reads pack files.
//!
//! - [`PackWriter`] (`writer`) streams sealed blobs of one kind into a pack and seals its
//!   directory at the end.
//! - `PackReader` (`reader`) reads a pack's directory (its last 64 KiB: trailer and directory), one blob, a
//!   planned range of blobs, or a whole pack (check), with buffers reused from read to read.
//!   Every read's byte range is decided in one function there (`window`), so the S3 store's
//!   ranged GETs and block-aligned reads (the provider must not learn blob boundaries from
//!   what is read) change one place.
//! - `ranges` plans reads: given the blobs wanted, which coalesced byte ranges of which packs
//!   to read, each with the blobs it covers. Pure, no I/O.
//!
//! Layering (DESIGN.md §2): this module sits below the index and the repository. It knows
//! where a blob lies ([`BlobLocation`]) and what a pack is ([`PackInfo`]), both defined here
//! and used by the index, never the index itself.

mod ranges;
mod reader;
mod shuffle;
pub(crate) mod weakened;
mod writer;

pub(crate) use ranges::{coalesce, ReadRange};
pub(crate) use reader::{PackReader, Wanted};
pub(crate) use writer::{PackWriter, WrittenPack};

use crate::format::blob::{BlobKind, Codec};
use crate::format::pack::BlobEntry;
use crate::id::{Id, PackId};

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: PackId,
    /// The blob's kind (the pack's kind).
    pub kind: BlobKind,
    /// Offset in the pack.
    pub offset: u32,
    /// Sealed length.
    pub sealed_len: u32,
    /// Plaintext length.
    pub raw_len: u32,
    /// Codec.
    pub codec: Codec,
}

impl BlobLocation {
    /// The pack-directory entry for this location.
    #[must_use]
    pub fn entry(&self, id: Id) -> BlobEntry {
        BlobEntry { id, offset: self.offset, sealed_len: self.sealed_len, raw_len: self.raw_len, codec: self.codec }
    }

    /// End offset of the sealed blob in its pack.
    #[must_use]
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.sealed_len)
    }
}

/// A pack as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackInfo {
    /// Pack id.
    pub id: PackId,
    /// Kind of its blobs.
    pub kind: BlobKind,
    /// Length of the pack file.
    pub len: u32,
}

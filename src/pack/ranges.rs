//! Planning pack reads: which byte ranges to read for a set of wanted blobs. Pure: blob
//! locations in, ranges out; the reader (`reader.rs`) then decides the exact bytes requested
//! (alignment) and reads them.
//!
//! Blobs of one pack that lie close together are fetched with one read: a gap of up to
//! [`COALESCE_GAP`] bytes is read and thrown away rather than paying another request (a local
//! `pread` costs a system call, an S3 ranged GET a round trip of tens of milliseconds), and a
//! read stops growing at [`MAX_READ`] so the buffer of each worker stays bounded. A single
//! blob larger than `MAX_READ` is read alone, whole.

use std::ops::Range;

use super::Wanted;
use crate::id::PackId;

/// Blobs closer than this in a pack are fetched with one read.
pub(crate) const COALESCE_GAP: u64 = 256 << 10;
/// Largest read that coalescing builds (one blob alone may be larger).
pub(crate) const MAX_READ: u64 = 8 << 20;

/// One read of a pack: bytes `first..end` (before the reader's alignment), covering the
/// wanted blobs at indices `blobs` of the list [`coalesce`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadRange {
    /// The pack to read.
    pub pack: PackId,
    /// Offset of the first byte needed (the first blob's start).
    pub first: u64,
    /// One past the last byte needed (the furthest blob end).
    pub end: u64,
    /// The blobs this read covers, as indices into the sorted list.
    pub blobs: Range<usize>,
}

/// Sorts `wanted` by pack, then offset, and cuts it into coalesced ranges (in that order).
/// Every blob is covered by exactly one range; the same blob listed twice lands in the same
/// range and is read once.
pub(crate) fn coalesce<T: Wanted>(mut wanted: Vec<T>) -> (Vec<T>, Vec<ReadRange>) {
    wanted.sort_by_key(|w| (w.location().pack, w.location().offset));
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < wanted.len() {
        let head = wanted[start].location();
        let (pack, first) = (head.pack, u64::from(head.offset));
        let mut end = head.end();
        let mut next = start + 1;
        while let Some(w) = wanted.get(next) {
            let loc = w.location();
            if loc.pack != pack || u64::from(loc.offset) > end + COALESCE_GAP || loc.end() - first > MAX_READ {
                break;
            }
            end = end.max(loc.end());
            next += 1;
        }
        ranges.push(ReadRange { pack, first, end, blobs: start..next });
        start = next;
    }
    (wanted, ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob::{BlobKind, Codec};
    use crate::id::Id;
    use crate::pack::BlobLocation;

    fn at(pack: u8, offset: u32, sealed_len: u32) -> (Id, BlobLocation) {
        let loc = BlobLocation {
            pack: PackId(Id([pack; 32])),
            kind: BlobKind::Data,
            offset,
            sealed_len,
            raw_len: sealed_len,
            codec: Codec::Raw,
        };
        (Id([offset.to_le_bytes()[0] ^ pack; 32]), loc)
    }

    /// (pack byte, first, end, blob offsets) of each range.
    fn shape(wanted: Vec<(Id, BlobLocation)>) -> Vec<(u8, u64, u64, Vec<u32>)> {
        let (sorted, ranges) = coalesce(wanted);
        ranges
            .into_iter()
            .map(|r| (r.pack.0 .0[0], r.first, r.end, sorted[r.blobs].iter().map(|w| w.1.offset).collect()))
            .collect()
    }

    const GAP: u32 = COALESCE_GAP as u32;
    const MAX: u32 = MAX_READ as u32;

    #[test]
    fn near_blobs_share_a_read_and_far_ones_do_not() {
        // 0..100 and 100..200 touch; 200 + GAP is still near; one byte further is not.
        let s = shape(vec![at(1, 0, 100), at(1, 100, 100), at(1, 200 + GAP, 50), at(1, 250 + 2 * GAP + 1, 50)]);
        assert_eq!(
            s,
            vec![
                (1, 0, u64::from(250 + GAP), vec![0, 100, 200 + GAP]),
                (1, u64::from(250 + 2 * GAP + 1), u64::from(300 + 2 * GAP + 1), vec![250 + 2 * GAP + 1]),
            ]
        );
    }

    #[test]
    fn a_read_stops_at_max_read() {
        // Four 3 MiB blobs back to back: two fit in 8 MiB, the third would end at 9 MiB.
        let mib = 1 << 20;
        let s = shape((0..4).map(|i| at(1, i * 3 * mib, 3 * mib)).collect());
        let offsets: Vec<Vec<u32>> = s.iter().map(|r| r.3.clone()).collect();
        assert_eq!(offsets, vec![vec![0, 3 * mib], vec![6 * mib, 9 * mib]]);
        assert!(s.iter().all(|r| r.2 - r.1 <= MAX_READ));
    }

    #[test]
    fn one_blob_larger_than_max_read_is_read_alone_and_whole() {
        let s = shape(vec![at(1, 0, 10), at(1, 10, MAX + 5), at(1, MAX + 15, 10)]);
        assert_eq!(
            s,
            vec![
                (1, 0, 10, vec![0]),
                (1, 10, u64::from(MAX + 15), vec![10]),
                (1, u64::from(MAX + 15), u64::from(MAX + 25), vec![MAX + 15]),
            ]
        );
    }

    #[test]
    fn ranges_are_ordered_by_pack_then_offset_and_never_mix_packs() {
        let s = shape(vec![at(2, 500, 10), at(1, 900, 10), at(2, 0, 10), at(1, 0, 10), at(3, 5, 10)]);
        assert_eq!(
            s,
            vec![(1, 0, 910, vec![0, 900]), (2, 0, 510, vec![0, 500]), (3, 5, 15, vec![5])],
            "each pack's blobs in offset order, packs in id order"
        );
    }

    #[test]
    fn duplicates_are_read_once() {
        let s = shape(vec![at(1, 40, 10), at(1, 0, 20), at(1, 40, 10)]);
        assert_eq!(s, vec![(1, 0, 50, vec![0, 40, 40])], "one read covers both copies");
    }

    #[test]
    fn nothing_wanted_reads_nothing() {
        assert!(shape(Vec::new()).is_empty());
    }
}

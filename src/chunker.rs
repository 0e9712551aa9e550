//! Content-defined chunking: FastCDC 2020 with a keyed gear table (format-spec.md §5.3).
//!
//! The cut-point search is `fastcdc::v2020::cut_gear` (fastcdc 5.0.0); packvault supplies the
//! gear table, derived from the repository's chunker key, so cut points differ between
//! repositories. The same bytes give the same cut points whether they come as one slice
//! ([`Chunker::cut_points`]) or through a reader ([`ChunkReader`]).
//!
//! Rooms: this file is keyed FastCDC; `chunker/pages.rs` cuts SQLite databases and WAL files
//! at page boundaries; `chunker/stream.rs` chooses a cutter per stream (sniffing its first
//! bytes) and sizes the text cutter.

pub mod pages;
pub mod stream;

use std::io::{self, Read};

use fastcdc::v2020::{cut_gear, select_masks, Normalization};

use crate::crypto::{contexts, SecretKey};
use crate::error::Result;
use crate::format::config::ChunkerParams;

/// A configured, keyed chunker. Cheap to share between threads.
#[derive(Clone)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The gear table is derived from a key: never printed.
        write!(f, "Chunker({}/{}/{})", self.min, self.avg, self.max)
    }
}

/// The gear table for a chunker key: the first 2048 bytes of BLAKE3 in derive-key mode with
/// context [`contexts::GEAR`] over the key, read as 256 little-endian `u64`.
#[must_use]
pub fn gear_table(chunker_key: &SecretKey) -> [u64; 256] {
    let mut bytes = [0u8; 2048];
    blake3::Hasher::new_derive_key(contexts::GEAR).update(chunker_key.bytes()).finalize_xof().fill(&mut bytes);
    let mut gear = [0u64; 256];
    for (g, b) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
        *g = u64::from_le_bytes(b.try_into().expect("8-byte chunk"));
    }
    gear
}

impl Chunker {
    /// A chunker for `params` with the gear table of `chunker_key`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when the parameters are out of
    /// bounds.
    pub fn new(params: &ChunkerParams, chunker_key: &SecretKey) -> Result<Chunker> {
        Self::with_gear(params, gear_table(chunker_key))
    }

    /// A chunker with an explicit gear table (tests compare against unkeyed FastCDC).
    ///
    /// # Errors
    /// As [`Chunker::new`].
    pub fn with_gear(params: &ChunkerParams, gear: [u64; 256]) -> Result<Chunker> {
        params.validate()?;
        let level = match params.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        };
        let (mask_s, mask_l) = select_masks(params.avg_size as usize, level);
        let mut gear_ls = [0u64; 256];
        for (l, g) in gear_ls.iter_mut().zip(gear.iter()) {
            *l = g << 1;
        }
        Ok(Chunker {
            min: params.min_size as usize,
            avg: params.avg_size as usize,
            max: params.max_size as usize,
            mask_s,
            mask_l,
            gear: Box::new(gear),
            gear_ls: Box::new(gear_ls),
        })
    }

    /// A chunker with the same gear table (the same key) and other parameters.
    ///
    /// # Errors
    /// As [`Chunker::new`].
    pub fn with_params(&self, params: &ChunkerParams) -> Result<Chunker> {
        Self::with_gear(params, *self.gear)
    }

    /// The gear table's first word: a keyed value for cutters that need one (page groups'
    /// phase, `chunker/pages.rs`).
    pub(crate) fn gear_word(&self) -> u64 {
        self.gear[0]
    }

    /// Largest chunk this chunker makes.
    #[must_use]
    #[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat` (tests, benches, fuzz)
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Length of the chunk that starts at `data[0]`, or `None` when more input is needed to
    /// decide: `data` is shorter than the maximum chunk and the stream has not ended (`eof`
    /// says `data` holds all the remaining input). Returns 0 only for empty input at `eof`.
    #[must_use]
    pub fn next_cut(&self, data: &[u8], eof: bool) -> Option<usize> {
        if data.len() < self.max && !eof {
            return None;
        }
        if data.is_empty() {
            return Some(0);
        }
        let (_, len) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear[..],
            &self.gear_ls[..],
        );
        Some(len)
    }

    /// End offsets of all chunks of `data` (the last is `data.len()`; empty for empty input).
    #[must_use]
    #[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat` (tests, benches, fuzz)
    pub fn cut_points(&self, data: &[u8]) -> Vec<usize> {
        let mut cuts = Vec::with_capacity(data.len() / self.avg + 1);
        let mut start = 0;
        while start < data.len() {
            let len = self.next_cut(&data[start..], true).unwrap_or(data.len() - start);
            start += len;
            cuts.push(start);
        }
        cuts
    }
}

/// Cuts a byte stream into chunks with a reusable buffer: no allocation per chunk.
#[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat` (tests, benches, fuzz)
pub struct ChunkReader<R> {
    reader: R,
    chunker: Chunker,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    bytes_read: u64,
}

#[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat` (tests, benches, fuzz)
impl<R: Read> ChunkReader<R> {
    /// Reads `reader` through a buffer of at least four maximum chunks.
    pub fn new(reader: R, chunker: Chunker) -> Self {
        let cap = (chunker.max * 4).max(1 << 20);
        ChunkReader { reader, chunker, buf: vec![0; cap], start: 0, end: 0, eof: false, bytes_read: 0 }
    }

    /// Bytes read from the reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next chunk, `None` at the end of the stream.
    ///
    /// # Errors
    /// The reader's I/O errors (`Interrupted` is retried).
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            if let Some(len) = self.chunker.next_cut(&self.buf[self.start..self.end], self.eof) {
                if len == 0 {
                    return Ok(None);
                }
                let s = self.start;
                self.start += len;
                return Ok(Some(&self.buf[s..s + len]));
            }
            // Need more input: move the tail to the front, then fill.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < self.buf.len() {
                match self.reader.read(&mut self.buf[self.end..]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => {
                        self.end += n;
                        self.bytes_read += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeySet, MasterKey};

    /// Deterministic pseudo-random bytes (xorshift), so golden values do not depend on a crate.
    pub(crate) fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn unkeyed_table_matches_fastcdc_crate() {
        let (gear, gear_ls) = fastcdc::v2020::get_gear_with_seed(0);
        for i in 0..256 {
            assert_eq!(gear_ls[i], gear[i] << 1, "GEAR_LS is GEAR shifted left");
        }
        let params = ChunkerParams::default();
        let mut table = [0u64; 256];
        table.copy_from_slice(&gear);
        let ours = Chunker::with_gear(&params, table).unwrap();
        let data = test_bytes(3 << 20, 42);
        let theirs: Vec<usize> =
            fastcdc::v2020::FastCDC::new(&data, 16 << 10, 64 << 10, 256 << 10).map(|c| c.offset + c.length).collect();
        assert_eq!(ours.cut_points(&data), theirs);
    }

    #[test]
    fn golden_cut_points_for_a_fixed_key() {
        // Master key 00 01 .. 1f (the test-vector key), default parameters, 1 MiB of xorshift
        // bytes with seed 1. A change here changes every repository's dedup: it must not happen
        // silently (format-spec.md §5.3).
        let master = MasterKey::from_bytes(std::array::from_fn(|i| i as u8));
        let ks = KeySet::derive(&master);
        let chunker = Chunker::new(&ChunkerParams::default(), ks.chunker_key()).unwrap();
        let data = test_bytes(1 << 20, 1);
        let cuts = chunker.cut_points(&data);
        assert_eq!(cuts, GOLDEN, "golden cut points changed");
        // The keyed table really changes the cuts.
        let (gear, _) = fastcdc::v2020::get_gear_with_seed(0);
        let mut table = [0u64; 256];
        table.copy_from_slice(&gear);
        assert_ne!(Chunker::with_gear(&ChunkerParams::default(), table).unwrap().cut_points(&data), cuts);
    }

    /// The claim append streams rest on (`repo/backup/append.rs`): every cut of a stream but
    /// the last is also a cut of any longer stream with the same prefix, and the cuts after a
    /// cut depend only on the bytes after it. So resuming at the start of the old last chunk
    /// gives exactly the cuts of a full read; resuming at the old end does not.
    #[test]
    fn resuming_at_the_old_last_chunk_gives_the_cuts_of_a_full_read() {
        let ks = KeySet::derive(&MasterKey::from_bytes([5; 32]));
        let params = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768, ..ChunkerParams::default() };
        let chunker = Chunker::new(&params, ks.chunker_key()).unwrap();
        // Content-defined cuts, then a zero run (maximum-size cuts), then content again.
        let mut data = test_bytes(600_000, 11);
        data.extend(std::iter::repeat_n(0u8, 100_001));
        data.extend(test_bytes(300_000, 12));
        let olds = [1, 2047, 2048, 2049, 8191, 40_000, 123_457, 599_999, 650_000, 700_001, 750_000, 999_000];
        let mut naive_differs = 0;
        for old_len in olds {
            let old = chunker.cut_points(&data[..old_len]);
            let resume = if old.len() >= 2 { old[old.len() - 2] } else { 0 };
            for grown in [old_len, old_len + 1, old_len + 777, old_len + 40_000, data.len()] {
                let grown = grown.min(data.len());
                let full = chunker.cut_points(&data[..grown]);
                let mut resumed = old[..old.len() - 1].to_vec();
                resumed.extend(chunker.cut_points(&data[resume..grown]).into_iter().map(|c| c + resume));
                assert_eq!(resumed, full, "old {old_len}, grown {grown}");
                // Cutting on from the old end instead keeps a cut the full read does not make.
                let mut naive = old.clone();
                naive.extend(chunker.cut_points(&data[old_len..grown]).into_iter().map(|c| c + old_len));
                naive_differs += usize::from(naive != full);
            }
        }
        assert!(naive_differs > 20, "the test data exercises the difference ({naive_differs} cases)");
    }

    const GOLDEN: &[usize] =
        &[29460, 110673, 229838, 295940, 383737, 427901, 624762, 729374, 807345, 880743, 1021453, 1048576];

    #[test]
    fn reader_matches_slice_and_bounds_hold() {
        let ks = KeySet::derive(&MasterKey::from_bytes([7; 32]));
        let params = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768, ..ChunkerParams::default() };
        let chunker = Chunker::new(&params, ks.chunker_key()).unwrap();
        let mut data = test_bytes(2 << 20, 9);
        data.extend(std::iter::repeat_n(0u8, 300_000)); // forces max-size cuts
        let slice_cuts = chunker.cut_points(&data);
        // A reader that returns odd-sized short reads.
        struct Dribble<'a>(&'a [u8], usize);
        impl Read for Dribble<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                self.1 = self.1 % 7919 + 1;
                let n = self.1.min(out.len()).min(self.0.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = ChunkReader::new(Dribble(&data, 0), chunker.clone());
        let mut pos = 0;
        let mut reader_cuts = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            assert_eq!(c, &data[pos..pos + c.len()]);
            pos += c.len();
            reader_cuts.push(pos);
        }
        assert_eq!(reader_cuts, slice_cuts);
        assert_eq!(r.bytes_read(), data.len() as u64);
        let mut prev = 0;
        for (i, &c) in slice_cuts.iter().enumerate() {
            let len = c - prev;
            assert!(len <= 32768);
            if i + 1 < slice_cuts.len() {
                assert!(len >= 2048, "chunk {i} of {len} bytes below min");
            }
            prev = c;
        }
        assert!(chunker.cut_points(&[]).is_empty());
        assert_eq!(chunker.cut_points(&[1, 2, 3]), vec![3]);
    }
}

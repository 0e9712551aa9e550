//! Chunking per stream: which cutter a file gets, and sniffing its first bytes to choose one
//! (format-spec.md §5.3.1).
//!
//! Every cutter is keyed by the repository's chunker key (the text chunker shares the
//! repository's gear table; page groups take their phase from it) and every cut depends only
//! on the bytes from the file's start up to it, so the same file gives the same chunks on
//! every night and every device, and a file that grew at its end keeps its old cuts but the
//! last one.
//!
//! Why a text size of its own (issue 12): chat text has long-range repetition that zstd only
//! finds in long windows (level 3 over public chat logs: ratio 2.7 in independent 64 KiB
//! pieces, 5.3 in 1 MiB pieces), and logs that only grow dedup by their unchanged prefix, which
//! any chunk size keeps. The price is paid by text rewritten with a shift (the generated JSON
//! exports put the newest message first): each change re-stores about two chunks per file.
//! `bench/growth.sh` measures both sides on the generated 1 GiB dataset (BENCHMARKS.md,
//! "Chunking policies"): with text sniffed and cut at 1 MiB the JSON exports' day 1 shrank from
//! 35.77 to 32.61 MB, but each day then added 17.5–19.6 MB instead of 10.0–10.6 MB. So a
//! stream read in full is cut as text only when the caller says so; sniffed text, like
//! anything else that is not SQLite, is cut by the repository's FastCDC. Append streams are cut
//! by it too, unsniffed: their last chunk is read and stored again each night, so it should
//! be small (`repo/backup/options.rs` has the measurement).

use super::pages::{PageFile, GROUP_PAGES};
use super::Chunker;
use crate::error::Result;
use crate::format::config::{ChunkerParams, CHUNKER_FASTCDC_2020};

/// Bytes looked at to choose a cutter (fewer when the stream is shorter).
pub const SNIFF_BYTES: usize = 64 << 10;
/// Keyed FastCDC parameters of the text policy.
pub const TEXT_PARAMS: ChunkerParams = ChunkerParams {
    algorithm: CHUNKER_FASTCDC_2020,
    min_size: 256 << 10,
    avg_size: 1 << 20,
    max_size: 4 << 20,
    normalization: 1,
};
/// The largest chunk of the whole-file policy; a longer file is cut as text.
pub const WHOLE_MAX: usize = 16 << 20;

/// How a stream is to be cut, before or after sniffing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutting {
    /// Keyed FastCDC with the repository's parameters.
    Cdc,
    /// Keyed FastCDC with [`TEXT_PARAMS`].
    Text,
    /// One chunk per file up to [`WHOLE_MAX`], else as [`Cutting::Text`].
    Whole,
    /// Page-aligned groups of a SQLite database or WAL.
    Pages(PageFile),
    /// Decide from the first [`SNIFF_BYTES`]: SQLite header → pages, else CDC.
    Sniff,
    /// Pages if the first bytes are a SQLite header, else CDC.
    SniffPages,
}

impl Cutting {
    /// What the first bytes of a stream (`head`, at most [`SNIFF_BYTES`] of them are looked
    /// at) call for, when the stream's cutter is to be chosen by sniffing.
    #[must_use]
    pub fn sniff(head: &[u8]) -> Cutting {
        if let Some(f) = PageFile::sniff(head) {
            Cutting::Pages(f)
        } else if looks_like_text(&head[..head.len().min(SNIFF_BYTES)]) {
            Cutting::Text
        } else {
            Cutting::Cdc
        }
    }
}

/// True when `sample` is UTF-8 (a character cut off at its end is allowed) without NUL bytes
/// and with at most 1 % control characters other than tab, newline, form feed, carriage
/// return and escape. Empty input is not text.
#[must_use]
pub fn looks_like_text(sample: &[u8]) -> bool {
    if sample.is_empty() || sample.contains(&0) {
        return false;
    }
    if let Err(e) = std::str::from_utf8(sample) {
        if e.error_len().is_some() {
            return false;
        }
    }
    let control = sample
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | 0x0c | b'\r' | 0x1b)) || b == 0x7f)
        .count();
    control * 100 <= sample.len()
}

/// The cutters of a repository: keyed FastCDC with its parameters and with the text
/// parameters, and the phase of page groups.
#[derive(Clone, Debug)]
pub struct ChunkerSet {
    cdc: Chunker,
    text: Chunker,
    phase: u64,
}

impl ChunkerSet {
    /// The set around the repository's chunker (whose gear table keys the others).
    ///
    /// # Errors
    /// Never for the built-in parameters; kept for parameter checks.
    pub fn new(cdc: Chunker) -> Result<ChunkerSet> {
        let text = cdc.with_params(&TEXT_PARAMS)?;
        #[allow(clippy::modulo_one)] // GROUP_PAGES is 1 today (chunker/pages.rs), a constant to measure
        let phase = cdc.gear_word() % GROUP_PAGES;
        Ok(ChunkerSet { cdc, text, phase })
    }

    /// A cutter for one stream whose bytes start at `offset` of the file (0 unless an append
    /// stream resumes).
    #[must_use]
    pub fn cutter(&self, cutting: Cutting, offset: u64) -> StreamCutter<'_> {
        StreamCutter { set: self, cutting, offset }
    }
}

/// Cuts one stream: sniffs it first when asked to, then cuts with the chosen cutter. Called
/// like [`Chunker::next_cut`], with each chunk's bytes from its start.
#[derive(Debug)]
pub struct StreamCutter<'a> {
    set: &'a ChunkerSet,
    cutting: Cutting,
    offset: u64,
}

impl StreamCutter<'_> {
    /// How the stream is cut (a sniffing cutter says what it chose once it has seen enough).
    #[cfg(test)]
    #[must_use]
    pub fn cutting(&self) -> Cutting {
        self.cutting
    }

    /// Length of the chunk that starts at `data[0]`, or `None` when more input is needed
    /// (`eof`: `data` is all that remains). 0 only for empty input at `eof`.
    pub fn next_cut(&mut self, data: &[u8], eof: bool) -> Option<usize> {
        let len = loop {
            match self.cutting {
                Cutting::Sniff | Cutting::SniffPages => {
                    if data.len() < SNIFF_BYTES && !eof {
                        return None;
                    }
                    let sniffed = if self.offset == 0 { Cutting::sniff(data) } else { Cutting::Cdc };
                    // Text read in full is cut as CDC: measured, large chunks lose more on text
                    // rewritten with a shift than they gain in compression (module docs).
                    self.cutting = match sniffed {
                        Cutting::Text => Cutting::Cdc,
                        s => s,
                    };
                }
                Cutting::Whole => {
                    if data.len() > WHOLE_MAX || self.offset != 0 {
                        self.cutting = Cutting::Text;
                    } else if eof {
                        break data.len();
                    } else {
                        return None;
                    }
                }
                Cutting::Cdc => break self.set.cdc.next_cut(data, eof)?,
                Cutting::Text => break self.set.text.next_cut(data, eof)?,
                Cutting::Pages(f) => break f.next_cut(GROUP_PAGES, self.set.phase, self.offset, data, eof)?,
            }
        };
        self.offset += len as u64;
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeySet, MasterKey};

    fn set() -> ChunkerSet {
        let ks = KeySet::derive(&MasterKey::from_bytes([3; 32]));
        ChunkerSet::new(Chunker::new(&ChunkerParams::default(), ks.chunker_key()).unwrap()).unwrap()
    }

    fn cut_all(set: &ChunkerSet, cutting: Cutting, data: &[u8]) -> (Vec<usize>, Cutting) {
        let mut c = set.cutter(cutting, 0);
        let mut pos = 0;
        let mut cuts = Vec::new();
        while let Some(n) = c.next_cut(&data[pos..], true) {
            if n == 0 {
                break;
            }
            pos += n;
            cuts.push(pos);
        }
        (cuts, c.cutting())
    }

    #[test]
    fn text_test_accepts_text_and_refuses_binary() {
        assert!(looks_like_text(b"hello\n{\"a\": \"\\u00e9\"}\n"));
        assert!(looks_like_text("Grüße, 你好 🙂\r\n".as_bytes()));
        // A character cut off by the sample's end is still text.
        assert!(looks_like_text(&"aé".as_bytes()[..2]));
        assert!(!looks_like_text(b""));
        assert!(!looks_like_text(b"abc\0def"));
        assert!(!looks_like_text(&[0xff, 0xd8, 0xff, 0xe0, b'J', b'F', b'I', b'F']));
        assert!(!looks_like_text(&[b'a', 0xc3, b'b']));
        let mut noisy = vec![b'a'; 1000];
        noisy[..20].fill(0x01);
        assert!(!looks_like_text(&noisy));
        noisy[..20].fill(b'\n');
        noisy[..5].fill(0x01);
        assert!(looks_like_text(&noisy));
    }

    #[test]
    fn sniffing_chooses_and_cuts_accordingly() {
        let set = set();
        let text: Vec<u8> = (0..3_000_000u32).map(|i| b"abcdefgh ijklmnop\n"[(i * 7 % 18) as usize]).collect();
        assert_eq!(Cutting::sniff(&text), Cutting::Text);
        let (cuts, chosen) = cut_all(&set, Cutting::Sniff, &text);
        assert_eq!(chosen, Cutting::Cdc, "text read in full is cut as CDC");
        assert_eq!(cuts, set.cdc.cut_points(&text));
        assert!(cut_all(&set, Cutting::Text, &text).0.len() < cuts.len() / 4);
        let binary = crate::chunker::tests::test_bytes(1 << 20, 5);
        let (cuts, chosen) = cut_all(&set, Cutting::Sniff, &binary);
        assert_eq!(chosen, Cutting::Cdc);
        assert_eq!(cuts, set.cdc.cut_points(&binary));
        // Pages only when asked for pages: text under SniffPages is cut as CDC.
        assert_eq!(cut_all(&set, Cutting::SniffPages, &text).1, Cutting::Cdc);
        // Short streams are sniffed at their end.
        assert_eq!(cut_all(&set, Cutting::Sniff, b"short text\n"), (vec![11], Cutting::Cdc));
        assert_eq!(cut_all(&set, Cutting::Sniff, b""), (vec![], Cutting::Cdc));
    }

    #[test]
    fn whole_file_is_one_chunk_up_to_its_limit() {
        let set = set();
        let data = crate::chunker::tests::test_bytes(3 << 20, 8);
        assert_eq!(cut_all(&set, Cutting::Whole, &data).0, vec![data.len()]);
        let mut c = set.cutter(Cutting::Whole, 0);
        assert_eq!(c.next_cut(&data, false), None, "waits for the end");
    }
}

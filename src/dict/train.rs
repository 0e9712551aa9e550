//! When a writer makes a dictionary: a sample of the session's small compressible chunks, a
//! dictionary trained on 4/5 of it, and a verdict measured on the other 1/5.
//!
//! **The rule** ([`judge`]). On the held-out chunks, `plain` is the total of their zstd frames
//! without a dictionary and `saved` what codec 2 saves on them (per chunk: the plain frame minus
//! the dictionary frame and its 32-byte reference, when that is smaller; codec rule step 3 of
//! format-spec.md §5.4). The dictionary is kept when both:
//!
//! - `saved ≥ 10 %` of `plain` ([`MIN_GAIN_PERMILLE`]): below that, the second compression
//!   of every small chunk at backup (and a dictionary load at restore) costs more time than it
//!   saves bytes;
//! - the saving projected onto this session's eligible chunks (`saved / plain` × their frame
//!   bytes) is at least twice the dictionary file's size ([`PAYBACK`]): it pays for itself on
//!   the first night's data alone, before any later night's chunks use it.
//!
//! Measured (bench/results/dict-ratio.txt, zstd level 3): SQLite page groups of 4–32 KiB and
//! small JSON pieces pass both by far; chat text in 64 KiB pieces is above the size bound, and
//! in 16 KiB pieces gains a few percent only (see `BENCHMARKS.md`).
//!
//! **The sample** ([`Sampler`]) is the chunks with the smallest ids among those eligible (at
//! most [`SAMPLE_BYTES`]): ids are keyed hashes, so this is a uniform random sample, and it does
//! not depend on the order in which parallel workers offer chunks, so a session that sees the
//! same chunks trains the same dictionary.

use std::collections::BTreeMap;

use crate::format::blob::{DICT_MAX_CHUNK, DICT_REF_LEN};
use crate::format::dict::{MAX_DICT_FILE, MAX_DICT_LEN, MIN_DICT_LEN};
use crate::id::Id;

/// Raw bytes of chunks a session keeps as its training sample. 2 MiB: the sample and the
/// training on it cost about 4 MB of peak memory per MiB (1 GiB day-1 backup: 94 MB peak at
/// 8 MiB, 66 MB at 1 MiB).
pub(crate) const SAMPLE_BYTES: usize = 2 << 20;
/// Chunks shorter than this are not sampled (too little to learn from).
pub(crate) const MIN_SAMPLE_CHUNK: usize = 256;
/// Fewer sampled chunks than this and no dictionary is trained.
pub(crate) const MIN_SAMPLES: usize = 100;
/// One sampled chunk in this many is held out of training to measure the dictionary.
pub(crate) const HOLD_OUT_EVERY: usize = 5;
/// Minimum saving on the held-out chunks, in thousandths of their plain frames.
pub(crate) const MIN_GAIN_PERMILLE: u64 = 100;
/// The projected saving must reach this many times the dictionary file's size.
pub(crate) const PAYBACK: u64 = 2;
/// The dictionary size asked of the trainer: a tenth of the training bytes, within these bounds.
pub(crate) const TARGET_DICT: (usize, usize) = (4 << 10, 64 << 10);

/// A session's sample of its small compressible chunks.
#[derive(Default)]
pub(crate) struct Sampler {
    kept: BTreeMap<Id, Vec<u8>>,
    kept_bytes: usize,
    /// Frame bytes (without a dictionary) of every eligible chunk offered.
    pub(crate) eligible_frames: u64,
    /// Raw bytes of every eligible chunk offered.
    pub(crate) eligible_raw: u64,
}

impl Sampler {
    /// True when a chunk of `len` bytes that compressed to `frame` bytes could be sampled.
    pub(crate) fn eligible(len: usize, frame: usize) -> bool {
        (MIN_SAMPLE_CHUNK..=DICT_MAX_CHUNK).contains(&len) && frame < len
    }

    /// Offers a new chunk: its id, plaintext and zstd frame length (no dictionary).
    pub(crate) fn offer(&mut self, id: &Id, raw: &[u8], frame: usize) {
        if !Self::eligible(raw.len(), frame) {
            return;
        }
        self.eligible_frames += frame as u64;
        self.eligible_raw += raw.len() as u64;
        if self.kept_bytes + raw.len() > SAMPLE_BYTES {
            match self.kept.last_key_value() {
                Some((last, _)) if last > id => {}
                _ => return,
            }
        }
        if self.kept.insert(*id, raw.to_vec()).is_none() {
            self.kept_bytes += raw.len();
        }
        while self.kept_bytes > SAMPLE_BYTES {
            let Some((_, v)) = self.kept.pop_last() else { break };
            self.kept_bytes -= v.len();
        }
    }

    /// Keeps a chunk in the sample regardless of its size (measurements).
    #[cfg(test)]
    pub(crate) fn force_offer(&mut self, id: &Id, raw: &[u8]) {
        if self.kept.insert(*id, raw.to_vec()).is_none() {
            self.kept_bytes += raw.len();
        }
        while self.kept_bytes > SAMPLE_BYTES {
            let Some((_, v)) = self.kept.pop_last() else { break };
            self.kept_bytes -= v.len();
        }
    }

    /// The sampled chunks, by id.
    pub(crate) fn samples(&self) -> impl Iterator<Item = &[u8]> {
        self.kept.values().map(Vec::as_slice)
    }
}

/// What training and measuring found.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    /// The trained dictionary (kept or not).
    pub(crate) dictionary: Vec<u8>,
    /// Held-out chunks, their raw bytes, their plain frames, their frames with the dictionary
    /// (each chunk's better codec: `min(plain, 32 + dictionary frame)`).
    pub(crate) held_out: (usize, u64, u64, u64),
    /// Whether the rule keeps it.
    pub(crate) keep: bool,
}

/// Trains a dictionary on `samples` (in id order) and judges it (see the module docs).
/// `None` when there are too few samples or zstd cannot train on them.
pub(crate) fn judge(samples: &[&[u8]], eligible_frames: u64, level: i32) -> Option<Verdict> {
    if samples.len() < MIN_SAMPLES {
        return None;
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, s) in samples.iter().enumerate() {
        if i % HOLD_OUT_EVERY == 0 { &mut test } else { &mut train }.push(*s);
    }
    let train_bytes: usize = train.iter().map(|s| s.len()).sum();
    let size = (train_bytes / 10).clamp(TARGET_DICT.0, TARGET_DICT.1);
    let dictionary = zstd::dict::from_samples(&train, size).ok()?;
    if !(MIN_DICT_LEN..=MAX_DICT_LEN).contains(&dictionary.len()) {
        return None;
    }
    let mut plain_c = zstd::bulk::Compressor::new(level).ok()?;
    let mut dict_c = zstd::bulk::Compressor::with_dictionary(level, &dictionary).ok()?;
    let (mut raw, mut plain, mut with) = (0u64, 0u64, 0u64);
    for s in &test {
        let p = plain_c.compress(s).ok()?.len().min(s.len()) as u64;
        let d = (DICT_REF_LEN + dict_c.compress(s).ok()?.len()) as u64;
        raw += s.len() as u64;
        plain += p;
        with += p.min(d);
    }
    let saved = plain - with;
    let projected_saving =
        if plain == 0 { 0 } else { (u128::from(saved) * u128::from(eligible_frames) / u128::from(plain)) as u64 };
    let file = dictionary.len() as u64 + 25; // header, marker and tag; padding below 12 %
    let keep = saved * 1000 >= plain * MIN_GAIN_PERMILLE && projected_saving >= PAYBACK * file.min(MAX_DICT_FILE);
    Some(Verdict { dictionary, held_out: (test.len(), raw, plain, with), keep })
}

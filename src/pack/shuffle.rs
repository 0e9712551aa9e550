//! Random choices for the pack writer: which pending blob goes out next, and into which open
//! pack. Drawn from the operating system's random source (through the crate's crypto helper,
//! 256 bytes per call), never from a seed: a provider that could predict the choices could
//! undo the shuffle.

use crate::crypto::random_array;
use crate::error::Result;

/// Bytes drawn from the random source at a time.
const DRAW: usize = 256;

/// A stream of random indices.
pub(crate) struct Picks {
    buf: [u8; DRAW],
    used: usize,
}

impl Picks {
    /// A stream that draws on first use.
    pub(crate) fn new() -> Picks {
        Picks { buf: [0; DRAW], used: DRAW }
    }

    /// A uniformly random index below `n` (`n` ≥ 1; the modulo bias of a 64-bit draw is below
    /// 2⁻⁴⁰ for any `n` a pack writer uses).
    pub(crate) fn below(&mut self, n: usize) -> Result<usize> {
        if n <= 1 {
            return Ok(0);
        }
        if self.used + 8 > DRAW {
            self.buf = random_array()?;
            self.used = 0;
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.buf[self.used..self.used + 8]);
        self.used += 8;
        // `n` fits in u64 and the remainder is below `n`, so both conversions are lossless.
        Ok((u64::from_le_bytes(word) % n as u64) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_cover_every_index_and_stay_below_the_bound() {
        let mut p = Picks::new();
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            seen[p.below(5).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "roughly uniform: {seen:?}");
        assert_eq!(p.below(1).unwrap(), 0);
    }
}

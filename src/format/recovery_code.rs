//! Recovery codes (format-spec.md §5.13): 256 random bits written as 56 Crockford base32
//! characters in 14 groups of 4, the last 4 characters a checksum.
//!
//! ```text
//! symbols  = the 256 bits, most significant first, then 4 zero bits, cut into 52 5-bit values
//! checksum = (Σ_{i=0..51} (i + 1) · symbol_i) mod 1048573, as 4 more 5-bit values
//! text     = the 56 values in the alphabet 0123456789ABCDEFGHJKMNPQRSTVWXYZ, groups of 4 joined by '-'
//! ```
//! The checksum catches every single mistyped character and every swap of two characters
//! (1048573 is prime and larger than any weight times any difference of two values), so
//! typos are reported as typos, never as a wrong key. Parsing forgives case, spaces, dashes
//! and the usual confusions (`I`/`L` read as `1`, `O` as `0`).

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::crypto::random_array;
use crate::error::{Error, Result};

/// Crockford's base32 alphabet.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters that carry the 256 bits.
pub const DATA_CHARS: usize = 52;
/// Checksum characters.
pub const CHECK_CHARS: usize = 4;
/// All characters of a code.
pub const CODE_CHARS: usize = DATA_CHARS + CHECK_CHARS;
/// The checksum modulus: the largest prime below 2^20.
pub const CHECK_MODULUS: u32 = 1_048_573;

/// A recovery code: 32 random bytes, wiped on drop, never printed by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct RecoveryCode([u8; 32]);

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode([redacted])")
    }
}

fn checksum(symbols: &[u8]) -> u32 {
    symbols.iter().enumerate().map(|(i, &v)| (i as u32 + 1) * u32::from(v)).sum::<u32>() % CHECK_MODULUS
}

impl RecoveryCode {
    /// A fresh random code.
    ///
    /// # Errors
    /// When the operating system's random source fails.
    pub fn generate() -> Result<RecoveryCode> {
        Ok(RecoveryCode(random_array()?))
    }

    /// A code from its 32 bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> RecoveryCode {
        RecoveryCode(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn symbols(&self) -> Zeroizing<[u8; CODE_CHARS]> {
        let mut s = Zeroizing::new([0u8; CODE_CHARS]);
        for (i, sym) in s.iter_mut().take(DATA_CHARS).enumerate() {
            let mut v = 0u8;
            for b in 0..5 {
                let bit = i * 5 + b;
                let set = bit < 256 && self.0[bit / 8] & (0x80 >> (bit % 8)) != 0;
                v = (v << 1) | u8::from(set);
            }
            *sym = v;
        }
        let c = checksum(&s[..DATA_CHARS]);
        for k in 0..CHECK_CHARS {
            s[DATA_CHARS + k] = ((c >> (5 * (CHECK_CHARS - 1 - k))) & 31) as u8;
        }
        s
    }

    /// The code as the user writes it down: `XXXX-XXXX-…` (14 groups of 4).
    #[must_use]
    pub fn to_text(&self) -> Zeroizing<String> {
        let symbols = self.symbols();
        let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS + CODE_CHARS / 4));
        for (i, &v) in symbols.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            out.push(ALPHABET[usize::from(v)] as char);
        }
        out
    }

    /// Parses a code as typed. Case, spaces and dashes do not matter; `I` and `L` read as `1`
    /// and `O` as `0`.
    ///
    /// # Errors
    /// [`Error::RecoveryCodeInvalid`] naming what is wrong: a character outside the alphabet, the
    /// wrong number of characters, or a checksum mismatch (a mistyped or swapped character).
    pub fn parse(text: &str) -> Result<RecoveryCode> {
        let mut symbols = Zeroizing::new(Vec::with_capacity(CODE_CHARS));
        for (pos, c) in text.chars().enumerate() {
            let c = match c.to_ascii_uppercase() {
                ' ' | '-' | '\t' | '\n' | '\r' => continue,
                'I' | 'L' => '1',
                'O' => '0',
                c => c,
            };
            let v = ALPHABET.iter().position(|&a| char::from(a) == c).ok_or_else(|| {
                Error::RecoveryCodeInvalid(format!(
                    "character {c:?} at position {} is not in the recovery-code alphabet",
                    pos + 1
                ))
            })?;
            symbols.push(v as u8);
        }
        if symbols.len() != CODE_CHARS {
            return Err(Error::RecoveryCodeInvalid(format!(
                "a recovery code has {CODE_CHARS} characters (14 groups of 4), this has {}",
                symbols.len()
            )));
        }
        let stored = symbols[DATA_CHARS..].iter().fold(0u32, |acc, &v| (acc << 5) | u32::from(v));
        if checksum(&symbols[..DATA_CHARS]) != stored {
            return Err(Error::RecoveryCodeInvalid(
                "checksum mismatch: a character is mistyped or two are swapped".into(),
            ));
        }
        let mut bytes = [0u8; 32];
        for bit in 0..DATA_CHARS * 5 {
            let v = symbols[bit / 5] & (0x10 >> (bit % 5)) != 0;
            if bit < 256 {
                bytes[bit / 8] |= u8::from(v) << (7 - bit % 8);
            } else if v {
                return Err(Error::RecoveryCodeInvalid("not a recovery code: its padding bits are set".into()));
            }
        }
        Ok(RecoveryCode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> RecoveryCode {
        RecoveryCode::from_bytes(std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11)))
    }

    #[test]
    fn round_trip_and_forgiving_input() {
        let c = code();
        let text = c.to_text();
        assert_eq!(text.len(), CODE_CHARS + 13);
        assert_eq!(text.split('-').count(), 14);
        assert_eq!(RecoveryCode::parse(&text).unwrap(), c);
        let sloppy = text.to_lowercase().replace('-', " ").replace('1', "l").replace('0', "o");
        assert_eq!(RecoveryCode::parse(&sloppy).unwrap(), c);
        for _ in 0..50 {
            let r = RecoveryCode::generate().unwrap();
            assert_eq!(RecoveryCode::parse(&r.to_text()).unwrap(), r);
        }
        assert_eq!(format!("{c:?}"), "RecoveryCode([redacted])");
    }

    #[test]
    fn every_single_typo_and_every_swap_is_a_checksum_mismatch() {
        let text: Vec<u8> = code().to_text().bytes().filter(|&b| b != b'-').collect();
        for i in 0..text.len() {
            for &a in ALPHABET {
                if a == text[i] {
                    continue;
                }
                let mut t = text.clone();
                t[i] = a;
                let err = RecoveryCode::parse(std::str::from_utf8(&t).unwrap()).unwrap_err();
                assert!(err.to_string().contains("checksum mismatch"), "typo at {i}: {err}");
            }
            for j in i + 1..text.len() {
                if text[i] == text[j] {
                    continue;
                }
                let mut t = text.clone();
                t.swap(i, j);
                let err = RecoveryCode::parse(std::str::from_utf8(&t).unwrap()).unwrap_err();
                assert!(err.to_string().contains("checksum mismatch"), "swap {i} {j}: {err}");
            }
        }
    }

    #[test]
    fn bad_characters_and_lengths() {
        let text = code().to_text();
        let err = RecoveryCode::parse(&text.replacen('A', "U", 1).replacen('2', "U", 1)).unwrap_err();
        assert!(err.to_string().contains("not in the recovery-code alphabet"), "{err}");
        let err = RecoveryCode::parse(&text[..text.len() - 2]).unwrap_err();
        assert!(err.to_string().contains("56 characters"), "{err}");
    }
}

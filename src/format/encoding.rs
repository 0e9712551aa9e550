//! The one place that knows the record encoding of snapshots and trees (format-spec.md §5.7).
//!
//! The encoding is bincode 2's `standard()` configuration: little-endian, unsigned integers
//! wider than a byte as a varint (a value below 251 is one byte; 251, 252 and 253 prefix a
//! `u16`, `u32` or `u64`), signed integers zigzag-encoded first, sequences and strings as a
//! varint length followed by the items, `Option` as a 0/1 byte, enums as a varint variant
//! index, fixed arrays without a length. The crate is pinned at 2.0.1 (RUSTSEC-2025-0141 marks
//! it unmaintained); swapping it means re-implementing these rules here and nowhere else.
//!
//! bincode itself accepts a varint longer than needed (`fb 05 00` for 5). The format allows one
//! encoding per value, so [`decode`] re-encodes what it decoded and refuses a record whose bytes
//! differ: a second, longer spelling of the same record would otherwise have another blob id or
//! file hash while meaning the same thing. Every other rule bincode already enforces (a 0/1
//! `Option` tag, UTF-8 strings, a varint prefix no wider than its type), so a record that
//! survives the round trip is canonical. The cost is one encode per decode, small beside the
//! decryption and hashing every decoded record has already cost.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Upper bound on what one encode may write.
const LIMIT: usize = 64 << 20;

fn config(
) -> bincode::config::Configuration<bincode::config::LittleEndian, bincode::config::Varint, bincode::config::Limit<LIMIT>>
{
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Decodes with a byte limit proportional to the input: the smallest step (×4) at least 32×
/// its length. bincode checks claimed lengths against the limit *in memory size* (24 bytes
/// per empty string in a list, for one byte of input) before allocating, so a claimed length
/// can never cost more than a constant factor of what the input itself weighs.
fn decode_limited<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<(T, usize), bincode::error::DecodeError> {
    macro_rules! with {
        ($n:expr) => {
            bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<{ $n }>())
        };
    }
    match bytes.len().saturating_mul(32) {
        n if n <= 1 << 12 => with!(1 << 12),
        n if n <= 1 << 14 => with!(1 << 14),
        n if n <= 1 << 16 => with!(1 << 16),
        n if n <= 1 << 18 => with!(1 << 18),
        n if n <= 1 << 20 => with!(1 << 20),
        n if n <= 1 << 22 => with!(1 << 22),
        n if n <= 1 << 24 => with!(1 << 24),
        n if n <= 1 << 26 => with!(1 << 26),
        n if n <= 1 << 28 => with!(1 << 28),
        _ => with!(1 << 30),
    }
}

/// Encodes a record.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|e| Error::InvalidArgument(format!("record cannot be encoded: {e}")))
}

/// Decodes a record that must fill `bytes` exactly and be in canonical form (shortest varints).
pub(crate) fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8], what: &'static str) -> Result<T> {
    let (value, used) =
        decode_limited(bytes).map_err(|e| Error::malformed(what, None, format!("record does not decode: {e}")))?;
    if used != bytes.len() {
        return Err(Error::malformed(
            what,
            Some(used as u64),
            format!("{} trailing bytes after the record", bytes.len() - used),
        ));
    }
    let again = encode(&value).map_err(|e| Error::malformed(what, None, format!("record does not re-encode: {e}")))?;
    if again != bytes {
        // The first difference is where the longer spelling starts.
        let at = again.iter().zip(bytes).position(|(a, b)| a != b).unwrap_or(again.len().min(bytes.len()));
        return Err(Error::malformed(what, Some(at as u64), "not in canonical form (a varint longer than needed)"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Sample {
        a: u32,
        b: u64,
        c: i32,
        d: [u8; 3],
        e: String,
        f: Option<u16>,
    }

    #[test]
    fn documented_encoding() {
        // The example from format-spec.md §5.7.
        let s = Sample { a: 1, b: 300, c: -2, d: [1, 2, 3], e: "hi".into(), f: Some(7) };
        let bytes = encode(&s).unwrap();
        assert_eq!(bytes, [1, 251, 0x2c, 0x01, 3, 1, 2, 3, 2, b'h', b'i', 1, 7]);
        assert_eq!(decode::<Sample>(&bytes, "sample").unwrap(), s);
    }

    #[test]
    fn rejects_trailing_and_truncated() {
        let bytes = encode(&Sample { a: 1, b: 2, c: 3, d: [0; 3], e: String::new(), f: None }).unwrap();
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<Sample>(&longer, "sample").is_err());
        for n in 0..bytes.len() {
            assert!(decode::<Sample>(&bytes[..n], "sample").is_err(), "prefix {n}");
        }
    }

    #[test]
    fn non_shortest_varints_are_refused() {
        // 5 as a u16-wide varint, 300 as a u32-wide one, and a 2-byte string whose length is
        // spelled as a u64: each decodes to a valid value in bincode, none is canonical.
        for (bytes, field) in [(vec![251, 5, 0, 251, 0x2c, 0x01], "u32 a"), (vec![1, 252, 0x2c, 0x01, 0, 0], "u64 b")] {
            let err = decode::<(u32, u64)>(&bytes, "pair").unwrap_err();
            assert!(err.to_string().contains("canonical"), "{field}: {err}");
        }
        let mut long_len = vec![253];
        long_len.extend_from_slice(&2u64.to_le_bytes());
        long_len.extend_from_slice(b"hi");
        assert!(decode::<String>(&long_len, "text").unwrap_err().to_string().contains("canonical"));
        // The shortest spellings of the same values decode.
        assert_eq!(decode::<(u32, u64)>(&[5, 251, 0x2c, 0x01], "pair").unwrap(), (5, 300));
        assert_eq!(decode::<String>(&[2, b'h', b'i'], "text").unwrap(), "hi");
        // A prefix wider than the type is refused by bincode itself.
        let mut wide = vec![253];
        wide.extend_from_slice(&5u64.to_le_bytes());
        assert!(decode::<u32>(&wide, "u32").is_err());
    }

    #[test]
    fn claimed_string_length_is_bounded_by_the_input() {
        // A String claiming 1 MiB in 6 bytes of input is refused by the 4 KiB step.
        let mut bytes = vec![252];
        bytes.extend_from_slice(&(1u32 << 20).to_le_bytes());
        bytes.push(b'x');
        let err = decode::<String>(&bytes, "text").unwrap_err();
        assert!(err.to_string().contains("does not decode"), "{err}");
    }

    #[test]
    fn huge_claimed_length_is_refused_without_allocating() {
        // A Vec<u64> claiming 2^40 items in 10 bytes of input.
        let mut bytes = vec![253];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        bytes.push(0);
        assert!(decode::<Vec<u64>>(&bytes, "list").is_err());
    }
}

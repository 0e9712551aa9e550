//! Padmé padding (format-spec.md §5.2).
//!
//! Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication with
//! PURBs", PETS 2019) rounds a length `L` up so that only `O(log log L)` bits of it remain: with
//! `E = ⌊log2 L⌋` and `S = ⌊log2 E⌋ + 1`, the low `E − S` bits are cleared after rounding up.
//! The overhead is at most 12 % and shrinks as `L` grows (under 3 % from 64 KiB on).

/// The Padmé length for `len`: the smallest allowed length `≥ len`.
#[must_use]
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros()); // ⌊log2 len⌋
    let s = 64 - u64::from(e.leading_zeros()); // ⌊log2 e⌋ + 1
    let last_bits = e - s;
    let mask = (1u64 << last_bits) - 1;
    (len + mask) & !mask
}

/// Appends the blob padding: one `0x80` byte, then zeros up to `padme(len + 1)`.
pub(crate) fn pad_marker(buf: &mut Vec<u8>) {
    let target = padme(buf.len() as u64 + 1) as usize;
    buf.push(0x80);
    buf.resize(target, 0);
}

/// Removes the blob padding, returning the unpadded length. `None` when the padding is not
/// exactly what [`pad_marker`] writes (non-canonical padding is rejected).
pub(crate) fn unpad_marker(buf: &[u8]) -> Option<usize> {
    let marker = buf.iter().rposition(|&b| b != 0)?;
    if buf[marker] != 0x80 || padme(marker as u64 + 1) != buf.len() as u64 {
        return None;
    }
    Some(marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let cases = [
            (0, 0),
            (1, 1),
            (2, 2),
            (9, 10),
            (100, 104),
            (1000, 1024),
            (20_000, 20_480),
            (65_536, 65_536),
            (65_537, 67_584),
            (1 << 24 | 1, (1 << 24) + (1 << 19)),
        ];
        for (len, want) in cases {
            assert_eq!(padme(len), want, "padme({len})");
        }
    }

    #[test]
    fn monotone_bounded_and_idempotent() {
        let mut prev = 0;
        for len in 0..70_000u64 {
            let p = padme(len);
            assert!(p >= len && p >= prev);
            assert_eq!(padme(p), p);
            if len >= 16 {
                assert!((p - len) * 100 <= len * 12, "overhead above 12% at {len}");
            }
            prev = p;
        }
    }

    #[test]
    fn marker_round_trip_and_rejects() {
        for n in [0usize, 1, 5, 99, 1000, 4097] {
            let mut b = vec![7u8; n];
            pad_marker(&mut b);
            assert_eq!(b.len() as u64, padme(n as u64 + 1));
            assert_eq!(unpad_marker(&b), Some(n));
        }
        assert_eq!(unpad_marker(&[0, 0, 0]), None);
        assert_eq!(unpad_marker(&[1, 0x81]), None);
        // Marker too early: valid marker but one zero too many.
        let mut b = vec![7u8; 99];
        pad_marker(&mut b);
        b.push(0);
        assert_eq!(unpad_marker(&b), None);
    }
}

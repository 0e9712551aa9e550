//! Deterministic incompressible test bytes, shared by the library's tests, the examples that
//! generate vectors and fuzz corpora, and packtool's tests (each includes this file with
//! `#[path]`). Vectors, corpora and golden files depend on its output: never change it.

/// `n` bytes of xorshift64 from seed `x` (the high half of each state, low byte).
pub fn noise(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

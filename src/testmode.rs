//! Deterministic randomness and time, for the golden CLI tests only.
//!
//! Compiled only with the cargo feature `deterministic-for-tests` (enabled by `packtool`'s
//! dev-dependency, so only in test builds) and active only while the environment variable
//! `PACKVAULT_TEST_SEED` is set. Then every "random" byte (master key, salts, nonces, slot ids)
//! comes from BLAKE3 over the seed and a counter, and the clock starts at 2025-11-26 00:00 UTC
//! and advances one second per reading, so a scripted session produces the same repository,
//! ids and output on every run. **Never enable this feature in a build that protects data:
//! every key would be predictable.**

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

fn seed() -> Option<&'static [u8; 32]> {
    static SEED: OnceLock<Option<[u8; 32]>> = OnceLock::new();
    SEED.get_or_init(|| {
        std::env::var("PACKVAULT_TEST_SEED").ok().map(|s| blake3::derive_key("packvault test seed", s.as_bytes()))
    })
    .as_ref()
}

/// Fills `out` deterministically; false when test mode is off.
pub(crate) fn fill(out: &mut [u8]) -> bool {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(seed) = seed() else { return false };
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    blake3::Hasher::new_keyed(seed).update(&n.to_le_bytes()).finalize_xof().fill(out);
    true
}

/// The test clock; `None` when test mode is off.
pub(crate) fn now() -> Option<(i64, u32)> {
    static TICKS: AtomicU64 = AtomicU64::new(0);
    seed()?;
    let t = TICKS.fetch_add(1, Ordering::SeqCst);
    Some((1_764_115_200 + t as i64, 0))
}

//! Deterministic randomness and time, for the golden CLI tests only.
//!
//! Compiled only with the cargo feature `deterministic-for-tests`, and active only after a
//! program calls [`install`]. No binary a user runs calls it: `packtool` does not, and no
//! environment variable or file turns it on. The golden test harness (`packtool/tests/golden.rs`)
//! runs the command in-process after calling it. Then every "random" byte (master key, salts,
//! nonces, slot ids) comes from BLAKE3 over the seed and a counter, and the clock starts at
//! 2025-11-26 00:00 UTC and advances one second per reading, so a scripted session produces the
//! same repository, ids and output on every run.
//!
//! Why not an environment variable: cargo unifies features across one build, so the
//! `packtool` binary that `cargo test --release` leaves in `target/release/` carries this
//! module too. An environment switch there made every key predictable for anyone who set it
//! (`tests/integration` and `packtool/tests/cli.rs` check that it no longer does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SEED: OnceLock<[u8; 32]> = OnceLock::new();

/// Makes this process's randomness and clock deterministic, derived from `seed`. **Every key
/// this process creates afterwards is predictable.** For test harnesses only; a second call
/// has no effect.
pub fn install(seed: &str) {
    let _ = SEED.set(blake3::derive_key("packvault test seed", seed.as_bytes()));
}

/// Fills `out` deterministically; false when test mode is off.
pub(crate) fn fill(out: &mut [u8]) -> bool {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(seed) = SEED.get() else { return false };
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    blake3::Hasher::new_keyed(seed).update(&n.to_le_bytes()).finalize_xof().fill(out);
    true
}

/// The test clock; `None` when test mode is off.
pub(crate) fn now() -> Option<(i64, u32)> {
    static TICKS: AtomicU64 = AtomicU64::new(0);
    SEED.get()?;
    let t = TICKS.fetch_add(1, Ordering::SeqCst);
    Some((1_764_115_200 + t as i64, 0))
}

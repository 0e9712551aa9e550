//! The one switch that turns off what hides the access pattern from the provider, for the
//! attack tests (`tests/privacy.rs`) only: with it on, [`window`](super::reader) asks for the
//! exact bytes a caller needs (blob boundaries become visible) and
//! [`PackWriter`](super::PackWriter) writes blobs in arrival order into one open pack (a file's
//! chunks lie side by side). The attack tests show that the chunk-matching attack succeeds
//! then, so they are known to have teeth.
//!
//! Reachable only through `packvault::hazmat::weaken_provider_privacy` (feature `hazmat`, which
//! no program that protects data enables); no flag, setting or environment variable sets it.
//! Without the feature the switch is a constant `false`.

#[cfg(feature = "hazmat")]
static WEAKENED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True while the attack tests have turned the defences off.
#[inline]
pub(crate) fn weakened() -> bool {
    #[cfg(feature = "hazmat")]
    {
        WEAKENED.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "hazmat"))]
    {
        false
    }
}

/// Turns the defences off (`true`) or on again, for the whole process.
#[cfg(feature = "hazmat")]
pub(crate) fn set_weakened(on: bool) {
    WEAKENED.store(on, std::sync::atomic::Ordering::Relaxed);
}

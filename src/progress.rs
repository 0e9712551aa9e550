//! Progress reporting for long operations (backup, restore, check): a callback trait that a
//! front end turns into progress bars. Every method has an empty default.

/// Receives progress of a long operation. Called from worker threads: implementations must be
/// cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// A phase starts: `what` names it ("backup", "restore", "check"); the totals are known
    /// amounts (0 when unknown).
    fn start(&self, _what: &str, _total_bytes: u64, _total_items: u64) {}
    /// More work was done.
    fn advance(&self, _bytes: u64, _items: u64) {}
    /// The phase ended.
    fn finish(&self) {}
}

impl std::fmt::Debug for dyn Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

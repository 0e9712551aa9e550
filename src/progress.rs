//! Progress reporting and cancellation for long operations (backup, restore, check): a
//! callback trait that a front end turns into progress bars, and a token that stops the work.
//! Every progress method has an empty default.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Receives progress of a long operation. Called from worker threads: implementations must be
/// cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// A phase starts: `what` names it ("backup", "restore", "check"); the totals are known
    /// amounts (0 when unknown).
    fn start(&self, _what: &str, _total_bytes: u64, _total_items: u64) {}
    /// More work was done.
    fn advance(&self, _bytes: u64, _items: u64) {}
    /// Work on `path` (a path inside the snapshot, or a local path) begins. Called once per
    /// file that is read or written, not for files skipped unread.
    fn current(&self, _path: &str) {}
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

/// Stops a long operation from another thread. Clones share one flag.
///
/// An operation checks the token between units of work (a batch of input, a pack, a file) and
/// returns [`Error::Cancelled`]: a cancelled backup writes no snapshot and leaves the
/// repository valid (at worst packs no index names yet, which the next backup adopts), a
/// cancelled restore leaves no partial file under its final name.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not yet cancelled.
    #[must_use]
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks every operation holding a clone of this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// True once [`cancel`](CancelToken::cancel) was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Error::Cancelled)` once cancelled.
    ///
    /// # Errors
    /// [`Error::Cancelled`] after [`cancel`](CancelToken::cancel).
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let a = CancelToken::new();
        let b = a.clone();
        assert!(a.check().is_ok());
        b.cancel();
        assert!(a.is_cancelled());
        assert!(matches!(a.check(), Err(Error::Cancelled)));
    }
}

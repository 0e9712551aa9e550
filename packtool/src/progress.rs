//! Progress bars on stderr (indicatif), only when stderr is a terminal and neither `--quiet`
//! nor `--json` was given: scripts and JSON consumers never see them.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A [`packvault::Progress`] drawn as a bar: bytes done, throughput, ETA, items done.
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
    items: AtomicU64,
    total_items: AtomicU64,
    what: Mutex<String>,
}

impl Bar {
    /// A bar when bars are wanted here, else `None`.
    pub fn wanted(quiet: bool, json: bool) -> Option<Arc<dyn packvault::Progress>> {
        if quiet || json || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Arc::new(Bar {
            bar: Mutex::new(None),
            items: AtomicU64::new(0),
            total_items: AtomicU64::new(0),
            what: Mutex::new(String::new()),
        }))
    }

    fn message(&self) -> String {
        let what = self.what.lock().map(|w| w.clone()).unwrap_or_default();
        let unit = match what.as_str() {
            "check" => "packs",
            "copy" => "snapshots",
            _ => "files",
        };
        format!("{what} {}/{} {unit}", self.items.load(Ordering::Relaxed), self.total_items.load(Ordering::Relaxed))
    }
}

impl packvault::Progress for Bar {
    fn start(&self, what: &str, total_bytes: u64, total_items: u64) {
        if let Ok(mut w) = self.what.lock() {
            *w = what.to_string();
        }
        self.items.store(0, Ordering::Relaxed);
        self.total_items.store(total_items, Ordering::Relaxed);
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(self.message());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }

    fn advance(&self, bytes: u64, items: u64) {
        self.items.fetch_add(items, Ordering::Relaxed);
        if let Ok(b) = self.bar.lock() {
            if let Some(bar) = b.as_ref() {
                bar.inc(bytes);
                if items > 0 {
                    bar.set_message(self.message());
                }
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(bar) = b.take() {
                bar.finish_and_clear();
            }
        }
    }
}

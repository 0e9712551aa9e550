//! `--trace-store FILE`: what the storage provider sees of one command.
//!
//! Every store the command opens is wrapped in packvault's `RecordingStore`; when the command
//! ends (successfully or not), every request it made is written to FILE, one JSON object per
//! line, in the order made (for a command that opens two repositories, as `copy` does, each
//! line names its store): the objects created with their sizes, whole and ranged reads with
//! offset and length, sizes asked, lists, deletes, and the time of each.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use packvault::{RecordingStore, Store};

use crate::cli::Global;

/// The stores wrapped by this command (drained when the trace is written: the test harness
/// runs several commands in one process).
static TRACED: Mutex<Vec<Arc<RecordingStore>>> = Mutex::new(Vec::new());

/// `store`, recorded when `--trace-store` was given.
pub(crate) fn wrap(g: &Global, store: Arc<dyn Store>) -> Arc<dyn Store> {
    if g.trace_store.is_none() {
        return store;
    }
    let recorded = Arc::new(RecordingStore::new(store));
    TRACED.lock().unwrap_or_else(PoisonError::into_inner).push(recorded.clone());
    recorded
}

/// Writes the trace to the `--trace-store` file, if one was given.
pub(crate) fn finish(g: &Global) -> anyhow::Result<()> {
    let stores = std::mem::take(&mut *TRACED.lock().unwrap_or_else(PoisonError::into_inner));
    let Some(path) = g.trace_store.as_deref() else { return Ok(()) };
    write(path, &stores).with_context(|| format!("cannot write the store trace to {}", path.display()))
}

fn write(path: &Path, stores: &[Arc<RecordingStore>]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for s in stores {
        let name = s.describe();
        for e in s.events() {
            let mut line = serde_json::to_value(&e)?;
            if stores.len() > 1 {
                line["store"] = serde_json::Value::String(name.clone());
            }
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

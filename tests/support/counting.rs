//! A `Store` wrapper that records every read (`get`, `get_limited`, `get_range`,
//! `get_range_into`): which file, where, how many bytes. Writes and listings pass through
//! unrecorded. An optional hook sees each read as it happens (to cancel an operation
//! mid-way, say).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use packvault::{FileKind, Result, Store, Upload};

/// One read the store served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub kind: FileKind,
    pub name: String,
    /// Offset and length for ranged reads; `None` for whole-file reads.
    pub range: Option<(u64, usize)>,
}

type Hook = Box<dyn Fn(&Read) + Send + Sync>;

pub struct CountingStore {
    inner: Arc<dyn Store>,
    reads: Mutex<Vec<Read>>,
    hook: Mutex<Option<Hook>>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<CountingStore> {
        Arc::new(CountingStore { inner, reads: Mutex::new(Vec::new()), hook: Mutex::new(None) })
    }

    /// Forgets the reads recorded so far.
    pub fn reset(&self) {
        self.reads.lock().unwrap().clear();
    }

    /// Calls `hook` on every read from now on (replacing any earlier hook).
    pub fn set_hook(&self, hook: impl Fn(&Read) + Send + Sync + 'static) {
        *self.hook.lock().unwrap() = Some(Box::new(hook));
    }

    pub fn reads(&self) -> Vec<Read> {
        self.reads.lock().unwrap().clone()
    }

    /// Names of the packs read at least once.
    pub fn packs_read(&self) -> BTreeSet<String> {
        self.reads().into_iter().filter(|r| r.kind == FileKind::Pack).map(|r| r.name).collect()
    }

    /// Number of reads of packs.
    pub fn pack_reads(&self) -> usize {
        self.reads().iter().filter(|r| r.kind == FileKind::Pack).count()
    }

    fn record(&self, kind: FileKind, name: &str, range: Option<(u64, usize)>) {
        let read = Read { kind, name: name.to_string(), range };
        if let Some(hook) = self.hook.lock().unwrap().as_ref() {
            hook(&read);
        }
        self.reads.lock().unwrap().push(read);
    }
}

impl Store for CountingStore {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.inner.put(kind, name, data)
    }
    fn put_parts(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.inner.put_parts(kind, name, parts)
    }
    fn put_deferred(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.inner.put_deferred(kind, name, parts)
    }
    fn begin(&self, kind: FileKind) -> Result<Box<dyn Upload>> {
        self.inner.begin(kind)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.record(kind, name, None);
        self.inner.get(kind, name)
    }
    fn get_limited(&self, kind: FileKind, name: &str, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        self.record(kind, name, None);
        self.inner.get_limited(kind, name, limit, what)
    }
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.record(kind, name, Some((offset, len)));
        self.inner.get_range(kind, name, offset, len)
    }
    fn get_range_into(&self, kind: FileKind, name: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        self.record(kind, name, Some((offset, len)));
        self.inner.get_range_into(kind, name, offset, len, buf)
    }
    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }
    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        self.inner.delete(kind, name)
    }
    fn sweep_temporaries(&self, older_than: std::time::Duration, dry_run: bool) -> Result<(u64, u64)> {
        self.inner.sweep_temporaries(older_than, dry_run)
    }
    fn local_path(&self, kind: FileKind, name: &str) -> Option<PathBuf> {
        self.inner.local_path(kind, name)
    }
    fn describe(&self) -> String {
        format!("counting({})", self.inner.describe())
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

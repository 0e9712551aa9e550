//! A `Store` wrapper that injects a fault at the k-th mutating operation: a `put` (write,
//! fsync and link into place), the end of a streamed upload, a `flush` (the fsync barrier of
//! deferred writes) or a `delete`. Reads always pass through.
//!
//! - [`Mode::Crash`]: the k-th operation and every later one fail, as if the process had died
//!   at that moment (nothing more reaches the store);
//! - [`Mode::Transient`]: only the k-th operation fails (a dropped connection, a full disk
//!   that frees up), and the caller may go on.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use packvault::{Error, FileKind, Result, Store, Upload};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Crash,
    Transient,
}

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    state: Arc<State>,
}

struct State {
    ops: AtomicU64,
    fail_at: Option<u64>,
    mode: Mode,
    tripped: AtomicBool,
    log: Mutex<Vec<String>>,
}

impl State {
    /// Counts one mutating operation; errors when it is the one to fail (or after, in crash
    /// mode).
    fn step(&self, what: &str) -> Result<()> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        self.log.lock().unwrap().push(what.to_string());
        let fail = match (self.fail_at, self.mode) {
            (Some(k), Mode::Crash) => n >= k,
            (Some(k), Mode::Transient) => n == k,
            (None, _) => false,
        };
        if fail {
            self.tripped.store(true, Ordering::SeqCst);
            return Err(Error::Io(std::io::Error::other(format!("injected fault at operation {n} ({what})"))));
        }
        Ok(())
    }
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>, fail_at: Option<u64>, mode: Mode) -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            inner,
            state: Arc::new(State {
                ops: AtomicU64::new(0),
                fail_at,
                mode,
                tripped: AtomicBool::new(false),
                log: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Mutating operations seen so far.
    pub fn ops(&self) -> u64 {
        self.state.ops.load(Ordering::SeqCst)
    }

    /// True once a fault was injected.
    pub fn tripped(&self) -> bool {
        self.state.tripped.load(Ordering::SeqCst)
    }

    /// The operations seen, in order (`put index/…`, `flush`, …).
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }
}

struct FaultyUpload {
    inner: Box<dyn Upload>,
    store: Arc<dyn Store>,
    state: Arc<State>,
    kind: FileKind,
}

impl Upload for FaultyUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.inner.write(data)
    }

    fn finish(self: Box<Self>, _store: &dyn Store, name: &str) -> Result<()> {
        let FaultyUpload { inner, store, state, kind } = *self;
        state.step(&format!("upload {}", kind.path(name)))?;
        inner.finish(store.as_ref(), name)
    }
}

impl Store for FaultyStore {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.state.step(&format!("put {}", kind.path(name)))?;
        self.inner.put(kind, name, data)
    }

    fn put_parts(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.state.step(&format!("put {}", kind.path(name)))?;
        self.inner.put_parts(kind, name, parts)
    }

    fn put_deferred(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.state.step(&format!("put {}", kind.path(name)))?;
        self.inner.put_deferred(kind, name, parts)
    }

    fn begin(&self, kind: FileKind) -> Result<Box<dyn Upload>> {
        Ok(Box::new(FaultyUpload {
            inner: self.inner.begin(kind)?,
            store: self.inner.clone(),
            state: self.state.clone(),
            kind,
        }))
    }

    fn flush(&self) -> Result<()> {
        self.state.step("flush")?;
        self.inner.flush()
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.inner.get(kind, name)
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.inner.get_range(kind, name, offset, len)
    }

    fn get_range_into(&self, kind: FileKind, name: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.get_range_into(kind, name, offset, len, buf)
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        self.inner.list(kind)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        self.state.step(&format!("delete {}", kind.path(name)))?;
        self.inner.delete(kind, name)
    }

    fn local_path(&self, kind: FileKind, name: &str) -> Option<PathBuf> {
        self.inner.local_path(kind, name)
    }

    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }

    /// The wrapped store's: a client's pins for it apply through the wrapper.
    fn location(&self) -> String {
        self.inner.location()
    }
}

//! [`RecordingStore`]: a [`Store`] wrapper that records what the storage provider sees.
//!
//! The provider of an untrusted store is the adversary of format-spec.md §9. It sees every
//! request a client makes: which object is created, read, listed, sized or deleted, when, and
//! for ranged reads which bytes. This wrapper keeps that view as a log of [`StoreEvent`]s, in
//! the order the requests were made, so tests can check what the format claims the provider
//! learns (`tests/privacy.rs` runs the chunk-matching attack of eprint 2025/532 on it), and
//! `packtool --trace-store FILE` can show a user what their provider sees of one command.
//!
//! The events derive `serde`'s traits; one event per line of JSON is the intended form
//! (`{"seq":3,"unix_micros":…,"op":"read","kind":"packs","name":"3fa1…","offset":65536,"len":131072,"ok":true}`).
//!
//! What is recorded is what the wrapper is asked, which is what a remote provider is asked:
//! the wrapper never exposes a local path ([`Store::local_path`] is `None`), so every read is a
//! request it sees. Store-internal work below the trait (a local store's temporary files, an
//! S3 store's multipart parts and retries) is not visible here.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{FileKind, Store, Upload};
use crate::error::Result;

/// What a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreOp {
    /// An object was created (`put`, `put_parts`, `put_deferred`, or a streamed upload
    /// finishing); `len` is its size.
    Put,
    /// A whole object was read; `len` is the bytes returned.
    Get,
    /// A byte range was read: `offset` and `len`.
    Read,
    /// An object's size was asked; `len` is the answer.
    Size,
    /// A folder was listed; `len` is the number of names returned.
    List,
    /// An object was deleted.
    Delete,
    /// Deferred writes were made durable.
    Flush,
    /// The store was probed for create-only puts (it may write and remove a probe object).
    Probe,
}

/// One request as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreEvent {
    /// Position in the log, from 0: the order of the requests.
    pub seq: u64,
    /// Wall-clock time of the request, in microseconds since the Unix epoch.
    pub unix_micros: u64,
    /// What the request did.
    pub op: StoreOp,
    /// The folder of the object (`config`, `keys`, `packs`, `index`, `snapshots`, `locks`,
    /// `tombstones`), or empty for a flush or probe.
    pub kind: String,
    /// The object's name (without the 2-hex folder of packs); empty for lists and flushes.
    pub name: String,
    /// First byte of a ranged read; 0 otherwise.
    pub offset: u64,
    /// Bytes put, read or sized, or names listed (see [`StoreOp`]); for a ranged read the
    /// length asked for, even when the read failed; 0 for other failed requests.
    pub len: u64,
    /// Whether the request succeeded (a failed request is seen too).
    pub ok: bool,
}

/// The folder name [`StoreEvent::kind`] uses for a kind.
fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Config => "config",
        _ => kind.dir(),
    }
}

/// The shared log.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<StoreEvent>>,
}

impl Log {
    fn push(&self, op: StoreOp, kind: Option<FileKind>, name: &str, offset: u64, len: u64, ok: bool) {
        let unix_micros = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_micros()
            .try_into()
            .unwrap_or(u64::MAX);
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = events.len() as u64;
        events.push(StoreEvent {
            seq,
            unix_micros,
            op,
            kind: kind.map_or("", kind_name).to_string(),
            name: name.to_string(),
            offset,
            len,
            ok,
        });
    }
}

/// A [`Store`] that forwards every request to an inner store and records it (see the module
/// documentation). Share it through an `Arc`: hand one clone to the repository and keep one to
/// read [`RecordingStore::events`].
pub struct RecordingStore {
    inner: Arc<dyn Store>,
    log: Arc<Log>,
}

impl RecordingStore {
    /// Wraps `inner`, with an empty log.
    #[must_use]
    pub fn new(inner: Arc<dyn Store>) -> RecordingStore {
        RecordingStore { inner, log: Arc::new(Log::default()) }
    }

    /// The wrapped store (requests made to it directly are not recorded).
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// A copy of the events recorded so far, in order.
    #[must_use]
    pub fn events(&self) -> Vec<StoreEvent> {
        self.log.events.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The events recorded so far, leaving the log empty (numbering goes on from 0).
    #[must_use]
    pub fn take_events(&self) -> Vec<StoreEvent> {
        std::mem::take(&mut *self.log.events.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn record<T>(&self, op: StoreOp, kind: FileKind, name: &str, offset: u64, r: &Result<T>, len: impl Fn(&T) -> u64) {
        let (n, ok) = match r {
            Ok(v) => (len(v), true),
            Err(_) => (0, false),
        };
        self.log.push(op, Some(kind), name, offset, n, ok);
    }
}

impl Store for RecordingStore {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let r = self.inner.put(kind, name, data);
        self.record(StoreOp::Put, kind, name, 0, &r, |()| data.len() as u64);
        r
    }

    fn put_parts(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        let r = self.inner.put_parts(kind, name, parts);
        self.record(StoreOp::Put, kind, name, 0, &r, |()| parts.iter().map(|p| p.len() as u64).sum());
        r
    }

    fn put_deferred(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        let r = self.inner.put_deferred(kind, name, parts);
        self.record(StoreOp::Put, kind, name, 0, &r, |()| parts.iter().map(|p| p.len() as u64).sum());
        r
    }

    fn begin(&self, kind: FileKind) -> Result<Box<dyn Upload>> {
        let inner = self.inner.begin(kind)?;
        Ok(Box::new(RecordingUpload { inner, kind, len: 0, store: self.inner.clone(), log: self.log.clone() }))
    }

    fn flush(&self) -> Result<()> {
        let r = self.inner.flush();
        self.log.push(StoreOp::Flush, None, "", 0, 0, r.is_ok());
        r
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let r = self.inner.get(kind, name);
        self.record(StoreOp::Get, kind, name, 0, &r, |v| v.len() as u64);
        r
    }

    fn get_limited(&self, kind: FileKind, name: &str, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        let r = self.inner.get_limited(kind, name, limit, what);
        self.record(StoreOp::Get, kind, name, 0, &r, |v| v.len() as u64);
        r
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let r = self.inner.get_range(kind, name, offset, len);
        // The range asked for is what the provider sees, whether or not it is served.
        self.log.push(StoreOp::Read, Some(kind), name, offset, len as u64, r.is_ok());
        r
    }

    fn get_range_into(&self, kind: FileKind, name: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        let r = self.inner.get_range_into(kind, name, offset, len, buf);
        self.log.push(StoreOp::Read, Some(kind), name, offset, len as u64, r.is_ok());
        r
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let r = self.inner.size(kind, name);
        self.record(StoreOp::Size, kind, name, 0, &r, |n| *n);
        r
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        let r = self.inner.list(kind);
        self.record(StoreOp::List, kind, "", 0, &r, |v| v.len() as u64);
        r
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let r = self.inner.delete(kind, name);
        self.record(StoreOp::Delete, kind, name, 0, &r, |()| 0);
        r
    }

    fn sweep_temporaries(&self, older_than: Duration, dry_run: bool) -> Result<(u64, u64)> {
        self.inner.sweep_temporaries(older_than, dry_run)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn create_only(&self) -> Option<bool> {
        self.inner.create_only()
    }

    fn probe_create_only(&self) -> Result<Option<bool>> {
        let r = self.inner.probe_create_only();
        self.log.push(StoreOp::Probe, None, "", 0, 0, r.is_ok());
        r
    }

    fn lock_settle(&self) -> Duration {
        self.inner.lock_settle()
    }
}

/// A streamed upload of the inner store, recorded as one [`StoreOp::Put`] when it finishes.
struct RecordingUpload {
    inner: Box<dyn Upload>,
    kind: FileKind,
    len: u64,
    store: Arc<dyn Store>,
    log: Arc<Log>,
}

impl Upload for RecordingUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.len += data.len() as u64;
        self.inner.write(data)
    }

    fn finish(self: Box<Self>, _store: &dyn Store, name: &str) -> Result<()> {
        let RecordingUpload { inner, kind, len, store, log } = *self;
        // The inner upload belongs to the inner store; it finishes there (a buffered upload
        // puts through it, which is not recorded a second time).
        let r = inner.finish(store.as_ref(), name);
        log.push(StoreOp::Put, Some(kind), name, 0, len, r.is_ok());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn records_every_request_in_order_and_keeps_the_store_contract() {
        let store = RecordingStore::new(Arc::new(MemoryStore::new()));
        crate::store::tests::exercise(&store);
        let events = store.events();
        assert!(events.iter().enumerate().all(|(i, e)| e.seq == i as u64));
        let ops: Vec<(StoreOp, &str, u64, u64, bool)> =
            events.iter().map(|e| (e.op, e.kind.as_str(), e.offset, e.len, e.ok)).collect();
        assert_eq!(ops[0], (StoreOp::List, "packs", 0, 0, true));
        assert_eq!(ops[1], (StoreOp::Put, "packs", 0, 10, true));
        assert!(ops.contains(&(StoreOp::Read, "packs", 6, 4, true)), "a ranged read with offset and length");
        assert!(ops.contains(&(StoreOp::Read, "packs", 6, 5, false)), "a failed read is seen too");
        assert!(ops.contains(&(StoreOp::Put, "snapshots", 0, 8, true)), "a streamed upload, once, with its size");
        assert_eq!(events.iter().filter(|e| e.op == StoreOp::Put && e.kind == "snapshots").count(), 1);
        assert!(ops.contains(&(StoreOp::Put, "config", 0, 3, true)));
        assert!(ops.contains(&(StoreOp::Delete, "packs", 0, 0, true)));
        assert!(events.windows(2).all(|w| w[0].unix_micros <= w[1].unix_micros));
        assert_eq!(store.take_events().len(), events.len());
        assert!(store.events().is_empty());
        assert!(store.local_path(FileKind::Pack, "x").is_none());
    }
}

//! Repository locks (format-spec.md §5.14): shared for backup, restore and check, exclusive
//! for forget, prune and repair.
//!
//! A lock is a file `locks/<id>` (an encrypted record: kind, host, process id, time,
//! operation). Taking one: look for conflicting live locks, write ours, look again (two
//! clients may have written at the same moment: then both back off and retry). A held lock is
//! refreshed every [`REFRESH`] by writing a new file and deleting the old one; a lock older
//! than [`STALE_AFTER`], or left by a process of this host that no longer runs, is stale and
//! ignored. Dropping a [`RepoLock`] removes its file. On a store whose listings may lag behind
//! its writes ([`Store::lock_settle`]: S3 servers that ignore create-only writes), a
//! client waits that long after writing its lock before it looks again, and a refresh keeps the
//! old file until the new one has had that long to show.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::crypto::{random_array, KeySet};
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::lock::{decode, encode, MAX_LOCK_FILE};
pub use crate::format::lock::{LockKind, LockRecord};
use crate::id::Id;
use crate::repo::{now_secs, Repository};
use crate::store::{list_ids, FileKind, Store};

/// A lock not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is refreshed.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);

/// A lock as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    /// The lock file's name.
    pub id: Id,
    /// Its record, or `None` when the file cannot be read (it is then treated as stale).
    pub record: Option<LockRecord>,
    /// True when the lock no longer protects anything.
    pub stale: bool,
}

impl LockRecord {
    fn describe(&self) -> String {
        format!(
            "{} lock for {} by pid {} on {}, written {} s ago",
            match self.kind {
                LockKind::Shared => "a shared",
                LockKind::Exclusive => "an exclusive",
            },
            self.operation,
            self.pid,
            self.hostname,
            now_secs().saturating_sub(self.time).max(0)
        )
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Who can see whose processes: the kernel's boot id and this process's PID namespace. Two
/// lock holders with the same value share a process table, so a PID missing from `/proc` is a
/// dead holder. Empty where either is unknown (not Linux, or hidden), which turns the
/// dead-holder rule off: host names repeat across devices ("localhost") and cannot serve.
pub(crate) fn machine_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string());
    let ns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.to_string_lossy().into_owned());
    match (boot, ns) {
        (Ok(b), Ok(n)) if !b.is_empty() && !n.is_empty() => format!("{b}/{n}"),
        _ => String::new(),
    }
}

/// True when `pid` names a running process (of this machine id: see [`machine_id`]).
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn is_stale(r: &LockRecord, machine: &str) -> bool {
    let age = now_secs().saturating_sub(r.time);
    let dead_here = !machine.is_empty() && r.machine == machine && r.pid != std::process::id() && !alive(r.pid);
    age > STALE_AFTER.as_secs() as i64 || dead_here
}

/// A held lock: refreshed in the background, removed on drop.
pub struct RepoLock {
    stop: Option<Sender<()>>,
    worker: Option<JoinHandle<()>>,
    /// The lock file now, and when it was written.
    current: Arc<Mutex<(Id, Instant)>>,
    store: Arc<dyn Store>,
    kind: LockKind,
    stale_after: Duration,
}

impl std::fmt::Debug for RepoLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoLock").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl RepoLock {
    /// Shared or exclusive.
    #[must_use]
    pub fn kind(&self) -> LockKind {
        self.kind
    }

    /// Fails when the lock file has not been refreshed for so long that other clients may
    /// already treat it as stale (the store refused the refreshes): an operation must then not
    /// commit or delete anything, since a prune (or a backup) may be running beside it.
    ///
    /// # Errors
    /// [`Error::Locked`] saying how long ago the lock was last written.
    pub fn ensure_held(&self) -> Result<()> {
        let (id, written) = *self.current.lock().unwrap_or_else(PoisonError::into_inner);
        // A minute of margin for clocks and the time the caller's next step takes.
        let limit = self.stale_after.saturating_sub(Duration::from_secs(60).min(self.stale_after / 2));
        if written.elapsed() > limit {
            return Err(Error::Locked(format!(
                "this process's own lock could not be refreshed for {} s, so other clients may ignore it; stopped before changing anything, try the operation again",
                written.elapsed().as_secs()
            )));
        }
        // Removed by another client's forced unlock: that client may act as if we were gone.
        match self.store.size(FileKind::Lock, &id.to_hex()) {
            Ok(_) => Ok(()),
            Err(Error::NotFound(_)) => Err(Error::Locked(
                "this process's own lock file was removed (another client forced an unlock?); stopped before changing anything, try the operation again".into(),
            )),
            Err(e) => Err(e),
        }
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        let id = self.current.lock().unwrap_or_else(PoisonError::into_inner).0;
        let _ = self.store.delete(FileKind::Lock, &id.to_hex());
    }
}

fn write_lock(store: &dyn Store, keys: &KeySet, record: &LockRecord) -> Result<Id> {
    let bytes = encode(keys.meta_key(), record, &random_array()?)?;
    let id = Id::hash_of(&bytes);
    store.put(FileKind::Lock, &id.to_hex(), &bytes)?;
    Ok(id)
}

fn refresher(
    stop: Receiver<()>,
    store: Arc<dyn Store>,
    keys: KeySet,
    mut record: LockRecord,
    current: Arc<Mutex<(Id, Instant)>>,
    every: Duration,
) {
    loop {
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {
                record.time = now_secs();
                // Taken before the write: a write that hangs must not make the lock look fresher
                // than the time other clients read in it.
                let written = Instant::now();
                // A failed refresh keeps the old file: it goes stale later, nothing breaks now.
                if let Ok(new) = write_lock(store.as_ref(), &keys, &record) {
                    // The old file goes only once the new one shows in listings.
                    std::thread::sleep(store.lock_settle());
                    let old =
                        std::mem::replace(&mut *current.lock().unwrap_or_else(PoisonError::into_inner), (new, written));
                    let _ = store.delete(FileKind::Lock, &old.0.to_hex());
                }
            }
            _ => return,
        }
    }
}

impl Repository {
    /// Every lock file, with whether it is stale.
    ///
    /// # Errors
    /// Store errors.
    pub fn locks(&self) -> Result<Vec<LockInfo>> {
        let machine = machine_id();
        let mut out = Vec::new();
        for id in list_ids(self.store.as_ref(), FileKind::Lock)? {
            let bytes = crate::store::get_bounded(
                self.store.as_ref(),
                FileKind::Lock,
                &id.to_hex(),
                MAX_LOCK_FILE,
                "lock length",
            );
            let (record, stale) = match bytes.and_then(|b| decode(self.keys.meta_key(), &b)) {
                Ok(r) => {
                    let stale = is_stale(&r, &machine);
                    (Some(r), stale)
                }
                // Removed between the listing and the read: released.
                Err(Error::NotFound(_)) => continue,
                Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
                // Written by a newer version: its holder may well be alive; it counts as an
                // exclusive lock until `unlock --force` removes it.
                Err(e) if e.kind() == crate::ErrorKind::UnsupportedVersion => (None, false),
                // Not a lock of this repository's key, or damaged, or oversized: protects nothing.
                Err(_) => (None, true),
            };
            out.push(LockInfo { id, record, stale });
        }
        Ok(out)
    }

    /// Removes stale locks, or every lock with `force` (only when no other client runs!).
    /// Returns the removed locks.
    ///
    /// # Errors
    /// Store errors.
    pub fn unlock(&self, force: bool) -> Result<Vec<LockInfo>> {
        let mut removed = Vec::new();
        for l in self.locks()? {
            if l.stale || force {
                match self.store.delete(FileKind::Lock, &l.id.to_hex()) {
                    Ok(()) | Err(Error::NotFound(_)) => removed.push(l),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }

    /// Takes a lock for `operation`, waiting up to the repository's lock wait
    /// ([`OpenOptions::lock_wait`](crate::OpenOptions::lock_wait)) for conflicting locks to go.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the conflicting lock when the wait runs out; store errors.
    pub fn lock(&self, kind: LockKind, operation: &str) -> Result<RepoLock> {
        self.lock_with(kind, operation, REFRESH)
    }

    pub(crate) fn lock_with(&self, kind: LockKind, operation: &str, refresh: Duration) -> Result<RepoLock> {
        self.lock_timed(kind, operation, refresh, STALE_AFTER)
    }

    pub(crate) fn lock_timed(
        &self,
        kind: LockKind,
        operation: &str,
        refresh: Duration,
        stale_after: Duration,
    ) -> Result<RepoLock> {
        let mut record = LockRecord {
            kind,
            hostname: hostname(),
            machine: machine_id(),
            pid: std::process::id(),
            time: now_secs(),
            operation: operation.into(),
        };
        let deadline = Instant::now() + self.lock_wait;
        let mut pause = Duration::from_millis(50);
        loop {
            let blocker = self.conflict(kind, None)?;
            if blocker.is_none() {
                record.time = now_secs();
                let written = Instant::now();
                let mine =
                    write_lock(self.store.as_ref(), &self.keys, &record).at(|| Location::RepoFile("locks".into()))?;
                // On a store whose listings may lag behind writes, wait until ours shows to
                // everyone (format-spec.md §5.14).
                std::thread::sleep(self.store.lock_settle());
                // Someone may have written a conflicting lock at the same moment: look again.
                let second = self.conflict(kind, Some(mine));
                if second.is_err() {
                    let _ = self.store.delete(FileKind::Lock, &mine.to_hex());
                }
                match second? {
                    None => {
                        let (stop, rx) = channel();
                        let current = Arc::new(Mutex::new((mine, written)));
                        let (store, keys, c) = (self.store.clone(), self.keys.clone(), current.clone());
                        let rec = record.clone();
                        let worker = std::thread::spawn(move || refresher(rx, store, keys, rec, c, refresh));
                        return Ok(RepoLock {
                            stop: Some(stop),
                            worker: Some(worker),
                            current,
                            store: self.store.clone(),
                            kind,
                            stale_after,
                        });
                    }
                    Some(other) => {
                        let _ = self.store.delete(FileKind::Lock, &mine.to_hex());
                        if Instant::now() >= deadline {
                            return Err(Error::Locked(other));
                        }
                    }
                }
            } else if Instant::now() >= deadline {
                return Err(Error::Locked(blocker.unwrap_or_default()));
            }
            // Back off with jitter, so two clients that collided do not collide again.
            let jitter = u64::from(random_array::<1>()?[0]);
            std::thread::sleep(pause + Duration::from_millis(jitter));
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// A live lock that conflicts with taking `kind` (ours, `mine`, excluded).
    fn conflict(&self, kind: LockKind, mine: Option<Id>) -> Result<Option<String>> {
        Ok(self.locks()?.into_iter().filter(|l| !l.stale && Some(l.id) != mine).find_map(|l| match l.record {
            Some(r) if kind == LockKind::Exclusive || r.kind == LockKind::Exclusive => Some(r.describe()),
            Some(_) => None,
            None => Some(format!("lock {} written by a newer version of packvault", l.id.short())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Credentials, MemoryStore};

    fn repo(store: &Arc<MemoryStore>) -> Repository {
        let options = crate::InitOptions {
            kdf: crate::format::keyslot::Argon2Params { m_kib: 8192, t: 1, p: 1 },
            ..Default::default()
        };
        Repository::init(store.clone(), &Credentials::passphrase("lock test passphrase"), options).unwrap()
    }

    #[test]
    fn shared_locks_coexist_exclusive_ones_do_not() {
        let store = Arc::new(MemoryStore::new());
        let r = repo(&store);
        let a = r.lock(LockKind::Shared, "backup").unwrap();
        let b = r.lock(LockKind::Shared, "restore").unwrap();
        let e = r.lock(LockKind::Exclusive, "prune").unwrap_err();
        assert!(matches!(e, Error::Locked(_)), "{e}");
        assert!(e.to_string().contains("a shared lock for"), "{e}");
        drop((a, b));
        assert!(r.locks().unwrap().is_empty(), "dropping removes the files");
        let x = r.lock(LockKind::Exclusive, "prune").unwrap();
        assert!(matches!(r.lock(LockKind::Shared, "backup"), Err(Error::Locked(_))));
        drop(x);
        r.lock(LockKind::Shared, "backup").unwrap();
    }

    #[test]
    fn stale_locks_are_ignored_and_unlock_removes_only_them() {
        let store = Arc::new(MemoryStore::new());
        let r = repo(&store);
        let old = LockRecord {
            kind: LockKind::Exclusive,
            hostname: "elsewhere".into(),
            machine: String::new(),
            pid: 1,
            time: now_secs() - 3600,
            operation: "prune".into(),
        };
        write_lock(store.as_ref(), &r.keys, &old).unwrap();
        let dead = LockRecord {
            kind: LockKind::Exclusive,
            hostname: hostname(),
            machine: machine_id(),
            pid: u32::MAX - 7,
            time: now_secs(),
            operation: "prune".into(),
        };
        write_lock(store.as_ref(), &r.keys, &dead).unwrap();
        let live = LockRecord {
            kind: LockKind::Shared,
            hostname: "phone".into(),
            machine: "another phone".into(),
            pid: 1,
            time: now_secs(),
            operation: "backup".into(),
        };
        write_lock(store.as_ref(), &r.keys, &live).unwrap();
        // Same host name, another device (phones are all "localhost"): its PID means nothing
        // here, so the lock stays live.
        let twin =
            LockRecord { hostname: hostname(), machine: "twin device".into(), pid: u32::MAX - 7, ..live.clone() };
        write_lock(store.as_ref(), &r.keys, &twin).unwrap();
        let stale_expected = if machine_id().is_empty() { 1 } else { 2 };
        assert_eq!(r.locks().unwrap().iter().filter(|l| l.stale).count(), stale_expected);
        if stale_expected == 2 {
            let held = r.lock(LockKind::Shared, "check").expect("stale exclusive locks do not block");
            assert_eq!(r.unlock(false).unwrap().len(), 2);
            assert_eq!(r.locks().unwrap().len(), 3, "the two live shared locks and ours remain");
            drop(held);
            assert_eq!(r.unlock(true).unwrap().len(), 2);
        }
    }

    #[test]
    fn a_lock_from_a_newer_version_counts_as_exclusive() {
        let store = Arc::new(MemoryStore::new());
        let r = repo(&store);
        let rec = LockRecord {
            kind: LockKind::Shared,
            hostname: "new phone".into(),
            machine: String::new(),
            pid: 1,
            time: now_secs(),
            operation: "backup".into(),
        };
        let mut bytes = encode(r.keys.meta_key(), &rec, &[3; 12]).unwrap();
        bytes[6] = 3;
        store.put(FileKind::Lock, &Id::hash_of(&bytes).to_hex(), &bytes).unwrap();
        let e = r.lock(LockKind::Shared, "backup").unwrap_err();
        assert!(e.to_string().contains("newer version"), "{e}");
        assert!(r.unlock(false).unwrap().is_empty(), "not stale");
        assert_eq!(r.unlock(true).unwrap().len(), 1);
        r.lock(LockKind::Shared, "backup").unwrap();
    }

    /// A store whose writes fail once `broken` is set.
    struct Flaky {
        inner: MemoryStore,
        broken: std::sync::atomic::AtomicBool,
    }

    impl Store for Flaky {
        fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
            if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Io(std::io::Error::other("store unreachable")));
            }
            self.inner.put(kind, name, data)
        }
        fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
            self.inner.get(kind, name)
        }
        fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
            self.inner.get_range(kind, name, offset, len)
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
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    #[test]
    fn a_lock_that_cannot_be_refreshed_stops_its_holder() {
        let store = Arc::new(Flaky { inner: MemoryStore::new(), broken: false.into() });
        let options = crate::InitOptions {
            kdf: crate::format::keyslot::Argon2Params { m_kib: 8192, t: 1, p: 1 },
            ..Default::default()
        };
        let r = Repository::init(store.clone(), &Credentials::passphrase("lock test passphrase"), options).unwrap();
        let held =
            r.lock_timed(LockKind::Shared, "backup", Duration::from_millis(20), Duration::from_millis(400)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        held.ensure_held().expect("refreshed while the store works");
        store.broken.store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(500));
        let e = held.ensure_held().unwrap_err();
        assert!(matches!(e, Error::Locked(_)) && e.to_string().contains("could not be refreshed"), "{e}");
    }

    /// A store whose listing of locks lags: a lock file shows only `lag` after its write.
    struct Lagging {
        inner: MemoryStore,
        written: Mutex<std::collections::HashMap<String, Instant>>,
        lag: Duration,
        settle: Duration,
    }

    impl Store for Lagging {
        fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
            self.written.lock().unwrap().insert(name.to_string(), Instant::now());
            self.inner.put(kind, name, data)
        }
        fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
            self.inner.get(kind, name)
        }
        fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
            self.inner.get_range(kind, name, offset, len)
        }
        fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
            self.inner.size(kind, name)
        }
        fn list(&self, kind: FileKind) -> Result<Vec<String>> {
            let written = self.written.lock().unwrap();
            let mut names = self.inner.list(kind)?;
            if kind == FileKind::Lock {
                names.retain(|n| written.get(n).is_none_or(|t| t.elapsed() >= self.lag));
            }
            Ok(names)
        }
        fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
            self.inner.delete(kind, name)
        }
        fn describe(&self) -> String {
            "lagging".into()
        }
        fn lock_settle(&self) -> Duration {
            self.settle
        }
    }

    /// Two clients take a shared and an exclusive lock at the same moment on a store whose
    /// listings lag: how many of them get it.
    fn race(settle: Duration) -> usize {
        let lag = Duration::from_millis(300);
        let store = Arc::new(Lagging { inner: MemoryStore::new(), written: Mutex::default(), lag, settle });
        let options = crate::InitOptions {
            kdf: crate::format::keyslot::Argon2Params { m_kib: 8192, t: 1, p: 1 },
            ..Default::default()
        };
        let creds = Credentials::passphrase("lock test passphrase");
        drop(Repository::init(store.clone(), &creds, options).unwrap());
        std::thread::sleep(lag);
        let open = || Repository::open(store.clone(), &creds, &crate::OpenOptions::default()).unwrap();
        let (backup, prune) = (open(), open());
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let a = s.spawn(|| {
                barrier.wait();
                backup.lock(LockKind::Shared, "backup").ok()
            });
            let b = s.spawn(|| {
                barrier.wait();
                prune.lock(LockKind::Exclusive, "prune").ok()
            });
            let held = [a.join().unwrap(), b.join().unwrap()];
            held.iter().filter(|l| l.is_some()).count()
        })
    }

    #[test]
    fn a_settle_delay_keeps_a_prune_from_running_beside_a_backup_on_a_lagging_store() {
        assert_eq!(race(Duration::ZERO), 2, "without the delay, both clients miss each other's lock");
        assert!(race(Duration::from_millis(500)) <= 1, "with a delay above the lag, they cannot both hold");
    }

    #[test]
    fn a_held_lock_is_refreshed() {
        let store = Arc::new(MemoryStore::new());
        let r = repo(&store);
        let held = r.lock_with(LockKind::Shared, "backup", Duration::from_millis(20)).unwrap();
        let first = r.locks().unwrap()[0].id;
        std::thread::sleep(Duration::from_millis(200));
        let now = r.locks().unwrap();
        assert_eq!(now.len(), 1, "the old file is removed when the new one is written");
        assert_ne!(now[0].id, first);
        drop(held);
        assert!(r.locks().unwrap().is_empty());
    }
}

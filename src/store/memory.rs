//! A store in memory, for tests and fuzzing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::store::{check_range, not_found, FileKind, Store};

/// A store held in memory. Cloning shares the same files (and the same location).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    files: Arc<Mutex<BTreeMap<String, Arc<Vec<u8>>>>>,
    /// A name no other store of any process shares, for client pins.
    location: Arc<String>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        MemoryStore { files: Arc::default(), location: Arc::new(format!("memory:{}:{n}:{t}", std::process::id())) }
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Every file, by store path (for tests that damage or copy a repository).
    #[must_use]
    pub fn snapshot_files(&self) -> BTreeMap<String, Vec<u8>> {
        self.lock().iter().map(|(k, v)| (k.clone(), v.to_vec())).collect()
    }

    /// Replaces or creates a file by store path, bypassing the create-only rule (tests only:
    /// this is how a test plays an attacker who controls the storage).
    pub fn overwrite(&self, path: &str, data: Vec<u8>) {
        self.lock().insert(path.to_string(), Arc::new(data));
    }

    /// Removes a file by store path, returning whether it existed.
    pub fn remove(&self, path: &str) -> bool {
        self.lock().remove(path).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Vec<u8>>>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn file(&self, kind: FileKind, name: &str) -> Result<Arc<Vec<u8>>> {
        self.lock().get(&kind.path(name)).cloned().ok_or_else(|| not_found(kind, name))
    }
}

impl Store for MemoryStore {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let path = kind.path(name);
        let mut files = self.lock();
        if files.contains_key(&path) {
            return Err(Error::AlreadyExists(path));
        }
        files.insert(path, Arc::new(data.to_vec()));
        Ok(())
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        Ok(self.file(kind, name)?.to_vec())
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let f = self.file(kind, name)?;
        check_range(kind, name, f.len() as u64, offset, len)?;
        let start = usize::try_from(offset).map_err(|_| not_found(kind, name))?;
        Ok(f[start..start + len].to_vec())
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        Ok(self.file(kind, name)?.len() as u64)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        let files = self.lock();
        Ok(files
            .keys()
            .filter_map(|path| match kind {
                FileKind::Config => (path == "config").then(|| path.clone()),
                _ => {
                    let rest = path.strip_prefix(kind.dir())?.strip_prefix('/')?;
                    let name = rest.rsplit('/').next()?;
                    (kind.path(name) == *path).then(|| name.to_string())
                }
            })
            .collect())
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        self.lock().remove(&kind.path(name)).map(|_| ()).ok_or_else(|| not_found(kind, name))
    }

    /// The map is checked and written under one lock.
    fn create_only(&self) -> Option<bool> {
        Some(true)
    }

    fn describe(&self) -> String {
        "memory store".into()
    }

    fn location(&self) -> String {
        self.location.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn contract() {
        crate::store::tests::exercise(&super::MemoryStore::new());
    }
}

//! A repository in a local folder.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Location, Result, ResultExt};
use crate::id::hex_encode;
use crate::store::{check_range, not_found, FileKind, Store, Upload};

/// A store in a local folder. Writes go to a temporary file that is fsynced and then
/// hard-linked into place (which fails instead of overwriting), and the folder is fsynced.
/// Deferred writes ([`Store::put_deferred`]) are fsynced by background threads while the
/// caller goes on, and [`Store::flush`] waits for them.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    pending: Arc<Mutex<Pending>>,
}

/// Deferred writes not yet known to be durable.
#[derive(Debug, Default)]
struct Pending {
    syncs: VecDeque<(PathBuf, JoinHandle<io::Result<()>>)>,
    dirs: BTreeSet<PathBuf>,
}

/// Background fsyncs in flight before a deferred write waits for the oldest.
const MAX_PENDING_SYNCS: usize = 4;

/// Prefix of the temporary names files are written under before they are linked into place.
const TMP_PREFIX: &str = ".tmp-";

const DIRS: [&str; 7] = ["keys", "packs", "index", "snapshots", "locks", "tombstones", "dicts"];

impl LocalStore {
    /// Uses `root` as the repository folder; it must exist.
    ///
    /// # Errors
    /// [`Error::NotARepository`] when `root` is not a folder.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalStore> {
        let root = root.into();
        if !root.is_dir() {
            return Err(Error::NotARepository(format!("{} is not a folder", root.display())));
        }
        Ok(LocalStore { root, pending: Arc::default() })
    }

    /// Creates the repository folder layout at `root` (which may exist but must be empty).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when `root` holds files; [`Error::Io`].
    pub fn create(root: impl Into<PathBuf>) -> Result<LocalStore> {
        let root = root.into();
        let loc = || Location::Path(root.clone());
        if root.exists() {
            if fs::read_dir(&root).at(loc)?.next().is_some() {
                return Err(Error::AlreadyExists(format!("{} is not empty", root.display())));
            }
        } else {
            fs::create_dir_all(&root).at(loc)?;
        }
        for d in DIRS {
            fs::create_dir_all(root.join(d)).at(loc)?;
        }
        sync_dir(&root).at(loc)?;
        Ok(LocalStore { root, pending: Arc::default() })
    }

    /// The repository folder.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `parts` to a temporary file (fsynced when `sync`) and links it to its name;
    /// returns the path and the open file.
    fn write_linked(&self, kind: FileKind, name: &str, parts: &[&[u8]], sync: bool) -> Result<(PathBuf, File)> {
        let path = self.full(kind, name)?;
        let loc = || Location::Path(path.clone());
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).at(loc)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent).at(loc)?;
            }
        }
        if path.exists() {
            return Err(Error::AlreadyExists(kind.path(name)));
        }
        let tmp = dir.join(format!("{TMP_PREFIX}{}", hex_encode(&crate::crypto::random_array::<8>()?)));
        let result = (|| -> io::Result<File> {
            let mut f = File::options().write(true).create_new(true).open(&tmp)?;
            for part in parts {
                f.write_all(part)?;
            }
            if sync {
                f.sync_all()?;
            }
            fs::hard_link(&tmp, &path)?;
            Ok(f)
        })();
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(f) => Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists(kind.path(name))),
            Err(e) => Err(Error::Io(e).at(loc())),
        }
    }

    /// fsyncs `file` on a background thread; [`Store::flush`] waits for it.
    fn sync_later(&self, path: PathBuf, file: File) -> Result<()> {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        while p.syncs.len() >= MAX_PENDING_SYNCS {
            let (old, handle) = p.syncs.pop_front().expect("non-empty");
            join_sync(old, handle)?;
        }
        if let Some(dir) = path.parent() {
            p.dirs.insert(dir.to_path_buf());
        }
        let handle = std::thread::spawn(move || file.sync_all());
        p.syncs.push_back((path, handle));
        Ok(())
    }

    fn full(&self, kind: FileKind, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
            return Err(Error::InvalidArgument(format!("bad repository file name {name:?}")));
        }
        Ok(self.root.join(kind.path(name)))
    }
}

/// A file being written straight to a temporary name in its folder.
struct LocalUpload {
    store: LocalStore,
    kind: FileKind,
    tmp: PathBuf,
    file: Option<io::BufWriter<File>>,
}

impl Upload for LocalUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        let f = self.file.as_mut().ok_or_else(|| Error::Io(io::Error::other("upload already finished")))?;
        f.write_all(data).at(|| Location::Path(self.tmp.clone()))
    }

    fn finish(mut self: Box<Self>, _store: &dyn Store, name: &str) -> Result<()> {
        let path = self.store.full(self.kind, name)?;
        let loc = || Location::Path(path.clone());
        if let Some(parent) = path.parent() {
            if !parent.is_dir() {
                fs::create_dir_all(parent).at(loc)?;
            }
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::Io(io::Error::other("upload already finished")))?
            .into_inner()
            .map_err(|e| Error::Io(e.into_error()).at(loc()))?;
        let linked = fs::hard_link(&self.tmp, &path);
        let _ = fs::remove_file(&self.tmp);
        match linked {
            Ok(()) => self.store.sync_later(path, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists(self.kind.path(name))),
            Err(e) => Err(Error::Io(e).at(loc())),
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn join_sync(path: PathBuf, handle: JoinHandle<io::Result<()>>) -> Result<()> {
    match handle.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Io(e).at(Location::Path(path))),
        Err(_) => Err(Error::Io(io::Error::other("the fsync thread panicked")).at(Location::Path(path))),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn map_not_found(e: io::Error, kind: FileKind, name: &str) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        not_found(kind, name)
    } else {
        Error::Io(e)
    }
}

impl Store for LocalStore {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.put_parts(kind, name, &[data])
    }

    fn put_parts(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        let (path, file) = self.write_linked(kind, name, parts, true)?;
        drop(file);
        sync_dir(path.parent().unwrap_or(&self.root)).at(|| Location::Path(path.clone()))
    }

    fn put_deferred(&self, kind: FileKind, name: &str, parts: &[&[u8]]) -> Result<()> {
        let (path, file) = self.write_linked(kind, name, parts, false)?;
        self.sync_later(path, file)
    }

    fn begin(&self, kind: FileKind) -> Result<Box<dyn Upload>> {
        let dir = self.root.join(kind.dir());
        let loc = || Location::Path(dir.clone());
        fs::create_dir_all(&dir).at(loc)?;
        let tmp = dir.join(format!("{TMP_PREFIX}{}", hex_encode(&crate::crypto::random_array::<8>()?)));
        let file = File::options().write(true).create_new(true).open(&tmp).at(loc)?;
        Ok(Box::new(LocalUpload {
            store: self.clone(),
            kind,
            tmp,
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
        }))
    }

    fn flush(&self) -> Result<()> {
        let (syncs, dirs) = {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            (std::mem::take(&mut p.syncs), std::mem::take(&mut p.dirs))
        };
        let mut first_err = None;
        for (path, handle) in syncs {
            if let Err(e) = join_sync(path, handle) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        for dir in dirs {
            sync_dir(&dir).at(|| Location::Path(dir.clone()))?;
        }
        Ok(())
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let path = self.full(kind, name)?;
        fs::read(&path).map_err(|e| map_not_found(e, kind, name))
    }

    fn get_limited(&self, kind: FileKind, name: &str, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        let path = self.full(kind, name)?;
        let f = File::open(&path).map_err(|e| map_not_found(e, kind, name))?;
        let size = f.metadata().at(|| Location::Path(path.clone()))?.len();
        if size > limit {
            return Err(Error::LimitExceeded { what, found: size, limit });
        }
        // One byte past the limit tells a file that grew since the size check.
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.take(limit.saturating_add(1)).read_to_end(&mut data).at(|| Location::Path(path.clone()))?;
        if data.len() as u64 > limit {
            return Err(Error::LimitExceeded { what, found: data.len() as u64, limit });
        }
        Ok(data)
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let path = self.full(kind, name)?;
        let f = File::open(&path).map_err(|e| map_not_found(e, kind, name))?;
        let file_len = f.metadata()?.len();
        check_range(kind, name, file_len, offset, len)?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset).at(|| Location::Path(path.clone()))?;
        Ok(buf)
    }

    fn get_range_into(&self, kind: FileKind, name: &str, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        let path = self.full(kind, name)?;
        let f = File::open(&path).map_err(|e| map_not_found(e, kind, name))?;
        let file_len = f.metadata()?.len();
        check_range(kind, name, file_len, offset, len)?;
        // Only bytes beyond the buffer's current length are zeroed; reads overwrite the rest.
        buf.resize(len, 0);
        f.read_exact_at(buf, offset).at(|| Location::Path(path.clone()))
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let path = self.full(kind, name)?;
        Ok(fs::metadata(&path).map_err(|e| map_not_found(e, kind, name))?.len())
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        let dir = self.root.join(kind.dir());
        let loc = || Location::Path(dir.clone());
        let mut out = Vec::new();
        let names = |d: &Path, out: &mut Vec<String>| -> Result<()> {
            let rd = match fs::read_dir(d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::Io(e).at(Location::Path(d.to_path_buf()))),
            };
            for entry in rd {
                let entry = entry.at(|| Location::Path(d.to_path_buf()))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') || !entry.file_type().at(|| Location::Path(d.to_path_buf()))?.is_file() {
                    continue;
                }
                out.push(name.to_string());
            }
            Ok(())
        };
        match kind {
            FileKind::Config => {
                if self.root.join("config").is_file() {
                    out.push("config".into());
                }
            }
            FileKind::Pack => {
                let rd = match fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(Error::Io(e).at(loc())),
                };
                for sub in rd {
                    let sub = sub.at(loc)?;
                    if sub.file_type().at(loc)?.is_dir() {
                        names(&sub.path(), &mut out)?;
                    }
                }
            }
            _ => names(&dir, &mut out)?,
        }
        Ok(out)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let path = self.full(kind, name)?;
        fs::remove_file(&path).map_err(|e| map_not_found(e, kind, name))?;
        sync_dir(path.parent().unwrap_or(&self.root)).at(|| Location::Path(path.clone()))
    }

    fn sweep_temporaries(&self, older_than: Duration, dry_run: bool) -> Result<(u64, u64)> {
        let mut dirs = vec![self.root.clone()];
        dirs.extend(DIRS.iter().map(|d| self.root.join(d)));
        let packs = self.root.join(FileKind::Pack.dir());
        match fs::read_dir(&packs) {
            Ok(rd) => {
                for sub in rd {
                    let sub = sub.at(|| Location::Path(packs.clone()))?;
                    if sub.file_type().at(|| Location::Path(packs.clone()))?.is_dir() {
                        dirs.push(sub.path());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e).at(Location::Path(packs))),
        }
        let now = SystemTime::now();
        let (mut count, mut bytes) = (0u64, 0u64);
        for dir in dirs {
            let loc = || Location::Path(dir.clone());
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::Io(e).at(loc())),
            };
            let mut removed_here = false;
            for entry in rd {
                let entry = entry.at(loc)?;
                if !entry.file_name().to_str().is_some_and(|n| n.starts_with(TMP_PREFIX)) {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::Io(e).at(Location::Path(entry.path()))),
                };
                let modified = meta.modified().at(|| Location::Path(entry.path()))?;
                // A clock set back makes every file look new: then nothing is swept.
                let idle = now.duration_since(modified).unwrap_or_default();
                if !meta.is_file() || idle < older_than {
                    continue;
                }
                if !dry_run {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => removed_here = true,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Error::Io(e).at(Location::Path(entry.path()))),
                    }
                }
                count += 1;
                // A writer killed between linking and unlinking leaves a second name of a
                // real file: removing it frees nothing.
                if meta.nlink() == 1 {
                    bytes += meta.len();
                }
            }
            if removed_here {
                sync_dir(&dir).at(loc)?;
            }
        }
        Ok((count, bytes))
    }

    /// Hard links never replace a name.
    fn create_only(&self) -> Option<bool> {
        Some(true)
    }

    fn local_path(&self, kind: FileKind, name: &str) -> Option<PathBuf> {
        self.full(kind, name).ok()
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    /// The folder's absolute path with links resolved, so that `repo`, `./repo` and
    /// `/home/me/repo` share one pin.
    fn location(&self) -> String {
        fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone()).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::create(dir.path().join("repo")).unwrap();
        crate::store::tests::exercise(&store);
        assert!(LocalStore::create(dir.path().join("repo")).is_err(), "refuses a non-empty folder");
        // No temporary files are left behind.
        let leftovers: Vec<_> = walk(store.root()).into_iter().filter(|p| p.contains(".tmp-")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert!(store.put(FileKind::Index, "../x", b"").is_err());
    }

    #[test]
    fn limited_reads_stop_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::create(dir.path().join("repo")).unwrap();
        let name = "cd".repeat(32);
        store.put(FileKind::Index, &name, &[5u8; 1000]).unwrap();
        assert_eq!(store.get_limited(FileKind::Index, &name, 1000, "index file").unwrap().len(), 1000);
        let err = store.get_limited(FileKind::Index, &name, 999, "index file").unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { what: "index file", found: 1000, limit: 999 }), "{err}");
        let err = store.get_limited(FileKind::Index, &"ef".repeat(32), 10, "index file").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn sweep_removes_only_old_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::create(dir.path().join("repo")).unwrap();
        store.put(FileKind::Pack, &"ab".repeat(32), b"a pack").unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let make = |rel: &str, len: usize, old: bool| {
            let path = store.root().join(rel);
            fs::write(&path, vec![7u8; len]).unwrap();
            if old {
                File::options().write(true).open(&path).unwrap().set_modified(hour_ago).unwrap();
            }
            path
        };
        let killed_pack = make("packs/ab/.tmp-0011223344556677", 1000, true);
        let killed_upload = make("packs/.tmp-8899aabbccddeeff", 500, true);
        let killed_config = make(".tmp-0000000000000000", 20, true);
        let writing_now = make("index/.tmp-1111111111111111", 300, false);
        let not_ours = make("snapshots/.hidden", 10, true);
        // Killed between linking a pack into place and removing its temporary name.
        let second_name = store.root().join("packs/ab/.tmp-2222222222222222");
        fs::hard_link(store.root().join("packs/ab").join("ab".repeat(32)), &second_name).unwrap();
        File::options().write(true).open(&second_name).unwrap().set_modified(hour_ago).unwrap();
        let window = Duration::from_secs(1800);

        assert_eq!(store.sweep_temporaries(window, true).unwrap(), (4, 1520), "a second name frees no bytes");
        assert!(killed_pack.exists(), "a dry run removes nothing");
        assert_eq!(store.sweep_temporaries(window, false).unwrap(), (4, 1520));
        for gone in [&killed_pack, &killed_upload, &killed_config, &second_name] {
            assert!(!gone.exists(), "{} swept", gone.display());
        }
        assert!(writing_now.exists(), "a file written within the window stays");
        assert!(not_ours.exists(), "only temporary names are swept");
        assert_eq!(store.get(FileKind::Pack, &"ab".repeat(32)).unwrap(), b"a pack");
        assert_eq!(store.sweep_temporaries(window, false).unwrap(), (0, 0));
    }

    fn walk(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path().display().to_string());
            }
        }
        out
    }
}

//! The restore's side of the local file system. Every call here works relative to an open
//! folder handle and never follows a symlink: the target folder is opened once, each folder
//! below it is created (`mkdirat`, 0700) or opened (`O_DIRECTORY | O_NOFOLLOW`) from its
//! parent's handle, files are created `O_CREAT | O_EXCL` (0600) or anonymous (`O_TMPFILE`, no
//! name at all) from their folder's handle, and renames, links and removals name a single
//! component inside a held folder. A symlink planted
//! anywhere inside the target therefore fails the one path it sits on (`ELOOP`/`ENOTDIR`), and
//! nothing is ever written where it points.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::RestoreWarning;
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::snapshot::Node;

/// What is said of a path that is taken in the target (and `overwrite` is off).
const EXISTS: &str = "in the target (not overwritten)";

/// The failure of a path that is taken in the target (and `overwrite` is off).
pub(super) fn exists_error() -> Error {
    Error::AlreadyExists(EXISTS.into())
}

/// A failure on the target's side, as an I/O error (its kind kept) that says what was being
/// done.
pub(super) fn local(what: &str, e: impl Into<io::Error>) -> Error {
    let e = e.into();
    Error::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Folders below the target: read-only handle, never through a symlink.
const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);
/// A new temporary file: only ever one this restore creates (`O_EXCL` never follows a
/// symlink and never opens a file that is already there).
const NEW_FILE: OFlags =
    OFlags::WRONLY.union(OFlags::CREATE).union(OFlags::EXCL).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);
/// Reopening a temporary file the restore created (only past the descriptor budget).
/// `NONBLOCK`: a FIFO planted under the name fails at once instead of hanging the restore.
const REOPEN_FILE: OFlags = OFlags::WRONLY.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC).union(OFlags::NONBLOCK);
/// A new anonymous file (`O_TMPFILE`): no name until [`link_anon`] gives it its final one.
const ANON_FILE: OFlags = OFlags::WRONLY.union(OFlags::TMPFILE).union(OFlags::CLOEXEC);
/// Files are created readable by their owner only; the final mode comes at the end.
const NEW_FILE_MODE: u32 = 0o600;
/// Folders are created usable by their owner only; the final mode comes at the end.
const NEW_DIR_MODE: u32 = 0o700;

/// A file's identity (device, inode), to recognise a handle reopened by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of an open file.
    #[allow(clippy::useless_conversion)] // the fields are narrower than u64 on some targets
    pub fn of(fd: impl AsFd) -> io::Result<FileId> {
        let st = rfs::fstat(fd)?;
        Ok(FileId { dev: st.st_dev.into(), ino: st.st_ino.into() })
    }
}

/// How many descriptors a restore may hold open: three quarters of the soft `RLIMIT_NOFILE`
/// (at least 64 stay for the rest of the process).
pub(super) fn descriptor_budget() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1 << 20);
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    soft.saturating_sub((soft / 4).max(64))
}

/// The mode a restored file or folder ends with: setuid, setgid and sticky are dropped unless
/// asked for (owners are not recorded, so a restore as root would otherwise create setuid-root
/// files from whatever the snapshot says).
pub(super) fn final_mode(mode: u32, keep_special_bits: bool) -> Mode {
    Mode::from_raw_mode(if keep_special_bits { mode & 0o7777 } else { mode & 0o777 })
}

fn timespec(node: &Node) -> Timespec {
    Timespec { tv_sec: node.mtime_secs, tv_nsec: node.mtime_nanos.into() }
}

/// Modification time from the node; access time left alone.
pub(super) fn mtime(node: &Node) -> Timestamps {
    Timestamps { last_access: Timespec { tv_sec: 0, tv_nsec: rfs::UTIME_OMIT }, last_modification: timespec(node) }
}

/// Both times from the node (a symlink's own times).
pub(super) fn both_times(node: &Node) -> Timestamps {
    Timestamps { last_access: timespec(node), last_modification: timespec(node) }
}

/// Creates the target folder if needed (missing components 0700), opens it, and lists the
/// warnings about who else can write there.
pub(super) fn open_root(target: &Path) -> Result<(OwnedFd, Vec<RestoreWarning>)> {
    let at = || Location::Path(target.to_path_buf());
    std::fs::DirBuilder::new().recursive(true).mode(NEW_DIR_MODE).create(target).at(at)?;
    // The target itself may be a symlink: it is the caller's choice of folder. Below it,
    // nothing is followed.
    let root = rfs::openat(rfs::CWD, target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(io::Error::from)
        .at(at)?;
    let real = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let mut warnings = Vec::new();
    let root_mode = rfs::fstat(&root).map(|st| st.st_mode).map_err(io::Error::from).at(at)?;
    if world_writable(root_mode) {
        warnings.push(RestoreWarning::WorldWritable { path: real.clone(), mode: root_mode & 0o7777 });
    }
    for p in real.ancestors().skip(1) {
        if let Ok(md) = std::fs::metadata(p) {
            if world_writable(md.mode()) {
                warnings.push(RestoreWarning::WorldWritable { path: p.to_path_buf(), mode: md.mode() & 0o7777 });
            }
        }
    }
    Ok((root, warnings))
}

/// Writable by every user, without the sticky bit that would stop them renaming or removing
/// what others put there.
fn world_writable(mode: u32) -> bool {
    mode & 0o002 != 0 && mode & 0o1000 == 0
}

/// One planned folder.
struct DirSlot<'p> {
    name: &'p OsStr,
    parent: Option<usize>,
    state: DirState,
}

enum DirState {
    /// Not created: it or a folder above it failed.
    Failed,
    /// Created or opened. `fresh`: this restore made it (0700, so nobody else put anything in
    /// it). `fd`: held open while the descriptor budget allows; otherwise reopened from the
    /// nearest held folder above, checked against `id`.
    Ready { id: FileId, fresh: bool, fd: Option<OwnedFd> },
}

/// What [`Dirs::make`] did.
pub(super) enum Made {
    /// The folder exists now and is usable.
    Ready,
    /// A folder above it failed (already reported).
    UnderFailed,
    /// It failed, for this reason.
    Failed(Error),
}

/// A handle to a folder: held by [`Dirs`], or opened for one use.
pub(super) enum DirRef<'a> {
    Held(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl AsFd for DirRef<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirRef::Held(fd) => *fd,
            DirRef::Opened(fd) => fd.as_fd(),
        }
    }
}

/// The target folder and every planned folder below it (indices of the plan's folders).
pub(super) struct Dirs<'p> {
    root: OwnedFd,
    slots: Vec<DirSlot<'p>>,
    /// Folder handles to hold open at most; the others are reopened when needed.
    budget: usize,
    held: usize,
}

impl<'p> Dirs<'p> {
    pub fn new(root: OwnedFd, budget: usize) -> Dirs<'p> {
        Dirs { root, slots: Vec::new(), budget, held: 0 }
    }

    /// The target folder's handle.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Creates (0700) or opens the next planned folder, `name` inside `parent` (which must have
    /// been made before). Never goes through a symlink: a symlink or file under the name fails
    /// this folder and everything below it.
    pub fn make(&mut self, name: &'p OsStr, parent: Result<Option<usize>>) -> Made {
        let parent_index = parent.as_ref().ok().copied().flatten();
        let result = match parent {
            Err(why) => Err(Made::Failed(why)),
            Ok(p) if !self.is_ready(p) => Err(Made::UnderFailed),
            Ok(p) => self.open_in(p, name).map_err(Made::Failed),
        };
        let (made, state) = match result {
            Ok((fd, fresh, id)) => {
                let fd = (self.held < self.budget).then_some(fd);
                self.held += usize::from(fd.is_some());
                (Made::Ready, DirState::Ready { id, fresh, fd })
            }
            Err(made) => (made, DirState::Failed),
        };
        self.slots.push(DirSlot { name, parent: parent_index, state });
        made
    }

    fn open_in(&self, parent: Option<usize>, name: &OsStr) -> Result<(OwnedFd, bool, FileId)> {
        let dir = self.get(parent).map_err(|e| local("cannot open the folder it is in", e))?;
        let (fd, fresh) = Self::create_or_open(&dir, name)?;
        let id = FileId::of(&fd).map_err(|e| local("cannot open folder", e))?;
        Ok((fd, fresh, id))
    }

    fn create_or_open(parent: &DirRef<'_>, name: &OsStr) -> Result<(OwnedFd, bool)> {
        let fresh = match rfs::mkdirat(parent, name, Mode::from_raw_mode(NEW_DIR_MODE)) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(e) => return Err(local("cannot create folder", e)),
        };
        match rfs::openat(parent, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok((fd, fresh)),
            Err(e @ (Errno::LOOP | Errno::NOTDIR)) => Err(Error::Io(io::Error::new(
                io::Error::from(e).kind(),
                "cannot create folder: exists and is not a folder (symlinks are not followed)",
            ))),
            Err(e) => Err(local("cannot open folder", e)),
        }
    }

    /// True when folder `d` exists (it and every folder above it were made).
    pub fn is_ready(&self, d: Option<usize>) -> bool {
        d.is_none_or(|d| matches!(self.slots[d].state, DirState::Ready { .. }))
    }

    /// True when this restore created folder `d`: nobody else can have put a file in it.
    pub fn is_fresh(&self, d: Option<usize>) -> bool {
        d.is_some_and(|d| matches!(self.slots[d].state, DirState::Ready { fresh: true, .. }))
    }

    /// A handle to folder `d` (`None`: the target). A folder not held open is reopened from the
    /// nearest held folder above it, one component at a time without following symlinks, and
    /// each step must be the folder made before (same device and inode).
    pub fn get(&self, d: Option<usize>) -> io::Result<DirRef<'_>> {
        let mut chain = Vec::new();
        let mut cur = d;
        let base = loop {
            let Some(i) = cur else { break DirRef::Held(self.root.as_fd()) };
            match &self.slots[i].state {
                DirState::Failed => return Err(io::Error::other("the folder could not be created")),
                DirState::Ready { fd: Some(fd), .. } => break DirRef::Held(fd.as_fd()),
                DirState::Ready { fd: None, .. } => {
                    chain.push(i);
                    cur = self.slots[i].parent;
                }
            }
        };
        let mut dir = base;
        for &i in chain.iter().rev() {
            let DirState::Ready { id, .. } = &self.slots[i].state else {
                return Err(io::Error::other("the folder could not be created"));
            };
            let fd = rfs::openat(&dir, self.slots[i].name, DIR_FLAGS, Mode::empty())?;
            if FileId::of(&fd)? != *id {
                return Err(io::Error::other("the folder was replaced by another one during the restore"));
            }
            dir = DirRef::Opened(fd);
        }
        Ok(dir)
    }

    /// Sets folder `d`'s final mode and time through its handle.
    pub fn finish(&self, d: usize, mode: Mode, times: &Timestamps) -> io::Result<()> {
        let dir = self.get(Some(d))?;
        rfs::fchmod(&dir, mode)?;
        rfs::futimens(&dir, times)?;
        Ok(())
    }
}

/// Creates temporary file `tmp` in `dir` (0600, never an existing file or a symlink).
pub(super) fn create_temp(dir: impl AsFd, tmp: &str) -> io::Result<File> {
    Ok(File::from(rfs::openat(dir, tmp, NEW_FILE, Mode::from_raw_mode(NEW_FILE_MODE))?))
}

/// Creates an anonymous file in `dir` (`O_TMPFILE`) with permission bits `mode` (less the
/// umask). It has no name, so no other user can open it (only a process allowed to trace this
/// one, through `/proc`) before [`link_anon`] names it complete; the final mode can therefore
/// be given at creation. `Ok(None)`: the file system has no anonymous files (use a named
/// temporary file).
pub(super) fn create_anon(dir: impl AsFd, mode: Mode) -> io::Result<Option<File>> {
    match rfs::openat(dir, ".", ANON_FILE, mode) {
        Ok(fd) => Ok(Some(File::from(fd))),
        // Kernels and file systems without O_TMPFILE say one of these.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// True when this process can name anonymous files through `/proc/self/fd` (the way
/// [`link_anon`] uses where `AT_EMPTY_PATH` needs a privilege this process lacks).
pub(super) fn proc_fd_available() -> bool {
    rfs::statat(rfs::CWD, "/proc/self/fd", AtFlags::empty()).is_ok()
}

/// The process's umask, read from `/proc/self/status` without changing it (setting it to read
/// it would race with other threads creating files); `None` when unknown.
pub(super) fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// Gives anonymous file `file` its final name `name` in `dir`. Never replaces: a name that is
/// taken (even one that appeared during the restore) fails with [`EXISTS`]. `linkat` with
/// `AT_EMPTY_PATH` where allowed (it needs `CAP_DAC_READ_SEARCH` on older kernels), else through
/// `/proc/self/fd`; `proc_only` remembers that the first way is refused, to save a failing call
/// per file.
pub(super) fn link_anon(file: &File, dir: BorrowedFd<'_>, name: &OsStr, proc_only: &AtomicBool) -> Result<()> {
    let fail = |e: Errno| match e {
        Errno::EXIST => exists_error(),
        e => local("cannot link into place", e),
    };
    if !proc_only.load(Ordering::Relaxed) {
        match rfs::linkat(file, "", dir, name, AtFlags::EMPTY_PATH) {
            Ok(()) => return Ok(()),
            Err(Errno::NOENT | Errno::PERM | Errno::ACCESS | Errno::INVAL) => proc_only.store(true, Ordering::Relaxed),
            Err(e) => return Err(fail(e)),
        }
    }
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(file));
    rfs::linkat(rfs::CWD, path.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW).map_err(fail)
}

/// Reopens temporary file `tmp` in `dir`, which must still be the file `id` this restore
/// created: a symlink, FIFO or other file planted under the name is refused.
pub(super) fn reopen_temp(dir: impl AsFd, tmp: &str, id: FileId) -> io::Result<File> {
    let file = File::from(rfs::openat(dir, tmp, REOPEN_FILE, Mode::empty())?);
    if FileId::of(&file)? != id {
        return Err(io::Error::other("the temporary file was replaced by another file"));
    }
    Ok(file)
}

/// Sets a file's final mode (unless `None`: it was created with it) and
/// modification time through its handle.
pub(super) fn set_meta(file: &File, mode: Option<Mode>, times: &Timestamps) -> io::Result<()> {
    if let Some(mode) = mode {
        rfs::fchmod(file, mode)?;
    }
    rfs::futimens(file, times)?;
    Ok(())
}

/// True when `name` exists in `dir` (anything, a symlink included). An error other than "not
/// there" counts as absent: creating the file will then report it.
pub(super) fn exists(dir: impl AsFd, name: &OsStr) -> bool {
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// Removes `name` from `dir` (a temporary file this restore made); errors are ignored, as
/// the restore reports the file's first failure instead.
pub(super) fn remove(dir: impl AsFd, name: &str) {
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
}

/// Renames temporary file `tmp` to `name`, both in `dir`. Without `overwrite` a name that is
/// taken (even one that appeared during the restore) fails with [`EXISTS`] and is never
/// replaced: `RENAME_NOREPLACE`, or where the file system lacks it (`EINVAL`), a hard link
/// (which fails on an existing name) and removal of the temporary name. `no_noreplace`
/// remembers that the flag is unsupported, to save a failing call per file.
pub(super) fn place(
    dir: BorrowedFd<'_>,
    tmp: &str,
    name: &OsStr,
    overwrite: bool,
    no_noreplace: &AtomicBool,
) -> Result<()> {
    if overwrite {
        return rfs::renameat(dir, tmp, dir, name).map_err(|e| local("cannot rename into place", e));
    }
    if !no_noreplace.load(Ordering::Relaxed) {
        match rfs::renameat_with(dir, tmp, dir, name, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(Errno::EXIST) => return Err(exists_error()),
            Err(Errno::INVAL | Errno::NOSYS) => no_noreplace.store(true, Ordering::Relaxed),
            Err(e) => return Err(local("cannot rename into place", e)),
        }
    }
    link_into_place(dir, tmp, name)
}

/// The fallback of [`place`]: `linkat` (fails if `name` exists), then removes `tmp`.
pub(super) fn link_into_place(dir: BorrowedFd<'_>, tmp: &str, name: &OsStr) -> Result<()> {
    match rfs::linkat(dir, tmp, dir, name, AtFlags::empty()) {
        Ok(()) => {
            remove(dir, tmp);
            Ok(())
        }
        Err(Errno::EXIST) => Err(exists_error()),
        Err(e) => Err(local("cannot link into place (the file system supports no rename that refuses to replace)", e)),
    }
}

/// Creates symlink `name` → `link` in `dir`, with its own times. With `overwrite`, a file or
/// symlink under the name is replaced (a folder never is).
pub(super) fn symlink(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    link: &[u8],
    overwrite: bool,
    times: &Timestamps,
) -> Result<()> {
    let fail = |e: Errno| local("cannot create symlink", e);
    match rfs::symlinkat(link, dir, name) {
        Ok(()) => {}
        Err(Errno::EXIST) if overwrite => {
            let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(fail)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(exists_error());
            }
            rfs::unlinkat(dir, name, AtFlags::empty()).map_err(fail)?;
            rfs::symlinkat(link, dir, name).map_err(fail)?;
        }
        Err(Errno::EXIST) => return Err(exists_error()),
        Err(e) => return Err(fail(e)),
    }
    rfs::utimensat(dir, name, times, AtFlags::SYMLINK_NOFOLLOW).map_err(fail)
}

/// Flushes the file system holding `dir` to disk.
pub(super) fn sync(dir: BorrowedFd<'_>, what: &str, target: &Path) -> Result<()> {
    rfs::syncfs(dir).map_err(|e| {
        Error::Io(io::Error::other(format!("flushing {what} to disk: {e}"))).at(Location::Path(PathBuf::from(target)))
    })
}

//! Random access to one file of a snapshot, without a folder: [`Repository::open_file`] gives a
//! [`FileReader`] (`Read + Seek`) that fetches only the chunks a read touches.
//!
//! Opening resolves every chunk of the file through the index (no pack is read): their raw
//! lengths give each chunk's offset in the file, so a seek is a binary search and a read of a
//! few bytes costs one ranged read of one pack, the chunk's. The last [`CACHED_CHUNKS`] chunks
//! read stay decoded: reads that walk forward in small steps, or go back a little (a database
//! reading a page header, then the page), do not fetch a chunk twice. With chunks of about
//! 1 MiB, that is 4 MiB of memory per reader at most.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};

use crate::error::{Error, Location, Result, ResultExt};
use crate::format::snapshot::{NodeContent, SnapshotRecord};
use crate::id::Id;
use crate::pack::{BlobLocation, PackReader};
use crate::repo::{FileMeta, Repository};

/// Decoded chunks a [`FileReader`] keeps.
pub(crate) const CACHED_CHUNKS: usize = 4;

/// Reads one file of a snapshot (see [`Repository::open_file`]).
///
/// A chunk that cannot be read (its pack is missing, or it fails its integrity check) fails
/// the read that needs it with an [`io::Error`] whose inner error is the library's [`Error`],
/// naming the path (get it back with `io::Error::into_inner` and `downcast`); the kind is
/// [`io::ErrorKind::InvalidData`] for damage and [`io::ErrorKind::NotFound`] for a missing
/// pack. Reads of other chunks go on working.
pub struct FileReader<'r> {
    reader: PackReader<'r>,
    path: String,
    meta: FileMeta,
    size: u64,
    /// The chunks, in file order, and where each begins in the file.
    chunks: Vec<(Id, BlobLocation)>,
    starts: Vec<u64>,
    pos: u64,
    /// Recently read chunks, most recent first: (index into `chunks`, plaintext).
    cache: VecDeque<(usize, Vec<u8>)>,
    /// Chunks fetched from the store so far.
    fetched: u64,
}

impl std::fmt::Debug for FileReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("chunks", &self.chunks.len())
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// Opens the file at `path` (`/`-separated, inside the snapshot) for reading, without
    /// restoring anything: the reader fetches only the chunks that reads touch (see
    /// [`FileReader`]). Takes no lock: a prune running at the same time shows as missing data.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the path does not exist; [`Error::InvalidArgument`] when it
    /// is a folder or a symlink; errors reading the trees on the way; [`Error::NotFound`] or
    /// [`Error::Integrity`] when the index does not know the file's chunks (lost data). Each
    /// names the path.
    pub fn open_file(&self, snapshot: &SnapshotRecord, path: &str) -> Result<FileReader<'_>> {
        let at = || Location::SnapshotPath(path.to_string());
        let root = self.load_tree(&snapshot.root).at(|| Location::SnapshotPath("/".into()))?;
        let Some(step) = self.follow_path(&root, path)?.pop() else {
            return Err(Error::InvalidArgument("the root of a snapshot is a folder, not a file".into()).at(at()));
        };
        let node = step.node;
        let (size, ids) = match &node.content {
            NodeContent::File { size, chunks } => (*size, chunks),
            NodeContent::Dir { .. } => return Err(Error::InvalidArgument("a folder, not a file".into()).at(at())),
            NodeContent::Symlink { .. } => return Err(Error::InvalidArgument("a symlink, not a file".into()).at(at())),
        };
        let locs = self.resolve_chunks(ids, size).at(at)?;
        let mut starts = Vec::with_capacity(locs.len());
        let mut offset = 0u64;
        for loc in &locs {
            starts.push(offset);
            offset += u64::from(loc.raw_len);
        }
        Ok(FileReader {
            reader: PackReader::new(self.store.as_ref(), &self.keys),
            path: step.path,
            meta: FileMeta { mode: node.mode, mtime_secs: node.mtime_secs, mtime_nanos: node.mtime_nanos },
            size,
            chunks: ids.iter().map(|c| c.0).zip(locs).collect(),
            starts,
            pos: 0,
            cache: VecDeque::with_capacity(CACHED_CHUNKS + 1),
            fetched: 0,
        })
    }
}

impl FileReader<'_> {
    /// The file's length.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file's path inside the snapshot.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file's mode and modification time.
    #[must_use]
    pub fn meta(&self) -> FileMeta {
        self.meta
    }

    /// Chunks fetched from the store so far (a chunk read again after it left the cache
    /// counts again).
    #[must_use]
    pub fn chunks_fetched(&self) -> u64 {
        self.fetched
    }

    /// The chunk holding byte `pos` (which must be below the size).
    fn chunk_at(&self, pos: u64) -> usize {
        self.starts.partition_point(|&s| s <= pos) - 1
    }

    /// Puts chunk `i`'s plaintext first in the cache, from the store if it is not there.
    fn load(&mut self, i: usize) -> Result<()> {
        if let Some(hit) = self.cache.iter().position(|(c, _)| *c == i) {
            let entry = self.cache.remove(hit).expect("position found above");
            self.cache.push_front(entry);
        } else {
            let (id, loc) = self.chunks[i];
            let plain = self.reader.read_blob(&id, &loc).at(|| Location::SnapshotPath(self.path.clone()))?;
            self.fetched += 1;
            self.cache.push_front((i, plain));
            self.cache.truncate(CACHED_CHUNKS);
        }
        Ok(())
    }
}

/// The `io::Error` a failed chunk read becomes: the library's error inside, its kind by class.
pub(super) fn io_error(e: Error) -> io::Error {
    let kind = match e.kind() {
        crate::ErrorKind::NotFound => io::ErrorKind::NotFound,
        crate::ErrorKind::Cancelled => io::ErrorKind::Interrupted,
        crate::ErrorKind::Integrity | crate::ErrorKind::Malformed => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        let i = self.chunk_at(self.pos);
        let within = usize::try_from(self.pos - self.starts[i]).expect("a chunk is below 4 GiB");
        self.load(i).map_err(io_error)?;
        let Some(rest) = self.cache[0].1.get(within..) else {
            let e = Error::Integrity(format!("chunk {} is shorter than the index says", self.chunks[i].0.short()));
            return Err(io_error(e.at(Location::SnapshotPath(self.path.clone()))));
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileReader<'_> {
    /// Seeking past the end is allowed (reads there return 0 bytes); before the start is an
    /// [`io::ErrorKind::InvalidInput`] error.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(n) => (n, 0),
            SeekFrom::End(d) => (self.size, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        let new = base.checked_add_signed(delta).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the file (or past u64::MAX)")
        })?;
        self.pos = new;
        Ok(new)
    }
}

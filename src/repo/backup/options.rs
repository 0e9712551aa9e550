//! What an archiver chooses per stream, per folder and per snapshot.
//!
//! A messaging app's backup holds very different data side by side: a message database that
//! changes pages in place, per-conversation logs that only grow, and media that is already
//! compressed. One repository-wide choice fits none of them well, so these are chosen per
//! stream ([`StreamOptions`]) and per folder ([`DirOptions`]); the snapshot's description is
//! the app's to give ([`SnapshotInfo`]), not the environment's.
//!
//! None of these choices is recorded in the repository: a chunk is a chunk whatever cut it or
//! however it was compressed (the blob records its codec, format-spec.md §5.4), so restore and
//! check never need to know them.

/// How a stream is cut into chunks (format-spec.md §5.3.1).
///
/// A writer's choice: readers need nothing to know it, but the same file should keep its
/// policy from night to night, or the night it changes stores it again. Every policy is keyed
/// by the repository's chunker key and cuts only where the bytes before the cut decide it, so
/// cuts are reproducible across nights and devices. New policies arrive as new variants (a
/// frozen algorithm is never changed in place: that would change every repository's dedup).
///
/// Append mode resumes at the start of the old last chunk: [`ChunkPolicy::Auto`] cuts an
/// append stream as [`ChunkPolicy::Cdc`], without sniffing, so the resumed cuts are those of a
/// full read and only the small last chunk is read and stored again each night (measured with
/// `examples/chat_backup.rs`: 24 growing logs read 1.2–1.5 MB a night and the repository grew
/// 5.1–6.0 MB, against 6.6–6.9 MB read and 6.3–7.2 MB grown when they were cut as
/// [`ChunkPolicy::Text`], whose last chunk is up to 4 MiB); [`ChunkPolicy::Database`] needs the file's header and
/// reads an append stream in full ([`AppendFallback::PageAligned`](crate::AppendFallback::PageAligned)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ChunkPolicy {
    /// Chosen from the stream's first 64 KiB: a SQLite database or WAL header →
    /// [`Database`](ChunkPolicy::Database); anything else (text, media, unknown binary) →
    /// [`Cdc`](ChunkPolicy::Cdc). Append streams are cut as [`Cdc`](ChunkPolicy::Cdc) too.
    /// (Measured on the generated 1 GiB dataset: JSON exports rewritten daily with a shift
    /// add 17.5–19.6 MB a day in 1 MiB text chunks against 10.0–10.6 MB in 64 KiB ones, which
    /// outweighs the 3.2 MB text chunks save on day 1; logs that only grow re-store only their
    /// tail.)
    #[default]
    Auto,
    /// Keyed FastCDC 2020 with the repository's parameters (format-spec.md §5.3, by default
    /// 16/64/256 KiB): content defined, so an insertion moves only the chunks around it. For
    /// media and unknown data.
    Cdc,
    /// Keyed FastCDC 2020 with large chunks (256 KiB / 1 MiB / 4 MiB): text and logs that only
    /// grow, where dedup comes from the unchanged prefix and zstd gains from long windows.
    Text,
    /// Page-aligned, for SQLite databases and their WAL files (detected by header; another
    /// stream is cut as [`Cdc`](ChunkPolicy::Cdc)): one chunk per page (WAL: per frame), so a
    /// page changed in place changes exactly one chunk and appended pages add chunks at the
    /// end.
    Database,
    /// One chunk per file, for small files that always change as a whole; a file over 16 MiB
    /// is cut as [`Text`](ChunkPolicy::Text).
    WholeFile,
}

impl ChunkPolicy {
    /// What the first bytes of a stream (its first 64 KiB, or all of it when shorter) look
    /// like: [`Database`](ChunkPolicy::Database) (a SQLite database or WAL header),
    /// [`Text`](ChunkPolicy::Text) (UTF-8 text) or [`Cdc`](ChunkPolicy::Cdc) (anything else).
    /// [`ChunkPolicy::Auto`] cuts `Database` page-aligned and the others with
    /// [`Cdc`](ChunkPolicy::Cdc) (append streams as `Cdc`, unsniffed).
    #[must_use]
    pub fn sniff(head: &[u8]) -> ChunkPolicy {
        use crate::chunker::stream::Cutting;
        match Cutting::sniff(head) {
            Cutting::Pages(_) => ChunkPolicy::Database,
            Cutting::Text => ChunkPolicy::Text,
            _ => ChunkPolicy::Cdc,
        }
    }

    /// The cutter for a stream under this policy (`append`: the stream resumes, so it is not
    /// sniffed).
    pub(crate) fn cutting(self, append: bool) -> crate::chunker::stream::Cutting {
        use crate::chunker::stream::Cutting;
        match self {
            ChunkPolicy::Auto if append => Cutting::Cdc,
            ChunkPolicy::Auto => Cutting::Sniff,
            ChunkPolicy::Cdc => Cutting::Cdc,
            ChunkPolicy::Text => Cutting::Text,
            ChunkPolicy::Database => Cutting::SniffPages,
            ChunkPolicy::WholeFile => Cutting::Whole,
        }
    }
}

/// Whether a stream's chunks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CompressionHint {
    /// zstd at the repository's level; a chunk that does not shrink is stored raw.
    #[default]
    Auto,
    /// No compression: the chunks are sealed raw. For data that is already compressed (media,
    /// archives), where zstd costs time and gains nothing. A chunk that is already stored
    /// (compressed or not) is not stored again.
    Store,
}

impl CompressionHint {
    /// The zstd level to seal with (`None`: raw), given the repository's level.
    pub(crate) fn level(self, repo_level: i32) -> Option<i32> {
        match self {
            CompressionHint::Auto => Some(repo_level),
            CompressionHint::Store => None,
        }
    }
}

/// Choices for one stream (see [`BackupSession::add_stream_with`](crate::BackupSession::add_stream_with)).
/// Build with `..Default::default()`: the defaults are what
/// [`add_stream`](crate::BackupSession::add_stream) does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// How the stream is cut into chunks.
    pub chunking: ChunkPolicy,
    /// Whether its chunks are compressed.
    pub compression: CompressionHint,
    /// The stream only grows (a message log): its old version in the parent snapshot is
    /// checked cheaply and reused, and only its last chunk and the new bytes are read (see
    /// [`AppendSource`](crate::AppendSource)). The source must be able to seek; if it cannot,
    /// or the old version does not match, the stream is read in full and the outcome says why
    /// ([`BackupOutcome::appends`](crate::BackupOutcome::appends)).
    pub append: bool,
}

/// Choices for a folder added with
/// [`BackupSession::add_dir_with`](crate::BackupSession::add_dir_with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirOptions {
    /// Globs naming files that only grow, matched against the path relative to the folder
    /// (`*` and `?` stop at `/`, `**` crosses it: `**/*.log` is every log at any depth). A
    /// matching file that changed since the last backup is treated as an append stream: its
    /// old version comes from the files cache, or else from the parent snapshot.
    pub append_only: Vec<String>,
    /// Chunking policies by glob (matched like `append_only`; the first match wins). Files
    /// no glob matches get [`ChunkPolicy::Auto`].
    pub chunking: Vec<(String, ChunkPolicy)>,
    /// Whether the folder's chunks are compressed.
    pub compression: CompressionHint,
}

/// How the snapshot describes itself (see [`BackupSession::commit`](crate::BackupSession::commit)).
///
/// The snapshot record has no free-form label (format-spec.md §5.9): a tag serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Free-form tags (at most 4096 together with the source paths, each at most 4096 bytes).
    pub tags: Vec<String>,
    /// The device's name as the app knows it (e.g. "alice-phone"); `None` takes the machine's
    /// host name. At most 4096 bytes.
    pub hostname: Option<String>,
    /// The user's name as the app knows it; `None` takes `$USER`. At most 4096 bytes.
    pub username: Option<String>,
}

impl SnapshotInfo {
    /// A description with these tags and the rest from the environment.
    #[must_use]
    pub fn tagged<I, S>(tags: I) -> SnapshotInfo
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SnapshotInfo { tags: tags.into_iter().map(Into::into).collect(), ..SnapshotInfo::default() }
    }
}

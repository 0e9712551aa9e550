//! Page-aligned chunking for SQLite databases and their write-ahead logs (format-spec.md §5.3.1).
//!
//! SQLite changes a database in place, one page at a time, and only grows it at the end: a
//! page never moves because another was inserted before it (VACUUM rewrites the file, and
//! everything changes then whatever the chunker). So content-defined chunks, which exist to
//! survive insertions, buy nothing here, and large ones cost a lot: on the generated 1 GiB,
//! 5-day chat dataset (`/work/shared/bench/gen_history.py`, 4 KiB pages) a day rewrites 1,421
//! of the 31,451 pages of the 129 MB `msgstore.db` in place, scattered over the whole file
//! (index inserts, edits, reactions), and appends 979 pages. The bytes a day re-stores, by
//! group size (pages per chunk, groups aligned to page numbers; zlib-3 per group as a stand-in
//! for zstd, day 1 → day 2):
//!
//! | pages per chunk | chunks touched | raw MB | compressed MB |
//! |---:|---:|---:|---:|
//! | 1 | 2,400 | 9.83 | 4.79 |
//! | 2 | 1,823 | 14.93 | 7.45 |
//! | 4 | 1,471 | 24.09 | 11.93 |
//! | 16 | 990 | 64.87 | 31.26 |
//! | 64 (256 KiB) | 450 | 117.89 | 56.16 |
//!
//! The changed pages are isolated, so the bytes stored grow almost linearly with the group
//! size; a content-defined grouping of pages (cut after a page whose keyed hash hits) would be
//! no better, since it also needs groups of several pages to have any choice, and worse in one
//! respect: an edit can move its group's cut, changing two chunks. So the groups are fixed,
//! aligned to page numbers, [`GROUP_PAGES`] pages each: an in-place edit changes exactly one
//! chunk and appended pages add chunks only at the end. The price of one page per chunk is on
//! day 1 (each 4 KiB page compressed alone: 67.6 MB instead of 61.6 MB in 256 KiB pieces,
//! +10 %) and in metadata (the database's chunk list in its tree, 32 bytes per page, stored
//! again each day). Measured end to end with `bench/growth.sh` (BENCHMARKS.md, "Chunking
//! policies"): 6.19–6.69 MB stored a day for the database instead of 38.8–41.8 MB with 64 KiB
//! FastCDC chunks (16 KiB borg: 22.5 MB), for 10 MB more on day 1 (73.1 against 63.1 MB).
//!
//! The groups are keyed like every other cut: the first group is shortened by a phase taken
//! from the repository's gear table, so two repositories group the same pages differently
//! (with one page per group there is nothing to key: every page boundary is a cut, and page
//! boundaries are public knowledge of the SQLite format, not of the content). Since cuts
//! depend only on their position, they are the same on every night and every device, and a
//! grown file's cuts extend the old ones.

/// Pages per chunk (chosen by measurement, module docs).
pub const GROUP_PAGES: u64 = 1;

/// Units (pages or frames) of a file cut in groups of [`GROUP_PAGES`]; the units after them
/// are cut in groups of [`TAIL_GROUP_BYTES`]. A file's chunk list lives in its folder's tree
/// (32 bytes a chunk, a tree at most 64 MiB), so one chunk per page would make a folder
/// holding an 8 GiB database (or a 1 GiB one with 512-byte pages) impossible to commit. With
/// the first 2^18 units (1 GiB of 4 KiB pages) one chunk each and 64 KiB after them, a file
/// reaches that bound only at about 110 GiB, as with 64 KiB FastCDC chunks. Both bounds are
/// positions, so cuts stay the same night after night.
pub const SMALL_GROUP_UNITS: u64 = 1 << 18;
/// Bytes of whole units per chunk after the first [`SMALL_GROUP_UNITS`] units (at least one
/// unit).
pub const TAIL_GROUP_BYTES: u64 = 64 << 10;

/// The layout of a SQLite file, read from its header: where its pages (or frames) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFile {
    /// A main database: pages of `page` bytes from offset 0.
    Database {
        /// Page size in bytes (512..=65536, a power of two).
        page: u32,
    },
    /// A write-ahead log (`-wal`): a 32-byte header, then frames of a 24-byte header and one
    /// page each.
    Wal {
        /// Page size in bytes (512..=65536, a power of two).
        page: u32,
    },
}

/// The main database header's magic (its first 16 bytes).
const DB_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// The WAL header's magics (big-endian u32 at offset 0; the low bit names the checksum order).
const WAL_MAGICS: [u32; 2] = [0x377f_0682, 0x377f_0683];
/// Bytes of a WAL header and of a WAL frame header.
const WAL_HEADER: u64 = 32;
const WAL_FRAME_HEADER: u64 = 24;

fn valid_page(page: u32) -> bool {
    (512..=65536).contains(&page) && page.is_power_of_two()
}

impl PageFile {
    /// The layout named by the first bytes of a file, if they are a SQLite database header
    /// (100 bytes: magic, page size at 16 as a big-endian u16 where 1 means 65536) or a WAL
    /// header (32 bytes: magic, page size at 8 as a big-endian u32). Anything else, including
    /// a page size that is not a power of two from 512 to 65536, is `None`.
    #[must_use]
    pub fn sniff(head: &[u8]) -> Option<PageFile> {
        if head.len() >= 100 && head.starts_with(DB_MAGIC) {
            let page = match u16::from_be_bytes([head[16], head[17]]) {
                1 => 65536,
                p => u32::from(p),
            };
            return valid_page(page).then_some(PageFile::Database { page });
        }
        if head.len() >= WAL_HEADER as usize {
            let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let page = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
            if WAL_MAGICS.contains(&magic) && valid_page(page) {
                return Some(PageFile::Wal { page });
            }
        }
        None
    }

    /// Bytes before the first unit (page or frame), and bytes per unit.
    fn units(self) -> (u64, u64) {
        match self {
            PageFile::Database { page } => (0, u64::from(page)),
            PageFile::Wal { page } => (WAL_HEADER, WAL_FRAME_HEADER + u64::from(page)),
        }
    }

    /// Length of the chunk that starts at absolute offset `offset` with bytes `data`, or
    /// `None` when more input is needed (`eof`: `data` is all that remains). Chunks end after
    /// unit `b` (counting from 1) where `(b + phase) % group == 0`, and after unit
    /// [`SMALL_GROUP_UNITS`]; after that unit, they end after unit `SMALL_GROUP_UNITS + k·t`
    /// (k ≥ 1) where `t` = max(1, [`TAIL_GROUP_BYTES`] / unit bytes); a WAL's header goes with
    /// its first frames; the file's last chunk is whatever remains (a partial unit too).
    #[must_use]
    pub fn next_cut(self, group: u64, phase: u64, offset: u64, data: &[u8], eof: bool) -> Option<usize> {
        let group = group.max(1);
        let (head, unit) = self.units();
        let done = offset.saturating_sub(head) / unit;
        let b = if done < SMALL_GROUP_UNITS {
            let b = done + 1;
            (b + (group - (b + phase) % group) % group).min(SMALL_GROUP_UNITS)
        } else {
            let tail = (TAIL_GROUP_BYTES / unit).max(1);
            let rel = done - SMALL_GROUP_UNITS + 1;
            SMALL_GROUP_UNITS + rel + (tail - rel % tail) % tail
        };
        let len = usize::try_from(head + b * unit - offset).unwrap_or(usize::MAX);
        if data.len() >= len {
            Some(len)
        } else if eof {
            Some(data.len())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_header(page: u16) -> Vec<u8> {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(DB_MAGIC);
        h[16..18].copy_from_slice(&page.to_be_bytes());
        h
    }

    #[test]
    fn units_past_the_first_2_pow_18_are_cut_in_64_kib_groups() {
        let db = PageFile::Database { page: 4096 };
        let data = vec![0u8; 1 << 20];
        let edge = SMALL_GROUP_UNITS * 4096;
        assert_eq!(db.next_cut(1, 0, edge - 4096, &data, false), Some(4096), "the last single page");
        assert_eq!(db.next_cut(1, 0, edge, &data, false), Some(64 << 10), "then 16 pages a chunk");
        assert_eq!(db.next_cut(1, 0, edge + (64 << 10), &data, false), Some(64 << 10));
        // Resuming in the middle of a group (append mode) ends where a full read ends.
        assert_eq!(db.next_cut(1, 0, edge + 3 * 4096, &data, false), Some(13 * 4096));
        // 512-byte pages: 128 pages a chunk after the first 2^18.
        let small = PageFile::Database { page: 512 };
        assert_eq!(small.next_cut(1, 0, SMALL_GROUP_UNITS * 512, &data, false), Some(64 << 10));
        // A WAL: as many whole frames of 24 + 16384 bytes as fit in 64 KiB (3) after its
        // first 2^18 frames; a frame bigger than 64 KiB goes alone.
        let wal = PageFile::Wal { page: 16384 };
        let at = WAL_HEADER + SMALL_GROUP_UNITS * (WAL_FRAME_HEADER + 16384);
        assert_eq!(wal.next_cut(1, 0, at, &data, false), Some(3 * (24 + 16384)));
        let big = PageFile::Wal { page: 65536 };
        let at = WAL_HEADER + SMALL_GROUP_UNITS * (WAL_FRAME_HEADER + 65536);
        assert_eq!(big.next_cut(1, 0, at, &data, false), Some(24 + 65536));
        // The chunks of a 10 GiB database stay far below a tree's 2 million chunk ids.
        let units = (10u64 << 30) / 4096;
        let chunks = SMALL_GROUP_UNITS + (units - SMALL_GROUP_UNITS).div_ceil(16);
        assert!(chunks < 1_000_000, "{chunks}");
    }

    #[test]
    fn sniffs_database_and_wal_headers() {
        assert_eq!(PageFile::sniff(&db_header(4096)), Some(PageFile::Database { page: 4096 }));
        assert_eq!(PageFile::sniff(&db_header(1)), Some(PageFile::Database { page: 65536 }));
        assert_eq!(PageFile::sniff(&db_header(512)), Some(PageFile::Database { page: 512 }));
        for bad in [0, 256, 3000, 4097, 32769] {
            assert_eq!(PageFile::sniff(&db_header(bad)), None, "page size {bad}");
        }
        assert_eq!(PageFile::sniff(&db_header(4096)[..99]), None, "short header");
        let mut wal = vec![0u8; 32];
        wal[..4].copy_from_slice(&0x377f_0683u32.to_be_bytes());
        wal[8..12].copy_from_slice(&8192u32.to_be_bytes());
        assert_eq!(PageFile::sniff(&wal), Some(PageFile::Wal { page: 8192 }));
        wal[3] = 0x82;
        assert_eq!(PageFile::sniff(&wal), Some(PageFile::Wal { page: 8192 }));
        wal[3] = 0x84;
        assert_eq!(PageFile::sniff(&wal), None);
        assert_eq!(PageFile::sniff(b"SQLite format 3"), None);
    }

    fn cuts(f: PageFile, group: u64, phase: u64, len: usize) -> Vec<usize> {
        let data = vec![0u8; len];
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < len {
            let n = f.next_cut(group, phase, pos as u64, &data[pos..], true).unwrap();
            pos += n;
            out.push(pos);
        }
        out
    }

    #[test]
    fn cuts_fall_on_page_and_frame_boundaries() {
        let db = PageFile::Database { page: 4096 };
        assert_eq!(cuts(db, 1, 0, 3 * 4096 + 10), vec![4096, 8192, 12288, 12298]);
        let wal = PageFile::Wal { page: 1024 };
        assert_eq!(cuts(wal, 1, 0, 32 + 2 * 1048), vec![32 + 1048, 32 + 2 * 1048]);
        // Groups of 4 pages with phase 1: the first group has 3 pages.
        assert_eq!(cuts(db, 4, 1, 10 * 4096), vec![3 * 4096, 7 * 4096, 10 * 4096]);
        assert_eq!(cuts(wal, 2, 0, 32 + 5 * 1048), vec![32 + 2 * 1048, 32 + 4 * 1048, 32 + 5 * 1048]);
        // Not enough input yet: wait; at the end: the rest.
        assert_eq!(db.next_cut(1, 0, 0, &[0; 4095], false), None);
        assert_eq!(db.next_cut(1, 0, 0, &[0; 4095], true), Some(4095));
        assert_eq!(db.next_cut(1, 0, 4096, &[], true), Some(0));
        // From any boundary the next cut is the same as in a full read (append resumes).
        for (group, phase) in [(1, 0), (4, 3), (8, 5)] {
            let full = cuts(db, group, phase, 40 * 4096);
            // (The last chunk ends at the end of the data, not at a group's end.)
            for (i, &c) in full.iter().enumerate().take(full.len() - 2) {
                let next = db.next_cut(group, phase, c as u64, &vec![0; 1 << 20], false);
                assert_eq!(next, Some(full[i + 1] - c));
            }
        }
    }
}

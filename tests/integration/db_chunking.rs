//! Chunking policies per stream (issue 12): SQLite databases and WAL files cut at page
//! boundaries store only the pages that changed, text logs are cut in large chunks, and the
//! policy is chosen by sniffing the content.

use std::io::Cursor;
use std::path::Path;

use packvault::{ChunkPolicy, FileMeta, Repository, SnapshotInfo, StreamOptions};
use rusqlite::Connection;

use crate::append::{file_chunks, restored};
use crate::new_local_repo;
use crate::vectors::noise::noise;

const PAGE: usize = 4096;
const META: FileMeta = FileMeta { mode: 0o644, mtime_secs: 0, mtime_nanos: 0 };

/// Deterministic chat-like text lines (about `len` bytes).
fn chat_text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] =
        &["hello", "see", "you", "tomorrow", "at", "the", "station", "ok", "lol", "thanks", "dinner", "photo", "send"];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 100);
    let mut n = 0u64;
    while out.len() < len {
        n += 1;
        out.extend_from_slice(format!("[2026-01-01 12:{:02}] user{}: ", n % 60, n % 7).as_bytes());
        for _ in 0..(3 + n % 9) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
            out.push(b' ');
        }
        out.push(b'\n');
    }
    out
}

/// Raw bytes of the chunks of `path` in `after` that `before` did not have (each counted once).
fn new_bytes(
    repo: &Repository,
    before: &packvault::format::snapshot::SnapshotRecord,
    after: &packvault::format::snapshot::SnapshotRecord,
    path: &str,
) -> u64 {
    let old: std::collections::HashSet<_> = file_chunks(repo, before, path).1.into_iter().collect();
    let new: std::collections::HashSet<_> =
        file_chunks(repo, after, path).1.into_iter().filter(|c| !old.contains(c)).collect();
    let index = repo.index();
    new.iter().map(|c| u64::from(index.lookup(&c.0).unwrap().unwrap().raw_len)).sum()
}

fn backup_dir(repo: &mut Repository, dir: &Path) -> packvault::BackupOutcome {
    let mut s = repo.backup().unwrap();
    s.add_dir(dir, "").unwrap();
    s.commit(SnapshotInfo::default()).unwrap()
}

fn open_db(path: &Path, journal: &str) -> Connection {
    let db = Connection::open(path).unwrap();
    db.execute_batch(&format!(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = {journal}; PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, thread INTEGER, body TEXT);
         CREATE INDEX IF NOT EXISTS by_thread ON messages (thread, id);"
    ))
    .unwrap();
    db
}

fn insert(db: &Connection, from: i64, to: i64) {
    let tx = db.unchecked_transaction().unwrap();
    {
        let mut stmt = tx.prepare("INSERT INTO messages (id, thread, body) VALUES (?1, ?2, ?3)").unwrap();
        for i in from..to {
            let body = String::from_utf8(chat_text(120 + (i as usize * 37) % 300, i as u64)).unwrap();
            stmt.execute(rusqlite::params![i, (i * 7919) % 97, body]).unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Pages (of `unit` bytes after `head` bytes) of `new` that differ from `old` or are beyond it.
fn changed_units(old: &[u8], new: &[u8], head: usize, unit: usize) -> usize {
    let units = |b: &[u8]| b.len().saturating_sub(head).div_ceil(unit);
    (0..units(new))
        .filter(|&i| {
            let r = head + i * unit..(head + (i + 1) * unit).min(new.len());
            old.get(r.clone()) != Some(&new[r])
        })
        .count()
}

#[test]
fn a_sqlite_database_changed_in_place_stores_only_its_changed_pages_and_restores_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let path = src.join("msgstore.db");
    {
        let db = open_db(&path, "DELETE");
        insert(&db, 0, 20_000);
    }
    let v1 = std::fs::read(&path).unwrap();
    assert!(v1.len() > 4 << 20, "a database of several MiB ({} bytes)", v1.len());
    let (_store, mut repo) = new_local_repo(tmp.path());
    let day1 = backup_dir(&mut repo, &src);
    assert_eq!(file_chunks(&repo, &day1.record, "msgstore.db").1.len(), v1.len() / PAGE, "one chunk per page");

    // A night's changes, in place and appended: a few rows updated, some deleted, new ones.
    {
        let db = open_db(&path, "DELETE");
        db.execute("UPDATE messages SET body = 'edited' WHERE id % 1500 = 7", []).unwrap();
        db.execute("DELETE FROM messages WHERE id % 4000 = 11", []).unwrap();
        insert(&db, 20_000, 20_600);
    }
    let v2 = std::fs::read(&path).unwrap();
    let changed = changed_units(&v1, &v2, 0, PAGE);
    let appended = v2.len().saturating_sub(v1.len()) / PAGE;
    assert!(changed > appended && changed < v2.len() / PAGE / 4, "{changed} pages changed, {appended} appended");
    // Make sure the files cache cannot take the file unread.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let day2 = backup_dir(&mut repo, &src);
    let new_raw = new_bytes(&repo, &day1.record, &day2.record, "msgstore.db");
    assert!(new_raw > 0);
    assert!(
        new_raw <= (changed * PAGE) as u64,
        "stored {new_raw} new raw bytes for {changed} changed pages ({} bytes)",
        changed * PAGE
    );
    // Every new chunk is exactly one changed page (no other file, no equal pages here).
    assert_eq!(new_raw, (changed * PAGE) as u64);
    assert_eq!(day2.record.summary.new_data_blobs as usize, changed);
    assert_eq!(restored(&repo, &day2.record, "msgstore.db", tmp.path()), v2);
    assert_eq!(restored(&repo, &day1.record, "msgstore.db", &tmp.path().join("d1")), v1);
}

#[test]
fn a_wal_database_restores_bit_exact_with_its_wal_and_new_frames_store_only_themselves() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let path = src.join("chat.db");
    let wal_path = src.join("chat.db-wal");
    let (_store, mut repo) = new_local_repo(tmp.path());
    // The connection stays open: the WAL is not checkpointed into the database.
    let db = open_db(&path, "WAL");
    insert(&db, 0, 3000);
    let wal1 = std::fs::read(&wal_path).unwrap();
    assert!(wal1.len() > 100 * PAGE, "a WAL of {} bytes", wal1.len());
    assert_eq!(ChunkPolicy::sniff(&wal1), ChunkPolicy::Database);
    let day1 = backup_dir(&mut repo, &src);
    let frame = PAGE + 24;
    assert_eq!(file_chunks(&repo, &day1.record, "chat.db-wal").1.len(), (wal1.len() - 32) / frame, "one per frame");

    insert(&db, 3000, 3200);
    let wal2 = std::fs::read(&wal_path).unwrap();
    let db2 = std::fs::read(&path).unwrap();
    let shm2 = std::fs::read(src.join("chat.db-shm")).unwrap();
    let changed = changed_units(&wal1, &wal2, 32, frame);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let day2 = backup_dir(&mut repo, &src);
    // The database file did not change (everything went to the WAL), and of the WAL only
    // the new frames are stored.
    assert_eq!(new_bytes(&repo, &day1.record, &day2.record, "chat.db"), 0);
    let wal_new = new_bytes(&repo, &day1.record, &day2.record, "chat.db-wal");
    assert!(wal_new > 0 && wal_new <= (changed * frame) as u64, "stored {wal_new} bytes for {changed} new frames");
    assert!(shm2.len() <= 64 << 10);
    assert_eq!(restored(&repo, &day2.record, "chat.db-wal", tmp.path()), wal2);
    assert_eq!(restored(&repo, &day2.record, "chat.db", &tmp.path().join("db")), db2);
    drop(db);
}

#[test]
fn an_appended_log_cut_as_text_is_cut_in_large_chunks_and_restores_at_most_its_last_chunk() {
    // An append stream the caller asks to cut as text (by default append streams get the
    // repository's FastCDC: `append::` tests that).
    let as_text = StreamOptions { chunking: ChunkPolicy::Text, append: true, ..Default::default() };
    let tmp = tempfile::tempdir().unwrap();
    let (_store, mut repo) = new_local_repo(tmp.path());
    let log = chat_text(8 << 20, 5);
    let day1_len = 6 << 20;
    let mut s = repo.backup().unwrap();
    s.add_stream_with("chat.log", Cursor::new(log[..day1_len].to_vec()), META, as_text.clone()).unwrap();
    let day1 = s.commit(SnapshotInfo::default()).unwrap();
    let (_, old) = file_chunks(&repo, &day1.record, "chat.log");
    // Text chunks: 256 KiB to 4 MiB (about 1 MiB), not the repository's 64 KiB.
    assert!(old.len() <= 12, "{} chunks for 6 MiB of text", old.len());
    let last_len = repo.index().lookup(&old.last().unwrap().0).unwrap().unwrap().raw_len as u64;

    let grown = day1_len + 300_000;
    let mut s = repo.backup().unwrap();
    s.add_stream_with("chat.log", Cursor::new(log[..grown].to_vec()), META, as_text.clone()).unwrap();
    let day2 = s.commit(SnapshotInfo::default()).unwrap();
    assert!(day2.appends[0].resumed(), "{:?}", day2.appends[0]);
    let new_raw = new_bytes(&repo, &day1.record, &day2.record, "chat.log");
    assert!(new_raw <= last_len + 300_000, "re-stored {new_raw} bytes: last chunk {last_len} + 300000 new");
    let (_, now) = file_chunks(&repo, &day2.record, "chat.log");
    assert_eq!(now[..old.len() - 1], old[..old.len() - 1], "every chunk but the last is kept");
    assert_eq!(restored(&repo, &day2.record, "chat.log", tmp.path()), log[..grown]);
    // The same bytes read in full under the text policy give the same chunks.
    let mut s = repo.backup().unwrap();
    let text = StreamOptions { chunking: ChunkPolicy::Text, ..Default::default() };
    s.add_stream_with("full.log", Cursor::new(log[..grown].to_vec()), META, text).unwrap();
    let full = s.commit(SnapshotInfo::default()).unwrap();
    assert_eq!(file_chunks(&repo, &full.record, "full.log").1, now);
    assert_eq!(full.record.summary.new_data_blobs, 0);
}

#[test]
fn sniffing_picks_the_policy_by_content_and_the_pipeline_cuts_by_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let db = open_db(&src.join("m.db"), "WAL");
    insert(&db, 0, 2000);
    let db_bytes = std::fs::read(src.join("m.db")).unwrap();
    let wal = std::fs::read(src.join("m.db-wal")).unwrap();
    let text = chat_text(3 << 20, 9);
    let json = br#"{"messages": [{"sender_name": "Ren\u00e9", "content": "h\u00e9 \u00e7a va"}]}"#;
    let mut jpeg = noise(3 << 20, 4).to_vec();
    jpeg[..4].copy_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
    std::fs::write(src.join("export.txt"), &text).unwrap();
    std::fs::write(src.join("IMG-1.jpg"), &jpeg).unwrap();

    assert_eq!(ChunkPolicy::sniff(&db_bytes), ChunkPolicy::Database);
    assert_eq!(ChunkPolicy::sniff(&wal), ChunkPolicy::Database);
    assert_eq!(ChunkPolicy::sniff(&text[..64 << 10]), ChunkPolicy::Text);
    assert_eq!(ChunkPolicy::sniff(json), ChunkPolicy::Text);
    assert_eq!(ChunkPolicy::sniff("Grüße 🙂\n".as_bytes()), ChunkPolicy::Text);
    assert_eq!(ChunkPolicy::sniff(&jpeg[..64 << 10]), ChunkPolicy::Cdc);
    assert_eq!(ChunkPolicy::sniff(b""), ChunkPolicy::Cdc);
    assert_eq!(ChunkPolicy::sniff(&db_bytes[..99]), ChunkPolicy::Cdc, "a cut-off header is not a database");

    let (_store, mut repo) = new_local_repo(tmp.path());
    let out = backup_dir(&mut repo, &src);
    let chunks = |p: &str| file_chunks(&repo, &out.record, p).1.len();
    assert_eq!(chunks("m.db"), db_bytes.len() / PAGE);
    assert_eq!(chunks("m.db-wal"), (wal.len() - 32) / (PAGE + 24));
    // Text read in full is cut like media (measured: see `ChunkPolicy::Auto`).
    assert!(chunks("export.txt") >= 24, "text in the repository's chunks: {}", chunks("export.txt"));
    assert!(chunks("IMG-1.jpg") >= 24, "media in the repository's chunks: {}", chunks("IMG-1.jpg"));
    // The caller's choice wins over sniffing.
    let mut s = repo.backup().unwrap();
    let chosen = StreamOptions { chunking: ChunkPolicy::Text, ..Default::default() };
    s.add_stream_with("t.txt", Cursor::new(text.clone()), META, chosen).unwrap();
    let out = s.commit(SnapshotInfo::default()).unwrap();
    assert!(file_chunks(&repo, &out.record, "t.txt").1.len() <= 6);
    drop(db);
}

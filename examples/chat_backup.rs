//! A messaging app's nightly backup, the way an app embeds packvault.
//!
//! ```sh
//! cargo run --release --example chat_backup            # 3 days, 24 conversations
//! cargo run --release --example chat_backup -- --days 5 --threads 40 --scale 4
//! ```
//!
//! The app's storage, built here with real SQLite (rusqlite, bundled):
//! - `msgstore.db`: every message in one SQLite database (a table and an index), as chat apps
//!   keep it; each day inserts new rows and edits a few old ones in place (reactions, edits);
//! - `threads/<n>/messages.log`: one append-only log per conversation (JSON lines), which
//!   only ever grows;
//! - `threads/<n>/media/*.jpg`: attachments; a forwarded photo sits byte-identical in two
//!   conversations.
//!
//! Each simulated day the app backs up into the same repository: the database as a stream, each
//! log as an append stream (only the new bytes and one chunk are read back), the media folders
//! through the files cache (unchanged files are not read). It prints, per day, the bytes read
//! from the app's storage, the bytes the repository grew by, and the time. Then a new phone
//! restores one conversation into memory (no folder), and reads the end of another log at a
//! random offset without restoring anything.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions as FsOpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use packvault::format::keyslot::Argon2Params;
use packvault::{
    ClientState, Credentials, FileMeta, InitOptions, LocalStore, MemorySink, OpenOptions, Repository, SinkOptions,
    SnapshotInfo,
};

const WORDS: &[&str] = &[
    "the", "see", "you", "at", "tonight", "ok", "love", "haha", "when", "are", "we", "meeting", "train", "late",
    "sorry", "coffee", "tomorrow", "photo", "sent", "thanks", "great", "idea", "call", "me", "later", "yes", "no",
    "maybe", "dinner", "mum", "birthday", "party", "where", "home", "work", "weekend", "beach", "🙂", "😂", "❤️",
];
const NAMES: &[&str] = &["ana", "ben", "chloé", "dmitri", "eun-ji", "farah", "gus", "hiro"];

/// xorshift64*: fixed, so every run builds the same history.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn text(&mut self) -> String {
        let words = 3 + self.below(14);
        (0..words).map(|_| WORDS[self.below(WORDS.len())]).collect::<Vec<_>>().join(" ")
    }
}

struct Params {
    days: u32,
    threads: usize,
    first_day_messages: usize,
    messages_per_day: usize,
    media_per_day: usize,
}

/// The app's storage folder and its database connection.
struct ChatStore {
    root: PathBuf,
    db: rusqlite::Connection,
    rng: Rng,
    next_id: u64,
    threads: usize,
}

impl ChatStore {
    fn create(root: &Path, threads: usize) -> rusqlite::Result<ChatStore> {
        fs::create_dir_all(root).expect("app folder");
        let db = rusqlite::Connection::open(root.join("msgstore.db"))?;
        db.execute_batch(
            "PRAGMA journal_mode = DELETE;
             CREATE TABLE messages (id INTEGER PRIMARY KEY, thread INTEGER NOT NULL, sender TEXT NOT NULL,
                                    sent_at INTEGER NOT NULL, body TEXT NOT NULL, media TEXT);
             CREATE INDEX messages_by_thread ON messages (thread, sent_at);",
        )?;
        Ok(ChatStore { root: root.to_path_buf(), db, rng: Rng::new(7), next_id: 1, threads })
    }

    fn thread_dir(&self, t: usize) -> PathBuf {
        self.root.join(format!("threads/{t:04}"))
    }

    /// One day of chatting: new messages in the database and the logs, new media (some
    /// forwarded into a second conversation), and a few old messages edited in place.
    fn live_a_day(&mut self, day: u32, messages: usize, media: usize) -> rusqlite::Result<()> {
        let tx = self.db.transaction()?;
        let mut logs: BTreeMap<usize, String> = BTreeMap::new();
        for i in 0..messages {
            // Conversations are not equally busy: a third of them get most of the traffic.
            let t = if self.rng.below(3) == 0 {
                self.rng.below(self.threads)
            } else {
                self.rng.below(self.threads / 3 + 1)
            };
            let id = self.next_id;
            self.next_id += 1;
            let sender = NAMES[self.rng.below(NAMES.len())];
            let sent_at = 1_764_547_200_000u64 + u64::from(day) * 86_400_000 + i as u64 * 4_001;
            let body = self.rng.text();
            tx.execute(
                "INSERT INTO messages (id, thread, sender, sent_at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![id as i64, t as i64, sender, sent_at as i64, body],
            )?;
            logs.entry(t).or_default().push_str(&format!(
                "{{\"id\":{id},\"sender\":\"{sender}\",\"sent_at\":{sent_at},\"body\":\"{body}\"}}\n"
            ));
        }
        // Reactions and edits rewrite old rows: SQLite changes those pages in place.
        for _ in 0..messages / 50 {
            let id = 1 + self.rng.below(self.next_id as usize - 1) as u64;
            tx.execute("UPDATE messages SET body = body || ' ❤️' WHERE id = ?1", rusqlite::params![id as i64])?;
        }
        for k in 0..media {
            let t = self.rng.below(self.threads);
            let len = 20_000 + self.rng.below(300_000);
            let mut bytes = vec![0u8; len];
            for c in bytes.chunks_mut(8) {
                let v = self.rng.next().to_le_bytes();
                c.copy_from_slice(&v[..c.len()]);
            }
            bytes[..4].copy_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
            let name = format!("IMG-{day:03}-{k:04}.jpg");
            let root = &self.root;
            let write_to = |t: usize| {
                let dir = root.join(format!("threads/{t:04}/media"));
                fs::create_dir_all(&dir).expect("media folder");
                fs::write(dir.join(&name), &bytes).expect("media file");
            };
            write_to(t);
            if k % 4 == 0 {
                write_to((t + 1) % self.threads); // forwarded: the same bytes in another chat
            }
        }
        tx.commit()?;
        for (t, lines) in logs {
            let dir = self.thread_dir(t);
            fs::create_dir_all(&dir).expect("thread folder");
            let mut log = FsOpenOptions::new().create(true).append(true).open(dir.join("messages.log")).expect("log");
            log.write_all(lines.as_bytes()).expect("append");
        }
        Ok(())
    }
}

fn meta_of(path: &Path) -> FileMeta {
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(path).expect("metadata");
    FileMeta { mode: md.mode() & 0o7777, mtime_secs: md.mtime(), mtime_nanos: md.mtime_nsec() as u32 }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let md = e.metadata().expect("metadata");
        total += if md.is_dir() { dir_bytes(&e.path()) } else { md.len() };
    }
    total
}

fn mib(n: u64) -> String {
    format!("{:.2}M", n as f64 / (1u64 << 20) as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut p = Params { days: 3, threads: 24, first_day_messages: 60_000, messages_per_day: 3_000, media_per_day: 30 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value =
            || -> Result<usize, Box<dyn std::error::Error>> { Ok(args.next().ok_or("a value is missing")?.parse()?) };
        match a.as_str() {
            "--days" => p.days = u32::try_from(value()?)?,
            "--threads" => p.threads = value()?.max(1),
            "--scale" => {
                let s = value()?.max(1);
                p.first_day_messages *= s;
                p.messages_per_day *= s;
                p.media_per_day *= s;
            }
            _ => {
                return Err(
                    format!("unknown argument {a}; usage: chat_backup [--days N] [--threads N] [--scale N]").into()
                )
            }
        }
    }

    let work = tempfile::tempdir()?;
    let app = work.path().join("app");
    let repo_dir = work.path().join("repo");
    let mut chats = ChatStore::create(&app, p.threads)?;

    // The app's own folders for the repository's local caches and this device's pins.
    let state = ClientState::Dir(work.path().join("state"));
    let cache = work.path().join("cache");
    let creds = Credentials::passphrase("a long passphrase the user chose once");
    let store = Arc::new(LocalStore::create(&repo_dir)?);
    let init = InitOptions {
        // Cheap for the example; the default is Argon2id with 256 MiB and 3 passes.
        kdf: Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 },
        state: state.clone(),
        cache_dir: Some(cache.clone()),
        ..InitOptions::default()
    };
    drop(Repository::init(store.clone(), &creds, init)?);

    println!(
        "day  messages   app size  read: database      logs     media  repo grew  logs resumed  media unchanged   time"
    );
    let mut last = None;
    for day in 1..=p.days {
        let messages = if day == 1 { p.first_day_messages } else { p.messages_per_day };
        chats.live_a_day(day, messages, p.media_per_day)?;
        // Night falls. The files cache trusts a file's times only once they are more than a
        // second older than the backup (a file still being written could change unseen).
        std::thread::sleep(std::time::Duration::from_millis(1100));

        // The nightly job: open, back up, commit, close.
        let started = Instant::now();
        let before = dir_bytes(&repo_dir);
        let options = OpenOptions { state: state.clone(), cache_dir: Some(cache.clone()), ..OpenOptions::default() };
        let mut repo = Repository::open(store.clone(), &creds, &options)?;
        let mut backup = repo.backup()?;
        let db = app.join("msgstore.db");
        backup.add_stream("msgstore.db", File::open(&db)?, meta_of(&db))?;
        for t in 0..p.threads {
            let dir = chats.thread_dir(t);
            let log = dir.join("messages.log");
            if log.exists() {
                backup.add_append_stream(&format!("threads/{t:04}/messages.log"), File::open(&log)?, meta_of(&log))?;
            }
            if dir.join("media").exists() {
                backup.add_dir(&dir.join("media"), &format!("threads/{t:04}/media"))?;
            }
        }
        let info = SnapshotInfo {
            hostname: Some("alice-phone".into()),
            tags: vec!["nightly".into()],
            ..SnapshotInfo::default()
        };
        let outcome = backup.commit(info)?;
        let elapsed = started.elapsed();
        let logs_read: u64 = outcome.appends.iter().map(|a| a.bytes_read).sum();
        let resumed = outcome.appends.iter().filter(|a| a.resumed()).count();
        let db_read = fs::metadata(&db)?.len();
        let media_read = outcome.record.summary.bytes_read - logs_read - db_read;
        println!(
            "{day:>3}  {messages:>8}  {:>9}  {:>14}  {:>8}  {:>8}  {:>9}  {:>6} of {:>3}  {:>8} files  {:.2} s",
            mib(dir_bytes(&app)),
            mib(db_read),
            mib(logs_read),
            mib(media_read),
            mib(dir_bytes(&repo_dir) - before),
            resumed,
            outcome.appends.len(),
            outcome.files_unchanged,
            elapsed.as_secs_f64()
        );
        last = Some(outcome.record);
    }
    let record = last.ok_or("no day was backed up")?;

    // A new phone: the same passphrase, its own (empty) state and cache.
    let phone = OpenOptions { state: ClientState::Dir(work.path().join("new-phone")), ..OpenOptions::default() };
    let repo = Repository::open(store.clone(), &creds, &phone)?;
    let conversation = format!("threads/{:04}", 1);
    let started = Instant::now();
    let mut sink = MemorySink::default();
    let only = SinkOptions { include: vec![conversation.clone()], ..SinkOptions::default() };
    let report = repo.restore_to(&record, &only, &mut sink)?;
    if !report.is_complete() {
        return Err(format!("restore incomplete: {:?}", report.failed).into());
    }
    let mut restored = 0u64;
    for (path, bytes) in &sink.files {
        let original = fs::read(app.join(path))?;
        if original[..] != bytes[..] {
            return Err(format!("{path} differs from the app's copy").into());
        }
        restored += bytes.len() as u64;
    }
    println!(
        "restored {conversation} into memory on a new phone: {} files, {} in {:.2} s, identical to the app's",
        sink.files.len(),
        mib(restored),
        started.elapsed().as_secs_f64()
    );

    // Random access: the newest 200 bytes of another conversation's log, nothing restored.
    let path = format!("threads/{:04}/messages.log", 0);
    let mut file = repo.open_file(&record, &path)?;
    let end = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(end.saturating_sub(200)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let original = fs::read(app.join(&path))?;
    assert_eq!(&original[original.len() - tail.len()..], &tail[..]);
    println!(
        "read the last {} bytes of {path} without restoring it: {:?}…",
        tail.len(),
        String::from_utf8_lossy(&tail[tail.len().saturating_sub(60)..])
    );
    Ok(())
}

//! A deterministic generator of one user's chat history as a phone holds it on day N, the
//! same shape as `../shared/bench/gen_history.py` but small and without Python:
//!
//! - `databases/msgstore.db`: a page file (4 KiB pages) that grows by appended pages each day
//!   and has a few pages rewritten in place, as SQLite does;
//! - `export/messages/inbox/<thread>/message_1.json`: JSON, newest message first, so each day
//!   inserts at the front and shifts the whole file (the content-defined chunking case);
//! - `media/<thread>/IMG-*.jpg`: incompressible bytes, some forwarded (byte-identical) into a
//!   second thread;
//! - an empty file, an empty folder and a symlink.
//!
//! The same `(seed, day)` always gives the same bytes.

#![allow(dead_code)]

use std::fs;
use std::io;
use std::path::Path;

/// Size knobs.
#[derive(Debug, Clone, Copy)]
pub struct HistoryParams {
    pub seed: u64,
    pub threads: usize,
    pub messages_per_day: usize,
    pub first_day_messages: usize,
    pub db_pages: usize,
    pub media_per_day: usize,
    pub media_max_bytes: usize,
}

impl Default for HistoryParams {
    /// About 6 MiB on day 1.
    fn default() -> Self {
        HistoryParams {
            seed: 1,
            threads: 6,
            messages_per_day: 300,
            first_day_messages: 6_000,
            db_pages: 600,
            media_per_day: 12,
            media_max_bytes: 400_000,
        }
    }
}

/// xorshift64*: small, fast, and fixed (golden data must not depend on a crate's version).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "the", "see", "you", "at", "tonight", "ok", "love", "haha", "when", "are", "we", "meeting", "train", "late",
    "sorry", "coffee", "tomorrow", "photo", "sent", "thanks", "great", "idea", "call", "me", "later", "yes", "no",
    "maybe", "dinner", "mum", "birthday", "party", "where", "home", "work", "weekend", "beach", "🙂", "😂", "❤️",
];
const NAMES: &[&str] = &["ana", "ben", "chloé", "dmitri", "eun-ji", "farah", "gus", "hiro"];

fn message(rng: &mut Rng, id: usize, day: u32) -> String {
    let words = 3 + rng.below(14);
    let text: Vec<&str> = (0..words).map(|_| WORDS[rng.below(WORDS.len())]).collect();
    format!(
        "    {{\"id\": {id}, \"sender\": \"{}\", \"timestamp_ms\": {}, \"text\": \"{}\"}}",
        NAMES[rng.below(NAMES.len())],
        1_700_000_000_000u64 + u64::from(day) * 86_400_000 + id as u64 * 7_919,
        text.join(" ")
    )
}

/// Messages of a thread up to `day`, newest first.
fn thread_json(p: &HistoryParams, thread: usize, day: u32) -> String {
    let mut all = Vec::new();
    for d in 1..=day {
        let mut rng = Rng::new(p.seed ^ (u64::from(d) << 32) ^ (thread as u64) << 8);
        let n = if d == 1 { p.first_day_messages } else { p.messages_per_day } / p.threads;
        let n = if thread % 3 == 2 && d > 1 { 0 } else { n }; // some threads are quiet
        let base = all.len();
        for i in 0..n {
            all.push(message(&mut rng, base + i, d));
        }
    }
    all.reverse();
    format!(
        "{{\n  \"participants\": [\"{}\"],\n  \"messages\": [\n{}\n  ]\n}}\n",
        NAMES[thread % NAMES.len()],
        all.join(",\n")
    )
}

/// The page file on `day`: day 1's pages, then pages appended each later day, with a few
/// pages of earlier days rewritten in place.
fn database(p: &HistoryParams, day: u32) -> Vec<u8> {
    const PAGE: usize = 4096;
    let mut pages = p.db_pages;
    for _ in 2..=day {
        pages += p.db_pages / 40;
    }
    let mut db = vec![0u8; pages * PAGE];
    for (i, page) in db.chunks_mut(PAGE).enumerate() {
        let mut rng = Rng::new(p.seed ^ 0xdb ^ (i as u64) << 20);
        let mut text = String::new();
        while text.len() < PAGE {
            text.push_str(&message(&mut rng, i, 1));
        }
        page.copy_from_slice(&text.as_bytes()[..PAGE]);
    }
    for d in 2..=day {
        let mut rng = Rng::new(p.seed ^ 0xed17 ^ u64::from(d));
        for _ in 0..(pages / 50).max(1) {
            let i = rng.below(pages);
            let at = i * PAGE + rng.below(PAGE - 64);
            let patch = format!("edited on day {d}, reaction ❤️ ");
            db[at..at + patch.len()].copy_from_slice(patch.as_bytes());
        }
    }
    db
}

/// Writes the full tree of `day` into `root` (which must not exist yet).
pub fn write_day(root: &Path, p: &HistoryParams, day: u32) -> io::Result<()> {
    fs::create_dir_all(root.join("databases"))?;
    fs::write(root.join("databases/msgstore.db"), database(p, day))?;
    for t in 0..p.threads {
        let dir = root.join(format!("export/messages/inbox/thread_{t}"));
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("message_1.json"), thread_json(p, t, day))?;
    }
    for d in 1..=day {
        let mut rng = Rng::new(p.seed ^ 0x3ed1a ^ u64::from(d));
        for k in 0..p.media_per_day {
            let t = rng.below(p.threads);
            let len = 1_000 + rng.below(p.media_max_bytes);
            let mut bytes = vec![0u8; len];
            rng.fill(&mut bytes);
            bytes[..4].copy_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
            let name = format!("IMG-2026{:04}-WA{k:04}.jpg", 1100 + d);
            let dir = root.join(format!("media/thread_{t}"));
            fs::create_dir_all(&dir)?;
            fs::write(dir.join(&name), &bytes)?;
            if k % 5 == 0 {
                let fwd = root.join(format!("media/thread_{}", (t + 1) % p.threads));
                fs::create_dir_all(&fwd)?;
                fs::write(fwd.join(format!("FWD-{name}")), &bytes)?;
            }
        }
    }
    fs::create_dir_all(root.join("export/empty-folder"))?;
    fs::write(root.join("export/.nomedia"), b"")?;
    std::os::unix::fs::symlink("messages/inbox/thread_0", root.join("export/latest"))?;
    Ok(())
}

/// Sum of the sizes of the regular files under `root`.
pub fn tree_bytes(root: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(root).expect("readable") {
        let e = e.expect("entry");
        let ft = e.file_type().expect("type");
        if ft.is_dir() {
            total += tree_bytes(&e.path());
        } else if ft.is_file() {
            total += e.metadata().expect("metadata").len();
        }
    }
    total
}

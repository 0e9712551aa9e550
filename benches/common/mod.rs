//! Shared by the benches: seeded data shaped like a chat backup (JSON-lines text, and
//! incompressible media), and small measurement helpers.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// xorshift bytes: incompressible.
pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// JSON-lines chat export: ids, timestamps, names, words from a Zipf-like vocabulary of a few
/// hundred words, some numbers and links. zstd level 3 shrinks it to about a third, as real
/// exports.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    const NAMES: &[&str] = &["ana", "ben", "chloé", "dmitri", "eun-ji", "farah", "gus", "hiro"];
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // A vocabulary of 400 pseudo-words, 2 to 9 letters.
    let vocab: Vec<String> = (0..400)
        .map(|_| {
            let n = 2 + next() % 8;
            (0..n).map(|_| (b'a' + (next() % 26) as u8) as char).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(len + 256);
    let mut id = 0u64;
    while out.len() < len {
        id += 1 + next() % 3;
        let who = NAMES[(next() % NAMES.len() as u64) as usize];
        out.extend_from_slice(
            format!(
                "{{\"id\":{id},\"ts\":{},\"from\":\"{who}\",\"text\":\"",
                1_700_000_000_000 + id * 7919 + next() % 1000
            )
            .as_bytes(),
        );
        for _ in 0..(3 + next() % 14) {
            // Zipf-like: the index is the square of a uniform draw.
            let u = (next() % 1000) as f64 / 1000.0;
            let w = &vocab[((u * u) * vocab.len() as f64) as usize];
            out.extend_from_slice(w.as_bytes());
            out.push(b' ');
        }
        if next() % 8 == 0 {
            out.extend_from_slice(format!("https://x.example/{:x}", next()).as_bytes());
        }
        out.extend_from_slice(b"\"}\n");
    }
    out.truncate(len);
    out
}

/// Median wall time of `runs` runs of `f`.
pub fn median<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// MB/s (10^6 bytes per second).
pub fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// This process's resident set size, in KiB (Linux).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

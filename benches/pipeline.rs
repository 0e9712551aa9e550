//! Throughput of the pipeline stages on seeded data (text-like and incompressible), with
//! criterion's `Throughput::Bytes`, so results read as bytes per second.
//!
//! Baseline workflow: `cargo bench --bench pipeline -- --save-baseline before`, change, then
//! `cargo bench --bench pipeline -- --baseline before`. Compare against the machine's limits
//! measured in the same run (`../shared/bench/LIMITS.md` explains the figures), never against
//! numbers from another day: these machines are shared and noisy.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use packvault::format::blob::BlobKind;
use packvault::format::config::ChunkerParams;
use packvault::hazmat::{self, Chunker, Keys, MasterKey};

fn data(len: usize, text: bool) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    if !text {
        return (0..len).map(|_| (next() >> 24) as u8).collect();
    }
    const WORDS: &[&str] =
        &["see", "you", "at", "eight", "ok", "love", "haha", "coffee", "tomorrow", "photo", "thanks"];
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        out.extend_from_slice(format!("{{\"id\":{},\"text\":\"", next() % 100_000).as_bytes());
        for _ in 0..(3 + next() % 10) {
            out.extend_from_slice(WORDS[(next() % WORDS.len() as u64) as usize].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(b"\"}\n");
    }
    out.truncate(len);
    out
}

fn stages(c: &mut Criterion) {
    let keys = Keys::derive(&MasterKey::from_bytes([7; 32]));
    let chunker = Chunker::new(&ChunkerParams::default(), keys.chunker_key()).unwrap();
    for (name, text) in [("text", true), ("random", false)] {
        let buf = data(8 << 20, text);
        let mut g = c.benchmark_group(format!("stages/{name}"));
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.sample_size(10);
        g.bench_function("fastcdc_keyed", |b| b.iter(|| chunker.cut_points(&buf)));
        g.bench_function("blake3_keyed_id", |b| {
            let cuts = chunker.cut_points(&buf);
            b.iter(|| {
                let mut start = 0;
                for &end in &cuts {
                    std::hint::black_box(keys.chunk_id(&buf[start..end]));
                    start = end;
                }
            })
        });
        for level in [1, 3] {
            g.bench_with_input(BenchmarkId::new("seal_zstd", level), &level, |b, &level| {
                let cuts = chunker.cut_points(&buf);
                b.iter(|| {
                    let mut start = 0;
                    for &end in &cuts {
                        std::hint::black_box(hazmat::seal_blob(&keys, BlobKind::Data, &buf[start..end], Some(level)));
                        start = end;
                    }
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, stages);
criterion_main!(benches);

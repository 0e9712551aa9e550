//! The merged index at scale: builds a table of N entries (default 10 million; set
//! `PACKVAULT_BENCH_INDEX_ENTRIES`), writes it to the cache and maps it back, then reports
//! build time, lookup latency (hits and misses, interpolation search over the mapping),
//! bytes per entry, and memory: resident set before and after mapping and after the lookups,
//! and the mapped size.
//!
//! `cargo bench --bench index`

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use common::rss_kib;
use packvault::format::blob::{BlobKind, Codec};
use packvault::format::pack::BlobEntry;
use packvault::{hazmat, Id, PackId, PackInfo, RepoId};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize =
        std::env::var("PACKVAULT_BENCH_INDEX_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let per_pack = 256;
    let id_of = |i: usize| Id(*blake3::hash(&(i as u64).to_le_bytes()).as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoId::from_bytes([1u8; 16]);
    let t0 = Instant::now();
    let packs: Vec<(PackInfo, Vec<BlobEntry>)> = (0..n.div_ceil(per_pack))
        .map(|p| {
            let info = PackInfo { id: PackId(id_of(usize::MAX - p)), kind: BlobKind::Data, len: 16 << 20 };
            let entries = (p * per_pack..((p + 1) * per_pack).min(n))
                .enumerate()
                .map(|(k, i)| BlobEntry {
                    id: id_of(i),
                    offset: k as u32 * 65_536,
                    sealed_len: 65_536,
                    raw_len: 70_000,
                    codec: Codec::Zstd,
                })
                .collect();
            (info, entries)
        })
        .collect();
    let built = hazmat::build_index(Some(dir.path()), &repo, packs).unwrap();
    let build = t0.elapsed();
    drop(built);
    let rss_before = rss_kib();
    let index = hazmat::open_index_cache(dir.path(), &repo).expect("the cache maps back");
    let rss_mapped = rss_kib();
    let bytes = index.table_bytes();
    let lookups = 1_000_000.min(n);
    let t0 = Instant::now();
    let mut found = 0;
    for k in 0..lookups {
        let i = (k * 2_654_435_761) % n;
        found += usize::from(index.lookup(&id_of(i)).unwrap().is_some());
    }
    let hit = t0.elapsed();
    let t0 = Instant::now();
    let mut missed = 0;
    for k in 0..lookups {
        missed += usize::from(!index.contains(&id_of(n + k)));
    }
    let miss = t0.elapsed();
    assert_eq!((found, missed), (lookups, lookups));
    let rss_after = rss_kib();
    println!(
        "index with {n} entries: built and written in {:.1} s; {:.1} bytes per entry on disk ({:.0} MiB mapped)",
        build.as_secs_f64(),
        bytes as f64 / n as f64,
        bytes as f64 / 1048576.0
    );
    println!(
        "lookups: {:.0} ns per hit, {:.0} ns per miss ({lookups} random lookups each)",
        hit.as_nanos() as f64 / lookups as f64,
        miss.as_nanos() as f64 / lookups as f64
    );
    println!(
        "resident set: {} MiB before mapping, {} MiB after mapping, {} MiB after the lookups (mapped pages touched)",
        rss_before / 1024,
        rss_mapped / 1024,
        rss_after / 1024
    );
}

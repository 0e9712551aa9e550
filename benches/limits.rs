//! The machine's limits and the pipeline's place under them, measured in one run.
//!
//! `cargo bench --bench limits` measures, on this machine and now: BLAKE3 (keyed, per 64 KiB
//! chunk), zstd at the repository's default level (compress and decompress, text and
//! incompressible), AES-256-GCM-SIV (seal and open, 64 KiB), keyed FastCDC, memcpy and file
//! writes. From the per-byte costs it prints the *pipeline ceilings* (one and two cores) for a
//! chat-backup mix (31 % text, 69 % media, as `../shared/bench/gen_history.py` makes), then
//! runs packvault's own backup and restore of such a tree on a local repository and prints
//! each as a fraction of its ceiling. Figures from different runs are not comparable: the
//! machines are shared; compare within one run.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{mbps, median, random, text};
use packvault::format::blob::BlobKind;
use packvault::format::config::ChunkerParams;
use packvault::format::keyslot::Argon2Params;
use packvault::hazmat::{self, Chunker, Keys, MasterKey};
use packvault::{Credentials, InitOptions, LocalStore, OpenOptions, Repository, RestoreOptions};

const LEVEL: i32 = 3;
const TEXT_SHARE: f64 = 0.31;

struct Costs {
    cdc: f64,
    b3: f64,
    zstd_c: f64,
    zstd_d: f64,
    aes_e: f64,
    aes_d: f64,
    write: f64,
    ratio: f64,
}

fn ns_per_byte(mbps: f64) -> f64 {
    1000.0 / mbps
}

fn stage_costs(data: &[u8], keys: &Keys, chunker: &Chunker, name: &str) -> Costs {
    let cuts = chunker.cut_points(data);
    let chunks: Vec<&[u8]> = {
        let mut start = 0;
        cuts.iter()
            .map(|&c| {
                let s = &data[start..c];
                start = c;
                s
            })
            .collect()
    };
    let n = data.len();
    let cdc = mbps(
        n,
        median(5, || {
            std::hint::black_box(chunker.cut_points(data));
        }),
    );
    let b3 = mbps(
        n,
        median(5, || {
            for c in &chunks {
                std::hint::black_box(keys.chunk_id(c));
            }
        }),
    );
    // Reused contexts, as the pipeline's workers keep one per thread.
    let mut cctx = zstd::bulk::Compressor::new(LEVEL).unwrap();
    let mut dctx = zstd::bulk::Decompressor::new().unwrap();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let zstd_c = mbps(
        n,
        median(3, || {
            frames = chunks.iter().map(|c| cctx.compress(c).unwrap()).collect();
        }),
    );
    let compressed: usize = frames.iter().map(Vec::len).sum();
    let zstd_d = mbps(
        n,
        median(5, || {
            for (f, c) in frames.iter().zip(&chunks) {
                std::hint::black_box(dctx.decompress(f, c.len()).unwrap());
            }
        }),
    );
    let key = [7u8; 32];
    let sealed: Vec<Vec<u8>> = chunks.iter().map(|c| hazmat::aes256_gcm_siv_seal(&key, &[0; 12], b"", c)).collect();
    let aes_e = mbps(
        n,
        median(5, || {
            for c in &chunks {
                std::hint::black_box(hazmat::aes256_gcm_siv_seal(&key, &[0; 12], b"", c));
            }
        }),
    );
    let aes_d = mbps(
        n,
        median(5, || {
            for s in &sealed {
                std::hint::black_box(hazmat::aes256_gcm_siv_open(&key, &[0; 12], b"", s));
            }
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let write = mbps(
        n,
        median(3, || {
            let p = dir.path().join(format!("w{}", Instant::now().elapsed().as_nanos()));
            std::fs::write(&p, data).unwrap();
        }),
    );
    let ratio = compressed as f64 / n as f64;
    println!(
        "{name:<7} FastCDC {cdc:>7.0} | BLAKE3 {b3:>7.0} | zstd-{LEVEL} {zstd_c:>6.0} (ratio {ratio:.2}) unzstd {zstd_d:>6.0} | AES-GCM-SIV seal {aes_e:>6.0} open {aes_d:>6.0} | write {write:>6.0}   (MB/s, 1 core)"
    );
    Costs {
        cdc: ns_per_byte(cdc),
        b3: ns_per_byte(b3),
        zstd_c: ns_per_byte(zstd_c),
        zstd_d: ns_per_byte(zstd_d),
        aes_e: ns_per_byte(aes_e),
        aes_d: ns_per_byte(aes_d),
        write: ns_per_byte(write),
        ratio: ratio.min(1.0),
    }
}

fn main() {
    // `cargo bench` passes --bench; anything else (e.g. `cargo test --benches`) runs nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let keys = Keys::derive(&MasterKey::from_bytes([7; 32]));
    let chunker = Chunker::new(&ChunkerParams::default(), keys.chunker_key()).unwrap();
    let size = 64 << 20;
    let (t, r) = (text(size, 1), random(size, 2));
    let memcpy = {
        let mut dst = vec![0u8; size];
        mbps(size, median(5, || dst.copy_from_slice(&r)))
    };
    println!("memcpy {memcpy:.0} MB/s");
    let ct = stage_costs(&t, &keys, &chunker, "text");
    let cr = stage_costs(&r, &keys, &chunker, "random");

    // Per input byte. Backup: CDC + hash + compress + seal the compressed bytes + write them.
    // Restore: open + decompress + hash (the id check) + write the output.
    let backup = |c: &Costs| c.cdc + c.b3 + c.zstd_c + c.ratio * (c.aes_e + c.write);
    let restore = |c: &Costs| c.ratio * c.aes_d + c.zstd_d * f64::from(c.ratio < 0.98) + c.b3 + c.write;
    let mix = |f: &dyn Fn(&Costs) -> f64| TEXT_SHARE * f(&ct) + (1.0 - TEXT_SHARE) * f(&cr);
    let (b1, r1) = (1000.0 / mix(&backup), 1000.0 / mix(&restore));
    println!("pipeline ceiling for the mix ({:.0} % text): backup {b1:.0} MB/s on 1 core, {:.0} on 2; restore {r1:.0} on 1 core, {:.0} on 2", TEXT_SHARE * 100.0, 2.0 * b1, 2.0 * r1);

    // packvault end to end on a local repository, same data shape.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("export")).unwrap();
    std::fs::create_dir_all(src.join("media")).unwrap();
    let total = 256 << 20;
    let text_bytes = (total as f64 * TEXT_SHARE) as usize;
    for i in 0..8 {
        std::fs::write(src.join(format!("export/chat{i}.json")), text(text_bytes / 8, 10 + i)).unwrap();
    }
    let mut media = 0;
    let mut i = 0;
    while media < total - text_bytes {
        let n = 200_000 + (i * 7919 % 2_800_000);
        std::fs::write(src.join(format!("media/IMG-{i}.jpg")), random(n, 100 + i as u64)).unwrap();
        media += n;
        i += 1;
    }
    let input = text_bytes + media;
    let mut backups = Vec::new();
    let mut restores = Vec::new();
    for run in 0..3 {
        let repo_dir = tmp.path().join(format!("repo{run}"));
        let store = Arc::new(LocalStore::create(&repo_dir).unwrap());
        let creds = Credentials::passphrase("benchmark passphrase");
        let options = InitOptions {
            kdf: Argon2Params { m_kib: 8192, t: 1, p: 1 },
            state: packvault::ClientState::Disabled,
            ..InitOptions::default()
        };
        let mut repo = Repository::init(store.clone(), &creds, options).unwrap();
        let t0 = Instant::now();
        let mut b = repo.backup().unwrap();
        b.add_dir(&src, "").unwrap();
        let out = b.commit(packvault::SnapshotInfo::default()).unwrap();
        backups.push(t0.elapsed());
        let repo = Repository::open(
            store,
            &creds,
            &OpenOptions { state: packvault::ClientState::Disabled, ..OpenOptions::default() },
        )
        .unwrap();
        let target = tmp.path().join(format!("restore{run}"));
        let t0 = Instant::now();
        let report =
            repo.restore(&out.record, &RestoreOptions { target: target.clone(), ..Default::default() }).unwrap();
        restores.push(t0.elapsed());
        assert!(report.is_complete());
        let _ = std::fs::remove_dir_all(&target);
        let _ = std::fs::remove_dir_all(&repo_dir);
    }
    backups.sort();
    restores.sort();
    let (b, r) = (mbps(input, backups[1]), mbps(input, restores[1]));
    println!(
        "packvault, {} MiB tree, local repository, {} threads: backup {b:.0} MB/s = {:.0} % of the 2-core ceiling; restore {r:.0} MB/s = {:.0} % of the 2-core ceiling",
        input >> 20,
        rayon::current_num_threads(),
        100.0 * b / (2.0 * b1),
        100.0 * r / (2.0 * r1)
    );
    let _ = BlobKind::Data;
}

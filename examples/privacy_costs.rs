//! The cost of the provider-privacy defences (block-aligned reads, shuffled packs), measured
//! through the provider's own view (`RecordingStore`): bytes read per restore, per file
//! restore, per tree load and per 100-byte `open_file` read, pack count, and backup time, with
//! the defences on and off (`hazmat::weaken_provider_privacy`) in the same run.
//!
//! `cargo run --release -p packvault --example privacy_costs` (rows for
//! `bench/results/privacy-costs.txt`).

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use packvault::format::keyslot::Argon2Params;
use packvault::hazmat::{self, MasterKey};
use packvault::{
    ClientState, Credentials, FileMeta, InitOptions, MemorySink, MemoryStore, RecordingStore, SinkOptions,
    SnapshotInfo, StoreEvent, StoreOp,
};

const MIB: usize = 1 << 20;
const META: FileMeta = FileMeta { mode: 0o600, mtime_secs: 1_780_000_000, mtime_nanos: 0 };

fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(len);
    v
}

fn read_bytes(events: &[StoreEvent]) -> (u64, usize) {
    let r: Vec<&StoreEvent> =
        events.iter().filter(|e| matches!(e.op, StoreOp::Read | StoreOp::Get) && e.kind == "packs").collect();
    (r.iter().map(|e| e.len).sum(), r.len())
}

fn run(weakened: bool, files: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    hazmat::weaken_provider_privacy(weakened);
    let rec = Arc::new(RecordingStore::new(Arc::new(MemoryStore::new())));
    let options = InitOptions {
        kdf: Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 },
        state: ClientState::Disabled,
        ..InitOptions::default()
    };
    let mut repo = hazmat::init_with_master_key(
        rec.clone(),
        MasterKey::from_bytes([7; 32]),
        &Credentials::passphrase("a passphrase for the cost runs"),
        options,
    )
    .unwrap();
    let _ = rec.take_events();
    let started = Instant::now();
    let mut s = repo.backup().unwrap();
    for (name, data) in files {
        s.add_stream(name, &data[..], META).unwrap();
    }
    let info = SnapshotInfo { hostname: Some("h".into()), username: Some("u".into()), ..SnapshotInfo::default() };
    let out = s.commit(info).unwrap();
    let backup_secs = started.elapsed().as_secs_f64();
    let backup = rec.take_events();
    let packs = backup.iter().filter(|e| e.op == StoreOp::Put && e.kind == "packs").count();
    let stored: u64 = backup.iter().filter(|e| e.op == StoreOp::Put && e.kind == "packs").map(|e| e.len).sum();
    let mut rows = vec![
        ("backup seconds".to_string(), format!("{backup_secs:.3}")),
        ("packs written".to_string(), packs.to_string()),
        ("pack bytes written".to_string(), stored.to_string()),
    ];
    let mut sink = MemorySink::default();
    repo.restore_to(&out.record, &SinkOptions::default(), &mut sink).unwrap();
    let (b, n) = read_bytes(&rec.take_events());
    rows.push(("full restore: pack bytes read (reads)".into(), format!("{b} ({n})")));
    let (mut total, mut reads) = (0, 0);
    for (name, _) in files {
        let mut sink = MemorySink::default();
        let o = SinkOptions { include: vec![name.clone()], ..SinkOptions::default() };
        repo.restore_to(&out.record, &o, &mut sink).unwrap();
        let (b, n) = read_bytes(&rec.take_events());
        total += b;
        reads += n;
    }
    rows.push(("per-file restores, all files: pack bytes read (reads)".into(), format!("{total} ({reads})")));
    let _ = repo.load_tree(&out.record.root).unwrap();
    let (b, n) = read_bytes(&rec.take_events());
    rows.push(("root tree load: pack bytes read (reads)".into(), format!("{b} ({n})")));
    let (mut total, mut reads) = (0, 0);
    for (name, _) in files {
        let mut f = repo.open_file(&out.record, name).unwrap();
        let _ = rec.take_events();
        let mut head = [0u8; 100];
        f.read_exact(&mut head).unwrap();
        let (b, n) = read_bytes(&rec.take_events());
        total += b;
        reads += n;
    }
    rows.push((
        format!("open_file + 100-byte read, mean of {}: pack bytes read (reads)", files.len()),
        format!("{} ({:.2})", total / files.len() as u64, reads as f64 / files.len() as f64),
    ));
    hazmat::weaken_provider_privacy(false);
    rows
}

fn main() {
    let mut files = Vec::new();
    let mut total = 0;
    let mut i = 0u64;
    while total < 96 * MIB {
        let len = 200 * 1024 + (noise(8, i)[0] as usize) * 16 * 1024;
        files.push((format!("chat/{i:03}.bin"), noise(len, 1000 + i)));
        total += len;
        i += 1;
    }
    println!(
        "# privacy costs: {} files, {} bytes of random data, default settings (16 MiB packs, 64 KiB avg chunks)",
        files.len(),
        total
    );
    // Warm up once, then off/on twice, interleaved.
    let _ = run(false, &files);
    let mut off = Vec::new();
    let mut on = Vec::new();
    for _ in 0..2 {
        off.push(run(true, &files));
        on.push(run(false, &files));
    }
    println!("{:<62} | {:>22} | {:>22}", "measure", "defences off (before)", "defences on (after)");
    for (k, row) in on[0].iter().enumerate() {
        let before: Vec<&str> = off.iter().map(|r| r[k].1.as_str()).collect();
        let after: Vec<&str> = on.iter().map(|r| r[k].1.as_str()).collect();
        println!("{:<62} | {:>22} | {:>22}", row.0, before.join(" / "), after.join(" / "));
    }
}

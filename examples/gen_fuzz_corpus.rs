//! Writes the fuzzing fixture and seed corpora from a small real repository:
//! `fuzz/fixtures/repo.bin` (every file of a two-snapshot repository made with a fixed master
//! key, plus the expected content of each snapshot) and `fuzz/corpus/<target>/seed-*`.
//!
//! ```sh
//! cargo run --example gen_fuzz_corpus
//! ```
//! Rerun after a format change; the seeds are small on purpose.

#[path = "../tests/support/noise.rs"]
mod noise;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use noise::noise;
use packvault::format::blob::BlobKind;
use packvault::format::config::{self, ChunkerParams};
use packvault::format::keyslot::Argon2Params;
use packvault::format::{index, pack, snapshot};
use packvault::hazmat::{self, Keys, MasterKey};
use packvault::{Credentials, FileMeta, InitOptions, MemoryStore, Store};

/// The master key every fuzz target uses.
const MASTER: [u8; 32] = [0x42; 32];

fn text(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .flat_map(|i| format!("{{\"id\":{i},\"text\":\"msg {}\"}}\n", (i * 7 + seed) % 97).into_bytes())
        .collect()
}

/// Serializes a map of path → bytes: `u32 count`, then per entry `u16 path length ‖ path ‖
/// u32 data length ‖ data` (little-endian). The fuzz targets read it back.
fn serialize(map: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = (map.len() as u32).to_le_bytes().to_vec();
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join("corpus").join(target);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join(format!("seed-{name}")), data).unwrap();
}

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let store = Arc::new(MemoryStore::new());
    let options = InitOptions {
        chunker: ChunkerParams { min_size: 1024, avg_size: 4096, max_size: 16384, ..ChunkerParams::default() },
        pack_target_size: 1 << 20,
        kdf: Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 },
        state: packvault::ClientState::Disabled,
        ..InitOptions::default()
    };
    let creds = Credentials::passphrase("fuzzing fixture passphrase");
    let mut repo = hazmat::init_with_master_key(store.clone(), MasterKey::from_bytes(MASTER), &creds, options).unwrap();
    let meta = FileMeta { mode: 0o644, mtime_secs: 1_764_115_200, mtime_nanos: 0 };
    let days: [Vec<(&str, Vec<u8>)>; 2] = [
        vec![("chats/ana.json", text(1500, 1)), ("media/IMG-1.jpg", noise(40_000, 7)), ("empty", Vec::new())],
        vec![
            ("chats/ana.json", text(1700, 1)),
            ("chats/ben.json", text(300, 5)),
            ("media/IMG-1.jpg", noise(40_000, 7)),
            ("empty", Vec::new()),
        ],
    ];
    let mut fixture = BTreeMap::new();
    for files in &days {
        let mut b = repo.backup().unwrap();
        for (path, data) in files {
            b.add_stream(path, &data[..], meta).unwrap();
        }
        let out = b.commit(packvault::SnapshotInfo::default()).unwrap();
        for (path, data) in files {
            fixture.insert(format!("expected/{}/{path}", out.snapshot), data.clone());
        }
    }
    for (path, data) in store.snapshot_files() {
        fixture.insert(format!("repo/{path}"), data);
    }
    fs::create_dir_all(fuzz.join("fixtures")).unwrap();
    fs::write(fuzz.join("fixtures/repo.bin"), serialize(&fixture)).unwrap();

    // Seeds, from the same repository.
    let keys = Keys::derive(&MasterKey::from_bytes(MASTER));
    let _ = fs::remove_dir_all(fuzz.join("corpus"));
    for (path, data) in store.snapshot_files() {
        let name = path.replace('/', "-");
        if path.starts_with("packs/") {
            write(&fuzz, "pack_trailer", &name, &data);
            let dir = pack::decode_pack(keys.meta_key(), &data).unwrap();
            let blobs_len = dir.entries.last().map_or(0, |e| e.end());
            let mut plain = (blobs_len as u32).to_le_bytes().to_vec();
            plain.extend_from_slice(&pack::encode_directory_plaintext(dir.kind, &dir.entries));
            write(&fuzz, "pack_directory", &name, &plain);
            if dir.kind == BlobKind::Tree {
                for e in &dir.entries {
                    let sealed = &data[e.offset as usize..e.end() as usize];
                    let plain = hazmat::open_blob(&keys, BlobKind::Tree, &e.id, e.codec, e.raw_len, sealed).unwrap();
                    write(&fuzz, "tree", &e.id.short(), &plain);
                }
            } else if let Some(e) = dir.entries.first() {
                let sealed = &data[e.offset as usize..e.end() as usize];
                let plain = hazmat::open_blob(&keys, BlobKind::Data, &e.id, e.codec, e.raw_len, sealed).unwrap();
                write(&fuzz, "blob_open", &e.id.short(), &plain[..plain.len().min(2000)]);
                write(&fuzz, "chunker", &e.id.short(), &plain[..plain.len().min(4000)]);
            }
        } else if path.starts_with("index/") {
            write(
                &fuzz,
                "index_file",
                &name,
                &index::encode_plaintext(&index::decode(keys.meta_key(), &data).unwrap()),
            );
        } else if path.starts_with("snapshots/") {
            let rec = snapshot::decode(keys.meta_key(), &data).unwrap();
            write(&fuzz, "snapshot", &name, &snapshot::encode_plaintext(&rec).unwrap());
        } else if path.starts_with("keys/") {
            write(&fuzz, "keyslot", &name, &data);
        } else if path == "config" {
            let cfg = config::decode(keys.meta_key(), &data).unwrap();
            let mut seed = data[..config::PREFIX_LEN].to_vec();
            seed.extend_from_slice(&config::encode_settings(&cfg.settings).unwrap());
            write(&fuzz, "config", "config", &seed);
        }
    }
    write(&fuzz, "recovery_code", "code", packvault::RecoveryCode::from_bytes([9; 32]).to_text().as_bytes());
    // A lock: its plaintext, and a whole lock file sealed under the fixture's key.
    let lock = packvault::format::lock::LockRecord {
        kind: packvault::format::lock::LockKind::Shared,
        hostname: "phone".into(),
        machine: String::new(),
        pid: 4242,
        time: 1_764_115_200,
        operation: "backup".into(),
    };
    write(&fuzz, "lock", "plaintext", &packvault::format::lock::encode_plaintext(&lock).unwrap());
    write(&fuzz, "lock", "file", &packvault::format::lock::encode(keys.meta_key(), &lock, &[7; 12]).unwrap());
    // The index cache of the repository, as the client keeps it.
    let cache = tempfile_dir();
    let opened = hazmat::open_with_master_key(
        store.clone(),
        MasterKey::from_bytes(MASTER),
        &packvault::OpenOptions {
            cache_dir: Some(cache.clone()),
            state: packvault::ClientState::Disabled,
            ..Default::default()
        },
    )
    .unwrap();
    let cache_file = hazmat::cache_path(&cache, &opened.id());
    write(&fuzz, "index_cache", "cache", &fs::read(&cache_file).unwrap());
    let _ = fs::remove_dir_all(&cache);
    // restore_from_bytes: an empty mutation list and two single mutations.
    write(&fuzz, "restore_from_bytes", "none", &[]);
    write(&fuzz, "restore_from_bytes", "flip", &[0, 3, 0, 0, 0, 200, 0, 0, 0, 1]);
    write(&fuzz, "restore_from_bytes", "delete", &[2, 5]);
    println!("wrote {} and corpora under {}", fuzz.join("fixtures/repo.bin").display(), fuzz.join("corpus").display());
    let n = store.list(packvault::FileKind::Pack).unwrap().len();
    println!("fixture: {} files, {n} packs", fixture.len());
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("packvault-fuzz-corpus-{}", std::process::id()));
    fs::create_dir_all(&d).unwrap();
    d
}

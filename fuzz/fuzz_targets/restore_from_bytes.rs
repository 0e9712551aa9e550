//! Restore from a hostile repository: start from the fixture repository (two snapshots), let
//! the fuzzer flip, truncate, splice, delete and duplicate its files, then open it with the
//! known key and restore every snapshot. Any outcome but a clean error or a bit-exact restore
//! of every file not reported as failed is a bug.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use packvault::hazmat::{self, MasterKey};
use packvault::{MemoryStore, OpenOptions, RestoreOptions};

#[derive(Arbitrary, Debug)]
enum Mutation {
    Flip { file: u8, at: u32, mask: u8 },
    Truncate { file: u8, keep: u32 },
    Splice { file: u8, at: u32, bytes: Vec<u8> },
    Delete { file: u8 },
    Duplicate { from: u8, to: u8 },
}

fn fixture() -> &'static BTreeMap<String, Vec<u8>> {
    static F: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    F.get_or_init(common::fixture)
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.insert(rel, std::fs::read(&p).unwrap());
        }
    }
}

fuzz_target!(|mutations: Vec<Mutation>| {
    let fx = fixture();
    let mut files: BTreeMap<String, Vec<u8>> =
        fx.iter().filter_map(|(k, v)| Some((k.strip_prefix("repo/")?.to_string(), v.clone()))).collect();
    for m in mutations.iter().take(4) {
        let names: Vec<String> = files.keys().cloned().collect();
        if names.is_empty() {
            break;
        }
        let pick = |i: u8| names[usize::from(i) % names.len()].clone();
        match m {
            Mutation::Flip { file, at, mask } => {
                let f = files.get_mut(&pick(*file)).unwrap();
                if !f.is_empty() {
                    let i = *at as usize % f.len();
                    f[i] ^= mask;
                }
            }
            Mutation::Truncate { file, keep } => {
                let f = files.get_mut(&pick(*file)).unwrap();
                let keep = *keep as usize % (f.len() + 1);
                f.truncate(keep);
            }
            Mutation::Splice { file, at, bytes } => {
                let f = files.get_mut(&pick(*file)).unwrap();
                let i = *at as usize % (f.len() + 1);
                f.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete { file } => {
                files.remove(&pick(*file));
            }
            Mutation::Duplicate { from, to } => {
                let data = files[&pick(*from)].clone();
                files.insert(pick(*to), data);
            }
        }
    }
    let store = Arc::new(MemoryStore::new());
    for (path, data) in files {
        store.overwrite(&path, data);
    }
    let Ok(repo) = hazmat::open_with_master_key(store, MasterKey::from_bytes(common::MASTER), &OpenOptions { state: packvault::ClientState::Disabled, ..OpenOptions::default() })
    else {
        return;
    };
    let Ok(snapshots) = repo.snapshots() else { return };
    // tmpfs when there is one: a restore per run writes files.
    let base = if Path::new("/dev/shm").is_dir() { Path::new("/dev/shm").to_path_buf() } else { std::env::temp_dir() };
    let tmp = base.join(format!("pv-fuzz-restore-{}", std::process::id()));
    for (id, rec) in snapshots {
        let prefix = format!("expected/{id}/");
        let expected: BTreeMap<&str, &Vec<u8>> =
            fx.iter().filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?, v))).collect();
        assert!(!expected.is_empty(), "snapshot {id} is not one of the fixture's: a forgery was accepted");
        let _ = std::fs::remove_dir_all(&tmp);
        let Ok(report) = repo.restore(&rec, &RestoreOptions { target: tmp.clone(), ..Default::default() }) else {
            continue;
        };
        let mut restored = BTreeMap::new();
        walk(&tmp, &tmp, &mut restored);
        for (path, data) in &restored {
            assert!(!path.contains(".pv-restore-"), "temporary file left: {path}");
            let want = expected.get(path.as_str()).unwrap_or_else(|| panic!("unexpected file {path}"));
            assert!(*want == data, "{path} restored with wrong content");
        }
        for path in expected.keys() {
            if !restored.contains_key(*path) {
                // Reported itself, or through a folder whose contents were lost.
                let reported =
                    report.failed.iter().any(|(p, _)| p == path || path.starts_with(&format!("{p}/")) || p == "/");
                assert!(reported, "{path} missing but not reported: {:?}", report.failed);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
});

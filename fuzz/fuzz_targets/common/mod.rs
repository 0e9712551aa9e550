//! Shared by the fuzz targets: the fixed master key and the fixture repository written by
//! `cargo run --example gen_fuzz_corpus` (fuzz/fixtures/repo.bin).

#![allow(dead_code)]

use std::collections::BTreeMap;

use packvault::hazmat::{Keys, MasterKey};

/// The master key of the fixture repository.
pub const MASTER: [u8; 32] = [0x42; 32];

pub fn keys() -> Keys {
    Keys::derive(&MasterKey::from_bytes(MASTER))
}

/// The fixture: `repo/<store path>` → bytes and `expected/<snapshot id>/<path>` → content.
pub fn fixture() -> BTreeMap<String, Vec<u8>> {
    let raw: &[u8] = include_bytes!("../../fixtures/repo.bin");
    let mut map = BTreeMap::new();
    let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().unwrap()) as usize;
    let count = u32_at(0);
    let mut at = 4;
    for _ in 0..count {
        let klen = u16::from_le_bytes(raw[at..at + 2].try_into().unwrap()) as usize;
        let key = String::from_utf8(raw[at + 2..at + 2 + klen].to_vec()).unwrap();
        at += 2 + klen;
        let vlen = u32_at(at);
        map.insert(key, raw[at + 4..at + 4 + vlen].to_vec());
        at += 4 + vlen;
    }
    map
}

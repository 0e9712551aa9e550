//! The local index cache from arbitrary bytes, without its checksum: truncated, unsorted,
//! out-of-range tables must give errors or answers, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::{hazmat, Id};

fuzz_target!(|data: &[u8]| {
    let Ok(index) = hazmat::index_cache_from_bytes(data.to_vec(), false) else {
        return;
    };
    let _ = index.verify_table();
    let mut ids = Vec::new();
    for item in index.iter().take(4096) {
        if let Ok((id, loc)) = item {
            assert!(index.packs().any(|p| p.id == loc.pack));
            ids.push(id);
        }
    }
    for window in data.chunks(32).take(64) {
        let mut id = [0u8; 32];
        id[..window.len()].copy_from_slice(window);
        ids.push(Id(id));
    }
    for id in ids {
        let _ = index.lookup(&id);
        let _ = index.contains(&id);
    }
});

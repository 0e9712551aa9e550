//! Whole packs from arbitrary bytes: trailer, then directory. Never panics; an accepted
//! directory's entries tile the blob area exactly.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use packvault::format::pack;

fuzz_target!(|data: &[u8]| {
    if data.len() >= pack::TRAILER_LEN {
        if let Ok(dir_len) = pack::decode_trailer(data.len() as u64, &data[data.len() - pack::TRAILER_LEN..]) {
            assert!(dir_len as usize + pack::TRAILER_LEN <= data.len());
        }
    }
    if let Ok(dir) = pack::decode_pack(common::keys().meta_key(), data) {
        let mut end = 0u64;
        for e in &dir.entries {
            assert_eq!(u64::from(e.offset), end);
            end = e.end();
        }
        assert!(end <= data.len() as u64);
    }
});

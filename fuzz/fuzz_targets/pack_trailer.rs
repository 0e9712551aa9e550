//! Whole packs from arbitrary bytes: trailer, then directory, then filler. Never panics; an
//! accepted trailer re-encodes to its bytes and describes exactly a pack of this length; an
//! accepted directory's entries tile the blob area exactly.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use packvault::format::{pack, padding::padme};

fuzz_target!(|data: &[u8]| {
    let keys = common::keys();
    let key = keys.meta_key();
    if data.len() >= pack::TRAILER_LEN {
        let bytes = &data[data.len() - pack::TRAILER_LEN..];
        let len = data.len() as u64;
        if let Ok(t) = pack::Trailer::decode(key, len, bytes) {
            let used = u64::from(t.blobs_len) + u64::from(t.dir_len) + pack::TRAILER_LEN as u64;
            assert!(used <= len && padme(used) == len);
            // An accepted trailer re-encodes to its own bytes.
            assert_eq!(t.encode(key, len).as_slice(), bytes);
        }
    }
    if let Ok(dir) = pack::decode_pack(key, data) {
        let mut end = 0u64;
        for e in &dir.entries {
            assert_eq!(u64::from(e.offset), end);
            end = e.end();
        }
        assert!(end <= data.len() as u64);
    }
});

//! Whole packs from arbitrary bytes: trailer, then directory. Never panics; an accepted
//! trailer re-encodes to its bytes; an accepted directory's entries tile the blob area exactly.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use packvault::format::pack;

fuzz_target!(|data: &[u8]| {
    if data.len() >= pack::TRAILER_LEN {
        let bytes = &data[data.len() - pack::TRAILER_LEN..];
        if let Ok(t) = pack::Trailer::decode(data.len() as u64, bytes) {
            assert!(t.dir_len as usize + pack::TRAILER_LEN <= data.len());
            // An accepted trailer re-encodes to its own bytes.
            assert_eq!(t.encode().as_slice(), bytes);
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

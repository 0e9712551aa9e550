//! Pack trailer and directory decoding from arbitrary bytes: never panics; an accepted pack's
//! entries tile the blob area.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::format::pack;
use packvault::hazmat::Keys;
use packvault::MasterKey;

fuzz_target!(|data: &[u8]| {
    let keys = Keys::derive(&MasterKey::from_bytes([0; 32]));
    if data.len() >= pack::TRAILER_LEN {
        let _ = pack::decode_trailer(data.len() as u64, &data[data.len() - pack::TRAILER_LEN..]);
    }
    if let Ok(dir) = pack::decode_pack(keys.meta_key(), data) {
        let mut end = 0u64;
        for e in &dir.entries {
            assert_eq!(u64::from(e.offset), end);
            end = e.end();
        }
        assert!(end <= data.len() as u64);
    }
});

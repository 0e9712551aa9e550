//! Decrypted pack directories: `u32 blobs_len ‖ plaintext`. Accepted plaintexts re-encode to
//! exactly themselves (a directory has no padding) and decode again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::format::pack;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let blobs_len = u64::from(u32::from_le_bytes(data[..4].try_into().unwrap()));
    let plain = &data[4..];
    if let Ok(dir) = pack::decode_directory_plaintext(plain, blobs_len) {
        let again = pack::encode_directory_plaintext(dir.kind, &dir.entries);
        assert_eq!(plain, &again[..]);
        assert_eq!(pack::decode_directory_plaintext(&again, blobs_len).unwrap(), dir);
    }
});

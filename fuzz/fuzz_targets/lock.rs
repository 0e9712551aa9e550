//! Lock files: the plaintext decoder round-trips what it accepts; the file decoder never
//! panics and accepts nothing not sealed under the key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::format::lock;

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = lock::decode_plaintext(data) {
        let again = lock::encode_plaintext(&rec).expect("an accepted record re-encodes");
        assert_eq!(again.len(), lock::LOCK_PLAINTEXT_LEN);
        assert_eq!(lock::decode_plaintext(&again).unwrap(), rec);
    }
    let _ = lock::decode(common::keys().meta_key(), data);
});

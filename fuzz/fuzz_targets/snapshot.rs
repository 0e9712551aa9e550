//! Decrypted snapshot files: decode → encode → decode is the identity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::format::snapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = snapshot::decode_plaintext(data) {
        let again = snapshot::encode_plaintext(&rec).expect("an accepted record re-encodes");
        assert_eq!(snapshot::decode_plaintext(&again).unwrap(), rec);
    }
});

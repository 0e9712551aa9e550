//! Decrypted index files: decode → encode → decode is the identity, and the encoding is the
//! input without its zero padding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::format::index;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = index::decode_plaintext(data) {
        let again = index::encode_plaintext(&file);
        assert_eq!(&data[..again.len()], &again[..]);
        assert!(data[again.len()..].iter().all(|&b| b == 0));
        assert_eq!(index::decode_plaintext(&again).unwrap(), file);
    }
});

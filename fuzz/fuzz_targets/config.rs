//! The config's key-less prefix and its decrypted settings: accepted settings are in bounds
//! and re-encode to a record that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::format::config;

fuzz_target!(|data: &[u8]| {
    let _ = config::decode_prefix(data);
    let settings = data.get(config::PREFIX_LEN..).unwrap_or(data);
    if let Ok(s) = config::decode_settings(settings) {
        s.validate().expect("accepted settings are in bounds");
        let again = config::encode_settings(&s).unwrap();
        assert_eq!(config::decode_settings(&again).unwrap(), s);
    }
});

//! Recovery-code parsing: arbitrary text never panics; an accepted code prints to a text that
//! parses to the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::RecoveryCode;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(code) = RecoveryCode::parse(text) {
        assert_eq!(RecoveryCode::parse(&code.to_text()).unwrap(), code);
    }
});

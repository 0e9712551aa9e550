//! Keyslot parsing from arbitrary bytes: never panics, and never accepts KDF parameters
//! outside the bounds of format-spec.md §5.11 (which is what keeps hostile slots cheap).
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::format::keyslot::{self, SlotKdf, ARGON2_M_KIB, ARGON2_P, ARGON2_T};

fuzz_target!(|data: &[u8]| {
    if let Ok(slot) = keyslot::decode(data) {
        let SlotKdf::Passphrase { params, .. } = slot.kdf;
        assert!(ARGON2_M_KIB.contains(&params.m_kib));
        assert!(ARGON2_T.contains(&params.t));
        assert!(ARGON2_P.contains(&params.p));
    }
});

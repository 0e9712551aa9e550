//! Keyslots from arbitrary bytes: never panics, never accepts KDF parameters outside the
//! bounds of format-spec.md §5.11 (which keeps hostile slots cheap), and never unwraps a key
//! without the credential.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::format::keyslot::{self, SlotKdf, ARGON2_M_KIB, ARGON2_P, ARGON2_T};
use packvault::SecretKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(slot) = keyslot::decode(data) {
        if let SlotKdf::Passphrase { params, .. } | SlotKdf::Pin { params, .. } = slot.kdf {
            assert!(ARGON2_M_KIB.contains(&params.m_kib));
            assert!(ARGON2_T.contains(&params.t));
            assert!(ARGON2_P.contains(&params.p));
        }
        assert!(slot.unwrap_master(&SecretKey::from_bytes([0; 32])).is_err());
    }
});

//! Keyslot encoding: round trips, sealed metadata, rejection of damaged and hostile slots.

use super::*;

const FAST: Argon2Params = Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 };

fn slot() -> (NewSlot, MasterKey) {
    (
        NewSlot {
            repo_id: [1; 16],
            slot_id: [2; 16],
            label: "laptop".into(),
            created: 1_764_000_000,
            kdf: SlotKdf::Passphrase { params: FAST, salt: [3; 32] },
        },
        MasterKey::from_bytes([4; 32]),
    )
}

#[test]
fn wrap_unwrap_and_wrong_passphrase() {
    let (s, m) = slot();
    let k = argon2id(b"correct horse", &[3; 32], FAST).unwrap();
    let bytes = encode(&s, &m, &k, &[5; 12]).unwrap();
    let parsed = decode(&bytes).unwrap();
    assert_eq!(parsed.metadata(&m).unwrap(), SlotMetadata { label: "laptop".into(), created: 1_764_000_000 });
    assert!(parsed.metadata(&MasterKey::from_bytes([9; 32])).is_err(), "only the master key opens it");
    assert_eq!(parsed.unwrap_master(&k).unwrap().bytes(), m.bytes());
    let wrong = argon2id(b"wrong horse", &[3; 32], FAST).unwrap();
    assert!(matches!(parsed.unwrap_master(&wrong), Err(Error::WrongPassphrase)));
}

/// Version 1 kept the label and the creation time in the clear ("Alice iPhone 15" was
/// readable in `keys/`) and the slot's length grew with the label.
#[test]
fn label_and_time_are_sealed_and_the_length_says_nothing() {
    let (mut s, m) = slot();
    let k = argon2id(b"pw", &[3; 32], FAST).unwrap();
    let mut lens = Vec::new();
    for label in ["", "Alice iPhone 15", &"x".repeat(MAX_LABEL_LEN)] {
        s.label = label.into();
        let bytes = encode(&s, &m, &k, &[5; 12]).unwrap();
        let visible = |needle: &[u8]| !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle);
        assert!(!visible(label.as_bytes()), "label {label:?} readable");
        assert!(!visible(&s.created.to_le_bytes()[..5]), "creation time readable");
        assert!(!visible(&(s.created as u32).to_le_bytes()), "creation time readable");
        assert_eq!(decode(&bytes).unwrap().metadata(&m).unwrap().label, label);
        lens.push(bytes.len());
    }
    assert_eq!(lens, [FIXED_LEN + PASSPHRASE_DATA_LEN + TAIL_LEN; 3], "one length whatever the label");
    s.label = "y".repeat(MAX_LABEL_LEN + 1);
    assert!(encode(&s, &m, &k, &[5; 12]).is_err());
}

#[test]
fn metadata_refuses_bad_padding_and_is_bound_to_the_slot() {
    let (s, m) = slot();
    let k = argon2id(b"pw", &[3; 32], FAST).unwrap();
    let slot = decode(&encode(&s, &m, &k, &[5; 12]).unwrap()).unwrap();
    // A slot whose metadata was sealed for another slot id does not open it.
    let mut other = slot.clone();
    other.slot_id = [7; 16];
    assert!(matches!(other.metadata(&m), Err(Error::Integrity(_))));
    // Non-zero padding, sealed correctly, is refused.
    let mut plain = vec![0u8; META_PLAIN_LEN];
    plain[8] = 1;
    plain[9] = b'a';
    plain[20] = 1;
    crypto::aead_seal(&meta_key(&m, &slot.slot_id), &[0; NONCE_LEN], &slot.authenticated, &mut plain);
    let mut bad = slot.clone();
    bad.sealed_meta.copy_from_slice(&plain);
    assert!(matches!(bad.metadata(&m), Err(Error::Malformed { .. })));
}

#[test]
fn any_change_is_caught() {
    let (s, m) = slot();
    let k = argon2id(b"pw", &[3; 32], FAST).unwrap();
    let bytes = encode(&s, &m, &k, &[5; 12]).unwrap();
    assert!(decode(&bytes).unwrap().verify(&m).is_ok());
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x02;
        if let Ok(slot) = decode(&bad) {
            assert!(slot.verify(&m).is_err(), "flip at {i} passes the check tag");
            // Everything before the check tag is also refused by opening.
            if i < bytes.len() - 32 {
                assert!(slot.unwrap_master(&k).is_err(), "flip at {i} accepted");
            } else {
                assert!(slot.unwrap_master(&k).is_ok(), "a damaged check tag alone does not lock the user out");
            }
        }
    }
    for n in 0..bytes.len() {
        assert!(decode(&bytes[..n]).is_err());
    }
}

#[test]
fn hostile_parameters_refused_before_any_work() {
    let (mut s, m) = slot();
    let k = argon2id(b"pw", &[3; 32], FAST).unwrap();
    let mut bytes = encode(&s, &m, &k, &[5; 12]).unwrap();
    let at = FIXED_LEN;
    bytes[at..at + 4].copy_from_slice(&(100u32 << 20).to_le_bytes()); // 100 GiB
                                                                      // decode() never runs the KDF, so the refusal costs nothing.
    assert!(matches!(decode(&bytes), Err(Error::LimitExceeded { .. })));
    s.kdf = SlotKdf::Passphrase { params: Argon2Params { m_kib: FAST.m_kib, t: 1_000_000_000, p: 1 }, salt: [0; 32] };
    assert!(encode(&s, &m, &k, &[5; 12]).is_err());
}

//! Known answers for the primitives as packvault calls them: AES-256-GCM-SIV against RFC 8452
//! Appendix C.2 and the Wycheproof vectors, BLAKE3 keyed-hash and derive-key modes against the
//! official vectors. Sources: `tests/vectors/rfc8452/`, `tests/vectors/wycheproof/` (C2SP
//! wycheproof `testvectors/aes_gcm_siv_test.json`), `tests/vectors/blake3/` (BLAKE3-team
//! `test_vectors/test_vectors.json`).

use std::path::Path;

use packvault::hazmat;
use serde_json::Value;

use crate::vectors::unhex;

fn load(rel: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn arr<const N: usize>(hex: &str) -> [u8; N] {
    unhex(hex).try_into().unwrap_or_else(|_| panic!("{hex} is not {N} bytes"))
}

#[test]
fn aes_256_gcm_siv_rfc8452_appendix_c2() {
    let v = load("rfc8452/aes256gcmsiv.json");
    let vectors = v["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 24);
    for t in vectors {
        let (key, nonce) = (arr::<32>(t["key"].as_str().unwrap()), arr::<12>(t["nonce"].as_str().unwrap()));
        let aad = unhex(t["aad"].as_str().unwrap());
        let pt = unhex(t["plaintext"].as_str().unwrap());
        let ct = unhex(t["ciphertext_and_tag"].as_str().unwrap());
        assert_eq!(hazmat::aes256_gcm_siv_seal(&key, &nonce, &aad, &pt), ct);
        assert_eq!(hazmat::aes256_gcm_siv_open(&key, &nonce, &aad, &ct).unwrap(), pt);
    }
}

#[test]
fn aes_256_gcm_siv_wycheproof() {
    let v = load("wycheproof/aes_gcm_siv_test.json");
    let (mut valid, mut invalid) = (0, 0);
    for g in v["testGroups"].as_array().unwrap() {
        // packvault uses 256-bit keys and 96-bit nonces only.
        if g["keySize"] != 256 || g["ivSize"] != 96 {
            continue;
        }
        for t in g["tests"].as_array().unwrap() {
            let (key, nonce) = (arr::<32>(t["key"].as_str().unwrap()), arr::<12>(t["iv"].as_str().unwrap()));
            let aad = unhex(t["aad"].as_str().unwrap());
            let msg = unhex(t["msg"].as_str().unwrap());
            let mut sealed = unhex(t["ct"].as_str().unwrap());
            sealed.extend_from_slice(&unhex(t["tag"].as_str().unwrap()));
            let id = &t["tcId"];
            match t["result"].as_str().unwrap() {
                "valid" => {
                    valid += 1;
                    assert_eq!(hazmat::aes256_gcm_siv_seal(&key, &nonce, &aad, &msg), sealed, "tcId {id}");
                    assert_eq!(hazmat::aes256_gcm_siv_open(&key, &nonce, &aad, &sealed).unwrap(), msg, "tcId {id}");
                }
                _ => {
                    invalid += 1;
                    assert!(hazmat::aes256_gcm_siv_open(&key, &nonce, &aad, &sealed).is_none(), "tcId {id} accepted");
                }
            }
        }
    }
    assert!(valid > 40 && invalid > 10, "{valid} valid, {invalid} invalid 256-bit cases");
}

#[test]
fn blake3_keyed_and_derive_key_official_vectors() {
    let v = load("blake3/test_vectors.json");
    let key: [u8; 32] = v["key"].as_str().unwrap().as_bytes().try_into().unwrap();
    let context = v["context_string"].as_str().unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let len = c["input_len"].as_u64().unwrap() as usize;
        let input: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let keyed = &c["keyed_hash"].as_str().unwrap()[..64];
        let derived = &c["derive_key"].as_str().unwrap()[..64];
        // The two modes packvault uses: chunk ids (keyed) and every subkey (derive_key).
        assert_eq!(crate::vectors::hex(blake3::keyed_hash(&key, &input).as_bytes()), keyed, "keyed, len {len}");
        assert_eq!(crate::vectors::hex(&blake3::derive_key(context, &input)), derived, "derive_key, len {len}");
        let mut xof = vec![0u8; c["derive_key"].as_str().unwrap().len() / 2];
        blake3::Hasher::new_derive_key(context).update(&input).finalize_xof().fill(&mut xof);
        assert_eq!(
            crate::vectors::hex(&xof),
            c["derive_key"].as_str().unwrap(),
            "derive_key XOF (gear table), len {len}"
        );
    }
}

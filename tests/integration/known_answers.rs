//! The committed vectors in `tests/vectors/` must equal what the code produces today, and
//! must decode to what their headers say.

use std::path::Path;

use packvault::format::blob::{BlobKind, Codec};
use packvault::format::snapshot::Tree;
use packvault::format::{config, index, keyslot, lock, pack, snapshot};
use packvault::hazmat::{self, Keys};
use packvault::{ErrorKind, Id};

use crate::vectors::{self, hex, master, unhex, Vector};

fn committed(name: &'static str) -> Vector {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name);
    Vector::parse(name, &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn committed_vectors_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fresh = vectors::all();
    let mut names: Vec<String> = std::fs::read_dir(root.join("tests/vectors"))
        .unwrap()
        .map(|e| e.unwrap())
        // Folders hold third-party primitive vectors (tests/integration/primitives.rs).
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = fresh.iter().map(|v| v.name.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected, "tests/vectors/ holds exactly the generated files");
    for v in &fresh {
        let on_disk = std::fs::read(root.join("tests/vectors").join(v.name)).unwrap();
        assert!(on_disk == v.render(), "tests/vectors/{} is stale: run `cargo run --example gen_vectors`", v.name);
    }
    let spec = std::fs::read_to_string(root.join("format-spec.md")).unwrap();
    assert!(
        spec.contains(&vectors::spec_section(&fresh)),
        "format-spec.md §11 is stale: run `cargo run --example gen_vectors`"
    );
}

#[test]
fn key_derivation_vector() {
    let v = committed("keys.txt");
    let keys = Keys::derive(&master());
    for (name, key) in keys.export() {
        assert_eq!(v.get(&format!("{name} key")), hex(&key));
    }
    // Independently of the library: BLAKE3 derive_key with the documented context strings.
    let m: [u8; 32] = std::array::from_fn(|i| i as u8);
    assert_eq!(v.get("chunk id key"), hex(&blake3::derive_key("packvault 2026-11-26 v1 chunk id", &m)));
    assert_eq!(v.get("metadata key"), hex(&blake3::derive_key("packvault 2026-11-26 v1 metadata", &m)));
    assert_eq!(v.get("master id"), hex(&blake3::derive_key("packvault 2026-11-26 v1 master id", &m)));
    assert_eq!(v.body.len(), 5 * 32);
}

fn open_vector(v: &Vector) -> packvault::Result<Vec<u8>> {
    let keys = Keys::derive(&master());
    let codec = if v.get("codec") == "zstd" { Codec::Zstd } else { Codec::Raw };
    let id = Id::from_hex(v.get("id")).unwrap();
    hazmat::open_blob(&keys, BlobKind::Data, &id, codec, v.get("raw length").parse().unwrap(), &v.body)
}

#[test]
fn blob_vectors() {
    for name in ["blob-data-zstd.txt", "blob-data-raw.txt"] {
        let v = committed(name);
        let plain = open_vector(&v).unwrap();
        assert_eq!(hex(&plain), v.get("plaintext"));
        assert_eq!(hex(blake3::hash(&plain).as_bytes()), v.get("plaintext blake3"));
        let k: [u8; 32] = std::array::from_fn(|i| i as u8);
        let id_key = blake3::derive_key("packvault 2026-11-26 v1 chunk id", &k);
        assert_eq!(hex(blake3::keyed_hash(&id_key, &plain).as_bytes()), v.get("id"));
    }
    let bad = committed("blob-flipped-tag-bit.txt");
    assert_eq!(bad.get("expect"), "integrity error");
    assert_eq!(open_vector(&bad).unwrap_err().kind(), ErrorKind::Integrity);
}

#[test]
fn pack_index_and_truncation_vectors() {
    let keys = Keys::derive(&master());
    let v = committed("pack.txt");
    assert_eq!(hex(blake3::hash(&v.body).as_bytes()), v.get("pack id"));
    let dir = pack::decode_pack(keys.meta_key(), &v.body).unwrap();
    assert_eq!(dir.kind, BlobKind::Data);
    let lines = v.get_all("blob");
    assert_eq!(lines.len(), dir.entries.len());
    for (line, e) in lines.iter().zip(&dir.entries) {
        assert!(line.starts_with(&e.id.to_hex()));
        assert!(line.contains(&format!("offset={} sealed={}", e.offset, e.sealed_len)));
        let sealed = &v.body[e.offset as usize..e.end() as usize];
        hazmat::open_blob(&keys, BlobKind::Data, &e.id, e.codec, e.raw_len, sealed).unwrap();
    }
    let t = committed("pack-truncated.txt");
    assert_eq!(pack::decode_pack(keys.meta_key(), &t.body).unwrap_err().kind(), ErrorKind::Malformed);

    let i = committed("index.txt");
    assert_eq!(hex(blake3::hash(&i.body).as_bytes()), i.get("index id"));
    let file = index::decode(keys.meta_key(), &i.body).unwrap();
    assert_eq!(file.packs.len(), 1);
    assert_eq!(file.packs[0].pack.to_hex(), v.get("pack id"));
    assert_eq!(file.packs[0].pack_len as usize, v.body.len());
    assert_eq!(file.packs[0].entries, dir.entries);
}

#[test]
fn lock_vector() {
    let keys = Keys::derive(&master());
    let l = committed("lock.txt");
    assert_eq!(hex(blake3::hash(&l.body).as_bytes()), l.get("lock id"));
    assert_eq!(l.body.len(), 8 + 12 + lock::LOCK_PLAINTEXT_LEN + 16, "every lock file has one size");
    assert_eq!(lock::decode(keys.meta_key(), &l.body).unwrap(), vectors::lock_record());
    let mut bad = l.body.clone();
    bad[30] ^= 1;
    assert!(lock::decode(keys.meta_key(), &bad).is_err());
}

#[test]
fn tree_snapshot_and_config_vectors() {
    let keys = Keys::derive(&master());
    let t = committed("tree.txt");
    let tree = Tree::decode(&t.body).unwrap();
    assert_eq!(tree, vectors::tree());
    assert_eq!(keys.tree_id(&t.body).to_hex(), t.get("tree id"));

    let s = committed("snapshot.txt");
    assert_eq!(hex(blake3::hash(&s.body).as_bytes()), s.get("snapshot id"));
    let rec = snapshot::decode(keys.meta_key(), &s.body).unwrap();
    assert_eq!(rec, vectors::snapshot_record());
    assert_eq!(rec.root.to_hex(), t.get("tree id"));

    let c = committed("config.txt");
    assert_eq!(hex(&config::decode_prefix(&c.body).unwrap()), c.get("repository id"));
    let cfg = config::decode(keys.meta_key(), &c.body).unwrap();
    assert_eq!(cfg.settings.master_id, master().id());
    assert_eq!(cfg.settings.chunker.avg_size, 65_536);
}

#[test]
fn keyslot_vectors() {
    let v = committed("keyslot-passphrase.txt");
    let slot = keyslot::decode(&v.body).unwrap();
    let keyslot::SlotKdf::Passphrase { params, salt } = &slot.kdf else { panic!("a passphrase slot") };
    assert_eq!(hex(salt), v.get("salt"));
    assert_eq!((params.m_kib, params.t, params.p), (8192, 1, 1));
    let k = keyslot::argon2id(v.get("passphrase").as_bytes(), salt, *params).unwrap();
    assert_eq!(hex(&hazmat::key_bytes(&k)), v.get("kdf output"));
    let m = slot.unwrap_master(&k).unwrap();
    assert_eq!(m.id(), master().id());
    assert_eq!(unhex(v.get("salt")).len(), 32);

    let w = committed("keyslot-wrong-passphrase.txt");
    let slot = keyslot::decode(&w.body).unwrap();
    let k = keyslot::argon2id(w.get("passphrase").as_bytes(), salt, *params).unwrap();
    assert_eq!(slot.unwrap_master(&k).unwrap_err().kind(), ErrorKind::WrongPassphrase);
}

#[test]
fn recovery_code_and_pin_keyslot_vectors() {
    let c = committed("recovery-code.txt");
    let code = packvault::RecoveryCode::parse(std::str::from_utf8(&c.body).unwrap()).unwrap();
    assert_eq!(code, packvault::RecoveryCode::from_bytes(unhex(c.get("code bytes")).try_into().unwrap()));
    assert_eq!(c.body.len(), 56 + 13);

    let r = committed("keyslot-recovery-code.txt");
    let slot = keyslot::decode(&r.body).unwrap();
    let keyslot::SlotKdf::RecoveryCode { salt } = &slot.kdf else { panic!("a recovery-code slot") };
    let code = packvault::RecoveryCode::parse(r.get("recovery code")).unwrap();
    let k = keyslot::recovery_kdf(&code, salt);
    assert_eq!(hex(&hazmat::key_bytes(&k)), r.get("kdf output"));
    // Independently: DERIVE(context, salt ‖ code).
    let mut material = unhex(r.get("salt"));
    material.extend_from_slice(&unhex(c.get("code bytes")));
    assert_eq!(hex(&blake3::derive_key("packvault 2026-11-26 v1 recovery code", &material)), r.get("kdf output"));
    assert_eq!(slot.unwrap_master(&k).unwrap().id(), master().id());

    let p = committed("keyslot-pin.txt");
    let slot = keyslot::decode(&p.body).unwrap();
    let keyslot::SlotKdf::Pin { params, salt, vault_id } = &slot.kdf else { panic!("a PIN slot") };
    assert_eq!(hex(vault_id), p.get("vault id"));
    let h = keyslot::argon2id(p.get("pin").as_bytes(), salt, *params).unwrap();
    assert_eq!(hex(&hazmat::key_bytes(&h)), p.get("pin hash"));
    assert_eq!(hex(&keyslot::pin_auth(&h)), p.get("vault auth"));
    let mut binding = salt.to_vec();
    binding.extend_from_slice(&[0x00, 0x20, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]); // m = 8192, t = 1, p = 1
    assert_eq!(hex(&blake3::derive_key("packvault 2026-11-26 v1 pin vault binding", &binding)), p.get("vault binding"));
    let secret = packvault::SecretKey::from_bytes(unhex(p.get("vault secret")).try_into().unwrap());
    let k = keyslot::pin_kdf(&h, &secret);
    assert_eq!(hex(&hazmat::key_bytes(&k)), p.get("kdf output"));
    assert_eq!(slot.unwrap_master(&k).unwrap().id(), master().id());
    let wrong = keyslot::pin_kdf(&h, &packvault::SecretKey::from_bytes([0; 32]));
    assert_eq!(
        slot.unwrap_master(&wrong).unwrap_err().kind(),
        ErrorKind::WrongPassphrase,
        "the vault secret is needed"
    );
}

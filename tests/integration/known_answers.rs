//! The committed vectors in `tests/vectors/` must equal what the code produces today, and
//! must decode to what their headers say.

use std::path::Path;

use packvault::format::blob::{BlobKind, Codec};
use packvault::format::config::ChunkerParams;
use packvault::format::snapshot::{NodeContent, Tree};
use packvault::format::{config, index, keyslot, lock, pack, snapshot};
use packvault::hazmat::{self, Chunker, Keys};
use packvault::{ErrorKind, FileKind, Id, Store};

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
    // Every vector is explained in §11's table (hand-written, above the generated dumps).
    let table = &spec[spec.find("## 11. Test vectors").unwrap()..spec.find(vectors::SPEC_BEGIN).unwrap()];
    let described: Vec<&str> = table.lines().filter_map(|l| l.strip_prefix('|')?.split('|').next()).collect();
    for v in &fresh {
        let name = format!("`{}`", v.name);
        assert!(described.iter().any(|cell| cell.contains(&name)), "format-spec.md §11 does not describe {}", v.name);
    }
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
fn dictionary_vectors() {
    let keys = Keys::derive(&master());
    let d = committed("dict.txt");
    let id = Id::from_hex(d.get("dictionary id")).unwrap();
    let dict = hazmat::open_dictionary(&keys, &id, &d.body).unwrap();
    assert_eq!(hex(&dict.bytes), d.get("dictionary"));
    // Independently of the library: the id is KEYED(DERIVE(context, master), D).
    let m: [u8; 32] = std::array::from_fn(|i| i as u8);
    let id_key = blake3::derive_key("packvault 2026-12-01 v2 dictionary id", &m);
    assert_eq!(d.get("dictionary id key"), hex(&id_key));
    assert_eq!(hex(blake3::keyed_hash(&id_key, &dict.bytes).as_bytes()), id.to_hex());
    assert_eq!(&d.body[..8], b"PVDICT\x02\x00");

    let v = committed("blob-data-zstd-dict.txt");
    let bid = Id::from_hex(v.get("id")).unwrap();
    let raw_len: u32 = v.get("raw length").parse().unwrap();
    let plain = hazmat::open_blob_with_dictionaries(
        &keys,
        BlobKind::Data,
        &bid,
        Codec::ZstdDict,
        raw_len,
        &v.body,
        std::slice::from_ref(&dict),
    )
    .unwrap();
    assert_eq!(hex(&plain), v.get("plaintext"));
    assert_eq!(v.get("dictionary id"), id.to_hex());
    // Without its dictionary the blob fails with an error naming the dictionary.
    let err = hazmat::open_blob_with_dictionaries(&keys, BlobKind::Data, &bid, Codec::ZstdDict, raw_len, &v.body, &[])
        .unwrap_err();
    assert_eq!(err.dictionary(), Some(id), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains(&id.to_hex()), "{err}");
    // A reader of codec 1 only (or the wrong codec in the entry) fails authentication.
    assert!(hazmat::open_blob(&keys, BlobKind::Data, &bid, Codec::Zstd, raw_len, &v.body).unwrap_err().is_integrity());
    // A damaged dictionary file is refused.
    let mut bad = d.body.clone();
    bad[20] ^= 1;
    assert!(hazmat::open_dictionary(&keys, &id, &bad).unwrap_err().is_integrity());
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
    // The trailer from the spec's primitives alone (§5.5.1): the sealed lengths open under
    // DERIVE("… pack trailer", meta_key), bound to the pack's length, and the filler is the
    // keyed stream of §5.5.
    let body = &v.body;
    let len = body.len() as u64;
    let tr = &body[body.len() - pack::TRAILER_LEN..];
    let meta = hazmat::key_bytes(keys.meta_key());
    let trailer_key = blake3::derive_key("packvault 2026-12-01 v2 pack trailer", &meta);
    let mut ad = b"PVPACK".to_vec();
    ad.extend_from_slice(&tr[42..44]);
    ad.extend_from_slice(&len.to_le_bytes());
    let nonce: [u8; 12] = tr[..12].try_into().unwrap();
    assert_eq!(hex(&nonce), v.get("pack nonce"));
    let lengths = hazmat::aes256_gcm_siv_open(&trailer_key, &nonce, &ad, &tr[12..36]).expect("trailer opens");
    let blobs_len = u32::from_le_bytes(lengths[..4].try_into().unwrap());
    let dir_len = u32::from_le_bytes(lengths[4..].try_into().unwrap());
    assert_eq!(blobs_len.to_string(), v.get("blobs length"));
    assert_eq!(dir_len.to_string(), v.get("directory length"));
    let dir_at = body.len() - pack::TRAILER_LEN - dir_len as usize;
    let mut filler = vec![0u8; dir_at - blobs_len as usize];
    assert_eq!(filler.len().to_string(), v.get("filler length"));
    let mut h = blake3::Hasher::new_derive_key("packvault 2026-12-01 v2 pack filler");
    h.update(&meta).update(&nonce);
    h.finalize_xof().fill(&mut filler);
    assert_eq!(&body[blobs_len as usize..dir_at], &filler[..]);
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

    // Times before 1970: seconds rounded down, nanoseconds up from there (format-spec.md §5.8).
    let old = tree.nodes.iter().find(|n| n.name == b"old.txt").unwrap();
    assert_eq!((old.mtime_secs, old.mtime_nanos), (-2, 500_000_000));
    assert_eq!(old.mtime(), Some(std::time::UNIX_EPOCH - std::time::Duration::from_millis(1500)));
    assert_eq!(old.content, NodeContent::File { size: 0, chunks: vec![] });
    // name, mode 0o644 (fb a4 01), zigzag(-2) = 3, 500_000_000 as a u32-wide varint, File, 0, [].
    let mut node = vec![7];
    node.extend_from_slice(b"old.txt");
    node.extend_from_slice(&[0xfb, 0xa4, 0x01, 0x03, 0xfc, 0x00, 0x65, 0xcd, 0x1d, 0x00, 0x00, 0x00]);
    assert!(t.body.ends_with(&node), "{}", hex(&t.body));

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
    // The sealed metadata from the spec's primitives alone (§5.11): at H + 60, 280 bytes,
    // under DERIVE("… keyslot metadata", master ‖ slot id), zero nonce, AD = bytes[0..H].
    let h = keyslot::FIXED_LEN + keyslot::PASSPHRASE_DATA_LEN;
    let mut material = vectors::master_bytes().to_vec();
    material.extend_from_slice(&slot.slot_id);
    let meta_key = blake3::derive_key("packvault 2026-12-01 v2 keyslot metadata", &material);
    let plain = hazmat::aes256_gcm_siv_open(&meta_key, &[0; 12], &v.body[..h], &v.body[h + 60..h + 340]).unwrap();
    let created: i64 = v.get("created").parse().unwrap();
    let mut want = created.to_le_bytes().to_vec();
    want.push(6);
    want.extend_from_slice(v.get("label").as_bytes());
    want.resize(264, 0);
    assert_eq!(plain, want);
    assert_eq!(slot.metadata(&m).unwrap().label, v.get("label"));
    assert_eq!(v.body.len(), h + keyslot::TAIL_LEN);

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

/// FastCDC 2020 as format-spec.md §5.3 writes it, from the spec's own pieces (the gear table
/// from the chunker key, the masks as printed), without the fastcdc crate or [`Chunker`].
fn spec_cut(x: &[u8], gear: &[u64; 256], (min, avg, max): (usize, usize, usize), mask_s: u64, mask_l: u64) -> usize {
    let n = x.len();
    if n <= min {
        return n;
    }
    let (end, center) = (n.min(max), n.min(avg));
    let mut h = 0u64;
    let mut i = min / 2;
    for (limit, mask) in [(center / 2, mask_s), (end / 2, mask_l)] {
        while i < limit {
            let a = 2 * i;
            h = (h << 2).wrapping_add(gear[x[a] as usize] << 1);
            if h & (mask << 1) == 0 {
                return a;
            }
            h = h.wrapping_add(gear[x[a + 1] as usize]);
            if h & mask == 0 {
                return a + 1;
            }
            i += 1;
        }
    }
    end
}

#[test]
fn chunker_vector() {
    let v = committed("chunker.txt");
    let input = vectors::chunker_input();
    assert_eq!(hex(blake3::hash(&input).as_bytes()), v.get("input blake3"));
    assert_eq!(hex(&input[..16]), v.get("input first 16 bytes"));
    let listed: Vec<(usize, usize, String)> = v
        .get_all("chunk")
        .iter()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').map(|kv| kv.split_once('=').unwrap().1).collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].to_string())
        })
        .collect();
    assert_eq!(v.body.len(), 32 * listed.len());

    // The library's chunker re-chunks the input to the same cut points and ids.
    let keys = Keys::derive(&master());
    let chunker = Chunker::new(&ChunkerParams::default(), keys.chunker_key()).unwrap();
    let mut start = 0;
    let mut ours = Vec::new();
    for end in chunker.cut_points(&input) {
        ours.push((start, end - start, keys.chunk_id(&input[start..end]).to_hex()));
        start = end;
    }
    assert_eq!(ours, listed);

    // So does the algorithm as the spec prints it, built from the spec's pieces only.
    let m: [u8; 32] = std::array::from_fn(|i| i as u8);
    let chunker_key = blake3::derive_key("packvault 2026-11-26 v1 chunker", &m);
    let mut table = [0u8; 2048];
    blake3::Hasher::new_derive_key("packvault 2026-11-26 v1 gear table")
        .update(&chunker_key)
        .finalize_xof()
        .fill(&mut table);
    let gear: [u64; 256] = std::array::from_fn(|i| u64::from_le_bytes(table[8 * i..8 * i + 8].try_into().unwrap()));
    let (mask_s, mask_l) = (0x0000_d907_0353_7000, 0x0000_d90f_0353_0000); // MASKS[17], MASKS[15]
    assert!(v.get("masks").contains(&format!("{mask_s:#018x}")) && v.get("masks").contains(&format!("{mask_l:#018x}")));
    let id_key = blake3::derive_key("packvault 2026-11-26 v1 chunk id", &m);
    let mut pos = 0;
    for (i, (offset, len, id)) in listed.iter().enumerate() {
        assert_eq!(pos, *offset);
        let cut = spec_cut(&input[pos..], &gear, (16 << 10, 64 << 10, 256 << 10), mask_s, mask_l);
        assert_eq!(cut, *len, "chunk {i}");
        assert_eq!(&hex(blake3::keyed_hash(&id_key, &input[pos..pos + cut]).as_bytes()), id);
        assert_eq!(hex(&v.body[32 * i..32 * i + 32]), *id);
        pos += cut;
    }
    assert_eq!(pos, input.len());
    // The vector covers both mask regions, both cut positions of a pair, and a last chunk
    // shorter than the minimum.
    let lens: Vec<usize> = listed.iter().map(|c| c.1).collect();
    let (body, last) = lens.split_at(lens.len() - 1);
    assert!(body.iter().any(|&l| l < 64 << 10) && body.iter().any(|&l| l >= 64 << 10));
    assert!(body.iter().any(|&l| l % 2 == 0) && body.iter().any(|&l| l % 2 == 1));
    assert!(last[0] < 16 << 10);
}

#[test]
fn masks_printed_in_the_spec_are_fastcdcs() {
    let spec = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec.md")).unwrap();
    // Every index the bounds of §5.3 can reach: round(log2 avg) ± level, avg 256 B–4 MiB, level 0–3.
    for i in 5..=25 {
        let line = format!("MASKS[{i:2}] = {:#018x}", fastcdc::v2020::MASKS[i]);
        assert!(spec.contains(&line), "format-spec.md §5.3 lacks `{line}`");
    }
}

#[test]
fn passphrase_nfc_vector() {
    let v = committed("passphrase-nfc.txt");
    assert_eq!(v.body, v.get("passphrase").as_bytes());
    assert_eq!(v.body, vectors::PASSPHRASE_NFC.as_bytes());
    assert_eq!(v.get("typed (NFD) utf-8"), hex(vectors::PASSPHRASE_TYPED.as_bytes()));
    // Same text, other bytes: composed é (c3 a9) against e + combining acute (65 cc 81).
    assert_ne!(vectors::PASSPHRASE_TYPED.as_bytes(), vectors::PASSPHRASE_NFC.as_bytes());
    assert!(hex(&v.body).contains("c3a9") && v.get("typed (NFD) utf-8").contains("65cc81"));
    let salt: [u8; 32] = unhex(v.get("salt")).try_into().unwrap();
    let params = keyslot::Argon2Params { m_kib: 8192, t: 1, p: 1 };
    let k = keyslot::argon2id(&v.body, &salt, params).unwrap();
    assert_eq!(hex(&hazmat::key_bytes(&k)), v.get("kdf output"));
}

/// `bytes` with the u16 version at `at` set to 2.
/// `bytes` with the version field at `at` set to the next version (3), which this reader does
/// not implement.
fn newer_version(bytes: &[u8], at: usize) -> Vec<u8> {
    with_version(bytes, at, packvault::format::FORMAT_VERSION + 1)
}

fn with_version(bytes: &[u8], at: usize, version: u16) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at..at + 2].copy_from_slice(&version.to_le_bytes());
    out
}

#[test]
fn every_versioned_structure_reports_a_newer_version_as_unsupported() {
    let keys = Keys::derive(&master());
    let unsupported = |what: &str, r: packvault::Result<()>| {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::UnsupportedVersion, "{what}: {e}");
        assert!(!e.is_integrity(), "{what}: a newer version is not damage");
    };
    // The header is checked before anything else, so a version-3 file is never "damaged" for
    // failing a check of version 2 (here, its authentication tag no longer verifies).
    let s = committed("snapshot.txt").body;
    unsupported("snapshot", snapshot::decode(keys.meta_key(), &newer_version(&s, 6)).map(drop));
    let i = committed("index.txt").body;
    unsupported("index", index::decode(keys.meta_key(), &newer_version(&i, 6)).map(drop));
    let c = committed("config.txt").body;
    unsupported("config prefix", config::decode_prefix(&newer_version(&c, 6)).map(drop));
    unsupported("config", config::decode(keys.meta_key(), &newer_version(&c, 6)).map(drop));
    let l = committed("lock.txt").body;
    unsupported("lock", lock::decode(keys.meta_key(), &newer_version(&l, 6)).map(drop));
    let p = committed("pack.txt").body;
    unsupported("pack", pack::decode_pack(keys.meta_key(), &newer_version(&p, p.len() - 2)).map(drop));
    let k = committed("keyslot-passphrase.txt").body;
    unsupported("keyslot", keyslot::decode(&newer_version(&k, 6)).map(drop));
    // Version 1 (packvault 0.1, never released) is not read either: unsupported, not damaged.
    unsupported("version-1 snapshot", snapshot::decode(keys.meta_key(), &with_version(&s, 6, 1)).map(drop));
    unsupported("version-1 pack", pack::decode_pack(keys.meta_key(), &with_version(&p, p.len() - 2, 1)).map(drop));
}

#[test]
fn a_snapshot_of_a_newer_version_is_listed_as_unsupported_not_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut repo) = crate::new_local_repo(dir.path());
    let meta = packvault::FileMeta { mode: 0o600, mtime_secs: 5, mtime_nanos: 0 };
    let mut b = repo.backup().unwrap();
    b.add_stream("a.txt", &b"a"[..], meta).unwrap();
    let first = b.commit(packvault::SnapshotInfo::default()).unwrap().snapshot;
    // What a newer packvault could have written beside it: a sound name, version 3.
    let newer = newer_version(&store.get(FileKind::Snapshot, &first.to_hex()).unwrap(), 6);
    let newer_id = Id::hash_of(&newer);
    store.put(FileKind::Snapshot, &newer_id.to_hex(), &newer).unwrap();
    let repo = crate::reopen(store.clone(), Some(&dir.path().join("cache")));
    let (good, bad) = repo.snapshots_with_errors().unwrap();
    assert_eq!(good.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![first]);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0 .0, newer_id);
    assert_eq!(bad[0].1.kind(), ErrorKind::UnsupportedVersion, "{}", bad[0].1);
    assert!(!bad[0].1.is_integrity());
    assert!(bad[0].1.to_string().contains("unsupported snapshot version 3"), "{}", bad[0].1);
}

#[test]
fn device_keyslot_and_tombstone_vectors_open() {
    use packvault::format::keyslot;
    let keys = packvault::hazmat::Keys::derive(&master());
    let d = committed("keyslot-device.txt");
    let slot = keyslot::decode(&d.body).unwrap();
    let secret = packvault::SecretKey::from_bytes(unhex(d.get("device secret")).try_into().unwrap());
    let keyslot::SlotKdf::Device { salt } = slot.kdf else { panic!("kind 4") };
    let opened = slot.unwrap_master(&keyslot::device_kdf(&secret, &salt)).unwrap();
    assert_eq!(opened.id(), master().id());

    let t = committed("tombstone.txt");
    let rec = packvault::format::tombstone::decode(keys.meta_key(), &t.body).unwrap();
    let snap = committed("snapshot.txt");
    let snap_id = packvault::SnapshotId::from_bytes(*blake3::hash(&snap.body).as_bytes());
    assert_eq!(rec, vectors::tombstone_record(snap_id));
    assert_eq!(hex(blake3::hash(&t.body).as_bytes()), t.get("tombstone id"));
}

#[test]
fn passphrases_are_normalized_as_the_nfc_vector_says() {
    use unicode_normalization::UnicodeNormalization;
    let v = committed("passphrase-nfc.txt");
    assert_eq!(vectors::PASSPHRASE_TYPED.nfc().collect::<String>(), vectors::PASSPHRASE_NFC);
    assert_eq!(v.body, vectors::PASSPHRASE_NFC.as_bytes());
    // The library's Passphrase normalizes: a slot made from the typed (decomposed) form opens
    // with the composed one, and the other way round.
    let store = std::sync::Arc::new(packvault::MemoryStore::new());
    let init = packvault::InitOptions { state: packvault::ClientState::Disabled, ..crate::fast_init(None) };
    let repo = packvault::Repository::init(
        store.clone(),
        &packvault::Credentials::passphrase(vectors::PASSPHRASE_TYPED),
        init,
    )
    .unwrap();
    drop(repo);
    let open = packvault::OpenOptions { state: packvault::ClientState::Disabled, ..Default::default() };
    packvault::Repository::open(store, &packvault::Credentials::passphrase(vectors::PASSPHRASE_NFC), &open).unwrap();
}

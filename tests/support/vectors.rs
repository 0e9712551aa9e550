//! The known-answer test vectors of format-spec.md §11, built from fixed inputs.
//!
//! One source for both the generator (`cargo run --example gen_vectors`, which writes
//! `tests/vectors/*.txt` and the hex dumps in format-spec.md) and the test that fails when the
//! committed files are stale. Each file is self-describing: `name: value` header lines (the
//! first is `expect:`), a blank line, then the raw bytes of the structure.

#![allow(dead_code)]

#[path = "noise.rs"]
pub mod noise;

use packvault::format::blob::{BlobKind, Codec, SealedBlob};
use packvault::format::config::{ChunkerParams, ConfigFile, Settings};
use packvault::format::index::{IndexFile, IndexPack};
use packvault::format::keyslot::{self, Argon2Params, NewSlot, SlotKdf};
use packvault::format::lock::{self, LockKind, LockRecord};
use packvault::format::pack;
use packvault::format::snapshot::{Node, NodeContent, SnapshotRecord, Summary, Tree};
use packvault::hazmat::{self, gear_table, Chunker, Keys, MasterKey};
use packvault::{PackId, RecoveryCode, SecretKey, SnapshotId};

/// One vector file.
pub struct Vector {
    pub name: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Vector {
    fn new(name: &'static str, expect: &str) -> Vector {
        Vector { name, headers: vec![("expect".into(), expect.into())], body: Vec::new() }
    }

    fn h(&mut self, k: &str, v: impl Into<String>) -> &mut Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn get(&self, k: &str) -> &str {
        self.headers
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{}: no header {k}", self.name))
    }

    pub fn get_all(&self, k: &str) -> Vec<&str> {
        self.headers.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect()
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out
    }

    pub fn parse(name: &'static str, bytes: &[u8]) -> Vector {
        let split = bytes.windows(2).position(|w| w == b"\n\n").expect("blank line after the headers");
        let head = std::str::from_utf8(&bytes[..split]).expect("UTF-8 headers");
        let headers = head
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(": ").expect("name: value");
                (k.to_string(), v.to_string())
            })
            .collect();
        Vector { name, headers, body: bytes[split + 2..].to_vec() }
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

pub fn master() -> MasterKey {
    MasterKey::from_bytes(master_bytes())
}

/// The vector master key's bytes: 0, 1, …, 31.
pub fn master_bytes() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

pub const TEXT: &[u8] = b"{\"from\":\"ana\",\"text\":\"see you at 8\"}\n{\"from\":\"ben\",\"text\":\"see you at 8!\"}\n{\"from\":\"ana\",\"text\":\"see you at 8\"}\n";
/// A raw-content zstd dictionary (any bytes zstd does not recognise as a trained dictionary
/// are its content): chat lines like the ones it compresses.
pub const DICTIONARY: &[u8] = b"{\"from\":\"ana\",\"text\":\"see you at \"}\n{\"from\":\"ben\",\"text\":\"see you at 8!\"}\n{\"from\":\"ana\",\"text\":\"ok\"}\n{\"from\":\"ben\",\"text\":\"on my way\"}\n";
/// A chunk that compresses better with [`DICTIONARY`] than without.
pub const DICT_TEXT: &[u8] = b"{\"from\":\"ben\",\"text\":\"on my way\"}\n{\"from\":\"ana\",\"text\":\"see you at 9\"}\n{\"from\":\"ana\",\"text\":\"ok\"}\n";
pub const PASSPHRASE: &str = "correct horse battery staple";
pub const WRONG_PASSPHRASE: &str = "Tr0ub4dor&3";
pub const REPO_ID: [u8; 16] = [0x0f; 16];
pub const RECOVERY_CODE: [u8; 32] = [
    0x5a, 0x17, 0xc3, 0x90, 0x0e, 0x61, 0xf2, 0x3b, 0x88, 0x04, 0xde, 0x7a, 0x29, 0xb6, 0x4f, 0x13, 0xa0, 0x6c, 0x95,
    0x38, 0xe1, 0x0d, 0x72, 0xcb, 0x46, 0xf9, 0x2e, 0x83, 0x1a, 0xbd, 0x57, 0xc4,
];
pub const PIN: &str = "482913";
pub const VAULT_ID: [u8; 16] = [0x0e; 16];
pub const VAULT_SECRET: [u8; 32] = [0x0f; 32];
pub const FAST_KDF: Argon2Params = Argon2Params { m_kib: 8192, t: 1, p: 1 };

fn zstd_len(b: &[u8]) -> usize {
    hazmat::zstd_frame_len(b, 3)
}

pub fn random_bytes() -> Vec<u8> {
    noise::noise(40, 0x0123_4567_89ab_cdef)
}

/// Length and seed of the chunker vector's input (`noise(CHUNKER_INPUT_LEN, CHUNKER_SEED)`).
pub const CHUNKER_INPUT_LEN: usize = 512 << 10;
pub const CHUNKER_SEED: u64 = 1;

/// The chunker vector's input.
pub fn chunker_input() -> Vec<u8> {
    noise::noise(CHUNKER_INPUT_LEN, CHUNKER_SEED)
}

/// A passphrase as a keyboard may deliver it, in decomposed form (NFD: `e` + U+0300 …), and
/// the NFC form that format-spec.md §2 makes the Argon2id input. Written out here rather than
/// computed, so the vector does not depend on a normalization library.
pub const PASSPHRASE_TYPED: &str = "Cre\u{300}me bru\u{302}le\u{301}e au cafe\u{301} 1969";
pub const PASSPHRASE_NFC: &str = "Cr\u{e8}me br\u{fb}l\u{e9}e au caf\u{e9} 1969";

/// The mtime of the tree vector's `old.txt`: 1969-12-31T23:59:58.5Z, 1.5 s before the epoch.
pub const BEFORE_1970: (i64, u32) = (-2, 500_000_000);

pub fn tree() -> Tree {
    let keys = Keys::derive(&master());
    Tree {
        nodes: vec![
            Node {
                name: b"ana.json".to_vec(),
                mode: 0o600,
                mtime_secs: 1_764_115_200,
                mtime_nanos: 500,
                content: NodeContent::File {
                    size: (TEXT.len() + random_bytes().len()) as u64,
                    chunks: vec![keys.chunk_id(TEXT), keys.chunk_id(&random_bytes())],
                },
            },
            Node {
                name: b"latest".to_vec(),
                mode: 0o777,
                mtime_secs: 1_764_115_200,
                mtime_nanos: 0,
                content: NodeContent::Symlink { target: b"ana.json".to_vec() },
            },
            Node {
                name: b"old.txt".to_vec(),
                mode: 0o644,
                mtime_secs: BEFORE_1970.0,
                mtime_nanos: BEFORE_1970.1,
                content: NodeContent::File { size: 0, chunks: vec![] },
            },
        ],
    }
}

/// The blobs a backup of the tree vector's content stores: both chunks of `ana.json`
/// (zstd level 3), then the tree.
pub fn stored_blobs() -> Vec<SealedBlob> {
    let keys = Keys::derive(&master());
    vec![
        hazmat::seal_blob(&keys, BlobKind::Data, TEXT, Some(3)),
        hazmat::seal_blob(&keys, BlobKind::Data, &random_bytes(), Some(3)),
        hazmat::seal_blob(&keys, BlobKind::Tree, &tree().encode().expect("valid tree"), Some(3)),
    ]
}

pub fn snapshot_record() -> SnapshotRecord {
    let keys = Keys::derive(&master());
    SnapshotRecord {
        time_secs: 1_764_115_200,
        time_nanos: 0,
        hostname: "phone".into(),
        username: "ana".into(),
        tags: vec!["daily".into()],
        paths: vec!["/data/chats".into()],
        root: keys.tree_id(&tree().encode().expect("valid tree")),
        sequence: 1,
        previous: None,
        // As format-spec.md §5.9 defines the counts, for a first backup of the tree vector.
        summary: Summary {
            files: 2,
            dirs: 1,
            symlinks: 1,
            total_bytes: (TEXT.len() + 40) as u64,
            chunks: 2,
            new_data_blobs: 2,
            new_tree_blobs: 1,
            new_raw_bytes: stored_blobs().iter().map(|b| u64::from(b.raw_len)).sum(),
            new_stored_bytes: stored_blobs().iter().map(|b| b.bytes.len() as u64).sum(),
            new_packs: 2,
            bytes_read: (TEXT.len() + 40) as u64,
        },
        flags: 0,
        program: "packvault test vectors".into(),
    }
}

/// Every vector, in the order format-spec.md prints them.
pub fn all() -> Vec<Vector> {
    let m = master();
    let keys = Keys::derive(&m);
    let mut out = Vec::new();

    // Key derivations.
    let mut v = Vector::new("keys.txt", "success");
    v.h("master", hex(&std::array::from_fn::<u8, 32, _>(|i| i as u8)));
    for (name, key) in keys.export() {
        v.h(&format!("{} key", name), hex(&key));
        v.body.extend_from_slice(&key);
    }
    v.h("master id", m.id().to_hex());
    let gear = gear_table(keys.chunker_key());
    v.h("gear[0..4]", gear[..4].iter().map(|g| format!("{g:016x}")).collect::<Vec<_>>().join(" "));
    let text_id = keys.chunk_id(TEXT);
    v.h("blob key of chunk id", format!("{} {}", text_id, hex(&keys.blob_key(&text_id.0))));
    out.push(v);

    // Cut points of the keyed chunker over seeded noise, and the chunks' ids.
    let params = ChunkerParams::default();
    let chunker = Chunker::new(&params, keys.chunker_key()).expect("default parameters");
    let input = chunker_input();
    let (mask_s, mask_l) =
        fastcdc::v2020::select_masks(params.avg_size as usize, fastcdc::v2020::Normalization::Level1);
    let mut v = Vector::new("chunker.txt", "success");
    v.h("master", "keys.txt")
        .h("parameters", "min=16384 avg=65536 max=262144 normalization=1")
        .h("masks", format!("bits=16 mask_s=MASKS[17]={mask_s:#018x} mask_l=MASKS[15]={mask_l:#018x}"))
        .h("gear[252..256]", gear[252..].iter().map(|g| format!("{g:016x}")).collect::<Vec<_>>().join(" "))
        .h("input", format!("noise({CHUNKER_INPUT_LEN}, {CHUNKER_SEED})"))
        .h("input first 16 bytes", hex(&input[..16]))
        .h("input blake3", hex(blake3::hash(&input).as_bytes()));
    let mut start = 0;
    for end in chunker.cut_points(&input) {
        let id = keys.chunk_id(&input[start..end]);
        v.h("chunk", format!("offset={start} length={} id={id}", end - start));
        v.body.extend_from_slice(&id.0 .0);
        start = end;
    }
    out.push(v);

    // The passphrase's byte form: NFC, then UTF-8, is what Argon2id hashes.
    let salt = [0x10; 32];
    let kdf_out = keyslot::argon2id(PASSPHRASE_NFC.as_bytes(), &salt, FAST_KDF).expect("argon2");
    let mut v = Vector::new("passphrase-nfc.txt", "success");
    v.h("passphrase", PASSPHRASE_NFC)
        .h("typed (NFD) utf-8", hex(PASSPHRASE_TYPED.as_bytes()))
        .h("argon2id", "m=8192 t=1 p=1")
        .h("salt", hex(&salt))
        .h("kdf output", hex(&hazmat::key_bytes(&kdf_out)));
    v.body = PASSPHRASE_NFC.as_bytes().to_vec();
    out.push(v);

    // Sealed blobs.
    let text_blob = hazmat::seal_blob(&keys, BlobKind::Data, TEXT, Some(3));
    let raw_blob = hazmat::seal_blob(&keys, BlobKind::Data, &random_bytes(), Some(3));
    for (name, blob, plain) in
        [("blob-data-zstd.txt", &text_blob, TEXT.to_vec()), ("blob-data-raw.txt", &raw_blob, random_bytes())]
    {
        let mut v = Vector::new(name, "success");
        v.h("master", "keys.txt")
            .h("kind", "data")
            .h("codec", if blob.codec == Codec::Zstd { "zstd" } else { "raw" })
            .h("raw length", blob.raw_len.to_string())
            .h("id", blob.id.to_hex())
            .h("plaintext", hex(&plain))
            .h("plaintext blake3", hex(blake3::hash(&plain).as_bytes()));
        v.body = blob.bytes.clone();
        out.push(v);
    }
    let mut v = Vector::new("blob-flipped-tag-bit.txt", "integrity error");
    v.h("master", "keys.txt")
        .h("kind", "data")
        .h("codec", "zstd")
        .h("raw length", text_blob.raw_len.to_string())
        .h("id", text_blob.id.to_hex())
        .h("defect", "the last byte of blob-data-zstd.txt with bit 0 flipped");
    v.body = text_blob.bytes.clone();
    *v.body.last_mut().expect("non-empty") ^= 1;
    out.push(v);

    // A compression dictionary (§5.17) and a blob compressed with it (codec 2).
    let (dict_id, dict_file) = hazmat::encode_dictionary(&keys, DICTIONARY).expect("dictionary in bounds");
    let mut v = Vector::new("dict.txt", "success");
    v.h("master", "keys.txt")
        .h("dictionary id key", hex(&blake3::derive_key("packvault 2026-12-01 v2 dictionary id", &master_bytes())))
        .h("dictionary id", dict_id.to_hex())
        .h("dictionary", hex(DICTIONARY));
    v.body = dict_file.clone();
    out.push(v);
    let dictionary = hazmat::open_dictionary(&keys, &dict_id, &dict_file).expect("opens");
    let dict_blob = hazmat::seal_data_blob(&keys, DICT_TEXT, Some(3), Some(&dictionary));
    assert_eq!(dict_blob.codec, Codec::ZstdDict, "the vector shows codec 2");
    let mut v = Vector::new("blob-data-zstd-dict.txt", "success");
    v.h("master", "keys.txt")
        .h("kind", "data")
        .h("codec", "zstd with dictionary (2)")
        .h("dictionary", "dict.txt")
        .h("dictionary id", dict_id.to_hex())
        .h("raw length", dict_blob.raw_len.to_string())
        .h("id", dict_blob.id.to_hex())
        .h("plaintext", hex(DICT_TEXT))
        .h("plaintext blake3", hex(blake3::hash(DICT_TEXT).as_bytes()))
        .h("frame without dictionary", format!("{} bytes", zstd_len(DICT_TEXT)));
    v.body = dict_blob.bytes.clone();
    out.push(v);

    // A pack of both blobs (in id order, as the writer orders them).
    let mut blobs = vec![text_blob.clone(), raw_blob.clone()];
    blobs.sort_by_key(|b| b.id);
    let (pack, entries) = hazmat::encode_pack(&keys, BlobKind::Data, &blobs, &[0x01; 12]);
    let pack_id = PackId::from_bytes(*blake3::hash(&pack).as_bytes());
    let mut v = Vector::new("pack.txt", "success");
    let blobs_len = entries.last().map_or(0, |e| e.end());
    let dir_len = pack::directory_len(entries.len()) as u64;
    v.h("master", "keys.txt").h("kind", "data").h("pack nonce", hex(&[0x01; 12])).h("pack id", pack_id.to_hex());
    v.h("blobs length", blobs_len.to_string())
        .h("directory length", dir_len.to_string())
        .h("filler length", (pack.len() as u64 - blobs_len - dir_len - pack::TRAILER_LEN as u64).to_string());
    for e in &entries {
        v.h(
            "blob",
            format!("{} offset={} sealed={} raw={} codec={}", e.id, e.offset, e.sealed_len, e.raw_len, e.codec as u8),
        );
    }
    v.body = pack.clone();
    out.push(v);
    let mut v = Vector::new("pack-truncated.txt", "malformed");
    v.h("master", "keys.txt").h("defect", "pack.txt without its last byte (the trailer's version): its length is no Padmé length, and its last 44 bytes no trailer");
    v.body = pack[..pack.len() - 1].to_vec();
    out.push(v);

    // The index file naming that pack.
    let index = IndexFile {
        packs: vec![IndexPack {
            pack: pack_id,
            kind: BlobKind::Data,
            pack_len: pack.len() as u32,
            entries: entries.clone(),
        }],
    };
    let index_bytes = hazmat::encode_index(&keys, &index, &[0x02; 12]);
    let mut v = Vector::new("index.txt", "success");
    v.h("master", "keys.txt")
        .h("nonce", hex(&[0x02; 12]))
        .h("index id", hex(blake3::hash(&index_bytes).as_bytes()))
        .h("pack", format!("{} kind=data length={} blobs={}", pack_id, pack.len(), entries.len()));
    v.body = index_bytes;
    out.push(v);

    // A tree blob's plaintext (the record encoding).
    let tree_bytes = tree().encode().expect("valid tree");
    let mut v = Vector::new("tree.txt", "success");
    v.h("master", "keys.txt")
        .h("tree id", keys.tree_id(&tree_bytes).to_hex())
        .h("entries", "ana.json (file, 2 chunks), latest (symlink to ana.json), old.txt (empty file)")
        .h(
            "old.txt mtime",
            "1969-12-31T23:59:58.5Z = secs -2, nanos 500000000 (zigzag varint 03, varint fc 00 65 cd 1d)",
        );
    v.body = tree_bytes;
    out.push(v);

    // A snapshot file.
    let snap = hazmat::encode_snapshot(&keys, &snapshot_record(), &[0x03; 12]).expect("valid snapshot");
    let mut v = Vector::new("snapshot.txt", "success");
    v.h("master", "keys.txt")
        .h("nonce", hex(&[0x03; 12]))
        .h("snapshot id", SnapshotId::from_bytes(*blake3::hash(&snap).as_bytes()).to_hex())
        .h("record", "time 1764115200, host phone, user ana, tag daily, path /data/chats, sequence 1");
    v.body = snap;
    out.push(v);

    // The config file.
    let cfg = ConfigFile {
        repo_id: REPO_ID,
        settings: Settings {
            master_id: m.id(),
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            pack_target_size: 16 << 20,
        },
    };
    let mut v = Vector::new("config.txt", "success");
    v.h("master", "keys.txt")
        .h("repository id", hex(&REPO_ID))
        .h("nonce", hex(&[0x04; 12]))
        .h("settings", "FastCDC 2020 16384/65536/262144 level 1, zstd 3, packs 16777216");
    v.body = hazmat::encode_config(&keys, &cfg, &[0x04; 12]).expect("valid config");
    out.push(v);

    // A passphrase keyslot, and the same slot with a wrong passphrase.
    let salt = [0x05; 32];
    let kdf_out = keyslot::argon2id(PASSPHRASE.as_bytes(), &salt, FAST_KDF).expect("argon2");
    let slot = NewSlot {
        repo_id: REPO_ID,
        slot_id: [0x06; 16],
        label: "vector".into(),
        created: 1_764_115_200,
        kdf: SlotKdf::Passphrase { params: FAST_KDF, salt },
    };
    let slot_bytes = hazmat::encode_keyslot(&slot, &m, &kdf_out, &[0x07; 12]).expect("valid slot");
    let mut v = Vector::new("keyslot-passphrase.txt", "success");
    v.h("master", "keys.txt")
        .h("passphrase", PASSPHRASE)
        .h("argon2id", "m=8192 t=1 p=1")
        .h("salt", hex(&salt))
        .h("kdf output", hex(&hazmat::key_bytes(&kdf_out)))
        .h("nonce", hex(&[0x07; 12]))
        .h("label", "vector")
        .h("created", "1764115200");
    v.body = slot_bytes.clone();
    out.push(v);
    let mut v = Vector::new("keyslot-wrong-passphrase.txt", "wrong passphrase");
    v.h("passphrase", WRONG_PASSPHRASE).h("defect", "keyslot-passphrase.txt opened with another passphrase");
    v.body = slot_bytes;
    out.push(v);

    // The recovery-code text encoding, and a recovery-code keyslot.
    let code = RecoveryCode::from_bytes(RECOVERY_CODE);
    let text = code.to_text();
    let mut v = Vector::new("recovery-code.txt", "success");
    v.h("code bytes", hex(&RECOVERY_CODE)).h("checksum modulus", "1048573");
    v.body = text.as_bytes().to_vec();
    out.push(v);
    let salt = [0x08; 32];
    let kdf_out = keyslot::recovery_kdf(&code, &salt);
    let slot = NewSlot {
        repo_id: REPO_ID,
        slot_id: [0x09; 16],
        label: "paper".into(),
        created: 1_764_115_200,
        kdf: SlotKdf::RecoveryCode { salt },
    };
    let mut v = Vector::new("keyslot-recovery-code.txt", "success");
    v.h("master", "keys.txt")
        .h("recovery code", text.as_str())
        .h("salt", hex(&salt))
        .h("kdf output", hex(&hazmat::key_bytes(&kdf_out)))
        .h("nonce", hex(&[0x0a; 12]));
    v.body = hazmat::encode_keyslot(&slot, &m, &kdf_out, &[0x0a; 12]).expect("valid slot");
    out.push(v);

    // A PIN keyslot, with the vault's side spelled out.
    let salt = [0x0b; 32];
    let pin_hash = keyslot::argon2id(PIN.as_bytes(), &salt, FAST_KDF).expect("argon2");
    let auth = keyslot::pin_auth(&pin_hash);
    let secret = SecretKey::from_bytes(VAULT_SECRET);
    let kdf_out = keyslot::pin_kdf(&pin_hash, &secret);
    let slot = NewSlot {
        repo_id: REPO_ID,
        slot_id: [0x0c; 16],
        label: "phone".into(),
        created: 1_764_115_200,
        kdf: SlotKdf::Pin { params: FAST_KDF, salt, vault_id: VAULT_ID },
    };
    let mut v = Vector::new("keyslot-pin.txt", "success");
    v.h("master", "keys.txt")
        .h("pin", PIN)
        .h("argon2id", "m=8192 t=1 p=1")
        .h("salt", hex(&salt))
        .h("pin hash", hex(&hazmat::key_bytes(&pin_hash)))
        .h("vault binding", hex(&keyslot::pin_binding(&salt, FAST_KDF)))
        .h("vault auth", hex(&auth))
        .h("vault id", hex(&VAULT_ID))
        .h("vault secret", hex(&VAULT_SECRET))
        .h("kdf output", hex(&hazmat::key_bytes(&kdf_out)))
        .h("nonce", hex(&[0x0d; 12]));
    v.body = hazmat::encode_keyslot(&slot, &m, &kdf_out, &[0x0d; 12]).expect("valid slot");
    out.push(v);

    // A lock file.
    let mut v = Vector::new("lock.txt", "success");
    v.h("master", "keys.txt")
        .h("nonce", hex(&[0x0e; 12]))
        .h("lock id", hex(blake3::hash(&lock_file(&keys)).as_bytes()))
        .h("record", "exclusive, host phone, machine a7c1f0de-5b0e-4c1f-9e51-2f6f1d3c8b10/pid:[4026531836], pid 4242, time 1764115200, operation prune");
    v.body = lock_file(&keys);
    out.push(v);

    // A device keyslot: a random secret kept by one device, no slow KDF.
    let salt = [0x0f; 32];
    let secret = SecretKey::from_bytes([0x10; 32]);
    let kdf_out = keyslot::device_kdf(&secret, &salt);
    let slot = NewSlot {
        repo_id: REPO_ID,
        slot_id: [0x11; 16],
        label: "device phone".into(),
        created: 1_764_115_200,
        kdf: SlotKdf::Device { salt },
    };
    let mut v = Vector::new("keyslot-device.txt", "success");
    v.h("master", "keys.txt")
        .h("device secret", hex(&[0x10; 32]))
        .h("salt", hex(&salt))
        .h("kdf output", hex(&hazmat::key_bytes(&kdf_out)))
        .h("nonce", hex(&[0x12; 12]));
    v.body = hazmat::encode_keyslot(&slot, &m, &kdf_out, &[0x12; 12]).expect("valid slot");
    out.push(v);

    // A tombstone: one forgotten snapshot (the one of snapshot.txt) and one removed keyslot.
    let snap_id = SnapshotId::from_bytes(*blake3::hash(&snap_file(&keys)).as_bytes());
    let mut v = Vector::new("tombstone.txt", "success");
    let tomb = hazmat::encode_tombstone(&keys, &tombstone_record(snap_id), &[0x13; 12]).expect("valid tombstone");
    v.h("master", "keys.txt")
        .h("nonce", hex(&[0x13; 12]))
        .h("tombstone id", hex(blake3::hash(&tomb).as_bytes()))
        .h("record", "repository id of keys.txt's vectors, time 1764201600, host phone, reason forget (0), snapshot of snapshot.txt at sequence 1, keyslot 0c0c…0c (keyslot-pin.txt)");
    v.body = tomb;
    out.push(v);
    out
}

/// The snapshot file of `snapshot.txt`.
fn snap_file(keys: &hazmat::Keys) -> Vec<u8> {
    hazmat::encode_snapshot(keys, &snapshot_record(), &[0x03; 12]).expect("valid snapshot")
}

/// The tombstone record of `tombstone.txt`.
pub fn tombstone_record(snapshot: SnapshotId) -> packvault::format::tombstone::TombstoneRecord {
    use packvault::format::tombstone::{ForgottenSnapshot, TombstoneReason, TombstoneRecord};
    TombstoneRecord {
        repo_id: REPO_ID,
        time_secs: 1_764_201_600,
        hostname: "phone".into(),
        reason: TombstoneReason::Forget,
        snapshots: vec![ForgottenSnapshot { id: snapshot, sequence: 1 }],
        keyslots: vec![[0x0c; 16]],
    }
}

/// The lock record of `lock.txt`.
pub fn lock_record() -> LockRecord {
    LockRecord {
        kind: LockKind::Exclusive,
        hostname: "phone".into(),
        machine: "a7c1f0de-5b0e-4c1f-9e51-2f6f1d3c8b10/pid:[4026531836]".into(),
        pid: 4242,
        time: 1_764_115_200,
        operation: "prune".into(),
    }
}

fn lock_file(keys: &Keys) -> Vec<u8> {
    lock::encode(keys.meta_key(), &lock_record(), &[0x0e; 12]).expect("valid lock")
}

/// The vectors as format-spec.md prints them (between the markers of §11).
pub fn spec_section(vectors: &[Vector]) -> String {
    let mut s = String::new();
    for v in vectors {
        s.push_str(&format!("#### `tests/vectors/{}`\n\n```text\n", v.name));
        for (k, val) in &v.headers {
            s.push_str(&format!("{k}: {val}\n"));
        }
        s.push_str(&format!("\nbody ({} bytes):\n", v.body.len()));
        for (i, line) in v.body.chunks(32).enumerate() {
            s.push_str(&format!("{:05x}  {}\n", i * 32, hex(line)));
        }
        s.push_str("```\n\n");
    }
    s
}

pub const SPEC_BEGIN: &str = "<!-- vectors:begin (generated by `cargo run --example gen_vectors`; do not edit) -->\n";
pub const SPEC_END: &str = "<!-- vectors:end -->";

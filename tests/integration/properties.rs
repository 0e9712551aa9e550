//! Property tests: every on-disk structure survives encode → decode, and backup → restore of
//! random small trees on the in-memory store is bit-exact.

use std::sync::Arc;

use packvault::format::blob::{BlobKind, Codec};
use packvault::format::config::{ChunkerParams, Settings};
use packvault::format::index::{IndexFile, IndexPack};
use packvault::format::keyslot::{self, Argon2Params, NewSlot, SlotKdf};
use packvault::format::pack::{self, BlobEntry};
use packvault::format::padding::padme;
use packvault::format::snapshot::{self, Node, NodeContent, SnapshotRecord, Summary, Tree};
use packvault::format::{config, index};
use packvault::hazmat::{self, Keys, MasterKey};
use packvault::{
    ChunkId, Credentials, FileMeta, Id, MemoryStore, PackId, RecoveryCode, Repository, RestoreOptions, SecretKey,
    SnapshotId, TreeId,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn id() -> impl Strategy<Value = Id> {
    any::<[u8; 32]>().prop_map(Id)
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0), 1..40)
        .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn node(name: Vec<u8>) -> impl Strategy<Value = Node> {
    let content = prop_oneof![
        (1u64..1 << 40, vec(id(), 1..5)).prop_map(|(size, ids)| NodeContent::File {
            size: size.max(ids.len() as u64),
            chunks: ids.into_iter().map(ChunkId).collect()
        }),
        Just(NodeContent::File { size: 0, chunks: vec![] }),
        id().prop_map(|i| NodeContent::Dir { tree: TreeId(i) }),
        vec(1u8..=255, 1..100).prop_map(|target| NodeContent::Symlink { target }),
    ];
    (0u32..=0o7777, any::<i64>(), 0u32..1_000_000_000, content).prop_map(
        move |(mode, mtime_secs, mtime_nanos, content)| Node {
            name: name.clone(),
            mode,
            mtime_secs,
            mtime_nanos,
            content,
        },
    )
}

fn tree() -> impl Strategy<Value = Tree> {
    btree_map(name(), Just(()), 0..12)
        .prop_flat_map(|names| names.into_keys().map(node).collect::<Vec<_>>())
        .prop_map(|nodes| Tree { nodes })
}

fn entries() -> impl Strategy<Value = Vec<BlobEntry>> {
    vec((id(), 17u32..100_000, 0u32..1 << 24, any::<bool>()), 0..20).prop_map(|raw| {
        let mut offset = 0;
        raw.into_iter()
            .map(|(id, sealed_len, raw_len, z)| {
                let e = BlobEntry { id, offset, sealed_len, raw_len, codec: if z { Codec::Zstd } else { Codec::Raw } };
                offset += sealed_len;
                e
            })
            .collect()
    })
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._/-]{0,30}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn padme_is_monotone_and_bounded(len in 0u64..1 << 40) {
        let p = padme(len);
        prop_assert!(p >= len && padme(p) == p);
        prop_assert!(len < 16 || (p - len) as f64 <= len as f64 * 0.12);
    }

    #[test]
    fn pack_directory_round_trip(kind in any::<bool>(), es in entries()) {
        let kind = if kind { BlobKind::Tree } else { BlobKind::Data };
        let plain = pack::encode_directory_plaintext(kind, &es);
        let end = es.last().map_or(0, |e| e.end());
        let dir = pack::decode_directory_plaintext(&plain, end).unwrap();
        prop_assert_eq!(dir.kind, kind);
        prop_assert_eq!(dir.entries, es);
    }

    #[test]
    fn index_file_round_trip(packs in vec((id(), any::<bool>(), entries()), 0..5)) {
        let file = IndexFile {
            packs: packs
                .into_iter()
                .map(|(p, t, es)| IndexPack {
                    pack: PackId(p),
                    kind: if t { BlobKind::Tree } else { BlobKind::Data },
                    pack_len: (es.last().map_or(0, |e| e.end()) + pack::MIN_PACK_LEN).min(1 << 30) as u32,
                    entries: es,
                })
                .filter(|p| p.entries.last().map_or(0, |e| e.end()) + pack::MIN_PACK_LEN <= 1 << 30)
                .collect(),
        };
        prop_assert_eq!(index::decode_plaintext(&index::encode_plaintext(&file)).unwrap(), file);
    }

    #[test]
    fn tree_round_trip(t in tree()) {
        prop_assert_eq!(Tree::decode(&t.encode().unwrap()).unwrap(), t);
    }

    #[test]
    fn snapshot_round_trip(
        time in any::<i64>(), nanos in 0u32..1_000_000_000, host in text(), user in text(),
        tags in vec(text(), 0..4), paths in vec(text(), 0..4), root in id(), seq in any::<u64>(),
        prev in proptest::option::of(id()), counts in any::<[u64; 11]>(), repaired in any::<bool>(),
    ) {
        let rec = SnapshotRecord {
            time_secs: time, time_nanos: nanos, hostname: host, username: user, tags, paths,
            root: TreeId(root), sequence: seq, previous: prev.map(SnapshotId),
            summary: Summary {
                files: counts[0], dirs: counts[1], symlinks: counts[2], total_bytes: counts[3], chunks: counts[4],
                new_data_blobs: counts[5], new_tree_blobs: counts[6], new_raw_bytes: counts[7],
                new_stored_bytes: counts[8], new_packs: counts[9], bytes_read: counts[10],
            },
            flags: u32::from(repaired), program: "p".into(),
        };
        let plain = snapshot::encode_plaintext(&rec).unwrap();
        prop_assert_eq!(snapshot::decode_plaintext(&plain).unwrap(), rec);
    }

    #[test]
    fn settings_round_trip(min in 32u32..1024, level in -7i32..=22, pack in 1u32..=512, norm in 0u8..=3, master in id()) {
        let s = Settings {
            master_id: master,
            chunker: ChunkerParams { min_size: min * 2, avg_size: min * 8, max_size: min * 32, normalization: norm, ..ChunkerParams::default() },
            zstd_level: level,
            pack_target_size: pack << 20,
        };
        prop_assert_eq!(config::decode_settings(&config::encode_settings(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn keyslot_round_trip(label in "\\PC{0,60}", created in any::<i64>(), salt in any::<[u8; 32]>(), kind in 0u8..3, vault in any::<[u8; 16]>(), k in any::<[u8; 32]>()) {
        let params = Argon2Params { m_kib: 8192, t: 1, p: 1 };
        let kdf = match kind {
            0 => SlotKdf::Passphrase { params, salt },
            1 => SlotKdf::RecoveryCode { salt },
            _ => SlotKdf::Pin { params, salt, vault_id: vault },
        };
        let master = MasterKey::from_bytes([9; 32]);
        let slot = NewSlot { repo_id: [1; 16], slot_id: [2; 16], label: label.clone(), created, kdf: kdf.clone() };
        let bytes = hazmat::encode_keyslot(&slot, &master, &SecretKey::from_bytes(k), &[3; 12]).unwrap();
        let back = keyslot::decode(&bytes).unwrap();
        let meta = back.metadata(&master).unwrap();
        prop_assert_eq!((&meta.label, meta.created, &back.kdf), (&label, created, &kdf));
        prop_assert_eq!(back.unwrap_master(&SecretKey::from_bytes(k)).unwrap().id(), master.id());
    }

    #[test]
    fn recovery_code_round_trip(bytes in any::<[u8; 32]>()) {
        let c = RecoveryCode::from_bytes(bytes);
        prop_assert_eq!(RecoveryCode::parse(&c.to_text()).unwrap(), c);
    }

    #[test]
    fn sealed_blob_round_trip(data in vec(any::<u8>(), 1..5000), level in proptest::option::of(-3i32..10), tree in any::<bool>()) {
        let keys = Keys::derive(&MasterKey::from_bytes([5; 32]));
        let kind = if tree { BlobKind::Tree } else { BlobKind::Data };
        let s = hazmat::seal_blob(&keys, kind, &data, level);
        prop_assert_eq!(hazmat::open_blob(&keys, kind, &s.id, s.codec, s.raw_len, &s.bytes).unwrap(), data);
    }
}

/// A random small tree: paths (1–3 levels) → contents.
fn files() -> impl Strategy<Value = std::collections::BTreeMap<String, Vec<u8>>> {
    let path = vec("[a-e]{1,3}", 1..4).prop_map(|p| p.join("/"));
    let content = prop_oneof![vec(any::<u8>(), 0..3000), (any::<u8>(), 0usize..200_000).prop_map(|(b, n)| vec![b; n])];
    btree_map(path, content, 1..10)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn backup_restore_random_trees_on_the_memory_store(files in files()) {
        // Drop paths that are a prefix folder of another path (a name is a file or a folder).
        let names: Vec<String> = files.keys().cloned().collect();
        let files: Vec<(String, Vec<u8>)> = files
            .into_iter()
            .filter(|(p, _)| !names.iter().any(|q| q.starts_with(&format!("{p}/"))))
            .collect();
        let store = Arc::new(MemoryStore::new());
        let mut repo = Repository::init(store, &Credentials::passphrase(crate::PASS), crate::fast_init(None)).unwrap();
        let meta = FileMeta { mode: 0o640, mtime_secs: 1_700_000_000, mtime_nanos: 7 };
        let mut b = repo.backup().unwrap();
        for (p, data) in &files {
            b.add_stream(p, &data[..], meta).unwrap();
        }
        let out = b.commit(packvault::SnapshotInfo::default()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let r = repo.restore(&out.record, &RestoreOptions { target: tmp.path().to_path_buf(), ..Default::default() }).unwrap();
        prop_assert!(r.is_complete(), "{:?}", r.failed);
        for (p, data) in &files {
            prop_assert_eq!(&std::fs::read(tmp.path().join(p)).unwrap(), data);
        }
    }
}

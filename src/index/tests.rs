//! Unit tests of the index tables and their cache files.

use std::fs;

use super::cache::{delta_path, open_keyed};
use super::*;
use crate::format::blob::{BlobKind, Codec, MAX_BLOB_RAW, MAX_BLOB_SEALED};
use crate::format::index::IndexPack;
use crate::ErrorKind;

fn key() -> SecretKey {
    SecretKey::from_bytes([9; 32])
}

fn open(dir: &Path, repo: &[u8; 16]) -> Option<Index> {
    let mut warnings = Vec::new();
    let idx = open_keyed(dir, repo, &key(), &mut warnings);
    assert!(warnings.is_empty() || idx.is_none(), "{warnings:?}");
    idx
}

/// Opens the cache expecting it refused, and returns the warnings.
fn refused(dir: &Path, repo: &[u8; 16]) -> Vec<CacheWarning> {
    let mut warnings = Vec::new();
    assert!(open_keyed(dir, repo, &key(), &mut warnings).is_none(), "the cache was accepted");
    warnings
}

fn file(seed: u8, packs: u8, per_pack: u32) -> IndexFile {
    IndexFile {
        packs: (0..packs)
            .map(|p| IndexPack {
                pack: PackId(Id::hash_of(&[seed, p])),
                kind: BlobKind::Data,
                pack_len: 1 << 20,
                entries: (0..per_pack)
                    .map(|i| BlobEntry {
                        id: Id::hash_of(&[seed, p, i as u8, (i >> 8) as u8, (i >> 16) as u8]),
                        offset: i * 100,
                        sealed_len: 100,
                        raw_len: 90 + i,
                        codec: if i % 2 == 0 { Codec::Zstd } else { Codec::Raw },
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn add(index: &mut Index, id: IndexId, f: &IndexFile) {
    for p in &f.packs {
        index.add_pack(PackInfo { id: p.pack, kind: p.kind, len: p.pack_len }, &p.entries);
    }
    index.add_covered(id);
}

fn check_all(idx: &Index, files: &[&IndexFile]) {
    idx.verify_table().unwrap();
    for f in files {
        for p in &f.packs {
            for e in &p.entries {
                let loc = idx.lookup(&e.id).unwrap().expect("present");
                assert_eq!(loc.pack, p.pack);
                assert_eq!(loc.entry(e.id), *e);
            }
        }
    }
    assert_eq!(idx.lookup(&Id([0xee; 32])).unwrap(), None);
    assert_eq!(idx.lookup(&Id([0; 32])).unwrap(), None);
    assert_eq!(idx.lookup(&Id([0xff; 32])).unwrap(), None);
}

#[test]
fn base_delta_and_rebase_through_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let repo = [4u8; 16];
    let f1 = file(1, 3, 400);
    let f2 = file(2, 2, 300);
    let mut idx = Index::keyed(&repo, key());
    add(&mut idx, IndexId(Id([1; 32])), &f1);
    let idx = persist(idx, Some(dir.path())).unwrap();
    assert!(idx.is_mapped());
    assert_eq!(idx.table_counts(), (0, 1200), "the first fold goes to the delta");
    check_all(&idx, &[&f1]);

    let mut idx = open(dir.path(), &repo).unwrap();
    add(&mut idx, IndexId(Id([2; 32])), &f2);
    let idx = persist(idx, Some(dir.path())).unwrap();
    assert_eq!(idx.table_counts(), (0, 1800));
    assert_eq!(idx.covered().len(), 2);
    check_all(&idx, &[&f1, &f2]);

    // Past the threshold, the delta is merged into a new base.
    let big = file(3, 1, 70_000);
    let mut idx = open(dir.path(), &repo).unwrap();
    add(&mut idx, IndexId(Id([3; 32])), &big);
    let idx = persist(idx, Some(dir.path())).unwrap();
    assert_eq!(idx.table_counts(), (71_800, 0));
    assert!(!delta_path(dir.path(), &repo).exists());
    check_all(&idx, &[&f1, &f2, &big]);

    // Then small additions go to a delta again, whose packs extend the base's.
    let f4 = file(4, 1, 10);
    let mut idx = open(dir.path(), &repo).unwrap();
    add(&mut idx, IndexId(Id([4; 32])), &f4);
    let idx = persist(idx, Some(dir.path())).unwrap();
    assert_eq!(idx.table_counts(), (71_800, 10));
    check_all(&open(dir.path(), &repo).unwrap(), &[&f1, &f2, &big, &f4]);
}

#[test]
fn cache_file_corruption_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = [4u8; 16];
    let mut idx = Index::keyed(&repo, key());
    add(&mut idx, IndexId(Id([1; 32])), &file(1, 2, 40));
    let big = file(3, 1, 70_000);
    add(&mut idx, IndexId(Id([3; 32])), &big);
    persist(idx, Some(dir.path())).unwrap();
    let path = cache_path(dir.path(), &repo);
    assert!(open(dir.path(), &[5; 16]).is_none(), "another repository's cache is refused");
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let w = refused(dir.path(), &repo);
    assert_eq!((w.len(), w[0].error.kind(), &w[0].path), (1, ErrorKind::Integrity, &path), "a damaged cache");
    fs::write(&path, &bytes[..n - 48]).unwrap();
    assert!(!refused(dir.path(), &repo).is_empty(), "a truncated cache is refused");
}

/// Someone without the key can change a table and recompute every unkeyed checksum; the MAC
/// still fails. Another repository key, a version-1 header, or a delta put in the base's place
/// are refused too, each with a warning.
#[test]
fn tables_forged_without_the_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = [4u8; 16];
    let f1 = file(1, 2, 40);
    let mut idx = Index::keyed(&repo, key());
    add(&mut idx, IndexId(Id([1; 32])), &f1);
    let idx = persist(idx, Some(dir.path())).unwrap();
    assert_eq!(idx.table_counts(), (0, 80), "the entries are in the delta");
    let (base, delta) = (cache_path(dir.path(), &repo), delta_path(dir.path(), &repo));
    let (good_base, good_delta) = (fs::read(&base).unwrap(), fs::read(&delta).unwrap());
    let entry = &f1.packs[0].entries[0];

    // An entry's raw length changed, and the MAC field filled the ways one can without the
    // key: an unkeyed hash over the same bytes, or version 1's checksum (HASH of bytes[128..]).
    let mut forged = good_delta.clone();
    let at = forged[128..].windows(32).position(|w| w == entry.id.0).unwrap() + 128;
    forged[at + 44..at + 48].copy_from_slice(&(entry.raw_len + 1).to_le_bytes());
    let mut h = blake3::Hasher::new();
    h.update(&forged[..48]);
    h.update(&forged[80..]);
    let unkeyed = h.finalize();
    let v1 = blake3::hash(&forged[128..]);
    for sum in [unkeyed, v1] {
        forged[48..80].copy_from_slice(sum.as_bytes());
        fs::write(&delta, &forged).unwrap();
        let mut warnings = Vec::new();
        let idx = open_keyed(dir.path(), &repo, &key(), &mut warnings).expect("the base alone still serves");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!((warnings[0].error.kind(), &warnings[0].path), (ErrorKind::Integrity, &delta));
        assert_eq!(idx.table_counts().1, 0, "the forged delta is not used");
        assert_eq!(idx.lookup(&entry.id).unwrap(), None);
    }
    fs::write(&delta, &good_delta).unwrap();
    assert_eq!(open(dir.path(), &repo).unwrap().lookup(&entry.id).unwrap().unwrap().raw_len, entry.raw_len);

    // Any byte of the base, even header padding, is covered.
    let mut forged = good_base.clone();
    forged[120] ^= 1;
    let mut h = blake3::Hasher::new();
    h.update(&forged[..48]);
    h.update(&forged[80..]);
    forged[48..80].copy_from_slice(h.finalize().as_bytes());
    fs::write(&base, &forged).unwrap();
    let w = refused(dir.path(), &repo);
    assert_eq!((w[0].error.kind(), &w[0].path), (ErrorKind::Integrity, &base));
    // A version-1 header: refused as unsupported.
    let mut old = good_base.clone();
    old[6..8].copy_from_slice(&1u16.to_le_bytes());
    fs::write(&base, &old).unwrap();
    assert_eq!(refused(dir.path(), &repo)[0].error.kind(), ErrorKind::UnsupportedVersion);
    // The same bytes under another repository key.
    fs::write(&base, &good_base).unwrap();
    let mut warnings = Vec::new();
    assert!(open_keyed(dir.path(), &repo, &SecretKey::from_bytes([8; 32]), &mut warnings).is_none());
    assert_eq!(warnings[0].error.kind(), ErrorKind::Integrity);
    // The (sound) delta in the base's place.
    fs::write(&base, &good_delta).unwrap();
    assert_eq!(refused(dir.path(), &repo)[0].error.kind(), ErrorKind::Malformed);
}

/// Cache folders are 0700 — narrowed when they exist wider — and cache files 0600.
#[test]
fn cache_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let repo = [4u8; 16];
    fs::create_dir_all(cache::repo_dir(&cache, &repo)).unwrap();
    for d in [cache.clone(), cache::repo_dir(&cache, &repo)] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut idx = Index::keyed(&repo, key());
    add(&mut idx, IndexId(Id([1; 32])), &file(1, 2, 40));
    persist(idx, Some(&cache)).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&cache::repo_dir(&cache, &repo)), 0o700);
    for f in [cache_path(&cache, &repo), delta_path(&cache, &repo)] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[test]
fn interpolation_search_agrees_with_a_scan() {
    let repo = [0u8; 16];
    let f = file(9, 4, 5000);
    let mut idx = Index::keyed(&repo, key());
    add(&mut idx, IndexId(Id([9; 32])), &f);
    let idx = persist(idx, None).unwrap();
    check_all(&idx, &[&f]);
    // Ids just above and below every stored id are absent.
    for p in &f.packs {
        for e in p.entries.iter().take(500) {
            let mut near = e.id;
            near.0[31] ^= 1;
            assert!(!idx.contains(&near) || f.packs.iter().any(|q| q.entries.iter().any(|x| x.id == near)));
        }
    }
}

#[test]
fn hostile_table_lookups_do_not_panic() {
    // An unsorted table with pack numbers out of range, bypassing the checksum.
    let repo = [0u8; 16];
    let rows: Vec<Row> = (0..200u8)
        .rev()
        .map(|i| Row {
            id: Id([i; 32]),
            pack: u32::from(i) * 1000,
            offset: 0,
            sealed_len: 20,
            raw_len: 1,
            codec: Codec::Raw,
        })
        .collect();
    let bytes = Table::encode(&repo, &key(), &[], &[], &rows, &[0; 32]);
    let idx = Index::from_untrusted_bytes(bytes, false).unwrap();
    assert!(idx.verify_table().is_err());
    for i in 0..=255u8 {
        let _ = idx.lookup(&Id([i; 32]));
    }
}

#[test]
fn impossible_blob_lengths_in_a_cache_are_refused() {
    let repo = [0u8; 16];
    let packs = vec![PackInfo { id: PackId(Id([1; 32])), kind: BlobKind::Data, len: 1 << 20 }];
    let row = |i: u8, sealed_len: u32, raw_len: u32| Row {
        id: Id([i; 32]),
        pack: 0,
        offset: 0,
        sealed_len,
        raw_len,
        codec: Codec::Zstd,
    };
    let rows = vec![
        row(1, 100, 80),
        row(2, crate::crypto::TAG_LEN as u32, 0),
        row(3, MAX_BLOB_SEALED + 1, 10),
        row(4, 100, MAX_BLOB_RAW + 1),
    ];
    let bytes = Table::encode(&repo, &key(), &[], &packs, &rows, &[0; 32]);
    let idx = Index::from_untrusted_bytes(bytes, false).unwrap();
    let found = idx.lookup(&Id([1; 32])).unwrap().unwrap();
    assert_eq!((found.sealed_len, found.raw_len, found.codec), (100, 80, Codec::Zstd));
    for i in 2..=4u8 {
        let err = idx.lookup(&Id([i; 32])).unwrap_err();
        assert!(err.to_string().contains("impossible blob length"), "row {i}: {err}");
    }
}

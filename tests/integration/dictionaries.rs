//! Compression dictionaries (format-spec.md §5.17): trained by one session and used by the
//! next, opened by a client that has only the repository, deduplicated whatever they were
//! compressed with, and named by check and restore when they are missing or damaged.

use std::path::Path;
use std::sync::Arc;

use packvault::format::blob::Codec;
use packvault::format::snapshot::NodeContent;
use packvault::{
    CheckOptions, DictionaryOutcome, ErrorKind, FileKind, FileMeta, Id, LocalStore, Repository, RestoreOptions,
    SnapshotId, SnapshotInfo, Store,
};

use crate::{new_local_repo, reopen};

const META: FileMeta = FileMeta { mode: 0o600, mtime_secs: 1_764_115_200, mtime_nanos: 0 };

/// `n` small JSON message files (1–6 KiB, each one chunk), like a chat export's pieces:
/// shared structure, varied words and numbers. `seed` makes another set.
fn small_json(n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    const WORDS: [&str; 24] = [
        "see", "you", "at", "the", "station", "tomorrow", "ok", "thanks", "lol", "where", "are", "now", "coming",
        "home", "late", "dinner", "photo", "sent", "call", "me", "when", "free", "love", "bye",
    ];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let mut s = String::from("{\"participants\":[{\"name\":\"Ana Lima\"},{\"name\":\"Ben Okafor\"}],\"messages\":[\n");
            let target = 1024 + (next() % 5120) as usize;
            while s.len() < target {
                let who = if next() % 2 == 0 { "Ana Lima" } else { "Ben Okafor" };
                let words: Vec<&str> = (0..3 + next() % 8).map(|_| WORDS[(next() % 24) as usize]).collect();
                s.push_str(&format!(
                    "  {{\"sender_name\":\"{who}\",\"timestamp_ms\":{},\"content\":\"{}\",\"is_geoblocked_for_viewer\":false}},\n",
                    1_700_000_000_000u64 + next() % 10_000_000_000,
                    words.join(" ")
                ));
            }
            s.push_str("]}\n");
            (format!("export/{seed}/message_{i}.json"), s.into_bytes())
        })
        .collect()
}

fn backup(repo: &mut Repository, files: &[(String, Vec<u8>)], dictionaries: bool) -> packvault::BackupOutcome {
    let mut s = repo.backup().unwrap();
    if !dictionaries {
        s.disable_dictionaries();
    }
    for (name, data) in files {
        s.add_stream(name, &data[..], META).unwrap();
    }
    s.commit(SnapshotInfo::default()).unwrap()
}

/// Codecs of the chunks of `files` in snapshot `snap`.
fn codecs(repo: &Repository, snap: &SnapshotId, files: &[(String, Vec<u8>)]) -> Vec<Codec> {
    let rec = repo.load_snapshot(snap).unwrap();
    files
        .iter()
        .flat_map(|(name, _)| {
            let (_, node) = repo.list(&rec, name, false).unwrap().pop().unwrap();
            let NodeContent::File { chunks, .. } = node.content else { panic!("{name} is not a file") };
            chunks.into_iter().map(|c| repo.index().lookup(&c.0).unwrap().unwrap().codec).collect::<Vec<_>>()
        })
        .collect()
}

/// A night's snapshot and the files it backed up.
type Night = (SnapshotId, Vec<(String, Vec<u8>)>);

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    store: Arc<LocalStore>,
    repo: Repository,
    /// Night 1 (trains the dictionary, stores no codec-2 blob) and night 2 (uses it).
    nights: [Night; 2],
    dict: Id,
}

fn two_nights() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (store, mut repo) = new_local_repo(&dir);
    let a = small_json(1000, 1);
    let first = backup(&mut repo, &a, true);
    let DictionaryOutcome::Stored { id: dict, plain, with_dictionary } = first.dictionary else {
        panic!("night 1 trains and keeps a dictionary: {:?}", first.dictionary)
    };
    // The rule's first test: at least 10 % saved on the held-out chunks.
    assert!(with_dictionary * 10 <= plain * 9, "{with_dictionary} of {plain}");
    assert!(codecs(&repo, &first.snapshot, &a).iter().all(|c| *c != Codec::ZstdDict), "night 1 has no dictionary yet");
    let b = small_json(200, 2);
    let second = backup(&mut repo, &b, true);
    assert_eq!(second.dictionary, DictionaryOutcome::Used(dict));
    Fixture { _tmp: tmp, dir, store, repo, nights: [(first.snapshot, a), (second.snapshot, b)], dict }
}

fn restore_all(repo: &Repository, snap: &SnapshotId, target: &Path) -> packvault::RestoreReport {
    let rec = repo.load_snapshot(snap).unwrap();
    repo.restore(&rec, &RestoreOptions { target: target.to_path_buf(), ..RestoreOptions::default() }).unwrap()
}

#[test]
fn dictionary_blobs_open_on_a_fresh_client_with_only_the_repository() {
    let f = two_nights();
    let (snap, files) = &f.nights[1];
    let used = codecs(&f.repo, snap, files).iter().filter(|c| **c == Codec::ZstdDict).count();
    assert!(used * 10 >= files.len() * 9, "night 2 compresses its small chunks with the dictionary: {used}");
    // A new device: new cache and state folders, only the repository's files.
    let fresh = f.dir.join("fresh");
    let repo = reopen(f.store.clone() as Arc<dyn Store>, Some(&fresh.join("cache")));
    let out = f.dir.join("out");
    let report = restore_all(&repo, snap, &out);
    assert!(report.is_complete(), "{:?}", report.failed);
    for (name, data) in files {
        assert_eq!(&std::fs::read(out.join(name)).unwrap(), data, "{name}");
    }
    // A full read check on the fresh client finds nothing wrong.
    let check = repo.check(CheckOptions { read_data: true, ..CheckOptions::default() }).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(check.dictionaries, 1);
}

#[test]
fn the_same_chunk_keeps_its_id_and_is_stored_once_whatever_the_dictionary() {
    let mut f = two_nights();
    // Night 1's chunks were sealed without a dictionary; night 2's with one. Backing both up
    // again, with the dictionary on and then off, stores nothing new.
    let all: Vec<_> = f.nights.iter().flat_map(|(_, files)| files.clone()).collect();
    for dictionaries in [true, false] {
        let again = backup(&mut f.repo, &all, dictionaries);
        assert_eq!(again.record.summary.new_data_blobs, 0, "dictionaries {dictionaries}");
    }
    // New content is stored once, with the dictionary; again without it, it is not stored.
    let other = small_json(300, 7);
    let fresh = backup(&mut f.repo, &other, true);
    assert_eq!(fresh.record.summary.new_data_blobs, 300, "only new content is stored");
    assert!(codecs(&f.repo, &fresh.snapshot, &other).contains(&Codec::ZstdDict));
    let without = backup(&mut f.repo, &other, false).record.summary;
    assert_eq!(without.new_data_blobs, 0, "nothing stored twice");
    let store: Arc<dyn Store> = f.store.clone();
    assert_eq!(store.list(FileKind::Dict).unwrap().len(), 1, "the dictionary is reused, not trained again");
}

#[test]
fn a_missing_dictionary_is_named_by_check_and_restore_and_contained() {
    let f = two_nights();
    let name = f.dict.to_hex();
    std::fs::remove_file(f.store.root().join("dicts").join(&name)).unwrap();
    let fresh = f.dir.join("fresh");
    let repo = reopen(f.store.clone() as Arc<dyn Store>, Some(&fresh.join("cache")));

    let check = repo.check(CheckOptions { read_data: true, ..CheckOptions::default() }).unwrap();
    let dict_problems: Vec<_> = check.problems.iter().filter(|p| p.message.contains(&name)).collect();
    assert_eq!(dict_problems.len(), 1, "{:#?}", check.problems);
    let p = dict_problems[0];
    let used = codecs(&repo, &f.nights[1].0, &f.nights[1].1).iter().filter(|c| **c == Codec::ZstdDict).count();
    assert!(p.message.contains("missing"), "{}", p.message);
    assert!(p.message.contains(&format!("{used} blobs")), "{}", p.message);
    assert!(p.affected.len() >= used, "every file is named: {:?}", p.affected.len());
    assert_eq!(check.problems.len(), 1, "only the dictionary: {:#?}", check.problems);

    // Restore: the files of night 2 fail, naming the dictionary; night 1's restore whole.
    let out = f.dir.join("out2");
    let report = restore_all(&repo, &f.nights[1].0, &out);
    assert_eq!(report.failed.len(), used);
    for (path, e) in &report.failed {
        assert_eq!(e.dictionary(), Some(f.dict), "{path}: {e}");
        assert_eq!(e.kind(), ErrorKind::NotFound, "{path}: {e}");
        assert!(e.to_string().contains(&name), "{e}");
    }
    let out = f.dir.join("out1");
    let report = restore_all(&repo, &f.nights[0].0, &out);
    assert!(report.is_complete(), "{:?}", report.failed);
}

#[test]
fn a_damaged_or_foreign_dictionary_is_named_by_check() {
    let f = two_nights();
    let path = f.store.root().join("dicts").join(f.dict.to_hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0x01;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let repo = reopen(f.store.clone() as Arc<dyn Store>, Some(&f.dir.join("fresh/cache")));
    // Without reading data: the dictionary itself.
    let quick = repo.check(CheckOptions::default()).unwrap();
    assert_eq!(quick.problems.len(), 1, "{:#?}", quick.problems);
    assert!(quick.problems[0].message.contains(&f.dict.to_hex()));
    assert!(quick.problems[0].message.contains("damaged"), "{}", quick.problems[0].message);
    // Reading data: the same problem, now with the blobs it takes down.
    let full = repo.check(CheckOptions { read_data: true, ..CheckOptions::default() }).unwrap();
    assert_eq!(full.problems.len(), 1, "{:#?}", full.problems);
    assert!(full.problems[0].message.contains("blobs compressed with it"), "{}", full.problems[0].message);
    let rec = repo.load_snapshot(&f.nights[1].0).unwrap();
    let out = f.dir.join("out");
    let report = repo.restore(&rec, &RestoreOptions { target: out, ..RestoreOptions::default() }).unwrap();
    assert!(!report.failed.is_empty());
    assert!(report.failed.iter().all(|(_, e)| e.dictionary() == Some(f.dict) && e.is_integrity()));
}

#[test]
fn hostile_dictionary_sizes_are_refused_before_reading() {
    let f = two_nights();
    let path = f.store.root().join("dicts").join(f.dict.to_hex());
    std::fs::remove_file(&path).unwrap();
    // A 1 GiB sparse file: refused from its size, never read (the test would take seconds
    // and a GiB of memory otherwise).
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(1 << 30).unwrap();
    let repo = reopen(f.store.clone() as Arc<dyn Store>, Some(&f.dir.join("fresh/cache")));
    let check = repo.check(CheckOptions::default()).unwrap();
    assert_eq!(check.problems.len(), 1, "{:#?}", check.problems);
    assert!(check.problems[0].message.contains("above the limit of 135192"), "{}", check.problems[0].message);
    // A new session does not use it (nor train over it).
    let mut repo = repo;
    let out = backup(&mut repo, &small_json(10, 9), true);
    assert_ne!(out.dictionary, DictionaryOutcome::Used(f.dict));
}

#[test]
fn a_key_rotation_retires_the_old_domains_dictionary_and_check_stays_clean() {
    let mut f = two_nights();
    let rotate = packvault::RotateOptions {
        kdf: Some(packvault::format::keyslot::Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 }),
        ..packvault::RotateOptions::default()
    };
    let report = f.repo.rotate_master(&packvault::Credentials::passphrase(crate::PASS), rotate).unwrap();
    // The copy compressed the codec-2 blobs again without the old dictionary, which no key of
    // the new domain opens: left behind, every check would call it damaged.
    assert_eq!(report.retired.dictionaries, 1, "{report:?}");
    assert!(f.store.list(FileKind::Dict).unwrap().is_empty());
    let checked = f.repo.check(CheckOptions { read_data: true, ..CheckOptions::default() }).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    for (snap, _) in f.repo.snapshots().unwrap() {
        let out = f.dir.join(format!("after-rotation-{}", snap.to_hex()));
        assert!(restore_all(&f.repo, &snap, &out).is_complete());
    }
}

//! Regression tests for defects found by fuzzing and review, each named after the finding.
//! They run on stable, without the fuzzer.
//!
//! Findings:
//! 1. restore_from_bytes (fuzz, 2026-11-26): a restore whose folder tree blob is damaged
//!    lists the *folder* as not restored; the files below it are absent. The target wrongly
//!    demanded each file be listed; the library's behaviour is the one kept here.
//! 2. lock (fuzz, CI smoke run, 2026-11-26): a lock plaintext whose host name was 65 bytes
//!    decoded, and re-encoding cut it to 64, so the record did not survive a round trip.
//!    Readers now refuse names longer than writers write (format-spec.md §5.14).

use std::fs;
use std::sync::Arc;

use packvault::format::lock;
use packvault::format::snapshot::NodeContent;
use packvault::{hazmat, Credentials, FileMeta, MasterKey, MemoryStore, OpenOptions, RestoreOptions};

use crate::{fast_init, PASS};

#[test]
fn fuzz_restore_lost_folder_tree_is_reported_as_the_folder() {
    let store = Arc::new(MemoryStore::new());
    let master = MasterKey::from_bytes([0x42; 32]);
    let mut repo =
        hazmat::init_with_master_key(store.clone(), master.clone(), &Credentials::passphrase(PASS), fast_init(None))
            .unwrap();
    let meta = FileMeta { mode: 0o644, mtime_secs: 1, mtime_nanos: 0 };
    let mut b = repo.backup().unwrap();
    b.add_stream("media/IMG-1.jpg", &[7u8; 3000][..], meta).unwrap();
    b.add_stream("chats/a.json", &b"{}"[..], meta).unwrap();
    let out = b.commit(vec![]).unwrap();

    // Damage the tree blob of `media` inside its pack.
    let root = repo.load_tree(&out.record.root).unwrap();
    let media = root.nodes.iter().find(|n| n.name == b"media").unwrap();
    let NodeContent::Dir { tree } = media.content else { panic!() };
    let loc = repo.index().lookup(&tree.0).unwrap().unwrap();
    let path = packvault::FileKind::Pack.path(&loc.pack.to_hex());
    let mut pack = store.snapshot_files()[&path].clone();
    pack[loc.offset as usize + 3] ^= 1;
    store.overwrite(&path, pack);

    let repo = hazmat::open_with_master_key(store, master, &OpenOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let r =
        repo.restore(&out.record, &RestoreOptions { target: tmp.path().to_path_buf(), ..Default::default() }).unwrap();
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert_eq!(r.failed[0].0, "media");
    assert!(r.failed[0].1.contains("folder contents lost"), "{}", r.failed[0].1);
    assert_eq!(fs::read(tmp.path().join("chats/a.json")).unwrap(), b"{}");
    assert!(!tmp.path().join("media/IMG-1.jpg").exists());
}

/// A lock plaintext (§5.14) spelled out byte by byte (§5.7): `u16` length ‖ kind 0 (shared) ‖
/// host name ‖ machine "" ‖ pid 1 ‖ time 0 ‖ operation "" ‖ zeros.
fn lock_plaintext(hostname_len: u8) -> Vec<u8> {
    let mut body = vec![0x00, hostname_len];
    body.extend(std::iter::repeat_n(b'h', usize::from(hostname_len)));
    body.extend([0x00, 0x01, 0x00, 0x00]);
    let mut plain = u16::try_from(body.len()).unwrap().to_le_bytes().to_vec();
    plain.extend(body);
    plain.resize(lock::LOCK_PLAINTEXT_LEN, 0);
    plain
}

#[test]
fn fuzz_lock_host_name_longer_than_writers_write_is_refused() {
    let at_limit = lock::decode_plaintext(&lock_plaintext(64)).unwrap();
    assert_eq!((at_limit.hostname.len(), at_limit.pid, at_limit.time), (64, 1, 0));
    assert_eq!(lock::encode_plaintext(&at_limit).unwrap(), lock_plaintext(64), "the spelled-out bytes are canonical");

    let err = lock::decode_plaintext(&lock_plaintext(65)).unwrap_err();
    assert_eq!(err.kind(), packvault::ErrorKind::Malformed, "{err}");
    assert!(err.to_string().contains("host name is 65 bytes"), "{err}");
}

//! The storage provider as the adversary: it can read, delete, replay, reorder and rewrite every
//! repository file, but holds no key. Each test is an attack that worked before the defence
//! (issue "Trust nothing the provider serves"): repository swap, fork, deletion, a removed
//! keyslot put back, a keyslot's KDF parameters lowered before `key passwd`.
//!
//! Every client here keeps its pins in a temporary state folder; the provider's view is the
//! `MemoryStore` itself (`overwrite`, `remove`, `snapshot_files`).

use std::collections::BTreeMap;
use std::sync::Arc;

use packvault::format::config::{ChunkerParams, ConfigFile, Settings};
use packvault::format::keyslot::{self, Argon2Params, NewSlot, SlotKdf};
use packvault::hazmat::{self, MasterKey};
use packvault::{
    ClientState, Credentials, ErrorKind, FileKind, FileMeta, MemoryStore, OpenOptions, Passphrase, Repository, Store,
};

use crate::{fast_init, PASS};

const FAST: Argon2Params = Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 };

/// One device: a state folder of its own.
struct Device {
    _tmp: tempfile::TempDir,
    state: ClientState,
}

impl Device {
    fn new() -> Device {
        let tmp = tempfile::tempdir().unwrap();
        let state = ClientState::Dir(tmp.path().join("state"));
        Device { _tmp: tmp, state }
    }

    fn options(&self) -> OpenOptions {
        OpenOptions { state: self.state.clone(), ..OpenOptions::default() }
    }

    fn init(&self, store: &Arc<MemoryStore>) -> Repository {
        let init = packvault::InitOptions { state: self.state.clone(), ..fast_init(None) };
        Repository::init(store.clone(), &Credentials::passphrase(PASS), init).unwrap()
    }

    fn open(&self, store: &Arc<MemoryStore>, c: &Credentials) -> packvault::Result<Repository> {
        Repository::open(store.clone(), c, &self.options())
    }
}

fn backup(repo: &mut Repository, text: &str) -> packvault::SnapshotId {
    let meta = FileMeta { mode: 0o600, mtime_secs: 0, mtime_nanos: 0 };
    let mut b = repo.backup().unwrap();
    b.add_stream("chat.txt", text.as_bytes(), meta).unwrap();
    b.commit(packvault::SnapshotInfo::default()).unwrap().snapshot
}

/// Makes `store` hold exactly `files` (the provider serving another copy at the same place).
fn serve(store: &MemoryStore, files: &BTreeMap<String, Vec<u8>>) {
    for path in store.snapshot_files().keys() {
        store.remove(path);
    }
    for (path, data) in files {
        store.overwrite(path, data.clone());
    }
}

#[test]
fn a_swapped_repository_is_refused_before_any_key_derivation() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let mut repo = phone.init(&store);
    backup(&mut repo, "day one");
    let pinned = repo.fingerprint();
    let repo_id = *repo.id().as_bytes();
    drop(repo);

    // The provider guessed the passphrase and made its own repository, served at the same
    // place. Before pinning, the next backup went into it, readable by the provider.
    let forged = Arc::new(MemoryStore::new());
    Repository::init(forged.clone(), &Credentials::passphrase(PASS), fast_init(None)).unwrap();
    serve(&store, &forged.snapshot_files());
    let e = phone.open(&store, &Credentials::passphrase(PASS)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RepositoryReplaced, "{e}");
    assert!(e.to_string().contains(&pinned), "names the pinned fingerprint: {e}");

    // A cleverer provider keeps the repository id (config and slot say the pinned id) but
    // wraps its own master key: no slot wraps the pinned master key, so none is even tried.
    let master = MasterKey::from_bytes([0x5a; 32]);
    let keys = hazmat::Keys::derive(&master);
    let settings = Settings {
        master_id: master.id(),
        chunker: ChunkerParams::default(),
        zstd_level: 3,
        pack_target_size: 16 << 20,
    };
    let config = hazmat::encode_config(&keys, &ConfigFile { repo_id, settings }, &[1; 12]).unwrap();
    let salt = [3u8; 32];
    let kdf_out = keyslot::argon2id(PASS.as_bytes(), &salt, FAST).unwrap();
    let slot = NewSlot {
        repo_id,
        slot_id: [4; 16],
        label: "initial".into(),
        created: 0,
        kdf: SlotKdf::Passphrase { params: FAST, salt },
    };
    let slot_bytes = hazmat::encode_keyslot(&slot, &master, &kdf_out, &[2; 12]).unwrap();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("config".into(), config);
    files.insert(FileKind::Key.path(&"04".repeat(16)), slot_bytes);
    serve(&store, &files);
    let e = phone.open(&store, &Credentials::passphrase(PASS)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no keyslot wraps the master key this client pinned"), "{e}");

    // A new device that was told the fingerprint checks it at first contact.
    let laptop = Device::new();
    let expect = OpenOptions { expect_fingerprint: Some(pinned.to_uppercase()), ..laptop.options() };
    let e = Repository::open(store.clone(), &Credentials::passphrase(PASS), &expect).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FingerprintMismatch, "{e}");
}

#[test]
fn a_fork_at_the_same_sequence_is_refused_and_a_new_device_checks_the_fingerprint() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let mut repo = phone.init(&store);
    let fp = repo.fingerprint();
    backup(&mut repo, "day one");
    let after_day_one = store.snapshot_files();

    // The tablet writes day two into a copy the provider keeps for it.
    let tablet = Device::new();
    let copy = Arc::new(MemoryStore::new());
    serve(&copy, &after_day_one);
    let expect = OpenOptions { expect_fingerprint: Some(fp.clone()), ..tablet.options() };
    let mut on_tablet = Repository::open(copy.clone(), &Credentials::passphrase(PASS), &expect).unwrap();
    assert!(on_tablet.first_contact());
    backup(&mut on_tablet, "tablet's day two");

    // The phone writes its own day two, then the provider shows it the tablet's copy.
    backup(&mut repo, "phone's day two");
    drop(repo);
    serve(&store, &copy.snapshot_files());
    let e = phone.open(&store, &Credentials::passphrase(PASS)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forked, "{e}");
    assert!(e.to_string().contains("sequence 2"), "{e}");
    // And again: the pin did not switch to the fork.
    assert_eq!(phone.open(&store, &Credentials::passphrase(PASS)).unwrap_err().kind(), ErrorKind::Forked);
}

#[test]
fn a_deleted_snapshot_is_reported_and_a_forgotten_one_is_not() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let mut repo = phone.init(&store);
    let one = backup(&mut repo, "day one");
    let two = backup(&mut repo, "day two");
    backup(&mut repo, "day three");
    assert!(repo.check(packvault::CheckOptions::default()).unwrap().is_ok());

    // Forgotten on purpose: a tombstone says so; nothing is reported.
    repo.forget(&packvault::ForgetPolicy { ids: vec![one], ..Default::default() }, false).unwrap();
    drop(repo);
    let repo = phone.open(&store, &Credentials::passphrase(PASS)).unwrap();
    assert!(repo.history_report().is_clean(), "{:?}", repo.history_report());
    assert!(repo.check(packvault::CheckOptions::default()).unwrap().is_ok());
    drop(repo);

    // The provider deletes day two.
    assert!(store.remove(&FileKind::Snapshot.path(&two.to_hex())));
    let repo = phone.open(&store, &Credentials::passphrase(PASS)).unwrap();
    assert_eq!(repo.history_report().vanished.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![two]);
    let report = repo.check(packvault::CheckOptions::default()).unwrap();
    assert!(!report.is_ok(), "check passes over a deleted snapshot");
    assert!(
        report.problems.iter().any(|p| p.message.contains(&two.short()) && p.message.contains("without a tombstone")),
        "{:?}",
        report.problems
    );
    // A device that never saw day two finds the gap in the chain.
    let laptop = Device::new();
    let fresh = laptop.open(&store, &Credentials::passphrase(PASS)).unwrap();
    assert!(fresh.history_report().vanished.is_empty());
    assert_eq!(fresh.history_report().broken_links.len(), 1, "{:?}", fresh.history_report());
    assert!(!fresh.check(packvault::CheckOptions::default()).unwrap().is_ok());
}

#[test]
fn a_removed_keyslot_put_back_opens_nothing() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let repo = phone.init(&store);
    let (id, code) = repo.keys().add_recovery_code("paper").unwrap();
    let slot_file = FileKind::Key.path(&id.to_string());
    let saved = store.snapshot_files()[&slot_file].clone();
    repo.keys().remove(&id).unwrap();
    drop(repo);
    let by_code = Credentials::recovery_code(&code.to_text()).unwrap();
    assert_eq!(phone.open(&store, &by_code).unwrap_err().kind(), ErrorKind::WrongRecoveryCode);

    // The provider puts the slot back.
    store.overwrite(&slot_file, saved);
    let e = phone.open(&store, &by_code).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyslotRevoked, "{e}");
    // A device that never saw the slot: the tombstone refuses it too.
    let laptop = Device::new();
    let e = laptop.open(&store, &by_code).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyslotRevoked, "{e}");
    // The passphrase still opens; the listing and check name the slot.
    let repo = phone.open(&store, &Credentials::passphrase(PASS)).unwrap();
    assert!(repo.keys().list().unwrap().iter().any(|k| k.id == id && k.revoked));
    assert_eq!(repo.history_report().reappeared_keyslots, vec![id]);
    assert!(!repo.check(packvault::CheckOptions::default()).unwrap().is_ok());
}

#[test]
fn key_passwd_never_copies_lowered_kdf_parameters() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let repo = phone.init(&store);
    let strong = Argon2Params { m_kib: 64 * 1024, t: 2, p: 1 };
    let id =
        repo.keys().add_passphrase(&Passphrase::new("second passphrase for the tablet"), strong, "tablet").unwrap();

    // The provider lowers the slot's Argon2 parameters to the minimum (in the plaintext part).
    let path = FileKind::Key.path(&id.to_string());
    let mut bytes = store.snapshot_files()[&path].clone();
    let at = keyslot::FIXED_LEN; // the kind data: m, t, p first
    bytes[at..at + 4].copy_from_slice(&(8u32 * 1024).to_le_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
    store.overwrite(&path, bytes);
    let e = repo.keys().change_passphrase(&id, &Passphrase::new("a new passphrase for the tablet"), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(store.list(FileKind::Key).unwrap().contains(&id.to_string()), "the old slot stays");

    // An untouched slot with parameters below the defaults: the new one gets the defaults.
    let cheap =
        repo.keys().add_passphrase(&Passphrase::new("third passphrase for the laptop"), FAST, "laptop").unwrap();
    let new = repo.keys().change_passphrase(&cheap, &Passphrase::new("a new passphrase for the laptop"), None).unwrap();
    let SlotKdf::Passphrase { params, .. } = repo.keys().slot(&new).unwrap().kdf else { panic!("kind") };
    assert!(params.m_kib >= Argon2Params::default().m_kib && params.t >= Argon2Params::default().t, "{params:?}");
}

#[test]
fn device_keys_open_without_the_passphrase_until_removed() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let repo = phone.init(&store);
    let id = repo.keys().add_device_key("phone").unwrap();
    drop(repo);
    let repo = phone.open(&store, &Credentials::DeviceKey).unwrap();
    let me = repo.keys().list().unwrap().into_iter().find(|k| k.in_use).unwrap();
    assert_eq!((me.id, me.kind), (id, "device"));
    // Another device has no such key.
    let laptop = Device::new();
    assert_eq!(laptop.open(&store, &Credentials::DeviceKey).unwrap_err().kind(), ErrorKind::NotFound);
    // Removed (from any device): the key opens nothing any more.
    let on_laptop = laptop.open(&store, &Credentials::passphrase(PASS)).unwrap();
    on_laptop.keys().remove(&id).unwrap();
    drop(repo);
    assert!(phone.open(&store, &Credentials::DeviceKey).is_err());
}

#[test]
fn passphrases_are_normalized_and_weak_ones_refused() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let repo = phone.init(&store);
    // "café au lait" composed (U+00E9) when added, decomposed (e + U+0301) when typed later.
    let composed = "caf\u{e9} au lait with seven sugars";
    repo.keys().add_passphrase(&Passphrase::new(composed), FAST, "accents").unwrap();
    drop(repo);
    let decomposed = "cafe\u{301} au lait with seven sugars";
    phone.open(&store, &Credentials::passphrase(decomposed)).expect("the same passphrase, typed on another keyboard");

    let e = packvault::check_passphrase_strength(&Passphrase::new("Summer2024!")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    packvault::check_passphrase_strength(&Passphrase::new("correct horse battery staple")).unwrap();
}

/// Found in review: after `forget` of the newest snapshot, the next backup used to reuse its
/// sequence, and a tombstone with a high sequence turned the rollback check off.
#[test]
fn deleting_the_snapshot_after_a_forgotten_newest_is_a_rollback() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let mut repo = phone.init(&store);
    backup(&mut repo, "day one");
    backup(&mut repo, "day two");
    let three = backup(&mut repo, "day three");
    repo.forget(&packvault::ForgetPolicy { ids: vec![three], ..Default::default() }, false).unwrap();
    let four = backup(&mut repo, "day four");
    let seq = repo.load_snapshot(&four).unwrap().sequence;
    assert_eq!(seq, 4, "sequences never repeat, also after the newest was forgotten");
    drop(repo);
    assert!(store.remove(&FileKind::Snapshot.path(&four.to_hex())));
    let e = phone.open(&store, &Credentials::passphrase(PASS)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RolledBack, "{e}");
}

/// Found in review: a fork whose own snapshot at the seen sequence was removed, with a later
/// one standing, passed as a mere deletion.
#[test]
fn a_fork_with_its_snapshot_at_the_seen_sequence_removed_is_still_a_fork() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let mut repo = phone.init(&store);
    backup(&mut repo, "day one");
    let after_day_one = store.snapshot_files();
    backup(&mut repo, "phone's day two");
    drop(repo);
    let tablet = Device::new();
    let copy = Arc::new(MemoryStore::new());
    serve(&copy, &after_day_one);
    let mut on_tablet = tablet.open(&copy, &Credentials::passphrase(PASS)).unwrap();
    let t2 = backup(&mut on_tablet, "tablet's day two");
    backup(&mut on_tablet, "tablet's day three");
    assert!(copy.remove(&FileKind::Snapshot.path(&t2.to_hex())));
    serve(&store, &copy.snapshot_files());
    let e = phone.open(&store, &Credentials::passphrase(PASS)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forked, "{e}");
}

/// Found in review: a slot missing from one listing used to be revoked for good on this
/// client, so a provider could lock a client out of its own repository.
#[test]
fn hiding_a_keyslot_once_does_not_revoke_it() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let repo = phone.init(&store);
    repo.keys().add_device_key("phone").unwrap();
    let pass_slot = repo.keys().list().unwrap().into_iter().find(|k| k.kind == "passphrase").unwrap().id;
    drop(repo);
    let path = FileKind::Key.path(&pass_slot.to_string());
    let saved = store.snapshot_files()[&path].clone();
    store.remove(&path);
    phone.open(&store, &Credentials::DeviceKey).unwrap();
    store.overwrite(&path, saved);
    let repo = phone.open(&store, &Credentials::passphrase(PASS)).expect("the passphrase slot is back and opens");
    assert!(repo.history_report().is_clean(), "{:?}", repo.history_report());
}

/// Found in review: deleting a tombstone (and keeping the snapshot file) brought a forgotten
/// snapshot back silently on the client that had seen the tombstone.
#[test]
fn a_deleted_tombstone_does_not_bring_a_forgotten_snapshot_back() {
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let mut repo = phone.init(&store);
    let one = backup(&mut repo, "day one");
    backup(&mut repo, "day two");
    let saved = store.snapshot_files()[&FileKind::Snapshot.path(&one.to_hex())].clone();
    repo.forget(&packvault::ForgetPolicy { ids: vec![one], ..Default::default() }, false).unwrap();
    drop(repo);
    phone.open(&store, &Credentials::passphrase(PASS)).unwrap();
    for t in store.list(FileKind::Tombstone).unwrap() {
        store.remove(&FileKind::Tombstone.path(&t));
    }
    store.overwrite(&FileKind::Snapshot.path(&one.to_hex()), saved);
    let repo = phone.open(&store, &Credentials::passphrase(PASS)).unwrap();
    assert!(repo.snapshots().unwrap().iter().all(|(id, _)| *id != one), "the forgotten snapshot stays forgotten");
    assert_eq!(repo.history_report().missing_tombstones, vec![one]);
    assert!(!repo.check(packvault::CheckOptions::default()).unwrap().is_ok());
}

/// Found in review: a tombstone from another repository under the same master key was
/// accepted (it could hide snapshots and revoke slots). It names its repository now.
#[test]
fn a_tombstone_from_another_repository_is_refused() {
    let master = [0x33u8; 32];
    let make = || {
        let store = Arc::new(MemoryStore::new());
        let init = packvault::InitOptions { state: ClientState::Disabled, ..fast_init(None) };
        let repo = hazmat::init_with_master_key(
            store.clone(),
            MasterKey::from_bytes(master),
            &Credentials::passphrase(PASS),
            init,
        )
        .unwrap();
        (store, repo)
    };
    let (a, mut repo_a) = make();
    let (b, mut repo_b) = make();
    let in_a = backup(&mut repo_a, "day one");
    let in_b = backup(&mut repo_b, "day one elsewhere");
    repo_b.forget(&packvault::ForgetPolicy { ids: vec![in_b], ..Default::default() }, false).unwrap();
    for (path, data) in b.snapshot_files().into_iter().filter(|(p, _)| p.starts_with("tombstones/")) {
        a.overwrite(&path, data);
    }
    drop(repo_a);
    let phone = Device::new();
    let repo = phone.open(&a, &Credentials::passphrase(PASS)).unwrap();
    assert_eq!(repo.history_report().damaged_tombstones.len(), 1, "{:?}", repo.history_report());
    assert!(repo.snapshots().unwrap().iter().any(|(id, _)| *id == in_a));
}

/// An open that learns nothing new leaves the pin file alone (no write, no fsync); one that
/// sees a new snapshot rewrites it.
#[test]
fn the_pin_is_rewritten_only_when_it_changes() {
    use std::os::unix::fs::MetadataExt;
    let phone = Device::new();
    let store = Arc::new(MemoryStore::new());
    let mut repo = phone.init(&store);
    backup(&mut repo, "day one");
    let pin = repo.pin_path().unwrap().to_path_buf();
    drop(repo);
    let inode = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    let first = phone.open(&store, &Credentials::passphrase(PASS)).unwrap();
    let before = inode(&pin);
    drop(first);
    let mut again = phone.open(&store, &Credentials::passphrase(PASS)).unwrap();
    assert_eq!(inode(&pin), before, "nothing new: the pin stays as it was");
    backup(&mut again, "day two");
    assert_ne!(inode(&pin), before, "a new snapshot is remembered");
}

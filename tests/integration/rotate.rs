//! `Repository::rotate_master`: a fresh key domain at the same location; what the old key
//! can still open (nothing new), what other clients see, and a crash at every step.

use std::collections::BTreeMap;
use std::sync::Arc;

use packvault::format::keyslot::Argon2Params;
use packvault::hazmat::{init_with_master_key, open_with_master_key, Keys, MasterKey};
use packvault::{
    CheckOptions, ClientState, Credentials, ErrorKind, FileKind, FileMeta, InitOptions, MemorySink, MemoryStore,
    OpenOptions, PruneOptions, Repository, RotateOptions, SinkOptions, SnapshotInfo, Store,
};

use crate::faulty::{FaultyStore, Mode};
use crate::vectors::noise::noise;
use crate::PASS;

const OLD_MASTER: [u8; 32] = [0x11; 32];
const CHEAP: Argon2Params = Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 };

fn rotate_options() -> RotateOptions {
    RotateOptions { kdf: Some(CHEAP), ..RotateOptions::default() }
}

fn options(state: &ClientState) -> OpenOptions {
    OpenOptions { state: state.clone(), ..OpenOptions::default() }
}

fn open(store: Arc<dyn Store>, state: &ClientState) -> packvault::Result<Repository> {
    Repository::open(store, &Credentials::passphrase(PASS), &options(state))
}

/// The files of snapshot `tag` (days 1..=n), as a restore must give them back.
fn day_files(day: u64) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    files.insert("chats/log.json".to_string(), {
        let mut log = Vec::new();
        for i in 0..(3_000 * day) {
            log.extend_from_slice(format!("{{\"id\":{i},\"text\":\"hello {}\"}}\n", i % 11).as_bytes());
        }
        log
    });
    files.insert(format!("media/photo-{day}.jpg"), noise(250_000, day));
    files.insert("media/old.jpg".to_string(), noise(200_000, 99));
    files
}

/// A repository in memory under [`OLD_MASTER`] with `days` snapshots (tagged `day1`…) and a
/// recovery-code slot.
fn base(state: &ClientState, days: u64) -> (MemoryStore, packvault::RecoveryCode) {
    let store = MemoryStore::new();
    let init = InitOptions { kdf: CHEAP, pack_target_size: 1 << 20, state: state.clone(), ..InitOptions::default() };
    let mut repo = init_with_master_key(
        Arc::new(store.clone()),
        MasterKey::from_bytes(OLD_MASTER),
        &Credentials::passphrase(PASS),
        init,
    )
    .unwrap();
    let meta = FileMeta { mode: 0o600, mtime_secs: 1_700_000_000, mtime_nanos: 0 };
    for day in 1..=days {
        let mut s = repo.backup().unwrap();
        for (path, data) in day_files(day) {
            s.add_stream(&path, &data[..], meta).unwrap();
        }
        s.commit(SnapshotInfo::tagged([format!("day{day}")])).unwrap();
    }
    // A snapshot forgotten on purpose: its tombstone is the old domain's too.
    let mut s = repo.backup().unwrap();
    s.add_stream("scratch", &b"scratch"[..], meta).unwrap();
    let scratch = s.commit(SnapshotInfo::tagged(["scratch".to_string()])).unwrap().snapshot;
    repo.forget(&packvault::ForgetPolicy { ids: vec![scratch], ..Default::default() }, false).unwrap();
    let (_, code) = repo.keys().add_recovery_code("paper").unwrap();
    (store, code)
}

/// A copy of `store`'s files in a new store (a new location).
fn clone_store(store: &MemoryStore) -> MemoryStore {
    let copy = MemoryStore::new();
    for (path, data) in store.snapshot_files() {
        copy.overwrite(&path, data);
    }
    copy
}

/// Every snapshot restores exactly, one per day.
fn assert_all_restore(repo: &Repository, days: u64) {
    let snaps = repo.snapshots().unwrap();
    let tags: Vec<String> = snaps.iter().map(|(_, r)| r.tags.join(",")).collect();
    assert_eq!(tags, (1..=days).map(|d| format!("day{d}")).collect::<Vec<_>>());
    for (day, (_, rec)) in (1..=days).zip(&snaps) {
        let mut sink = MemorySink::default();
        let report = repo.restore_to(rec, &SinkOptions { no_lock: true, ..Default::default() }, &mut sink).unwrap();
        assert!(report.is_complete(), "{:?}", report.failed);
        assert_eq!(sink.files, day_files(day), "day {day}");
    }
}

fn key_files(store: &dyn Store) -> Vec<String> {
    let mut k = store.list(FileKind::Key).unwrap();
    k.sort();
    k
}

#[test]
fn rotation_moves_every_snapshot_to_a_key_the_old_one_cannot_open() {
    let tmp = tempfile::tempdir().unwrap();
    let state = ClientState::Dir(tmp.path().join("state"));
    let other_device = ClientState::Dir(tmp.path().join("other-device"));
    let (mem, code) = base(&state, 3);
    let store: Arc<dyn Store> = Arc::new(mem.clone());
    // Another device knows the repository too.
    drop(open(store.clone(), &other_device).unwrap());
    let old_slot_files: Vec<(String, Vec<u8>)> =
        key_files(store.as_ref()).into_iter().map(|n| (n.clone(), store.get(FileKind::Key, &n).unwrap())).collect();
    let old_snapshot_files = store.list(FileKind::Snapshot).unwrap();

    let mut repo = open(store.clone(), &state).unwrap();
    let old_fingerprint = repo.fingerprint();
    let report = repo.rotate_master(&Credentials::passphrase(PASS), rotate_options()).unwrap();
    assert!(!report.resumed);
    assert_eq!(report.old_fingerprint, old_fingerprint);
    assert_ne!(report.new_fingerprint, old_fingerprint);
    assert_eq!(repo.fingerprint(), report.new_fingerprint, "the handle is the new repository's");
    assert_eq!(report.copy.as_ref().unwrap().copied.len(), 3);
    let mut kinds: Vec<&str> = report.old_slots.iter().map(|s| s.kind).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["passphrase", "recovery-code"]);
    assert_eq!(report.retired.keyslots, 2);
    assert_eq!(report.retired.snapshots, 3);
    assert_eq!(report.retired.tombstones, 1, "the old domain's forget");
    assert!(report.retired.index_files >= 1);
    assert!(report.old_packs > 0, "the old packs wait for prune");

    // The store: one keyslot (the new one), no next-config, none of the old snapshot files.
    let keys = key_files(store.as_ref());
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(Some(keys[0].clone()), report.new_slot.map(|s| s.to_string()));
    let snapshots = store.list(FileKind::Snapshot).unwrap();
    assert!(snapshots.iter().all(|s| !old_snapshot_files.contains(s)));

    // This client follows; every snapshot restores; check passes.
    let repo = open(store.clone(), &state).unwrap();
    assert_eq!(repo.fingerprint(), report.new_fingerprint);
    assert!(repo.history_report().is_clean(), "{:?}", repo.history_report());
    assert_all_restore(&repo, 3);
    let check = repo.check(CheckOptions { read_data: true, ..Default::default() }).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(check.unreferenced_packs.len() as u64, report.old_packs);

    // Another device is refused until it trusts the new fingerprint on purpose.
    let e = open(store.clone(), &other_device).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RepositoryReplaced, "{e}");
    assert!(packvault::forget_pin(&other_device, &store.location()).unwrap());
    let trusted = OpenOptions { expect_fingerprint: Some(report.new_fingerprint.clone()), ..options(&other_device) };
    Repository::open(store.clone(), &Credentials::passphrase(PASS), &trusted).unwrap();

    // The old recovery code opens nothing.
    let e = Repository::open(store.clone(), &Credentials::RecoveryCode(code), &options(&ClientState::Disabled));
    assert!(e.is_err());
    // The old master key opens nothing: not the config, not one snapshot file.
    let e = open_with_master_key(store.clone(), MasterKey::from_bytes(OLD_MASTER), &options(&ClientState::Disabled))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    let old_keys = Keys::derive(&MasterKey::from_bytes(OLD_MASTER));
    for name in &snapshots {
        let bytes = store.get(FileKind::Snapshot, name).unwrap();
        let e = packvault::format::snapshot::decode(old_keys.meta_key(), &bytes).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity);
    }
    // The old slots, put back by the provider (and the new one hidden), open nothing either.
    let planted = clone_store(&mem);
    planted.remove(&FileKind::Key.path(&keys[0]));
    for (name, bytes) in &old_slot_files {
        planted.overwrite(&FileKind::Key.path(name), bytes.clone());
    }
    assert!(open(Arc::new(planted), &ClientState::Disabled).is_err());

    // Prune removes the old packs; the old key then reads no pack of the repository.
    let mut repo = open(store.clone(), &state).unwrap();
    repo.prune(PruneOptions { max_unused_percent: 0.0, dry_run: false }).unwrap();
    let packs = store.list(FileKind::Pack).unwrap();
    assert_eq!(packs.len(), repo.index().packs().count());
    assert_all_restore(&repo, 3);
    let old = open_with_master_key(store.clone(), MasterKey::from_bytes(OLD_MASTER), &options(&ClientState::Disabled));
    assert!(old.is_err());
}

#[test]
fn a_rotation_interrupted_at_any_step_leaves_a_repository_that_opens_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let base_state = ClientState::Disabled;
    let (mem, _) = base(&base_state, 2);
    let old_fingerprint = open(Arc::new(mem.clone()), &base_state).unwrap().fingerprint();

    // A clean run counts the mutating operations.
    let probe_store = clone_store(&mem);
    let probe = FaultyStore::new(Arc::new(probe_store.clone()), None, Mode::Crash);
    let mut repo = open(probe.clone(), &base_state).unwrap();
    repo.rotate_master(&Credentials::passphrase(PASS), rotate_options()).unwrap();
    let total = probe.ops();
    let log = probe.log();
    if std::env::var_os("SHOW_ROTATION_LOG").is_some() {
        eprintln!("{log:#?}");
    }
    assert!(log.iter().any(|l| l == "delete config"), "{log:?}");
    let switch = log.iter().position(|l| l == "delete config").unwrap() as u64 + 1;
    let slot_put = log.iter().position(|l| l.starts_with("put keys/")).unwrap() as u64 + 1;

    let mut outcomes = (0, 0);
    for k in 1..=total {
        let mem_k = clone_store(&mem);
        // With a pin (a client of its own per step), so the pin's part is exercised too.
        let state = ClientState::Dir(tmp.path().join(format!("state-{k}")));
        let plain: Arc<dyn Store> = Arc::new(mem_k.clone());
        drop(open(plain.clone(), &state).unwrap());
        let faulty = FaultyStore::new(plain.clone(), Some(k), Mode::Crash);
        let mut repo = open(faulty.clone(), &state).unwrap();
        let r = repo.rotate_master(&Credentials::passphrase(PASS), rotate_options());
        // Only the release of a lock may fail unnoticed (a stale lock is harmless).
        let what = &log[k as usize - 1];
        assert!(r.is_err() || !faulty.tripped() || what.starts_with("delete locks/"), "step {k} ({what}) unnoticed");
        drop(repo);

        // As the process that died left it: opens (old or new key), every snapshot whole.
        let repo = open(plain.clone(), &state).unwrap_or_else(|e| panic!("step {k} ({}): {e}", log[k as usize - 1]));
        if k <= switch {
            assert_eq!(repo.fingerprint(), old_fingerprint, "step {k}: before the switch, the old domain");
            outcomes.0 += 1;
        } else {
            assert_ne!(repo.fingerprint(), old_fingerprint, "step {k}: after the switch, the new domain");
            outcomes.1 += 1;
        }
        assert_all_restore(&repo, 2);
        // A fresh device (no pin) opens it too.
        assert_all_restore(&open(plain.clone(), &ClientState::Disabled).unwrap(), 2);

        // The next run (its lock cleared, as `unlock` does for a dead process) finishes, in
        // the new domain the interrupted one made once its keyslot was written.
        let mut repo = repo;
        repo.unlock(true).unwrap();
        if r.is_err() {
            let done = repo.rotate_master(&Credentials::passphrase(PASS), rotate_options());
            let done = done.unwrap_or_else(|e| panic!("step {k} ({what}): resuming: {e}"));
            assert_eq!(done.resumed, k > slot_put, "step {k} ({what})");
        }
        let repo = open(plain.clone(), &state).unwrap();
        assert_ne!(repo.fingerprint(), old_fingerprint);
        assert_all_restore(&repo, 2);
        assert_eq!(key_files(plain.as_ref()).len(), 1, "step {k}: one keyslot, no next-config");
        let check = repo.check(CheckOptions::default()).unwrap();
        assert!(check.is_ok(), "step {k}: {:?}", check.problems);
        assert!(repo.history_report().is_clean(), "step {k}");
    }
    assert!(outcomes.0 > 3 && outcomes.1 > 3, "{outcomes:?} of {total}");
}

#[test]
fn the_pin_of_the_rotating_client_follows_a_switch_it_did_not_see() {
    // The rotation stops right at the switch; the provider (or a retry) then deletes the old
    // config: this client, which noted the new key as `rotating`, opens the new repository.
    let tmp = tempfile::tempdir().unwrap();
    let state = ClientState::Dir(tmp.path().join("state"));
    let (mem, _) = base(&state, 1);
    let probe = FaultyStore::new(Arc::new(clone_store(&mem)), None, Mode::Crash);
    let mut r = open(probe.clone(), &ClientState::Disabled).unwrap();
    r.rotate_master(&Credentials::passphrase(PASS), rotate_options()).unwrap();
    let switch = probe.log().iter().position(|l| l == "delete config").unwrap() as u64 + 1;

    let store: Arc<dyn Store> = Arc::new(mem.clone());
    let other = ClientState::Dir(tmp.path().join("other"));
    drop(open(store.clone(), &other).unwrap());
    let faulty = FaultyStore::new(store.clone(), Some(switch), Mode::Crash);
    let mut repo = open(faulty, &state).unwrap();
    let old = repo.fingerprint();
    assert!(repo.rotate_master(&Credentials::passphrase(PASS), rotate_options()).is_err());
    drop(repo);
    assert!(mem.remove("config"));
    let repo = open(store.clone(), &state).unwrap();
    assert_ne!(repo.fingerprint(), old);
    assert_all_restore(&repo, 1);
    // A client without that note is refused.
    assert_eq!(open(store, &other).unwrap_err().kind(), ErrorKind::RepositoryReplaced);
}

#[test]
fn an_interrupted_rotation_resumes_only_with_its_own_credentials() {
    let (mem, _) = base(&ClientState::Disabled, 1);
    let store: Arc<dyn Store> = Arc::new(mem.clone());
    // Stopped right after the new keyslot (the next mutating operation fails).
    let probe = FaultyStore::new(Arc::new(clone_store(&mem)), None, Mode::Crash);
    open(probe.clone(), &ClientState::Disabled)
        .unwrap()
        .rotate_master(&Credentials::passphrase(PASS), rotate_options())
        .unwrap();
    let after_slot = probe.log().iter().position(|l| l.starts_with("put keys/")).unwrap() as u64 + 2;
    let faulty = FaultyStore::new(store.clone(), Some(after_slot), Mode::Crash);
    let mut repo = open(faulty, &ClientState::Disabled).unwrap();
    assert!(repo.rotate_master(&Credentials::passphrase(PASS), rotate_options()).is_err());

    let mut repo = open(store.clone(), &ClientState::Disabled).unwrap();
    repo.unlock(true).unwrap();
    let other = Credentials::passphrase("another passphrase, quite long");
    let e = repo.rotate_master(&other, rotate_options()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("interrupted") && e.to_string().contains("keys/"), "{e}");
    let done = repo.rotate_master(&Credentials::passphrase(PASS), rotate_options()).unwrap();
    assert!(done.resumed);
    assert_all_restore(&open(store, &ClientState::Disabled).unwrap(), 1);
}

//! Credentials and keyslots: open with each kind, wrong credentials, PIN attempt limits,
//! tampered and hostile slots, rotation, rollback detection.

use std::sync::Arc;

use packvault::format::keyslot::{self, Argon2Params};
use packvault::{
    Credentials, ErrorKind, FileKind, FileVault, MemoryStore, OpenOptions, Passphrase, PinVault, Repository, Store,
};

use crate::{fast_init, PASS};

const FAST: Argon2Params = Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 };

fn open(store: &Arc<MemoryStore>, c: &Credentials) -> packvault::Result<Repository> {
    Repository::open(
        store.clone(),
        c,
        &OpenOptions { state: packvault::ClientState::Disabled, ..OpenOptions::default() },
    )
}

struct Setup {
    _tmp: tempfile::TempDir,
    store: Arc<MemoryStore>,
    vault: Arc<FileVault>,
    repo: Repository,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let vault = Arc::new(FileVault::new(tmp.path().join("vault")));
    let repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), fast_init(None)).unwrap();
    Setup { _tmp: tmp, store, vault, repo }
}

#[test]
fn every_slot_kind_opens_and_wrong_credentials_have_their_own_errors() {
    let s = setup();
    let keys = s.repo.keys();
    let (code_id, code) = keys.add_recovery_code("paper").unwrap();
    let pin_id = keys.add_pin(&Passphrase::new("482913"), s.vault.as_ref(), FAST, "phone").unwrap();
    let mut list = keys.list().unwrap();
    list.sort_by_key(|k| k.kind);
    assert_eq!(list.iter().map(|k| k.kind).collect::<Vec<_>>(), ["passphrase", "pin", "recovery-code"]);
    assert!(list[0].in_use && !list[1].in_use && !list[2].in_use, "{list:?}");
    assert_eq!((list[1].id, list[2].label.as_str()), (pin_id, "paper"));

    let by_code = open(&s.store, &Credentials::recovery_code(&code.to_text()).unwrap()).unwrap();
    assert_eq!(by_code.id(), s.repo.id());
    assert!(by_code.keys().list().unwrap().iter().any(|k| k.in_use && k.id == code_id));
    let by_pin = open(&s.store, &Credentials::pin("482913", s.vault.clone())).unwrap();
    assert!(by_pin.keys().list().unwrap().iter().any(|k| k.in_use && k.id == pin_id));

    let e = open(&s.store, &Credentials::passphrase("another passphrase")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongPassphrase, "{e}");
    let other = packvault::RecoveryCode::generate().unwrap();
    let e = open(&s.store, &Credentials::RecoveryCode(other)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongRecoveryCode, "{e}");
    assert!(e.to_string().contains("wrong recovery code"), "{e}");
    let e = open(&s.store, &Credentials::pin("000000", s.vault.clone())).unwrap_err();
    assert!(matches!(e, packvault::Error::WrongPin { attempts_left: 9 }), "{e}");
    assert!(e.to_string().contains("9 attempts left"), "{e}");

    // A mistyped recovery code is a typo, not a wrong key.
    let text = code.to_text().to_string();
    let swapped: String = {
        let mut c: Vec<char> = text.chars().collect();
        let (i, j) =
            (0..c.len() - 1).map(|i| (i, i + 1)).find(|&(i, j)| c[i] != c[j] && c[i] != '-' && c[j] != '-').unwrap();
        c.swap(i, j);
        c.into_iter().collect()
    };
    let e = Credentials::recovery_code(&swapped).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RecoveryCodeInvalid);
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
}

#[test]
fn ten_wrong_pins_destroy_the_pin_slot_for_good() {
    let s = setup();
    s.repo.keys().add_pin(&Passphrase::new("1234"), s.vault.as_ref(), FAST, "").unwrap();
    open(&s.store, &Credentials::pin("1234", s.vault.clone())).unwrap();
    for left in (1..10).rev() {
        let e = open(&s.store, &Credentials::pin("9999", s.vault.clone())).unwrap_err();
        assert!(matches!(e, packvault::Error::WrongPin { attempts_left } if attempts_left == left), "{e}");
    }
    let e = open(&s.store, &Credentials::pin("9999", s.vault.clone())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PinDestroyed);
    let e = open(&s.store, &Credentials::pin("1234", s.vault.clone())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PinDestroyed, "the right PIN no longer opens: {e}");
    open(&s.store, &Credentials::passphrase(PASS)).expect("the passphrase still works");
    assert!(s.repo.keys().add_pin(&Passphrase::new("12ab"), s.vault.as_ref(), FAST, "").is_err(), "PINs are digits");
}

#[test]
fn removed_rotated_and_last_slots() {
    let s = setup();
    let keys = s.repo.keys();
    let second = keys.add_passphrase(&Passphrase::new("second passphrase 2"), FAST, "laptop").unwrap();
    open(&s.store, &Credentials::passphrase("second passphrase 2")).unwrap();
    // As a user types it: a prefix, resolved to the slot id.
    keys.remove(&keys.resolve(&second.to_string()[..8]).unwrap().id).unwrap();
    let e = open(&s.store, &Credentials::passphrase("second passphrase 2")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongPassphrase, "a removed slot stops working: {e}");

    let (code_id, old_code) = keys.add_recovery_code("").unwrap();
    let (_, new_code) = keys.rotate_recovery_code(&code_id).unwrap();
    assert_eq!(open(&s.store, &Credentials::RecoveryCode(old_code)).unwrap_err().kind(), ErrorKind::WrongRecoveryCode);
    open(&s.store, &Credentials::RecoveryCode(new_code)).unwrap();

    let first = keys.list().unwrap().into_iter().find(|k| k.kind == "passphrase").unwrap();
    keys.change_passphrase(&first.id, &Passphrase::new("a new passphrase 3"), None).unwrap();
    assert_eq!(open(&s.store, &Credentials::passphrase(PASS)).unwrap_err().kind(), ErrorKind::WrongPassphrase);
    let repo = open(&s.store, &Credentials::passphrase("a new passphrase 3")).unwrap();
    assert_eq!(repo.keys().list().unwrap().len(), 2);

    // Down to one slot: removing it is refused.
    let code_slot = repo.keys().list().unwrap().into_iter().find(|k| k.kind == "recovery-code").unwrap();
    repo.keys().remove(&code_slot.id).unwrap();
    let last = repo.keys().list().unwrap().pop().unwrap();
    let e = repo.keys().remove(&last.id).unwrap_err();
    assert!(e.to_string().contains("last one"), "{e}");

    for weak in ["short", "aaaaaaaaaaaa", "password123", "12345678"] {
        let e = repo.keys().add_passphrase(&Passphrase::new(weak), FAST, "").unwrap_err();
        assert!(e.to_string().contains("passphrase too weak"), "{weak}: {e}");
    }
}

fn slot_files(store: &MemoryStore) -> Vec<(String, Vec<u8>)> {
    store.snapshot_files().into_iter().filter(|(k, _)| k.starts_with("keys/")).collect()
}

#[test]
fn swapped_ciphertext_fails_the_commitment_and_hostile_parameters_are_refused() {
    let s = setup();
    s.repo.keys().add_passphrase(&Passphrase::new("second passphrase 2"), FAST, "").unwrap();
    let slots = slot_files(&s.store);
    assert_eq!(slots.len(), 2);
    // Keep slot A's header, take B's nonce, wrapped key and commitment (the last 92 bytes).
    let (a_name, a) = &slots[0];
    let (_, b) = &slots[1];
    let mut forged = a[..a.len() - 92].to_vec();
    forged.extend_from_slice(&b[b.len() - 92..]);
    let slot = keyslot::decode(&forged).unwrap();
    for pass in [PASS, "second passphrase 2"] {
        let keyslot::SlotKdf::Passphrase { params, salt } = &slot.kdf else { panic!() };
        let k = keyslot::argon2id(pass.as_bytes(), salt, *params).unwrap();
        assert_eq!(slot.unwrap_master(&k).unwrap_err().kind(), ErrorKind::WrongPassphrase, "commitment refuses it");
    }

    // A slot asking for 100 GiB of Argon2 memory is refused before any KDF work.
    let mut hostile = a.clone();
    let label_len = usize::from(hostile[41]);
    let at = keyslot::FIXED_LEN + label_len;
    hostile[at..at + 4].copy_from_slice(&(100u32 << 20).to_le_bytes());
    for (name, _) in &slots {
        s.store.remove(name);
    }
    s.store.overwrite(a_name, hostile);
    let e = open(&s.store, &Credentials::passphrase(PASS)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert!(e.to_string().contains(a_name.as_str()), "names the slot: {e}");
}

#[test]
fn a_repository_rolled_back_to_an_older_snapshot_set_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let state = tmp.path().join("state");
    let options = OpenOptions { state: packvault::ClientState::Dir(state.clone()), ..OpenOptions::default() };
    let init = packvault::InitOptions { state: packvault::ClientState::Dir(state.clone()), ..fast_init(None) };
    let mut repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), init).unwrap();
    let meta = packvault::FileMeta { mode: 0o600, mtime_secs: 0, mtime_nanos: 0 };
    let mut b = repo.backup().unwrap();
    b.add_stream("a", &b"day one"[..], meta).unwrap();
    b.commit(packvault::SnapshotInfo::default()).unwrap();
    let day_one: Vec<(String, Vec<u8>)> = store.snapshot_files().into_iter().collect();
    let mut b = repo.backup().unwrap();
    b.add_stream("a", &b"day two"[..], meta).unwrap();
    b.commit(packvault::SnapshotInfo::default()).unwrap();
    drop(repo);
    Repository::open(store.clone(), &Credentials::passphrase(PASS), &options).unwrap();

    // The provider serves the repository, at the same location, as it was after day one.
    for path in store.snapshot_files().keys() {
        store.remove(path);
    }
    for (path, data) in day_one {
        store.overwrite(&path, data);
    }
    let old = store.clone();
    let e = Repository::open(old.clone(), &Credentials::passphrase(PASS), &options).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RolledBack);
    assert!(
        e.to_string().contains("rolled back")
            && e.to_string().contains("sequence 1")
            && e.to_string().contains("sequence 2"),
        "{e}"
    );
    let allow = OpenOptions { allow_rollback: true, ..options.clone() };
    Repository::open(old.clone(), &Credentials::passphrase(PASS), &allow).expect("explicitly allowed");
    assert!(old.list(FileKind::Snapshot).unwrap().len() == 1);
}

#[test]
fn pin_vault_trait_is_usable_by_another_implementation() {
    // The trait is public: a minimal in-memory vault works with the repository.
    use std::sync::Mutex;
    /// (enrollment id, auth, secret)
    type Entry = ([u8; 16], [u8; 32], [u8; 32]);
    #[derive(Default)]
    struct Mem(Mutex<Vec<Entry>>);
    impl PinVault for Mem {
        fn enroll(&self, _binding: &[u8; 32], auth: &[u8; 32]) -> packvault::Result<([u8; 16], packvault::SecretKey)> {
            let mut v = self.0.lock().unwrap();
            let id = [v.len() as u8; 16];
            let secret = [7u8; 32];
            v.push((id, *auth, secret));
            Ok((id, packvault::SecretKey::from_bytes(secret)))
        }
        fn release(
            &self,
            id: &[u8; 16],
            _binding: &[u8; 32],
            auth: &[u8; 32],
        ) -> packvault::Result<packvault::SecretKey> {
            let v = self.0.lock().unwrap();
            let e = v.iter().find(|e| e.0 == *id).ok_or_else(|| packvault::Error::NotFound("id".into()))?;
            if e.1 == *auth {
                Ok(packvault::SecretKey::from_bytes(e.2))
            } else {
                Err(packvault::Error::WrongPin { attempts_left: 1 })
            }
        }
        fn failed_attempts(&self, _: &[u8; 16]) -> packvault::Result<u32> {
            Ok(0)
        }
        fn remove(&self, _: &[u8; 16]) -> packvault::Result<()> {
            Ok(())
        }
    }
    let s = setup();
    let vault = Arc::new(Mem::default());
    s.repo.keys().add_pin(&Passphrase::new("2468"), vault.as_ref(), FAST, "").unwrap();
    open(&s.store, &Credentials::pin("2468", vault)).unwrap();
}

#[test]
fn planted_pin_slots_cannot_burn_the_users_attempts() {
    let s = setup();
    s.repo.keys().add_pin(&Passphrase::new("482913"), s.vault.as_ref(), FAST, "phone").unwrap();
    let real = slot_files(&s.store).into_iter().find(|(_, b)| b[40] == 3).unwrap();
    // The provider plants 12 copies with altered salts (same vault enrollment) and 12 exact
    // copies, under names that sort first.
    for i in 0..24u8 {
        let mut b = real.1.clone();
        b[24..40].copy_from_slice(&[i; 16]);
        if i < 12 {
            let salt_at = keyslot::FIXED_LEN + usize::from(b[41]) + 12;
            b[salt_at] ^= 0xff;
        }
        s.store.overwrite(&format!("keys/{}", "0".repeat(30) + &format!("{i:02x}")), b);
    }
    // One wrong PIN costs one attempt, not 25.
    let e = open(&s.store, &Credentials::pin("000000", s.vault.clone())).unwrap_err();
    assert!(matches!(e, packvault::Error::WrongPin { attempts_left: 9 }), "{e}");
    // The right PIN still opens, through the real slot or an exact copy.
    open(&s.store, &Credentials::pin("482913", s.vault.clone())).unwrap();
}

#[test]
fn change_pin_replaces_the_slot_and_its_enrollment() {
    let s = setup();
    let id = s.repo.keys().add_pin(&Passphrase::new("1357"), s.vault.as_ref(), FAST, "phone").unwrap();
    let new_id = s.repo.keys().change_pin(&id, &Passphrase::new("246810"), s.vault.as_ref()).unwrap();
    assert_ne!(id, new_id);
    let e = open(&s.store, &Credentials::pin("1357", s.vault.clone())).unwrap_err();
    assert!(matches!(e, packvault::Error::WrongPin { .. }), "the old PIN no longer opens: {e}");
    open(&s.store, &Credentials::pin("246810", s.vault.clone())).unwrap();
    let slot = s.repo.keys().list().unwrap().into_iter().find(|k| k.id == new_id).unwrap();
    assert_eq!((slot.kind, slot.label.as_str()), ("pin", "phone"));
}

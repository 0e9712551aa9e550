//! What an attacker on the wire, an impostor vault or a database thief can do: nothing useful.

use std::sync::{Arc, Mutex};

use packvault::{Error, PinVault, SecretKey};
use packvault_vault::{server, RemoteVault};

use super::support::{contains, post, Fixture, Proxy, Server, PIN, TEST_KSF};

/// A vault that remembers the `auth` values the library hands it.
struct Spy {
    inner: RemoteVault,
    seen: Mutex<Vec<[u8; 32]>>,
}

impl PinVault for Spy {
    fn enroll(&self, binding: &[u8; 32], auth: &[u8; 32]) -> packvault::Result<([u8; 16], SecretKey)> {
        self.seen.lock().unwrap().push(*auth);
        self.inner.enroll(binding, auth)
    }
    fn release(&self, id: &[u8; 16], binding: &[u8; 32], auth: &[u8; 32]) -> packvault::Result<SecretKey> {
        self.seen.lock().unwrap().push(*auth);
        self.inner.release(id, binding, auth)
    }
    fn failed_attempts(&self, id: &[u8; 16]) -> packvault::Result<u32> {
        self.inner.failed_attempts(id)
    }
    fn remove(&self, id: &[u8; 16]) -> packvault::Result<()> {
        self.inner.remove(id)
    }
}

#[test]
fn the_pin_and_the_pin_proof_never_appear_in_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("vault.db"), &[]);
    let proxy = Proxy::start(server.addr);
    let spy = Arc::new(Spy {
        inner: RemoteVault::new(&proxy.url, server.key).unwrap().with_ksf(TEST_KSF).unwrap(),
        seen: Mutex::default(),
    });
    let fixture = Fixture::new();
    fixture.add_pin(spy.as_ref(), PIN);
    fixture.open_new_device(spy.clone(), PIN).unwrap();
    assert!(fixture.open_new_device(spy.clone(), "999999").is_err());

    let sent = proxy.sent();
    let requests = proxy.requests();
    assert!(requests.iter().any(|(p, _)| p == "/v1/register/finish"));
    assert!(requests.iter().filter(|(p, _)| p == "/v1/login/start").count() >= 2);
    assert!(!contains(&sent, PIN.as_bytes()), "the PIN's digits are on the wire");
    let seen = spy.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for auth in seen.iter() {
        assert!(!contains(&sent, auth), "the PIN proof (Argon2id of the PIN) is on the wire");
        assert!(!contains(&sent, &auth[..8]), "part of the PIN proof is on the wire");
    }
    server.terminate();
}

#[test]
fn replaying_a_recorded_login_does_not_open_the_record_nor_reset_its_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vault.db");
    let server = Server::start(&db, &[]);
    let proxy = Proxy::start(server.addr);
    let vault = RemoteVault::new(&proxy.url, server.key).unwrap().with_ksf(TEST_KSF).unwrap();
    let (binding, auth) = ([1u8; 32], [2u8; 32]);
    let (id, secret) = vault.enroll(&binding, &auth).unwrap();
    // The recorded transcript: a successful login.
    assert_eq!(vault.release(&id, &binding, &auth).unwrap(), secret);
    let requests = proxy.requests();
    let (_, start) = requests.iter().find(|(p, _)| p == "/v1/login/start").unwrap().clone();
    let (_, finish) = requests.iter().find(|(p, _)| p == "/v1/login/finish").unwrap().clone();
    // Two wrong PINs since.
    for _ in 0..2 {
        assert!(matches!(vault.release(&id, &binding, &[9; 32]), Err(Error::WrongPin { .. })));
    }
    assert_eq!(vault.failed_attempts(&id).unwrap(), 2);

    // Replaying the finalization alone: its login is over.
    let (status, _) = post(server.addr, "/v1/login/finish", &finish);
    assert_eq!(status, 404);
    // Replaying the whole transcript: the vault answers the start with fresh nonces (and
    // counts it), and the old finalization does not verify against them.
    let (status, body) = post(server.addr, "/v1/login/start", &start);
    assert_eq!(status, 200);
    let session = &body[1..17];
    let mut replayed = finish[..32].to_vec();
    replayed.extend_from_slice(session);
    replayed.extend_from_slice(&finish[48..]);
    let (status, _) = post(server.addr, "/v1/login/finish", &replayed);
    assert_eq!(status, 403, "the replayed finalization is refused");
    assert_eq!(vault.failed_attempts(&id).unwrap(), 3, "counted, and not reset");
    assert!(server::record(&db, &id).unwrap().unwrap().used.is_some());
    server.terminate();
}

#[test]
fn an_impostor_vault_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real_db = dir.path().join("real.db");
    let real = Server::start(&real_db, &[]);
    let fixture = Fixture::new();
    let slot = fixture.add_pin(&real.vault(), PIN);
    let id = super::restore::vault_id_of(&fixture, &slot);
    let real_key = real.key;
    assert!(real.terminate().success());

    // The impostor: the real database (a thief's copy), its own key.
    let fake_db = dir.path().join("impostor.db");
    std::fs::copy(&real_db, &fake_db).unwrap();
    let impostor = Server::start(&fake_db, &[]);
    assert_ne!(impostor.key, real_key);
    let pinned = Arc::new(RemoteVault::new(&impostor.url, real_key).unwrap().with_ksf(TEST_KSF).unwrap());
    // Restore through it: refused as an impostor, not taken for a wrong PIN.
    let e = fixture.open_new_device(pinned.clone(), PIN).err().unwrap();
    assert!(matches!(e.kind(), packvault::ErrorKind::Integrity), "{e}");
    assert!(e.to_string().contains("did not prove that it holds the pinned vault key"), "{e}");
    // Enrolling with it: refused before anything is uploaded.
    let e = pinned.enroll(&[1; 32], &[2; 32]).err().unwrap();
    assert!(e.to_string().contains("pinned vault key"), "{e}");
    assert_eq!(server::stats(&fake_db).unwrap().records, 1, "only the copied record");

    // Even a client that trusted the impostor's key learns nothing from the stolen record:
    // without the real key file, the right PIN does not log in.
    let trusting = RemoteVault::new(&impostor.url, impostor.key).unwrap().with_ksf(TEST_KSF).unwrap();
    let binding = match fixture.open_device1().keys().slot(&slot).unwrap().kdf {
        packvault::format::keyslot::SlotKdf::Pin { salt, params, .. } => {
            packvault::format::keyslot::pin_binding(&salt, params)
        }
        _ => unreachable!(),
    };
    let e = trusting.release(&id, &binding, &[0; 32]).err().unwrap();
    assert!(matches!(e, Error::WrongPin { .. }), "{e}");
    let e = fixture.open_new_device(Arc::new(trusting), PIN).err().unwrap();
    assert!(matches!(e, Error::WrongPin { .. }), "the right PIN fails without the real key file: {e}");
    impostor.terminate();

    // The real vault still opens.
    let real = Server::start(&real_db, &[]);
    assert_eq!(real.key, real_key);
    fixture.open_new_device(Arc::new(real.vault()), PIN).unwrap();
    real.terminate();
}

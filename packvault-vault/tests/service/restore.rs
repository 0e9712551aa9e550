//! Restore on a new device with the PIN only.

use std::sync::Arc;

use packvault::{PinVault, RestoreOptions};
use packvault_vault::RemoteVault;

use super::support::{Fixture, Server, CHAT, PIN, TEST_KSF};

#[test]
fn a_new_device_restores_with_the_pin_and_the_vault_url_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("vault.db"), &[]);
    let fixture = Fixture::new();
    let slot = fixture.add_pin(&server.vault(), PIN);

    // The new device knows the vault's URL and key (shipped with the app) and the PIN; it has
    // no local state, no cache, and a client object of its own.
    let vault = Arc::new(RemoteVault::new(&server.url, server.key).unwrap().with_ksf(TEST_KSF).unwrap());
    let repo = fixture.open_new_device(vault.clone(), PIN).unwrap();
    let (_, record) = repo.snapshots().unwrap().pop().unwrap();
    let target = tempfile::tempdir().unwrap();
    let report =
        repo.restore(&record, &RestoreOptions { target: target.path().join("out"), ..Default::default() }).unwrap();
    assert!(report.is_complete());
    assert_eq!(std::fs::read(target.path().join("out/chats/alice.json")).unwrap(), CHAT);

    // The secret is stable across logins: a second login opens again, and a wrong PIN in
    // between is counted and then reset by the right one.
    assert!(matches!(
        fixture.open_new_device(vault.clone(), "000000").err().unwrap(),
        packvault::Error::WrongPin { attempts_left: 9 }
    ));
    fixture.open_new_device(vault.clone(), PIN).unwrap();
    let vault_id = vault_id_of(&fixture, &slot);
    assert_eq!(vault.failed_attempts(&vault_id).unwrap(), 0, "a completed login resets the count");
    server.terminate();
}

/// The enrollment id stored in PIN slot `slot`.
pub fn vault_id_of(fixture: &Fixture, slot: &packvault::SlotId) -> [u8; 16] {
    let repo = fixture.open_device1();
    match repo.keys().slot(slot).unwrap().kdf {
        packvault::format::keyslot::SlotKdf::Pin { vault_id, .. } => vault_id,
        _ => panic!("not a PIN slot"),
    }
}

//! Keyslot files: writing one, loading them (by repository, or all), and the helpers that
//! read their public part (fingerprints).

use std::collections::BTreeSet;

use crate::crypto::{random_array, MasterKey, SecretKey};
use crate::error::{Error, Location, Result};
use crate::format::keyslot::{self, Argon2Params, Keyslot, NewSlot, SlotKdf};
use crate::format::recovery_code::RecoveryCode;
use crate::id::SlotId;
use crate::repo::now_secs;
use crate::store::{FileKind, Store};
use crate::vault::PinVault;

use super::{check_passphrase_strength, check_pin, Passphrase};

/// What a new slot is made from.
pub(crate) enum NewCredential<'a> {
    Passphrase(&'a Passphrase, Argon2Params),
    Device(&'a SecretKey),
    RecoveryCode(&'a RecoveryCode),
    Pin(&'a Passphrase, &'a dyn PinVault, Argon2Params),
}

/// Writes a new keyslot wrapping `master`; returns its id.
pub(crate) fn write_slot(
    store: &dyn Store,
    repo_id: &[u8; 16],
    master: &MasterKey,
    cred: NewCredential<'_>,
    label: &str,
) -> Result<SlotId> {
    let salt = random_array()?;
    let (kdf, kdf_out) = match cred {
        NewCredential::Passphrase(pass, params) => {
            check_passphrase_strength(pass)?;
            (SlotKdf::Passphrase { params, salt }, keyslot::argon2id(pass.as_bytes(), &salt, params)?)
        }
        NewCredential::RecoveryCode(code) => (SlotKdf::RecoveryCode { salt }, keyslot::recovery_kdf(code, &salt)),
        NewCredential::Device(secret) => (SlotKdf::Device { salt }, keyslot::device_kdf(secret, &salt)),
        NewCredential::Pin(pin, vault, params) => {
            check_pin(pin)?;
            let h = keyslot::argon2id(pin.as_bytes(), &salt, params)?;
            let (vault_id, secret) = vault.enroll(&keyslot::pin_binding(&salt, params), &keyslot::pin_auth(&h))?;
            (SlotKdf::Pin { params, salt, vault_id }, keyslot::pin_kdf(&h, &secret))
        }
    };
    let slot =
        NewSlot { repo_id: *repo_id, slot_id: random_array()?, label: label.to_string(), created: now_secs(), kdf };
    let bytes = keyslot::encode(&slot, master, &kdf_out, &random_array()?)?;
    let id = SlotId::from_bytes(slot.slot_id);
    store.put(FileKind::Key, &id.to_string(), &bytes)?;
    Ok(id)
}

/// Loads every keyslot of the repository `repo_id`; unreadable ones are skipped and the first
/// error is kept for reporting.
pub(crate) fn load_slots(store: &dyn Store, repo_id: &[u8; 16]) -> Result<(Vec<Keyslot>, Option<Error>)> {
    Ok(split_slots(load_slots_each(store, repo_id)?))
}

/// The readable slots of [`load_slots_each`]'s answer, and its first error.
pub(super) fn split_slots(each: Vec<(String, Result<Keyslot>)>) -> (Vec<Keyslot>, Option<Error>) {
    let mut slots = Vec::new();
    let mut first_err = None;
    for (_, r) in each {
        match r {
            Ok(s) => slots.push(s),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    (slots, first_err)
}

/// The names of the keyslot files, sorted: 32 hex digits; anything else (temporary files) is
/// ignored. A listing only: no slot is read.
pub(crate) fn slot_names(store: &dyn Store) -> Result<Vec<String>> {
    let mut names: Vec<String> = store
        .list(FileKind::Key)?
        .into_iter()
        .filter(|n| n.len() == 32 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .collect();
    names.sort();
    Ok(names)
}

/// Every keyslot file by name, each decoded or with why it is refused (errors name the file).
pub(crate) fn load_slots_each(store: &dyn Store, repo_id: &[u8; 16]) -> Result<Vec<(String, Result<Keyslot>)>> {
    let mut out = Vec::new();
    for name in slot_names(store)? {
        let loc = || Location::RepoFile(FileKind::Key.path(&name));
        let bytes =
            crate::store::get_bounded(store, FileKind::Key, &name, keyslot::MAX_KEYSLOT_FILE as u64, "keyslot length");
        let r = match bytes.and_then(|b| keyslot::decode(&b)) {
            Ok(s) if s.id_hex() != name => {
                Err(Error::malformed("keyslot", Some(24), "slot id does not match the file name").at(loc()))
            }
            Ok(s) if s.repo_id != *repo_id => {
                Err(Error::malformed("keyslot", Some(8), "belongs to another repository").at(loc()))
            }
            Ok(s) => Ok(s),
            Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e.at(loc())),
            Err(e) => Err(e.at(loc())),
        };
        out.push((name, r));
    }
    Ok(out)
}

/// Every keyslot file that decodes, whatever repository id it names (a key rotation's
/// slots name the repository id it switches to), with its file name.
pub(crate) fn load_slots_any_repo(store: &dyn Store) -> Result<Vec<Keyslot>> {
    let mut out = Vec::new();
    for name in slot_names(store)? {
        let bytes =
            crate::store::get_bounded(store, FileKind::Key, &name, keyslot::MAX_KEYSLOT_FILE as u64, "keyslot length");
        match bytes.and_then(|b| keyslot::decode(&b)) {
            Ok(s) if s.id_hex() == name => out.push(s),
            Err(e) if e.kind() == crate::ErrorKind::Io => {
                return Err(e.at(Location::RepoFile(FileKind::Key.path(&name))))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `params`, raised field by field to at least [`Argon2Params::default`].
pub(crate) fn at_least_default(params: Argon2Params) -> Argon2Params {
    let d = Argon2Params::default();
    Argon2Params { m_kib: params.m_kib.max(d.m_kib), t: params.t.max(d.t), p: params.p.max(d.p) }
}

/// The fingerprints the repository's readable keyslots name, for an error message (the
/// config says nothing about the master key before it is decrypted).
pub(crate) fn fingerprints_of_slots(store: &dyn Store, repo_id: &[u8; 16]) -> String {
    let found: BTreeSet<String> = load_slots(store, repo_id)
        .map(|(slots, _)| slots.iter().map(|s| crate::repo::trust::fingerprint_of(&s.repo_id, &s.master_id)).collect())
        .unwrap_or_default();
    if found.is_empty() {
        format!("unknown (repository id {}, no readable keyslot)", crate::id::hex_encode(repo_id))
    } else {
        found.into_iter().collect::<Vec<_>>().join(" or ")
    }
}

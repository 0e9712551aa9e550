//! Unlocking: which slots an open may try, in which order, at what cost, and what each
//! failure means.

use std::collections::BTreeSet;

use crate::crypto::{MasterKey, SecretKey};
use crate::error::{Error, Location, Result};
use crate::format::keyslot::{self, Keyslot, SlotKdf};
use crate::id::SlotId;
use crate::store::{FileKind, Store};

use super::slots::{load_slots_each, split_slots};
use super::{Credentials, MAX_SLOTS_TRIED};

/// Which keyslots an open may try, from what this client trusts (its pin, an expected
/// fingerprint). Slots outside it are never given to a key derivation.
#[derive(Default)]
pub(crate) struct SlotFilter {
    /// Only slots that wrap this master key (their plaintext master id).
    pub master_id: Option<crate::id::Id>,
    /// Only slots whose (repository id, master id) has this fingerprint.
    pub fingerprint: Option<String>,
    /// Tried first: the slot this client opened with last.
    pub prefer: Option<String>,
    /// Removed slots: tried only after every other, and only to say so when one opens.
    pub revoked: std::collections::BTreeSet<String>,
    /// The device key this client holds: (slot id, secret).
    pub device: Option<(String, SecretKey)>,
}

impl SlotFilter {
    fn admits(&self, slot: &Keyslot) -> bool {
        self.master_id.is_none_or(|m| slot.master_id == m)
            && self.fingerprint.as_ref().is_none_or(|f| {
                crate::repo::trust::same_fingerprint(
                    f,
                    &crate::repo::trust::fingerprint_of(&slot.repo_id, &slot.master_id),
                )
            })
    }
}

/// The KDF output `credentials` give for `slot`, if the slot is of their kind.
fn kdf_output(slot: &Keyslot, credentials: &Credentials, filter: &SlotFilter) -> Option<Result<SecretKey>> {
    match (&slot.kdf, credentials) {
        (SlotKdf::Passphrase { params, salt }, Credentials::Passphrase(p)) => {
            Some(keyslot::argon2id(p.as_bytes(), salt, *params))
        }
        (SlotKdf::RecoveryCode { salt }, Credentials::RecoveryCode(code)) => {
            Some(Ok(keyslot::recovery_kdf(code, salt)))
        }
        (SlotKdf::Pin { params, salt, vault_id }, Credentials::Pin { pin, vault }) => Some((|| {
            let h = keyslot::argon2id(pin.as_bytes(), salt, *params)?;
            let secret = vault.release(vault_id, &keyslot::pin_binding(salt, *params), &keyslot::pin_auth(&h))?;
            Ok(keyslot::pin_kdf(&h, &secret))
        })()),
        (SlotKdf::Device { salt }, Credentials::DeviceKey) => match &filter.device {
            Some((id, secret)) if *id == slot.id_hex() => Some(Ok(keyslot::device_kdf(secret, salt))),
            _ => None,
        },
        _ => None,
    }
}

/// Unwraps the master key with `credentials`, trying only the slots `filter` admits; returns
/// it and the id of the slot that opened.
pub(crate) fn unlock(
    store: &dyn Store,
    repo_id: &[u8; 16],
    credentials: &Credentials,
    filter: &SlotFilter,
) -> Result<(MasterKey, String)> {
    if matches!(credentials, Credentials::DeviceKey) && filter.device.is_none() {
        return Err(Error::NotFound("this client holds no device key for the repository at this location".into()));
    }
    let each = load_slots_each(store, repo_id)?;
    let foreign = |r: &Result<Keyslot>| matches!(r, Err(e) if e.to_string().contains("belongs to another repository"));
    if !each.is_empty() && each.iter().all(|(_, r)| foreign(r)) {
        // Not one slot names the config's repository id: the id in the config is the likely
        // damage (or the keyslots come from another repository).
        return Err(Error::Integrity(format!(
            "its repository id {} matches none of the {} keyslots (the config is damaged, or the keyslots belong to another repository)",
            crate::id::hex_encode(repo_id),
            each.len()
        ))
        .at(Location::RepoFile("config".into())));
    }
    let (slots, slot_err) = split_slots(each);
    let admitted: Vec<&Keyslot> = slots.iter().filter(|s| filter.admits(s)).collect();
    if admitted.is_empty() && !slots.is_empty() {
        if let Some(f) = &filter.fingerprint {
            let found: BTreeSet<String> =
                slots.iter().map(|s| crate::repo::trust::fingerprint_of(&s.repo_id, &s.master_id)).collect();
            return Err(Error::FingerprintMismatch {
                expected: f.clone(),
                found: found.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
        return Err(Error::NotFound(
            "no keyslot wraps the master key this client pinned for the repository (the provider may have replaced them)".into(),
        ));
    }
    // Slots of the credential's kind: the preferred one, then the cheapest KDF first, so that
    // slots planted with huge parameters cannot delay or crowd out the real one; removed ones
    // last. The total KDF work is bounded too.
    let mut candidates: Vec<&Keyslot> = admitted.into_iter().filter(|s| kind_matches(s, credentials)).collect();
    candidates.sort_by_key(|s| {
        let id = s.id_hex();
        (filter.revoked.contains(&id), filter.prefer.as_deref() != Some(id.as_str()), kdf_cost(s), id)
    });
    let mut tried = 0;
    let mut budget = MAX_KDF_WORK;
    let mut kind_err: Option<Error> = None;
    for slot in candidates.into_iter().take(MAX_SLOTS_TRIED) {
        let cost = kdf_cost(slot);
        if cost > budget {
            kind_err.get_or_insert(Error::LimitExceeded {
                what: "Argon2 work of the keyslots tried (MiB × passes)",
                found: (MAX_KDF_WORK - budget + cost) >> 10,
                limit: MAX_KDF_WORK >> 10,
            });
            break;
        }
        budget -= cost;
        let Some(k) = kdf_output(slot, credentials, filter) else { continue };
        tried += 1;
        let loc = || Location::RepoFile(FileKind::Key.path(&slot.id_hex()));
        match k.and_then(|k| slot.unwrap_master(&k)) {
            // A removed slot that was put back: it opens, and is refused.
            Ok(_) if filter.revoked.contains(&slot.id_hex()) => {
                return Err(Error::KeyslotRevoked(SlotId::from_bytes(slot.slot_id)))
            }
            Ok(m) => return Ok((m, slot.id_hex())),
            // Not this slot: try the next.
            Err(Error::WrongPassphrase) => {}
            // A vault that does not know the enrollment (another device's vault), or a slot
            // whose binding the vault refuses (altered; no attempt was counted): try the next.
            Err(e @ (Error::NotFound(_) | Error::Integrity(_))) if matches!(credentials, Credentials::Pin { .. }) => {
                if matches!(e, Error::Integrity(_)) {
                    kind_err.get_or_insert(e.at(loc()));
                }
            }
            // A wrong or destroyed PIN: stop, so that copies of the slot cannot spend more
            // attempts on the same wrong PIN.
            Err(e @ (Error::WrongPin { .. } | Error::PinDestroyed)) => return Err(e),
            // A tampered slot: remember, keep trying the others.
            Err(e) => {
                let e = if matches!(e.kind(), crate::ErrorKind::Integrity | crate::ErrorKind::Malformed) {
                    e.at(loc())
                } else {
                    e
                };
                kind_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = kind_err {
        return Err(e);
    }
    if tried == 0 {
        if let Credentials::DeviceKey = credentials {
            return Err(Error::NotFound(
                "this client's device keyslot is gone from the repository (removed?); open with another credential"
                    .into(),
            ));
        }
        if let Some(e) = slot_err {
            return Err(e);
        }
        if let Credentials::Pin { .. } = credentials {
            return Err(Error::NotFound("the repository has no PIN keyslot".into()));
        }
    }
    Err(match credentials {
        Credentials::Passphrase(_) => Error::WrongPassphrase,
        Credentials::RecoveryCode(_) => Error::WrongRecoveryCode,
        Credentials::Pin { .. } => {
            Error::NotFound("no PIN keyslot of this repository is enrolled in this vault".into())
        }
        Credentials::DeviceKey => Error::Integrity("this client's device key does not open its keyslot".into()),
    })
}

/// Most Argon2 work (KiB × passes, summed over the slots tried) one open may spend: enough for
/// several slots at the maximum parameters (4 GiB × 10), not for dozens.
pub const MAX_KDF_WORK: u64 = 3 * 4 * 1024 * 1024 * 10;

fn kind_matches(slot: &Keyslot, credentials: &Credentials) -> bool {
    matches!(
        (&slot.kdf, credentials),
        (SlotKdf::Passphrase { .. }, Credentials::Passphrase(_))
            | (SlotKdf::RecoveryCode { .. }, Credentials::RecoveryCode(_))
            | (SlotKdf::Pin { .. }, Credentials::Pin { .. })
            | (SlotKdf::Device { .. }, Credentials::DeviceKey)
    )
}

/// Argon2 work of a slot in KiB × passes (0 for recovery codes).
fn kdf_cost(slot: &Keyslot) -> u64 {
    match &slot.kdf {
        SlotKdf::Passphrase { params, .. } | SlotKdf::Pin { params, .. } => {
            u64::from(params.m_kib) * u64::from(params.t)
        }
        SlotKdf::RecoveryCode { .. } | SlotKdf::Device { .. } => 0,
    }
}

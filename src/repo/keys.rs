//! Credentials and keyslots: open with a passphrase, a recovery code or a PIN (through a
//! [`PinVault`]); list, add, remove and rotate slots. None of this re-encrypts data: every slot
//! wraps the same master key.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto::{random_array, SecretKey};
use crate::error::{Error, Location, Result};
use crate::format::keyslot::{Argon2Params, Keyslot, SlotKdf, SlotMetadata};
use crate::format::recovery_code::RecoveryCode;
use crate::format::tombstone::TombstoneReason;
use crate::id::SlotId;
use crate::repo::Repository;
use crate::store::{FileKind, Store};
use crate::vault::PinVault;

/// Most keyslots tried when opening (each costs one KDF run).
pub const MAX_SLOTS_TRIED: usize = 32;

mod slots;
mod unlock;

pub(crate) use slots::{
    at_least_default, fingerprints_of_slots, load_slots, load_slots_any_repo, load_slots_each, slot_names, write_slot,
    NewCredential,
};
pub(crate) use unlock::{unlock, SlotFilter};

/// A passphrase or PIN, wiped from memory on drop and never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase, normalized to Unicode NFC (format-spec.md §2): phones and keyboards
    /// compose accented letters differently, and the same typed passphrase must give the same
    /// bytes everywhere.
    #[must_use]
    pub fn new(s: impl Into<String>) -> Passphrase {
        use unicode_normalization::UnicodeNormalization;
        let raw = Zeroizing::new(s.into());
        let mut nfc = Zeroizing::new(String::with_capacity(raw.len()));
        nfc.extend(raw.nfc());
        Passphrase(nfc)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase([redacted])")
    }
}

/// What opens a repository.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// A passphrase, tried against every passphrase keyslot.
    Passphrase(Passphrase),
    /// A recovery code, tried against every recovery-code keyslot.
    RecoveryCode(RecoveryCode),
    /// A PIN, proven to the vault that holds the PIN keyslot's secret.
    Pin {
        /// The PIN.
        pin: Passphrase,
        /// The vault.
        vault: Arc<dyn PinVault>,
    },
    /// The device key this client keeps for the repository's location (added with
    /// [`KeyManager::add_device_key`]): no key derivation, so daily opens are cheap.
    DeviceKey,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credentials::Passphrase(_) => "Credentials::Passphrase([redacted])",
            Credentials::RecoveryCode(_) => "Credentials::RecoveryCode([redacted])",
            Credentials::Pin { .. } => "Credentials::Pin([redacted])",
            Credentials::DeviceKey => "Credentials::DeviceKey",
        })
    }
}

impl Credentials {
    /// Credentials from a passphrase.
    #[must_use]
    pub fn passphrase(s: impl Into<String>) -> Credentials {
        Credentials::Passphrase(Passphrase::new(s))
    }

    /// Credentials from a typed recovery code.
    ///
    /// # Errors
    /// [`Error::RecoveryCodeInvalid`] when the code is mistyped.
    pub fn recovery_code(text: &str) -> Result<Credentials> {
        Ok(Credentials::RecoveryCode(RecoveryCode::parse(text)?))
    }

    /// Credentials from a PIN and its vault.
    #[must_use]
    pub fn pin(pin: impl Into<String>, vault: Arc<dyn PinVault>) -> Credentials {
        Credentials::Pin { pin: Passphrase::new(pin), vault }
    }
}

/// Checks that a new passphrase resists offline guessing: zxcvbn (Dropbox's estimator, which
/// knows common passwords, names, dates, keyboard patterns and substitutions) must score it
/// 3 or 4, i.e. estimate at least 10^10 guesses. With Argon2id at 256 MiB that is centuries of
/// one machine's time; "Summer2024!" scores 2.
///
/// # Errors
/// [`Error::InvalidArgument`] saying what is weak and how to do better.
pub fn check_passphrase_strength(p: &Passphrase) -> Result<()> {
    let estimate = zxcvbn::zxcvbn(p.as_str(), &["packvault", "packtool", "backup", "repository"]);
    if u8::from(estimate.score()) >= 3 {
        return Ok(());
    }
    let mut why = String::from("passphrase too weak: it could be guessed");
    if let Some(fb) = estimate.feedback() {
        if let Some(w) = fb.warning() {
            why.push_str(&format!(" ({w})"));
        }
        for s in fb.suggestions() {
            why.push_str(&format!("; {s}"));
        }
    }
    why.push_str("; a few random words are best");
    Err(Error::InvalidArgument(why))
}

/// Checks a new PIN: 4 to 16 digits.
///
/// # Errors
/// [`Error::InvalidArgument`].
pub fn check_pin(pin: &Passphrase) -> Result<()> {
    let s = pin.as_str();
    if !(4..=16).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidArgument("a PIN is 4 to 16 digits".into()));
    }
    Ok(())
}

/// A keyslot as listed: never any secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyslotInfo {
    /// Slot id (printed as 32 hex digits: the file name under `keys/`).
    pub id: SlotId,
    /// `passphrase`, `recovery-code`, `pin` or `device`.
    pub kind: &'static str,
    /// The label given when the slot was made.
    pub label: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    /// True for the slot this repository was opened with.
    pub in_use: bool,
    /// True for a slot that was removed (a tombstone names it, or this client removed it or saw
    /// it go) and is present again: the provider put it back. It opens nothing.
    pub revoked: bool,
}

/// The label listed for a slot whose sealed metadata does not open.
pub const UNREADABLE_LABEL: &str = "(unreadable)";

/// Lists, adds, removes and rotates keyslots. Get one with [`Repository::keys`].
pub struct KeyManager<'r> {
    repo: &'r Repository,
}

impl Repository {
    /// The keyslot manager.
    #[must_use]
    pub fn keys(&self) -> KeyManager<'_> {
        KeyManager { repo: self }
    }
}

impl KeyManager<'_> {
    fn store(&self) -> &dyn Store {
        self.repo.store.as_ref()
    }

    fn add(&self, cred: NewCredential<'_>, label: &str) -> Result<SlotId> {
        write_slot(self.store(), &self.repo.repo_id, &self.repo.master, cred, label)
    }

    /// Every keyslot of the repository, oldest first. Never shows a secret.
    ///
    /// # Errors
    /// Store errors.
    pub fn list(&self) -> Result<Vec<KeyslotInfo>> {
        let (slots, _) = load_slots(self.store(), &self.repo.repo_id)?;
        let mut out: Vec<KeyslotInfo> = slots
            .iter()
            .map(|s| (s, self.metadata(s)))
            .map(|(s, meta)| KeyslotInfo {
                id: SlotId::from_bytes(s.slot_id),
                kind: s.kdf.kind_name(),
                label: meta.label,
                created: meta.created,
                in_use: s.id_hex() == self.repo.opened_slot,
                revoked: self.repo.is_revoked_slot(&s.id_hex()),
            })
            .collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    /// A slot's label and creation time, sealed under the master key (format-spec.md §5.11);
    /// for a slot whose metadata does not open (changed, or made for another master key), the
    /// label `(unreadable)` and time 0 (`check` reports the slot).
    #[must_use]
    pub fn metadata(&self, slot: &Keyslot) -> SlotMetadata {
        slot.metadata(&self.repo.master).unwrap_or_else(|_| SlotMetadata { label: UNREADABLE_LABEL.into(), created: 0 })
    }

    /// Adds a passphrase slot.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a weak passphrase or bad parameters; store errors.
    pub fn add_passphrase(&self, passphrase: &Passphrase, params: Argon2Params, label: &str) -> Result<SlotId> {
        self.add(NewCredential::Passphrase(passphrase, params), label)
    }

    /// Adds a recovery-code slot with a fresh code, returned once: show it to the user and
    /// forget it.
    ///
    /// # Errors
    /// Store errors.
    pub fn add_recovery_code(&self, label: &str) -> Result<(SlotId, RecoveryCode)> {
        let code = RecoveryCode::generate()?;
        let id = self.add(NewCredential::RecoveryCode(&code), label)?;
        Ok((id, code))
    }

    /// Adds a PIN slot enrolled in `vault`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a PIN that is not 4–16 digits; vault and store errors.
    pub fn add_pin(&self, pin: &Passphrase, vault: &dyn PinVault, params: Argon2Params, label: &str) -> Result<SlotId> {
        self.add(NewCredential::Pin(pin, vault, params), label)
    }

    /// The decoded slot `id` (public fields only: salts, parameters, label).
    ///
    /// # Errors
    /// [`Error::NotFound`] when no readable slot has this id; store errors.
    pub fn slot(&self, id: &SlotId) -> Result<Keyslot> {
        self.find(&id.to_string())
    }

    /// The slot whose id is `spec` or starts with it (as a user types it): the one place a
    /// prefix becomes a [`SlotId`], which the other methods take.
    ///
    /// # Errors
    /// [`Error::NotFound`], or [`Error::InvalidArgument`] when the prefix is ambiguous.
    pub fn resolve(&self, spec: &str) -> Result<KeyslotInfo> {
        let slot = self.find(spec)?;
        let full = SlotId::from_bytes(slot.slot_id);
        self.list()?.into_iter().find(|k| k.id == full).ok_or_else(|| Error::NotFound(format!("keyslot {spec}")))
    }

    /// The slot whose id is `id` or starts with it.
    fn find(&self, id: &str) -> Result<Keyslot> {
        if id.is_empty() {
            return Err(Error::InvalidArgument("an empty keyslot id".into()));
        }
        let (slots, _) = load_slots(self.store(), &self.repo.repo_id)?;
        let matches: Vec<Keyslot> =
            slots.into_iter().filter(|s| s.id_hex().starts_with(&id.to_ascii_lowercase())).collect();
        match matches.len() {
            0 => Err(Error::NotFound(format!("keyslot {id}"))),
            1 => Ok(matches.into_iter().next().expect("one match")),
            n => Err(Error::InvalidArgument(format!("keyslot prefix {id} matches {n} slots"))),
        }
    }

    /// Removes slot `id`. Refuses to remove the last slot: the data would be lost for good.
    ///
    /// First a tombstone naming the slot is written (so that every client that opens the
    /// repository later refuses the slot if the provider puts it back), then this client
    /// remembers it as removed, then the file goes. What removal cannot do: whoever held the
    /// slot's credential and a copy of the slot file (or the master key) can still unwrap the
    /// master key and read everything written before and after; only a re-encryption into a
    /// new key domain takes that away.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`] for the last slot; store errors.
    pub fn remove(&self, id: &SlotId) -> Result<()> {
        let slot = self.slot(id)?;
        let (slots, _) = load_slots(self.store(), &self.repo.repo_id)?;
        if slots.len() <= 1 {
            return Err(Error::InvalidArgument(format!(
                "keyslot {} is the last one: removing it would make the repository unreadable; add another first",
                slot.id_hex()
            )));
        }
        self.retire(&slot)
    }

    /// Tombstone, pin, delete: the removal of a slot every replacement ends with.
    fn retire(&self, slot: &Keyslot) -> Result<()> {
        self.repo.write_tombstone(TombstoneReason::KeyRemoved, Vec::new(), vec![slot.slot_id])?;
        self.repo.pin_slot_removed(&slot.id_hex())?;
        match self.store().delete(FileKind::Key, &slot.id_hex()) {
            Ok(()) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds a device keyslot: a random 256-bit secret that this client keeps in its state
    /// folder (0600), used instead of the passphrase on later opens of this repository on this
    /// device ([`Credentials::DeviceKey`]). Listed and removable like any slot.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when this client keeps no state ([`ClientState::Disabled`](crate::ClientState::Disabled));
    /// store and I/O errors.
    pub fn add_device_key(&self, label: &str) -> Result<SlotId> {
        if !self.repo.has_pin() {
            return Err(Error::InvalidArgument(
                "a device key lives in this client's state folder, and this repository was opened without one".into(),
            ));
        }
        let secret = SecretKey::from_bytes(random_array()?);
        let id = self.add(NewCredential::Device(&secret), label)?;
        let replaced = self.repo.pin_device_key(&id.to_string(), secret)?;
        if let Some(old) = replaced {
            // One device key per client and repository: the one it replaces goes.
            if let Ok(slot) = self.find(&old) {
                self.retire(&slot)?;
            }
        }
        Ok(id)
    }

    /// Replaces a passphrase slot by one for `new` (same label); returns the new slot's id.
    /// The new slot is written before the old one is removed (with a tombstone, as
    /// [`KeyManager::remove`]).
    ///
    /// Without `params`, the new slot reuses the old slot's Argon2 parameters, but only after
    /// the old slot's check tag verified under the master key (a provider cannot lower them),
    /// and never below [`Argon2Params::default`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the slot is not a passphrase slot or `new` is weak;
    /// [`Error::Integrity`] when the old slot was altered.
    pub fn change_passphrase(&self, id: &SlotId, new: &Passphrase, params: Option<Argon2Params>) -> Result<SlotId> {
        let slot = self.slot(id)?;
        let SlotKdf::Passphrase { params: old, .. } = slot.kdf else {
            return Err(Error::InvalidArgument(format!(
                "keyslot {} is a {} slot, not a passphrase slot",
                slot.id_hex(),
                slot.kdf.kind_name()
            )));
        };
        slot.verify(&self.repo.master).map_err(|e| e.at(Location::RepoFile(FileKind::Key.path(&slot.id_hex()))))?;
        let params = params.unwrap_or_else(|| at_least_default(old));
        let new_id = self.add(NewCredential::Passphrase(new, params), &self.metadata(&slot).label)?;
        self.retire(&slot)?;
        Ok(new_id)
    }

    /// Replaces a PIN slot by one for `new_pin`, enrolled in `vault`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the slot is not a PIN slot or the PIN is malformed.
    pub fn change_pin(&self, id: &SlotId, new_pin: &Passphrase, vault: &dyn PinVault) -> Result<SlotId> {
        let slot = self.slot(id)?;
        let SlotKdf::Pin { params, vault_id, .. } = slot.kdf else {
            return Err(Error::InvalidArgument(format!(
                "keyslot {} is a {} slot, not a PIN slot",
                slot.id_hex(),
                slot.kdf.kind_name()
            )));
        };
        slot.verify(&self.repo.master).map_err(|e| e.at(Location::RepoFile(FileKind::Key.path(&slot.id_hex()))))?;
        let new_id =
            self.add(NewCredential::Pin(new_pin, vault, at_least_default(params)), &self.metadata(&slot).label)?;
        self.retire(&slot)?;
        // The old enrollment may live in another vault; forgetting it is best effort.
        let _ = vault.remove(&vault_id);
        Ok(new_id)
    }

    /// Issues a new recovery code and revokes the old one (slot `id`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the slot is not a recovery-code slot.
    pub fn rotate_recovery_code(&self, id: &SlotId) -> Result<(SlotId, RecoveryCode)> {
        let slot = self.slot(id)?;
        if !matches!(slot.kdf, SlotKdf::RecoveryCode { .. }) {
            return Err(Error::InvalidArgument(format!(
                "keyslot {} is a {} slot, not a recovery-code slot",
                slot.id_hex(),
                slot.kdf.kind_name()
            )));
        }
        let (new_id, code) = self.add_recovery_code(&self.metadata(&slot).label)?;
        self.retire(&slot)?;
        Ok((new_id, code))
    }
}

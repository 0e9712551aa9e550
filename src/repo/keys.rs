//! Credentials and keyslots: open with a passphrase, a recovery code or a PIN (through a
//! [`PinVault`]); list, add, remove and rotate slots. None of this re-encrypts data: every slot
//! wraps the same master key.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto::{random_array, MasterKey, SecretKey};
use crate::error::{Error, Location, Result};
use crate::format::keyslot::{self, Argon2Params, Keyslot, NewSlot, SlotKdf};
use crate::format::recovery_code::RecoveryCode;
use crate::format::tombstone::TombstoneReason;
use crate::id::SlotId;
use crate::repo::{now_secs, Repository};
use crate::store::{FileKind, Store};
use crate::vault::PinVault;

/// Most keyslots tried when opening (each costs one KDF run).
pub const MAX_SLOTS_TRIED: usize = 32;

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
fn split_slots(each: Vec<(String, Result<Keyslot>)>) -> (Vec<Keyslot>, Option<Error>) {
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
            .map(|s| KeyslotInfo {
                id: SlotId::from_bytes(s.slot_id),
                kind: s.kdf.kind_name(),
                label: s.label.clone(),
                created: s.created,
                in_use: s.id_hex() == self.repo.opened_slot,
                revoked: self.repo.is_revoked_slot(&s.id_hex()),
            })
            .collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
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
        let new_id = self.add(NewCredential::Passphrase(new, params), &slot.label)?;
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
        let new_id = self.add(NewCredential::Pin(new_pin, vault, at_least_default(params)), &slot.label)?;
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
        let (new_id, code) = self.add_recovery_code(&slot.label)?;
        self.retire(&slot)?;
        Ok((new_id, code))
    }
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

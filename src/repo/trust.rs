//! Pins: what a client remembers about the repository at each location, so that a provider
//! cannot swap, fork, trim or roll it back, nor bring back a removed keyslot, unnoticed
//! (format-spec.md §5.16, §9).
//!
//! First contact is trust on first use, as SSH does for host keys: `init` and the first open
//! pin the location to the repository id and the master key's id, and show a short
//! [fingerprint] that a new device can compare ([`OpenOptions::expect_fingerprint`]). From
//! then on a repository whose id differs from the pin is refused before any key derivation
//! runs, and only keyslots that wrap the pinned master key (their plaintext master id says
//! so) are ever tried, the slot this client opened with last first.
//!
//! The pin file is `<state dir>/pins/<location hash>.pin`, 0600 in a 0700 folder, rewritten
//! through a temporary file and a rename. Text, one fact per line:
//!
//! ```text
//! packvault-pin 1
//! repository <32 hex>              repository id
//! master <64 hex>                  master key id
//! slot <32 hex>                    slot opened with last (optional)
//! device <32 hex> <64 hex>         this device's keyslot and its secret (optional)
//! newest <sequence> <64 hex>       newest snapshot seen (optional)
//! seen <sequence> <64 hex>         every snapshot seen and not known to be forgotten
//! forgotten <sequence> <64 hex>    every snapshot a tombstone this client saw names
//! known-slot <32 hex>              keyslots present at the last open
//! revoked-slot <32 hex>            keyslots removed (by this client, or seen gone)
//! rotating <32 hex> <64 hex>       repository and master a key rotation of this client
//!                                  moves to (optional; see `repo::rotate`)
//! ```
//!
//! [`OpenOptions::expect_fingerprint`]: crate::OpenOptions::expect_fingerprint

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto::{contexts, SecretKey};
use crate::error::{Error, Location, Result, ResultExt};
use crate::id::{hex_encode, Id, RepoId, SlotId, SnapshotId};
use crate::repo::history::{self, HistoryReport};
use crate::repo::Repository;

/// Where a client keeps what it trusts about repositories: pins, the history it has seen,
/// removed keyslots, device keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientState {
    /// The platform's state folder: `$XDG_STATE_HOME/packvault`, else
    /// `$HOME/.local/state/packvault`. Opening fails when neither variable is set: choose a
    /// folder then.
    #[default]
    Platform,
    /// This folder (an app's private storage on a phone, for example).
    Dir(PathBuf),
    /// No pins and no history: every open is a first contact, and a provider can swap, fork,
    /// trim or roll back the repository unnoticed. An explicit opt-out, for tools that inspect
    /// repositories of unknown origin.
    Disabled,
}

impl ClientState {
    /// The state folder, or `None` when disabled.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for [`ClientState::Platform`] when neither
    /// `XDG_STATE_HOME` nor `HOME` is set.
    pub fn dir(&self) -> Result<Option<PathBuf>> {
        match self {
            ClientState::Disabled => Ok(None),
            ClientState::Dir(d) => Ok(Some(d.clone())),
            ClientState::Platform => std::env::var_os("XDG_STATE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/state")))
                .map(|d| Some(d.join("packvault")))
                .ok_or_else(|| {
                    Error::InvalidArgument(
                        "no folder for this client's pins: neither XDG_STATE_HOME nor HOME is set; choose a state folder".into(),
                    )
                }),
        }
    }
}

/// The repository fingerprint: `DERIVE("packvault 2026-12-01 v1 repository fingerprint",
/// repository id ‖ master id)`, its first 16 bytes as 8 groups of 4 hex digits. Public: it
/// names the repository and its key domain, and reveals neither.
#[must_use]
pub fn fingerprint(repo_id: &RepoId, master_id: &Id) -> String {
    fingerprint_of(repo_id.as_bytes(), master_id)
}

/// [`fingerprint`] of the raw ids, as the config and keyslots hold them.
pub(crate) fn fingerprint_of(repo_id: &[u8; 16], master_id: &Id) -> String {
    let mut material = [0u8; 48];
    material[..16].copy_from_slice(repo_id);
    material[16..].copy_from_slice(&master_id.0);
    let d = blake3::derive_key(contexts::FINGERPRINT, &material);
    let hex = hex_encode(&d[..16]);
    hex.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>().join("-")
}

/// Compares fingerprints as typed: case, spaces and dashes do not matter.
pub(crate) fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_lowercase()).collect::<String>();
    let (a, b) = (norm(a), norm(b));
    !a.is_empty() && a == b
}

/// What a client remembers about one repository location.
#[derive(Clone, Default)]
pub(crate) struct Pin {
    pub repo_id: [u8; 16],
    pub master_id: Id,
    pub slot: Option<String>,
    pub device: Option<(String, SecretKey)>,
    pub newest: Option<(u64, SnapshotId)>,
    pub seen: BTreeMap<SnapshotId, u64>,
    pub forgotten: BTreeMap<SnapshotId, u64>,
    pub known_slots: BTreeSet<String>,
    pub revoked_slots: BTreeSet<String>,
    /// The repository id and master id a key rotation started by this client switches to:
    /// trusted in place of `repo_id` and `master_id` once the location shows them.
    pub rotating: Option<([u8; 16], Id)>,
}

impl Pin {
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.repo_id, &self.master_id)
    }

    fn encode(&self) -> Zeroizing<String> {
        // Sized up front so the text holding the device secret is never reallocated (and its
        // old buffer left unwiped).
        let lines = 8 + self.seen.len() + self.forgotten.len() + self.known_slots.len() + self.revoked_slots.len();
        let mut s = Zeroizing::new(String::with_capacity(200 * lines));
        let _ = writeln!(s, "packvault-pin 1");
        let _ = writeln!(s, "repository {}", hex_encode(&self.repo_id));
        let _ = writeln!(s, "master {}", self.master_id);
        if let Some(slot) = &self.slot {
            let _ = writeln!(s, "slot {slot}");
        }
        if let Some((slot, secret)) = &self.device {
            let _ = writeln!(s, "device {slot} {}", Zeroizing::new(hex_encode(secret.bytes())).as_str());
        }
        if let Some((seq, id)) = &self.newest {
            let _ = writeln!(s, "newest {seq} {id}");
        }
        for (id, seq) in &self.seen {
            let _ = writeln!(s, "seen {seq} {id}");
        }
        for (id, seq) in &self.forgotten {
            let _ = writeln!(s, "forgotten {seq} {id}");
        }
        for k in &self.known_slots {
            let _ = writeln!(s, "known-slot {k}");
        }
        for k in &self.revoked_slots {
            let _ = writeln!(s, "revoked-slot {k}");
        }
        if let Some((repo, master)) = &self.rotating {
            let _ = writeln!(s, "rotating {} {master}", hex_encode(repo));
        }
        s
    }

    fn decode(text: &str) -> std::result::Result<Pin, String> {
        let mut lines = text.lines();
        if lines.next() != Some("packvault-pin 1") {
            return Err("it does not start with `packvault-pin 1`".into());
        }
        let slot_id = |v: &str| -> std::result::Result<String, String> {
            if v.len() == 32 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                Ok(v.to_string())
            } else {
                Err(format!("{v:?} is not a keyslot id"))
            }
        };
        let snap = |seq: &str, id: &str| -> std::result::Result<(u64, SnapshotId), String> {
            let seq = seq.parse().map_err(|_| format!("{seq:?} is not a sequence number"))?;
            let id = Id::from_hex(id).map_err(|_| format!("{id:?} is not a snapshot id"))?;
            Ok((seq, SnapshotId(id)))
        };
        let mut pin = Pin::default();
        let (mut repo, mut master) = (false, false);
        for (n, line) in lines.enumerate() {
            let words: Vec<&str> = line.split(' ').collect();
            let bad = |why: String| format!("line {}: {why}", n + 2);
            match words.as_slice() {
                ["repository", v] => {
                    let id = crate::id::hex_decode(v).and_then(|b| <[u8; 16]>::try_from(b).ok());
                    pin.repo_id = id.ok_or_else(|| bad(format!("{v:?} is not a repository id")))?;
                    repo = true;
                }
                ["master", v] => {
                    pin.master_id = Id::from_hex(v).map_err(|_| bad(format!("{v:?} is not a master id")))?;
                    master = true;
                }
                ["slot", v] => pin.slot = Some(slot_id(v).map_err(bad)?),
                ["device", slot, secret] => {
                    let bytes = Zeroizing::new(crate::id::hex_decode(secret).unwrap_or_default());
                    let key: [u8; 32] =
                        bytes.as_slice().try_into().map_err(|_| bad("malformed device secret".into()))?;
                    pin.device = Some((slot_id(slot).map_err(bad)?, SecretKey::from_bytes(key)));
                }
                // Never echo a device line: it holds the secret.
                ["device", ..] => return Err(bad("malformed device line".into())),
                ["newest", seq, id] => pin.newest = Some(snap(seq, id).map_err(bad)?),
                ["seen", seq, id] => {
                    let (seq, id) = snap(seq, id).map_err(bad)?;
                    pin.seen.insert(id, seq);
                }
                ["forgotten", seq, id] => {
                    let (seq, id) = snap(seq, id).map_err(bad)?;
                    pin.forgotten.insert(id, seq);
                }
                ["known-slot", v] => {
                    pin.known_slots.insert(slot_id(v).map_err(bad)?);
                }
                ["revoked-slot", v] => {
                    pin.revoked_slots.insert(slot_id(v).map_err(bad)?);
                }
                ["rotating", repo, master] => {
                    let r = crate::id::hex_decode(repo).and_then(|b| <[u8; 16]>::try_from(b).ok());
                    let r = r.ok_or_else(|| bad(format!("{repo:?} is not a repository id")))?;
                    let m = Id::from_hex(master).map_err(|_| bad(format!("{master:?} is not a master id")))?;
                    pin.rotating = Some((r, m));
                }
                _ => return Err(bad(format!("unknown line {:?}", line.chars().take(40).collect::<String>()))),
            }
        }
        if !(repo && master) {
            return Err("the repository or master line is missing".into());
        }
        Ok(pin)
    }
}

/// A pin's place on disk: the state folder and the location it stands for.
#[derive(Debug, Clone)]
pub(crate) struct PinFile {
    path: PathBuf,
}

impl PinFile {
    /// The pin file of `location` under the state folder `state`, or `None` when disabled.
    pub fn for_location(state: &ClientState, location: &str) -> Result<Option<PinFile>> {
        let Some(dir) = state.dir()? else { return Ok(None) };
        let h = blake3::derive_key("packvault 2026-12-01 v1 pin file name", location.as_bytes());
        Ok(Some(PinFile { path: dir.join("pins").join(format!("{}.pin", hex_encode(&h[..16]))) }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pin, or `None` before first contact.
    pub fn load(&self) -> Result<Option<Pin>> {
        let text = match fs::read(&self.path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io(e).at(Location::Path(self.path.clone()))),
        };
        let text = std::str::from_utf8(&text).map_err(|_| "it is not UTF-8".to_string());
        text.and_then(Pin::decode).map(Some).map_err(|why| {
            Error::malformed("client pin file", None, format!("{why}; remove it to make the next open a first contact"))
                .at(Location::Path(self.path.clone()))
        })
    }

    /// Writes the pin: 0600, in 0700 folders, durable, atomic.
    pub fn save(&self, pin: &Pin) -> Result<()> {
        let loc = || Location::Path(self.path.clone());
        let dir = self.path.parent().expect("a pin file has a folder");
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).at(loc)?;
        for d in [dir, dir.parent().unwrap_or(dir)] {
            // Folders made by an older version, or by hand, are closed to others too.
            if let Ok(md) = fs::metadata(d) {
                if md.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(d, fs::Permissions::from_mode(0o700)).at(loc)?;
                }
            }
        }
        // Several repositories of one process, or several processes, may save at once: each
        // writes its own temporary file; the last rename wins.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.path.with_extension(format!("tmp{}-{n}", std::process::id()));
        let written = (|| {
            let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(pin.encode().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            // The temporary file may hold the device secret: never leave it behind.
            let _ = fs::remove_file(&tmp);
            return Err(Error::Io(e).at(loc()));
        }
        fs::File::open(dir).and_then(|d| d.sync_all()).at(loc)
    }

    /// Forgets the pin: the next open is a first contact.
    pub fn remove(&self) -> Result<bool> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Io(e).at(Location::Path(self.path.clone()))),
        }
    }
}

/// Forgets what this client pinned for the repository at `location` (see
/// [`Store::location`](crate::Store::location)): after the user replaced the repository there
/// on purpose. The next open is a first contact. True when there was a pin.
///
/// # Errors
/// As [`ClientState::dir`]; I/O errors.
pub fn forget_pin(state: &ClientState, location: &str) -> Result<bool> {
    match PinFile::for_location(state, location)? {
        Some(f) => f.remove(),
        None => Ok(false),
    }
}

/// The fingerprint pinned for `location`, if any.
///
/// # Errors
/// As [`ClientState::dir`]; a damaged pin file.
pub fn pinned_fingerprint(state: &ClientState, location: &str) -> Result<Option<String>> {
    match PinFile::for_location(state, location)? {
        Some(f) => Ok(f.load()?.map(|p| p.fingerprint())),
        None => Ok(None),
    }
}

/// True when this client holds a device key for the repository at `location`.
///
/// # Errors
/// As [`pinned_fingerprint`].
pub fn has_device_key(state: &ClientState, location: &str) -> Result<bool> {
    match PinFile::for_location(state, location)? {
        Some(f) => Ok(f.load()?.is_some_and(|p| p.device.is_some())),
        None => Ok(false),
    }
}

impl Repository {
    /// Pins on first contact, checks the history and the keyslots against the pin, and saves
    /// what this open saw (called once by `open`).
    pub(crate) fn establish_trust(&self, allow_rollback: bool) -> Result<HistoryReport> {
        let master_id = self.master.id();
        let mut pin = self.pin.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The pin as loaded: an open that learns nothing new writes nothing (read-only
        // commands stay read-only locally, and no open pays an fsync it does not need).
        let before = pin.encode();
        // The key rotation this client started has switched the location to the new key
        // domain: the pin moves to it, as at a first contact (nothing of the old domain's
        // history, slots or device key applies to the new one).
        let followed =
            !self.first_contact && pin.repo_id != self.repo_id && pin.rotating == Some((self.repo_id, master_id));
        if followed {
            *pin = Pin { repo_id: self.repo_id, master_id, ..Pin::default() };
        }
        // Snapshots a tombstone this client saw named stay forgotten even if the provider
        // deletes the tombstone (and keeps or brings back the snapshot file).
        let mut missing_tombstones = Vec::new();
        if !self.first_contact && !followed {
            let mut t = self.tombstones.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (id, seq) in &pin.forgotten {
                if !t.snapshots.contains_key(id) {
                    missing_tombstones.push(*id);
                    t.snapshots.insert(*id, *seq);
                }
            }
        }
        let shown = self.shown_snapshots()?;
        let tombs = self.tombstones.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.first_contact {
            *pin = Pin { repo_id: self.repo_id, master_id, ..Pin::default() };
        } else if pin.master_id != master_id || pin.repo_id != self.repo_id {
            // (A pin that followed a rotation above holds the new ids already.)
            return Err(Error::RepositoryReplaced {
                location: self.store.describe(),
                pinned: pin.fingerprint(),
                found: fingerprint_of(&self.repo_id, &master_id),
            });
        }
        let mut report = history::verify(
            &shown,
            &tombs,
            &history::Seen { newest: pin.newest, snapshots: &pin.seen },
            allow_rollback,
        )?;
        // Keyslots: the tombstoned ones (and the ones this client removed itself) are removed
        // for good; any of them present again is reported (and never opens). A slot merely
        // missing from one listing is not: a provider (or a flaky listing) hiding the
        // passphrase slot once must not lock this client out of its own repository.
        let present: BTreeSet<String> = crate::repo::keys::slot_names(self.store.as_ref())?.into_iter().collect();
        pin.revoked_slots.extend(tombs.keyslots.iter().cloned());
        // Names from the listing are 32 hex digits (`slot_names`), so every one parses.
        report.reappeared_keyslots =
            present.intersection(&pin.revoked_slots).filter_map(|name| name.parse::<SlotId>().ok()).collect();
        pin.known_slots = present.difference(&pin.revoked_slots).cloned().collect();
        if !self.opened_slot.is_empty() {
            pin.slot = Some(self.opened_slot.clone());
        }
        if pin.device.as_ref().is_some_and(|(slot, _)| pin.revoked_slots.contains(slot)) {
            pin.device = None;
        }
        report.missing_tombstones = missing_tombstones;
        // History: everything readable now is seen; what went on purpose is dropped (and
        // remembered as forgotten); what vanished stays (and is reported again) until a
        // rollback is allowed.
        pin.forgotten.extend(tombs.snapshots.iter().map(|(id, seq)| (*id, *seq)));
        pin.seen.retain(|id, _| !tombs.snapshots.contains_key(id));
        if allow_rollback {
            pin.seen.retain(|id, _| shown.listed.contains(id));
        }
        for (id, (seq, _)) in &shown.readable {
            if !tombs.snapshots.contains_key(id) {
                pin.seen.insert(*id, *seq);
            }
        }
        let kept = pin.newest.filter(|(_, id)| !allow_rollback && !tombs.snapshots.contains_key(id));
        pin.newest = kept.max(shown.newest().filter(|(_, id)| !tombs.snapshots.contains_key(id)));
        if let Some(f) = self.pin_file.as_ref().filter(|_| *pin.encode() != *before) {
            f.save(&pin)?;
        }
        Ok(report)
    }

    /// The repository's fingerprint (see [`fingerprint`]).
    #[must_use]
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.repo_id, &self.master.id())
    }

    /// True when this open was the first contact with the repository at this location: it
    /// was pinned now (trust on first use). Show the user the [`fingerprint`](Self::fingerprint).
    #[must_use]
    pub fn first_contact(&self) -> bool {
        self.first_contact && self.pin_file.is_some()
    }

    /// Where this client's pin for the repository lives, if it keeps one.
    #[must_use]
    pub fn pin_path(&self) -> Option<&Path> {
        self.pin_file.as_ref().map(PinFile::path)
    }

    pub(crate) fn has_pin(&self) -> bool {
        self.pin_file.is_some()
    }

    /// Applies `f` to the pin as it is on disk now (another process of this client may have
    /// added to it since this one opened), and saves it.
    fn update_pin(&self, f: impl FnOnce(&mut Pin)) -> Result<()> {
        let mut pin = self.pin.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(file) = &self.pin_file {
            if let Some(on_disk) = file.load()? {
                if on_disk.repo_id == pin.repo_id && on_disk.master_id == pin.master_id {
                    *pin = on_disk;
                }
            }
        }
        f(&mut pin);
        match &self.pin_file {
            Some(file) => file.save(&pin),
            None => Ok(()),
        }
    }

    /// Remembers that a key rotation of this client moves the location to `repo_id` under
    /// the master `master_id` (see [`Pin::rotating`]).
    pub(crate) fn pin_rotating(&self, repo_id: [u8; 16], master_id: Id) -> Result<()> {
        self.update_pin(|pin| pin.rotating = Some((repo_id, master_id)))
    }

    /// Remembers a snapshot this client wrote or saw.
    pub(crate) fn record_seen(&self, sequence: u64, id: SnapshotId) -> Result<()> {
        self.update_pin(|pin| {
            pin.seen.insert(id, sequence);
            pin.newest = pin.newest.max(Some((sequence, id)));
        })
    }

    /// Forgets snapshots this client removed on purpose (after their tombstone was written).
    pub(crate) fn forget_seen(&self, ids: &[SnapshotId], newest_now: Option<(u64, SnapshotId)>) -> Result<()> {
        let sequences: Vec<u64> = {
            let t = self.tombstones.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            ids.iter().map(|id| t.snapshots.get(id).copied().unwrap_or(0)).collect()
        };
        self.update_pin(|pin| {
            for (id, seq) in ids.iter().zip(sequences) {
                pin.seen.remove(id);
                pin.forgotten.insert(*id, seq);
            }
            if pin.newest.is_some_and(|(_, id)| ids.contains(&id)) {
                pin.newest = newest_now;
            }
        })
    }

    /// Remembers a keyslot as removed.
    pub(crate) fn pin_slot_removed(&self, slot: &str) -> Result<()> {
        self.update_pin(|pin| {
            pin.known_slots.remove(slot);
            pin.revoked_slots.insert(slot.to_string());
            if pin.device.as_ref().is_some_and(|(s, _)| s == slot) {
                pin.device = None;
            }
        })
    }

    /// Keeps this device's key; returns the slot of the device key it replaces.
    pub(crate) fn pin_device_key(&self, slot: &str, secret: SecretKey) -> Result<Option<String>> {
        let mut old = None;
        self.update_pin(|pin| {
            old = pin.device.replace((slot.to_string(), secret)).map(|(s, _)| s);
            pin.known_slots.insert(slot.to_string());
        })?;
        Ok(old)
    }

    /// True for a keyslot this client knows as removed.
    pub(crate) fn is_revoked_slot(&self, slot: &str) -> bool {
        self.pin.lock().unwrap_or_else(std::sync::PoisonError::into_inner).revoked_slots.contains(slot)
            || self.tombstoned_keyslots().contains(slot)
    }

    /// The head of the history a new snapshot follows: the largest (sequence, id) among the
    /// snapshots listed (forgotten ones too), the ones tombstones name, and the newest this
    /// client has seen. Sequences never repeat, so a snapshot removed by someone without the
    /// key cannot be replaced by a later one at its sequence unnoticed.
    pub(crate) fn history_head(&self) -> Result<Option<(u64, SnapshotId)>> {
        let listed = self.snapshots_with_errors_unfiltered()?.0.into_iter().map(|(id, rec)| (rec.sequence, id)).max();
        let forgotten = self
            .tombstones
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .snapshots
            .iter()
            .map(|(id, seq)| (*seq, *id))
            .max();
        let seen = self.pin.lock().unwrap_or_else(std::sync::PoisonError::into_inner).newest;
        Ok(listed.max(forgotten).max(seen))
    }

    /// The readable snapshot with the largest sequence number (ties: the largest id), of the
    /// ones not forgotten. Damaged snapshot files are skipped (`check` reports them).
    pub(crate) fn newest_snapshot(&self) -> Result<Option<(u64, SnapshotId)>> {
        Ok(self.snapshots()?.into_iter().map(|(id, rec)| (rec.sequence, id)).max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_file_round_trip_and_strict_parsing() {
        let mut pin = Pin { repo_id: [7; 16], master_id: Id([9; 32]), ..Pin::default() };
        pin.slot = Some("ab".repeat(16));
        pin.device = Some(("cd".repeat(16), SecretKey::from_bytes([5; 32])));
        pin.newest = Some((4, SnapshotId(Id([4; 32]))));
        pin.seen.insert(SnapshotId(Id([3; 32])), 3);
        pin.known_slots.insert("ab".repeat(16));
        pin.revoked_slots.insert("ef".repeat(16));
        pin.rotating = Some(([8; 16], Id([6; 32])));
        let text = pin.encode();
        let back = Pin::decode(&text).unwrap();
        assert_eq!(back.encode().as_str(), text.as_str());
        assert!(Pin::decode("packvault-pin 1\nrepository 00\n").is_err());
        assert!(Pin::decode(&format!("{}bogus line\n", text.as_str())).is_err());
        assert!(Pin::decode("packvault-pin 2\n").is_err());
    }

    #[test]
    fn fingerprints_compare_as_typed() {
        let f = fingerprint(&RepoId::from_bytes([1; 16]), &Id([2; 32]));
        assert_eq!(f.len(), 39, "{f}");
        assert_eq!(f, fingerprint_of(&[1; 16], &Id([2; 32])));
        assert!(same_fingerprint(&f, &f.to_uppercase().replace('-', " ")));
        assert!(!same_fingerprint(&f, &fingerprint_of(&[1; 16], &Id([3; 32]))));
        assert!(!same_fingerprint("", ""));
    }
}

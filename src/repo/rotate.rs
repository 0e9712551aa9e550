//! Key rotation ([`Repository::rotate_master`]): everything moved into a fresh key domain at
//! the same location, then the old domain retired. Removing a keyslot cannot take the master key
//! from someone who already unwrapped it (a leaked recovery code, a stolen device); only data
//! sealed under a master key they never saw is out of their reach.
//!
//! # Design (format-spec.md §8, "Key rotation")
//!
//! The new domain is a new repository in the same store: a fresh master key *and* a fresh
//! repository id, so that every file of one domain is "another repository's" for the other
//! (keyslots and tombstones name their repository id; index files, snapshots and packs do not
//! decrypt under the other key). Packs, index files, snapshots and tombstones are named by
//! their hashes and coexist; keyslots are named by random ids and coexist. The config is the
//! one file the two domains share a name for, and a store can only create and delete, not
//! replace atomically. So the new config is written first under a second name,
//! `keys/next-config`, and the **switch** is the deletion of `config`: a reader reads `config`,
//! and only when it is absent `keys/next-config` (format-spec.md §4). Version-1 readers that do
//! not know this rule never misread either state: before the switch they see the old
//! repository (the new domain's files are foreign or do not decrypt), at the switch they find no
//! config, and from the next step on they see the new repository, with a `config` of its own.
//! So the format version stays 1.
//!
//! Steps, each durable before the next, under an exclusive lock of the old domain (and from
//! step 6 one of the new):
//!
//! 1. a keyslot for the new master key and repository id, for the credentials given (so an
//!    interrupted rotation is resumed with the same credentials; nothing that the old master key
//!    can open ever holds the new one);
//! 2. this client's pin notes the new repository and master as `rotating` (trusted once the
//!    location shows them: this client made that key);
//! 3. every snapshot copied into the new domain ([`Repository::copy_to`] across domains:
//!    packs, flush, one index file, new snapshot records); a snapshot the new domain holds
//!    already (an earlier, interrupted attempt) is skipped;
//! 4. a tombstone of the new domain naming every snapshot of the old one (and those old
//!    tombstones named), so that no old snapshot file ever shows in the new domain as damaged;
//! 5. `keys/next-config`, the new config;
//! 6. **switch**: `config` is deleted. From here on the location is the new repository;
//! 7. this handle becomes the new repository's, and this client's pin follows it;
//! 8. `config` is written again, now the new one (same bytes as `keys/next-config`);
//! 9. the old domain's files go: the snapshot files the new tombstones name, the index files and
//!    tombstones that do not decrypt under the new key, the keyslots of any other repository id;
//! 10. `keys/next-config` is deleted.
//!
//! Interrupted before step 6, the old repository is whole and opens as before (with the old
//! credentials; the new slot belongs to another repository id and is never tried); calling
//! `rotate_master` again with the same credentials resumes into the same new domain (its slot
//! opens; the copy skips what is there); other credentials are refused, naming the interrupted
//! rotation (its snapshot and index files are sealed under a key only its credentials unwrap:
//! they could be neither carried over nor told from damaged files). Interrupted after
//! step 6, the new repository opens (with the credentials given to the rotation) and holds
//! every snapshot; calling `rotate_master` again finishes steps 8 to 10.
//!
//! # What changes for clients and credentials
//!
//! - The fingerprint changes (repository id and master id). This client's pin follows. Every
//!   other device sees [`Error::RepositoryReplaced`] until its user checks the new fingerprint
//!   and forgets the old pin (`forget_pin`, then open with
//!   [`OpenOptions::expect_fingerprint`](crate::OpenOptions::expect_fingerprint)). A hand-over
//!   record signed with the old master key would let devices follow on their own, but it proves
//!   nothing when the old key is what leaked (its holder could sign a hand-over to a key of
//!   their own): so devices re-trust deliberately.
//! - The new domain gets one keyslot, for the credentials given. Every other slot of the old
//!   domain (recovery codes, PINs, device keys, other passphrases) is removed with it and must
//!   be enrolled again ([`RotateReport::old_slots`] lists them).
//! - Chunks keep their boundaries (no re-chunking); the new domain's own backups cut with its
//!   new chunker key and dedup less against the copied data until it ages out.
//!
//! # What holders of the old key can still read
//!
//! Everything written before the rotation that they copied while they could, and the old
//! domain's packs until a `prune` of the new repository deletes them (the rotation leaves them:
//! they are packs no index names, whose directories do not decrypt). Nothing written by the
//! rotation or after it: new packs, index files, snapshots, tombstones and the config are
//! sealed under the new master key, and no file readable with the old key contains it.

use std::collections::HashSet;
use std::sync::Arc;

use crate::crypto::{random_array, KeySet, MasterKey};
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::config::{self, ConfigFile, Settings, NEXT_CONFIG};
use crate::format::keyslot::{Argon2Params, SlotKdf};
use crate::format::tombstone::{ForgottenSnapshot, TombstoneReason, MAX_TOMBSTONE_ENTRIES};
use crate::id::{Id, SlotId, SnapshotId};
use crate::progress::{CancelToken, Progress};
use crate::repo::copy::{CopyOptions, CopyReport, Locking};
use crate::repo::keys::{self, Credentials, KeyslotInfo, NewCredential};
use crate::repo::lock::LockKind;
use crate::repo::{history, trust, OpenOptions, Repository, TrustInputs};
use crate::store::FileKind;

/// How to rotate (see [`Repository::rotate_master`]).
#[derive(Debug, Clone, Default)]
pub struct RotateOptions {
    /// Argon2id parameters of the new passphrase or PIN slot. Default: those of the slot this
    /// repository was opened with (after its check tag verified), at least the defaults.
    pub kdf: Option<Argon2Params>,
    /// Label of the new slot. Default: that of the slot this repository was opened with.
    pub label: Option<String>,
    /// Receives the copy's progress.
    pub progress: Option<Arc<dyn Progress>>,
    /// Stops the rotation before the switch (see [`CopyOptions::cancel`]); the old repository
    /// stays as it was, and the next rotation with the same credentials resumes.
    pub cancel: Option<CancelToken>,
}

/// What the old domain's clean-up removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retired {
    /// Snapshot files of the old domain.
    pub snapshots: u64,
    /// Its index files.
    pub index_files: u64,
    /// Its tombstones.
    pub tombstones: u64,
    /// Its keyslots (and those of abandoned rotations).
    pub keyslots: u64,
    /// Its compression dictionaries (format-spec.md §5.17): the new domain's blobs were
    /// compressed again without them.
    pub dictionaries: u64,
}

/// What a key rotation did.
#[derive(Debug, Clone, Default)]
pub struct RotateReport {
    /// The fingerprint before (empty when only an interrupted rotation was finished).
    pub old_fingerprint: String,
    /// The fingerprint now: other devices must check it and trust it anew.
    pub new_fingerprint: String,
    /// True when an interrupted rotation was continued.
    pub resumed: bool,
    /// The copy into the new domain (none when only the clean-up after the switch ran).
    pub copy: Option<CopyReport>,
    /// The new domain's keyslot for the credentials given.
    pub new_slot: Option<SlotId>,
    /// The old domain's keyslots, removed: enroll again what is still wanted (recovery codes,
    /// PINs, device keys, other passphrases).
    pub old_slots: Vec<KeyslotInfo>,
    /// What of the old domain was removed.
    pub retired: Retired,
    /// Packs that no index of the new domain names (the old domain's): a prune deletes them.
    pub old_packs: u64,
}

impl Repository {
    /// Moves everything into a fresh key domain at the same location and retires the old one:
    /// the way to revoke a leaked master key, recovery code or device for good. See the
    /// module documentation of `repo::rotate` for the steps, what survives an interruption at
    /// each (the repository always opens and loses no snapshot), and what holders of the old
    /// key can still read.
    ///
    /// `credentials` open the new domain's only keyslot (the same passphrase as today, or a
    /// new one if the passphrase leaked too); every other slot must be enrolled again. On
    /// success this handle is the new repository's and this client's pin has moved to it;
    /// other devices see [`Error::RepositoryReplaced`] until they trust the new fingerprint.
    /// After an interruption, call it again (with the same credentials) to resume or finish.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for device-key credentials, a weak passphrase, a snapshot
    /// that does not read (a rotation would lose it: repair or forget it first), or an
    /// interrupted rotation whose keyslot `credentials` do not open (finish it with its own);
    /// [`Error::Locked`]; [`Error::Cancelled`] (before the switch only); copy and store errors.
    pub fn rotate_master(&mut self, credentials: &Credentials, options: RotateOptions) -> Result<RotateReport> {
        if matches!(credentials, Credentials::DeviceKey) {
            return Err(Error::InvalidArgument(
                "a key rotation needs a passphrase, recovery code or PIN for the new key's keyslot".into(),
            ));
        }
        if self.switched_unfinished()? {
            let _lock = self.lock(LockKind::Exclusive, "key rotate")?;
            let mut report = RotateReport { resumed: true, new_fingerprint: self.fingerprint(), ..Default::default() };
            self.finish_rotation(None, &mut report)?;
            return Ok(report);
        }
        let old_lock = self.lock(LockKind::Exclusive, "key rotate")?;
        let old_repo_id = self.repo_id;
        let mut report = RotateReport { old_fingerprint: self.fingerprint(), ..Default::default() };
        report.old_slots = self.keys().list()?;

        // 1. The new domain's key and slot: an interrupted rotation's, or new ones.
        let (master, repo_id, slot) = match self.pending_domain(credentials)? {
            Some(found) => {
                report.resumed = true;
                found
            }
            None => {
                let master = MasterKey::generate()?;
                let repo_id: [u8; 16] = random_array()?;
                let label = options.label.clone().unwrap_or_else(|| self.opened_slot_label());
                let params = match options.kdf {
                    Some(p) => p,
                    None => self.opened_slot_params()?,
                };
                let cred = match credentials {
                    Credentials::Passphrase(p) => NewCredential::Passphrase(p, params),
                    Credentials::RecoveryCode(c) => NewCredential::RecoveryCode(c),
                    Credentials::Pin { pin, vault } => NewCredential::Pin(pin, vault.as_ref(), params),
                    Credentials::DeviceKey => unreachable!("refused above"),
                };
                let slot = keys::write_slot(self.store.as_ref(), &repo_id, &master, cred, &label)?;
                (master, repo_id, slot.to_string())
            }
        };
        report.new_slot = slot.parse().ok();

        // 2. This client will trust the new domain once the location shows it.
        self.pin_rotating(repo_id, master.id())?;

        // 3. Everything copied into the new domain.
        let settings = Settings { master_id: master.id(), ..self.settings.clone() };
        let keys = KeySet::derive(&master);
        let cfg_bytes = self.next_config_bytes(&keys, &ConfigFile { repo_id, settings })?;
        let tombs = history::load_tombstones(self.store.as_ref(), keys.meta_key(), &repo_id)?;
        let new_options = OpenOptions { lock_wait: self.lock_wait, ..OpenOptions::default() };
        let inputs = TrustInputs { pin_file: None, pin: None, tombs };
        let mut domain = Repository::open_unlocked(
            self.store.clone(),
            &cfg_bytes,
            master.clone(),
            slot.clone(),
            &new_options,
            inputs,
        )?;
        let ids = self.snapshots_to_carry(&domain)?;
        let copy_options = CopyOptions { progress: options.progress.clone(), cancel: options.cancel.clone() };
        if !ids.is_empty() {
            report.copy = Some(self.copy_with(&mut domain, &ids, &copy_options, Locking::Held)?);
        }

        // 4. The old snapshots are forgotten in the new domain.
        let mut named: Vec<ForgottenSnapshot> = Vec::new();
        let mut seen = HashSet::new();
        let listed = self.snapshots_with_errors_unfiltered()?.0.into_iter().map(|(id, r)| (id, r.sequence));
        let tombstoned: Vec<(SnapshotId, u64)> = {
            let t = self.tombstones.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            t.snapshots.iter().map(|(id, seq)| (*id, *seq)).collect()
        };
        for (id, sequence) in listed.chain(tombstoned) {
            if seen.insert(id) && !domain.is_forgotten(&id) {
                named.push(ForgottenSnapshot { id, sequence });
            }
        }
        for part in named.chunks(MAX_TOMBSTONE_ENTRIES) {
            domain.write_tombstone(TombstoneReason::Forget, part.to_vec(), Vec::new())?;
        }

        // 5. The new config, under its second name.
        options.cancel.as_ref().map_or(Ok(()), CancelToken::check)?;
        let new_lock = domain.lock(LockKind::Exclusive, "key rotate")?;
        old_lock.ensure_held()?;
        self.put_next_config(&cfg_bytes)?;

        // 6. The switch.
        match self.store.delete(FileKind::Config, "config") {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.at(Location::RepoFile("config".into()))),
        }
        drop(domain);

        // 7. This handle is the new repository's; the pin follows (`rotating`).
        let pin = match &self.pin_file {
            Some(f) => f.load()?,
            None => None,
        };
        let tombs = history::load_tombstones(self.store.as_ref(), keys.meta_key(), &repo_id)?;
        let inputs = TrustInputs { pin_file: self.pin_file.clone(), pin, tombs };
        let options =
            OpenOptions { cache_dir: self.cache_dir.clone(), lock_wait: self.lock_wait, ..OpenOptions::default() };
        *self = Repository::open_unlocked(self.store.clone(), &cfg_bytes, master, slot, &options, inputs)?;
        report.new_fingerprint = self.fingerprint();

        // 8–10.
        self.finish_rotation(Some(old_repo_id), &mut report)?;
        drop(new_lock);
        drop(old_lock);
        Ok(report)
    }

    /// True when this is the new repository of a rotation that switched and did not finish:
    /// `keys/next-config` names this repository.
    fn switched_unfinished(&self) -> Result<bool> {
        match self.store.get(FileKind::Key, NEXT_CONFIG) {
            Ok(bytes) => Ok(config::decode_prefix(&bytes).is_ok_and(|id| id == self.repo_id)),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The key, repository id and slot of an interrupted rotation whose keyslot `credentials`
    /// open (keyslots of another repository id in this store), or none when there is no such
    /// keyslot at all.
    ///
    /// An interrupted rotation whose keyslot the credentials do not open is refused: its files
    /// (snapshots, index files under a key this client does not have) cannot be told from
    /// damaged ones, so a second rotation could neither carry nor safely delete them.
    fn pending_domain(&self, credentials: &Credentials) -> Result<Option<(MasterKey, [u8; 16], String)>> {
        let pending: Vec<crate::format::keyslot::Keyslot> =
            keys::load_slots_any_repo(self.store.as_ref())?.into_iter().filter(|s| s.repo_id != self.repo_id).collect();
        let others: HashSet<[u8; 16]> = pending.iter().map(|s| s.repo_id).collect();
        for repo_id in &others {
            match keys::unlock(self.store.as_ref(), repo_id, credentials, &keys::SlotFilter::default()) {
                Ok((master, slot)) => return Ok(Some((master, *repo_id, slot))),
                Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
                Err(_) => {}
            }
        }
        if pending.is_empty() {
            return Ok(None);
        }
        let fingerprints: std::collections::BTreeSet<String> =
            pending.iter().map(|s| trust::fingerprint_of(&s.repo_id, &s.master_id)).collect();
        let names: Vec<String> = pending.iter().map(|s| format!("keys/{}", s.id_hex())).collect();
        Err(Error::InvalidArgument(format!(
            "a key rotation to fingerprint {} was interrupted, and these credentials do not open its keyslot ({}): \
             run it again with the credentials it was started with",
            fingerprints.into_iter().collect::<Vec<_>>().join(", "),
            names.join(", ")
        )))
    }

    /// The Argon2 parameters of the slot this repository was opened with (its check tag
    /// verified first, so a provider cannot have lowered them), at least the defaults.
    fn opened_slot_params(&self) -> Result<Argon2Params> {
        let Ok(id) = self.opened_slot.parse::<SlotId>() else { return Ok(Argon2Params::default()) };
        let Ok(slot) = self.keys().slot(&id) else { return Ok(Argon2Params::default()) };
        match slot.kdf {
            SlotKdf::Passphrase { params, .. } | SlotKdf::Pin { params, .. } => {
                slot.verify(&self.master).at(|| Location::RepoFile(FileKind::Key.path(&slot.id_hex())))?;
                Ok(keys::at_least_default(params))
            }
            _ => Ok(Argon2Params::default()),
        }
    }

    fn opened_slot_label(&self) -> String {
        self.opened_slot
            .parse::<SlotId>()
            .ok()
            .and_then(|id| self.keys().slot(&id).ok())
            .map_or_else(|| "rotated".into(), |s| self.keys().metadata(&s).label)
    }

    /// The new config's bytes: those of a `keys/next-config` this rotation wrote before it was
    /// interrupted, or new ones.
    fn next_config_bytes(&self, keys: &KeySet, cfg: &ConfigFile) -> Result<Vec<u8>> {
        if let Ok(bytes) = self.store.get(FileKind::Key, NEXT_CONFIG) {
            if config::decode(keys.meta_key(), &bytes).is_ok_and(|c| c.repo_id == cfg.repo_id) {
                return Ok(bytes);
            }
        }
        config::encode(keys.meta_key(), cfg, &random_array()?)
    }

    /// Step 5: `keys/next-config` holds `bytes` (one left by another, abandoned rotation goes).
    fn put_next_config(&self, bytes: &[u8]) -> Result<()> {
        let loc = || Location::RepoFile(FileKind::Key.path(NEXT_CONFIG));
        match self.store.get(FileKind::Key, NEXT_CONFIG) {
            Ok(old) if old == bytes => return Ok(()),
            Ok(_) => self.store.delete(FileKind::Key, NEXT_CONFIG).at(loc)?,
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.at(loc())),
        }
        self.store.put(FileKind::Key, NEXT_CONFIG, bytes).at(loc)?;
        self.store.flush()
    }

    /// The old domain's snapshots to copy; refuses when one does not read (the rotation would
    /// lose it). Snapshot files of `domain` (an interrupted rotation's) are not the old
    /// domain's.
    fn snapshots_to_carry(&self, domain: &Repository) -> Result<Vec<SnapshotId>> {
        let (readable, damaged) = self.snapshots_with_errors()?;
        let theirs: HashSet<SnapshotId> =
            domain.snapshots_with_errors_unfiltered()?.0.into_iter().map(|(id, _)| id).collect();
        if let Some((id, e)) = damaged.into_iter().find(|(id, _)| !theirs.contains(id)) {
            return Err(Error::InvalidArgument(format!(
                "snapshot {} does not read ({e}); a key rotation would lose it: repair or forget it first",
                id.short()
            )));
        }
        Ok(readable.into_iter().map(|(id, _)| id).collect())
    }

    /// Steps 8 to 10, on the new repository's handle. `old_repo_id`, when known, names the
    /// old domain's local caches (removed: they hold its chunk lengths and paths).
    fn finish_rotation(&mut self, old_repo_id: Option<[u8; 16]>, report: &mut RotateReport) -> Result<()> {
        let next = self.store.get(FileKind::Key, NEXT_CONFIG);
        // 8. `config` is the new one again.
        if let Ok(bytes) = &next {
            match self.store.put(FileKind::Config, "config", bytes) {
                Ok(()) => self.store.flush()?,
                // Written by an earlier attempt: it is this repository's (it opened).
                Err(Error::AlreadyExists(_)) => {}
                Err(e) => return Err(e.at(Location::RepoFile("config".into()))),
            }
        }
        // 9. The old domain's files.
        let delete = |kind: FileKind, name: &str| match self.store.delete(kind, name) {
            Ok(()) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.at(Location::RepoFile(kind.path(name)))),
        };
        let listed: Vec<SnapshotId> =
            crate::store::list_ids(self.store.as_ref(), FileKind::Snapshot)?.into_iter().map(SnapshotId).collect();
        for id in listed.iter().filter(|id| self.is_forgotten(id)) {
            delete(FileKind::Snapshot, &id.to_hex())?;
            report.retired.snapshots += 1;
        }
        let index_files: Vec<crate::id::IndexId> =
            crate::store::list_ids(self.store.as_ref(), FileKind::Index)?.into_iter().map(crate::id::IndexId).collect();
        for (id, r) in crate::index::read_index_files_each(self.store.as_ref(), self.keys.meta_key(), &index_files) {
            match r {
                Err(e) if e.kind() == crate::ErrorKind::Integrity => {
                    delete(FileKind::Index, &id.to_hex())?;
                    report.retired.index_files += 1;
                }
                Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
                _ => {}
            }
        }
        let foreign_tombstones: Vec<String> = {
            let t = self.tombstones.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            t.damaged.iter().filter(|(_, e)| e.kind() == crate::ErrorKind::Integrity).map(|(n, _)| n.clone()).collect()
        };
        for name in foreign_tombstones {
            delete(FileKind::Tombstone, &name)?;
            report.retired.tombstones += 1;
        }
        for slot in keys::load_slots_any_repo(self.store.as_ref())? {
            if slot.repo_id != self.repo_id {
                delete(FileKind::Key, &slot.id_hex())?;
                report.retired.keyslots += 1;
            }
        }
        // Dictionaries that do not open under the new keys are the old domain's: no blob of
        // the new one names them (the copy compressed codec-2 blobs again without them), and
        // left behind they would read as damage to every check.
        for id in crate::dict::list(self.store.as_ref())? {
            match crate::dict::load(self.store.as_ref(), &self.keys, &id) {
                Err(e) if e.kind() == crate::ErrorKind::Integrity => {
                    delete(FileKind::Dict, &id.to_hex())?;
                    report.retired.dictionaries += 1;
                }
                Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
                _ => {}
            }
        }
        // 10. Done: `config` is all a reader needs.
        if next.is_ok() {
            delete(FileKind::Key, NEXT_CONFIG)?;
        }
        self.index = self.reload_index()?;
        self.tombstones.write().unwrap_or_else(std::sync::PoisonError::into_inner).damaged.clear();
        let known: HashSet<Id> = self.index.packs().map(|p| p.id.0).collect();
        report.old_packs =
            crate::store::list_ids(self.store.as_ref(), FileKind::Pack)?.iter().filter(|p| !known.contains(p)).count()
                as u64;
        if let (Some(dir), Some(old)) = (&self.cache_dir, old_repo_id) {
            // Only a cache; failing to remove it leaves stale files, nothing worse.
            let _ = std::fs::remove_dir_all(crate::index::cache_repo_dir(dir, &old));
        }
        Ok(())
    }
}

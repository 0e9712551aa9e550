//! History: tombstones, and the verification of the snapshots a repository shows against
//! what this client has seen (format-spec.md §5.15, §8 "History verification").
//!
//! A provider can delete, hide and replay files, but cannot write one under the metadata key.
//! So every deliberate removal (`forget`, `repair snapshots`, `key remove`, `key passwd`)
//! writes a tombstone *before* it deletes, and a client compares:
//! - a snapshot it has seen that is gone without a tombstone: deleted by someone without the
//!   key (reported by `check` and by the snapshot listing);
//! - the newest snapshot it has seen gone, another at its sequence number: a fork, refused;
//! - a newest sequence lower than the one it has seen: a rollback, refused;
//! - a snapshot whose `previous` is neither present nor tombstoned: a deletion this client
//!   never saw (also found on a new device, which has seen nothing);
//! - a keyslot named by a tombstone, present again: refused.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::crypto::random_array;
use crate::error::{Error, Location, Result, ResultExt};
use crate::format::tombstone::{self, ForgottenSnapshot, TombstoneReason, TombstoneRecord, MAX_TOMBSTONE_FILE};
use crate::id::{Id, SnapshotId};
use crate::repo::{now_secs, Repository};
use crate::store::{FileKind, Store};

/// What the repository's tombstones say.
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    /// Snapshots removed on purpose, with their sequence numbers.
    pub snapshots: HashMap<SnapshotId, u64>,
    /// Keyslots removed on purpose (32 hex digits).
    pub keyslots: HashSet<String>,
    /// Tombstone files that do not read (damaged or forged), by name, with why.
    pub damaged: Vec<(String, Error)>,
}

/// Reads every tombstone of the repository under `meta_key`.
pub(crate) fn load_tombstones(
    store: &dyn Store,
    meta_key: &crate::crypto::SecretKey,
    repo_id: &[u8; 16],
) -> Result<Tombstones> {
    let mut out = Tombstones::default();
    for id in crate::store::list_ids(store, FileKind::Tombstone)? {
        let name = id.to_hex();
        let loc = || Location::RepoFile(FileKind::Tombstone.path(&name));
        let read = crate::store::get_bounded(store, FileKind::Tombstone, &name, MAX_TOMBSTONE_FILE, "tombstone length")
            .and_then(|bytes| {
                if Id::hash_of(&bytes) != id {
                    return Err(Error::Integrity("content does not hash to its name".into()));
                }
                let rec = tombstone::decode(meta_key, &bytes)?;
                if rec.repo_id != *repo_id {
                    return Err(Error::Integrity("the tombstone belongs to another repository".into()));
                }
                Ok(rec)
            });
        match read {
            Ok(rec) => {
                out.snapshots.extend(rec.snapshots.iter().map(|s| (s.id, s.sequence)));
                out.keyslots.extend(rec.keyslots.iter().map(|k| crate::id::hex_encode(k)));
            }
            Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e.at(loc())),
            Err(e) => out.damaged.push((name.clone(), e.at(loc()))),
        }
    }
    Ok(out)
}

/// What a repository's history looks like from this client, found at open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryReport {
    /// Snapshots this client has seen that are gone without a tombstone: someone without the
    /// key deleted them (the provider). Oldest sequence first.
    pub vanished: Vec<(SnapshotId, u64)>,
    /// Snapshots whose predecessor is gone without a tombstone: (snapshot, missing
    /// predecessor). Found by any client, also one that has seen nothing before.
    pub broken_links: Vec<(SnapshotId, SnapshotId)>,
    /// Keyslots that were removed on purpose and are present again (refused when opening).
    pub reappeared_keyslots: Vec<crate::id::SlotId>,
    /// Tombstone files that do not read.
    pub damaged_tombstones: Vec<String>,
    /// Snapshots a tombstone this client saw named, whose tombstone is gone: someone without
    /// the key deleted it (the snapshots stay forgotten for this client).
    pub missing_tombstones: Vec<SnapshotId>,
}

impl HistoryReport {
    /// True when nothing is wrong.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.vanished.is_empty()
            && self.broken_links.is_empty()
            && self.reappeared_keyslots.is_empty()
            && self.damaged_tombstones.is_empty()
            && self.missing_tombstones.is_empty()
    }
}

/// The snapshots a repository shows: every listed id (damaged ones too) and, for the readable
/// ones, (sequence, previous).
pub(crate) struct Shown {
    pub listed: HashSet<SnapshotId>,
    pub readable: BTreeMap<SnapshotId, (u64, Option<SnapshotId>)>,
}

impl Shown {
    /// The readable snapshot with the largest (sequence, id).
    pub fn newest(&self) -> Option<(u64, SnapshotId)> {
        self.readable.iter().map(|(id, (seq, _))| (*seq, *id)).max()
    }
}

/// What this client remembers of the history (from its pin).
pub(crate) struct Seen<'a> {
    pub newest: Option<(u64, SnapshotId)>,
    pub snapshots: &'a BTreeMap<SnapshotId, u64>,
}

/// Compares what the repository shows with what this client has seen. Errors for a rollback
/// or a fork (unless `allow`); the rest goes into the report.
pub(crate) fn verify(shown: &Shown, tombs: &Tombstones, seen: &Seen<'_>, allow: bool) -> Result<HistoryReport> {
    let gone = |id: &SnapshotId| !shown.listed.contains(id) && !tombs.snapshots.contains_key(id);
    if let (Some((seen_seq, seen_id)), false) = (seen.newest, allow) {
        // The newest snapshot this client saw can only go with a tombstone. Gone without one,
        // the repository shown is not the one this client saw: another history holds its
        // sequence or a later one (a fork), or nothing does (a rollback).
        if gone(&seen_id) {
            if let Some((other, _)) = shown.readable.iter().find(|(id, (seq, _))| *seq >= seen_seq && **id != seen_id) {
                return Err(Error::Forked {
                    sequence: seen_seq,
                    seen_snapshot: seen_id.short(),
                    found_snapshot: other.short(),
                });
            }
            let found = shown.newest().map_or(0, |(s, _)| s);
            return Err(Error::RolledBack { found, seen: seen_seq, seen_snapshot: seen_id.short() });
        }
    }
    let mut report = HistoryReport::default();
    if !allow {
        let mut vanished: Vec<(SnapshotId, u64)> =
            seen.snapshots.iter().filter(|(id, _)| gone(id)).map(|(id, seq)| (*id, *seq)).collect();
        vanished.sort_by_key(|(id, seq)| (*seq, *id));
        report.vanished = vanished;
    }
    for (id, (_, previous)) in &shown.readable {
        if let Some(p) = previous {
            if gone(p) {
                report.broken_links.push((*id, *p));
            }
        }
    }
    report.damaged_tombstones = tombs.damaged.iter().map(|(n, _)| n.clone()).collect();
    Ok(report)
}

impl Repository {
    /// Every snapshot file listed, and the readable ones' (sequence, previous).
    pub(crate) fn shown_snapshots(&self) -> Result<Shown> {
        let (readable, damaged) = self.snapshots_with_errors_unfiltered()?;
        let mut listed: HashSet<SnapshotId> = damaged.iter().map(|(id, _)| *id).collect();
        listed.extend(readable.iter().map(|(id, _)| *id));
        let readable = readable.into_iter().map(|(id, r)| (id, (r.sequence, r.previous))).collect();
        Ok(Shown { listed, readable })
    }

    /// Writes a tombstone naming `snapshots` and `keyslots` (durable before it returns), and
    /// remembers it in this session.
    pub(crate) fn write_tombstone(
        &self,
        reason: TombstoneReason,
        snapshots: Vec<ForgottenSnapshot>,
        keyslots: Vec<[u8; 16]>,
    ) -> Result<()> {
        if snapshots.is_empty() && keyslots.is_empty() {
            return Ok(());
        }
        let record = TombstoneRecord {
            repo_id: self.repo_id,
            time_secs: now_secs(),
            hostname: crate::repo::lock::hostname(),
            reason,
            snapshots: snapshots.clone(),
            keyslots: keyslots.clone(),
        };
        let bytes = tombstone::encode(self.keys.meta_key(), &record, &random_array()?)?;
        let name = Id::hash_of(&bytes).to_hex();
        self.store
            .put(FileKind::Tombstone, &name, &bytes)
            .at(|| Location::RepoFile(FileKind::Tombstone.path(&name)))?;
        self.store.flush()?;
        let mut t = self.tombstones.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.snapshots.extend(snapshots.iter().map(|s| (s.id, s.sequence)));
        t.keyslots.extend(keyslots.iter().map(|k| crate::id::hex_encode(k)));
        Ok(())
    }

    /// True when a tombstone names the snapshot: it was forgotten on purpose.
    pub(crate) fn is_forgotten(&self, id: &SnapshotId) -> bool {
        self.tombstones.read().unwrap_or_else(std::sync::PoisonError::into_inner).snapshots.contains_key(id)
    }

    /// The keyslots tombstones name (32 hex digits each).
    pub(crate) fn tombstoned_keyslots(&self) -> BTreeSet<String> {
        self.tombstones.read().unwrap_or_else(std::sync::PoisonError::into_inner).keyslots.iter().cloned().collect()
    }

    /// What this client found wrong with the repository's history when it opened it.
    #[must_use]
    pub fn history_report(&self) -> &HistoryReport {
        &self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u8) -> SnapshotId {
        SnapshotId(Id([n; 32]))
    }

    fn shown(snaps: &[(u8, u64, Option<u8>)]) -> Shown {
        Shown {
            listed: snaps.iter().map(|s| sid(s.0)).collect(),
            readable: snaps.iter().map(|&(i, seq, p)| (sid(i), (seq, p.map(sid)))).collect(),
        }
    }

    #[test]
    fn fork_rollback_deletion_and_tombstones() {
        let seen_map: BTreeMap<SnapshotId, u64> = [(sid(1), 1), (sid(2), 2)].into_iter().collect();
        let seen = Seen { newest: Some((2, sid(2))), snapshots: &seen_map };
        let none = Tombstones::default();
        // Unchanged, and grown by one: clean.
        assert!(verify(&shown(&[(1, 1, None), (2, 2, Some(1))]), &none, &seen, false).unwrap().is_clean());
        assert!(verify(&shown(&[(1, 1, None), (2, 2, Some(1)), (3, 3, Some(2))]), &none, &seen, false)
            .unwrap()
            .is_clean());
        // Another snapshot at the newest seen sequence, the seen one gone: a fork.
        let fork = verify(&shown(&[(1, 1, None), (9, 2, Some(1))]), &none, &seen, false).unwrap_err();
        assert_eq!(fork.kind(), crate::ErrorKind::Forked);
        // ... also when the fork's snapshot at that sequence was removed and a later one stands.
        let fork = verify(&shown(&[(1, 1, None), (7, 3, Some(9))]), &none, &seen, false).unwrap_err();
        assert_eq!(fork.kind(), crate::ErrorKind::Forked);
        // An older snapshot forgotten on purpose does not excuse the newest one's absence.
        let mut old_only = Tombstones::default();
        old_only.snapshots.insert(sid(5), 9);
        let back = verify(&shown(&[(1, 1, None)]), &old_only, &seen, false).unwrap_err();
        assert_eq!(back.kind(), crate::ErrorKind::RolledBack);
        // The newest seen gone, nothing newer: a rollback.
        let back = verify(&shown(&[(1, 1, None)]), &none, &seen, false).unwrap_err();
        assert_eq!(back.kind(), crate::ErrorKind::RolledBack);
        // The older seen one gone: reported, twice (vanished and a broken link).
        let r = verify(&shown(&[(2, 2, Some(1))]), &none, &seen, false).unwrap();
        assert_eq!(r.vanished, vec![(sid(1), 1)]);
        assert_eq!(r.broken_links, vec![(sid(2), sid(1))]);
        // ... unless a tombstone names it.
        let mut t = Tombstones::default();
        t.snapshots.insert(sid(1), 1);
        assert!(verify(&shown(&[(2, 2, Some(1))]), &t, &seen, false).unwrap().is_clean());
        // Forgetting the newest on purpose is no rollback.
        t.snapshots.insert(sid(2), 2);
        assert!(verify(&shown(&[]), &t, &seen, false).unwrap().is_clean());
        // Two concurrent backups at one sequence are no fork while both stand.
        assert!(verify(&shown(&[(1, 1, None), (2, 2, Some(1)), (8, 2, Some(1))]), &none, &seen, false)
            .unwrap()
            .is_clean());
        // Allowed: no error, nothing reported as vanished.
        assert!(verify(&shown(&[(1, 1, None)]), &none, &seen, true).unwrap().vanished.is_empty());
    }
}

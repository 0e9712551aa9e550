//! Forget: which snapshots a policy keeps, and removing the others (tombstone first).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::{Error, Location, Result};
use crate::format::snapshot::SnapshotRecord;
use crate::format::tombstone::{ForgottenSnapshot, TombstoneReason};
use crate::id::SnapshotId;
use crate::repo::lock::LockKind;
use crate::repo::Repository;
use crate::store::FileKind;

/// Which snapshots `forget` keeps (a snapshot kept by any rule is kept).
#[derive(Debug, Clone, Default)]
pub struct ForgetPolicy {
    /// Snapshots to forget by id (full ids).
    pub ids: Vec<SnapshotId>,
    /// Keep the newest N.
    pub keep_last: Option<usize>,
    /// Keep the newest snapshot of each of the last N days (UTC) that have one.
    pub keep_daily: Option<usize>,
    /// Keep the newest of each of the last N ISO weeks that have one.
    pub keep_weekly: Option<usize>,
    /// Keep the newest of each of the last N months that have one.
    pub keep_monthly: Option<usize>,
}

impl ForgetPolicy {
    fn has_keep_rules(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
    }
}

/// What `forget` decided.
#[derive(Debug, Clone, Default)]
pub struct ForgetReport {
    /// Snapshots kept, oldest first, with why.
    pub keep: Vec<(SnapshotId, SnapshotRecord, Vec<String>)>,
    /// Snapshots removed (or that would be, with `dry_run`), oldest first.
    pub remove: Vec<(SnapshotId, SnapshotRecord)>,
    /// Damaged (unreadable) snapshot files removed because they were named by id.
    pub remove_damaged: Vec<SnapshotId>,
}

/// Day number (days since 1970-01-01) of a time.
pub(super) fn day(secs: i64) -> i64 {
    secs.div_euclid(86_400)
}

/// A week number that changes every Monday (1970-01-01 was a Thursday).
pub(super) fn week(days: i64) -> i64 {
    (days + 3).div_euclid(7)
}

impl Repository {
    /// Applies a forget policy: removes the snapshot files it does not keep (nothing with
    /// `dry_run`). Data is only freed by [`Repository::prune`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty policy or an unknown id; [`Error::Locked`];
    /// store errors.
    pub fn forget(&self, policy: &ForgetPolicy, dry_run: bool) -> Result<ForgetReport> {
        if policy.ids.is_empty() && !policy.has_keep_rules() {
            return Err(Error::InvalidArgument("forget needs snapshot ids or at least one keep rule".into()));
        }
        let rules = [policy.keep_last, policy.keep_daily, policy.keep_weekly, policy.keep_monthly];
        if rules.contains(&Some(0)) {
            return Err(Error::InvalidArgument("a keep rule of 0 keeps nothing: leave the rule out".into()));
        }
        let _lock = if dry_run { None } else { Some(self.lock(LockKind::Exclusive, "forget")?) };
        let (snaps, damaged) = self.snapshots_with_errors()?;
        for id in &policy.ids {
            if !snaps.iter().any(|(s, _)| s == id) && !damaged.iter().any(|(s, _)| s == id) {
                return Err(Error::NotFound(format!("snapshot {}", id.short())));
            }
        }
        let mut reasons: HashMap<SnapshotId, Vec<String>> = HashMap::new();
        if policy.has_keep_rules() {
            // The rules apply per host: a laptop that backs up weekly keeps its own snapshots
            // however often the phone backs up.
            let mut by_host: BTreeMap<&str, Vec<&(SnapshotId, SnapshotRecord)>> = BTreeMap::new();
            for s in snaps.iter().rev() {
                by_host.entry(s.1.hostname.as_str()).or_default().push(s);
            }
            for newest_first in by_host.values() {
                if let Some(n) = policy.keep_last {
                    for (id, _) in newest_first.iter().take(n) {
                        reasons.entry(*id).or_default().push("last".into());
                    }
                }
                let mut bucket_rule = |n: Option<usize>, name: &str, key: &dyn Fn(i64) -> i64| {
                    let Some(n) = n else { return };
                    let mut seen = HashSet::new();
                    for (id, r) in newest_first {
                        if seen.len() == n {
                            break;
                        }
                        if seen.insert(key(day(r.time_secs))) {
                            reasons.entry(*id).or_default().push(name.into());
                        }
                    }
                };
                bucket_rule(policy.keep_daily, "daily", &|d| d);
                bucket_rule(policy.keep_weekly, "weekly", &week);
                bucket_rule(policy.keep_monthly, "monthly", &|d| {
                    let (y, m, _) = crate::civil::civil_from_days(d);
                    y * 12 + i64::from(m)
                });
            }
        } else {
            for (id, _) in &snaps {
                if !policy.ids.contains(id) {
                    reasons.entry(*id).or_default().push("not named".into());
                }
            }
        }
        for id in &policy.ids {
            reasons.remove(id);
        }
        let mut report = ForgetReport::default();
        for (id, rec) in snaps {
            match reasons.remove(&id) {
                Some(why) => report.keep.push((id, rec, why)),
                None => report.remove.push((id, rec)),
            }
        }
        // Damaged snapshot files go only when named: a keep rule cannot judge them.
        let damaged_named: Vec<SnapshotId> =
            damaged.iter().map(|(id, _)| *id).filter(|id| policy.ids.contains(id)).collect();
        report.remove_damaged.clone_from(&damaged_named);
        if !dry_run {
            // The tombstone first: once it is durable, the snapshots are gone for every reader
            // (also if this stops before the deletes), and no client takes their absence for
            // the provider's doing.
            let forgotten: Vec<ForgottenSnapshot> = report
                .remove
                .iter()
                .map(|(id, rec)| ForgottenSnapshot { id: *id, sequence: rec.sequence })
                .chain(damaged_named.iter().map(|id| ForgottenSnapshot { id: *id, sequence: 0 }))
                .collect();
            self.write_tombstone(TombstoneReason::Forget, forgotten.clone(), Vec::new())?;
            // Files an interrupted forget tombstoned but did not delete go now too.
            let leftovers: Vec<SnapshotId> = crate::store::list_ids(self.store.as_ref(), FileKind::Snapshot)?
                .into_iter()
                .map(SnapshotId)
                .filter(|id| self.is_forgotten(id))
                .collect();
            let ids: Vec<SnapshotId> = forgotten.iter().map(|f| f.id).chain(leftovers).collect();
            for id in &ids {
                match self.store.delete(FileKind::Snapshot, &id.to_hex()) {
                    Ok(()) | Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e.at(Location::Snapshot(*id))),
                }
            }
            let newest = self.newest_snapshot()?;
            self.forget_seen(&ids, newest)?;
        }
        Ok(report)
    }
}

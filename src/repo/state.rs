//! Rollback detection: each client remembers the newest snapshot (sequence, id) it has seen
//! in a small local state file, and refuses a repository whose newest snapshot is older.
//!
//! State file `<state dir>/<repository id hex>.state`, text:
//! `packvault-state 1\nsequence <n>\nsnapshot <64 hex>\n`. It is local, never stored in the
//! repository; rewriting it is done by a temporary file and a rename.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Location, Result, ResultExt};
use crate::id::{hex_encode, Id, SnapshotId};
use crate::repo::Repository;

impl Repository {
    fn state_path(&self) -> Option<PathBuf> {
        self.state_dir.as_ref().map(|d| d.join(format!("{}.state", hex_encode(&self.repo_id))))
    }

    /// The readable snapshot with the largest sequence number (ties: the largest id). Damaged
    /// snapshot files are skipped (`check` reports them).
    pub(crate) fn newest_snapshot(&self) -> Result<Option<(u64, SnapshotId)>> {
        Ok(self.snapshots()?.into_iter().map(|(id, rec)| (rec.sequence, id)).max())
    }

    fn read_state(&self) -> Result<Option<(u64, SnapshotId)>> {
        let Some(path) = self.state_path() else { return Ok(None) };
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io(e).at(Location::Path(path))),
        };
        let bad = || {
            Error::malformed("client state file", None, "unreadable; remove it to forget what this client has seen")
                .at(Location::Path(path.clone()))
        };
        let mut lines = text.lines();
        if lines.next() != Some("packvault-state 1") {
            return Err(bad());
        }
        let seq =
            lines.next().and_then(|l| l.strip_prefix("sequence ")).and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let id = lines
            .next()
            .and_then(|l| l.strip_prefix("snapshot "))
            .and_then(|v| Id::from_hex(v).ok())
            .ok_or_else(bad)?;
        Ok(Some((seq, SnapshotId(id))))
    }

    /// Remembers `(sequence, id)` as seen, if it is newer than what the state holds.
    pub(crate) fn record_seen(&self, sequence: u64, id: SnapshotId) -> Result<()> {
        let Some(path) = self.state_path() else { return Ok(()) };
        if self.read_state()?.is_some_and(|(s, i)| (s, i) >= (sequence, id)) {
            return Ok(());
        }
        let loc = || Location::Path(path.clone());
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).at(loc)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = fs::File::create(&tmp).at(loc)?;
        write!(f, "packvault-state 1\nsequence {sequence}\nsnapshot {id}\n").at(loc)?;
        f.sync_all().at(loc)?;
        fs::rename(&tmp, &path).at(loc)
    }

    /// Replaces the state by `newest` even when it is older (after this client forgot
    /// snapshots on purpose), or removes it when no snapshot is left.
    pub(crate) fn reset_seen(&self, newest: Option<(u64, SnapshotId)>) -> Result<()> {
        let Some(path) = self.state_path() else { return Ok(()) };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e).at(Location::Path(path))),
        }
        match newest {
            Some((s, id)) => self.record_seen(s, id),
            None => Ok(()),
        }
    }

    /// Compares the repository's newest snapshot with the state; records it when newer.
    pub(crate) fn check_rollback(&self, newest: Option<(u64, SnapshotId)>, allow: bool) -> Result<()> {
        if let Some((seen, seen_id)) = self.read_state()? {
            let found = newest.map_or(0, |(s, _)| s);
            if found < seen && !allow {
                return Err(Error::RolledBack { found, seen, seen_snapshot: seen_id.short() });
            }
            if found < seen {
                // Allowed: start over from what the repository shows now.
                if let Some(path) = self.state_path() {
                    let _ = fs::remove_file(path);
                }
            }
        }
        match newest {
            Some((s, id)) => self.record_seen(s, id),
            None => Ok(()),
        }
    }
}

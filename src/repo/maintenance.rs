//! Maintenance: forget snapshots, prune unused data, repair the index and snapshots. One
//! room per job:
//!
//! - `forget`: which snapshots a policy keeps, and removing the others (a tombstone first).
//! - `prune`: a [`PrunePlan`] (pure data: which packs to keep, rewrite and delete, which index
//!   files to replace, with byte counts), then its execution, as rustic_core separates them:
//!   a dry run is the plan alone, and the plan can be tested without a store.
//! - `repair`: rebuild the index from the packs' own directories; rewrite snapshots that refer
//!   to lost data.
//!
//! Prune is the only operation that deletes data, and it does so last: under the exclusive
//! lock it writes the repacked blobs and a new index first (both durable), then deletes the
//! old index files, then the packs nothing needs. Interrupted at any point, it leaves a valid
//! repository (at worst packs and index files that the next prune removes).

mod forget;
mod prune;
mod repair;
#[cfg(test)]
mod tests;

pub use forget::{ForgetPolicy, ForgetReport};
pub use prune::{PackAction, PackPlan, PruneOptions, PrunePlan, PruneReport, TEMPORARY_IDLE};
pub use repair::RepairReport;

use crate::error::{Error, Location, Result};
use crate::repo::Repository;
use crate::store::FileKind;

/// Deletes a repository file; one already gone is fine (an interrupted run, or another
/// client, removed it).
fn delete_if_present(repo: &Repository, kind: FileKind, name: &str) -> Result<()> {
    match repo.store.delete(kind, name) {
        Ok(()) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e.at(Location::RepoFile(kind.path(name)))),
    }
}

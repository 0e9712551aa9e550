//! The vault's records in SQLite.
//!
//! Why SQLite: one file, transactions, and a durability contract we can state. WAL with
//! `synchronous=FULL` makes every committed transaction reach the disk (fsync of the WAL)
//! before `COMMIT` returns, so a counted attempt survives `kill -9` and power loss alike;
//! `secure_delete` zeroes the freed bytes of a destroyed record, and a `TRUNCATE` checkpoint
//! afterwards empties the WAL, which still held older copies of the record's page.
//!
//! One connection, used under the server's mutex: every write is serialised, which is what
//! makes N parallel guesses cost N attempts.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::ServeError;

/// What a login start may do, decided and committed in one transaction.
pub(crate) enum Gate {
    /// No such record.
    Unknown,
    /// Another binding: refused, not counted.
    BindingMismatch,
    /// Destroyed (now or before).
    Destroyed,
    /// Counted: the attempt is durable; answer it.
    Go {
        /// The OPAQUE registration record.
        registration: Vec<u8>,
        /// Its key-stretching parameters.
        ksf: [u8; 12],
        /// Attempts left after this one.
        left: u32,
    },
}

/// One record, for operators and tests (never the registration itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    /// Failed (or still open) logins in a row.
    pub failures: u32,
    /// Attempts after which the record is destroyed.
    pub limit: u32,
    /// Logins answered since enrollment (each one counted before it was answered).
    pub evaluations: u64,
    /// Unix seconds of enrollment.
    pub created: i64,
    /// Unix seconds of the last completed login.
    pub used: Option<i64>,
    /// Unix seconds of destruction; the registration is gone.
    pub destroyed: Option<i64>,
}

/// Counts over the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Records that can still open.
    pub records: u64,
    /// Records locked out: destroyed, or at their limit and about to be.
    pub locked_out: u64,
    /// Live records with at least one failure.
    pub with_failures: u64,
}

pub(crate) struct Db {
    conn: Connection,
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> ServeError + '_ {
    move |e| ServeError(format!("vault database {}: {e}", path.display()))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    id BLOB PRIMARY KEY NOT NULL,
    binding BLOB NOT NULL,
    registration BLOB,
    ksf BLOB NOT NULL,
    failures INTEGER NOT NULL,
    attempt_limit INTEGER NOT NULL,
    evaluations INTEGER NOT NULL,
    created INTEGER NOT NULL,
    used INTEGER,
    destroyed INTEGER
) STRICT, WITHOUT ROWID;
";

impl Db {
    /// Opens (creating when `create`) the database at `path`, owner-only.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Db, ServeError> {
        if create && !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            // Owner-only from the first byte; SQLite gives its -wal and -shm files the same mode.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| ServeError(format!("cannot create vault database {}: {e}", path.display())))?;
        }
        let flags = if create {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(path, flags).map_err(sql(path))?;
        if create {
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON; PRAGMA user_version=1;",
            )
            .map_err(sql(path))?;
            conn.execute_batch(SCHEMA).map_err(sql(path))?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql(path))?;
        Ok(Db { conn })
    }

    pub(crate) fn insert(
        &mut self,
        id: &[u8; 16],
        binding: &[u8; 32],
        registration: &[u8],
        ksf: &[u8; 12],
        limit: u32,
        now: i64,
    ) -> rusqlite::Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO records (id, binding, registration, ksf, failures, attempt_limit, evaluations, created)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, 0, ?6)",
            params![&id[..], &binding[..], registration, &ksf[..], limit, now],
        )?;
        Ok(n == 1)
    }

    /// Counts a login attempt, durably, before it is answered (vault-protocol.md §5.3).
    pub(crate) fn begin_login(&mut self, id: &[u8; 16], binding: &[u8; 32], now: i64) -> rusqlite::Result<Gate> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        type Row = (Vec<u8>, Option<Vec<u8>>, Vec<u8>, u32, u32);
        let row: Option<Row> = tx
            .query_row(
                "SELECT binding, registration, ksf, failures, attempt_limit FROM records WHERE id = ?1",
                [&id[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((stored_binding, registration, ksf, failures, limit)) = row else { return Ok(Gate::Unknown) };
        if stored_binding != binding {
            return Ok(Gate::BindingMismatch);
        }
        let Some(registration) = registration else { return Ok(Gate::Destroyed) };
        if failures >= limit {
            // The limit-th attempt was answered and did not complete: the record goes now.
            destroy(&tx, id, now)?;
            tx.commit()?;
            self.checkpoint();
            return Ok(Gate::Destroyed);
        }
        tx.execute(
            "UPDATE records SET failures = failures + 1, evaluations = evaluations + 1 WHERE id = ?1",
            [&id[..]],
        )?;
        tx.commit()?;
        let ksf = <[u8; 12]>::try_from(ksf.as_slice()).unwrap_or_default();
        Ok(Gate::Go { registration, ksf, left: limit.saturating_sub(failures + 1) })
    }

    /// A completed login: the count goes back to zero. `false` when the record is gone.
    pub(crate) fn complete_login(&mut self, id: &[u8; 16], now: i64) -> rusqlite::Result<bool> {
        let n = self.conn.execute(
            "UPDATE records SET failures = 0, used = ?2 WHERE id = ?1 AND destroyed IS NULL",
            params![&id[..], now],
        )?;
        Ok(n == 1)
    }

    /// Destroys `id` if its failures reached its limit (no login of it is open any more).
    pub(crate) fn destroy_if_exhausted(&mut self, id: &[u8; 16], now: i64) -> rusqlite::Result<bool> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE records SET registration = NULL, destroyed = ?2
             WHERE id = ?1 AND destroyed IS NULL AND failures >= attempt_limit",
            params![&id[..], now],
        )?;
        tx.commit()?;
        if n > 0 {
            self.checkpoint();
        }
        Ok(n > 0)
    }

    /// At start-up no login is open: every exhausted record goes.
    pub(crate) fn destroy_all_exhausted(&mut self, now: i64) -> rusqlite::Result<usize> {
        let n = self.conn.execute(
            "UPDATE records SET registration = NULL, destroyed = ?1 WHERE destroyed IS NULL AND failures >= attempt_limit",
            [now],
        )?;
        if n > 0 {
            self.checkpoint();
        }
        Ok(n)
    }

    /// `(failures, limit)`, `None` for an unknown id, `Some(None)` for a destroyed record.
    pub(crate) fn attempts(&self, id: &[u8; 16]) -> rusqlite::Result<Option<Option<(u32, u32)>>> {
        self.conn
            .query_row(
                "SELECT failures, attempt_limit, destroyed IS NOT NULL FROM records WHERE id = ?1",
                [&id[..]],
                |r| Ok(if r.get::<_, bool>(2)? { None } else { Some((r.get(0)?, r.get(1)?)) }),
            )
            .optional()
    }

    /// Forgets `id` entirely. `false` for an unknown id.
    pub(crate) fn remove(&mut self, id: &[u8; 16]) -> rusqlite::Result<bool> {
        let n = self.conn.execute("DELETE FROM records WHERE id = ?1", [&id[..]])?;
        if n > 0 {
            self.checkpoint();
        }
        Ok(n > 0)
    }

    pub(crate) fn record(&self, id: &[u8; 16]) -> rusqlite::Result<Option<RecordInfo>> {
        self.conn
            .query_row(
                "SELECT failures, attempt_limit, evaluations, created, used, destroyed FROM records WHERE id = ?1",
                [&id[..]],
                |r| {
                    Ok(RecordInfo {
                        failures: r.get(0)?,
                        limit: r.get(1)?,
                        evaluations: count(r, 2)?,
                        created: r.get(3)?,
                        used: r.get(4)?,
                        destroyed: r.get(5)?,
                    })
                },
            )
            .optional()
    }

    pub(crate) fn stats(&self) -> rusqlite::Result<Stats> {
        self.conn.query_row(
            "SELECT
                COALESCE(SUM(destroyed IS NULL AND failures < attempt_limit), 0),
                COALESCE(SUM(destroyed IS NOT NULL OR failures >= attempt_limit), 0),
                COALESCE(SUM(destroyed IS NULL AND failures > 0), 0)
             FROM records",
            [],
            |r| Ok(Stats { records: count(r, 0)?, locked_out: count(r, 1)?, with_failures: count(r, 2)? }),
        )
    }

    /// Copies the WAL into the database and empties it, so that the pages of a destroyed
    /// record survive in neither file. Best effort: a failure leaves them until the next one.
    fn checkpoint(&self) {
        let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// A non-negative SQLite integer as `u64`.
fn count(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
}

fn destroy(tx: &rusqlite::Transaction<'_>, id: &[u8; 16], now: i64) -> rusqlite::Result<()> {
    tx.execute("UPDATE records SET registration = NULL, destroyed = ?2 WHERE id = ?1", params![&id[..], now])?;
    Ok(())
}

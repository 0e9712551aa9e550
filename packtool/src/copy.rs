//! `packtool copy`: snapshots from one repository into another, each opened with its own
//! credentials.
//!
//! The destination is "the repository" of every other command (`--to`, else `-r` or
//! `PACKTOOL_REPO`) and opens with the usual credentials; the source (`--from`) has its own:
//! `--from-passphrase-file`, `--from-recovery-code-file`, `PACKTOOL_FROM_PASSPHRASE`,
//! `PACKTOOL_FROM_RECOVERY_CODE`, this device's key for the source location, or a prompt. Both
//! are pinned in the same state folder, each under its own location.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use packvault::{ClientState, CopyOptions, CopyReport, Credentials, ErrorKind, OpenOptions, Repository};
use serde_json::json;

use crate::access::{cache_dir, client_state, explain, first_line, nonempty_env, prompt};
use crate::cli::Global;
use crate::output::{human_bytes, snapshot_json, utc, Out};
use crate::progress::Bar;

/// Arguments of `packtool copy`.
#[derive(Args, Debug)]
#[command(after_help = COPY_HELP)]
pub(crate) struct CopyArgs {
    /// The repository to copy from.
    #[arg(long, value_name = "LOCATION")]
    pub(crate) from: PathBuf,
    /// The repository to copy into (default: --repo / PACKTOOL_REPO). It must exist (`init`).
    #[arg(long, value_name = "LOCATION")]
    pub(crate) to: Option<PathBuf>,
    /// Snapshots to copy (ids, unique prefixes or `latest`); all of them when none is given.
    pub(crate) snapshots: Vec<String>,
    /// Read the source's passphrase from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) from_passphrase_file: Option<PathBuf>,
    /// Read a recovery code of the source from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) from_recovery_code_file: Option<PathBuf>,
    /// The fingerprint the source must have, checked at first contact.
    #[arg(long, value_name = "FINGERPRINT")]
    pub(crate) from_expect_fingerprint: Option<String>,
}

const COPY_HELP: &str = "\
Credentials:
  destination  the usual ones: --passphrase-file, --recovery-code-file, PACKTOOL_PASSPHRASE,
               PACKTOOL_RECOVERY_CODE, PACKTOOL_PIN, this device's key, or a prompt
  source       --from-passphrase-file, --from-recovery-code-file, PACKTOOL_FROM_PASSPHRASE,
               PACKTOOL_FROM_RECOVERY_CODE, this device's key for the source, or a prompt

What is copied:
  The chosen snapshots (all by default) with every file they hold and their time, host, user,
  tags and paths. Snapshots the destination already holds are skipped, so running the same
  copy again adds nothing. Keyslots, locks and tombstones are not copied.

  When both repositories share the master key (one was made from a copy of the other's
  folder), packs and snapshot files are copied as they are and keep their ids. Otherwise every
  chunk is decrypted and sealed again under the destination's key, with new ids: the chunks
  keep the source's boundaries (no re-chunking), so the destination's own later backups dedup
  less against the copied data until it ages out.

  Order: packs, then one index file, then the snapshots: a copy that fails or is interrupted
  leaves the destination valid, and running it again finishes it.";

/// Where the source's credentials come from.
fn source_credentials(a: &CopyArgs) -> anyhow::Result<Credentials> {
    if let Some(f) = &a.from_passphrase_file {
        return Ok(Credentials::passphrase(first_line(f, "source passphrase")?));
    }
    if let Some(f) = &a.from_recovery_code_file {
        return Credentials::recovery_code(&first_line(f, "source recovery code")?).map_err(explain);
    }
    if let Some(p) = nonempty_env("PACKTOOL_FROM_PASSPHRASE")? {
        return Ok(Credentials::passphrase(p));
    }
    if let Some(c) = nonempty_env("PACKTOOL_FROM_RECOVERY_CODE")? {
        return Credentials::recovery_code(&c).map_err(explain);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase for the source: set PACKTOOL_FROM_PASSPHRASE (or PACKTOOL_FROM_RECOVERY_CODE), use --from-passphrase-file, or run in a terminal");
    }
    Ok(Credentials::passphrase(prompt("source passphrase", false)?))
}

/// Opens the repository at `location` with this device's key when the client holds one for
/// it, else with `credentials()`; prints the fingerprint at first contact. `what` names it in
/// messages ("source", "destination").
fn open_at(
    g: &Global,
    location: &Path,
    what: &str,
    expect_fingerprint: Option<String>,
    credentials: &dyn Fn() -> anyhow::Result<Credentials>,
) -> anyhow::Result<Repository> {
    let store = crate::access::store_at(g, location, false)
        .with_context(|| format!("cannot open the {what} {}", location.display()))?;
    let state: ClientState = client_state(g);
    let options = OpenOptions {
        cache_dir: cache_dir(g),
        state: state.clone(),
        expect_fingerprint,
        allow_rollback: g.allow_rollback,
        lock_wait: g.retry_lock,
    };
    let device = packvault::has_device_key(&state, &store.location()).map_err(explain)?;
    let opened = if device {
        match Repository::open(store.clone(), &Credentials::DeviceKey, &options) {
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::KeyslotRevoked) => {
                Repository::open(store, &credentials()?, &options)
            }
            other => other,
        }
    } else {
        Repository::open(store, &credentials()?, &options)
    };
    let repo =
        opened.map_err(explain).with_context(|| format!("cannot open the {what} repository {}", location.display()))?;
    if repo.first_contact() {
        eprintln!(
            "packtool: first contact with the {what} at {}: pinned fingerprint {}",
            location.display(),
            repo.fingerprint()
        );
    }
    for (id, seq) in &repo.history_report().vanished {
        eprintln!(
            "packtool: warning: {what}: snapshot {} (sequence {seq}) is gone without a record of its removal",
            id.short()
        );
    }
    Ok(repo)
}

pub(crate) fn cmd_copy(g: &Global, a: &CopyArgs, out: &Out) -> anyhow::Result<u8> {
    let to =
        a.to.as_deref()
            .or(g.repo.as_deref())
            .context("no destination given: use --to LOCATION (or --repo / PACKTOOL_REPO)")?;
    let source = open_at(g, &a.from, "source", a.from_expect_fingerprint.clone(), &|| source_credentials(a))?;
    let mut dest = open_at(g, to, "destination", g.expect_fingerprint.clone(), &|| crate::access::credentials(g))?;
    let mut ids = Vec::new();
    for s in &a.snapshots {
        ids.push(
            source.find_snapshot(s).map_err(explain).with_context(|| format!("in the source {}", a.from.display()))?.0,
        );
    }
    let options = CopyOptions { progress: Bar::wanted(g.quiet, g.json), cancel: None };
    let started = std::time::Instant::now();
    let report = source
        .copy_to(&mut dest, &ids, options)
        .map_err(explain)
        .with_context(|| format!("cannot copy from {} to {}", a.from.display(), to.display()))?;
    for (id, why) in &report.unreadable {
        eprintln!("packtool: warning: source snapshot {} could not be read and was not copied: {why}", id.short());
    }
    print_report(out, &report, started.elapsed())?;
    Ok(if report.unreadable.is_empty() { 0 } else { 3 })
}

fn print_report(out: &Out, r: &CopyReport, took: std::time::Duration) -> std::io::Result<()> {
    if out.is_json() {
        let pair = |c: &packvault::CopiedSnapshot| {
            let mut v = snapshot_json(&c.destination, &c.record);
            v["source_id"] = json!(c.source.to_hex());
            v
        };
        return out.json(&json!({
            "same_key_domain": r.same_domain,
            "copied": r.copied.iter().map(pair).collect::<Vec<_>>(),
            "skipped": r.skipped.iter().map(pair).collect::<Vec<_>>(),
            "unreadable": r.unreadable.iter().map(|(id, e)| json!({"id": id.to_hex(), "error": e})).collect::<Vec<_>>(),
            "packs_written": r.packs_written,
            "pack_bytes": r.pack_bytes,
            "blobs_written": r.blobs_written,
            "blobs_present": r.blobs_present,
            "resealed_bytes": r.resealed_bytes,
            "index_file": r.index_file.map(|i| i.to_hex()),
            "forgotten_predecessors": r.forgotten_predecessors.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "duration_secs": took.as_secs_f64(),
        }));
    }
    let how = if r.same_domain {
        "same key: packs and snapshots copied as they are"
    } else {
        "another key: chunks sealed again under the destination's key"
    };
    out.line(how)?;
    for c in &r.copied {
        let to = if c.source == c.destination { String::new() } else { format!(" as {}", c.destination.short()) };
        out.line(&format!("copied  {}{to}  {}  {}", c.source.short(), utc(c.record.time_secs), c.record.hostname))?;
    }
    for c in &r.skipped {
        out.line(&format!("skipped {} (the destination holds it as {})", c.source.short(), c.destination.short()))?;
    }
    out.line(&format!(
        "{} snapshots copied, {} skipped; {} blobs written in {} packs ({}), {} already there, in {:.1}s",
        r.copied.len(),
        r.skipped.len(),
        r.blobs_written,
        r.packs_written,
        human_bytes(r.pack_bytes),
        r.blobs_present,
        took.as_secs_f64()
    ))
}

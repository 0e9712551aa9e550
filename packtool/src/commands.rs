//! What each subcommand does: open the repository, call the library, print.

use std::path::Path;

use anyhow::{bail, Context};
use packvault::format::config::ChunkerParams;
use packvault::format::keyslot::Argon2Params;
use packvault::{
    CheckOptions, Credentials, DataSubset, ErrorKind, ForgetPolicy, InitOptions, PruneOptions, Repository,
    RestoreOptions,
};
use packvault::{DirOptions, SnapshotInfo};

use crate::access::{
    cache_dir, client_state, explain, new_repo_passphrase, new_secret, open, repo_path, s3_url, store, vault,
};
use crate::cli::{Cli, Command, Global, InitArgs, KeyCommand, RepairCommand};
use crate::inspect;
use crate::output::Out;
use crate::progress::Bar;

pub(crate) fn run(cli: &Cli, out: &Out) -> anyhow::Result<u8> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => cmd_init(g, a, out),
        Command::Backup { dir, tags, append_only } => cmd_backup(g, dir, tags, append_only, out),
        Command::Snapshots => {
            let repo = open(g)?;
            let (snaps, damaged) = repo.snapshots_with_errors().map_err(explain)?;
            out.snapshots(&snaps)?;
            for (id, e) in &damaged {
                if e.kind() == ErrorKind::UnsupportedVersion {
                    eprintln!("packtool: snapshot {} was written by a newer packvault format: {e}", id.short());
                } else {
                    eprintln!("packtool: damaged snapshot {}: {e}", id.short());
                }
            }
            // `open` printed what vanished; a broken chain is the same deletion seen by a
            // client that never saw the snapshot itself.
            let h = repo.history_report();
            for (child, prev) in &h.broken_links {
                eprintln!(
                    "packtool: warning: snapshot {}'s predecessor {} is gone without a record of its removal: someone without the key deleted it",
                    child.short(),
                    prev.short()
                );
            }
            let history_ok = h.vanished.is_empty() && h.broken_links.is_empty();
            Ok(if damaged.is_empty() && history_ok { 0 } else { 3 })
        }
        Command::Ls { snapshot, path, long } => {
            let repo = open(g)?;
            let (_, rec) = repo.find_snapshot(snapshot).map_err(explain)?;
            let nodes = repo.list(&rec, path.as_deref().unwrap_or(""), true).map_err(explain)?;
            out.listing(&nodes, *long)?;
            Ok(0)
        }
        Command::Restore { snapshot, target, include, overwrite, sync, keep_special_bits } => {
            let repo = open(g)?;
            let (id, rec) = repo.find_snapshot(snapshot).map_err(explain)?;
            let report = repo
                .restore(
                    &rec,
                    &RestoreOptions {
                        target: target.clone(),
                        include: include.clone(),
                        overwrite: *overwrite,
                        sync: *sync,
                        keep_special_bits: *keep_special_bits,
                        no_lock: g.no_lock,
                        progress: Bar::wanted(g.quiet, g.json),
                        cancel: None,
                    },
                )
                .map_err(explain)?;
            out.restore(&id, target, &report)?;
            Ok(if report.is_complete() { 0 } else { 3 })
        }
        Command::Copy(a) => crate::copy::cmd_copy(g, a, out),
        Command::Key(k) => cmd_key(g, k, out),
        Command::Trust { forget } => cmd_trust(g, *forget, out),
        Command::Find { pattern } => inspect::find(&open(g)?, pattern, out),
        Command::Diff { snapshot1, snapshot2 } => inspect::diff(&open(g)?, snapshot1, snapshot2, out),
        Command::Stats { snapshot } => inspect::stats(&open(g)?, snapshot.as_deref(), out),
        Command::Packs => inspect::packs(&open(g)?, out),
        Command::Pack(inspect::PackCommand::Show { id }) => inspect::pack_show(&open(g)?, id, out),
        Command::Index(c) => inspect::index(&open(g)?, c, out),
        Command::Cat(inspect::CatCommand::PackHeader { id }) => inspect::pack_header(repo_path(g)?, id, out),
        Command::Cat(c) => inspect::cat(&open(g)?, c, out),
        Command::VerifyBlob { id } => inspect::verify_blob(&open(g)?, id, out),
        Command::Check { read_data, read_data_subset } => {
            let subset = read_data_subset.as_deref().map(DataSubset::parse).transpose().map_err(explain)?;
            let read_data = *read_data || subset.is_some();
            let repo = open(g)?;
            let options = CheckOptions {
                read_data,
                read_data_subset: subset,
                no_lock: g.no_lock,
                progress: Bar::wanted(g.quiet, g.json),
            };
            let report = repo.check(options).map_err(explain)?;
            out.check(&report, read_data)?;
            Ok(if report.is_ok() { 0 } else { 3 })
        }
        Command::Forget { snapshots, keep_last, keep_daily, keep_weekly, keep_monthly, dry_run } => {
            let repo = open(g)?;
            let mut ids = Vec::new();
            for s in snapshots {
                let id = if s == "latest" {
                    repo.find_snapshot(s).map_err(explain)?.0
                } else {
                    repo.snapshot_id(s).map_err(explain)?
                };
                ids.push(id);
            }
            let policy = ForgetPolicy {
                ids,
                keep_last: *keep_last,
                keep_daily: *keep_daily,
                keep_weekly: *keep_weekly,
                keep_monthly: *keep_monthly,
            };
            let report = repo.forget(&policy, *dry_run).map_err(explain)?;
            out.forget(&report, *dry_run)?;
            Ok(0)
        }
        Command::Prune { max_unused, dry_run } => {
            if !(0.0..=100.0).contains(max_unused) {
                bail!("--max-unused must be a percentage between 0 and 100");
            }
            let mut repo = open(g)?;
            let report =
                repo.prune(PruneOptions { max_unused_percent: *max_unused, dry_run: *dry_run }).map_err(explain)?;
            out.prune(&report, *dry_run)?;
            Ok(0)
        }
        Command::Repair(RepairCommand::Index) => {
            let mut repo = open(g)?;
            let (packs, bad) = repo.repair_index().map_err(explain)?;
            for (p, e) in &bad {
                eprintln!("packtool: warning: pack {p} left out: {e}");
            }
            out.repair_index(packs, bad.len())?;
            Ok(if bad.is_empty() { 0 } else { 3 })
        }
        Command::Repair(RepairCommand::Snapshots) => {
            let mut repo = open(g)?;
            let report = repo.repair_snapshots().map_err(explain)?;
            out.repair_snapshots(&report)?;
            Ok(0)
        }
        Command::Unlock { force } => {
            let repo = open(g)?;
            let removed = repo.unlock(*force).map_err(explain)?;
            out.locks(&removed, "removed")?;
            Ok(0)
        }
        Command::Locks => {
            let repo = open(g)?;
            out.locks(&repo.locks().map_err(explain)?, "")?;
            Ok(0)
        }
    }
}

pub(crate) fn cmd_init(g: &Global, a: &InitArgs, out: &Out) -> anyhow::Result<u8> {
    let path = repo_path(g)?;
    let creds = new_repo_passphrase(g)?;
    let avg = a.chunk_avg.checked_mul(1024).context("--chunk-avg too large")?;
    let options = InitOptions {
        chunker: ChunkerParams {
            min_size: avg / 4,
            avg_size: avg,
            max_size: avg.saturating_mul(4),
            ..ChunkerParams::default()
        },
        zstd_level: a.zstd_level,
        pack_target_size: a.pack_size.checked_mul(1 << 20).context("--pack-size too large")?,
        kdf: Argon2Params {
            m_kib: a.kdf_memory.checked_mul(1024).context("--kdf-memory too large")?,
            t: a.kdf_iterations,
            p: 1,
        },
        label: a.label.clone(),
        cache_dir: cache_dir(g),
        state: client_state(g),
    };
    // Refuse a weak passphrase before anything is written.
    if let Credentials::Passphrase(p) = &creds {
        packvault::check_passphrase_strength(p).map_err(explain)?;
    }
    let existed = path.exists();
    let s3 = s3_url(g)?.is_some();
    let store = store(g, true)?;
    let repo = match Repository::init(store, &creds, options) {
        Ok(r) => r,
        Err(e) if s3 => {
            return Err(explain(e)).with_context(|| format!("cannot create repository at {}", path.display()))
        }
        Err(e) => {
            // Leave no half-made repository behind: remove what init created.
            if existed {
                for d in ["keys", "packs", "index", "snapshots", "locks", "tombstones", "config"] {
                    let _ = std::fs::remove_dir_all(path.join(d)).or_else(|_| std::fs::remove_file(path.join(d)));
                }
            } else {
                let _ = std::fs::remove_dir_all(path);
            }
            return Err(explain(e));
        }
    };
    out.init(path, &repo)?;
    Ok(0)
}

pub(crate) fn cmd_backup(
    g: &Global,
    dir: &Path,
    tags: &[String],
    append_only: &[String],
    out: &Out,
) -> anyhow::Result<u8> {
    let mut repo = open(g)?;
    let started = std::time::Instant::now();
    let mut session = repo.backup().map_err(explain)?;
    if let Some(bar) = Bar::wanted(g.quiet, g.json) {
        session.set_progress(bar);
    }
    let options = DirOptions { append_only: append_only.to_vec(), ..DirOptions::default() };
    session
        .add_dir_with(dir, "", &options)
        .map_err(explain)
        .with_context(|| format!("cannot back up {}", dir.display()))?;
    let outcome = session.commit(SnapshotInfo::tagged(tags.iter().cloned())).map_err(explain)?;
    for (path, e) in &outcome.warnings {
        eprintln!("packtool: warning: {}: {e}", path.display());
    }
    // The index cache's warnings were printed when the repository opened.
    for w in outcome.cache_warnings.iter().filter(|w| w.path.file_name().is_some_and(|n| n == "files.cache")) {
        eprintln!("packtool: warning: local cache {} ignored and rebuilt: {}", w.path.display(), w.error);
    }
    out.backup(&outcome, started.elapsed())?;
    if !outcome.warnings.is_empty() {
        eprintln!(
            "packtool: error: snapshot {} saved, but {} files could not be read (listed above)",
            outcome.snapshot.short(),
            outcome.warnings.len()
        );
        return Ok(1);
    }
    Ok(0)
}

pub(crate) fn kdf(memory_mib: u32, iterations: u32) -> anyhow::Result<Argon2Params> {
    Ok(Argon2Params { m_kib: memory_mib.checked_mul(1024).context("--kdf-memory too large")?, t: iterations, p: 1 })
}

pub(crate) fn cmd_key(g: &Global, k: &KeyCommand, out: &Out) -> anyhow::Result<u8> {
    if let KeyCommand::Rotate { kdf_memory, kdf_iterations, label } = k {
        return crate::rotate::cmd_rotate(g, *kdf_memory, *kdf_iterations, label.clone(), out);
    }
    let repo = open(g)?;
    let keys = repo.keys();
    match k {
        KeyCommand::List => out.keys(&keys.list().map_err(explain)?)?,
        KeyCommand::Add { passphrase, recovery_code, pin, device, label, kdf_memory, kdf_iterations } => {
            let params = kdf(*kdf_memory, *kdf_iterations)?;
            if *device {
                let label = if label.is_empty() {
                    format!(
                        "device {}",
                        std::fs::read_to_string("/proc/sys/kernel/hostname")
                            .map(|h| h.trim().to_string())
                            .unwrap_or_default()
                    )
                } else {
                    label.clone()
                };
                let id = keys.add_device_key(&label).map_err(explain)?;
                out.key_added(&id, "device")?;
            } else if *recovery_code {
                let (id, code) = keys.add_recovery_code(label).map_err(explain)?;
                out.recovery_code(&id, &code)?;
            } else if *pin {
                let v = vault(g)?;
                let new = new_secret("PACKTOOL_NEW_PIN", "new PIN")?;
                let id = keys.add_pin(&new, v.as_ref(), params, label).map_err(explain)?;
                out.key_added(&id, "pin")?;
            } else if *passphrase {
                let new = new_secret("PACKTOOL_NEW_PASSPHRASE", "new passphrase")?;
                let id = keys.add_passphrase(&new, params, label).map_err(explain)?;
                out.key_added(&id, "passphrase")?;
            } else {
                bail!("say which kind of keyslot to add: --passphrase, --recovery-code, --pin or --device");
            }
        }
        KeyCommand::Remove { id } => {
            let slot = keys.resolve(id).map_err(explain)?;
            keys.remove(&slot.id).map_err(explain)?;
            out.key_removed(&slot.id)?;
        }
        KeyCommand::Passwd { id, kdf_memory, kdf_iterations } => {
            let slot = keys.resolve(id).map_err(explain)?;
            match slot.kind {
                "recovery-code" => {
                    let (new_id, code) = keys.rotate_recovery_code(&slot.id).map_err(explain)?;
                    out.recovery_code(&new_id, &code)?;
                }
                "pin" => {
                    let v = vault(g)?;
                    let new = new_secret("PACKTOOL_NEW_PIN", "new PIN")?;
                    let new_id = keys.change_pin(&slot.id, &new, v.as_ref()).map_err(explain)?;
                    out.key_added(&new_id, "pin")?;
                }
                _ => {
                    let new = new_secret("PACKTOOL_NEW_PASSPHRASE", "new passphrase")?;
                    let params = match (kdf_memory, kdf_iterations) {
                        (None, None) => None,
                        (m, t) => Some(kdf(m.unwrap_or(256), t.unwrap_or(3))?),
                    };
                    let new_id = keys.change_passphrase(&slot.id, &new, params).map_err(explain)?;
                    out.key_added(&new_id, "passphrase")?;
                }
            }
        }
        KeyCommand::Rotate { .. } => unreachable!("handled above"),
    }
    Ok(0)
}

fn cmd_trust(g: &Global, forget: bool, out: &Out) -> anyhow::Result<u8> {
    let path = repo_path(g)?;
    let location = store(g, false)?.location();
    let state = client_state(g);
    if forget {
        let had = packvault::forget_pin(&state, &location).map_err(explain)?;
        out.trust_forgotten(path, had)?;
        return Ok(0);
    }
    let pinned = packvault::pinned_fingerprint(&state, &location).map_err(explain)?;
    let repo = open(g)?;
    out.trust(path, &repo.fingerprint(), pinned.is_none(), repo.pin_path())?;
    Ok(0)
}

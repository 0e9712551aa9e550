//! `packtool`: the command-line front end of packvault.
//!
//! It parses arguments, calls the library and prints; it has no format logic of its own.
//! Exit codes: 0 success, 1 error, 2 usage error, 3 integrity problems found (by `check`, or
//! files a `restore` could not restore), 4 repository locked by another client.

mod inspect;
mod output;
mod progress;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use packvault::format::config::ChunkerParams;
use packvault::format::keyslot::Argon2Params;
use packvault::{
    CheckOptions, Credentials, DataSubset, ErrorKind, FileVault, ForgetPolicy, InitOptions, LocalStore, OpenOptions,
    Passphrase, PruneOptions, Repository, RestoreOptions, Store,
};
use zeroize::Zeroizing;

use crate::output::Out;
use crate::progress::Bar;

const AFTER_HELP: &str = "\
Credentials (the first one given is used; otherwise a passphrase prompt on a terminal):
  --passphrase-file F, --recovery-code-file F, PACKTOOL_PASSPHRASE, PACKTOOL_RECOVERY_CODE,
  PACKTOOL_PIN with --vault PATH

Environment:
  PACKTOOL_REPO             repository folder (instead of --repo)
  PACKTOOL_CACHE_DIR        local cache folder (default: $XDG_CACHE_HOME/packvault or ~/.cache/packvault)
  PACKTOOL_STATE_DIR        local state folder for rollback detection
                            (default: $XDG_STATE_HOME/packvault or ~/.local/state/packvault)
  PACKTOOL_NEW_PASSPHRASE   new passphrase for `key add --passphrase` and `key passwd`
  PACKTOOL_NEW_PIN          new PIN for `key add --pin` and `key passwd`

Exit codes:
  0  success
  1  error (the message says what went wrong)
  2  usage error
  3  integrity problems found (check), or some files could not be restored (restore)
  4  the repository is locked by another client (see --retry-lock and `unlock`)";

/// Back up, restore and inspect packvault repositories.
#[derive(Parser, Debug)]
#[command(name = "packtool", version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// Repository folder.
    #[arg(short = 'r', long, global = true, env = "PACKTOOL_REPO", value_name = "PATH")]
    repo: Option<PathBuf>,
    /// Read the passphrase from the first line of this file.
    #[arg(long, global = true, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Read a recovery code from the first line of this file.
    #[arg(long, global = true, value_name = "FILE")]
    recovery_code_file: Option<PathBuf>,
    /// PIN vault file (with PACKTOOL_PIN, or for `key add --pin`). THIS IS A TEST VAULT, NOT AN
    /// HSM: anyone who can read the file can guess the PIN offline.
    #[arg(long, global = true, value_name = "PATH")]
    vault: Option<PathBuf>,
    /// Local state folder (newest snapshot seen, for rollback detection).
    #[arg(long, global = true, env = "PACKTOOL_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Open a repository even if it is older than this client has seen before.
    #[arg(long, global = true)]
    allow_rollback: bool,
    /// Local cache folder for the index.
    #[arg(long, global = true, env = "PACKTOOL_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not use a local cache (the index is rebuilt in memory at every run).
    #[arg(long, global = true)]
    no_cache: bool,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing on success.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Wait up to this long for another client's conflicting lock to go (e.g. 30s, 10m, 1h).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    retry_lock: std::time::Duration,
    /// Take no lock for restore and check (for a repository on read-only storage).
    #[arg(long, global = true)]
    no_lock: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up the contents of a folder as a new snapshot.
    Backup {
        /// Folder whose contents become the snapshot's root.
        dir: PathBuf,
        /// Tag for the snapshot (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
    /// List snapshots.
    Snapshots,
    /// List the files of a snapshot.
    Ls {
        /// Snapshot id (or unique prefix) or `latest`.
        snapshot: String,
        /// Path inside the snapshot.
        path: Option<String>,
        /// Long form: type, mode, size, modification time.
        #[arg(short, long)]
        long: bool,
    },
    /// Restore a snapshot into a folder.
    Restore {
        /// Snapshot id (or unique prefix) or `latest`.
        snapshot: String,
        /// Folder to restore into (created if missing).
        #[arg(long, short)]
        target: PathBuf,
        /// Restore only this path of the snapshot (repeatable).
        #[arg(long = "include", value_name = "PATH")]
        include: Vec<String>,
        /// Replace files that already exist in the target.
        #[arg(long)]
        overwrite: bool,
        /// Flush restored files to disk before renaming them into place (safe against power
        /// loss, at the cost of waiting for the disk).
        #[arg(long)]
        sync: bool,
    },
    /// Check the repository's structure, and with --read-data every byte.
    Check {
        /// Read every pack and open every blob.
        #[arg(long)]
        read_data: bool,
        /// Read only part of the packs: `N/M` (part N of M; parts 1..M together read all) or
        /// `P%` (a random P percent). Implies --read-data.
        #[arg(long, value_name = "N/M|P%")]
        read_data_subset: Option<String>,
    },
    /// Remove snapshots by id or by a keep policy (the data goes with the next `prune`).
    Forget {
        /// Snapshot ids (or unique prefixes) to remove.
        snapshots: Vec<String>,
        /// Keep the newest N snapshots.
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Keep the newest snapshot of each of the last N days that have one.
        #[arg(long, value_name = "N")]
        keep_daily: Option<usize>,
        /// Keep the newest snapshot of each of the last N weeks that have one.
        #[arg(long, value_name = "N")]
        keep_weekly: Option<usize>,
        /// Keep the newest snapshot of each of the last N months that have one.
        #[arg(long, value_name = "N")]
        keep_monthly: Option<usize>,
        /// Print what would be kept and removed, remove nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Delete data no snapshot needs: unused packs go, partly used ones are rewritten.
    Prune {
        /// Rewrite the least used packs until unused space is at most this percentage.
        #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
        max_unused: f64,
        /// Print what would be removed and kept, change nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Rebuild damaged repository metadata.
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Remove locks left by crashed clients (stale ones only, unless --force).
    Unlock {
        /// Remove every lock, live ones too. Only when no other client is running!
        #[arg(long)]
        force: bool,
    },
    /// List the repository's locks.
    Locks,
    /// Manage keyslots: the passphrases, recovery codes and PINs that open the repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Which snapshots contain a path matching PATTERN (`*`, `**`, `?`; without `/`, names only).
    Find {
        /// Glob pattern.
        pattern: String,
    },
    /// Paths added, removed and modified between two snapshots.
    Diff {
        /// The older snapshot (id, prefix or `latest`).
        snapshot1: String,
        /// The newer snapshot.
        snapshot2: String,
    },
    /// Sizes, dedup and compression ratios, chunk and pack histograms.
    Stats {
        /// Only this snapshot (default: all).
        snapshot: Option<String>,
    },
    /// List packs: id, kind, size, blob count, the index file that lists each.
    Packs,
    /// Look inside one pack.
    #[command(subcommand)]
    Pack(inspect::PackCommand),
    /// The merged index.
    #[command(subcommand)]
    Index(inspect::IndexCommand),
    /// Print a repository object, decrypted, as JSON (`blob` prints raw bytes).
    #[command(subcommand)]
    Cat(inspect::CatCommand),
    /// Fetch one blob, open it and check its id.
    VerifyBlob {
        /// Blob id or unique prefix (at least 8 hex digits).
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum RepairCommand {
    /// Rebuild the index from the packs' own directories.
    Index,
    /// Rewrite snapshots that refer to lost data, dropping the files that cannot be restored.
    Snapshots,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// List keyslots (never shows secrets).
    List,
    /// Add a keyslot.
    Add {
        /// A passphrase slot (the new passphrase from PACKTOOL_NEW_PASSPHRASE or a prompt).
        #[arg(long, group = "kind")]
        passphrase: bool,
        /// A recovery-code slot: a new code is printed once; write it down.
        #[arg(long, group = "kind")]
        recovery_code: bool,
        /// A PIN slot enrolled in --vault (the PIN from PACKTOOL_NEW_PIN or a prompt).
        #[arg(long, group = "kind")]
        pin: bool,
        /// Label shown by `key list`.
        #[arg(long, default_value = "")]
        label: String,
        /// Argon2id memory in MiB (passphrase and PIN slots).
        #[arg(long, default_value_t = 256, value_name = "MIB")]
        kdf_memory: u32,
        /// Argon2id passes (passphrase and PIN slots).
        #[arg(long, default_value_t = 3, value_name = "N")]
        kdf_iterations: u32,
    },
    /// Remove a keyslot (refused for the last one).
    Remove {
        /// Slot id or unique prefix.
        id: String,
    },
    /// Change a slot's passphrase or PIN, or issue a new recovery code (the old one stops
    /// working).
    Passwd {
        /// Slot id or unique prefix.
        id: String,
    },
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Argon2id memory for the passphrase keyslot, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    kdf_memory: u32,
    /// Argon2id passes for the passphrase keyslot.
    #[arg(long, default_value_t = 3, value_name = "N")]
    kdf_iterations: u32,
    /// zstd compression level.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    zstd_level: i32,
    /// Target pack size in MiB.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pack_size: u32,
    /// Average chunk size in KiB (minimum a quarter, maximum four times that).
    #[arg(long, default_value_t = 64, value_name = "KIB")]
    chunk_avg: u32,
    /// Label of the first keyslot.
    #[arg(long, default_value = "initial")]
    label: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let out = Out::new(cli.global.json, cli.global.quiet);
    match run(&cli, &out) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("packtool: error: {e:#}");
            let locked =
                e.chain().any(|c| c.downcast_ref::<packvault::Error>().is_some_and(|p| p.kind() == ErrorKind::Locked));
            ExitCode::from(if locked { 4 } else { 1 })
        }
    }
}

/// `90`, `90s`, `15m`, `2h` → a duration.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30s, 10m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m or h)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

fn repo_path(g: &Global) -> anyhow::Result<&Path> {
    g.repo.as_deref().ok_or_else(|| anyhow!("no repository given: use --repo PATH or set PACKTOOL_REPO"))
}

fn cache_dir(g: &Global) -> Option<PathBuf> {
    if g.no_cache {
        return None;
    }
    g.cache_dir.clone().or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("packvault"))
    })
}

fn first_line(f: &Path, what: &str) -> anyhow::Result<String> {
    let text =
        Zeroizing::new(std::fs::read_to_string(f).with_context(|| format!("cannot read {what} file {}", f.display()))?);
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        bail!("{what} file {} is empty", f.display());
    }
    Ok(line)
}

fn nonempty_env(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.is_empty() => bail!("{name} is set but empty"),
        Ok(v) => Ok(Some(v)),
        Err(_) => Ok(None),
    }
}

fn vault(g: &Global) -> anyhow::Result<Arc<FileVault>> {
    let path = g.vault.as_ref().context("a PIN needs its vault: use --vault PATH")?;
    Ok(Arc::new(FileVault::new(path)))
}

/// A secret asked on the terminal (twice when `confirm`).
fn prompt(what: &str, confirm: bool) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no {what} given and no terminal to ask on");
    }
    let p = rpassword::prompt_password(format!("{what}: ")).with_context(|| format!("cannot read the {what}"))?;
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password(format!("repeat {what}: "))
                .with_context(|| format!("cannot read the {what}"))?,
        );
        if *again != p {
            bail!("the two {what}s differ");
        }
    }
    if p.is_empty() {
        bail!("the {what} is empty");
    }
    Ok(p)
}

/// The credentials to open a repository: files first, then the environment, then a prompt.
fn credentials(g: &Global) -> anyhow::Result<Credentials> {
    if let Some(f) = &g.passphrase_file {
        return Ok(Credentials::passphrase(first_line(f, "passphrase")?));
    }
    if let Some(f) = &g.recovery_code_file {
        return Credentials::recovery_code(&first_line(f, "recovery code")?).map_err(explain);
    }
    if let Some(p) = nonempty_env("PACKTOOL_PASSPHRASE")? {
        return Ok(Credentials::passphrase(p));
    }
    if let Some(c) = nonempty_env("PACKTOOL_RECOVERY_CODE")? {
        return Credentials::recovery_code(&c).map_err(explain);
    }
    if let Some(pin) = nonempty_env("PACKTOOL_PIN")? {
        return Ok(Credentials::pin(pin, vault(g)?));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: set PACKTOOL_PASSPHRASE (or PACKTOOL_RECOVERY_CODE, or PACKTOOL_PIN with --vault), use --passphrase-file, or run in a terminal");
    }
    Ok(Credentials::passphrase(prompt("passphrase", false)?))
}

/// The passphrase for a new repository: file, environment, or asked twice.
fn new_repo_passphrase(g: &Global) -> anyhow::Result<Credentials> {
    if let Some(f) = &g.passphrase_file {
        return Ok(Credentials::passphrase(first_line(f, "passphrase")?));
    }
    if let Some(p) = nonempty_env("PACKTOOL_PASSPHRASE")? {
        return Ok(Credentials::passphrase(p));
    }
    Ok(Credentials::passphrase(prompt("passphrase", true)?))
}

fn state_dir(g: &Global) -> Option<PathBuf> {
    g.state_dir.clone().or_else(|| {
        std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .map(|d| d.join("packvault"))
    })
}

fn open(g: &Global) -> anyhow::Result<Repository> {
    let path = repo_path(g)?;
    let store: Arc<dyn Store> = Arc::new(LocalStore::open(path).map_err(explain)?);
    let creds = credentials(g)?;
    let options = OpenOptions {
        cache_dir: cache_dir(g),
        state_dir: state_dir(g),
        allow_rollback: g.allow_rollback,
        lock_wait: g.retry_lock,
    };
    Repository::open(store, &creds, &options)
        .map_err(explain)
        .with_context(|| format!("cannot open repository {}", path.display()))
}

/// Library errors pass through unchanged; this names the common ones more plainly.
fn explain(e: packvault::Error) -> anyhow::Error {
    match e.kind() {
        ErrorKind::WrongPassphrase => anyhow!("wrong passphrase: no keyslot of this repository opens with it"),
        _ => anyhow::Error::new(e),
    }
}

fn run(cli: &Cli, out: &Out) -> anyhow::Result<u8> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => cmd_init(g, a, out),
        Command::Backup { dir, tags } => cmd_backup(g, dir, tags, out),
        Command::Snapshots => {
            let repo = open(g)?;
            let (snaps, damaged) = repo.snapshots_with_errors().map_err(explain)?;
            out.snapshots(&snaps)?;
            for (id, e) in &damaged {
                eprintln!("packtool: damaged snapshot {}: {e}", id.short());
            }
            Ok(if damaged.is_empty() { 0 } else { 3 })
        }
        Command::Ls { snapshot, path, long } => {
            let repo = open(g)?;
            let (_, rec) = repo.find_snapshot(snapshot).map_err(explain)?;
            let nodes = repo.list(&rec, path.as_deref().unwrap_or(""), true).map_err(explain)?;
            out.listing(&nodes, *long)?;
            Ok(0)
        }
        Command::Restore { snapshot, target, include, overwrite, sync } => {
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
                        no_lock: g.no_lock,
                        progress: Bar::wanted(g.quiet, g.json),
                    },
                )
                .map_err(explain)?;
            out.restore(&id, target, &report)?;
            Ok(if report.is_complete() { 0 } else { 3 })
        }
        Command::Key(k) => cmd_key(g, k, out),
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

fn cmd_init(g: &Global, a: &InitArgs, out: &Out) -> anyhow::Result<u8> {
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
        state_dir: state_dir(g),
    };
    // Refuse a weak passphrase before anything is written.
    if let Credentials::Passphrase(p) = &creds {
        packvault::check_passphrase_strength(p).map_err(explain)?;
    }
    let existed = path.exists();
    let store = LocalStore::create(path)
        .map_err(explain)
        .with_context(|| format!("cannot create repository at {}", path.display()))?;
    let repo = match Repository::init(Arc::new(store), &creds, options) {
        Ok(r) => r,
        Err(e) => {
            // Leave no half-made repository behind: remove what init created.
            if existed {
                for d in ["keys", "packs", "index", "snapshots", "locks", "config"] {
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

fn cmd_backup(g: &Global, dir: &Path, tags: &[String], out: &Out) -> anyhow::Result<u8> {
    let mut repo = open(g)?;
    let started = std::time::Instant::now();
    let mut session = repo.backup().map_err(explain)?;
    if let Some(bar) = Bar::wanted(g.quiet, g.json) {
        session.set_progress(bar);
    }
    session.add_dir(dir, "").map_err(explain).with_context(|| format!("cannot back up {}", dir.display()))?;
    let outcome = session.commit(tags.to_vec()).map_err(explain)?;
    for (path, e) in &outcome.warnings {
        eprintln!("packtool: warning: {}: {e}", path.display());
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

fn kdf(memory_mib: u32, iterations: u32) -> anyhow::Result<Argon2Params> {
    Ok(Argon2Params { m_kib: memory_mib.checked_mul(1024).context("--kdf-memory too large")?, t: iterations, p: 1 })
}

fn new_secret(env: &str, what: &str) -> anyhow::Result<Passphrase> {
    match nonempty_env(env)? {
        Some(p) => Ok(Passphrase::new(p)),
        None => Ok(Passphrase::new(prompt(what, true)?)),
    }
}

fn cmd_key(g: &Global, k: &KeyCommand, out: &Out) -> anyhow::Result<u8> {
    let repo = open(g)?;
    let keys = repo.keys();
    match k {
        KeyCommand::List => out.keys(&keys.list().map_err(explain)?)?,
        KeyCommand::Add { passphrase, recovery_code, pin, label, kdf_memory, kdf_iterations } => {
            let params = kdf(*kdf_memory, *kdf_iterations)?;
            if *recovery_code {
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
                bail!("say which kind of keyslot to add: --passphrase, --recovery-code or --pin");
            }
        }
        KeyCommand::Remove { id } => {
            keys.remove(id).map_err(explain)?;
            out.key_removed(id)?;
        }
        KeyCommand::Passwd { id } => {
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
                    let new_id = keys.change_passphrase(&slot.id, &new, None).map_err(explain)?;
                    out.key_added(&new_id, "passphrase")?;
                }
            }
        }
    }
    Ok(0)
}

//! The command line: arguments, subcommands and their help.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

use crate::inspect;

pub(crate) const AFTER_HELP: &str = "\
Credentials (the first one given is used; otherwise a passphrase prompt on a terminal):
  --passphrase-file F, --recovery-code-file F, PACKTOOL_PASSPHRASE, PACKTOOL_RECOVERY_CODE,
  PACKTOOL_PIN with --vault-url URL and --vault-key KEY (a packvault-vault server), or with
  --vault PATH (a file-backed TEST vault)

Environment:
  PACKTOOL_REPO             repository folder or s3: URL (instead of --repo)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE
                            S3 credentials (else ~/.aws/credentials)
  AWS_ENDPOINT_URL, AWS_REGION
                            S3 endpoint (for s3://BUCKET/PREFIX) and region
  PACKTOOL_CACHE_DIR        local cache folder (default: $XDG_CACHE_HOME/packvault or ~/.cache/packvault)
  PACKTOOL_STATE_DIR        local state folder for rollback detection
                            (default: $XDG_STATE_HOME/packvault or ~/.local/state/packvault)
  PACKTOOL_NEW_PASSPHRASE   new passphrase for `key add --passphrase`, `key passwd` and `key rotate`
  PACKTOOL_FROM_PASSPHRASE  passphrase of the source of `copy` (or PACKTOOL_FROM_RECOVERY_CODE)
  PACKTOOL_NEW_PIN          new PIN for `key add --pin` and `key passwd`
  PACKTOOL_VAULT_URL        PIN vault server (instead of --vault-url)
  PACKTOOL_VAULT_KEY        its public key (instead of --vault-key)

Exit codes:
  0  success
  1  error (the message says what went wrong)
  2  usage error
  3  integrity problems found (check), or some files could not be restored (restore)
  4  the repository is locked by another client (see --retry-lock and `unlock`)";

/// Back up, restore and inspect packvault repositories.
#[derive(Parser, Debug)]
#[command(name = "packtool", bin_name = "packtool", version, about, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Debug)]
pub(crate) struct Global {
    /// Repository folder, or an S3 URL: s3:http(s)://HOST[:PORT]/BUCKET/PREFIX, or
    /// s3://BUCKET/PREFIX with the endpoint in AWS_ENDPOINT_URL (AWS when unset).
    #[arg(short = 'r', long, global = true, env = "PACKTOOL_REPO", value_name = "PATH")]
    pub(crate) repo: Option<PathBuf>,
    /// S3 requests in flight at once, at most (for an s3: repository).
    #[arg(long, global = true, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) s3_connections: u16,
    /// Read the passphrase from the first line of this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// Read a recovery code from the first line of this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) recovery_code_file: Option<PathBuf>,
    /// FILE-BACKED TEST VAULT for PINs (with PACKTOOL_PIN, or for `key add --pin`). NOT FOR
    /// REAL USE: anyone who can read the file can guess the PIN offline. Use --vault-url.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "vault_url")]
    pub(crate) vault: Option<PathBuf>,
    /// PIN vault server, a `packvault-vault serve` (with PACKTOOL_PIN to open, or for
    /// `key add --pin` and `key passwd` of a PIN slot). Needs --vault-key.
    #[arg(long, global = true, env = "PACKTOOL_VAULT_URL", value_name = "URL")]
    pub(crate) vault_url: Option<String>,
    /// The PIN vault server's public key (64 hex digits, as `packvault-vault key` prints it):
    /// a server without it is refused.
    #[arg(long, global = true, env = "PACKTOOL_VAULT_KEY", value_name = "KEY")]
    pub(crate) vault_key: Option<String>,
    /// Local state folder: per repository location, the pinned repository and master key, the
    /// history seen, removed keyslots, this device's key.
    #[arg(long, global = true, env = "PACKTOOL_STATE_DIR", value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Open a repository even if its history is older than, or forked from, what this client
    /// has seen (only after restoring the repository from an old copy yourself).
    #[arg(long, global = true)]
    pub(crate) allow_rollback: bool,
    /// The fingerprint the repository must have (as `init` printed it), checked at first
    /// contact before any keyslot is tried.
    #[arg(long, global = true, value_name = "FINGERPRINT")]
    pub(crate) expect_fingerprint: Option<String>,
    /// Local cache folder for the index.
    #[arg(long, global = true, env = "PACKTOOL_CACHE_DIR", value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Do not use a local cache (the index is rebuilt in memory at every run).
    #[arg(long, global = true)]
    pub(crate) no_cache: bool,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print nothing on success.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Wait up to this long for another client's conflicting lock to go (e.g. 30s, 10m, 1h).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub(crate) retry_lock: std::time::Duration,
    /// Take no lock for restore and check (for a repository on read-only storage).
    #[arg(long, global = true)]
    pub(crate) no_lock: bool,
    /// Write what the storage provider sees of this command to FILE: every request (objects
    /// created and their sizes, reads with offset and length, lists, deletes) with its time,
    /// one JSON object per line.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) trace_store: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up the contents of a folder as a new snapshot.
    Backup {
        /// Folder whose contents become the snapshot's root.
        dir: PathBuf,
        /// Tag for the snapshot (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Files matching GLOB only grow (message logs): when one changed, check that its old
        /// last chunk is still in place and read only from there. Matched against the path
        /// relative to DIR: `*` and `?` stop at `/`, `**` crosses it (repeatable).
        #[arg(long = "append-only", value_name = "GLOB")]
        append_only: Vec<String>,
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
        /// Restore setuid, setgid and sticky bits (cleared by default: owners are not recorded,
        /// so a restore as root would otherwise make setuid-root files).
        #[arg(long)]
        keep_special_bits: bool,
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
    /// Show the repository's fingerprint and what this client pinned; --forget drops the pin.
    Trust {
        /// Forget this client's pin for the repository location (after you replaced the
        /// repository there yourself); the next open is a first contact.
        #[arg(long)]
        forget: bool,
    },
    /// Copy snapshots from another repository (--from) into this one (--to, or --repo):
    /// as they are when both share the master key, else sealed again under this one's key.
    Copy(crate::copy::CopyArgs),
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
pub(crate) enum RepairCommand {
    /// Rebuild the index from the packs' own directories.
    Index,
    /// Rewrite snapshots that refer to lost data, dropping the files that cannot be restored.
    Snapshots,
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeyCommand {
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
        /// A device slot: a random key kept in this client's state folder (0600) and used
        /// instead of the passphrase on this device from now on.
        #[arg(long, group = "kind")]
        device: bool,
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
    /// Remove a keyslot (refused for the last one). Clients that open the repository later
    /// refuse the slot if it is ever put back; whoever held its credential and a copy of the
    /// repository can still read what was written with the same master key.
    Remove {
        /// Slot id or unique prefix.
        id: String,
    },
    /// Move everything to a new master key at the same location and retire the old key: the
    /// way to revoke a leaked key, recovery code or device for good. The new key gets one
    /// keyslot, for the passphrase you open with (or PACKTOOL_NEW_PASSPHRASE); other slots
    /// must be added again. Interrupted, run it again with the same passphrase to finish.
    #[command(after_help = crate::rotate::ROTATE_HELP)]
    Rotate {
        /// Argon2id memory in MiB for the new slot (default: the current slot's, at least 256).
        #[arg(long, value_name = "MIB")]
        kdf_memory: Option<u32>,
        /// Argon2id passes for the new slot (default: the current slot's, at least 3).
        #[arg(long, value_name = "N")]
        kdf_iterations: Option<u32>,
        /// Label of the new slot (default: the current slot's).
        #[arg(long)]
        label: Option<String>,
    },
    /// Change a slot's passphrase or PIN, or issue a new recovery code (the old one stops
    /// working).
    Passwd {
        /// Slot id or unique prefix.
        id: String,
        /// Argon2id memory in MiB for the new slot (default: the old slot's, at least 256).
        #[arg(long, value_name = "MIB")]
        kdf_memory: Option<u32>,
        /// Argon2id passes for the new slot (default: the old slot's, at least 3).
        #[arg(long, value_name = "N")]
        kdf_iterations: Option<u32>,
    },
}

#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// Argon2id memory for the passphrase keyslot, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub(crate) kdf_memory: u32,
    /// Argon2id passes for the passphrase keyslot.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub(crate) kdf_iterations: u32,
    /// zstd compression level.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    pub(crate) zstd_level: i32,
    /// Target pack size in MiB.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub(crate) pack_size: u32,
    /// Average chunk size in KiB (minimum a quarter, maximum four times that).
    #[arg(long, default_value_t = 64, value_name = "KIB")]
    pub(crate) chunk_avg: u32,
    /// Label of the first keyslot.
    #[arg(long, default_value = "initial")]
    pub(crate) label: String,
}

/// `90`, `90s`, `15m`, `2h` → a duration.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
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

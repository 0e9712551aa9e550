//! Reaching a repository: where it is, the local cache and state folders, and the credentials
//! that open it (files, environment, or a prompt).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use packvault::{
    ClientState, Credentials, ErrorKind, FileVault, LocalStore, OpenOptions, Passphrase, PinVault, Repository, Store,
};
use packvault_vault::{RemoteVault, VaultKey};
use zeroize::Zeroizing;

use crate::cli::Global;

pub(crate) fn repo_path(g: &Global) -> anyhow::Result<&Path> {
    g.repo.as_deref().ok_or_else(|| anyhow!("no repository given: use --repo PATH or set PACKTOOL_REPO"))
}

/// The `s3:` URL that --repo names, if it names one.
pub(crate) fn s3_url(g: &Global) -> anyhow::Result<Option<&str>> {
    Ok(as_s3_url(repo_path(g)?))
}

fn as_s3_url(location: &Path) -> Option<&str> {
    location.to_str().filter(|s| s.starts_with("s3:"))
}

/// The store --repo names: a folder that exists, or an S3 bucket and prefix (`create`: for
/// `init`, which makes the folder).
pub(crate) fn store(g: &Global, create: bool) -> anyhow::Result<Arc<dyn Store>> {
    store_at(g, repo_path(g)?, create)
}

/// The store at `location`, a folder or an `s3:` URL (the S3 options from `g`).
pub(crate) fn store_at(g: &Global, location: &Path, create: bool) -> anyhow::Result<Arc<dyn Store>> {
    Ok(crate::trace::wrap(g, untraced_store_at(g, location, create)?))
}

fn untraced_store_at(g: &Global, location: &Path, create: bool) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = as_s3_url(location) {
        return s3_store(g, url);
    }
    if create {
        let store = LocalStore::create(location)
            .map_err(explain)
            .with_context(|| format!("cannot create repository at {}", location.display()))?;
        return Ok(Arc::new(store));
    }
    Ok(Arc::new(LocalStore::open(location).map_err(explain)?))
}

#[cfg(feature = "s3")]
fn s3_store(g: &Global, url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let options = packvault::S3Options { connections: usize::from(g.s3_connections), ..Default::default() };
    Ok(Arc::new(packvault::S3Store::open(url, options).map_err(explain)?))
}

#[cfg(not(feature = "s3"))]
fn s3_store(_: &Global, _: &str) -> anyhow::Result<Arc<dyn Store>> {
    bail!("this packtool was built without S3 support (cargo feature `s3`)")
}

pub(crate) fn cache_dir(g: &Global) -> Option<PathBuf> {
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

pub(crate) fn first_line(f: &Path, what: &str) -> anyhow::Result<String> {
    let text =
        Zeroizing::new(std::fs::read_to_string(f).with_context(|| format!("cannot read {what} file {}", f.display()))?);
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        bail!("{what} file {} is empty", f.display());
    }
    Ok(line)
}

pub(crate) fn nonempty_env(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.is_empty() => bail!("{name} is set but empty"),
        Ok(v) => Ok(Some(v)),
        Err(_) => Ok(None),
    }
}

/// The PIN vault: the server at --vault-url (pinned to --vault-key), or the file-backed test
/// vault at --vault PATH.
pub(crate) fn vault(g: &Global) -> anyhow::Result<Arc<dyn PinVault>> {
    if let Some(url) = &g.vault_url {
        let key = g
            .vault_key
            .as_deref()
            .context("--vault-url needs the vault's public key: --vault-key KEY or PACKTOOL_VAULT_KEY (`packvault-vault key` prints it)")?;
        let key: VaultKey = key.parse().map_err(|e| anyhow!("--vault-key: {e}"))?;
        return Ok(Arc::new(RemoteVault::new(url, key).map_err(|e| anyhow!("--vault-url: {e}"))?));
    }
    let path = g.vault.as_ref().context("a PIN needs its vault: use --vault-url URL with --vault-key KEY")?;
    Ok(Arc::new(FileVault::new(path)))
}

/// A secret asked on the terminal (twice when `confirm`).
pub(crate) fn prompt(what: &str, confirm: bool) -> anyhow::Result<String> {
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
pub(crate) fn credentials(g: &Global) -> anyhow::Result<Credentials> {
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
        bail!("no passphrase: set PACKTOOL_PASSPHRASE (or PACKTOOL_RECOVERY_CODE, or PACKTOOL_PIN with --vault-url), use --passphrase-file, or run in a terminal");
    }
    Ok(Credentials::passphrase(prompt("passphrase", false)?))
}

/// The passphrase for a new repository: file, environment, or asked twice.
pub(crate) fn new_repo_passphrase(g: &Global) -> anyhow::Result<Credentials> {
    if let Some(f) = &g.passphrase_file {
        return Ok(Credentials::passphrase(first_line(f, "passphrase")?));
    }
    if let Some(p) = nonempty_env("PACKTOOL_PASSPHRASE")? {
        return Ok(Credentials::passphrase(p));
    }
    Ok(Credentials::passphrase(prompt("passphrase", true)?))
}

/// Where this client keeps its pins: `--state-dir`, else the platform's state folder.
pub(crate) fn client_state(g: &Global) -> ClientState {
    match &g.state_dir {
        Some(d) => ClientState::Dir(d.clone()),
        None => ClientState::Platform,
    }
}

fn open_options(g: &Global) -> OpenOptions {
    OpenOptions {
        cache_dir: cache_dir(g),
        state: client_state(g),
        expect_fingerprint: g.expect_fingerprint.clone(),
        allow_rollback: g.allow_rollback,
        lock_wait: g.retry_lock,
    }
}

/// True when a credential was named on the command line or in the environment.
fn credential_given(g: &Global) -> bool {
    g.passphrase_file.is_some()
        || g.recovery_code_file.is_some()
        || ["PACKTOOL_PASSPHRASE", "PACKTOOL_RECOVERY_CODE", "PACKTOOL_PIN"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Opens the repository: with this device's key when the client holds one (no key
/// derivation), else with the credentials given; prints the fingerprint at first contact and
/// what the history check found.
pub(crate) fn open(g: &Global) -> anyhow::Result<Repository> {
    let path = repo_path(g)?;
    let store = store(g, false)?;
    let options = open_options(g);
    let device = packvault::has_device_key(&options.state, &store.location()).map_err(explain)?;
    let opened = if device {
        match Repository::open(store.clone(), &Credentials::DeviceKey, &options) {
            Ok(r) => Ok(r),
            // The device key no longer opens (its slot was removed): say so, and fall back
            // to the credentials given.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::KeyslotRevoked) && credential_given(g) => {
                eprintln!("packtool: warning: this device's key no longer opens the repository ({e}); using the credentials given");
                Repository::open(store, &credentials(g)?, &options)
            }
            Err(e) => Err(e),
        }
    } else {
        Repository::open(store, &credentials(g)?, &options)
    };
    let repo = opened.map_err(explain).with_context(|| format!("cannot open repository {}", path.display()))?;
    if repo.first_contact() {
        eprintln!(
            "packtool: first contact with the repository at {}: pinned fingerprint {} (compare it with the one `init` printed)",
            path.display(),
            repo.fingerprint()
        );
    }
    for w in repo.index().cache_warnings() {
        eprintln!("packtool: warning: local cache {} ignored and rebuilt: {}", w.path.display(), w.error);
    }
    let h = repo.history_report();
    for (id, seq) in &h.vanished {
        eprintln!("packtool: warning: snapshot {} (sequence {seq}) is gone without a record of its removal: someone without the key deleted it (see `check`)", id.short());
    }
    for k in &h.reappeared_keyslots {
        eprintln!("packtool: warning: removed keyslot {k} is back in the repository; it is refused");
    }
    Ok(repo)
}

/// Library errors pass through unchanged; this names the common ones more plainly and adds the
/// packtool commands that help (library errors never name them).
pub(crate) fn explain(e: packvault::Error) -> anyhow::Error {
    match e.kind() {
        ErrorKind::WrongPassphrase => anyhow!("wrong passphrase: no keyslot of this repository opens with it"),
        ErrorKind::Locked => anyhow::Error::new(e)
            .context("another client holds the lock (--retry-lock DURATION waits for it; `packtool unlock` removes one a crashed client left)"),
        ErrorKind::RolledBack | ErrorKind::Forked => anyhow::Error::new(e).context(
            "refusing the repository's history; if you restored the repository from an old copy yourself, pass --allow-rollback",
        ),
        ErrorKind::RepositoryReplaced => anyhow::Error::new(e)
            .context("refusing the repository; if you replaced it yourself, run `packtool trust --forget` and open it again"),
        // The library says what is wrong; what to run about it is ours to say.
        ErrorKind::Integrity => anyhow::Error::new(e).context(
            "repository data is damaged or missing: `packtool check --read-data` names it and what it affects; `packtool repair index`, then `packtool repair snapshots`, drop what is lost",
        ),
        _ if e.is_retryable() => anyhow::Error::new(e).context("a transient failure: running the command again may succeed"),
        _ => anyhow::Error::new(e),
    }
}

pub(crate) fn new_secret(env: &str, what: &str) -> anyhow::Result<Passphrase> {
    match nonempty_env(env)? {
        Some(p) => Ok(Passphrase::new(p)),
        None => Ok(Passphrase::new(prompt(what, true)?)),
    }
}

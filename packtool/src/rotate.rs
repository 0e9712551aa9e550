//! `packtool key rotate`: a new master key at the same location, the old one retired.

use anyhow::Context;
use packvault::{Credentials, Passphrase, RotateOptions, RotateReport};
use serde_json::json;

use crate::access::{credentials, explain, nonempty_env, open, repo_path};
use crate::cli::Global;
use crate::commands::kdf;
use crate::output::{human_bytes, Out};
use crate::progress::Bar;

pub(crate) const ROTATE_HELP: &str = "\
What it does:
  Every snapshot is decrypted and sealed again under a new master key (chunks keep their
  boundaries), written beside the old data in the same repository; then the repository
  switches to the new key, and the old snapshots, index files, tombstones and keyslots go.
  The repository opens and keeps every snapshot if this is interrupted at any point; run it
  again with the same passphrase to finish.

Afterwards:
  - The fingerprint changes. This device follows; every other device refuses the repository
    until you run there `packtool trust --forget` and open it with --expect-fingerprint NEW
    (compare NEW with what this command prints).
  - The new key has one keyslot: the passphrase (PACKTOOL_NEW_PASSPHRASE if set, else the one
    you opened with). Add recovery codes, PINs and device keys again (`key add`).
  - Whoever held the old key can still read what they copied before, and the old packs until
    `packtool prune` deletes them: run prune next. Nothing written from now on.";

pub(crate) fn cmd_rotate(
    g: &Global,
    kdf_memory: Option<u32>,
    kdf_iterations: Option<u32>,
    label: Option<String>,
    out: &Out,
) -> anyhow::Result<u8> {
    let mut repo = open(g)?;
    let new_credentials = match nonempty_env("PACKTOOL_NEW_PASSPHRASE")? {
        Some(p) => Credentials::Passphrase(Passphrase::new(p)),
        None => credentials(g)?,
    };
    let options = RotateOptions {
        kdf: match (kdf_memory, kdf_iterations) {
            (None, None) => None,
            (m, t) => Some(kdf(m.unwrap_or(256), t.unwrap_or(3))?),
        },
        label,
        progress: Bar::wanted(g.quiet, g.json),
        cancel: None,
    };
    let path = repo_path(g)?;
    let report = repo
        .rotate_master(&new_credentials, options)
        .map_err(explain)
        .with_context(|| format!("cannot rotate the key of {}", path.display()))?;
    print_report(out, &report)?;
    Ok(0)
}

fn print_report(out: &Out, r: &RotateReport) -> std::io::Result<()> {
    let copy = r.copy.clone().unwrap_or_default();
    if out.is_json() {
        return out.json(&json!({
            "old_fingerprint": r.old_fingerprint,
            "new_fingerprint": r.new_fingerprint,
            "resumed": r.resumed,
            "new_slot": r.new_slot.map(|s| s.to_string()),
            "snapshots_copied": copy.copied.len(),
            "snapshots_present": copy.skipped.len(),
            "blobs_written": copy.blobs_written,
            "pack_bytes": copy.pack_bytes,
            "old_slots": r.old_slots.iter().map(|k| json!({"id": k.id.to_string(), "kind": k.kind, "label": k.label})).collect::<Vec<_>>(),
            "retired": {
                "snapshots": r.retired.snapshots,
                "index_files": r.retired.index_files,
                "tombstones": r.retired.tombstones,
                "keyslots": r.retired.keyslots,
                "dictionaries": r.retired.dictionaries,
            },
            "old_packs": r.old_packs,
        }));
    }
    if r.old_fingerprint.is_empty() {
        out.line("finished an interrupted key rotation")?;
    } else {
        out.line(&format!("new key: fingerprint {} (was {})", r.new_fingerprint, r.old_fingerprint))?;
    }
    if let Some(c) = &r.copy {
        out.line(&format!(
            "{} snapshots sealed again under the new key ({} already there): {} blobs, {}",
            c.copied.len(),
            c.skipped.len(),
            c.blobs_written,
            human_bytes(c.pack_bytes)
        ))?;
    }
    out.line(&format!(
        "retired the old key's {} snapshots, {} index files, {} tombstones, {} keyslots and {} dictionaries",
        r.retired.snapshots, r.retired.index_files, r.retired.tombstones, r.retired.keyslots, r.retired.dictionaries
    ))?;
    if let Some(slot) = &r.new_slot {
        out.line(&format!("the new key opens with one keyslot, {slot}"))?;
    }
    for k in &r.old_slots {
        out.line(&format!("  removed the old key's {} keyslot {} ({:?})", k.kind, k.id, k.label))?;
    }
    if r.old_slots.iter().any(|k| k.kind != "passphrase") {
        out.line("add recovery codes, PINs and device keys again for the new key (`packtool key add`)")?;
    }
    out.line(&format!(
        "other devices: run `packtool trust --forget` there, then open with --expect-fingerprint {}",
        r.new_fingerprint
    ))?;
    out.line(&format!("{} packs of the old key remain: run `packtool prune` to delete them", r.old_packs))
}

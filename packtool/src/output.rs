//! Human and JSON output. Field names of the JSON documents are stable and documented in the
//! README.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use packvault::format::snapshot::{Node, NodeContent, SnapshotRecord};
use packvault::{
    BackupOutcome, CheckReport, ForgetReport, KeyslotInfo, LockInfo, LockKind, PruneReport, RecoveryCode, RepairReport,
    Repository, RestoreReport, SlotId, SnapshotId,
};
use serde_json::{json, Value};

/// Where results go: text or JSON on stdout, nothing with `--quiet`.
/// Said by `init` and `check` on a store that does not refuse writes to taken names itself.
const CREATE_ONLY_NOTE: &str = "note: this S3 server ignores create-only writes (If-None-Match: *): packvault looks before each write instead, and takes locks with a settle delay (format-spec.md §5.14); nothing else depends on it";

pub struct Out {
    json: bool,
    quiet: bool,
}

/// `1234567` → `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Seconds since the epoch → `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn utc(secs: i64) -> String {
    packvault::utc_string(secs)
}

fn node_type(n: &Node) -> &'static str {
    match n.content {
        NodeContent::File { .. } => "file",
        NodeContent::Dir { .. } => "dir",
        NodeContent::Symlink { .. } => "symlink",
    }
}

pub fn snapshot_json(id: &SnapshotId, r: &SnapshotRecord) -> Value {
    let s = &r.summary;
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": utc(r.time_secs),
        "hostname": r.hostname,
        "username": r.username,
        "tags": r.tags,
        "paths": r.paths,
        "sequence": r.sequence,
        "previous": r.previous.map(|p| p.to_hex()),
        "root": r.root.to_hex(),
        "program": r.program,
        "summary": {
            "files": s.files,
            "dirs": s.dirs,
            "symlinks": s.symlinks,
            "total_bytes": s.total_bytes,
            "bytes_read": s.bytes_read,
            "chunks": s.chunks,
            "new_data_blobs": s.new_data_blobs,
            "new_tree_blobs": s.new_tree_blobs,
            "new_raw_bytes": s.new_raw_bytes,
            "new_stored_bytes": s.new_stored_bytes,
            "new_packs": s.new_packs,
        },
    })
}

impl Out {
    pub fn new(json: bool, quiet: bool) -> Out {
        Out { json, quiet }
    }

    /// True with `--json`.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// One JSON document on stdout.
    pub fn json(&self, v: &Value) -> std::io::Result<()> {
        let mut o = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut o, v)?;
        writeln!(o)
    }

    /// JSON even without `--json` (commands whose output is JSON), nothing with `--quiet`.
    pub fn json_always(&self, v: &Value) -> std::io::Result<()> {
        if self.quiet && !self.json {
            return Ok(());
        }
        self.json(v)
    }

    /// One line of text (nothing with `--quiet`).
    pub fn line(&self, s: &str) -> std::io::Result<()> {
        self.text(s)
    }

    fn text(&self, s: &str) -> std::io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        let mut o = std::io::stdout().lock();
        writeln!(o, "{s}")
    }

    pub fn init(&self, path: &Path, repo: &Repository) -> std::io::Result<()> {
        let id = repo.id().to_string();
        if self.json {
            return self
                .json(&json!({ "id": id, "path": path.display().to_string(), "fingerprint": repo.fingerprint() }));
        }
        self.text(&format!("created repository {id} at {}", path.display()))?;
        self.text(&format!(
            "fingerprint {} (a new device can check it with --expect-fingerprint)",
            repo.fingerprint()
        ))?;
        if repo.store().create_only() == Some(false) {
            self.text(CREATE_ONLY_NOTE)?;
        }
        self.text("keep the passphrase safe: without it the data cannot be recovered")
    }

    pub fn backup(&self, o: &BackupOutcome, took: Duration) -> std::io::Result<()> {
        let s = &o.record.summary;
        if self.json {
            let mut v = snapshot_json(&o.snapshot, &o.record);
            v["duration_secs"] = json!(took.as_secs_f64());
            v["files_new"] = json!(o.files_new);
            v["files_changed"] = json!(o.files_changed);
            v["files_unchanged"] = json!(o.files_unchanged);
            v["bytes_read"] = json!(s.bytes_read);
            v["appended"] = json!(o.appends.iter().filter(|a| a.resumed()).count());
            v["append_fallbacks"] = json!(o
                .appends
                .iter()
                .filter_map(|a| a.fallback.map(|why| json!({"path": a.path, "reason": why.to_string()})))
                .collect::<Vec<_>>());
            v["bytes_added"] = json!(s.new_stored_bytes);
            v["cache_warnings"] = json!(o
                .cache_warnings
                .iter()
                .map(|w| json!({"path": w.path.display().to_string(), "error": w.error.to_string()}))
                .collect::<Vec<_>>());
            v["warnings"] = json!(o
                .warnings
                .iter()
                .map(|(p, e)| json!({"path": p.display().to_string(), "error": e.to_string()}))
                .collect::<Vec<_>>());
            return self.json(&v);
        }
        self.text(&format!(
            "{} files ({} new, {} changed, {} unchanged), {} dirs, {} read in {:.1}s; added {} new chunks, {} stored ({} before compression) in {} packs",
            s.files,
            o.files_new,
            o.files_changed,
            o.files_unchanged,
            s.dirs,
            human_bytes(s.bytes_read),
            took.as_secs_f64(),
            s.new_data_blobs + s.new_tree_blobs,
            human_bytes(s.new_stored_bytes),
            human_bytes(s.new_raw_bytes),
            s.new_packs
        ))?;
        let resumed = o.appends.iter().filter(|a| a.resumed()).count();
        if !o.appends.is_empty() {
            self.text(&format!(
                "append-only files: {resumed} resumed from their old version, {} read in full",
                o.appends.len() - resumed
            ))?;
            for a in o.appends.iter().filter(|a| !a.resumed()) {
                if let Some(why) = a.fallback {
                    self.text(&format!("  {}: read in full: {why}", a.path))?;
                }
            }
        }
        self.text(&format!("snapshot {} saved", o.snapshot.short()))
    }

    pub fn snapshots(&self, snaps: &[(SnapshotId, SnapshotRecord)]) -> std::io::Result<()> {
        if self.json {
            return self.json(&Value::Array(snaps.iter().map(|(id, r)| snapshot_json(id, r)).collect()));
        }
        if self.quiet {
            return Ok(());
        }
        let mut o = std::io::stdout().lock();
        writeln!(
            o,
            "{:<8}  {:<20}  {:<12}  {:<12}  {:>8}  {:>10}  {:>10}  paths",
            "id", "time", "host", "tags", "files", "size", "added"
        )?;
        for (id, r) in snaps {
            writeln!(
                o,
                "{:<8}  {:<20}  {:<12}  {:<12}  {:>8}  {:>10}  {:>10}  {}",
                id.short(),
                utc(r.time_secs),
                r.hostname,
                r.tags.join(","),
                r.summary.files,
                human_bytes(r.summary.total_bytes),
                human_bytes(r.summary.new_stored_bytes),
                r.paths.join(" ")
            )?;
        }
        writeln!(o, "{} snapshots", snaps.len())
    }

    pub fn listing(&self, nodes: &[(String, Node)], long: bool) -> std::io::Result<()> {
        if self.json {
            return self.json(&Value::Array(
                nodes
                    .iter()
                    .map(|(p, n)| {
                        let mut v = json!({
                            "path": p,
                            "type": node_type(n),
                            "mode": format!("{:04o}", n.mode),
                            "mtime": utc(n.mtime_secs),
                        });
                        match &n.content {
                            NodeContent::File { size, chunks } => {
                                v["size"] = json!(size);
                                v["chunks"] = json!(chunks.len());
                            }
                            NodeContent::Symlink { target } => v["target"] = json!(String::from_utf8_lossy(target)),
                            NodeContent::Dir { tree } => v["tree"] = json!(tree.to_hex()),
                        }
                        v
                    })
                    .collect(),
            ));
        }
        if self.quiet {
            return Ok(());
        }
        let mut o = std::io::stdout().lock();
        for (p, n) in nodes {
            if long {
                let size = match &n.content {
                    NodeContent::File { size, .. } => *size,
                    _ => 0,
                };
                let link = match &n.content {
                    NodeContent::Symlink { target } => format!(" -> {}", String::from_utf8_lossy(target)),
                    _ => String::new(),
                };
                writeln!(o, "{:<7} {:04o} {:>12} {} {p}{link}", node_type(n), n.mode, size, utc(n.mtime_secs))?;
            } else {
                writeln!(o, "{p}")?;
            }
        }
        Ok(())
    }

    pub fn restore(&self, id: &SnapshotId, target: &Path, r: &RestoreReport) -> std::io::Result<()> {
        for (path, why) in &r.failed {
            eprintln!("packtool: not restored: {path}: {why}");
        }
        for w in &r.warnings {
            eprintln!("packtool: warning: {w}");
        }
        if self.json {
            return self.json(&json!({
                "snapshot": id.to_hex(),
                "target": target.display().to_string(),
                "files": r.files,
                "dirs": r.dirs,
                "symlinks": r.symlinks,
                "bytes": r.bytes,
                "failed": r.failed.iter().map(|(p, e)| json!({"path": p, "error": e.to_string()})).collect::<Vec<_>>(),
                "warnings": r.warnings.iter().map(|w| json!({"path": w.path().display().to_string(), "warning": w.to_string()})).collect::<Vec<_>>(),
            }));
        }
        if !r.failed.is_empty() {
            eprintln!("packtool: {} paths could not be restored; everything else was", r.failed.len());
        }
        self.text(&format!(
            "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {}",
            id.short(),
            target.display(),
            r.files,
            r.dirs,
            r.symlinks,
            human_bytes(r.bytes)
        ))
    }

    pub fn check(&self, r: &CheckReport, read_data: bool) -> std::io::Result<()> {
        if self.json {
            return self.json(&json!({
                "ok": r.is_ok(),
                "read_data": read_data,
                "snapshots": r.snapshots,
                "trees": r.trees,
                "packs": r.packs,
                "packs_read": r.packs_read,
                "index_files": r.index_files,
                "keyslots": r.keyslots,
                "blobs_read": r.blobs_read,
                "unreferenced_packs": r.unreferenced_packs.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
                "stale_temporaries": r.stale_temporaries,
                "problems": r.problems.iter().map(|p| json!({
                    "message": p.message,
                    "pack": p.pack.map(|x| x.to_hex()),
                    "offset": p.offset,
                    "affected": p.affected,
                })).collect::<Vec<_>>(),
            }));
        }
        for p in &r.problems {
            eprintln!("packtool: problem: {}", p.message);
            for a in &p.affected {
                eprintln!("    affects {a}");
            }
        }
        if !r.unreferenced_packs.is_empty() {
            self.text(&format!(
                "{} packs are named by no index (left by an interrupted backup)",
                r.unreferenced_packs.len()
            ))?;
        }
        if r.create_only == Some(false) {
            self.text(CREATE_ONLY_NOTE)?;
        }
        if r.stale_temporaries > 0 {
            self.text(&format!(
                "{} temporary files were left by interrupted writes (`prune` removes them)",
                r.stale_temporaries
            ))?;
        }
        let what = match (read_data, r.packs_read < r.packs) {
            (false, _) => String::new(),
            (true, false) => format!(", {} blobs read", r.blobs_read),
            (true, true) => format!(", {} blobs read in {} of the packs", r.blobs_read, r.packs_read),
        };
        let summary = format!("checked {} snapshots, {} trees, {} packs{what}", r.snapshots, r.trees, r.packs);
        if r.is_ok() {
            self.text(&format!("{summary}: no problems found"))
        } else {
            eprintln!("packtool: {summary}: {} problems found", r.problems.len());
            Ok(())
        }
    }

    pub fn forget(&self, r: &ForgetReport, dry_run: bool) -> std::io::Result<()> {
        if self.json {
            return self.json(&json!({
                "dry_run": dry_run,
                "keep": r.keep.iter().map(|(id, rec, why)| json!({"id": id.to_hex(), "time": utc(rec.time_secs), "reasons": why})).collect::<Vec<_>>(),
                "remove": r.remove.iter().map(|(id, rec)| json!({"id": id.to_hex(), "time": utc(rec.time_secs)})).collect::<Vec<_>>(),
                "remove_damaged": r.remove_damaged.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
            }));
        }
        for (id, rec, why) in &r.keep {
            self.text(&format!("keep    {}  {}  ({})", id.short(), utc(rec.time_secs), why.join(", ")))?;
        }
        let verb = if dry_run { "would remove" } else { "remove" };
        for (id, rec) in &r.remove {
            self.text(&format!("{verb:<7} {}  {}", id.short(), utc(rec.time_secs)))?;
        }
        for id in &r.remove_damaged {
            self.text(&format!("{verb:<7} {}  (damaged, unreadable)", id.short()))?;
        }
        let tail = if dry_run { " (dry run: nothing removed)" } else { "; run `prune` to free their data" };
        self.text(&format!(
            "{} snapshots kept, {} removed{tail}",
            r.keep.len(),
            r.remove.len() + r.remove_damaged.len()
        ))
    }

    pub fn prune(&self, r: &PruneReport, dry_run: bool) -> std::io::Result<()> {
        if self.json {
            return self.json(&json!({
                "dry_run": dry_run,
                "used_blobs": r.used_blobs,
                "used_bytes": r.used_bytes,
                "unused_blobs": r.unused_blobs,
                "unused_bytes": r.unused_bytes,
                "packs_kept": r.packs_kept,
                "packs_repacked": r.packs_repacked,
                "packs_deleted": r.packs_deleted,
                "packs_written": r.packs_written,
                "bytes_freed": r.bytes_freed,
                "index_files_replaced": r.index_files_replaced,
                "temporaries_removed": r.temporaries_removed,
                "temporary_bytes": r.temporary_bytes,
                "warnings": r.warnings,
            }));
        }
        for warning in &r.warnings {
            eprintln!("packtool: warning: {warning}");
        }
        let w = if dry_run { "would be " } else { "" };
        self.text(&format!("used:    {} blobs, {}", r.used_blobs, human_bytes(r.used_bytes)))?;
        self.text(&format!("unused:  {} blobs, {}", r.unused_blobs, human_bytes(r.unused_bytes)))?;
        self.text(&format!(
            "packs:   {} kept, {} {w}rewritten, {} {w}deleted, {} {w}written",
            r.packs_kept, r.packs_repacked, r.packs_deleted, r.packs_written
        ))?;
        if r.temporaries_removed > 0 {
            self.text(&format!(
                "temp:    {} files left by interrupted writes {w}removed ({})",
                r.temporaries_removed,
                human_bytes(r.temporary_bytes)
            ))?;
        }
        let tail = if dry_run { " (dry run: nothing changed)" } else { "" };
        self.text(&format!("{} {w}freed{tail}", human_bytes(r.bytes_freed + r.temporary_bytes)))
    }

    pub fn repair_index(&self, packs: u64, bad: usize) -> std::io::Result<()> {
        if self.json {
            return self.json(&json!({"packs": packs, "packs_left_out": bad}));
        }
        self.text(&format!("index rebuilt from {packs} packs ({bad} unreadable packs left out)"))
    }

    pub fn repair_snapshots(&self, r: &RepairReport) -> std::io::Result<()> {
        if self.json {
            return self.json(&json!({
                "repaired": r.repaired.iter().map(|(o, n)| json!({"old": o.to_hex(), "new": n.to_hex()})).collect::<Vec<_>>(),
                "dropped": r.dropped.iter().map(|(s, p)| json!({"snapshot": s.to_hex(), "path": p})).collect::<Vec<_>>(),
            }));
        }
        for (s, p) in &r.dropped {
            self.text(&format!("dropped {}:{p}", s.short()))?;
        }
        for (o, n) in &r.repaired {
            self.text(&format!("snapshot {} repaired as {}", o.short(), n.short()))?;
        }
        self.text(&format!("{} snapshots repaired, {} paths dropped", r.repaired.len(), r.dropped.len()))
    }

    pub fn locks(&self, locks: &[LockInfo], verb: &str) -> std::io::Result<()> {
        let kind = |k: LockKind| if k == LockKind::Exclusive { "exclusive" } else { "shared" };
        if self.json {
            return self.json(&Value::Array(
                locks
                    .iter()
                    .map(|l| {
                        let r = l.record.as_ref();
                        json!({
                            "id": l.id.to_hex(),
                            "stale": l.stale,
                            "kind": r.map(|r| kind(r.kind)),
                            "operation": r.map(|r| r.operation.clone()),
                            "hostname": r.map(|r| r.hostname.clone()),
                            "pid": r.map(|r| r.pid),
                            "time": r.map(|r| utc(r.time)),
                        })
                    })
                    .collect(),
            ));
        }
        for l in locks {
            let what = match &l.record {
                Some(r) => {
                    format!("{} {} by pid {} on {}, {}", kind(r.kind), r.operation, r.pid, r.hostname, utc(r.time))
                }
                None => "unreadable".into(),
            };
            let stale = if l.stale { " (stale)" } else { "" };
            self.text(&format!("{}{}  {what}{stale}", if verb.is_empty() { "" } else { "removed " }, l.id.short()))?;
        }
        if !verb.is_empty() {
            self.text(&format!("{} locks {verb}", locks.len()))?;
        } else if locks.is_empty() {
            self.text("no locks")?;
        }
        Ok(())
    }

    pub fn keys(&self, slots: &[KeyslotInfo]) -> std::io::Result<()> {
        if self.json {
            return self.json(&Value::Array(
                slots
                    .iter()
                    .map(|k| json!({"id": k.id.to_string(), "kind": k.kind, "label": k.label, "created": utc(k.created), "in_use": k.in_use, "revoked": k.revoked}))
                    .collect(),
            ));
        }
        if self.quiet {
            return Ok(());
        }
        let mut o = std::io::stdout().lock();
        writeln!(o, "  {:<32}  {:<13}  {:<20}  label", "id", "kind", "created")?;
        for k in slots {
            let mark = if k.in_use {
                "*"
            } else if k.revoked {
                "!"
            } else {
                " "
            };
            writeln!(o, "{mark} {:<32}  {:<13}  {:<20}  {}", k.id, k.kind, utc(k.created), k.label)?;
        }
        if slots.iter().any(|k| k.revoked) {
            writeln!(o, "! removed, and put back by someone without the key: it opens nothing")?;
        }
        writeln!(o, "{} keyslots (* opened this session)", slots.len())
    }

    pub fn trust(&self, path: &Path, fingerprint: &str, first: bool, pin: Option<&Path>) -> std::io::Result<()> {
        if self.json {
            return self.json(&json!({
                "path": path.display().to_string(),
                "fingerprint": fingerprint,
                "first_contact": first,
                "pin": pin.map(|p| p.display().to_string()),
            }));
        }
        self.text(&format!("repository {}", path.display()))?;
        self.text(&format!("fingerprint {fingerprint}"))?;
        match pin {
            Some(p) if first => self.text(&format!("pinned now (first contact), in {}", p.display())),
            Some(p) => self.text(&format!("pinned, in {}", p.display())),
            None => self.text("not pinned: this client keeps no state"),
        }
    }

    pub fn trust_forgotten(&self, path: &Path, had: bool) -> std::io::Result<()> {
        if self.json {
            return self.json(&json!({"path": path.display().to_string(), "forgotten": had}));
        }
        self.text(&if had {
            format!("forgot the pin of {}: the next open is a first contact", path.display())
        } else {
            format!("no pin for {}", path.display())
        })
    }

    pub fn key_added(&self, id: &SlotId, kind: &str) -> std::io::Result<()> {
        if self.json {
            return self.json(&json!({"id": id.to_string(), "kind": kind}));
        }
        self.text(&format!("added {kind} keyslot {id}"))
    }

    pub fn key_removed(&self, id: &SlotId) -> std::io::Result<()> {
        if self.json {
            return self.json(&json!({"removed": id.to_string()}));
        }
        self.text(&format!("removed keyslot {id}"))
    }

    /// Shows a new recovery code: the only time it is ever shown.
    pub fn recovery_code(&self, id: &SlotId, code: &RecoveryCode) -> std::io::Result<()> {
        let text = code.to_text();
        if self.json {
            return self.json(&json!({"id": id.to_string(), "kind": "recovery-code", "recovery_code": text.as_str()}));
        }
        // Printed even with --quiet: losing it would defeat the command.
        let mut o = std::io::stdout().lock();
        writeln!(o, "added recovery-code keyslot {id}")?;
        writeln!(o, "recovery code (shown once; write it down and keep it offline):")?;
        writeln!(o)?;
        writeln!(o, "    {}", text.as_str())?;
        writeln!(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_bytes() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_764_115_200 + 3661), "2025-11-26T01:01:01Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
        assert_eq!(utc(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(utc(19_782 * 86_400), "2024-02-29T00:00:00Z");
        assert_eq!(utc(19_783 * 86_400), "2024-03-01T00:00:00Z");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}

//! Inspection commands: find, diff, stats, packs, pack show, index, cat, verify-blob. They
//! only read the repository and format what the library returns.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use clap::Subcommand;
use packvault::format::blob::BlobKind;
use packvault::format::keyslot::SlotKdf;
use packvault::format::pack;
use packvault::format::snapshot::NodeContent;
use packvault::{Change, FileKind, Id, LocalStore, PackId, Repository, Store, TreeId};
use serde_json::{json, Value};

use crate::output::{human_bytes, snapshot_json, utc, Out};

/// `packtool pack …`
#[derive(Subcommand, Debug)]
pub enum PackCommand {
    /// Show a pack's decrypted directory: every blob's id, kind, offset, lengths, codec.
    Show {
        /// Pack id or unique prefix.
        id: String,
    },
}

/// `packtool index …`
#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Entries, index files, and the local cache's size per entry.
    Stats,
    /// Every entry: blob id, kind, pack, offset, lengths, codec.
    Show,
}

/// `packtool cat …`
#[derive(Subcommand, Debug)]
pub enum CatCommand {
    /// The repository config (decrypted).
    Config,
    /// A snapshot record (decrypted).
    Snapshot {
        /// Snapshot id, unique prefix, or `latest`.
        id: String,
    },
    /// A tree (one folder), decoded.
    Tree {
        /// Tree id or unique prefix (at least 8 hex digits).
        id: String,
    },
    /// A blob's plaintext, raw, on stdout.
    Blob {
        /// Blob id or unique prefix (at least 8 hex digits).
        id: String,
    },
    /// A keyslot's public fields (never the key).
    Keyslot {
        /// Slot id or unique prefix.
        id: String,
    },
    /// What the storage provider sees of a pack, read without any key.
    PackHeader {
        /// Pack id or unique prefix.
        id: String,
    },
}

fn kind_name(k: BlobKind) -> &'static str {
    k.name()
}

pub fn find(repo: &Repository, pattern: &str, out: &Out) -> anyhow::Result<u8> {
    let hits = repo.find(pattern)?;
    if out.is_json() {
        out.json(&Value::Array(
            hits.iter()
                .map(|(id, rec, path)| json!({"snapshot": id.to_hex(), "short_id": id.short(), "time": utc(rec.time_secs), "path": path}))
                .collect(),
        ))?;
    } else {
        for (id, rec, path) in &hits {
            out.line(&format!("{}  {}  {path}", id.short(), utc(rec.time_secs)))?;
        }
    }
    Ok(0)
}

pub fn diff(repo: &Repository, a: &str, b: &str, out: &Out) -> anyhow::Result<u8> {
    let (ia, ra) = repo.find_snapshot(a)?;
    let (ib, rb) = repo.find_snapshot(b)?;
    let changes = repo.diff(&ra, &rb)?;
    let count = |c: Change| changes.iter().filter(|d| d.change == c).count();
    let added: u64 = changes.iter().filter(|d| d.change == Change::Added).map(|d| d.size_after).sum();
    let removed: u64 = changes.iter().filter(|d| d.change == Change::Removed).map(|d| d.size_before).sum();
    let modified_before: u64 = changes.iter().filter(|d| d.change == Change::Modified).map(|d| d.size_before).sum();
    let modified_after: u64 = changes.iter().filter(|d| d.change == Change::Modified).map(|d| d.size_after).sum();
    if out.is_json() {
        out.json(&json!({
            "from": ia.to_hex(),
            "to": ib.to_hex(),
            "changes": changes.iter().map(|d| json!({"path": d.path, "change": d.change.name(), "size_before": d.size_before, "size_after": d.size_after})).collect::<Vec<_>>(),
            "summary": {
                "added": count(Change::Added), "removed": count(Change::Removed),
                "modified": count(Change::Modified), "metadata": count(Change::Metadata),
                "bytes_added": added, "bytes_removed": removed,
                "bytes_modified_before": modified_before, "bytes_modified_after": modified_after,
            },
        }))?;
        return Ok(0);
    }
    for d in &changes {
        let line = match d.change {
            Change::Added => format!("+ {} ({})", d.path, human_bytes(d.size_after)),
            Change::Removed => format!("- {} ({})", d.path, human_bytes(d.size_before)),
            Change::Modified => {
                format!("M {} ({} -> {})", d.path, human_bytes(d.size_before), human_bytes(d.size_after))
            }
            Change::Metadata => format!("m {} (mode or time)", d.path),
        };
        out.line(&line)?;
    }
    out.line(&format!(
        "{} -> {}: {} added ({}), {} removed ({}), {} modified ({} -> {}), {} metadata only",
        ia.short(),
        ib.short(),
        count(Change::Added),
        human_bytes(added),
        count(Change::Removed),
        human_bytes(removed),
        count(Change::Modified),
        human_bytes(modified_before),
        human_bytes(modified_after),
        count(Change::Metadata)
    ))?;
    Ok(0)
}

pub fn stats(repo: &Repository, snapshot: Option<&str>, out: &Out) -> anyhow::Result<u8> {
    let id = match snapshot {
        Some(s) => Some(repo.find_snapshot(s)?.0),
        None => None,
    };
    let s = repo.stats(id.as_ref())?;
    let buckets = |b: &[packvault::Bucket]| {
        b.iter().map(|b| json!({"low": b.low, "high": b.high, "count": b.count})).collect::<Vec<_>>()
    };
    if out.is_json() {
        out.json(&json!({
            "snapshot": id.map(|i| i.to_hex()),
            "snapshots": s.snapshots,
            "files": s.files,
            "logical_bytes": s.logical_bytes,
            "chunk_refs": s.chunk_refs,
            "unique_chunks": s.unique_chunks,
            "unique_raw_bytes": s.unique_raw_bytes,
            "unique_stored_bytes": s.unique_stored_bytes,
            "trees": s.trees,
            "packs": s.packs,
            "pack_bytes": s.pack_bytes,
            "dedup_ratio": s.dedup_ratio,
            "compression_ratio": s.compression_ratio,
            "chunk_size_histogram": buckets(&s.chunk_sizes),
            "pack_size_histogram": buckets(&s.pack_sizes),
        }))?;
        return Ok(0);
    }
    let scope = id.map_or("all snapshots".to_string(), |i| format!("snapshot {}", i.short()));
    out.line(&format!("statistics of {scope}"))?;
    out.line(&format!("  snapshots            {}", s.snapshots))?;
    out.line(&format!("  files                {}", s.files))?;
    out.line(&format!("  logical size         {}", human_bytes(s.logical_bytes)))?;
    out.line(&format!("  unique chunks        {} ({} refs)", s.unique_chunks, s.chunk_refs))?;
    out.line(&format!("  unique data          {}", human_bytes(s.unique_raw_bytes)))?;
    out.line(&format!("  stored (sealed)      {}", human_bytes(s.unique_stored_bytes)))?;
    out.line(&format!("  dedup ratio          {:.2}", s.dedup_ratio))?;
    out.line(&format!("  compression ratio    {:.2}", s.compression_ratio))?;
    out.line(&format!("  trees                {}", s.trees))?;
    out.line(&format!("  packs                {} ({})", s.packs, human_bytes(s.pack_bytes)))?;
    for (title, b) in [("chunk sizes", &s.chunk_sizes), ("pack sizes", &s.pack_sizes)] {
        out.line(&format!("  {title}:"))?;
        for x in b.iter() {
            out.line(&format!("    {:>10} .. {:<10} {}", human_bytes(x.low), human_bytes(x.high), x.count))?;
        }
    }
    Ok(0)
}

pub fn packs(repo: &Repository, out: &Out) -> anyhow::Result<u8> {
    let mut rows = Vec::new();
    for (index_id, file) in repo.index_files()? {
        for p in file.packs {
            rows.push((p.pack, p.kind, p.pack_len, p.entries.len(), index_id));
        }
    }
    rows.sort_by_key(|r| r.0);
    let listed: std::collections::HashSet<PackId> = rows.iter().map(|r| r.0).collect();
    let mut unlisted: Vec<PackId> = repo
        .store()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|n| Id::from_hex(&n).ok().map(PackId))
        .filter(|p| !listed.contains(p))
        .collect();
    unlisted.sort();
    if out.is_json() {
        let mut v: Vec<Value> = rows
            .iter()
            .map(|(id, kind, len, n, ix)| json!({"id": id.to_hex(), "kind": kind_name(*kind), "size": len, "blobs": n, "index": ix.to_hex()}))
            .collect();
        for p in &unlisted {
            let size = repo.store().size(FileKind::Pack, &p.to_hex()).ok();
            v.push(json!({"id": p.to_hex(), "kind": null, "size": size, "blobs": null, "index": null}));
        }
        out.json(&Value::Array(v))?;
        return Ok(0);
    }
    out.line(&format!("{:<8}  {:<4}  {:>10}  {:>6}  index", "id", "kind", "size", "blobs"))?;
    for (id, kind, len, n, ix) in &rows {
        out.line(&format!(
            "{:<8}  {:<4}  {:>10}  {:>6}  {}",
            id.short(),
            kind_name(*kind),
            human_bytes(u64::from(*len)),
            n,
            ix.short()
        ))?;
    }
    for p in &unlisted {
        out.line(&format!("{:<8}  ?     {:>10}  {:>6}  (in no index)", p.short(), "", ""))?;
    }
    out.line(&format!("{} packs", rows.len() + unlisted.len()))?;
    Ok(0)
}

pub fn pack_show(repo: &Repository, id: &str, out: &Out) -> anyhow::Result<u8> {
    let pack = repo.resolve_pack(id)?;
    let dir = repo.pack_directory(&pack)?;
    let size = repo.store().size(FileKind::Pack, &pack.to_hex())?;
    if out.is_json() {
        out.json(&json!({
            "id": pack.to_hex(),
            "kind": kind_name(dir.kind),
            "size": size,
            "blobs": dir.entries.iter().map(|e| json!({"id": e.id.to_hex(), "offset": e.offset, "sealed_len": e.sealed_len, "raw_len": e.raw_len, "codec": codec_name(e.codec)})).collect::<Vec<_>>(),
        }))?;
        return Ok(0);
    }
    out.line(&format!("pack {pack}: {} blobs, {} bytes, {} blobs", kind_name(dir.kind), size, dir.entries.len()))?;
    out.line(&format!("{:<8}  {:>10}  {:>8}  {:>8}  codec", "blob", "offset", "sealed", "raw"))?;
    for e in &dir.entries {
        out.line(&format!(
            "{:<8}  {:>10}  {:>8}  {:>8}  {}",
            e.id.short(),
            e.offset,
            e.sealed_len,
            e.raw_len,
            codec_name(e.codec)
        ))?;
    }
    Ok(0)
}

fn codec_name(c: packvault::format::blob::Codec) -> &'static str {
    match c {
        packvault::format::blob::Codec::Raw => "raw",
        packvault::format::blob::Codec::Zstd => "zstd",
        packvault::format::blob::Codec::ZstdDict => "zstd+dict",
    }
}

pub fn index(repo: &Repository, cmd: &IndexCommand, out: &Out) -> anyhow::Result<u8> {
    let index = repo.index();
    match cmd {
        IndexCommand::Stats => {
            let (base, delta) = index.table_counts();
            let files = index.covered().len();
            let bytes = index.table_bytes();
            let per_entry = if base + delta == 0 { 0.0 } else { bytes as f64 / (base + delta) as f64 };
            if out.is_json() {
                out.json(&json!({
                    "entries": index.len(),
                    "base_entries": base,
                    "delta_entries": delta,
                    "index_files": files,
                    "packs": index.packs().count(),
                    "cache_bytes": bytes,
                    "bytes_per_entry": per_entry,
                    "memory_mapped": index.is_mapped(),
                }))?;
            } else {
                out.line(&format!(
                    "entries          {} ({} in the base table, {} in the delta)",
                    index.len(),
                    base,
                    delta
                ))?;
                out.line(&format!("index files      {files}"))?;
                out.line(&format!("packs            {}", index.packs().count()))?;
                out.line(&format!(
                    "local cache      {} ({per_entry:.1} bytes per entry, {})",
                    human_bytes(bytes as u64),
                    if index.is_mapped() { "memory-mapped" } else { "in memory" }
                ))?;
            }
        }
        IndexCommand::Show => {
            let mut entries = index.iter().collect::<Result<Vec<_>, _>>()?;
            entries.sort_by_key(|(id, l)| (*id, l.pack));
            entries.dedup_by_key(|(id, l)| (*id, l.pack));
            if out.is_json() {
                out.json(&Value::Array(
                    entries
                        .iter()
                        .map(|(id, l)| json!({"id": id.to_hex(), "kind": kind_name(l.kind), "pack": l.pack.to_hex(), "offset": l.offset, "sealed_len": l.sealed_len, "raw_len": l.raw_len, "codec": codec_name(l.codec)}))
                        .collect(),
                ))?;
            } else {
                for (id, l) in &entries {
                    out.line(&format!(
                        "{id} {:<4} {} {:>10} {:>8} {:>8} {}",
                        kind_name(l.kind),
                        l.pack.short(),
                        l.offset,
                        l.sealed_len,
                        l.raw_len,
                        codec_name(l.codec)
                    ))?;
                }
            }
        }
    }
    Ok(0)
}

/// `cat pack-header`: no key, only what the provider sees.
pub fn pack_header(repo_path: &Path, id: &str, out: &Out) -> anyhow::Result<u8> {
    let store = LocalStore::open(repo_path)?;
    let ids: Vec<Id> = store.list(FileKind::Pack)?.into_iter().filter_map(|n| Id::from_hex(&n).ok()).collect();
    let spec = id.to_ascii_lowercase();
    let found: Vec<&Id> = ids.iter().filter(|i| i.to_hex().starts_with(&spec)).collect();
    let pack = match found.as_slice() {
        [one] if spec.len() >= 4 => PackId(**one),
        [] => bail!("no pack {id}"),
        _ => bail!("pack prefix {id} is too short or matches several packs"),
    };
    let name = pack.to_hex();
    let size = store.size(FileKind::Pack, &name)?;
    let trailer = store.get_range(
        FileKind::Pack,
        &name,
        size.saturating_sub(pack::TRAILER_LEN as u64),
        pack::TRAILER_LEN.min(size as usize),
    )?;
    let fields = pack::TrailerFields::parse(&trailer);
    let header_ok = fields.is_some_and(|f| &f.magic == b"PVPACK" && f.version == packvault::format::FORMAT_VERSION);
    let bytes = store.get(FileKind::Pack, &name)?;
    let hash_ok = Id::hash_of(&bytes) == pack.0;
    let v = json!({
        "id": name,
        "size": size,
        "content_hash_matches_name": hash_ok,
        "trailer": {
            "magic": fields.map(|f| String::from_utf8_lossy(&f.magic).into_owned()),
            "version": fields.map(|f| f.version),
            "header_ok": header_ok,
        },
        "note": "everything but the last 8 bytes is ciphertext or keyed filler: blob boundaries, the blob area's and the directory's lengths are sealed",
    });
    out.json_always(&v)?;
    Ok(if hash_ok && header_ok { 0 } else { 3 })
}

pub fn cat(repo: &Repository, cmd: &CatCommand, out: &Out) -> anyhow::Result<u8> {
    let v = match cmd {
        CatCommand::Config => {
            let s = repo.settings();
            json!({
                "id": repo.id().to_string(),
                "format_version": packvault::format::FORMAT_VERSION,
                "master_id": s.master_id.to_hex(),
                "chunker": {"algorithm": "fastcdc-2020-keyed", "min_size": s.chunker.min_size, "avg_size": s.chunker.avg_size, "max_size": s.chunker.max_size, "normalization": s.chunker.normalization},
                "zstd_level": s.zstd_level,
                "pack_target_size": s.pack_target_size,
            })
        }
        CatCommand::Snapshot { id } => {
            let (id, rec) = repo.find_snapshot(id)?;
            snapshot_json(&id, &rec)
        }
        CatCommand::Tree { id } => {
            let id = repo.resolve_blob(id)?;
            if repo.blob_kind(&id)? != Some(BlobKind::Tree) {
                bail!("{id} is not a tree blob");
            }
            let tree = repo.load_tree(&TreeId(id))?;
            json!({
                "id": id.to_hex(),
                "nodes": tree.nodes.iter().map(|n| {
                    let mut v = json!({"name": n.name_lossy(), "mode": format!("{:04o}", n.mode), "mtime": utc(n.mtime_secs), "mtime_nanos": n.mtime_nanos});
                    match &n.content {
                        NodeContent::File { size, chunks } => { v["type"] = json!("file"); v["size"] = json!(size); v["chunks"] = json!(chunks.iter().map(|c| c.to_hex()).collect::<Vec<_>>()); }
                        NodeContent::Dir { tree } => { v["type"] = json!("dir"); v["tree"] = json!(tree.to_hex()); }
                        NodeContent::Symlink { target } => { v["type"] = json!("symlink"); v["target"] = json!(String::from_utf8_lossy(target)); }
                    }
                    v
                }).collect::<Vec<_>>(),
            })
        }
        CatCommand::Blob { id } => {
            let id = repo.resolve_blob(id)?;
            let (_, data) = repo.read_blob(&id)?;
            let mut o = std::io::stdout().lock();
            o.write_all(&data)?;
            o.flush()?;
            return Ok(0);
        }
        CatCommand::Keyslot { id } => {
            let keys = repo.keys();
            let info = keys.resolve(id)?;
            let slot = keys.slot(&info.id)?;
            let kdf = match &slot.kdf {
                SlotKdf::Passphrase { params, salt } => {
                    json!({"kdf": "argon2id", "m_kib": params.m_kib, "t": params.t, "p": params.p, "salt": hex(salt)})
                }
                SlotKdf::RecoveryCode { salt } | SlotKdf::Device { salt } => {
                    json!({"kdf": "blake3-derive-key", "salt": hex(salt)})
                }
                SlotKdf::Pin { params, salt, vault_id } => {
                    json!({"kdf": "argon2id+vault", "m_kib": params.m_kib, "t": params.t, "p": params.p, "salt": hex(salt), "vault_id": hex(vault_id)})
                }
            };
            json!({
                "id": info.id.to_string(),
                "kind": info.kind,
                "label": info.label,
                "created": utc(info.created),
                "in_use": info.in_use,
                "repository_id": hex(&slot.repo_id),
                "master_id": slot.master_id.to_hex(),
                "kdf": kdf,
            })
        }
        CatCommand::PackHeader { .. } => unreachable!("handled without opening the repository"),
    };
    out.json_always(&v)?;
    Ok(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn verify_blob(repo: &Repository, id: &str, out: &Out) -> anyhow::Result<u8> {
    let id = repo.resolve_blob(id)?;
    let loc = repo.index().lookup(&id)?.with_context(|| format!("blob {id} is in no index"))?;
    let result = repo.read_blob(&id);
    let ok = result.is_ok();
    if out.is_json() {
        out.json(&json!({
            "id": id.to_hex(),
            "ok": ok,
            "kind": kind_name(loc.kind),
            "pack": loc.pack.to_hex(),
            "offset": loc.offset,
            "sealed_len": loc.sealed_len,
            "raw_len": loc.raw_len,
            "codec": codec_name(loc.codec),
            "error": result.as_ref().err().map(ToString::to_string),
        }))?;
    } else {
        match &result {
            Ok(_) => out.line(&format!(
                "blob {}: ok ({} blob in pack {} at offset {}, {} bytes stored, {} bytes of plaintext, {})",
                id.short(),
                kind_name(loc.kind),
                loc.pack.short(),
                loc.offset,
                loc.sealed_len,
                loc.raw_len,
                codec_name(loc.codec)
            ))?,
            Err(e) => eprintln!("packtool: blob {} is damaged: {e}", id.short()),
        }
    }
    Ok(if ok { 0 } else { 3 })
}

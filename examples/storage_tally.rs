//! Where a repository's bytes go (issue 16, item 3): per blob kind, the compressed bodies,
//! the Padmé padding with its marker, the AEAD tags, the pack directories and the pack-level
//! padding, the index files and the snapshots.
//!
//! ```text
//! cargo run --release --example storage_tally -- REPO_DIR PASSPHRASE [ZSTD_LEVEL]
//! ```
//!
//! Each blob's compressed length is found by compressing its plaintext again at the
//! repository's level (zstd is deterministic): padding = sealed − tag − body. Run it on a
//! repository only this tally reads (it opens every blob).

use std::collections::BTreeMap;
use std::sync::Arc;

use packvault::format::blob::Codec;
use packvault::{ClientState, Credentials, FileKind, LocalStore, OpenOptions, Repository, Store};

#[derive(Default)]
struct Tally {
    blobs: u64,
    raw: u64,
    body: u64,
    padding: u64,
    tags: u64,
    dir_entries: u64,
    packs: u64,
    pack_bytes: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, pass) = (args.get(1).ok_or("REPO_DIR")?, args.get(2).ok_or("PASSPHRASE")?);
    let level: i32 = args.get(3).map_or(Ok(3), |l| l.parse())?;
    let store = Arc::new(LocalStore::open(dir)?);
    let options = OpenOptions { state: ClientState::Disabled, ..OpenOptions::default() };
    let repo = Repository::open(store.clone(), &Credentials::passphrase(pass), &options)?;
    let mut by_kind: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut index_bytes = 0u64;
    for (id, file) in repo.index_files()? {
        index_bytes += store.get(FileKind::Index, &id.to_hex())?.len() as u64;
        for p in &file.packs {
            let t = by_kind.entry(p.kind.name()).or_default();
            t.packs += 1;
            t.pack_bytes += u64::from(p.pack_len);
            for e in &p.entries {
                let (_, plain) = repo.read_blob(&e.id)?;
                let body = match e.codec {
                    Codec::Raw => plain.len() as u64,
                    Codec::Zstd => zstd::bulk::compress(&plain, level)?.len() as u64,
                    // The frame depends on the repository's dictionary, which this tally does
                    // not load: count everything but the 0x80 marker as body (padding is then
                    // under-counted for these blobs).
                    Codec::ZstdDict => u64::from(e.sealed_len) - 17,
                };
                t.blobs += 1;
                t.raw += u64::from(e.raw_len);
                t.body += body;
                t.tags += 16;
                t.padding += u64::from(e.sealed_len) - 16 - body;
                t.dir_entries += 48;
            }
        }
    }
    let mut snapshots = 0u64;
    for name in store.list(FileKind::Snapshot)? {
        snapshots += store.get(FileKind::Snapshot, &name)?.len() as u64;
    }
    println!("kind,blobs,raw,body,padding,tags,dir_entries,pack_rest,packs,pack_bytes");
    for (kind, t) in &by_kind {
        // Pack bytes not in blobs or directory entries: directory nonce, tag, header, trailer
        // and the directory padding that makes the pack a Padmé length.
        let rest = t.pack_bytes - t.body - t.padding - t.tags - t.dir_entries;
        println!(
            "{kind},{},{},{},{},{},{},{rest},{},{}",
            t.blobs, t.raw, t.body, t.padding, t.tags, t.dir_entries, t.packs, t.pack_bytes
        );
    }
    println!("index_files,{index_bytes}");
    println!("snapshots,{snapshots}");
    Ok(())
}

//! The format-level leaks of issue 15, each checked where the provider sees it: the store.
//!
//! - a pack's directory read must not show the directory's length `D` (version 1 read the
//!   12-byte trailer, then exactly `D` bytes, and `D` gave the pack's exact blob total);
//! - a keyslot file must show neither its label nor its creation time, nor the label's
//!   length, while `key list` still shows both to an unlocked user.

use std::sync::Arc;

use packvault::format::padding::padme;
use packvault::{Credentials, FileKind, FileMeta, Id, MemoryStore, PackId, Repository, Store};

use crate::counting::CountingStore;
use crate::{fast_init, PASS};

const TAIL: u64 = 64 << 10;

/// A repository with one data pack per backup: 3, 400 and 3 000 small files, so directories
/// of 168 B, 19 KiB and 141 KiB.
fn packs_of_three_sizes() -> (Arc<CountingStore>, Repository, Vec<(PackId, usize)>) {
    let store = CountingStore::new(Arc::new(MemoryStore::new()));
    let mut repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), fast_init(None)).unwrap();
    let meta = FileMeta { mode: 0o644, mtime_secs: 1, mtime_nanos: 0 };
    let mut seen = std::collections::BTreeSet::new();
    let mut packs = Vec::new();
    for (round, files) in [3usize, 400, 3000].into_iter().enumerate() {
        let mut b = repo.backup().unwrap();
        for i in 0..files {
            let body = format!("round {round} message {i}: {}", "x".repeat(i % 97));
            b.add_stream(&format!("m/{i}.txt"), body.as_bytes(), meta).unwrap();
        }
        b.commit(packvault::SnapshotInfo::default()).unwrap();
        for name in store.list(FileKind::Pack).unwrap() {
            if seen.insert(name.clone()) {
                let id = PackId(Id::from_hex(&name).unwrap());
                let dir = repo.pack_directory(&id).unwrap();
                if dir.kind == packvault::format::blob::BlobKind::Data {
                    packs.push((id, dir.entries.len()));
                }
            }
        }
    }
    (store, repo, packs)
}

/// Reads of one directory: requests, and bytes asked for. The old layout's figures for the
/// same pack: 2 requests, 12 + D bytes, D = the v1 directory with its padding.
#[test]
fn directory_reads_do_not_show_the_directory_length() {
    let (store, repo, packs) = packs_of_three_sizes();
    assert_eq!(packs.iter().map(|p| p.1).collect::<Vec<_>>(), [3, 400, 3000], "one data pack per backup");
    for (pack, blobs) in packs {
        let len = store.size(FileKind::Pack, &pack.to_hex()).unwrap();
        store.reset();
        let dir = repo.pack_directory(&pack).unwrap();
        let reads: Vec<(u64, usize)> = store.reads().into_iter().filter_map(|r| r.range).collect();
        let asked: usize = reads.iter().map(|r| r.1).sum();
        let d = (24 + 48 * blobs) as u64;
        let blobs_len = dir.entries.last().unwrap().end();
        let v1_len = padme(blobs_len + 36 + 48 * blobs as u64);
        println!(
            "pack of {len} bytes, {blobs} blobs, D = {d}: {} request(s), {asked} bytes (version 1: 2 requests, {} bytes)",
            reads.len(),
            v1_len - blobs_len,
        );
        // Every read ends at the pack's end and begins no later than the fixed tail: its
        // extent follows from the pack's length (and, above 64 KiB, D's power-of-two class).
        let first = reads[0];
        assert_eq!(first.0 + first.1 as u64, len, "the first read is the pack's tail");
        assert!(first.0 <= len - len.min(TAIL), "the first read holds at least the last 64 KiB");
        assert_ne!(first.0, len - 44 - d, "the read does not start at the directory");
        if d + 44 <= TAIL {
            assert_eq!(reads.len(), 1, "one request for a directory up to 64 KiB");
        } else {
            assert_eq!(reads.len(), 2);
            let class = (d + 44).next_power_of_two().max(TAIL).min(len);
            let second = reads[1];
            assert!(second.0 <= len - class, "the second read covers the size class");
            assert_eq!(second.0 + second.1 as u64, first.0, "and ends where the first began");
            assert_ne!(second.0, len - 44 - d, "not at the directory");
        }
    }
}

#[test]
fn keyslot_files_hide_label_time_and_label_length() {
    let store = Arc::new(MemoryStore::new());
    let repo = Repository::init(store.clone(), &Credentials::passphrase(PASS), fast_init(None)).unwrap();
    let keys = repo.keys();
    let short = keys.add_recovery_code("p").unwrap().0;
    let long = keys.add_recovery_code("Alice iPhone 15 (the one with the cracked screen)").unwrap().0;
    let list = keys.list().unwrap();
    assert_eq!(list.len(), 3);
    let by_id = |id| list.iter().find(|k| k.id == id).unwrap();
    assert_eq!(by_id(long).label, "Alice iPhone 15 (the one with the cracked screen)", "key list shows labels");
    assert_eq!(by_id(short).label, "p");
    let created = by_id(long).created;
    assert!(created > 1_700_000_000, "and creation times");
    let bytes = |id: packvault::SlotId| store.get(FileKind::Key, &id.to_string()).unwrap();
    let (s, l) = (bytes(short), bytes(long));
    assert_eq!(s.len(), l.len(), "a slot's length does not follow its label's");
    for needle in [&b"Alice iPhone"[..], &created.to_le_bytes()[..5], &(created as u32).to_le_bytes()] {
        assert!(!l.windows(needle.len()).any(|w| w == needle), "{needle:?} readable in the slot");
    }
}

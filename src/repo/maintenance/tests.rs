//! Unit tests of forget's keep rules and of prune's refusal to guess.

use super::forget::week;
use super::*;
use crate::format::snapshot::{self, SnapshotRecord};
use crate::id::{Id, SnapshotId};
use crate::repo::Repository;
use crate::store::FileKind;

#[test]
fn calendar_buckets() {
    // 2024-02-29 is day 19782; 2024-03-01 is in the next month.
    let month = |d| crate::civil::civil_from_days(d).1;
    assert_ne!(month(19_782), month(19_783));
    // Weeks change on Mondays: 2024-03-03 was a Sunday, 2024-03-04 a Monday.
    assert_eq!(week(19_785), week(19_784));
    assert_ne!(week(19_786), week(19_785));
}

/// A repository with one real snapshot, plus copies of its record with other hosts and
/// times (same data), as (id, host, day) for each.
fn with_hosts(snaps: &[(&str, i64)]) -> (Repository, Vec<SnapshotId>) {
    let store = std::sync::Arc::new(crate::MemoryStore::new());
    let options = crate::InitOptions {
        kdf: crate::format::keyslot::Argon2Params { m_kib: 8192, t: 1, p: 1 },
        ..Default::default()
    };
    let mut repo = Repository::init(store, &crate::Credentials::passphrase("forget test pass"), options).unwrap();
    let mut b = repo.backup().unwrap();
    let meta = crate::FileMeta { mode: 0o600, mtime_secs: 0, mtime_nanos: 0 };
    b.add_stream("a.txt", &b"hello"[..], meta).unwrap();
    let base = b.commit(crate::SnapshotInfo::default()).unwrap();
    repo.store.delete(FileKind::Snapshot, &base.snapshot.to_hex()).unwrap();
    let mut ids = Vec::new();
    for (i, (host, day)) in snaps.iter().enumerate() {
        let rec = SnapshotRecord {
            hostname: (*host).into(),
            time_secs: day * 86_400 + i as i64,
            sequence: i as u64 + 1,
            ..base.record.clone()
        };
        let bytes = snapshot::encode(repo.keys.meta_key(), &rec, &[i as u8; 12]).unwrap();
        let id = SnapshotId(Id::hash_of(&bytes));
        repo.store.put(FileKind::Snapshot, &id.to_hex(), &bytes).unwrap();
        ids.push(id);
    }
    (repo, ids)
}

#[test]
fn keep_rules_apply_per_host() {
    // The phone backs up daily, the laptop once, long ago.
    let (repo, ids) = with_hosts(&[("laptop", 100), ("phone", 200), ("phone", 201), ("phone", 202), ("phone", 202)]);
    let r = repo.forget(&ForgetPolicy { keep_last: Some(1), ..Default::default() }, true).unwrap();
    let kept: Vec<SnapshotId> = r.keep.iter().map(|k| k.0).collect();
    assert_eq!(kept, vec![ids[0], ids[4]], "the newest of each host");
    let r = repo.forget(&ForgetPolicy { keep_daily: Some(2), ..Default::default() }, true).unwrap();
    let kept: Vec<SnapshotId> = r.keep.iter().map(|k| k.0).collect();
    assert_eq!(kept, vec![ids[0], ids[2], ids[4]], "per host, the newest of each of the last 2 days");
    let e = repo.forget(&ForgetPolicy { keep_daily: Some(0), ..Default::default() }, true).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
}

#[test]
fn a_damaged_snapshot_stops_prune_until_it_is_forgotten() {
    let (mut repo, ids) = with_hosts(&[("phone", 200), ("phone", 201)]);
    let mut bytes = repo.store.get(FileKind::Snapshot, &ids[0].to_hex()).unwrap();
    bytes[40] ^= 1;
    repo.store.delete(FileKind::Snapshot, &ids[0].to_hex()).unwrap();
    repo.store.put(FileKind::Snapshot, &ids[0].to_hex(), &bytes).unwrap();
    let e = repo.prune(PruneOptions::default()).unwrap_err();
    assert!(e.to_string().contains("cannot be read") && e.to_string().contains("forget"), "{e}");
    let r = repo.forget(&ForgetPolicy { ids: vec![ids[0]], ..Default::default() }, false).unwrap();
    assert_eq!(r.remove_damaged, vec![ids[0]]);
    repo.prune(PruneOptions::default()).unwrap();
    assert!(repo.check(crate::CheckOptions { read_data: true, ..Default::default() }).unwrap().is_ok());
}

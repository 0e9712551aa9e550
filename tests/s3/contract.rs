//! The `Store` contract on a real S3 server (the same steps as the library's own contract
//! test for every store), and what only S3 has: streamed uploads past the multipart threshold,
//! bounded reads, the create-only probe, temporary objects.

use std::time::Duration;

use packvault::{Error, ErrorKind, FileKind, S3Options, Store};

use crate::server;

#[test]
fn the_store_contract_holds_on_s3() {
    let Some(s) = server("the_store_contract_holds_on_s3") else { return };
    let store = s.store("contract");
    let store: &dyn Store = store.as_ref();
    assert!(store.list(FileKind::Pack).unwrap().is_empty());
    let name = "ab".repeat(32);
    store.put(FileKind::Pack, &name, b"hello pack").unwrap();
    assert_eq!(store.get(FileKind::Pack, &name).unwrap(), b"hello pack");
    assert_eq!(store.size(FileKind::Pack, &name).unwrap(), 10);
    assert_eq!(store.get_range(FileKind::Pack, &name, 6, 4).unwrap(), b"pack");
    let past = store.get_range(FileKind::Pack, &name, 6, 5).unwrap_err();
    assert_eq!(past.kind(), ErrorKind::Malformed, "{past}");
    let far = store.get_range(FileKind::Pack, &name, 11, 5).unwrap_err();
    assert_eq!(far.kind(), ErrorKind::Malformed, "{far}");
    assert!(store.get_range(FileKind::Pack, &name, u64::MAX, 5).is_err());
    let mut buf = vec![9; 3];
    store.get_range_into(FileKind::Pack, &name, 0, 5, &mut buf).unwrap();
    assert_eq!(buf, b"hello");
    assert!(matches!(store.put(FileKind::Pack, &name, b"other"), Err(Error::AlreadyExists(_))));
    assert_eq!(store.get(FileKind::Pack, &name).unwrap(), b"hello pack", "put never overwrites");
    assert_eq!(store.list(FileKind::Pack).unwrap(), vec![name.clone()]);
    assert!(matches!(store.get(FileKind::Index, &name), Err(Error::NotFound(_))));
    assert!(matches!(store.size(FileKind::Index, &name), Err(Error::NotFound(_))));
    assert!(matches!(store.get_range(FileKind::Index, &name, 0, 1), Err(Error::NotFound(_))));
    assert!(store.list(FileKind::Config).unwrap().is_empty());
    store.put(FileKind::Config, "config", b"cfg").unwrap();
    assert_eq!(store.list(FileKind::Config).unwrap(), vec!["config".to_string()]);
    store.put_deferred(FileKind::Index, &"cd".repeat(32), &[b"def", b"erred"]).unwrap();
    let mut up = store.begin(FileKind::Snapshot).unwrap();
    up.write(b"stream").unwrap();
    up.write(b"ed").unwrap();
    up.finish(store, &"ef".repeat(32)).unwrap();
    drop(store.begin(FileKind::Snapshot).unwrap());
    assert_eq!(store.list(FileKind::Snapshot).unwrap(), vec!["ef".repeat(32)], "an abandoned upload leaves nothing");
    assert_eq!(store.get(FileKind::Snapshot, &"ef".repeat(32)).unwrap(), b"streamed");
    store.flush().unwrap();
    assert_eq!(store.get(FileKind::Index, &"cd".repeat(32)).unwrap(), b"deferred");
    assert!(store.put_deferred(FileKind::Index, &"cd".repeat(32), &[b"x"]).is_err(), "never overwrites");
    assert_eq!(store.get(FileKind::Config, "config").unwrap(), b"cfg");
    store.put(FileKind::Key, "empty", b"").unwrap();
    assert_eq!(store.get_limited(FileKind::Key, "empty", 10, "key").unwrap(), b"");
    store.delete(FileKind::Pack, &name).unwrap();
    assert!(store.list(FileKind::Pack).unwrap().is_empty());
    assert!(matches!(store.delete(FileKind::Pack, &name), Err(Error::NotFound(_))));
    assert!(store.put(FileKind::Index, "../config", b"").is_err());
}

#[test]
fn listings_page_and_keep_folders_apart() {
    let Some(s) = server("listings_page_and_keep_folders_apart") else { return };
    let store = s.store("paging");
    // More than one page of 1000 keys.
    let names: Vec<String> =
        (0..1100u32).map(|i| format!("{:064x}", u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect();
    std::thread::scope(|sc| {
        for part in names.chunks(140) {
            let store = store.clone();
            sc.spawn(move || {
                for n in part {
                    store.put(FileKind::Pack, n, n.as_bytes()).unwrap();
                }
            });
        }
    });
    store.put(FileKind::Index, &"11".repeat(32), b"i").unwrap();
    let mut listed = store.list(FileKind::Pack).unwrap();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(store.list(FileKind::Index).unwrap(), vec!["11".repeat(32)]);
    assert!(store.list(FileKind::Snapshot).unwrap().is_empty());
}

#[test]
fn streamed_uploads_past_the_threshold_go_multipart_and_land_under_their_name() {
    let Some(s) = server("streamed_uploads_past_the_threshold") else { return };
    let options = S3Options { multipart_threshold: 6 << 20, part_size: 5 << 20, ..S3Options::default() };
    let store = s.store_with("multipart", options);
    let data: Vec<u8> = (0..13u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut up = store.begin(FileKind::Pack).unwrap();
    for piece in data.chunks(1 << 20) {
        up.write(piece).unwrap();
    }
    let name = "5a".repeat(32);
    up.finish(store.as_ref(), &name).unwrap();
    assert_eq!(store.size(FileKind::Pack, &name).unwrap(), data.len() as u64);
    assert!(store.get(FileKind::Pack, &name).unwrap() == data);
    let at = (7 << 20) - 3;
    assert_eq!(store.get_range(FileKind::Pack, &name, at, 4096).unwrap(), &data[at as usize..at as usize + 4096]);
    assert_eq!(store.sweep_temporaries(Duration::ZERO, true).unwrap(), (0, 0), "the temporary object is gone");

    // The same bytes again: the name is taken.
    let mut again = store.begin(FileKind::Pack).unwrap();
    again.write(&data).unwrap();
    assert!(matches!(again.finish(store.as_ref(), &name), Err(Error::AlreadyExists(_))));
    // Abandoned after the threshold: nothing under any name, no temporary object.
    let mut dropped = store.begin(FileKind::Pack).unwrap();
    dropped.write(&data[..8 << 20]).unwrap();
    drop(dropped);
    assert_eq!(store.list(FileKind::Pack).unwrap(), vec![name.clone()]);
    assert_eq!(store.sweep_temporaries(Duration::ZERO, true).unwrap(), (0, 0));

    // One put above the threshold (multipart under the final name).
    let big = "6b".repeat(32);
    store.put(FileKind::Pack, &big, &data).unwrap();
    assert!(store.get(FileKind::Pack, &big).unwrap() == data);
}

#[test]
fn bounded_reads_never_fetch_past_the_limit() {
    let Some(s) = server("bounded_reads_never_fetch_past_the_limit") else { return };
    let store = s.store("limited");
    let name = "cd".repeat(32);
    store.put(FileKind::Index, &name, &[5u8; 1000]).unwrap();
    assert_eq!(store.get_limited(FileKind::Index, &name, 1000, "index file").unwrap().len(), 1000);
    let e = store.get_limited(FileKind::Index, &name, 999, "index file").unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { what: "index file", found: 1000, limit: 999 }), "{e}");
    let e = store.get_limited(FileKind::Index, &"ef".repeat(32), 10, "index file").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn the_create_only_probe_answers_and_leaves_nothing() {
    let Some(s) = server("the_create_only_probe_answers_and_leaves_nothing") else { return };
    let store = s.store("probe");
    assert_eq!(store.create_only(), None, "unknown before the probe");
    let honoured = store.probe_create_only().unwrap();
    eprintln!("the server honours If-None-Match: * on PUT: {honoured:?}");
    assert!(honoured.is_some());
    assert_eq!(store.create_only(), honoured, "remembered");
    assert_eq!(store.sweep_temporaries(Duration::ZERO, true).unwrap(), (0, 0), "the probe object is removed");
    let settle = store.lock_settle();
    assert_eq!(settle.is_zero(), honoured == Some(true), "{settle:?}");
    // Told, the store does not ask.
    let told = s.store_with("probe-told", S3Options { create_only: Some(true), ..S3Options::default() });
    assert_eq!(told.probe_create_only().unwrap(), Some(true));
    assert!(told.lock_settle().is_zero());
}

//! `--trace-store FILE`: the file shows what the storage provider saw of one command.

use std::collections::HashSet;
use std::fs;

mod support;
use support::{noise, Env};

fn trace(path: &std::path::Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn names(events: &[serde_json::Value], op: &str, kind: &str) -> HashSet<String> {
    events
        .iter()
        .filter(|e| e["op"] == op && e["kind"] == kind)
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn trace_store_names_the_objects_a_command_created_and_read() {
    let env = Env::new("pw-trace-test");
    env.ok(&["init"]);
    let src = env.dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("photo.jpg"), noise(700_000, 3)).unwrap();
    fs::write(src.join("chat.txt"), b"hello").unwrap();

    let backup_trace = env.dir.join("backup.jsonl");
    env.ok(&["backup", src.to_str().unwrap(), "--trace-store", backup_trace.to_str().unwrap()]);
    let backup = trace(&backup_trace);
    let repo = env.dir.join("repo");
    let packs = names(&backup, "put", "packs");
    assert!(packs.len() >= 2, "a data pack and a tree pack: {packs:?}");
    for p in &packs {
        let file = repo.join("packs").join(&p[..2]).join(p);
        let e = backup.iter().find(|e| e["op"] == "put" && e["name"] == p.as_str()).unwrap();
        assert_eq!(fs::metadata(&file).unwrap().len(), e["len"].as_u64().unwrap(), "{p}: the size the provider saw");
    }
    let snapshots = names(&backup, "put", "snapshots");
    assert_eq!(snapshots.len(), 1);
    assert!(repo.join("snapshots").join(snapshots.iter().next().unwrap()).exists());
    assert_eq!(names(&backup, "put", "index").len(), 1);
    assert!(backup.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()), "in request order");

    let restore_trace = env.dir.join("restore.jsonl");
    let target = env.dir.join("restored");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--trace-store",
        restore_trace.to_str().unwrap(),
    ]);
    let restore = trace(&restore_trace);
    let read = names(&restore, "read", "packs");
    assert_eq!(read, packs, "the restore read every pack the backup wrote, and only those");
    assert!(names(&restore, "get", "snapshots").is_superset(&snapshots));
    for e in restore.iter().filter(|e| e["op"] == "read") {
        assert_eq!(e["offset"].as_u64().unwrap() % 65536, 0, "block-aligned: {e}");
    }
    assert!(names(&restore, "put", "packs").is_empty(), "a restore creates no pack");
}

//! `packtool copy` and `packtool key rotate` end to end: two repositories with their own
//! passphrases, JSON reports, restores from the copy.

use std::fs;
use std::path::{Path, PathBuf};

mod support;
use support::{noise, Env};

const PASS: &str = "pw-copy-source";
const DEST_PASS: &str = "pw-copy-destination";

fn write_source(dir: &Path, day: u32) -> PathBuf {
    let src = dir.join(format!("src{day}"));
    fs::create_dir_all(src.join("chats")).unwrap();
    let text: String = (0..5_000 * day).map(|i| format!("{{\"id\":{i},\"text\":\"message {}\"}}\n", i % 17)).collect();
    fs::write(src.join("chats/log.json"), text).unwrap();
    fs::write(src.join("photo.jpg"), noise(300_000, u64::from(day))).unwrap();
    src
}

fn same_tree(a: &Path, b: &Path) {
    for name in ["chats/log.json", "photo.jpg"] {
        assert_eq!(fs::read(a.join(name)).unwrap(), fs::read(b.join(name)).unwrap(), "{name}");
    }
}

/// The source `repo/` (passphrase PASS, from `env`), and a destination `dest/` with its own
/// passphrase, made with the same binary.
fn two_repos() -> (Env, PathBuf) {
    let env = Env::new(PASS);
    env.init_with(&[]);
    let dest = env.dir.join("dest");
    let out = env
        .cmd_as(DEST_PASS, &["init", "--kdf-memory", "8", "--kdf-iterations", "1"])
        .env("PACKTOOL_REPO", &dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (env, dest)
}

#[test]
fn copy_into_another_key_restores_and_is_idempotent() {
    let (env, dest) = two_repos();
    for day in 1..=2 {
        let src = write_source(&env.dir, day);
        env.ok(&["backup", src.to_str().unwrap()]);
    }
    let repo = env.repo();
    let copy = |extra: &[&str]| {
        let mut args = vec!["--json", "copy", "--from", repo.to_str().unwrap(), "--to", dest.to_str().unwrap()];
        args.extend_from_slice(extra);
        // The destination opens with PACKTOOL_PASSPHRASE, the source with its own variable.
        let out = env.cmd_as(DEST_PASS, &args).env("PACKTOOL_FROM_PASSPHRASE", PASS).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = copy(&["latest"]);
    assert_eq!(first["same_key_domain"], false);
    assert_eq!(first["copied"].as_array().unwrap().len(), 1);
    let all = copy(&[]);
    assert_eq!(all["copied"].as_array().unwrap().len(), 1, "the older snapshot");
    assert_eq!(all["skipped"].as_array().unwrap().len(), 1, "latest was copied already");
    let again = copy(&[]);
    assert_eq!((again["copied"].as_array().unwrap().len(), again["packs_written"].as_u64()), (0, Some(0)));

    // The copy restores with the destination's passphrase; its check reads every byte.
    let in_dest = |args: &[&str]| {
        let out = env.cmd_as(DEST_PASS, args).env("PACKTOOL_REPO", &dest).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let snaps: serde_json::Value = serde_json::from_str(&in_dest(&["--json", "snapshots"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    let target = env.dir.join("restored");
    in_dest(&["restore", "latest", "--target", target.to_str().unwrap()]);
    same_tree(&env.dir.join("src2"), &target);
    in_dest(&["check", "--read-data"]);

    // The source's passphrase given for the destination: refused, naming the destination.
    let out = env
        .cmd_as(PASS, &["copy", "--from", env.repo().to_str().unwrap(), "--to", dest.to_str().unwrap()])
        .env("PACKTOOL_FROM_PASSPHRASE", PASS)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("destination") && err.contains("wrong passphrase"), "{err}");
    // And the help says where each side's credentials come from.
    let help = env.ok(&["copy", "--help"]);
    assert!(help.contains("PACKTOOL_FROM_PASSPHRASE") && help.contains("no re-chunking"), "{help}");
}

#[test]
fn key_rotate_moves_to_a_new_key_and_other_devices_must_trust_it_again() {
    let env = Env::new(PASS);
    env.init_with(&[]);
    let src = write_source(&env.dir, 1);
    env.ok(&["backup", src.to_str().unwrap()]);
    env.ok(&["key", "add", "--recovery-code"]);
    // A second device (its own state folder) knows the repository.
    let other_state = env.dir.join("other-state");
    let other = |args: &[&str]| env.cmd(args).env("PACKTOOL_STATE_DIR", &other_state).output().unwrap();
    assert!(other(&["snapshots"]).status.success());
    let before = env.json(&["trust"]);

    let r = env.json(&["key", "rotate", "--kdf-memory", "8", "--kdf-iterations", "1"]);
    assert_eq!(r["snapshots_copied"], 1);
    assert_eq!(r["retired"]["keyslots"], 2);
    assert_eq!(r["old_slots"].as_array().unwrap().len(), 2);
    assert!(r["old_packs"].as_u64().unwrap() > 0);
    let new_fp = r["new_fingerprint"].as_str().unwrap().to_string();
    assert_ne!(Some(new_fp.as_str()), before["fingerprint"].as_str());

    // This device follows: same passphrase, one keyslot, the snapshot restores.
    assert_eq!(env.json(&["trust"])["fingerprint"], new_fp.as_str());
    let keys = env.json(&["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let target = env.dir.join("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    same_tree(&src, &target);
    // prune deletes the old key's packs; check reads every byte.
    env.ok(&["prune"]);
    let check = env.json(&["check", "--read-data"]);
    assert_eq!(check["unreferenced_packs"].as_array().map_or(0, Vec::len), 0, "{check}");

    // The other device refuses, says what to do, and trusts the new fingerprint on purpose.
    let refused = other(&["snapshots"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("trust --forget") && err.contains(&new_fp), "{err}");
    assert!(other(&["trust", "--forget"]).status.success());
    assert!(other(&["--expect-fingerprint", &new_fp, "snapshots"]).status.success());

    let help = env.ok(&["key", "rotate", "--help"]);
    assert!(help.contains("trust --forget") && help.contains("prune"), "{help}");
}

//! The storage provider as the adversary, through the command line: each test is an attack
//! that worked before the defence (issue: "Trust nothing the provider serves").

use std::fs;

mod support;
use support::Env;

/// The `packtool` binary that `cargo test` builds is built with every feature cargo unified
/// into this build, the test-only `deterministic-for-tests` included; setting the old test
/// switch must still leave every key random.
#[test]
fn test_seed_does_nothing_in_the_binary() {
    let a = Env::new("a long enough test passphrase");
    let b = Env::new("a long enough test passphrase");
    for env in [&a, &b] {
        let out = env
            .cmd(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"])
            .env("PACKVAULT_TEST_SEED", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let config = |e: &Env| fs::read(e.repo().join("config")).unwrap();
    assert_ne!(config(&a)[..24], config(&b)[..24], "two inits under PACKVAULT_TEST_SEED made the same repository id");
    let key_names =
        |e: &Env| fs::read_dir(e.repo().join("keys")).unwrap().map(|d| d.unwrap().file_name()).collect::<Vec<_>>();
    assert_ne!(key_names(&a), key_names(&b), "two inits under PACKVAULT_TEST_SEED made the same keyslot ids");
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The provider replaces the repository with one it made under the (guessed) passphrase:
/// `backup` used to exit 0 and write into it.
#[test]
fn backup_into_a_swapped_repository_is_refused() {
    let env = Env::new("a long enough test passphrase");
    env.init_with(&[]);
    let src = env.dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("chat.txt"), "hello").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let fp = env.json(&["trust"])["fingerprint"].as_str().unwrap().to_string();

    // The provider's repository, made elsewhere, moved into place.
    let forged = Env::new("a long enough test passphrase");
    forged.init_with(&[]);
    fs::remove_dir_all(env.repo()).unwrap();
    fs::rename(forged.repo(), env.repo()).unwrap();
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not the one this client knows") && stderr(&out).contains(&fp), "{}", stderr(&out));
    assert!(stderr(&out).contains("packtool trust --forget"), "says how to accept a replacement: {}", stderr(&out));
    // A deliberate replacement: forget the pin, and the next open is a first contact.
    env.ok(&["trust", "--forget"]);
    let out = env.run(&["snapshots"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("first contact"), "{}", stderr(&out));
}

/// A new device checks the fingerprint `init` printed before any keyslot is tried.
#[test]
fn a_new_device_checks_the_fingerprint() {
    let env = Env::new("a long enough test passphrase");
    let init = env.json(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]);
    let fp = init["fingerprint"].as_str().unwrap().to_string();
    let fresh_state = env.dir.join("other-device");
    let run = |expect: &str| {
        env.cmd(&["snapshots", "--expect-fingerprint", expect, "--state-dir", fresh_state.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let wrong = run("0000-0000-0000-0000-0000-0000-0000-0000");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("fingerprint"), "{}", stderr(&wrong));
    let right = run(&fp);
    assert!(right.status.success(), "{}", stderr(&right));
}

/// `key remove` said the old code "stops working"; the provider put the slot file back and it
/// opened again.
#[test]
fn a_removed_recovery_code_stays_removed() {
    let env = Env::new("a long enough test passphrase");
    env.init_with(&[]);
    let added = env.json(&["key", "add", "--recovery-code"]);
    let (id, code) = (added["id"].as_str().unwrap().to_string(), added["recovery_code"].as_str().unwrap().to_string());
    let slot = env.repo().join("keys").join(&id);
    let saved = fs::read(&slot).unwrap();
    env.ok(&["key", "remove", &id]);
    fs::write(&slot, saved).unwrap();
    let code_file = env.dir.join("code");
    fs::write(&code_file, &code).unwrap();
    let out = env
        .cmd(&["snapshots", "--recovery-code-file", code_file.to_str().unwrap()])
        .env_remove("PACKTOOL_PASSPHRASE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed and has reappeared"), "{}", stderr(&out));
    // The passphrase still opens, and check names the slot that came back.
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
}

/// `key add --device`: later commands open without the passphrase.
#[test]
fn a_device_key_opens_without_the_passphrase() {
    let env = Env::new("a long enough test passphrase");
    env.init_with(&[]);
    env.ok(&["key", "add", "--device"]);
    let out = env.cmd(&["key", "list", "--json"]).env_remove("PACKTOOL_PASSPHRASE").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let me = list.as_array().unwrap().iter().find(|k| k["in_use"] == true).unwrap();
    assert_eq!(me["kind"], "device");
    let pins = env.dir.join("state/pins");
    for f in fs::read_dir(&pins).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let mode = f.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the pin holds the device secret");
    }
}

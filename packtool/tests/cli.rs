//! End-to-end tests of the `packtool` binary: exit codes, one-line errors, JSON output.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;
use support::{noise, Env};

const PASS: &str = "pw-cli-test";

impl Env {
    fn init(&self) {
        self.init_with(&[]);
    }

    fn source(&self) -> PathBuf {
        let src = self.dir.join("src");
        fs::create_dir_all(src.join("chats/ana")).unwrap();
        fs::create_dir_all(src.join("media")).unwrap();
        let text: String =
            (0..20_000).map(|i| format!("{{\"id\":{i},\"text\":\"message {}\"}}\n", i * 7 % 13)).collect();
        fs::write(src.join("chats/ana/messages.json"), text).unwrap();
        let media = noise(600_000, 1);
        fs::write(src.join("media/photo.jpg"), &media).unwrap();
        fs::write(src.join("empty.txt"), b"").unwrap();
        std::os::unix::fs::symlink("chats/ana", src.join("ana")).unwrap();
        src
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_one_clean_line(o: &Output, needle: &str) {
    let e = stderr(o);
    assert!(e.contains(needle), "stderr lacks {needle:?}: {e}");
    assert!(!e.contains("panicked") && !e.contains("RUST_BACKTRACE"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "one line expected: {e}");
    assert!(e.starts_with("packtool: error: "), "{e}");
}

fn same_file(a: &Path, b: &Path) {
    assert_eq!(fs::read(a).unwrap(), fs::read(b).unwrap(), "{}", b.display());
}

#[test]
fn init_backup_list_restore_check() {
    let env = Env::new(PASS);
    env.init();
    let src = env.source();
    let out = env.ok(&["backup", src.to_str().unwrap(), "--tag", "first"]);
    assert!(out.contains("snapshot ") && out.contains(" saved"), "{out}");
    let second: serde_json::Value =
        serde_json::from_str(&env.ok(&["backup", src.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(second["summary"]["new_data_blobs"], 0, "unchanged data is not stored again");
    assert_eq!(second["summary"]["files"], 3);

    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0]["tags"][0], "first");
    assert_eq!(snaps[1]["sequence"], 2);
    assert_eq!(snaps[1]["previous"], snaps[0]["id"]);
    let table = env.ok(&["snapshots"]);
    assert!(table.contains(snaps[0]["short_id"].as_str().unwrap()), "{table}");

    let ls = env.ok(&["ls", "latest"]);
    let paths: Vec<&str> = ls.lines().collect();
    assert_eq!(
        paths,
        ["ana", "chats", "chats/ana", "chats/ana/messages.json", "empty.txt", "media", "media/photo.jpg"]
    );
    let long = env.ok(&["ls", "latest", "media", "-l"]);
    assert!(long.contains("600000") && long.contains("media/photo.jpg"), "{long}");
    let ls_json: serde_json::Value = serde_json::from_str(&env.ok(&["ls", "latest", "--json"])).unwrap();
    assert_eq!(ls_json[0]["type"], "symlink");
    assert_eq!(ls_json[0]["target"], "chats/ana");

    let target = env.dir.join("restored");
    let prefix = &snaps[0]["id"].as_str().unwrap()[..8];
    env.ok(&["restore", prefix, "--target", target.to_str().unwrap()]);
    same_file(&src.join("chats/ana/messages.json"), &target.join("chats/ana/messages.json"));
    same_file(&src.join("media/photo.jpg"), &target.join("media/photo.jpg"));
    assert_eq!(fs::read_link(target.join("ana")).unwrap(), Path::new("chats/ana"));

    let partial = env.dir.join("partial");
    env.ok(&["restore", "latest", "--target", partial.to_str().unwrap(), "--include", "media"]);
    assert!(partial.join("media/photo.jpg").exists() && !partial.join("chats").exists());

    let check = env.ok(&["check", "--read-data"]);
    assert!(check.contains("no problems found"), "{check}");
}

#[test]
fn errors_are_one_clear_line_with_the_right_exit_code() {
    let env = Env::new(PASS);
    let o = env.run_as("x", &["snapshots"]);
    assert_eq!(code(&o), 1);
    assert_one_clean_line(&o, "not a packvault repository");

    env.init();
    let o = env.run_as("not the passphrase", &["snapshots"]);
    assert_eq!(code(&o), 1);
    assert_one_clean_line(&o, "wrong passphrase");

    let o = env.run(&["restore", "latest", "--target", env.dir.join("t").to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert_one_clean_line(&o, "no snapshot");

    let o = env.run(&["frobnicate"]);
    assert_eq!(code(&o), 2, "usage errors exit with 2");

    let o = env.run(&["init"]);
    assert_eq!(code(&o), 1);
    assert_one_clean_line(&o, "not empty");

    let o = Command::new(env!("CARGO_BIN_EXE_packtool"))
        .args(["snapshots"])
        .env("PACKTOOL_REPO", env.repo())
        .env_remove("PACKTOOL_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
    assert_one_clean_line(&o, "no passphrase");

    let pass_file = env.dir.join("pass");
    fs::write(&pass_file, "pw-cli-test\n").unwrap();
    let o = env.run_as("wrong", &["snapshots", "--passphrase-file", pass_file.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "the passphrase file wins over the environment: {}", stderr(&o));
}

#[test]
fn damaged_pack_gives_exit_code_3_and_names_pack_and_file() {
    let env = Env::new(PASS);
    env.init();
    let src = env.source();
    env.ok(&["backup", src.to_str().unwrap()]);
    // Flip one byte in the middle of every data pack (tree packs are small and come last).
    let mut packs = Vec::new();
    for sub in fs::read_dir(env.repo().join("packs")).unwrap() {
        for p in fs::read_dir(sub.unwrap().path()).unwrap() {
            packs.push(p.unwrap().path());
        }
    }
    let biggest = packs.iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = fs::read(biggest).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x04;
    fs::write(biggest, &bytes).unwrap();
    let pack_name = biggest.file_name().unwrap().to_str().unwrap().to_string();

    let o = env.run(&["check", "--read-data"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(&pack_name) && e.contains("offset"), "{e}");
    assert!(e.contains("affects "), "{e}");
    assert!(!e.contains("panicked"));

    let json: serde_json::Value = serde_json::from_slice(&env.run(&["check", "--read-data", "--json"]).stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert!(json["problems"].as_array().unwrap().iter().any(|p| p["pack"] == pack_name.as_str()));

    let target = env.dir.join("restored");
    let o = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("not restored: "), "{}", stderr(&o));
    assert!(target.join("empty.txt").exists(), "unaffected files are restored");
}

fn run_env(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_packtool"));
    c.args(args)
        .env("PACKTOOL_REPO", env.repo())
        .env("PACKTOOL_CACHE_DIR", env.dir.join("cache"))
        .env("PACKTOOL_STATE_DIR", env.dir.join("state"))
        .env_remove("PACKTOOL_PASSPHRASE")
        .env_remove("PACKTOOL_RECOVERY_CODE")
        .env_remove("PACKTOOL_PIN")
        .stdin(std::process::Stdio::null());
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn keys_pins_recovery_files_and_rollback_through_the_cli() {
    let env = Env::new(PASS);
    // A weak passphrase is refused before anything is written.
    let o = env.run_as("password", &["init", "--kdf-memory", "8", "--kdf-iterations", "1"]);
    assert_eq!(code(&o), 1);
    assert_one_clean_line(&o, "passphrase too weak");
    assert!(!env.repo().exists(), "a refused init leaves no folder behind");
    env.init();
    let pass = [("PACKTOOL_PASSPHRASE", PASS)];
    let vault = env.dir.join("vault");
    let vault = vault.to_str().unwrap();

    // PIN slot through the test vault; open with PACKTOOL_PIN.
    let o = run_env(
        &env,
        &[pass[0], ("PACKTOOL_NEW_PIN", "482913")],
        &[
            "key",
            "add",
            "--pin",
            "--vault",
            vault,
            "--label",
            "phone",
            "--kdf-memory",
            "8",
            "--kdf-iterations",
            "1",
            "--json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let added: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(added["kind"], "pin");
    let pin_id = added["id"].as_str().unwrap().to_string();
    let o = run_env(&env, &[("PACKTOOL_PIN", "482913")], &["snapshots", "--vault", vault]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run_env(&env, &[("PACKTOOL_PIN", "000000")], &["snapshots", "--vault", vault]);
    assert_eq!(code(&o), 1);
    assert_one_clean_line(&o, "wrong PIN (9 attempts left");
    let o = run_env(&env, &[("PACKTOOL_PIN", "482913")], &["snapshots"]);
    assert_one_clean_line(&o, "--vault");

    // key passwd on the PIN slot: the old PIN stops working.
    let o =
        run_env(&env, &[pass[0], ("PACKTOOL_NEW_PIN", "135791")], &["key", "passwd", &pin_id[..10], "--vault", vault]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(code(&run_env(&env, &[("PACKTOOL_PIN", "482913")], &["snapshots", "--vault", vault])), 1);
    assert_eq!(code(&run_env(&env, &[("PACKTOOL_PIN", "135791")], &["snapshots", "--vault", vault])), 0);

    // Recovery code from a file; key passwd on it issues a new code and revokes the old one.
    let o = run_env(&env, &pass, &["key", "add", "--recovery-code", "--json"]);
    let added: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let code_file = env.dir.join("code.txt");
    fs::write(&code_file, format!("{}\n", added["recovery_code"].as_str().unwrap().to_lowercase())).unwrap();
    let o = run_env(&env, &[], &["key", "list", "--recovery-code-file", code_file.to_str().unwrap(), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let in_use: Vec<&serde_json::Value> = list.as_array().unwrap().iter().filter(|k| k["in_use"] == true).collect();
    assert_eq!(in_use.len(), 1);
    assert_eq!(in_use[0]["kind"], "recovery-code");
    let o = run_env(&env, &pass, &["key", "passwd", added["id"].as_str().unwrap(), "--json"]);
    let rotated: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(rotated["recovery_code"], added["recovery_code"]);
    let o = run_env(&env, &[], &["snapshots", "--recovery-code-file", code_file.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert_one_clean_line(&o, "wrong recovery code");

    // An ambiguous prefix is refused rather than guessed.
    let o = run_env(&env, &pass, &["key", "remove", ""]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));

    // Rollback: after two backups, the repository is put back to its first state.
    let src = env.source();
    run_env(&env, &pass, &["backup", src.to_str().unwrap()]);
    let copy = env.dir.join("repo-after-one");
    let status =
        Command::new("cp").args(["-a", env.repo().to_str().unwrap(), copy.to_str().unwrap()]).status().unwrap();
    assert!(status.success());
    fs::write(src.join("new.txt"), b"day two").unwrap();
    run_env(&env, &pass, &["backup", src.to_str().unwrap()]);
    fs::remove_dir_all(env.repo()).unwrap();
    fs::rename(&copy, env.repo()).unwrap();
    let o = run_env(&env, &pass, &["snapshots"]);
    assert_eq!(code(&o), 1);
    assert_one_clean_line(&o, "repository rolled back");
    let o = run_env(&env, &pass, &["snapshots", "--allow-rollback"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[path = "../../tests/support/history.rs"]
mod history;

fn json_of(env: &Env, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&env.ok(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Collects the chunk ids of every file below a tree, through `cat tree` only.
fn chunks_below(env: &Env, tree: &str, out: &mut Vec<String>, logical: &mut u64) {
    let t = json_of(env, &["cat", "tree", tree]);
    for n in t["nodes"].as_array().unwrap() {
        match n["type"].as_str().unwrap() {
            "file" => {
                *logical += n["size"].as_u64().unwrap();
                out.extend(n["chunks"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()));
            }
            "dir" => chunks_below(env, n["tree"].as_str().unwrap(), out, logical),
            _ => {}
        }
    }
}

#[test]
fn stats_ratios_match_an_independent_count() {
    let env = Env::new(PASS);
    env.init();
    let p = history::HistoryParams { first_day_messages: 2000, db_pages: 200, media_per_day: 4, ..Default::default() };
    for day in 1..=2 {
        let src = env.dir.join(format!("day{day}"));
        history::write_day(&src, &p, day).unwrap();
        env.ok(&["backup", src.to_str().unwrap()]);
    }
    let stats = json_of(&env, &["stats", "--json"]);
    // Independently: walk every snapshot's trees with `cat tree`, size the distinct chunks with
    // `index show`.
    let sizes: std::collections::HashMap<String, (u64, u64)> = json_of(&env, &["index", "show", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (e["id"].as_str().unwrap().to_string(), (e["raw_len"].as_u64().unwrap(), e["sealed_len"].as_u64().unwrap()))
        })
        .collect();
    let mut logical = 0;
    let mut chunks = Vec::new();
    for s in json_of(&env, &["snapshots", "--json"]).as_array().unwrap() {
        chunks_below(&env, s["root"].as_str().unwrap(), &mut chunks, &mut logical);
    }
    let refs = chunks.len() as u64;
    chunks.sort();
    chunks.dedup();
    let raw: u64 = chunks.iter().map(|c| sizes[c].0).sum();
    let stored: u64 = chunks.iter().map(|c| sizes[c].1).sum();
    assert_eq!(stats["logical_bytes"], logical);
    assert_eq!(stats["chunk_refs"], refs);
    assert_eq!(stats["unique_chunks"], chunks.len() as u64);
    let dedup = logical as f64 / raw as f64;
    let compression = raw as f64 / stored as f64;
    assert!((stats["dedup_ratio"].as_f64().unwrap() - dedup).abs() < 1e-9, "{dedup} vs {}", stats["dedup_ratio"]);
    assert!((stats["compression_ratio"].as_f64().unwrap() - compression).abs() < 1e-9);
    assert!(dedup > 1.3, "two days of a growing history dedup: {dedup}");
    assert!(compression > 1.05, "text compresses: {compression}");
    let hist: u64 =
        stats["chunk_size_histogram"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(hist, chunks.len() as u64);
}

#[test]
fn progress_bars_only_in_a_terminal_and_never_with_json() {
    let env = Env::new(PASS);
    env.init();
    let src = env.dir.join("big");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        let mut x = 0x9e37_79b9u64 + i;
        let data: Vec<u8> = (0..2_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(src.join(format!("f{i}")), data).unwrap();
    }
    // `script` runs the command with a pseudo-terminal as its stdin, stdout and stderr.
    let in_pty = |args: &str| -> String {
        let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_packtool"));
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("PACKTOOL_REPO", env.repo())
            .env("PACKTOOL_PASSPHRASE", PASS)
            .env("PACKTOOL_CACHE_DIR", env.dir.join("cache"))
            .env("PACKTOOL_STATE_DIR", env.dir.join("state"))
            .env("TERM", "xterm")
            .output()
            .expect("script runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = in_pty(&format!("backup {}", src.display()));
    assert!(shown.contains("ETA") && shown.contains("files"), "a bar is drawn in a terminal: {shown:?}");
    let json = in_pty(&format!("backup {} --json", src.display()));
    assert!(!json.contains("ETA"), "no bar with --json: {json:?}");
    let quiet = in_pty(&format!("restore latest --target {} --quiet", env.dir.join("r").display()));
    assert!(quiet.trim().is_empty(), "--quiet prints nothing: {quiet:?}");
    // Outside a terminal (this test's pipes), never a bar.
    let plain = env.run(&["check", "--read-data"]);
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("ETA"));
}

//! Golden tests: every command's human and JSON output on a small deterministic repository.
//!
//! This test target has no libtest harness (`harness = false`): its `main` either runs the
//! session below, or, when started by it with `PACKTOOL_GOLDEN_CHILD` set, *is* packtool — the
//! same code as the binary, after `packvault::testmode::install` has made keys, nonces and the
//! clock deterministic (seed `PACKVAULT_TEST_SEED`), so sizes, offsets and orderings are the
//! same on every run. Only this test executable can do that: the `packtool` binary has no switch
//! that makes keys predictable (`cli.rs`, `test_seed_does_nothing_in_the_binary`). Outputs are compared with `tests/golden/NN-name.txt`
//! after normalizing what still varies: the temporary folder, the host name, durations, and
//! ids (snapshots record the temporary folder's path, so their ids differ from run to run;
//! every hex id becomes `[ID n]`, numbered by first appearance, prefixes included).
//!
//! After an intended change of output, regenerate the files and review the diff:
//!
//! ```sh
//! PACKVAULT_BLESS=1 cargo test -p packtool --test golden
//! git diff packtool/tests/golden
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

mod support;
use support::noise;

struct Session {
    ids: Vec<String>,
    dir: PathBuf,
    golden: PathBuf,
    bless: bool,
    step: usize,
    failures: Vec<String>,
    host: String,
}

/// Replaces what differs between runs and machines.
/// Names of the files under the repository (ids in hex), for telling ids from numbers.
fn repository_file_names(repo: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![repo.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            } else {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

fn normalize(s: &str, tmp: &str, host: &str) -> String {
    let mut s = s.replace(tmp, "[TMP]");
    if !host.is_empty() {
        // The snapshots table pads the host to 12 columns: keep the layout whatever its length.
        s = s
            .replace(&format!("  {host:<12}  "), &format!("  {:<12}  ", "[HOST]"))
            .replace(&format!("\"{host}\""), "\"[HOST]\"");
    }
    // Durations: "in 0.1s" and "duration_secs": 0.0123
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("duration_secs\": ") {
        let (head, tail) = rest.split_at(i + "duration_secs\": ".len());
        out.push_str(head);
        let end = tail.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-')).unwrap_or(tail.len());
        out.push_str("[DURATION]");
        rest = &tail[end..];
    }
    out.push_str(rest);
    let mut s2 = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find(" read in ") {
        let (head, tail) = rest.split_at(i + " read in ".len());
        s2.push_str(head);
        let end = tail.find('s').unwrap_or(0);
        s2.push_str("[DURATION]");
        rest = &tail[end..];
    }
    s2.push_str(rest);
    s2
}

impl Session {
    fn run(&mut self, name: &str, args: &[&str]) -> (i32, String, String) {
        self.step += 1;
        let out = Command::new(std::env::current_exe().unwrap())
            .args(args)
            .env("PACKTOOL_GOLDEN_CHILD", "1")
            .current_dir(&self.dir)
            .env("PACKVAULT_TEST_SEED", "golden")
            .env("USER", "tester")
            .env("HOME", &self.dir)
            .env("PACKTOOL_REPO", self.dir.join("repo"))
            .env("PACKTOOL_PASSPHRASE", "golden test passphrase")
            .env("PACKTOOL_CACHE_DIR", self.dir.join("cache"))
            .env("PACKTOOL_STATE_DIR", self.dir.join("state"))
            .env_remove("PACKTOOL_RECOVERY_CODE")
            .env_remove("PACKTOOL_PIN")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_STATE_HOME")
            .output()
            .unwrap();
        let tmp = self.dir.display().to_string();
        let stdout = normalize(&String::from_utf8_lossy(&out.stdout), &tmp, &self.host);
        let stderr = normalize(&String::from_utf8_lossy(&out.stderr), &tmp, &self.host);
        let code = out.status.code().unwrap_or(-1);
        let text = format!("$ packtool {}\nexit: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}", args.join(" "));
        let names = repository_file_names(&self.dir.join("repo"));
        let text = self.number_ids(&text, &names);
        let file = self.golden.join(format!("{:02}-{name}.txt", self.step));
        assert!(!stdout.contains("ETA") && !stderr.contains("ETA"), "{name}: a progress bar outside a terminal");
        if self.bless {
            fs::write(&file, &text).unwrap();
        } else {
            match fs::read_to_string(&file) {
                Ok(want) if want == text => {}
                Ok(want) => {
                    self.failures.push(format!("{}: differs\n--- expected\n{want}\n--- got\n{text}", file.display()))
                }
                Err(_) => {
                    self.failures.push(format!("{}: missing (run with PACKVAULT_BLESS=1)\n{text}", file.display()))
                }
            }
        }
        (code, String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    /// Replaces hex ids (8 or more hex digits with at least one letter, or that begin an id
    /// already seen or a repository file's name, or 16 or more) by `[ID n]`; a prefix of a
    /// known id gets that id's number. Names made from random bytes (snapshots, packs) vary
    /// from run to run, and one in forty short ids has no letter.
    fn number_ids(&mut self, text: &str, names: &[String]) -> String {
        let mut out = String::with_capacity(text.len());
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
            let end = (i..b.len()).find(|&j| !matches!(b[j], b'0'..=b'9' | b'a'..=b'f')).unwrap_or(b.len());
            let tok = &text[i..end];
            let after_ok = end == b.len() || !b[end].is_ascii_alphanumeric();
            let begins_known = || self.ids.iter().chain(names).any(|k| k.starts_with(tok));
            if boundary
                && after_ok
                && (tok.len() >= 16
                    || (tok.len() >= 8 && (tok.bytes().any(|c| c.is_ascii_lowercase()) || begins_known())))
            {
                let n = match self.ids.iter().position(|k| k.starts_with(tok) || tok.starts_with(k.as_str())) {
                    Some(n) => {
                        if tok.len() > self.ids[n].len() {
                            self.ids[n] = tok.to_string();
                        }
                        n
                    }
                    None => {
                        self.ids.push(tok.to_string());
                        self.ids.len() - 1
                    }
                };
                out.push_str(&format!("[ID {n}]"));
                i = end;
            } else {
                let c = text[i..].chars().next().expect("in bounds");
                out.push(c);
                i += c.len_utf8();
            }
        }
        out
    }

    fn json(&mut self, name: &str, args: &[&str]) -> serde_json::Value {
        let (code, stdout, stderr) = self.run(name, args);
        assert!(code == 0 || code == 3, "{name}: exit {code}: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {stdout}"))
    }
}

fn set_mtime(p: &Path, secs: u64) {
    fs::File::options().write(true).open(p).unwrap().set_modified(UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
}

/// Fixed modes for every file and folder (whatever the umask), fixed times for the folders and
/// the symlink.
fn fix_tree(src: &Path, dir_time: u64) {
    use std::os::unix::fs::PermissionsExt;
    for f in ["chats/ana.json", "media/IMG-1.jpg", "media/IMG-2.jpg", "chats/ben.json", "empty.txt"] {
        if let Ok(md) = fs::metadata(src.join(f)) {
            let mut p = md.permissions();
            p.set_mode(0o644);
            fs::set_permissions(src.join(f), p).unwrap();
        }
    }
    let status = Command::new("touch")
        .args(["-h", "-d", &format!("@{dir_time}")])
        .arg(src.join("latest-chats"))
        .status()
        .unwrap();
    assert!(status.success(), "touch -h sets the symlink's own time");
    for d in ["chats", "media", ""] {
        fs::set_permissions(src.join(d), fs::Permissions::from_mode(0o755)).unwrap();
        fs::File::open(src.join(d)).unwrap().set_modified(UNIX_EPOCH + Duration::from_secs(dir_time)).unwrap();
    }
}

fn chat(from: usize, to: usize) -> String {
    (from..to).map(|i| format!("{{\"id\":{i},\"from\":\"ana\",\"text\":\"see you at {}\"}}\n", i % 24)).collect()
}

fn main() -> std::process::ExitCode {
    if std::env::var_os("PACKTOOL_GOLDEN_CHILD").is_some() {
        packvault::testmode::install(&std::env::var("PACKVAULT_TEST_SEED").unwrap_or_default());
        return packtool::main();
    }
    // Output in libtest's shape, so that runners reading `cargo test` see the count.
    println!("\nrunning 1 test");
    let started = std::time::Instant::now();
    let result = std::panic::catch_unwind(every_command_human_and_json);
    let ok = result.is_ok();
    println!("test every_command_human_and_json ... {}", if ok { "ok" } else { "FAILED" });
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s\n",
        if ok { "ok" } else { "FAILED" },
        u8::from(ok),
        u8::from(!ok),
        started.elapsed().as_secs_f64()
    );
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn every_command_human_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let src = dir.join("src");
    fs::create_dir_all(src.join("chats")).unwrap();
    fs::create_dir_all(src.join("media")).unwrap();
    fs::write(src.join("chats/ana.json"), chat(0, 4000)).unwrap();
    fs::write(src.join("chats/ben.json"), chat(100, 600)).unwrap();
    fs::write(src.join("media/IMG-1.jpg"), noise(90_000, 7)).unwrap();
    fs::write(src.join("empty.txt"), b"").unwrap();
    std::os::unix::fs::symlink("chats", src.join("latest-chats")).unwrap();
    for f in ["chats/ana.json", "chats/ben.json", "media/IMG-1.jpg", "empty.txt"] {
        set_mtime(&src.join(f), 1_700_000_000);
    }
    fix_tree(&src, 1_700_000_100);
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    fs::create_dir_all(&golden).unwrap();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let mut s = Session {
        ids: Vec::new(),
        dir,
        golden,
        bless: std::env::var_os("PACKVAULT_BLESS").is_some(),
        step: 0,
        failures: Vec::new(),
        host,
    };

    s.run("init", &["init", "--kdf-memory", "8", "--kdf-iterations", "1"]);
    s.run("backup", &["backup", "src", "--tag", "first"]);
    // Day two: a longer chat, a new photo, a removed chat.
    fs::write(src.join("chats/ana.json"), chat(0, 4400)).unwrap();
    set_mtime(&src.join("chats/ana.json"), 1_700_086_400);
    fs::remove_file(src.join("chats/ben.json")).unwrap();
    fs::write(src.join("media/IMG-2.jpg"), noise(40_000, 9)).unwrap();
    set_mtime(&src.join("media/IMG-2.jpg"), 1_700_086_400);
    fix_tree(&src, 1_700_086_500);
    s.json("backup-json", &["backup", "src", "--json"]);

    s.run("snapshots", &["snapshots"]);
    let snaps = s.json("snapshots-json", &["snapshots", "--json"]);
    let first = snaps[0]["id"].as_str().unwrap()[..8].to_string();
    let root = snaps[1]["root"].as_str().unwrap().to_string();
    s.run("ls", &["ls", "latest"]);
    s.run("ls-long", &["ls", "latest", "-l"]);
    s.json("ls-json", &["ls", "latest", "chats", "--json"]);
    s.run("find", &["find", "*.json"]);
    s.json("find-json", &["--json", "find", "media/*.jpg"]);
    s.run("diff", &["diff", &first, "latest"]);
    let diff = s.json("diff-json", &["diff", &first, "latest", "--json"]);
    assert_eq!(diff["summary"]["added"], 1);
    assert_eq!(diff["summary"]["removed"], 1);
    assert_eq!(diff["summary"]["modified"], 1);
    s.run("stats", &["stats"]);
    s.json("stats-json", &["stats", "--json"]);
    s.json("stats-one-json", &["stats", &first, "--json"]);
    s.run("packs", &["packs"]);
    let packs = s.json("packs-json", &["packs", "--json"]);
    let data_pack =
        packs.as_array().unwrap().iter().find(|p| p["kind"] == "data").unwrap()["id"].as_str().unwrap().to_string();
    s.run("pack-show", &["pack", "show", &data_pack[..8]]);
    let shown = s.json("pack-show-json", &["pack", "show", &data_pack, "--json"]);
    let blob = shown["blobs"][0]["id"].as_str().unwrap().to_string();
    s.run("index-stats", &["index", "stats"]);
    s.json("index-stats-json", &["index", "stats", "--json"]);
    s.run("index-show", &["index", "show"]);
    s.json("index-show-json", &["index", "show", "--json"]);
    s.json("cat-config", &["cat", "config"]);
    s.json("cat-snapshot", &["cat", "snapshot", "latest"]);
    let tree = s.json("cat-tree", &["cat", "tree", &root[..12]]);
    let chats_tree = tree["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "chats").unwrap()["tree"]
        .as_str()
        .unwrap()
        .to_string();
    let chats = s.json("cat-tree-chats", &["cat", "tree", &chats_tree]);
    let small_chunk = chats["nodes"][0]["chunks"][0].as_str().unwrap().to_string();
    let (code, blob_bytes, _) = s.run("cat-blob", &["cat", "blob", &small_chunk]);
    assert_eq!(code, 0);
    assert!(blob_bytes.starts_with("{\"id\":0,"), "cat blob gives the plaintext");
    let keys = s.json("key-list-json", &["key", "list", "--json"]);
    s.run("key-list", &["key", "list"]);
    let slot = keys[0]["id"].as_str().unwrap().to_string();
    s.json("cat-keyslot", &["cat", "keyslot", &slot[..6]]);
    s.json("cat-pack-header", &["cat", "pack-header", &data_pack[..8]]);
    s.run("verify-blob", &["verify-blob", &blob[..10]]);
    s.json("verify-blob-json", &["verify-blob", &blob, "--json"]);
    s.run("restore", &["restore", "latest", "--target", "out"]);
    s.json("restore-json", &["restore", &first, "--target", "out-first", "--json"]);
    s.run("check", &["check"]);
    s.json("check-json", &["check", "--read-data", "--json"]);
    s.run("quiet-check", &["check", "--quiet"]);
    s.run("usage-error", &["ls"]);

    assert!(s.failures.is_empty(), "{} golden files differ:\n{}", s.failures.len(), s.failures.join("\n"));
}

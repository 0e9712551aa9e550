//! Reliability of the `packtool` binary: backups killed with SIGKILL at random moments,
//! restores into a target that runs out of space or refuses writes, and the maintenance
//! commands (forget, prune, locks, unlock, --retry-lock).
//!
//! `PACKVAULT_LONG_TESTS=1` runs 200 kill iterations instead of 20;
//! `PACKVAULT_KILL_ITERATIONS=N` and `PACKVAULT_KILL_SEED=S` set them exactly.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASS: &str = "pw-reliability-test";

mod support;
use support::Env;

impl Env {
    fn init(&self) {
        self.init_with(&["--pack-size", "1"]);
    }

    fn open_lib(&self) -> packvault::Repository {
        let store = Arc::new(packvault::LocalStore::open(self.dir.join("repo")).unwrap());
        packvault::Repository::open(
            store,
            &packvault::Credentials::passphrase(PASS),
            &packvault::OpenOptions::default(),
        )
        .unwrap()
    }
}

/// xorshift64*, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n.div_ceil(8)).flat_map(|_| self.next().to_le_bytes()).take(n).collect()
    }
    fn text(&mut self, lines: usize) -> String {
        const W: &[&str] = &["see", "you", "at", "eight", "ok", "love", "haha", "train", "late", "coffee", "🙂"];
        (0..lines)
            .map(|i| {
                let words: Vec<&str> =
                    (0..3 + self.next() % 9).map(|_| W[(self.next() % W.len() as u64) as usize]).collect();
                format!("{{\"id\":{i},\"text\":\"{}\"}}\n", words.join(" "))
            })
            .collect()
    }
}

/// path → hash of the content, for every regular file under `root`.
fn manifest(root: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &e.path(), out);
            } else if ft.is_file() {
                let mut h = DefaultHasher::new();
                h.write(&fs::read(e.path()).unwrap());
                out.insert(e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned(), h.finish());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Kills a running child with SIGKILL; returns whether it was still running.
fn kill(child: &mut Child) -> bool {
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

#[test]
fn backups_killed_at_random_moments_lose_nothing() {
    let iterations = env_num("PACKVAULT_KILL_ITERATIONS")
        .unwrap_or(if std::env::var_os("PACKVAULT_LONG_TESTS").is_some() { 200 } else { 20 });
    let seed = env_num("PACKVAULT_KILL_SEED").unwrap_or(20261126);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let env = Env::new(PASS);
    env.init();
    let src = env.dir.join("src");
    fs::create_dir_all(src.join("chats")).unwrap();
    fs::create_dir_all(src.join("media")).unwrap();
    for t in 0..4 {
        fs::write(src.join(format!("chats/thread{t}.json")), rng.text(40_000)).unwrap();
    }
    for m in 0..6 {
        fs::write(src.join(format!("media/img{m}.jpg")), rng.bytes(2 << 20)).unwrap();
    }

    let mut expected: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
    let started = Instant::now();
    env.ok(&["backup", src.to_str().unwrap(), "--tag", "it0"]);
    let full = started.elapsed();
    expected.insert("it0".into(), manifest(&src));

    let (mut killed_running, mut completed, mut prunes) = (0, 0, 0);
    for i in 1..=iterations {
        // The day's change: new messages at the front of a thread, a new photo.
        let t = src.join(format!("chats/thread{}.json", i % 4));
        let old = fs::read_to_string(&t).unwrap();
        fs::write(&t, rng.text(3_000) + &old).unwrap();
        let photo = (1 << 20) + (rng.next() % (1 << 20)) as usize;
        fs::write(src.join(format!("media/new{i}.jpg")), rng.bytes(photo)).unwrap();
        // Old photos get deleted on the phone: the source stays about the same size.
        if i > 8 {
            fs::remove_file(src.join(format!("media/new{}.jpg", i - 8))).unwrap();
        }
        let tag = format!("it{i}");
        expected.insert(tag.clone(), manifest(&src));

        let mut child = env
            .cmd(&["backup", src.to_str().unwrap(), "--tag", &tag, "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A day's backup reads only the changed files: most kills land before it ends.
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64).max(1));
        std::thread::sleep(delay);
        if kill(&mut child) {
            killed_running += 1;
        } else {
            completed += 1;
        }

        // The dead process's lock is stale (its PID is gone): check and prune go ahead.
        let report = env.json(&["check", "--read-data"]);
        assert_eq!(report["ok"], true, "iteration {i} (killed after {delay:?}): {report}");
        if i % 4 == 0 {
            env.ok(&["forget", "--keep-last", "6", "-q"]);
            env.ok(&["prune", "-q"]);
            prunes += 1;
        }
        // The newest snapshot restores bit-exact.
        let snaps = env.json(&["snapshots"]);
        let newest = snaps.as_array().unwrap().last().unwrap();
        let target = env.dir.join(format!("restore{i}"));
        env.ok(&["restore", newest["id"].as_str().unwrap(), "--target", target.to_str().unwrap(), "-q"]);
        assert_eq!(manifest(&target), expected[newest["tags"][0].as_str().unwrap()], "iteration {i}");
        fs::remove_dir_all(&target).unwrap();
    }

    // Finally: one more backup completes, and every snapshot restores bit-exact.
    env.ok(&["backup", src.to_str().unwrap(), "--tag", "final"]);
    expected.insert("final".into(), manifest(&src));
    let report = env.json(&["check", "--read-data"]);
    assert_eq!(report["ok"], true, "{report}");
    let snaps = env.json(&["snapshots"]);
    for s in snaps.as_array().unwrap() {
        let target = env.dir.join("restore-final");
        env.ok(&["restore", s["id"].as_str().unwrap(), "--target", target.to_str().unwrap(), "-q"]);
        assert_eq!(manifest(&target), expected[s["tags"][0].as_str().unwrap()], "snapshot {}", s["short_id"]);
        fs::remove_dir_all(&target).unwrap();
    }
    assert!(killed_running > 0, "some kills landed mid-backup");

    // Kills mid-write leave temporary files; once idle long enough, prune removes them all,
    // and nothing else.
    let left = temporaries(&env.dir.join("repo"));
    for t in &left {
        age(t, Duration::from_secs(7200));
    }
    let pruned = env.json(&["prune"]);
    assert_eq!(pruned["temporaries_removed"], left.len(), "{pruned}");
    assert!(temporaries(&env.dir.join("repo")).is_empty());
    assert_eq!(env.json(&["check", "--read-data"])["ok"], true);
    eprintln!(
        "SIGKILL: {iterations} iterations (seed {seed}): {killed_running} backups killed mid-run, {completed} finished first, {prunes} prunes, {} snapshots restored bit-exact, {} temporary files swept",
        snaps.as_array().unwrap().len(),
        left.len()
    );
}

/// Makes a folder unwritable (or writable again); false where this machine cannot. Root
/// ignores permission bits, so as root the folder is made immutable (ext4, xfs, btrfs).
fn set_unwritable(dir: &Path, on: bool) -> bool {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if root {
        let flag = if on { "+i" } else { "-i" };
        Command::new("chattr").arg(flag).arg(dir).status().is_ok_and(|s| s.success())
    } else {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(if on { 0o555 } else { 0o755 })).is_ok()
    }
}

/// A temporary file prune cannot remove does not undo or fail the prune.
#[test]
fn prune_finishes_when_a_temporary_file_cannot_be_removed() {
    let env = Env::new(PASS);
    env.init();
    let src = small_source(&env);
    env.ok(&["backup", src.to_str().unwrap()]);
    let keys = env.dir.join("repo/keys");
    let stuck = keys.join(".tmp-0000000000000bad");
    fs::write(&stuck, b"left by a killed `key add`").unwrap();
    age(&stuck, Duration::from_secs(7200));
    if !set_unwritable(&keys, true) {
        eprintln!("skipped: cannot make a folder unwritable here (root without chattr +i support)");
        return;
    }
    let out = env.run(&["--json", "prune"]);
    set_unwritable(&keys, false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["temporaries_removed"], 0, "{report}");
    let warning = report["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("temporary files not removed:") && warning.contains(".tmp-0000000000000bad"),
        "{report}"
    );
    assert!(stuck.exists());
    assert_eq!(env.json(&["check"])["ok"], true);
    let done = env.json(&["prune"]);
    assert_eq!((done["temporaries_removed"].as_u64(), done["warnings"].as_array().map(Vec::len)), (Some(1), Some(0)));
}

/// Sets a file's modification time `ago` into the past.
fn age(path: &Path, ago: Duration) {
    let when = std::time::SystemTime::now() - ago;
    fs::File::options().write(true).open(path).unwrap().set_modified(when).unwrap();
}

/// Temporary files (interrupted writes) anywhere in the repository.
fn temporaries(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![repo.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(e.path());
            }
        }
    }
    out
}

fn small_source(env: &Env) -> PathBuf {
    let src = env.dir.join("src");
    fs::create_dir_all(src.join("chats")).unwrap();
    let mut rng = Rng(7);
    fs::write(src.join("chats/a.json"), rng.text(2_000)).unwrap();
    fs::write(src.join("notes.txt"), b"short note\n").unwrap();
    fs::write(src.join("big.bin"), rng.bytes(3 << 20)).unwrap();
    src
}

fn leftovers(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".pv-restore-") {
                out.push(name);
            }
            if e.file_type().unwrap().is_dir() {
                out.extend(leftovers(&e.path()));
            }
        }
    }
    out
}

#[test]
fn restore_into_a_full_disk_fails_clearly_and_leaves_no_partial_file() {
    let env = Env::new(PASS);
    env.init();
    let src = small_source(&env);
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.dir.join("target");
    // The file size limit (RLIMIT_FSIZE, 1 MiB) makes writes past it fail with EFBIG, as a
    // full disk fails them with ENOSPC; SIGXFSZ is ignored so the write returns the error.
    let out = Command::new("bash")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1024; exec \"$0\" restore latest --target \"$1\"")
        .arg(env!("CARGO_BIN_EXE_packtool"))
        .arg(&target)
        .env("PACKTOOL_REPO", env.dir.join("repo"))
        .env("PACKTOOL_PASSPHRASE", PASS)
        .env("PACKTOOL_CACHE_DIR", env.dir.join("cache"))
        .env("PACKTOOL_STATE_DIR", env.dir.join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("big.bin") && stderr.contains("File too large"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!target.join("big.bin").exists(), "the file that did not fit is not left under its name");
    assert_eq!(fs::read(target.join("notes.txt")).unwrap(), fs::read(src.join("notes.txt")).unwrap());
    assert_eq!(fs::read(target.join("chats/a.json")).unwrap(), fs::read(src.join("chats/a.json")).unwrap());
    assert!(leftovers(&target).is_empty(), "temporary files left: {:?}", leftovers(&target));
}

#[test]
fn restore_into_a_folder_it_may_not_write_names_the_files() {
    let env = Env::new(PASS);
    env.init();
    let src = small_source(&env);
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.dir.join("target");
    let locked = target.join("chats");
    fs::create_dir_all(&locked).unwrap();
    if !set_unwritable(&locked, true) {
        eprintln!("skipped: cannot make a folder unwritable here (root without chattr +i support)");
        return;
    }
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    set_unwritable(&locked, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("chats/a.json"), "{stderr}");
    assert!(stderr.contains("Permission denied") || stderr.contains("Operation not permitted"), "{stderr}");
    assert!(!locked.join("a.json").exists());
    assert_eq!(fs::read(target.join("big.bin")).unwrap(), fs::read(src.join("big.bin")).unwrap());
    assert_eq!(fs::read(target.join("notes.txt")).unwrap(), fs::read(src.join("notes.txt")).unwrap());
    assert!(leftovers(&target).is_empty(), "temporary files left: {:?}", leftovers(&target));
}

#[test]
fn forget_prune_and_repair_through_the_cli() {
    let env = Env::new(PASS);
    env.init();
    let src = small_source(&env);
    let mut rng = Rng(99);
    for day in 0..3 {
        // Each day replaces the previous day's file: forgetting old days frees their data.
        if day > 0 {
            fs::remove_file(src.join(format!("day{}.bin", day - 1))).unwrap();
        }
        fs::write(src.join(format!("day{day}.bin")), rng.bytes(600_000)).unwrap();
        env.ok(&["backup", src.to_str().unwrap(), "--tag", &format!("day{day}")]);
    }
    let dry = env.json(&["forget", "--keep-last", "1", "--dry-run"]);
    assert_eq!(dry["remove"].as_array().unwrap().len(), 2);
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 3, "dry run removes nothing");
    let text = env.ok(&["forget", "--keep-last", "1"]);
    assert!(text.contains("1 snapshots kept, 2 removed"), "{text}");
    // What a backup killed while writing a pack leaves, and a write in progress right now.
    let killed = env.dir.join("repo/packs/.tmp-00000000deadbeef");
    fs::write(&killed, vec![1u8; 70_000]).unwrap();
    age(&killed, Duration::from_secs(7200));
    let fresh = env.dir.join("repo/index/.tmp-00000000cafef00d");
    fs::write(&fresh, b"being written").unwrap();
    let checked = env.json(&["check"]);
    assert_eq!((checked["ok"].as_bool(), checked["stale_temporaries"].as_u64()), (Some(true), Some(1)), "{checked}");
    let would = env.json(&["prune", "--dry-run", "--max-unused", "0"]);
    assert!(would["bytes_freed"].as_u64().unwrap() > 1_000_000, "{would}");
    assert_eq!((would["temporaries_removed"].as_u64(), would["temporary_bytes"].as_u64()), (Some(1), Some(70_000)));
    assert!(killed.exists(), "a dry run removes nothing");
    let done = env.json(&["prune", "--max-unused", "0"]);
    assert_eq!(done["bytes_freed"], would["bytes_freed"]);
    assert_eq!(done["temporaries_removed"], 1, "{done}");
    assert!(!killed.exists() && fresh.exists(), "only the idle temporary file is removed");
    assert_eq!(env.json(&["check"])["stale_temporaries"], 0);
    assert_eq!(env.json(&["check", "--read-data"])["ok"], true);
    let target = env.dir.join("t");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap(), "-q"]);
    assert_eq!(manifest(&target), manifest(&src));

    // Lose the index: check says so, `repair index` rebuilds it from the packs.
    for f in fs::read_dir(env.dir.join("repo/index")).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    let out = env.run(&["--no-cache", "check"]);
    assert_eq!(out.status.code(), Some(3));
    env.ok(&["--no-cache", "repair", "index"]);
    assert_eq!(env.json(&["--no-cache", "check", "--read-data-subset", "1/2"])["ok"], true);
    let e = env.run(&["check", "--read-data-subset", "3/2"]);
    assert_eq!(e.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&e.stderr).contains("N/M"));

    // Lose the largest pack (data): prune refuses to run over data the snapshots need, and the
    // CLI, not the library, says what to run.
    let mut packs: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for shard in fs::read_dir(env.dir.join("repo/packs")).unwrap() {
        for f in fs::read_dir(shard.unwrap().path()).unwrap() {
            let f = f.unwrap();
            packs.push((f.metadata().unwrap().len(), f.path()));
        }
    }
    fs::remove_file(&packs.iter().max().unwrap().1).unwrap();
    let out = env.run(&["prune"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("repair the index") && err.contains("`packtool repair index`"), "{err}");
}

#[test]
fn locks_block_conflicting_commands_until_released_or_removed() {
    let env = Env::new(PASS);
    env.init();
    let src = small_source(&env);
    let repo = env.open_lib();

    // A live exclusive lock (this test process holds it) blocks a backup: exit code 4.
    let held = repo.lock(packvault::LockKind::Exclusive, "prune").unwrap();
    let out = env.run(&["backup", src.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("locked") && stderr.contains("exclusive lock for prune"), "{stderr}");
    let listed = env.json(&["locks"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["stale"], false);
    // unlock leaves a live lock alone; --force removes it.
    assert!(env.ok(&["unlock"]).contains("0 locks removed"));
    assert_eq!(env.json(&["locks"]).as_array().unwrap().len(), 1);

    // --retry-lock waits for the lock to go.
    let waiter = env
        .cmd(&["--retry-lock", "60s", "backup", src.to_str().unwrap(), "-q"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    drop(held);
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.json(&["locks"]).as_array().unwrap().is_empty(), "the backup released its lock");

    // `unlock --force` removes even a live lock (for when the user knows its holder is gone,
    // e.g. on another device that was wiped). Locks of dead processes of this host are stale
    // by themselves: the SIGKILL test relies on that.
    let held = repo.lock(packvault::LockKind::Exclusive, "prune").unwrap();
    assert_eq!(env.json(&["locks"])[0]["stale"], false, "our own process is alive");
    assert!(env.ok(&["unlock", "--force"]).contains("1 locks removed"));
    env.ok(&["backup", src.to_str().unwrap(), "-q"]);
    drop(held);
}

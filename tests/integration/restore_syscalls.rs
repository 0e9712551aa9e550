//! A restore of many small files stays within its system-call budget (issue 16): every call the
//! process makes is counted by `strace -c -f` around a child process (this test binary, running
//! the ignored `restore_syscalls_child`) that opens the repository and restores; the cost per
//! file is the difference between restoring [`FILES`] files and restoring one, over the
//! difference in files, so opening the repository, loading the index and the test harness's own
//! calls cancel out. Skipped, with a message, where `strace` is missing or cannot trace.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use packvault::{LocalStore, RestoreOptions, SnapshotInfo};

use crate::{new_local_repo, reopen};

/// Small files restored (the issue asks for 2,000).
const FILES: usize = 2000;
/// Folders they are spread over.
const FOLDERS: usize = 20;
/// System calls a small file may cost: create (anonymous), write, set its time, link into
/// place, close. Folders, pack reads and thread hand-overs share the rest of the budget.
const BUDGET_PER_FILE: f64 = 5.5;

/// Environment variable that makes `restore_syscalls_child` run: the scratch folder.
const CHILD_DIR: &str = "PACKVAULT_SYSCALL_CHILD_DIR";
/// The snapshot path the child restores.
const CHILD_INCLUDE: &str = "PACKVAULT_SYSCALL_CHILD_INCLUDE";

fn strace_works() -> bool {
    Command::new("strace").args(["-f", "-c", "-o", "/dev/null", "true"]).output().is_ok_and(|o| o.status.success())
}

/// Calls by name, and the total, from an `strace -c` summary.
fn parse_summary(text: &str) -> (Vec<(String, u64)>, u64) {
    let mut calls = Vec::new();
    let mut total = 0;
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some(&name) = cols.last() else { continue };
        // % time, seconds, usecs/call, calls, [errors,] name
        let Some(n) = cols.get(3).and_then(|c| c.parse::<u64>().ok()) else { continue };
        if name == "total" {
            total = n;
        } else if cols.len() >= 5 {
            calls.push((name.to_string(), n));
        }
    }
    (calls, total)
}

/// Restores `include` of the latest snapshot in `dir/repo` in a child process under strace;
/// returns the calls by name and the total. In a debug build the standard library checks each
/// descriptor it closes with `fcntl(F_GETFD)` (a debug assertion that release builds do not
/// make): those calls are left out of the total.
fn traced_restore(dir: &Path, include: &str) -> (Vec<(String, u64)>, u64) {
    let out = dir.join(format!("strace-{include}.txt"));
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .arg(&exe)
        .args(["--exact", "restore_syscalls::restore_syscalls_child", "--ignored", "--test-threads=1", "-q"])
        .env(CHILD_DIR, dir)
        .env(CHILD_INCLUDE, include)
        .env("RAYON_NUM_THREADS", "2")
        .status()
        .unwrap();
    assert!(status.success(), "the traced restore of {include} failed");
    let (calls, total) = parse_summary(&fs::read_to_string(&out).unwrap());
    let debug_checks =
        if cfg!(debug_assertions) { calls.iter().find(|(name, _)| name == "fcntl").map_or(0, |c| c.1) } else { 0 };
    (calls.into_iter().filter(|(name, _)| !(debug_checks > 0 && name == "fcntl")).collect(), total - debug_checks)
}

#[test]
fn small_file_restore_stays_within_its_syscall_budget() {
    if !strace_works() {
        // CI installs strace and sets PACKVAULT_STRACE_REQUIRED=1: there, a skip is a failure.
        assert!(
            std::env::var_os("PACKVAULT_STRACE_REQUIRED").is_none(),
            "strace is required (PACKVAULT_STRACE_REQUIRED) but is not installed or cannot trace"
        );
        eprintln!("skipped: strace is not installed or cannot trace here (ptrace refused)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for f in 0..FILES {
        let folder = src.join(format!("many/d{:02}", f % FOLDERS));
        fs::create_dir_all(&folder).unwrap();
        // 100 B – 4 KiB, distinct contents: one chunk each.
        let len = 100 + (f * 997) % 4000;
        let data: Vec<u8> = (0..len).map(|k| (k * 31 + f * 7) as u8).collect();
        fs::write(folder.join(format!("f{f:04}.txt")), data).unwrap();
    }
    fs::create_dir_all(src.join("one/d")).unwrap();
    fs::write(src.join("one/d/f.txt"), b"one small file").unwrap();
    let (_, mut repo) = new_local_repo(tmp.path());
    let mut s = repo.backup().unwrap();
    s.add_dir(&src, "").unwrap();
    s.commit(SnapshotInfo::default()).unwrap();
    drop(repo);

    let (_, one) = traced_restore(tmp.path(), "one");
    let (calls, many) = traced_restore(tmp.path(), "many");
    let per_file = (many as f64 - one as f64) / (FILES - 1) as f64;
    let mut top = calls;
    top.sort_by_key(|c| std::cmp::Reverse(c.1));
    top.truncate(12);
    eprintln!("restore of {FILES} small files: {many} calls, of one file: {one}; {per_file:.2} per file; {top:?}");
    assert!(
        per_file <= BUDGET_PER_FILE,
        "{per_file:.2} system calls per small file (budget {BUDGET_PER_FILE}); most frequent: {top:?}"
    );
}

/// The traced child of [`small_file_restore_stays_within_its_syscall_budget`]: opens the
/// repository its parent made and restores one snapshot path.
#[test]
#[ignore = "run by small_file_restore_stays_within_its_syscall_budget under strace"]
fn restore_syscalls_child() {
    let dir = std::path::PathBuf::from(std::env::var_os(CHILD_DIR).expect("run by the parent test"));
    let include = std::env::var(CHILD_INCLUDE).unwrap();
    // No cache: both children load the index the same way, from the repository.
    let repo = reopen(Arc::new(LocalStore::open(dir.join("repo")).unwrap()), None);
    let (_, snapshot) = repo.find_snapshot("latest").unwrap();
    let target = dir.join(format!("restored-{include}"));
    let options = RestoreOptions { target, include: vec![include], ..Default::default() };
    let report = repo.restore(&snapshot, &options).unwrap();
    assert!(report.is_complete(), "{:?}", report.failed);
}

//! What the `packtool` integration tests share: a scratch repository driven through the
//! binary, and deterministic test data.
// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

use std::path::PathBuf;

#[path = "../../../tests/support/noise.rs"]
mod shared_noise;
#[allow(unused_imports)] // not every test crate draws noise
pub use shared_noise::noise;
use std::process::{Command, Output};

/// A scratch folder holding a repository (`repo/`), its cache and state, and test files.
pub struct Env {
    _tmp: tempfile::TempDir,
    /// The scratch folder.
    pub dir: PathBuf,
    /// The passphrase commands run with unless told otherwise.
    pub pass: &'static str,
}

impl Env {
    pub fn new(pass: &'static str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        Env { _tmp: tmp, dir, pass }
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }

    /// `packtool args` on this repository with passphrase `pass`, isolated from the caller's
    /// environment (cache and state folders, test seeds).
    pub fn cmd_as(&self, pass: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_packtool"));
        c.args(args)
            .env("PACKTOOL_REPO", self.repo())
            .env("PACKTOOL_PASSPHRASE", pass)
            .env("PACKTOOL_CACHE_DIR", self.dir.join("cache"))
            .env("PACKTOOL_STATE_DIR", self.dir.join("state"))
            .env_remove("XDG_CACHE_HOME")
            .env_remove("PACKVAULT_TEST_SEED");
        c
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_as(self.pass, args)
    }

    pub fn run_as(&self, pass: &str, args: &[&str]) -> Output {
        self.cmd_as(pass, args).output().unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must succeed with `--json`; its document.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Creates the repository with a quick key derivation (and `extra` init options).
    pub fn init_with(&self, extra: &[&str]) {
        let mut a = vec!["init", "--kdf-memory", "8", "--kdf-iterations", "1"];
        a.extend_from_slice(extra);
        self.ok(&a);
    }
}

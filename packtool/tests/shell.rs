//! Runs the shell scenarios in this folder against the built `packtool`.

use std::process::Command;

#[test]
fn new_device_restores_with_the_recovery_code_alone() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/new_device.sh");
    let out =
        Command::new("bash").arg(script).env("PACKTOOL", env!("CARGO_BIN_EXE_packtool")).output().expect("bash runs");
    assert!(
        out.status.success(),
        "{script} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! `packtool backup --append-only GLOB`: a message log that grew by 1 MiB costs about 1 MiB of
//! reading, not its whole history, and restores bit-exact.

use std::fs;
use std::io::Write;

mod support;
use support::{noise, Env};

const PASS: &str = "pw-append-test";
const MIB: usize = 1 << 20;

#[test]
fn a_grown_log_is_read_from_its_last_chunk_on() {
    let env = Env::new(PASS);
    env.init_with(&[]);
    let src = env.dir.join("src");
    fs::create_dir_all(src.join("threads")).unwrap();
    let data = noise(201 * MIB, 0x10C);
    let log = src.join("chat.log");
    fs::write(&log, &data[..200 * MIB]).unwrap();
    fs::write(src.join("threads/bob.log"), noise(300_000, 2)).unwrap();
    fs::write(src.join("settings.json"), b"{\"theme\":\"dark\"}").unwrap();
    // Files changed within a second of a backup's start do not go into the files cache.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let dir = src.to_str().unwrap();
    let first = env.json(&["backup", dir, "--append-only", "*.log"]);
    assert!(first["bytes_read"].as_u64().unwrap() > 200 * MIB as u64, "{first}");
    assert_eq!(first["append_fallbacks"][0]["path"], "chat.log", "{first}");

    fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(&data[200 * MIB..]).unwrap();
    let second = env.json(&["backup", dir, "--append-only", "*.log", "--append-only", "threads/*.log"]);
    let read = second["bytes_read"].as_u64().unwrap();
    assert!(read < 4 * MIB as u64, "read {read} bytes for 1 MiB appended: {second}");
    assert!(read >= MIB as u64, "the new bytes are read: {second}");
    eprintln!("backup --append-only after 1 MiB appended to a 200 MiB log: read {read} bytes");
    assert_eq!(second["summary"]["bytes_read"], read);
    assert_eq!(second["appended"], 1, "{second}");
    assert_eq!(second["append_fallbacks"], serde_json::json!([]), "{second}");
    assert_eq!(second["files_unchanged"], 2, "the other files come from the files cache");

    let target = env.dir.join("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap(), "--include", "chat.log"]);
    assert!(fs::read(target.join("chat.log")).unwrap() == data, "the grown log restores bit-exact");
    env.ok(&["check"]);

    // Text output says what append mode did.
    fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b"one more line\n").unwrap();
    let text = env.ok(&["backup", dir, "--append-only", "*.log"]);
    assert!(text.contains("append-only files: 1 resumed from their old version, 0 read in full"), "{text}");
}

//! `packtool` end to end on an S3 repository (`-r s3:http://HOST:PORT/BUCKET/PREFIX`): init,
//! two backups, snapshots, a restore, a check that reads every pack; then the same repository
//! through `PACKTOOL_REPO=s3://BUCKET/PREFIX` with the endpoint in `AWS_ENDPOINT_URL`, and the
//! errors a wrong secret, missing credentials and a bad URL give.
//!
//! Needs the S3 server that `tests/s3/start-garage.sh` starts (see the root `tests/s3.rs`);
//! without one each test says how to run it and passes, unless `PACKVAULT_S3_REQUIRED=1`.

use std::fs;
use std::process::Output;

mod support;
use support::{noise, Env};

const PASS: &str = "pw-s3-cli-test";

/// (endpoint, bucket), or `None` after saying how to run the test.
fn server(test: &str) -> Option<(String, String)> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    match (var("AWS_ENDPOINT_URL"), var("S3_BUCKET"), var("AWS_ACCESS_KEY_ID")) {
        (Some(e), Some(b), Some(_)) => Some((e, b)),
        _ => {
            assert_ne!(var("PACKVAULT_S3_REQUIRED").as_deref(), Some("1"), "{test}: no S3 server in the environment");
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "packtool S3 tests skipped: no S3 server in the environment; run eval \"$(tests/s3/start-garage.sh)\" first"
                );
            });
            None
        }
    }
}

fn prefix(test: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{test}-{t:x}-{}", std::process::id())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_backup_restore_check_through_an_s3_url() {
    let Some((endpoint, bucket)) = server("init_backup_restore_check_through_an_s3_url") else { return };
    let env = Env::new(PASS);
    let prefix = prefix("cli");
    let url = format!("s3:{endpoint}/{bucket}/{prefix}");
    let src = env.dir.join("src");
    fs::create_dir_all(src.join("chats/ana")).unwrap();
    let text: String = (0..20_000).map(|i| format!("{{\"id\":{i},\"text\":\"message {}\"}}\n", i * 7 % 13)).collect();
    fs::write(src.join("chats/ana/messages.json"), &text).unwrap();
    let media = noise(3 << 20, 1);
    fs::write(src.join("photo.jpg"), &media).unwrap();

    let r = ["-r", url.as_str(), "--s3-connections", "4"];
    let with = |args: &[&str]| -> Vec<String> { r.iter().chain(args).map(|s| (*s).to_string()).collect() };
    let ok = |args: &[&str]| {
        let a = with(args);
        env.ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let init = ok(&["init", "--kdf-memory", "8", "--kdf-iterations", "1", "--pack-size", "1"]);
    assert!(init.contains(&url), "{init}");
    ok(&["backup", src.to_str().unwrap(), "--tag", "first"]);
    fs::write(src.join("chats/ana/messages.json"), format!("{text}{{\"id\":-1}}\n")).unwrap();
    ok(&["backup", src.to_str().unwrap()]);
    let snaps = ok(&["--json", "snapshots"]);
    let snaps: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    assert_eq!(snaps.as_array().map(Vec::len), Some(2), "{snaps}");
    let target = env.dir.join("restored");
    ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(fs::read(target.join("photo.jpg")).unwrap() == media);
    assert!(fs::read_to_string(target.join("chats/ana/messages.json")).unwrap().ends_with("{\"id\":-1}\n"));
    let check = ok(&["check", "--read-data"]);
    assert!(check.contains("no problems found"), "{check}");

    // The same place as s3://BUCKET/PREFIX with the endpoint in the environment: one pin.
    let out = env
        .cmd(&["snapshots"])
        .env("PACKTOOL_REPO", format!("s3://{bucket}/{prefix}"))
        .env("AWS_ENDPOINT_URL", &endpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("first contact"), "the same location: {}", stderr(&out));
}

#[test]
fn a_wrong_secret_and_a_bad_url_give_one_clear_line() {
    let Some((endpoint, bucket)) = server("a_wrong_secret_and_a_bad_url_give_one_clear_line") else { return };
    let env = Env::new(PASS);
    let url = format!("s3:{endpoint}/{bucket}/{}", prefix("cli-wrong"));
    let secret = "NotTheSecret-0f9e8d7c6b5a49382716";
    let out = env.cmd(&["-r", &url, "snapshots"]).env("AWS_SECRET_ACCESS_KEY", secret).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("access key") && !err.contains(secret), "{err}");

    // No key anywhere: not in the environment, no profile file.
    let out = env
        .cmd(&["-r", &url, "snapshots"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("HOME", &env.dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no S3 credentials"), "{err}");

    let out = env.run(&["-r", "s3:http://127.0.0.1:1/Bad_Bucket", "snapshots"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bucket \"Bad_Bucket\""), "{err}");
}

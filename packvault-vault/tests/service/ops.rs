//! Operations: the key file, stats, graceful shutdown, an unreachable vault.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use packvault::{Error, PinVault};
use packvault_vault::{server, RemoteVault};

use super::support::{Server, TEST_KSF};

#[test]
fn keys_are_made_once_owner_only_and_survive_restarts_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vault.db");
    let server = Server::start(&db, &[]);
    let key = server.key;
    let key_file = server::key_path(&db);
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o077, 0, "the database is owner-only");
    let vault = server.vault();
    let (id, secret) = vault.enroll(&[1; 32], &[2; 32]).unwrap();
    let output = server.output.clone();
    assert!(server.terminate().success(), "SIGTERM is a clean exit");
    assert!(output.lock().unwrap().iter().any(|l| l.contains("stopped")));

    let out = Command::new(env!("CARGO_BIN_EXE_packvault-vault")).args(["key", "--db"]).arg(&db).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), key.to_string());

    let server = Server::start(&db, &[]);
    assert_eq!(server.key, key, "the same key after a restart");
    assert_eq!(server.vault().release(&id, &[1; 32], &[2; 32]).unwrap(), secret);
    server.terminate();

    // A key file others can read is refused.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_packvault-vault"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[test]
fn stats_count_records_and_locked_out_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vault.db");
    let server = Server::start(&db, &["--attempt-limit", "2"]);
    let vault = server.vault();
    let binding = [7u8; 32];
    let ids: Vec<[u8; 16]> = (0..3u8).map(|i| vault.enroll(&binding, &[i; 32]).unwrap().0).collect();
    assert!(matches!(vault.release(&ids[0], &binding, &[9; 32]), Err(Error::WrongPin { attempts_left: 1 })));
    assert!(matches!(vault.release(&ids[0], &binding, &[9; 32]), Err(Error::PinDestroyed)));
    assert!(matches!(vault.release(&ids[1], &binding, &[9; 32]), Err(Error::WrongPin { attempts_left: 1 })));
    // Another binding: refused and not counted.
    let e = vault.release(&ids[2], &[8; 32], &[2; 32]).err().unwrap();
    assert!(matches!(e, Error::Integrity(_)) && e.to_string().contains("no attempt counted"), "{e}");
    assert_eq!(vault.failed_attempts(&ids[2]).unwrap(), 0);
    let out = Command::new(env!("CARGO_BIN_EXE_packvault-vault")).args(["stats", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "records: 2\nlocked out: 1\nwith failed attempts: 1\n");
    // Removal forgets a record; an unknown id is "not found", which the library skips.
    vault.remove(&ids[2]).unwrap();
    assert!(matches!(vault.failed_attempts(&ids[2]), Err(Error::NotFound(_))));
    assert!(matches!(vault.release(&ids[2], &binding, &[2; 32]), Err(Error::NotFound(_))));
    server.terminate();
}

#[test]
fn an_unreachable_vault_is_named_as_such() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let key = "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76".parse().unwrap();
    let vault = RemoteVault::new(&format!("http://127.0.0.1:{port}"), key).unwrap().with_ksf(TEST_KSF).unwrap();
    let e = vault.release(&[0; 16], &[0; 32], &[0; 32]).err().unwrap();
    assert!(matches!(e, Error::Io(_)), "{e}");
    assert!(e.to_string().contains("is unreachable"), "{e}");
    assert!(RemoteVault::new("https://vault.example", key).is_err());
}

/// Login latency and logins per second on this machine, printed (not asserted). Run with
/// `cargo test --release -p packvault-vault measure -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_login_latency_and_throughput() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("vault.db"), &["--attempt-limit", "1000000"]);
    let (binding, auth) = ([1u8; 32], [2u8; 32]);
    for (name, ksf) in [("production KSF", packvault_vault::KsfParams::PRODUCTION), ("test KSF", TEST_KSF)] {
        let vault = RemoteVault::new(&server.url, server.key).unwrap().with_ksf(ksf).unwrap();
        let (id, _) = vault.enroll(&binding, &auth).unwrap();
        let mut times: Vec<Duration> = (0..20)
            .map(|_| {
                let t = Instant::now();
                vault.release(&id, &binding, &auth).unwrap();
                t.elapsed()
            })
            .collect();
        times.sort_unstable();
        println!("login latency, {name}: median {:?}, max {:?} (20 logins)", times[10], times[19]);
    }
    for threads in [1usize, 4, 16] {
        let vault = server.vault();
        let (id, _) = vault.enroll(&binding, &auth).unwrap();
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let vault = vault.clone();
                std::thread::spawn(move || {
                    let mut n = 0u32;
                    while start.elapsed() < Duration::from_secs(3) {
                        vault.release(&id, &binding, &auth).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let total: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{threads} client threads, one record: {total} completed logins in {secs:.1} s = {:.0}/s",
            f64::from(total) / secs
        );
    }
    server.terminate();
}

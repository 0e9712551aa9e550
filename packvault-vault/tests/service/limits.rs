//! The attempt limit: ten wrong PINs destroy the record; parallel guesses are all counted.

use std::sync::{Arc, Barrier};

use packvault::{Error, PinVault};
use packvault_vault::server;

use super::restore::vault_id_of;
use super::support::{contains, Fixture, Proxy, Server, PIN, TEST_KSF};

#[test]
fn ten_wrong_pins_destroy_the_record_and_the_right_pin_then_fails_destroyed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vault.db");
    let server = Server::start(&db, &[]);
    let proxy = Proxy::start(server.addr);
    let vault: Arc<dyn PinVault> =
        Arc::new(packvault_vault::RemoteVault::new(&proxy.url, server.key).unwrap().with_ksf(TEST_KSF).unwrap());
    let fixture = Fixture::new();
    let slot = fixture.add_pin(vault.as_ref(), PIN);
    let id = vault_id_of(&fixture, &slot);

    // The registration record as uploaded: its masking key (bytes 32..96) is in the database.
    let (_, upload) = proxy.requests().into_iter().find(|(p, _)| p == "/v1/register/finish").unwrap();
    let masking_key = upload[upload.len() - 192 + 32..upload.len() - 96].to_vec();
    let files = || {
        ["", "-wal"]
            .iter()
            .flat_map(|s| std::fs::read(format!("{}{s}", db.display())).unwrap_or_default())
            .collect::<Vec<u8>>()
    };
    assert!(contains(&files(), &masking_key), "the record is stored (else the erasure check below proves nothing)");

    for left in (1..10).rev() {
        let e = fixture.open_new_device(vault.clone(), "111111").err().unwrap();
        assert!(matches!(e, Error::WrongPin { attempts_left } if attempts_left == left), "{e}");
    }
    let e = fixture.open_new_device(vault.clone(), "111111").err().unwrap();
    assert!(matches!(e, Error::PinDestroyed), "the tenth wrong PIN: {e}");
    let e = fixture.open_new_device(vault.clone(), PIN).err().unwrap();
    assert!(matches!(e, Error::PinDestroyed), "even the right PIN: {e}");
    assert!(e.to_string().contains("destroyed"));

    let info = server::record(&db, &id).unwrap().unwrap();
    assert!(info.destroyed.is_some());
    assert_eq!(info.evaluations, 10, "ten answered logins, no more");
    assert!(!contains(&files(), &masking_key), "the destroyed record is erased from the database and its WAL");
    // The passphrase still opens.
    fixture.open_device1();
    server.terminate();
}

/// Runs `n` wrong-PIN releases at once; returns their results.
fn parallel_wrong_guesses(
    vault: &packvault_vault::RemoteVault,
    id: [u8; 16],
    binding: [u8; 32],
    n: usize,
) -> Vec<Error> {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (vault, barrier) = (vault.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut wrong = [0u8; 32];
                wrong[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                barrier.wait();
                vault.release(&id, &binding, &wrong).expect_err("a wrong PIN never opens")
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn fifty_parallel_wrong_guesses_are_all_counted_and_at_most_the_limit_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (binding, auth) = ([3u8; 32], [4u8; 32]);

    // Limit 100: every one of 50 parallel guesses is counted, each at its own count.
    let db = dir.path().join("wide.db");
    let server = Server::start(&db, &["--attempt-limit", "100"]);
    let vault = server.vault();
    let (id, _) = vault.enroll(&binding, &auth).unwrap();
    let results = parallel_wrong_guesses(&vault, id, binding, 50);
    let mut left: Vec<u32> = results
        .iter()
        .map(|e| match e {
            Error::WrongPin { attempts_left } => *attempts_left,
            e => panic!("{e}"),
        })
        .collect();
    left.sort_unstable();
    left.dedup();
    assert_eq!(left, (50..100).collect::<Vec<u32>>(), "each guess saw its own count: none was lost");
    assert_eq!(vault.failed_attempts(&id).unwrap(), 50);
    assert_eq!(server::record(&db, &id).unwrap().unwrap().evaluations, 50);
    server.terminate();

    // The default limit (10): 50 parallel guesses get at most 10 answers; the record is gone.
    let db = dir.path().join("vault.db");
    let server = Server::start(&db, &[]);
    let vault = server.vault();
    let (id, secret) = vault.enroll(&binding, &auth).unwrap();
    assert_eq!(vault.release(&id, &binding, &auth).unwrap(), secret);
    let results = parallel_wrong_guesses(&vault, id, binding, 50);
    let mut left: Vec<u32> = results
        .iter()
        .filter_map(|e| match e {
            Error::WrongPin { attempts_left } => Some(*attempts_left),
            Error::PinDestroyed => None,
            e => panic!("{e}"),
        })
        .collect();
    left.sort_unstable();
    assert_eq!(left, (1..10).collect::<Vec<u32>>(), "nine wrong-PIN answers, then the tenth destroyed it");
    let info = server::record(&db, &id).unwrap().unwrap();
    assert_eq!(info.evaluations, 11, "one right login and ten guesses were answered; forty were refused");
    assert!(info.destroyed.is_some());
    assert!(matches!(vault.release(&id, &binding, &auth), Err(Error::PinDestroyed)));
    server.terminate();
}

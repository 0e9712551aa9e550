//! `kill -9` in the middle of logins: no counter goes down, no record is lost.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use packvault::{Error, PinVault};

use super::support::Server;

#[test]
fn kill_9_during_logins_never_lowers_a_counter_and_a_restart_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vault.db");
    let server = Server::start(&db, &["--attempt-limit", "100000"]);
    let vault = server.vault();
    let binding = [5u8; 32];
    let records: Vec<[u8; 16]> = (0..3u8).map(|i| vault.enroll(&binding, &[i; 32]).unwrap().0).collect();
    let mut server = Some(server);
    // Wrong-PIN answers each record got so far: every one was a guess the client could test.
    let answered: Arc<Vec<AtomicU32>> = Arc::new(records.iter().map(|_| AtomicU32::new(0)).collect());
    let mut last_seen = vec![0u32; records.len()];
    for round in 0..6u64 {
        let s = server.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..4usize)
            .map(|t| {
                let (vault, stop, answered, records) = (s.vault(), stop.clone(), answered.clone(), records.clone());
                std::thread::spawn(move || {
                    for n in 0..400usize {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let r = (t + n) % records.len();
                        match vault.release(&records[r], &binding, &[0xee; 32]) {
                            Err(Error::WrongPin { .. }) => {
                                answered[r].fetch_add(1, Ordering::SeqCst);
                            }
                            Err(Error::Io(_)) => break,
                            Err(_) => {}
                            Ok(_) => panic!("a wrong PIN opened"),
                        }
                    }
                })
            })
            .collect();
        // Let logins run, then crash the server in the middle of them.
        std::thread::sleep(Duration::from_millis(150 + 97 * round));
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let s = Server::start(&db, &["--attempt-limit", "100000"]);
        let v = s.vault();
        for (i, id) in records.iter().enumerate() {
            let failures = v.failed_attempts(id).expect("the record survives the crash");
            let answered = answered[i].load(Ordering::SeqCst);
            assert!(failures >= answered, "round {round}, record {i}: {failures} counted, {answered} answered");
            assert!(failures >= last_seen[i], "round {round}, record {i}: the count went down");
            last_seen[i] = failures;
        }
        server = Some(s);
    }
    assert!(answered.iter().all(|a| a.load(Ordering::SeqCst) > 0), "logins ran during the crashes");
    // The right PIN still opens each record, and resets it.
    let s = server.take().unwrap();
    let v = s.vault();
    for (i, id) in records.iter().enumerate() {
        v.release(id, &binding, &[u8::try_from(i).unwrap(); 32]).unwrap();
        assert_eq!(v.failed_attempts(id).unwrap(), 0);
    }
    s.terminate();
}

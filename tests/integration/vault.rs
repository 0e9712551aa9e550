//! The reference PIN vault keeps the counting rules of `PinVault` (issue 10): it counts an
//! attempt durably before it compares the PIN proof, serializes parallel requests, and refuses
//! an attempt it cannot record.

use std::fs;
use std::sync::{Arc, Barrier};

use packvault::{Error, ErrorKind, FileVault, PinVault, MAX_PIN_ATTEMPTS};

const BINDING: [u8; 32] = [5; 32];
const RIGHT: [u8; 32] = [1; 32];

/// 40 wrong PINs at once, each through its own `FileVault` on the one file (as 40 processes
/// would): at most `MAX_PIN_ATTEMPTS` of them get an answer other than "destroyed", each
/// answer reports a different count, and the secret ends destroyed.
#[test]
fn parallel_wrong_pins_get_no_more_answers_than_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("vault");
    let (id, _) = FileVault::new(&path).enroll(&BINDING, &RIGHT).unwrap();
    let shared = Arc::new(FileVault::new(&path));
    let start = Arc::new(Barrier::new(40));
    let results: Vec<Result<_, Error>> = (0..40u8)
        .map(|i| {
            let (path, start, shared) = (path.clone(), start.clone(), shared.clone());
            std::thread::spawn(move || {
                // Half the guessers share one handle, half bring their own.
                let own = FileVault::new(path);
                let vault: &FileVault = if i % 2 == 0 { &shared } else { &own };
                start.wait();
                vault.release(&id, &BINDING, &[100 + i; 32]).map(|_| ())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let mut left: Vec<u32> = Vec::new();
    for r in &results {
        match r {
            Err(Error::WrongPin { attempts_left }) => left.push(*attempts_left),
            Err(Error::PinDestroyed) => {}
            other => panic!("a wrong PIN got {other:?}"),
        }
    }
    left.sort_unstable();
    assert!(
        left.len() <= MAX_PIN_ATTEMPTS as usize,
        "{} wrong-PIN answers before the secret was destroyed (limit {MAX_PIN_ATTEMPTS}): {left:?}",
        left.len()
    );
    // Serialized, counted first: each count from 9 down to 1 answered once, then "destroyed".
    assert_eq!(left, (1..MAX_PIN_ATTEMPTS).collect::<Vec<_>>(), "every answer saw its own count");
    assert!(matches!(shared.release(&id, &BINDING, &RIGHT), Err(Error::PinDestroyed)), "even the right PIN");
}

/// A vault that cannot write its file refuses every attempt, the right PIN included, with the
/// same error: it never answers an attempt it has not recorded.
#[test]
fn a_vault_that_cannot_record_the_attempt_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("vault");
    let vault = FileVault::new(&path);
    let (id, secret) = vault.enroll(&BINDING, &RIGHT).unwrap();
    assert!(matches!(vault.release(&id, &BINDING, &[2; 32]), Err(Error::WrongPin { attempts_left: 9 })));

    // The vault's temporary file name is taken by a folder: no save can succeed. (A read-only
    // folder would do as well, but not for root, which the tests may run as.)
    let blocker = tmp.path().join("vault.tmp");
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("keep"), b"x").unwrap();
    let right = vault.release(&id, &BINDING, &RIGHT);
    assert!(right.is_err(), "the right PIN was answered without recording the attempt");
    let wrong = vault.release(&id, &BINDING, &[3; 32]);
    let (right, wrong) = (right.err().unwrap(), wrong.err().unwrap());
    assert_eq!(right.kind(), ErrorKind::Io, "{right}");
    assert_eq!(wrong.kind(), ErrorKind::Io, "the same refusal, whatever the PIN: {wrong}");
    assert!(right.to_string().contains("vault.tmp"), "the error names the file: {right}");
    assert_eq!(vault.failed_attempts(&id).unwrap(), 1, "nothing was answered, nothing changed");

    // Writable again: counting resumes where it was, and the right PIN opens.
    fs::remove_dir_all(&blocker).unwrap();
    assert!(matches!(vault.release(&id, &BINDING, &[4; 32]), Err(Error::WrongPin { attempts_left: 8 })));
    assert_eq!(vault.release(&id, &BINDING, &RIGHT).unwrap(), secret);
    assert_eq!(vault.failed_attempts(&id).unwrap(), 0);
}

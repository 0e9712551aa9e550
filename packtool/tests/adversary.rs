//! The storage provider as the adversary, through the command line: each test is an attack
//! that worked before the defence (issue: "Trust nothing the provider serves").

use std::fs;

mod support;
use support::Env;

/// The `packtool` binary that `cargo test` builds is built with every feature cargo unified
/// into this build, the test-only `deterministic-for-tests` included; setting the old test
/// switch must still leave every key random.
#[test]
fn test_seed_does_nothing_in_the_binary() {
    let a = Env::new("a long enough test passphrase");
    let b = Env::new("a long enough test passphrase");
    for env in [&a, &b] {
        let out = env
            .cmd(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"])
            .env("PACKVAULT_TEST_SEED", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let config = |e: &Env| fs::read(e.repo().join("config")).unwrap();
    assert_ne!(config(&a)[..24], config(&b)[..24], "two inits under PACKVAULT_TEST_SEED made the same repository id");
    let key_names =
        |e: &Env| fs::read_dir(e.repo().join("keys")).unwrap().map(|d| d.unwrap().file_name()).collect::<Vec<_>>();
    assert_ne!(key_names(&a), key_names(&b), "two inits under PACKVAULT_TEST_SEED made the same keyslot ids");
}

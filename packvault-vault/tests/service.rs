//! Tests of the vault against a real `packvault-vault` process on 127.0.0.1.
//!
//! Each test starts its own server (an ephemeral port, a database in a temporary folder) with
//! [`support::Server`] and stops it itself (SIGTERM, or `kill -9` where a crash is the point).
//! Requests go through a recording TCP relay ([`support::Proxy`]) where a test needs to see
//! the bytes on the wire. Clients use cheap Argon2 settings (OPAQUE's KSF and the slots'),
//! which the protocol lets a client choose at enrollment; production ones are in
//! vault-protocol.md §3.2.
//!
//! Vectors: `tests/vectors/protocol.txt` is checked against the generator; after a deliberate
//! protocol change, regenerate it with `BLESS=1 cargo test -p packvault-vault vectors` and copy
//! the lines into vault-protocol.md §9 (the test checks that too).
#![cfg(unix)]

mod service {
    pub mod support;

    mod attacks;
    mod crash;
    mod limits;
    mod ops;
    mod restore;
    mod vectors;
}

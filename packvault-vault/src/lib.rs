//! packvault-vault: a rate-limited PIN vault on OPAQUE, as a service, and its client.
//!
//! A six-digit PIN has 10⁶ values: no KDF protects it offline. A PIN keyslot of packvault
//! therefore also needs a secret from a [`PinVault`](packvault::PinVault) that releases it
//! only to someone who proves the PIN, counts wrong guesses and destroys the secret after a
//! few. This crate is that vault as a server a deployment runs next to its object store, and
//! [`RemoteVault`], the client the library and `packtool` use.
//!
//! - The protocol is OPAQUE (RFC 9807, via opaque-ke: ristretto255, 3DH with SHA-512, Argon2id
//!   key stretching): the vault never sees the PIN, nor anything that allows an offline guess
//!   without its key. The secret returned to the library is derived from OPAQUE's export key,
//!   which only the client computes. Byte layouts, ordering rules and test vectors are in
//!   `vault-protocol.md`.
//! - Each login attempt is committed to disk before the vault answers it, a completed login
//!   resets the count, and the record is destroyed when its limit is reached.
//! - Every response is authenticated by the vault's key, which the client pins: an impostor
//!   vault is refused.
//!
//! # Crate features
//! - `server` (on by default): the server ([`server`]) and the `packvault-vault` binary, with
//!   axum, tokio and SQLite. Clients (packtool) turn default features off and link the client
//!   only.
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg(unix)]

mod client;
mod protocol;
#[cfg(feature = "server")]
pub mod server;
#[doc(hidden)]
pub mod vectors;

pub use client::{RemoteVault, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
pub use protocol::{KsfParams, VaultKey};

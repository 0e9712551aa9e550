//! Test vectors of vault-protocol.md §9, computed from a seeded random stream.
//!
//! Not API: [`generate`] exists for the staleness test (`tests/service/vectors.rs`) and for
//! printing the vectors into the spec. The OPAQUE messages depend on the order in which
//! opaque-ke 4.0.1 draws randomness from the stream; the framing, the response tags and the
//! secret derivation do not, and another implementation can check those byte for byte.

use std::fmt::Write;

use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration, ClientRegistrationFinishParameters, Identifiers,
    ServerLogin, ServerLoginParameters, ServerRegistration, ServerSetup,
};
use rand_core::{CryptoRng, RngCore};

use crate::protocol::{self, code, hex, path, Ephemeral, KsfParams, Suite, VaultKey};

/// A deterministic "random" stream: BLAKE3's XOF of a seed. For vectors only.
struct SeededRng(blake3::OutputReader);

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl CryptoRng for SeededRng {}

fn rng(label: &str) -> SeededRng {
    let mut h = blake3::Hasher::new_derive_key("packvault-vault 2026-12-01 test vectors");
    h.update(label.as_bytes());
    SeededRng(h.finalize_xof())
}

/// The vectors, as `name: hex` lines.
///
/// # Panics
/// Never for these fixed inputs (a failure is a bug of the generator).
#[must_use]
pub fn generate() -> String {
    let mut out = String::new();
    let mut line = |name: &str, bytes: &[u8]| {
        let _ = writeln!(out, "{name}: {}", hex(bytes));
    };
    let ksf = KsfParams::PRODUCTION;
    let argon = ksf.argon2().expect("production parameters");
    let setup = ServerSetup::<Suite>::new(&mut rng("server setup"));
    let secret_sk: [u8; 32] = setup.keypair().private().serialize().into();
    let secret = curve25519_dalek::scalar::Scalar::from_canonical_bytes(secret_sk).unwrap();
    let key = VaultKey::from_bytes(setup.keypair().public().serialize().into()).expect("a point");
    line("server_setup", &setup.serialize());
    line("vault_key", key.bytes());
    let auth = blake3::derive_key("packvault-vault 2026-12-01 test vectors", b"auth");
    let binding = blake3::derive_key("packvault-vault 2026-12-01 test vectors", b"binding");
    line("auth", &auth);
    line("binding", &binding);
    line("ksf", &ksf.encode());

    let mut eph_rng = rng("client ephemerals");
    // One authenticated exchange: request E ‖ fields, response code ‖ payload ‖ tag.
    let mut exchange = |p: &str, fields: &[&[u8]], c: u8, payload: &[u8]| -> Vec<Vec<u8>> {
        let eph = Ephemeral::generate(&mut eph_rng);
        let mut request = eph.public.to_vec();
        for f in fields {
            request.extend_from_slice(f);
        }
        let k = protocol::server_response_key(&secret, &key, &eph.public).expect("a point");
        assert_eq!(k, eph.response_key(&key));
        let response = protocol::seal_response(&k, p, &request, c, payload);
        vec![request, response]
    };

    // Registration.
    let mut client = rng("client");
    let reg = ClientRegistration::<Suite>::start(&mut client, &auth).expect("registration start");
    let id: [u8; 16] = blake3::derive_key("packvault-vault 2026-12-01 test vectors", b"id")[..16].try_into().unwrap();
    let reg_response =
        ServerRegistration::<Suite>::start(&setup, reg.message.clone(), &id).expect("server registration").message;
    let mut start_payload = id.to_vec();
    start_payload.extend_from_slice(&reg_response.serialize());
    let ex = exchange(path::REGISTER_START, &[&reg.message.serialize()], code::OK, &start_payload);
    line("register_start_request", &ex[0]);
    line("register_start_response", &ex[1]);
    let fin = reg
        .state
        .finish(
            &mut client,
            &auth,
            reg_response,
            ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&argon)),
        )
        .expect("registration finish");
    let upload = fin.message.serialize();
    let ex = exchange(path::REGISTER_FINISH, &[&id, &binding, &ksf.encode(), &upload], code::OK, &10u32.to_le_bytes());
    line("register_finish_request", &ex[0]);
    line("register_finish_response", &ex[1]);
    line("export_key", &fin.export_key);
    line("secret", &protocol::vault_secret(&fin.export_key, &binding));

    // Login.
    let login = ClientLogin::<Suite>::start(&mut client, &auth).expect("login start");
    let record = ServerRegistration::<Suite>::finish(fin.message);
    let params = ServerLoginParameters { context: Some(protocol::OPAQUE_CONTEXT), ..Default::default() };
    let server_login =
        ServerLogin::start(&mut rng("server login"), &setup, Some(record), login.message.clone(), &id, params)
            .expect("server login");
    let session: [u8; 16] =
        blake3::derive_key("packvault-vault 2026-12-01 test vectors", b"session")[..16].try_into().unwrap();
    let mut payload = session.to_vec();
    payload.extend_from_slice(&9u32.to_le_bytes());
    payload.extend_from_slice(&ksf.encode());
    payload.extend_from_slice(&server_login.message.serialize());
    let ex = exchange(path::LOGIN_START, &[&id, &binding, &login.message.serialize()], code::OK, &payload);
    line("login_start_request", &ex[0]);
    line("login_start_response", &ex[1]);
    let done = login
        .state
        .finish(
            &mut client,
            &auth,
            server_login.message,
            ClientLoginFinishParameters::new(Some(protocol::OPAQUE_CONTEXT), Identifiers::default(), Some(&argon)),
        )
        .expect("login finish");
    assert_eq!(done.export_key, fin.export_key, "the export key is stable across logins");
    let ex = exchange(path::LOGIN_FINISH, &[&session, &done.message.serialize()], code::OK, &[]);
    line("login_finish_request", &ex[0]);
    line("login_finish_response", &ex[1]);
    server_login
        .state
        .finish(done.message, ServerLoginParameters { context: Some(protocol::OPAQUE_CONTEXT), ..Default::default() })
        .expect("server finish");
    // A refusal: also authenticated.
    let ex = exchange(path::LOGIN_START, &[&id, &binding, &[0u8; 96]], code::DESTROYED, b"destroyed");
    line("destroyed_request", &ex[0]);
    line("destroyed_response", &ex[1]);
    out
}

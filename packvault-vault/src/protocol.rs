//! The vault protocol's bytes (vault-protocol.md): the OPAQUE cipher suite, the contexts, the
//! request and response layouts, response authentication and the secret derivation.
//!
//! No I/O here: the client, the server and the test-vector generator all build on it, so the
//! three cannot drift apart.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use opaque_ke::argon2::{Algorithm, Argon2, Params, Version};
use opaque_ke::CipherSuite;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

/// The OPAQUE configuration (vault-protocol.md §3): ristretto255 for the OPRF and the 3DH key
/// exchange, SHA-512, Argon2id as the key-stretching function.
pub(crate) struct Suite;

impl CipherSuite for Suite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeyExchange = opaque_ke::TripleDh<opaque_ke::Ristretto255, sha2::Sha512>;
    type Ksf = Argon2<'static>;
}

/// The OPAQUE key-exchange context: both sides refuse a login made for another protocol.
pub(crate) const OPAQUE_CONTEXT: &[u8] = b"packvault-vault 2026-12-01 v1";
/// DERIVE context of the key that authenticates the vault's responses.
pub(crate) const CTX_RESPONSE: &str = "packvault-vault 2026-12-01 v1 response key";
/// DERIVE context of the secret returned to the library.
pub(crate) const CTX_SECRET: &str = "packvault-vault 2026-12-01 v1 pin vault secret";

/// Request paths (all `POST`, body `application/octet-stream`).
pub(crate) mod path {
    pub(crate) const REGISTER_START: &str = "/v1/register/start";
    pub(crate) const REGISTER_FINISH: &str = "/v1/register/finish";
    pub(crate) const LOGIN_START: &str = "/v1/login/start";
    pub(crate) const LOGIN_FINISH: &str = "/v1/login/finish";
    pub(crate) const LOGIN_ABORT: &str = "/v1/login/abort";
    pub(crate) const ATTEMPTS: &str = "/v1/record/attempts";
    pub(crate) const REMOVE: &str = "/v1/record/remove";
    /// Every path, for the router.
    #[cfg(feature = "server")]
    pub(crate) const ALL: [&str; 7] =
        [REGISTER_START, REGISTER_FINISH, LOGIN_START, LOGIN_FINISH, LOGIN_ABORT, ATTEMPTS, REMOVE];
}

/// Sizes of the OPAQUE messages with this suite (RFC 9807 §4, §5).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) mod size {
    pub(crate) const REGISTRATION_REQUEST: usize = 32;
    pub(crate) const REGISTRATION_RESPONSE: usize = 64;
    pub(crate) const REGISTRATION_RECORD: usize = 192;
    pub(crate) const KE1: usize = 96;
    pub(crate) const KE2: usize = 320;
    pub(crate) const KE3: usize = 64;
    pub(crate) const TAG: usize = 32;
    /// Largest response body (a login start: code, session, attempts, KSF, KE2, tag).
    pub(crate) const MAX_RESPONSE: usize = 1024;
}

/// Response codes (the first byte of every authenticated response).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) mod code {
    pub(crate) const OK: u8 = 0;
    pub(crate) const UNKNOWN_RECORD: u8 = 1;
    pub(crate) const BINDING_MISMATCH: u8 = 2;
    pub(crate) const DESTROYED: u8 = 3;
    pub(crate) const MALFORMED: u8 = 4;
    pub(crate) const BUSY: u8 = 5;
    pub(crate) const NO_SESSION: u8 = 6;
    pub(crate) const LOGIN_FAILED: u8 = 7;
    pub(crate) const EXISTS: u8 = 8;
    pub(crate) const INTERNAL: u8 = 9;
}

/// The vault's public key (a ristretto255 point, 32 bytes): the OPAQUE server key, which also
/// authenticates every response. Clients are configured with it, as an app ships with its
/// vault's key; `packvault-vault serve` and `packvault-vault key` print it as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VaultKey([u8; 32]);

impl VaultKey {
    /// A key from its 32-byte encoding.
    ///
    /// # Errors
    /// [`packvault::Error::InvalidArgument`] when the bytes are not a ristretto255 point other
    /// than the identity.
    pub fn from_bytes(bytes: [u8; 32]) -> packvault::Result<VaultKey> {
        match CompressedRistretto(bytes).decompress() {
            Some(p) if !p.is_identity() => Ok(VaultKey(bytes)),
            _ => Err(packvault::Error::InvalidArgument("not a vault key (no ristretto255 point)".into())),
        }
    }

    /// The 32-byte encoding.
    #[must_use]
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn point(&self) -> RistrettoPoint {
        // Checked in `from_bytes`, the only constructor.
        CompressedRistretto(self.0).decompress().unwrap_or_default()
    }
}

impl std::fmt::Display for VaultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl std::fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VaultKey({self})")
    }
}

impl std::str::FromStr for VaultKey {
    type Err = packvault::Error;
    fn from_str(s: &str) -> packvault::Result<VaultKey> {
        let bytes = unhex(s.trim())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| packvault::Error::InvalidArgument("a vault key is 64 hex digits".into()))?;
        VaultKey::from_bytes(bytes)
    }
}

/// Lower-case hex.
#[must_use]
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex to bytes; `None` for odd lengths or other characters.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok())).collect()
}

/// Argon2id parameters of OPAQUE's key-stretching function, chosen by the client at
/// registration, stored with the record and returned at each login (vault-protocol.md §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KsfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KsfParams {
    /// The production setting: RFC 9106's second recommended option (64 MiB, 3 passes,
    /// 4 lanes).
    pub const PRODUCTION: KsfParams = KsfParams { m_kib: 64 * 1024, t: 3, p: 4 };
    /// Most memory a client accepts from a vault (a vault cannot make a client exhaust itself).
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    /// Most passes a client accepts from a vault.
    pub const MAX_T: u32 = 16;

    pub(crate) fn encode(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.m_kib.to_le_bytes());
        b[4..8].copy_from_slice(&self.t.to_le_bytes());
        b[8..].copy_from_slice(&self.p.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8; 12]) -> KsfParams {
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        KsfParams { m_kib: u(0), t: u(4), p: u(8) }
    }

    /// The Argon2id instance, or `None` for parameters outside Argon2's range or above the
    /// bounds a client accepts.
    pub(crate) fn argon2(self) -> Option<Argon2<'static>> {
        if self.m_kib > Self::MAX_M_KIB || self.t > Self::MAX_T || self.p > 16 {
            return None;
        }
        let params = Params::new(self.m_kib, self.t, self.p, None).ok()?;
        Some(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for KsfParams {
    fn default() -> Self {
        KsfParams::PRODUCTION
    }
}

/// Reads fixed-size fields off a request or response body.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Reader<'a> {
        Reader(b)
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|s| s.try_into().ok())
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array::<4>().map(u32::from_le_bytes)
    }
    /// The rest, which must be exactly `n` bytes.
    pub(crate) fn rest_exact(self, n: usize) -> Option<&'a [u8]> {
        (self.0.len() == n).then_some(self.0)
    }
}

/// A client's per-request ephemeral key (vault-protocol.md §4).
pub(crate) struct Ephemeral {
    scalar: Scalar,
    /// `E = e·B`, sent first in the request.
    pub(crate) public: [u8; 32],
}

impl Ephemeral {
    pub(crate) fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Ephemeral {
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        let scalar = Scalar::from_bytes_mod_order_wide(&wide);
        wide.zeroize();
        Ephemeral { public: RistrettoPoint::mul_base(&scalar).compress().to_bytes(), scalar }
    }

    /// The response key the pinned vault `key` computes for this request.
    pub(crate) fn response_key(&self, key: &VaultKey) -> [u8; 32] {
        let z = (key.point() * self.scalar).compress().to_bytes();
        response_key(key.bytes(), &self.public, &z)
    }
}

impl Drop for Ephemeral {
    fn drop(&mut self) {
        self.scalar.zeroize();
    }
}

/// `K = DERIVE(CTX_RESPONSE, S ‖ E ‖ Z)`.
fn response_key(s: &[u8; 32], e: &[u8; 32], z: &[u8; 32]) -> [u8; 32] {
    let mut material = [0u8; 96];
    material[..32].copy_from_slice(s);
    material[32..64].copy_from_slice(e);
    material[64..].copy_from_slice(z);
    let k = blake3::derive_key(CTX_RESPONSE, &material);
    material.zeroize();
    k
}

/// The vault's side: the response key for a request whose ephemeral key is `e`, or `None`
/// when `e` is not a point or is the identity.
pub(crate) fn server_response_key(secret: &Scalar, public: &VaultKey, e: &[u8; 32]) -> Option<[u8; 32]> {
    let point = CompressedRistretto(*e).decompress().filter(|p| !p.is_identity())?;
    let z = (point * secret).compress().to_bytes();
    Some(response_key(public.bytes(), e, &z))
}

/// `tag = BLAKE3-keyed(K, u16 len(path) ‖ path ‖ BLAKE3(request) ‖ code ‖ payload)`.
fn tag(key: &[u8; 32], path: &str, request: &[u8], code: u8, payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&u16::try_from(path.len()).unwrap_or(u16::MAX).to_le_bytes());
    h.update(path.as_bytes());
    h.update(blake3::hash(request).as_bytes());
    h.update(&[code]);
    h.update(payload);
    *h.finalize().as_bytes()
}

/// An authenticated response body: `code ‖ payload ‖ tag`.
pub(crate) fn seal_response(key: &[u8; 32], path: &str, request: &[u8], code: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + payload.len() + size::TAG);
    out.push(code);
    out.extend_from_slice(payload);
    out.extend_from_slice(&tag(key, path, request, code, payload));
    out
}

/// Checks a response body's tag; returns its code and payload, or `None` when the tag is
/// wrong (not the pinned vault, or altered on the way) or the body too short.
pub(crate) fn open_response<'a>(key: &[u8; 32], path: &str, request: &[u8], body: &'a [u8]) -> Option<(u8, &'a [u8])> {
    if body.len() < 1 + size::TAG {
        return None;
    }
    let (head, t) = body.split_at(body.len() - size::TAG);
    let expected = tag(key, path, request, head[0], &head[1..]);
    // Constant time: blake3's Hash equality is.
    (blake3::Hash::from(expected) == blake3::Hash::from(<[u8; 32]>::try_from(t).ok()?)).then(|| (head[0], &head[1..]))
}

/// The secret released to the library: `DERIVE(CTX_SECRET, export_key ‖ binding)`.
pub(crate) fn vault_secret(export_key: &[u8], binding: &[u8; 32]) -> [u8; 32] {
    let mut material = Vec::with_capacity(export_key.len() + 32);
    material.extend_from_slice(export_key);
    material.extend_from_slice(binding);
    let k = blake3::derive_key(CTX_SECRET, &material);
    material.zeroize();
    k
}

/// The OS's randomness, in the rand_core 0.6 traits that opaque-ke takes.
pub(crate) fn os_rng() -> rand_core::OsRng {
    rand_core::OsRng
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_open_only_with_the_right_key_request_and_path() {
        let mut rng = os_rng();
        let secret = Scalar::from_bytes_mod_order_wide(&[7; 64]);
        let public = VaultKey::from_bytes(RistrettoPoint::mul_base(&secret).compress().to_bytes()).unwrap();
        let eph = Ephemeral::generate(&mut rng);
        let ks = server_response_key(&secret, &public, &eph.public).unwrap();
        let kc = eph.response_key(&public);
        assert_eq!(ks, kc);
        let body = seal_response(&ks, path::LOGIN_START, b"req", code::OK, b"payload");
        assert_eq!(open_response(&kc, path::LOGIN_START, b"req", &body), Some((code::OK, &b"payload"[..])));
        assert!(open_response(&kc, path::LOGIN_FINISH, b"req", &body).is_none(), "another path");
        assert!(open_response(&kc, path::LOGIN_START, b"other", &body).is_none(), "another request");
        let mut flipped = body.clone();
        flipped[0] = code::DESTROYED;
        assert!(open_response(&kc, path::LOGIN_START, b"req", &flipped).is_none(), "an altered code");
        // Another vault key: the client computes another response key.
        let other = VaultKey::from_bytes(RistrettoPoint::mul_base(&Scalar::from(9u8)).compress().to_bytes()).unwrap();
        assert!(open_response(&eph.response_key(&other), path::LOGIN_START, b"req", &body).is_none());
        assert!(server_response_key(&secret, &public, &[0; 32]).is_none(), "the identity is refused");
    }

    #[test]
    fn vault_keys_parse_and_print() {
        let k = VaultKey::from_bytes(RistrettoPoint::mul_base(&Scalar::from(5u8)).compress().to_bytes()).unwrap();
        assert_eq!(k.to_string().parse::<VaultKey>().unwrap(), k);
        assert!("00".parse::<VaultKey>().is_err());
        assert!(VaultKey::from_bytes([0; 32]).is_err());
        assert!(VaultKey::from_bytes([0xff; 32]).is_err());
    }

    #[test]
    fn ksf_bounds() {
        assert!(KsfParams::PRODUCTION.argon2().is_some());
        assert!(KsfParams { m_kib: KsfParams::MAX_M_KIB + 1, t: 1, p: 1 }.argon2().is_none());
        assert!(KsfParams { m_kib: 1024, t: 0, p: 1 }.argon2().is_none());
        let k = KsfParams { m_kib: 1, t: 2, p: 3 };
        assert_eq!(KsfParams::decode(&k.encode()), k);
    }
}

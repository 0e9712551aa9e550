//! [`RemoteVault`]: the client of a `packvault-vault` server, as a [`PinVault`].
//!
//! Blocking HTTP (ureq) because the library's [`PinVault`] is a blocking trait called from
//! key derivation; every call has a connect timeout and an overall timeout, so a vault that
//! stops answering fails an open instead of hanging it.
//!
//! Pinning: a `RemoteVault` is made with the vault's public key, the way an app ships with its
//! vault's key. A new device then needs nothing but the PIN (and the repository), and an
//! impostor vault is refused at every call: each response carries a tag only the holder of the
//! pinned key's secret can compute (vault-protocol.md §4), and at enrollment the OPAQUE
//! response must also carry the pinned key. Learning the key at enrollment and storing it
//! instead would leave a new device, which has stored nothing, to trust whatever vault answers.

use std::io;
use std::time::Duration;

use opaque_ke::errors::ProtocolError;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration, ClientRegistrationFinishParameters,
    CredentialResponse, Identifiers, RegistrationResponse,
};
use packvault::{Error, PinVault, Result, SecretKey};
use zeroize::Zeroize;

use crate::protocol::{self, code, path, size, Ephemeral, KsfParams, Reader, Suite, VaultKey};

/// How long to wait for a TCP connection to the vault.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to the vault may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A PIN vault reached over HTTP: a `packvault-vault` server with a pinned key.
#[derive(Clone)]
pub struct RemoteVault {
    base: String,
    key: VaultKey,
    ksf: KsfParams,
    agent: ureq::Agent,
}

impl std::fmt::Debug for RemoteVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteVault").field("url", &self.base).field("key", &self.key).finish_non_exhaustive()
    }
}

impl RemoteVault {
    /// The vault at `url` (`http://host:port`, optionally with a path prefix), which must hold
    /// the secret of `key`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a URL that is not `http://…`.
    pub fn new(url: &str, key: VaultKey) -> Result<RemoteVault> {
        let base = url.trim_end_matches('/');
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(Error::InvalidArgument(format!(
                "vault URL {url:?}: expected http://HOST:PORT (responses are authenticated by the vault key, see vault-protocol.md §7)"
            )));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(RemoteVault { base: base.to_string(), key, ksf: KsfParams::PRODUCTION, agent })
    }

    /// The Argon2id parameters of OPAQUE's key stretching for new enrollments (logins use those
    /// of the enrollment). The default is [`KsfParams::PRODUCTION`]; lower ones are for tests.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for parameters Argon2 refuses.
    pub fn with_ksf(mut self, ksf: KsfParams) -> Result<RemoteVault> {
        ksf.argon2().ok_or_else(|| Error::InvalidArgument("Argon2id parameters out of range".into()))?;
        self.ksf = ksf;
        Ok(self)
    }

    /// The vault's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The pinned vault key.
    #[must_use]
    pub fn key(&self) -> &VaultKey {
        &self.key
    }

    /// One authenticated exchange: sends `E ‖ fields` to `path`, checks the response's tag
    /// against the pinned key, returns its code and payload.
    fn call(&self, path: &str, fields: &[&[u8]]) -> Result<(u8, Vec<u8>)> {
        let eph = Ephemeral::generate(&mut protocol::os_rng());
        let mut request = eph.public.to_vec();
        for f in fields {
            request.extend_from_slice(f);
        }
        let url = format!("{}{path}", self.base);
        let unreachable = |e: ureq::Error| {
            let kind = match &e {
                ureq::Error::Timeout(_) => io::ErrorKind::TimedOut,
                ureq::Error::Io(io) => io.kind(),
                _ => io::ErrorKind::Other,
            };
            Error::Io(io::Error::new(kind, format!("PIN vault {} is unreachable: {e}", self.base)))
        };
        let response = self
            .agent
            .post(&url)
            .header("content-type", "application/octet-stream")
            .send(&request[..])
            .map_err(unreachable)?;
        let status = response.status();
        let body =
            response.into_body().with_config().limit(size::MAX_RESPONSE as u64).read_to_vec().map_err(unreachable)?;
        let key = eph.response_key(&self.key);
        match protocol::open_response(&key, path, &request, &body) {
            Some((c, payload)) => Ok((c, payload.to_vec())),
            None => Err(Error::Integrity(format!(
                "the PIN vault at {} did not prove that it holds the pinned vault key {} (HTTP {}): an impostor, or a vault with another key",
                self.base,
                self.key,
                status.as_u16()
            ))),
        }
    }

    /// The library error for a response code other than OK.
    fn code_error(&self, c: u8, payload: &[u8]) -> Error {
        let msg = String::from_utf8_lossy(payload);
        match c {
            code::UNKNOWN_RECORD => Error::NotFound(format!("PIN vault enrollment (at {})", self.base)),
            code::BINDING_MISMATCH => Error::Integrity(
                "the PIN keyslot does not match its vault enrollment (the slot was altered); no attempt counted".into(),
            ),
            code::DESTROYED => Error::PinDestroyed,
            code::BUSY => Error::Io(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("PIN vault {} is busy; try again (no attempt counted)", self.base),
            )),
            code::NO_SESSION => Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("PIN vault {}: the login expired before it was completed; try again", self.base),
            )),
            _ => Error::Malformed { what: "PIN vault response", offset: None, detail: format!("code {c}: {msg}") },
        }
    }

    fn malformed(&self, detail: &str) -> Error {
        Error::Malformed { what: "PIN vault response", offset: None, detail: format!("{detail} (from {})", self.base) }
    }
}

impl PinVault for RemoteVault {
    fn enroll(&self, binding: &[u8; 32], auth: &[u8; 32]) -> Result<([u8; 16], SecretKey)> {
        let mut rng = protocol::os_rng();
        let start = ClientRegistration::<Suite>::start(&mut rng, auth)
            .map_err(|e| Error::InvalidArgument(format!("OPAQUE registration: {e}")))?;
        let (c, payload) = self.call(path::REGISTER_START, &[&start.message.serialize()])?;
        if c != code::OK {
            return Err(self.code_error(c, &payload));
        }
        let mut r = Reader::new(&payload);
        let id: [u8; 16] = r.array().ok_or_else(|| self.malformed("short registration response"))?;
        let response = r
            .rest_exact(size::REGISTRATION_RESPONSE)
            .and_then(|b| RegistrationResponse::<Suite>::deserialize(b).ok())
            .ok_or_else(|| self.malformed("bad registration response"))?;
        let ksf = self.ksf.argon2().ok_or_else(|| Error::InvalidArgument("Argon2id parameters out of range".into()))?;
        let finish = start
            .state
            .finish(
                &mut rng,
                auth,
                response,
                ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&ksf)),
            )
            .map_err(|e| self.malformed(&format!("OPAQUE registration: {e}")))?;
        if finish.server_s_pk.serialize().as_slice() != self.key.bytes() {
            return Err(Error::Integrity(format!(
                "the PIN vault at {} registers under another key than the pinned {}: refused",
                self.base, self.key
            )));
        }
        let mut export_key = finish.export_key;
        let secret = SecretKey::from_bytes(protocol::vault_secret(&export_key, binding));
        export_key.zeroize();
        let (c, payload) =
            self.call(path::REGISTER_FINISH, &[&id, binding, &self.ksf.encode(), &finish.message.serialize()])?;
        if c != code::OK {
            return Err(self.code_error(c, &payload));
        }
        Ok((id, secret))
    }

    fn release(&self, id: &[u8; 16], binding: &[u8; 32], auth: &[u8; 32]) -> Result<SecretKey> {
        let mut rng = protocol::os_rng();
        let start = ClientLogin::<Suite>::start(&mut rng, auth).map_err(|e| self.malformed(&format!("OPAQUE: {e}")))?;
        let (c, payload) = self.call(path::LOGIN_START, &[id, binding, &start.message.serialize()])?;
        if c != code::OK {
            return Err(self.code_error(c, &payload));
        }
        let mut r = Reader::new(&payload);
        let (Some(session), Some(left), Some(ksf)) = (r.array::<16>(), r.u32(), r.array::<12>()) else {
            return Err(self.malformed("short login response"));
        };
        let response = r
            .rest_exact(size::KE2)
            .and_then(|b| CredentialResponse::<Suite>::deserialize(b).ok())
            .ok_or_else(|| self.malformed("bad login response"))?;
        let ksf = KsfParams::decode(&ksf)
            .argon2()
            .ok_or_else(|| self.malformed("key-stretching parameters out of bounds"))?;
        let params =
            ClientLoginFinishParameters::new(Some(protocol::OPAQUE_CONTEXT), Identifiers::default(), Some(&ksf));
        let finish = match start.state.finish(&mut rng, auth, response, params) {
            Ok(f) => f,
            Err(ProtocolError::InvalidLoginError) => {
                // The wrong PIN (the attempt is already counted). Ending the login now lets the
                // vault destroy an exhausted record at once rather than at the session's timeout.
                let _ = self.call(path::LOGIN_ABORT, &[&session]);
                return Err(if left == 0 { Error::PinDestroyed } else { Error::WrongPin { attempts_left: left } });
            }
            Err(e) => return Err(self.malformed(&format!("OPAQUE login: {e}"))),
        };
        if finish.server_s_pk.serialize().as_slice() != self.key.bytes() {
            return Err(Error::Integrity(format!(
                "the PIN vault at {} logs in under another key than the pinned {}",
                self.base, self.key
            )));
        }
        let mut export_key = finish.export_key;
        let secret = SecretKey::from_bytes(protocol::vault_secret(&export_key, binding));
        export_key.zeroize();
        // The vault resets the count only on a completed login: finish it before using the
        // secret, so that a right PIN always leaves the record with no failures.
        let (c, payload) = self.call(path::LOGIN_FINISH, &[&session, &finish.message.serialize()])?;
        if c != code::OK {
            return Err(self.code_error(c, &payload));
        }
        Ok(secret)
    }

    fn failed_attempts(&self, id: &[u8; 16]) -> Result<u32> {
        let (c, payload) = self.call(path::ATTEMPTS, &[id])?;
        if c != code::OK {
            return Err(self.code_error(c, &payload));
        }
        Reader::new(&payload).u32().ok_or_else(|| self.malformed("short attempts response"))
    }

    fn remove(&self, id: &[u8; 16]) -> Result<()> {
        let (c, payload) = self.call(path::REMOVE, &[id])?;
        if c != code::OK {
            return Err(self.code_error(c, &payload));
        }
        Ok(())
    }
}

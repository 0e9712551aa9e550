//! The vault's key file: the OPAQUE server setup (OPRF seed, static key, dummy key).
//!
//! This file is what an HSM or an enclave holds in production: with it and the database, the
//! PINs of the records can be guessed offline (each guess costing the slot's Argon2id and
//! OPAQUE's); with the database alone they cannot. Here it is a file next to the database,
//! created owner-only (0600) on first start and refused when others can read it.
//!
//! Layout: `"PVVAULTK" ‖ version 0x01 ‖ ServerSetup (128 bytes: OPRF seed 64, private key 32,
//! dummy public key 32; opaque-ke's serialization)`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use curve25519_dalek::scalar::Scalar;
use opaque_ke::ServerSetup;
use zeroize::Zeroize;

use super::ServeError;
use crate::protocol::{os_rng, Suite, VaultKey};

const MAGIC: &[u8; 8] = b"PVVAULTK";
const VERSION: u8 = 1;
const SETUP_LEN: usize = 128;

/// The vault's secrets, loaded.
pub(crate) struct VaultKeys {
    pub(crate) setup: ServerSetup<Suite>,
    pub(crate) secret: Scalar,
    pub(crate) public: VaultKey,
}

impl Drop for VaultKeys {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// The key file of the database at `db`: the same name with `.key` appended.
#[must_use]
pub fn key_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".key");
    PathBuf::from(name)
}

/// Loads the key file of `db`, creating it when `create` and it does not exist. Returns the
/// keys and whether they were created now.
pub(crate) fn load_or_create(db: &Path, create: bool) -> Result<(VaultKeys, bool), ServeError> {
    let path = key_path(db);
    let err =
        |what: &str, e: &dyn std::fmt::Display| ServeError(format!("vault key file {}: {what}: {e}", path.display()));
    if create && !path.exists() {
        let setup = ServerSetup::<Suite>::new(&mut os_rng());
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION);
        bytes.extend_from_slice(&setup.serialize());
        let tmp = path.with_extension("key.tmp");
        let _ = std::fs::remove_file(&tmp);
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            // Never replace an existing key: a second server starting at once keeps the first.
            std::fs::hard_link(&tmp, &path)?;
            std::fs::remove_file(&tmp)?;
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        bytes.zeroize();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => return Ok((keys(setup).map_err(|e| err("unusable", &e))?, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err("cannot create", &e)),
        }
    }
    let meta = std::fs::metadata(&path).map_err(|e| err("cannot read", &e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(ServeError(format!(
            "vault key file {} is accessible by other users (mode {:o}); it must be 0600 (chmod 600)",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let mut bytes = std::fs::read(&path).map_err(|e| err("cannot read", &e))?;
    let result = if bytes.len() != MAGIC.len() + 1 + SETUP_LEN || &bytes[..8] != MAGIC {
        Err(err("not a packvault-vault key file", &"wrong magic or length"))
    } else if bytes[8] != VERSION {
        Err(err("unsupported version", &bytes[8]))
    } else {
        ServerSetup::<Suite>::deserialize(&bytes[9..])
            .map_err(|e| err("damaged", &e))
            .and_then(|s| keys(s).map_err(|e| err("damaged", &e)))
    };
    bytes.zeroize();
    Ok((result?, false))
}

fn keys(setup: ServerSetup<Suite>) -> packvault::Result<VaultKeys> {
    let mut sk: [u8; 32] = setup.keypair().private().serialize().into();
    let secret = Scalar::from_canonical_bytes(sk).into_option();
    sk.zeroize();
    let public: [u8; 32] = setup.keypair().public().serialize().into();
    let secret = secret.ok_or_else(|| packvault::Error::InvalidArgument("private key out of range".into()))?;
    Ok(VaultKeys { setup, secret, public: VaultKey::from_bytes(public)? })
}

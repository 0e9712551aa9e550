//! Keyslots (format-spec.md §5.11): the master key wrapped under a key derived from a
//! credential, and the slot's metadata sealed under the master key.
//!
//! ```text
//! 0       8   "PVKEYS" ‖ u16 version
//! 8       16  repository id
//! 24      16  slot id (the file name is its hex)
//! 40      1   kind (1 = passphrase, 2 = recovery code, 3 = PIN, 4 = device)
//! 41      1   zero
//! 42      2   kind-data length k (u16)
//! 44      32  master id
//! 76      k   kind data (passphrase: u32 m_kib ‖ u32 t ‖ u32 p ‖ salt (32);
//!             recovery code and device: salt (32);
//!             PIN: u32 m_kib ‖ u32 t ‖ u32 p ‖ salt (32) ‖ vault id (16))
//! H=76+k  12  nonce
//! H+12    48  AES-256-GCM-SIV(wrap_key, nonce, AD = bytes[0..H], master)  (32 + tag 16)
//! H+60    280 AES-256-GCM-SIV(meta_key, 0^12, AD = bytes[0..H],
//!                             i64 created ‖ u8 n ‖ label (n) ‖ zeros up to 264 bytes)
//! H+340   32  commitment = BLAKE3-keyed(commit_key, bytes[0..H+340])
//! H+372   32  check = BLAKE3-keyed(check_key, bytes[0..H+372])
//! ```
//! With `K = KDF(credential)`: `wrap_key = derive_key(SLOT_WRAP, K)`,
//! `commit_key = derive_key(SLOT_COMMIT, K)`; `check_key = derive_key(SLOT_CHECK, master)`;
//! `meta_key = derive_key(SLOT_META, master ‖ slot id)`, one key per slot (so the zero nonce
//! is safe, as for blobs).
//!
//! Only what opening needs before the master key exists stays readable: the repository id
//! and slot id (which slot, of which repository), the kind (which derivation to run), the
//! master id (which master key the client pinned) and the kind data (KDF parameters, salt,
//! the PIN vault's enrollment id). The label and the creation time are sealed, in a field of
//! one length whatever the label, so `keys/` shows neither "Alice iPhone 15" nor when a
//! device was added, nor the label's length: every slot of one kind has one length (524
//! bytes for a passphrase, 512 for a recovery code or device, 540 for a PIN). Any client that
//! holds the master key reads every slot's metadata; `key list` runs after unlocking.
//!
//! The commitment is checked (in constant time) before decryption, and the unwrapped key's id
//! must equal the slot's master id. The check tag lets a client holding the master key
//! (`check`) verify every slot, also the ones it has no credential for; opening does not need
//! it, so a slot whose check tag alone is damaged still opens.

use crate::crypto::{self, contexts, MasterKey, SecretKey, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::format::recovery_code::RecoveryCode;
use crate::format::{check_header, header, ByteReader, HEADER_LEN, MAGIC_KEYSLOT};
use crate::id::Id;

/// Fixed part before the kind data.
pub const FIXED_LEN: usize = 76;
/// Length of the metadata plaintext: `i64 created ‖ u8 n ‖ label ‖ zeros`.
pub const META_PLAIN_LEN: usize = 8 + 1 + MAX_LABEL_LEN;
/// Length of the sealed metadata.
pub const META_SEALED_LEN: usize = META_PLAIN_LEN + TAG_LEN;
/// Longest label, in bytes of UTF-8.
pub const MAX_LABEL_LEN: usize = 255;
/// Length of everything after the kind data: nonce, wrapped key, sealed metadata,
/// commitment, check tag.
pub const TAIL_LEN: usize = NONCE_LEN + 32 + TAG_LEN + META_SEALED_LEN + 32 + 32;
/// Length of the passphrase kind data.
pub const PASSPHRASE_DATA_LEN: usize = 44;
/// Length of the recovery-code kind data.
pub const RECOVERY_DATA_LEN: usize = 32;
/// Length of the device kind data.
pub const DEVICE_DATA_LEN: usize = 32;
/// Length of the PIN kind data.
pub const PIN_DATA_LEN: usize = 60;
/// Largest keyslot file a reader accepts.
pub const MAX_KEYSLOT_FILE: usize = 4096;

/// Argon2id memory bounds in KiB accepted from a slot: 8 MiB to 4 GiB.
pub const ARGON2_M_KIB: std::ops::RangeInclusive<u32> = 8 * 1024..=4 * 1024 * 1024;
/// Argon2id pass bounds accepted from a slot.
pub const ARGON2_T: std::ops::RangeInclusive<u32> = 1..=10;
/// Argon2id lane bounds accepted from a slot.
pub const ARGON2_P: std::ops::RangeInclusive<u32> = 1..=16;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for Argon2Params {
    /// 256 MiB, 3 passes, 1 lane.
    fn default() -> Self {
        Argon2Params { m_kib: 256 * 1024, t: 3, p: 1 }
    }
}

impl Argon2Params {
    /// Checks the bounds a reader accepts ([`ARGON2_M_KIB`], [`ARGON2_T`], [`ARGON2_P`]).
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] for a value above its bound, [`Error::InvalidArgument`] below.
    pub fn check(&self) -> Result<()> {
        for (what, v, range) in [
            ("Argon2 memory (KiB)", self.m_kib, &ARGON2_M_KIB),
            ("Argon2 passes", self.t, &ARGON2_T),
            ("Argon2 lanes", self.p, &ARGON2_P),
        ] {
            if v > *range.end() {
                return Err(Error::LimitExceeded { what, found: u64::from(v), limit: u64::from(*range.end()) });
            }
            if v < *range.start() {
                return Err(Error::InvalidArgument(format!("{what} {v} is below the minimum {}", range.start())));
            }
        }
        Ok(())
    }
}

/// The credential kind of a keyslot and its KDF inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKdf {
    /// Kind 1: Argon2id over a passphrase.
    Passphrase {
        /// Cost parameters.
        params: Argon2Params,
        /// Random salt.
        salt: [u8; 32],
    },
    /// Kind 2: a 256-bit recovery code, through BLAKE3 (no slow KDF: the code is random).
    RecoveryCode {
        /// Random salt.
        salt: [u8; 32],
    },
    /// Kind 3: Argon2id over a PIN, mixed with a secret that a PIN vault releases.
    Pin {
        /// Cost parameters.
        params: Argon2Params,
        /// Random salt.
        salt: [u8; 32],
        /// The vault's enrollment id.
        vault_id: [u8; 16],
    },
    /// Kind 4: a random 256-bit secret kept by one device (its local state or keystore),
    /// through BLAKE3 like a recovery code, so that daily opens on that device cost no Argon2.
    Device {
        /// Random salt.
        salt: [u8; 32],
    },
}

impl SlotKdf {
    fn kind(&self) -> u8 {
        match self {
            SlotKdf::Passphrase { .. } => 1,
            SlotKdf::RecoveryCode { .. } => 2,
            SlotKdf::Pin { .. } => 3,
            SlotKdf::Device { .. } => 4,
        }
    }

    /// Name of the credential kind: `passphrase`, `recovery-code`, `pin` or `device`.
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        match self {
            SlotKdf::Passphrase { .. } => "passphrase",
            SlotKdf::RecoveryCode { .. } => "recovery-code",
            SlotKdf::Pin { .. } => "pin",
            SlotKdf::Device { .. } => "device",
        }
    }

    fn encode_data(&self) -> Result<Vec<u8>> {
        let mut d = Vec::with_capacity(PIN_DATA_LEN);
        match self {
            SlotKdf::Passphrase { params, salt } | SlotKdf::Pin { params, salt, .. } => {
                params.check()?;
                d.extend_from_slice(&params.m_kib.to_le_bytes());
                d.extend_from_slice(&params.t.to_le_bytes());
                d.extend_from_slice(&params.p.to_le_bytes());
                d.extend_from_slice(salt);
                if let SlotKdf::Pin { vault_id, .. } = self {
                    d.extend_from_slice(vault_id);
                }
            }
            SlotKdf::RecoveryCode { salt } | SlotKdf::Device { salt } => d.extend_from_slice(salt),
        }
        Ok(d)
    }

    fn decode_data(kind: u8, data: &[u8], at: usize) -> Result<SlotKdf> {
        const WHAT: &str = "keyslot";
        let want = match kind {
            1 => PASSPHRASE_DATA_LEN,
            2 => RECOVERY_DATA_LEN,
            3 => PIN_DATA_LEN,
            4 => DEVICE_DATA_LEN,
            other => return Err(Error::malformed(WHAT, Some(40), format!("unknown keyslot kind {other}"))),
        };
        if data.len() != want {
            return Err(Error::malformed(
                WHAT,
                Some(at as u64),
                format!("kind {kind} data is {} bytes, not {want}", data.len()),
            ));
        }
        let mut d = ByteReader::new(data, WHAT);
        if kind == 2 {
            return Ok(SlotKdf::RecoveryCode { salt: d.array()? });
        }
        if kind == 4 {
            return Ok(SlotKdf::Device { salt: d.array()? });
        }
        let params = Argon2Params { m_kib: d.u32()?, t: d.u32()?, p: d.u32()? };
        params.check()?;
        let salt = d.array()?;
        Ok(if kind == 1 {
            SlotKdf::Passphrase { params, salt }
        } else {
            SlotKdf::Pin { params, salt, vault_id: d.array()? }
        })
    }
}

/// A decoded keyslot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyslot {
    /// Repository id.
    pub repo_id: [u8; 16],
    /// Slot id.
    pub slot_id: [u8; 16],
    /// Id of the wrapped master key.
    pub master_id: Id,
    /// Credential kind and KDF inputs.
    pub kdf: SlotKdf,
    nonce: [u8; NONCE_LEN],
    wrapped: [u8; 32 + TAG_LEN],
    /// Label and creation time, sealed under the master key ([`Keyslot::metadata`]).
    sealed_meta: [u8; META_SEALED_LEN],
    commitment: [u8; 32],
    check: [u8; 32],
    /// `bytes[0..H]`: the associated data of the wrapped key.
    authenticated: Vec<u8>,
}

/// A keyslot's sealed metadata, which only a holder of the master key reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMetadata {
    /// Label chosen by the user (at most [`MAX_LABEL_LEN`] bytes).
    pub label: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
}

/// The fields of a new keyslot.
#[derive(Debug, Clone)]
pub struct NewSlot {
    /// Repository id.
    pub repo_id: [u8; 16],
    /// Slot id.
    pub slot_id: [u8; 16],
    /// Label (at most [`MAX_LABEL_LEN`] bytes).
    pub label: String,
    /// Creation time.
    pub created: i64,
    /// Credential kind and KDF inputs.
    pub kdf: SlotKdf,
}

fn slot_keys(kdf_output: &SecretKey) -> (SecretKey, SecretKey) {
    (
        SecretKey::derive(contexts::SLOT_WRAP, kdf_output.bytes()),
        SecretKey::derive(contexts::SLOT_COMMIT, kdf_output.bytes()),
    )
}

/// The key of a slot's sealed metadata: `DERIVE("packvault 2026-12-01 v2 keyslot metadata",
/// master ‖ slot id)`.
fn meta_key(master: &MasterKey, slot_id: &[u8; 16]) -> SecretKey {
    let mut material = [0u8; 48];
    material[..32].copy_from_slice(master.bytes());
    material[32..].copy_from_slice(slot_id);
    let k = SecretKey::derive(contexts::SLOT_META, &material);
    zeroize::Zeroize::zeroize(&mut material);
    k
}

/// Encodes a keyslot wrapping `master` under `kdf_output` (the credential's KDF output).
pub(crate) fn encode(
    slot: &NewSlot,
    master: &MasterKey,
    kdf_output: &SecretKey,
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>> {
    let label = slot.label.as_bytes();
    let label_len = u8::try_from(label.len())
        .map_err(|_| Error::InvalidArgument(format!("keyslot label longer than {MAX_LABEL_LEN} bytes")))?;
    let kind_data = slot.kdf.encode_data()?;
    let mut out = Vec::with_capacity(FIXED_LEN + kind_data.len() + TAIL_LEN);
    out.extend_from_slice(&header(MAGIC_KEYSLOT));
    out.extend_from_slice(&slot.repo_id);
    out.extend_from_slice(&slot.slot_id);
    out.push(slot.kdf.kind());
    out.push(0);
    out.extend_from_slice(&u16::try_from(kind_data.len()).expect("kind data is small").to_le_bytes());
    out.extend_from_slice(&master.id().0);
    out.extend_from_slice(&kind_data);
    let authenticated_len = out.len();
    let (wrap_key, commit_key) = slot_keys(kdf_output);
    let mut wrapped = master.bytes().to_vec();
    crypto::aead_seal(&wrap_key, nonce, &out, &mut wrapped);
    let mut meta = Vec::with_capacity(META_SEALED_LEN);
    meta.extend_from_slice(&slot.created.to_le_bytes());
    meta.push(label_len);
    meta.extend_from_slice(label);
    meta.resize(META_PLAIN_LEN, 0);
    crypto::aead_seal(&meta_key(master, &slot.slot_id), &[0; NONCE_LEN], &out[..authenticated_len], &mut meta);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&meta);
    let commitment = blake3::keyed_hash(commit_key.bytes(), &out);
    out.extend_from_slice(commitment.as_bytes());
    let check = blake3::keyed_hash(check_key(master).bytes(), &out);
    out.extend_from_slice(check.as_bytes());
    Ok(out)
}

fn check_key(master: &MasterKey) -> SecretKey {
    SecretKey::derive(contexts::SLOT_CHECK, master.bytes())
}

/// Parses a keyslot without any key. Refuses KDF parameters outside the accepted bounds, so a
/// hostile slot cannot make the reader spend gigabytes or hours.
///
/// # Errors
/// [`Error::Malformed`] or [`Error::UnsupportedVersion`] for damaged slots,
/// [`Error::LimitExceeded`] for KDF parameters above the bounds.
pub fn decode(bytes: &[u8]) -> Result<Keyslot> {
    const WHAT: &str = "keyslot";
    if bytes.len() > MAX_KEYSLOT_FILE {
        return Err(Error::malformed(WHAT, None, format!("{} bytes is larger than any keyslot", bytes.len())));
    }
    check_header(bytes, MAGIC_KEYSLOT, WHAT)?;
    let mut r = ByteReader::new(bytes, WHAT);
    r.take(HEADER_LEN)?;
    let repo_id = r.array()?;
    let slot_id = r.array()?;
    let kind = r.u8()?;
    r.zeros(1, "reserved byte")?;
    let data_len = usize::from(r.u16()?);
    let master_id = Id(r.array()?);
    let data_at = r.pos();
    let data = r.take(data_len)?;
    let kdf = SlotKdf::decode_data(kind, data, data_at)?;
    let authenticated = bytes[..r.pos()].to_vec();
    let nonce = r.array()?;
    let wrapped = r.array()?;
    let sealed_meta = r.array()?;
    let commitment = r.array()?;
    let check = r.array()?;
    if r.remaining() != 0 {
        return Err(r.err(format!("{} trailing bytes", r.remaining())));
    }
    Ok(Keyslot { repo_id, slot_id, master_id, kdf, nonce, wrapped, sealed_meta, commitment, check, authenticated })
}

impl Keyslot {
    /// Unwraps the master key with the credential's KDF output. Checks the commitment first
    /// (constant time), then the AEAD tag, then the master id.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`] when the commitment does not match (the credential is not
    /// this slot's); [`Error::Integrity`] when the commitment matches but the tag or the master
    /// id does not (the slot was tampered with).
    pub fn unwrap_master(&self, kdf_output: &SecretKey) -> Result<MasterKey> {
        let (wrap_key, commit_key) = slot_keys(kdf_output);
        let mut hasher = blake3::Hasher::new_keyed(commit_key.bytes());
        hasher.update(&self.authenticated);
        hasher.update(&self.nonce);
        hasher.update(&self.wrapped);
        hasher.update(&self.sealed_meta);
        if !crypto::ct_eq(hasher.finalize().as_bytes(), &self.commitment) {
            return Err(Error::WrongPassphrase);
        }
        let mut buf = self.wrapped.to_vec();
        crypto::aead_open(&wrap_key, &self.nonce, &self.authenticated, &mut buf)
            .map_err(|_| Error::Integrity("keyslot: wrapped key fails authentication".into()))?;
        let bytes: [u8; 32] =
            buf.as_slice().try_into().map_err(|_| Error::Integrity("keyslot: wrapped key length".into()))?;
        zeroize::Zeroize::zeroize(&mut buf);
        let master = MasterKey::from_bytes(bytes);
        if master.id() != self.master_id {
            return Err(Error::Integrity("keyslot: unwrapped key does not match the slot's master id".into()));
        }
        // The check tag is not needed here (commitment, tag and master id authenticate what
        // opening uses): a slot whose tag alone is damaged still opens, and `check` reports it.
        Ok(master)
    }

    /// Verifies the slot's check tag with the master key: any change to any byte of the slot
    /// is found, without the slot's credential.
    ///
    /// # Errors
    /// [`Error::Integrity`] when the slot was changed or wraps another master key.
    pub fn verify(&self, master: &MasterKey) -> Result<()> {
        if master.id() != self.master_id {
            return Err(Error::Integrity("keyslot wraps another master key".into()));
        }
        let mut hasher = blake3::Hasher::new_keyed(check_key(master).bytes());
        hasher.update(&self.authenticated);
        hasher.update(&self.nonce);
        hasher.update(&self.wrapped);
        hasher.update(&self.sealed_meta);
        hasher.update(&self.commitment);
        if !crypto::ct_eq(hasher.finalize().as_bytes(), &self.check) {
            return Err(Error::Integrity("keyslot check tag does not verify: the slot was changed".into()));
        }
        Ok(())
    }

    /// Opens the slot's sealed metadata (label, creation time) with the master key it wraps.
    ///
    /// # Errors
    /// [`Error::Integrity`] when the metadata does not authenticate (the slot was changed, or
    /// wraps another master key); [`Error::Malformed`] for a label that is not UTF-8 or
    /// non-zero padding.
    pub fn metadata(&self, master: &MasterKey) -> Result<SlotMetadata> {
        const WHAT: &str = "keyslot metadata";
        let mut plain = self.sealed_meta.to_vec();
        crypto::aead_open(&meta_key(master, &self.slot_id), &[0; NONCE_LEN], &self.authenticated, &mut plain)
            .map_err(|_| Error::Integrity("keyslot metadata: authentication failed".into()))?;
        let mut r = ByteReader::new(&plain, WHAT);
        let created = r.i64()?;
        let n = usize::from(r.u8()?);
        let label = String::from_utf8(r.take(n)?.to_vec()).map_err(|_| r.err("label is not UTF-8"))?;
        let rest = r.remaining();
        r.zeros(rest, "metadata padding")?;
        Ok(SlotMetadata { label, created })
    }

    /// The slot id as 32 hex digits (the file name under `keys/`).
    #[must_use]
    pub fn id_hex(&self) -> String {
        crate::id::hex_encode(&self.slot_id)
    }
}

/// The KDF output of a device slot:
/// `DERIVE("packvault 2026-12-01 v1 device key", salt ‖ secret)`.
#[must_use]
pub fn device_kdf(secret: &SecretKey, salt: &[u8; 32]) -> SecretKey {
    let mut material = [0u8; 64];
    material[..32].copy_from_slice(salt);
    material[32..].copy_from_slice(secret.bytes());
    let k = SecretKey::derive(contexts::DEVICE, &material);
    zeroize::Zeroize::zeroize(&mut material);
    k
}

/// The KDF output of a recovery-code slot:
/// `DERIVE("packvault 2026-11-26 v1 recovery code", salt ‖ code)`.
#[must_use]
pub fn recovery_kdf(code: &RecoveryCode, salt: &[u8; 32]) -> SecretKey {
    let mut material = [0u8; 64];
    material[..32].copy_from_slice(salt);
    material[32..].copy_from_slice(code.bytes());
    let k = SecretKey::derive(contexts::RECOVERY, &material);
    zeroize::Zeroize::zeroize(&mut material);
    k
}

/// The PIN proof shown to the vault: `DERIVE("packvault 2026-11-26 v1 pin vault auth", h)`
/// where `h` is the slot's Argon2id output over the PIN.
#[must_use]
pub fn pin_auth(pin_hash: &SecretKey) -> [u8; 32] {
    blake3::derive_key(contexts::PIN_AUTH, pin_hash.bytes())
}

/// The binding of a PIN slot to its vault enrollment: `DERIVE("packvault 2026-11-26 v1 pin
/// vault binding", salt ‖ u32 m ‖ u32 t ‖ u32 p)`. The vault refuses, without counting an
/// attempt, a release whose binding differs from the enrollment's.
#[must_use]
pub fn pin_binding(salt: &[u8; 32], params: Argon2Params) -> [u8; 32] {
    let mut material = Vec::with_capacity(44);
    material.extend_from_slice(salt);
    material.extend_from_slice(&params.m_kib.to_le_bytes());
    material.extend_from_slice(&params.t.to_le_bytes());
    material.extend_from_slice(&params.p.to_le_bytes());
    blake3::derive_key(contexts::PIN_BINDING, &material)
}

/// The KDF output of a PIN slot: `DERIVE("packvault 2026-11-26 v1 pin key", h ‖ vault secret)`.
#[must_use]
pub fn pin_kdf(pin_hash: &SecretKey, vault_secret: &SecretKey) -> SecretKey {
    let mut material = [0u8; 64];
    material[..32].copy_from_slice(pin_hash.bytes());
    material[32..].copy_from_slice(vault_secret.bytes());
    let k = SecretKey::derive(contexts::PIN_KEY, &material);
    zeroize::Zeroize::zeroize(&mut material);
    k
}

/// Argon2id over a passphrase: the KDF of passphrase slots (RFC 9106, version 0x13,
/// 32-byte output, no secret, no associated data).
///
/// # Errors
/// [`Error::LimitExceeded`] / [`Error::InvalidArgument`] for parameters out of bounds.
pub fn argon2id(passphrase: &[u8], salt: &[u8; 32], params: Argon2Params) -> Result<SecretKey> {
    params.check()?;
    let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| Error::InvalidArgument(format!("Argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, &mut out[..]).map_err(|e| Error::InvalidArgument(format!("Argon2: {e}")))?;
    Ok(SecretKey::from_bytes(*out))
}

#[cfg(test)]
mod tests;

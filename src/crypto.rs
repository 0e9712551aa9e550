//! Key hierarchy and the primitives as packvault uses them (format-spec.md §7).
//!
//! * Hash and KDF: BLAKE3 (`keyed_hash`, `derive_key` with the context strings in
//!   [`contexts`]).
//! * AEAD: AES-256-GCM-SIV (RFC 8452), 96-bit nonce, 128-bit tag appended to the ciphertext.
//!
//! Every secret lives in a type that wipes itself on drop and prints as `[redacted]`.

use std::fmt;

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::id::{ChunkId, Id, TreeId};

/// Length of an AEAD nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Length of an AEAD tag.
pub(crate) const TAG_LEN: usize = 16;

/// BLAKE3 `derive_key` context strings (format-spec.md §7.1). Frozen: changing one changes
/// every key of every repository.
pub mod contexts {
    /// master → chunk-id key.
    pub const CHUNK_ID: &str = "packvault 2026-11-26 v1 chunk id";
    /// master → tree-id key.
    pub const TREE_ID: &str = "packvault 2026-11-26 v1 tree id";
    /// master → seal key.
    pub const SEAL: &str = "packvault 2026-11-26 v1 seal";
    /// master → chunker key.
    pub const CHUNKER: &str = "packvault 2026-11-26 v1 chunker";
    /// master → metadata key.
    pub const METADATA: &str = "packvault 2026-11-26 v1 metadata";
    /// master → master id (public).
    pub const MASTER_ID: &str = "packvault 2026-11-26 v1 master id";
    /// seal key ‖ blob id → per-blob key.
    pub const BLOB_KEY: &str = "packvault 2026-11-26 v1 blob key";
    /// master → dictionary-id key (format-spec.md §5.17).
    pub const DICT_ID: &str = "packvault 2026-12-01 v2 dictionary id";
    /// seal key ‖ dictionary id → the dictionary object's key (format-spec.md §5.17).
    pub const DICT_KEY: &str = "packvault 2026-12-01 v2 dictionary key";
    /// chunker key → gear table (extended output).
    pub const GEAR: &str = "packvault 2026-11-26 v1 gear table";
    /// keyslot KDF output → key-wrapping key.
    pub const SLOT_WRAP: &str = "packvault 2026-11-26 v1 keyslot wrap";
    /// keyslot KDF output → commitment key.
    pub const SLOT_COMMIT: &str = "packvault 2026-11-26 v1 keyslot commitment";
    /// master → key of every keyslot's check tag (lets `check` verify slots it cannot open).
    pub const SLOT_CHECK: &str = "packvault 2026-11-26 v1 keyslot check";
    /// salt ‖ recovery code → recovery-code slot KDF output.
    pub const RECOVERY: &str = "packvault 2026-11-26 v1 recovery code";
    /// Argon2id(PIN) → proof shown to the PIN vault.
    pub const PIN_AUTH: &str = "packvault 2026-11-26 v1 pin vault auth";
    /// PIN slot salt ‖ Argon2id parameters → binding checked by the vault.
    pub const PIN_BINDING: &str = "packvault 2026-11-26 v1 pin vault binding";
    /// Argon2id(PIN) ‖ vault secret → PIN slot KDF output.
    pub const PIN_KEY: &str = "packvault 2026-11-26 v1 pin key";
    /// salt ‖ device secret → device slot KDF output.
    pub const DEVICE: &str = "packvault 2026-12-01 v1 device key";
    /// repository id ‖ master id → repository fingerprint (public).
    pub const FINGERPRINT: &str = "packvault 2026-12-01 v1 repository fingerprint";
    /// metadata key → key of the MAC over the local caches (format-spec.md §5.12). Not a
    /// repository key: the caches never leave the client.
    pub const CACHE_MAC: &str = "packvault 2026-12-01 v1 local cache mac";
    /// metadata key → key of the sealed pack trailer (format-spec.md §5.5.1).
    pub const PACK_TRAILER: &str = "packvault 2026-12-01 v2 pack trailer";
    /// metadata key ‖ pack nonce → the pack's filler bytes (extended output, §5.5).
    pub const PACK_FILLER: &str = "packvault 2026-12-01 v2 pack filler";
    /// master ‖ slot id → key of a keyslot's sealed metadata (label, creation time; §5.11).
    pub const SLOT_META: &str = "packvault 2026-12-01 v2 keyslot metadata";
}

/// A 32-byte secret key, wiped on drop, never printed; compared in constant time.
///
/// Public for [`PinVault`](crate::PinVault) implementations, whose enrolment hands the vault's
/// secret to the library in one. No function outside `hazmat` turns one into a repository key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for SecretKey {}

impl SecretKey {
    /// Wraps raw key bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        SecretKey(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `derive_key(context, material)`.
    pub(crate) fn derive(context: &str, material: &[u8]) -> SecretKey {
        SecretKey(blake3::derive_key(context, material))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// The repository's master key: 32 random bytes made at `init`, stored only wrapped in keyslots.
///
/// One master key is one dedup domain: chunk ids, seal keys and the chunker's gear table all
/// derive from it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey(SecretKey);

impl MasterKey {
    /// A fresh random master key.
    ///
    /// # Errors
    /// [`Error::Io`] when the operating system's random source fails.
    pub fn generate() -> Result<MasterKey> {
        Ok(MasterKey(SecretKey(random_array()?)))
    }

    /// A master key from raw bytes. Only for test vectors and tools that already hold a key:
    /// a real repository gets its master key from [`MasterKey::generate`].
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(SecretKey(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        self.0.bytes()
    }

    /// The master key's public id: `derive_key(MASTER_ID, master)`. Keyslots and the config
    /// carry it so a slot that unwraps to another repository's key is caught.
    #[must_use]
    pub fn id(&self) -> Id {
        Id(blake3::derive_key(contexts::MASTER_ID, self.bytes()))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// The subkeys of one master key (format-spec.md §7.1).
#[derive(Clone)]
pub(crate) struct KeySet {
    master_id: Id,
    chunk_id: SecretKey,
    tree_id: SecretKey,
    seal: SecretKey,
    chunker: SecretKey,
    meta: SecretKey,
    dict_id: SecretKey,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySet(master id {}, [redacted])", self.master_id.short())
    }
}

impl KeySet {
    pub(crate) fn derive(master: &MasterKey) -> KeySet {
        let m = master.bytes();
        KeySet {
            master_id: master.id(),
            chunk_id: SecretKey::derive(contexts::CHUNK_ID, m),
            tree_id: SecretKey::derive(contexts::TREE_ID, m),
            seal: SecretKey::derive(contexts::SEAL, m),
            chunker: SecretKey::derive(contexts::CHUNKER, m),
            meta: SecretKey::derive(contexts::METADATA, m),
            dict_id: SecretKey::derive(contexts::DICT_ID, m),
        }
    }

    /// The raw subkeys, by name (test vectors only, through `hazmat`).
    #[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // used through `hazmat`
    pub(crate) fn export(&self) -> [(&'static str, [u8; 32]); 5] {
        [
            ("chunk id", *self.chunk_id.bytes()),
            ("tree id", *self.tree_id.bytes()),
            ("seal", *self.seal.bytes()),
            ("chunker", *self.chunker.bytes()),
            ("metadata", *self.meta.bytes()),
        ]
    }

    /// Id of a data chunk: BLAKE3 keyed with the chunk-id key.
    pub(crate) fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(Id(*blake3::keyed_hash(self.chunk_id.bytes(), plaintext).as_bytes()))
    }

    /// Id of a tree blob: BLAKE3 keyed with the tree-id key.
    pub(crate) fn tree_id(&self, plaintext: &[u8]) -> TreeId {
        TreeId(Id(*blake3::keyed_hash(self.tree_id.bytes(), plaintext).as_bytes()))
    }

    /// The per-blob AEAD key: `derive_key(BLOB_KEY, seal_key ‖ id)`.
    pub(crate) fn blob_key(&self, id: &Id) -> SecretKey {
        let mut material = [0u8; 64];
        material[..32].copy_from_slice(self.seal.bytes());
        material[32..].copy_from_slice(&id.0);
        let key = SecretKey::derive(contexts::BLOB_KEY, &material);
        material.zeroize();
        key
    }

    /// Id of a compression dictionary: BLAKE3 keyed with the dictionary-id key (format-spec.md
    /// §5.17). A key of its own, so a dictionary never shares an id (and a key) with a chunk of
    /// the same bytes.
    pub(crate) fn dict_id(&self, dictionary: &[u8]) -> Id {
        Id(*blake3::keyed_hash(self.dict_id.bytes(), dictionary).as_bytes())
    }

    /// The AEAD key of a dictionary object: `derive_key(DICT_KEY, seal_key ‖ dictionary id)`.
    pub(crate) fn dict_key(&self, id: &Id) -> SecretKey {
        let mut material = [0u8; 64];
        material[..32].copy_from_slice(self.seal.bytes());
        material[32..].copy_from_slice(&id.0);
        let key = SecretKey::derive(contexts::DICT_KEY, &material);
        material.zeroize();
        key
    }

    pub(crate) fn chunker_key(&self) -> &SecretKey {
        &self.chunker
    }

    pub(crate) fn meta_key(&self) -> &SecretKey {
        &self.meta
    }

    /// The key of the local caches' MAC (see [`cache_mac_key`]).
    pub(crate) fn cache_key(&self) -> SecretKey {
        cache_mac_key(&self.meta)
    }
}

/// The key of the MAC over the local caches: `derive_key(CACHE_MAC, meta_key)`.
///
/// Derived from the metadata key rather than straight from the master key so that code holding
/// only the metadata key (the index loader) can check the index cache, the way the blob keys
/// derive from the seal key; whoever has the metadata key can read everything the caches say
/// anyway.
pub(crate) fn cache_mac_key(meta_key: &SecretKey) -> SecretKey {
    SecretKey::derive(contexts::CACHE_MAC, meta_key.bytes())
}

/// AES-256-GCM-SIV encryption in place: `buf` becomes `ciphertext ‖ tag`.
pub(crate) fn aead_seal(key: &SecretKey, nonce: &[u8; NONCE_LEN], ad: &[u8], buf: &mut Vec<u8>) {
    let cipher = Aes256GcmSiv::new(key.bytes().into());
    let nonce = Nonce::from(*nonce);
    // Lengths are bounded far below RFC 8452's P_MAX/A_MAX (2^36 bytes) by the callers'
    // limits, so encryption cannot fail.
    let tag = cipher
        .encrypt_inout_detached(&nonce, ad, buf.as_mut_slice().into())
        .expect("AES-GCM-SIV input within RFC 8452 limits");
    buf.extend_from_slice(&tag);
}

/// AES-256-GCM-SIV decryption in place of `ciphertext ‖ tag`; on success `buf` holds the
/// plaintext. On failure `buf` is wiped and nothing of the plaintext is handed out.
pub(crate) fn aead_open(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), AeadError> {
    let Some(ct_len) = buf.len().checked_sub(TAG_LEN) else {
        return Err(AeadError);
    };
    let cipher = Aes256GcmSiv::new(key.bytes().into());
    let nonce = Nonce::from(*nonce);
    let (ct, tag) = buf.split_at_mut(ct_len);
    let tag = Tag::try_from(&*tag).map_err(|_| AeadError)?;
    match cipher.decrypt_inout_detached(&nonce, ad, ct.into(), &tag) {
        Ok(()) => {
            buf.truncate(ct_len);
            Ok(())
        }
        Err(_) => {
            buf.zeroize();
            buf.clear();
            Err(AeadError)
        }
    }
}

/// AES-256-GCM-SIV decryption of `ciphertext ‖ tag` from `sealed` into `out` (exactly the
/// ciphertext's length). On failure `out` is wiped.
pub(crate) fn aead_open_into(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    sealed: &[u8],
    out: &mut [u8],
) -> Result<(), AeadError> {
    let ct_len = sealed.len().checked_sub(TAG_LEN).ok_or(AeadError)?;
    if out.len() != ct_len {
        return Err(AeadError);
    }
    let (ct, tag) = sealed.split_at(ct_len);
    let tag = Tag::try_from(tag).map_err(|_| AeadError)?;
    let cipher = Aes256GcmSiv::new(key.bytes().into());
    let buf = aes_gcm_siv::aead::inout::InOutBuf::new(ct, out).map_err(|_| AeadError)?;
    if cipher.decrypt_inout_detached(&Nonce::from(*nonce), ad, buf, &tag).is_err() {
        out.zeroize();
        return Err(AeadError);
    }
    Ok(())
}

/// An AEAD tag did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AeadError;

/// `N` bytes from the operating system's random source.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    #[cfg(feature = "deterministic-for-tests")]
    if crate::testmode::fill(&mut out) {
        return Ok(out);
    }
    getrandom::fill(&mut out).map_err(|e| Error::Io(std::io::Error::other(format!("random source failed: {e}"))))?;
    Ok(out)
}

/// Constant-time equality of two 32-byte values.
pub(crate) fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    blake3::Hash::from_bytes(*a) == blake3::Hash::from_bytes(*b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_is_redacted() {
        let m = MasterKey::from_bytes([7; 32]);
        assert_eq!(format!("{m:?}"), "MasterKey([redacted])");
        let ks = KeySet::derive(&m);
        let dbg = format!("{ks:?}");
        assert!(!dbg.contains("0707"), "{dbg}");
        assert!(format!("{:?}", ks.meta_key()).contains("redacted"));
    }

    #[test]
    fn subkeys_are_distinct() {
        let ks = KeySet::derive(&MasterKey::from_bytes([1; 32]));
        let cache = ks.cache_key();
        let all = [&ks.chunk_id, &ks.tree_id, &ks.seal, &ks.chunker, &ks.meta, &cache];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.bytes(), b.bytes());
            }
        }
        assert_ne!(ks.chunk_id(b"x").0, ks.tree_id(b"x").0);
    }

    #[test]
    fn aead_round_trip_and_tamper() {
        let key = SecretKey::from_bytes([3; 32]);
        let mut buf = b"hello world".to_vec();
        aead_seal(&key, &[0; 12], b"ad", &mut buf);
        assert_eq!(buf.len(), 11 + TAG_LEN);
        let sealed = buf.clone();
        aead_open(&key, &[0; 12], b"ad", &mut buf).unwrap();
        assert_eq!(buf, b"hello world");
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert_eq!(aead_open(&key, &[0; 12], b"ad", &mut bad), Err(AeadError));
        assert!(bad.is_empty());
        let mut bad_ad = sealed.clone();
        assert!(aead_open(&key, &[0; 12], b"AD", &mut bad_ad).is_err());
        let mut short = vec![0u8; 5];
        assert!(aead_open(&key, &[0; 12], b"", &mut short).is_err());
    }
}

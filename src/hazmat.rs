//! Sharp tools: the format's building blocks with every input explicit (keys, nonces).
//!
//! **Warning.** These functions exist for test vectors, fuzzing and tools that inspect
//! repositories. Reusing a nonce with [`encode_index`], [`encode_snapshot`], [`encode_config`]
//! or [`encode_keyslot`] under the same key breaks the confidentiality guarantees of
//! format-spec.md §7.2; the [`Repository`](crate::Repository) API draws every nonce from the
//! operating system's random source and never needs these functions. A repository made
//! around a chosen [`MasterKey`] ([`init_with_master_key`]) is only as secret as that choice.
//!
//! Nothing here is covered by SemVer, and no program that protects data should enable the
//! `hazmat` feature: the `packtool` binary does not.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::chunker::{gear_table, ChunkReader, Chunker};
pub use crate::crypto::{contexts, MasterKey};
pub use crate::repo::TEMPORARY_IDLE;

use crate::crypto::{self, KeySet, SecretKey};
use crate::error::Result;
use crate::format::blob::{self, BlobKind, Codec, Dictionary, SealedBlob};
use crate::format::config::{self, ConfigFile};
use crate::format::index::{self, IndexFile};
use crate::format::keyslot::{self, NewSlot};
use crate::format::pack::{self, BlobEntry};
use crate::format::snapshot::{self, SnapshotRecord};
use crate::id::{ChunkId, Id, RepoId, TreeId};

/// The subkeys of a master key (format-spec.md §7.1).
#[derive(Clone, Debug)]
pub struct Keys(KeySet);

impl Keys {
    /// Derives every subkey of `master`.
    #[must_use]
    pub fn derive(master: &MasterKey) -> Keys {
        Keys(KeySet::derive(master))
    }

    /// The id of a data chunk.
    #[must_use]
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        self.0.chunk_id(plaintext)
    }

    /// The id of a tree blob.
    #[must_use]
    pub fn tree_id(&self, plaintext: &[u8]) -> TreeId {
        self.0.tree_id(plaintext)
    }

    /// The metadata key.
    #[must_use]
    pub fn meta_key(&self) -> &SecretKey {
        self.0.meta_key()
    }

    /// The chunker key.
    #[must_use]
    pub fn chunker_key(&self) -> &SecretKey {
        self.0.chunker_key()
    }

    /// The raw bytes of the subkeys, by name: `chunk id`, `tree id`, `seal`, `chunker`,
    /// `metadata`. For test vectors only.
    #[must_use]
    pub fn export(&self) -> [(&'static str, [u8; 32]); 5] {
        self.0.export()
    }

    /// The per-blob key for `id`. For test vectors only.
    #[must_use]
    pub fn blob_key(&self, id: &Id) -> [u8; 32] {
        *self.0.blob_key(id).bytes()
    }
}

/// The raw bytes of a secret key. For test vectors only.
#[must_use]
pub fn key_bytes(key: &SecretKey) -> [u8; 32] {
    *key.bytes()
}

/// Turns off, for the whole process, what hides the access pattern from the storage provider:
/// block-aligned reads and shuffled packs (format-spec.md §9). With `true`, every read asks for
/// the exact bytes needed and blobs go to packs in arrival order, so the provider can see
/// where blobs begin and end. For the attack tests (`tests/privacy.rs`), which show that the
/// attack they run succeeds without the defences; never call it in a program that stores data.
#[doc(hidden)]
pub fn weaken_provider_privacy(weakened: bool) {
    crate::pack::weakened::set_weakened(weakened);
}

/// Seals a blob; the id is computed from the plaintext with the key of `kind`.
#[must_use]
pub fn seal_blob(keys: &Keys, kind: BlobKind, plaintext: &[u8], zstd_level: Option<i32>) -> SealedBlob {
    let id = match kind {
        BlobKind::Data => keys.chunk_id(plaintext).0,
        BlobKind::Tree => keys.tree_id(plaintext).0,
    };
    blob::seal(&keys.0, kind, id, plaintext, zstd_level)
}

/// Opens a sealed blob (format-spec.md §5.4).
///
/// # Errors
/// As the repository's own blob reads: malformed lengths, failed authentication, bad padding,
/// decompression past `raw_len`, or a plaintext that does not hash to `id`.
pub fn open_blob(keys: &Keys, kind: BlobKind, id: &Id, codec: Codec, raw_len: u32, sealed: &[u8]) -> Result<Vec<u8>> {
    blob::open(&keys.0, kind, id, codec, raw_len, sealed)
}

/// Assembles a pack from blobs, in the order given, with an explicit directory nonce.
#[must_use]
pub fn encode_pack(keys: &Keys, kind: BlobKind, blobs: &[SealedBlob], nonce: &[u8; 12]) -> (Vec<u8>, Vec<BlobEntry>) {
    pack::encode(keys.meta_key(), kind, blobs, nonce)
}

/// Encrypts an index file with an explicit nonce.
#[must_use]
pub fn encode_index(keys: &Keys, file: &IndexFile, nonce: &[u8; 12]) -> Vec<u8> {
    index::encode(keys.meta_key(), file, nonce)
}

/// Encrypts a snapshot file with an explicit nonce.
///
/// # Errors
/// When the record breaks a rule of format-spec.md §5.9.
pub fn encode_snapshot(keys: &Keys, record: &SnapshotRecord, nonce: &[u8; 12]) -> Result<Vec<u8>> {
    snapshot::encode(keys.meta_key(), record, nonce)
}

/// Encrypts a tombstone file with an explicit nonce.
///
/// # Errors
/// When the record breaks the bounds of format-spec.md §5.15.
pub fn encode_tombstone(
    keys: &Keys,
    record: &crate::format::tombstone::TombstoneRecord,
    nonce: &[u8; 12],
) -> Result<Vec<u8>> {
    crate::format::tombstone::encode(keys.meta_key(), record, nonce)
}

/// Encrypts the config file with an explicit nonce.
///
/// # Errors
/// When the settings are out of bounds.
pub fn encode_config(keys: &Keys, config: &ConfigFile, nonce: &[u8; 12]) -> Result<Vec<u8>> {
    config::encode(keys.meta_key(), config, nonce)
}

/// Encodes a keyslot wrapping `master` under the credential's KDF output, with an explicit
/// nonce.
///
/// # Errors
/// When the label is too long or the KDF parameters are out of bounds.
pub fn encode_keyslot(slot: &NewSlot, master: &MasterKey, kdf_output: &SecretKey, nonce: &[u8; 12]) -> Result<Vec<u8>> {
    keyslot::encode(slot, master, kdf_output, nonce)
}

/// Seals a data chunk with the codec rule of format-spec.md §5.4, trying `dictionary` (codec 2)
/// for chunks of at most [`DICT_MAX_CHUNK`](blob::DICT_MAX_CHUNK) bytes.
#[must_use]
pub fn seal_data_blob(
    keys: &Keys,
    plaintext: &[u8],
    zstd_level: Option<i32>,
    dictionary: Option<&Dictionary>,
) -> SealedBlob {
    let id = keys.0.chunk_id(plaintext).0;
    blob::seal_data(&keys.0, id, plaintext, zstd_level, dictionary)
}

/// Opens a blob (format-spec.md §5.4) whose dictionary, for codec 2, is one of `dictionaries`
/// (the dictionaries' ids are taken as given: open them with [`open_dictionary`] first).
///
/// # Errors
/// As [`open_blob`]; [`Error::Dictionary`](crate::Error::Dictionary) when the blob names a
/// dictionary not in the list.
pub fn open_blob_with_dictionaries(
    keys: &Keys,
    kind: BlobKind,
    id: &Id,
    codec: Codec,
    raw_len: u32,
    sealed: &[u8],
    dictionaries: &[Dictionary],
) -> Result<Vec<u8>> {
    struct Listed<'a>(&'a [Dictionary]);
    use blob::DictSource;
    impl DictSource for Listed<'_> {
        fn dictionary(&mut self, id: &Id) -> Result<&Dictionary> {
            match self.0.iter().find(|d| d.id == *id) {
                Some(d) => Ok(d),
                None => blob::NoDictionaries.dictionary(id).map(|_| unreachable!("never a dictionary")),
            }
        }
    }
    blob::open_with(&keys.0, kind, id, codec, raw_len, sealed, &mut Listed(dictionaries))
}

/// Length of the zstd frame of `data` at `level` without a dictionary, as the codec rule of
/// format-spec.md §5.4 makes it (for vectors that compare codecs).
#[must_use]
pub fn zstd_frame_len(data: &[u8], level: i32) -> usize {
    zstd::bulk::compress(data, level).map_or(0, |f| f.len())
}

/// Seals a dictionary object (format-spec.md §5.17): its id and the bytes of `dicts/<id>`.
///
/// # Errors
/// [`Error::LimitExceeded`](crate::Error::LimitExceeded) for a dictionary out of bounds.
pub fn encode_dictionary(keys: &Keys, dictionary: &[u8]) -> Result<(Id, Vec<u8>)> {
    crate::format::dict::encode(&keys.0, dictionary)
}

/// Opens the dictionary file `bytes` stored as `dicts/<id>` (format-spec.md §5.17).
///
/// # Errors
/// As the reader of §5.17 must refuse: too long, bad header, failed tag, bad padding, wrong id.
pub fn open_dictionary(keys: &Keys, id: &Id, bytes: &[u8]) -> Result<Dictionary> {
    Ok(Dictionary { id: *id, bytes: crate::format::dict::decode(&keys.0, id, bytes)? })
}

/// Seals an arbitrary, already encoded body (`codec` and `raw_len` are stored as given, not
/// checked): for tests of what readers must refuse, such as decompression bombs.
#[must_use]
pub fn seal_blob_body(keys: &Keys, kind: BlobKind, id: &Id, codec: Codec, raw_len: u32, body: &[u8]) -> SealedBlob {
    blob::seal_body(&keys.0, kind, *id, codec, raw_len, body.to_vec())
}

/// Creates a repository around a given master key (deterministic fixtures for fuzzing).
///
/// # Errors
/// As [`Repository::init`](crate::Repository::init).
pub fn init_with_master_key(
    store: Arc<dyn crate::Store>,
    master: MasterKey,
    credentials: &crate::Credentials,
    options: crate::InitOptions,
) -> Result<crate::Repository> {
    crate::Repository::init_with_master(store, master, credentials, options)
}

/// Opens a repository with its master key, skipping the keyslots (fuzzing: no KDF per run).
///
/// # Errors
/// As [`Repository::open`](crate::Repository::open), without the keyslot errors.
pub fn open_with_master_key(
    store: Arc<dyn crate::Store>,
    master: MasterKey,
    options: &crate::OpenOptions,
) -> Result<crate::Repository> {
    crate::Repository::open_with_master(store, master, options)
}

/// Parses a local index cache from untrusted bytes; with `verify_checksum` false the table is
/// used without its checksum, so lookups run over arbitrary (unsorted, out-of-range) entries.
///
/// # Errors
/// As the cache reader: bad header, counts that do not match the length, checksum.
pub fn index_cache_from_bytes(bytes: Vec<u8>, verify_checksum: bool) -> Result<crate::Index> {
    crate::Index::from_untrusted_bytes(bytes, verify_checksum)
}

/// AES-256-GCM-SIV encryption as packvault uses it (`ciphertext ‖ tag`), for known-answer
/// tests against RFC 8452 and Wycheproof.
#[must_use]
pub fn aes256_gcm_siv_seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut buf = plaintext.to_vec();
    crypto::aead_seal(&SecretKey::from_bytes(*key), nonce, aad, &mut buf);
    buf
}

/// AES-256-GCM-SIV decryption as packvault uses it; `None` when the tag does not verify.
#[must_use]
pub fn aes256_gcm_siv_open(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let mut buf = sealed.to_vec();
    crypto::aead_open(&SecretKey::from_bytes(*key), nonce, aad, &mut buf).ok().map(|()| buf)
}

/// Builds an index from pack listings, as a backup's commit does: folded into the tables and,
/// with `cache_dir`, written to and mapped from the cache files (benchmarks, tools).
///
/// # Errors
/// Cache folder I/O errors.
pub fn build_index(
    cache_dir: Option<&Path>,
    repo_id: &RepoId,
    packs: Vec<(crate::PackInfo, Vec<crate::format::pack::BlobEntry>)>,
) -> Result<crate::Index> {
    let mut index = crate::Index::for_repo(repo_id.as_bytes());
    for (info, entries) in &packs {
        index.add_pack(*info, entries);
    }
    crate::index::persist(index, cache_dir)
}

/// Opens the index cache files of a repository, if present and valid.
#[must_use]
pub fn open_index_cache(cache_dir: &Path, repo_id: &RepoId) -> Option<crate::Index> {
    crate::index::open_cached(cache_dir, repo_id.as_bytes())
}

/// The index cache file of a repository under `cache_dir` (format-spec.md §5.12).
#[must_use]
pub fn cache_path(cache_dir: &Path, repo_id: &RepoId) -> PathBuf {
    crate::index::cache_path(cache_dir, repo_id.as_bytes())
}

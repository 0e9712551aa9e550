//! Compression dictionaries in a repository (format-spec.md §5.17): where readers find them,
//! how a writer stores one, and (in `dict/train.rs`) when a writer makes one.
//!
//! A dictionary is worth its bytes only for small chunks of data that repeats across chunks
//! (database page groups, small JSON pieces); a 64 KiB piece of chat text has enough context of
//! its own (the issue measured 2.73 → 2.89). So a backup session:
//!
//! 1. reuses the repository's dictionary when there is one (the one with the smallest id that
//!    opens): dictionaries are kept across nights, and a chunk's id is the keyed hash of its
//!    plaintext whatever it was compressed with, so a chunk stored last night with another
//!    dictionary (or none) is found in the index and not stored again;
//! 2. otherwise samples the small compressible chunks it stores, and at commit trains a
//!    dictionary on 4/5 of the sample and measures it on the other 1/5; it is stored only when
//!    the rule of [`train::judge`] says it pays, and is used from the next session on.
//!
//! The measured figures behind the thresholds are in `train.rs` and `BENCHMARKS.md`.

pub(crate) mod train;

use std::collections::HashMap;

use crate::crypto::KeySet;
use crate::error::{Error, Result};
use crate::format::blob::{DictSource, Dictionary};
use crate::format::dict::{self as dict_format, MAX_DICT_FILE};
use crate::id::Id;
use crate::store::{self, FileKind, Store};

/// Reads and checks `dicts/<id>`; a failure is an [`Error::Dictionary`] naming it.
///
/// # Errors
/// [`Error::Dictionary`] around [`Error::NotFound`] (missing), [`Error::LimitExceeded`] (a
/// file above [`MAX_DICT_FILE`], refused before it is read), or the decoder's errors.
pub(crate) fn load(store: &dyn Store, keys: &KeySet, id: &Id) -> Result<Dictionary> {
    let name = id.to_hex();
    let bytes = store::get_bounded(store, FileKind::Dict, &name, MAX_DICT_FILE, "dictionary file length")
        .and_then(|b| dict_format::decode(keys, id, &b))
        .map_err(|e| Error::Dictionary { dictionary: *id, error: Box::new(e) })?;
    Ok(Dictionary { id: *id, bytes })
}

/// Stores a dictionary as `dicts/<id>` and returns it. Idempotent: the same dictionary
/// always seals to the same file, so a name already taken holds these bytes already.
///
/// # Errors
/// [`Error::LimitExceeded`] for a dictionary out of bounds; store errors.
pub(crate) fn save(store: &dyn Store, keys: &KeySet, bytes: Vec<u8>) -> Result<Dictionary> {
    let (id, file) = dict_format::encode(keys, &bytes)?;
    match store.put(FileKind::Dict, &id.to_hex(), &file) {
        Ok(()) | Err(Error::AlreadyExists(_)) => Ok(Dictionary { id, bytes }),
        Err(e) => Err(e),
    }
}

/// The ids in `dicts/`, sorted (names that are not ids are ignored).
///
/// # Errors
/// Store errors.
pub(crate) fn list(store: &dyn Store) -> Result<Vec<Id>> {
    let mut ids = store::list_ids(store, FileKind::Dict)?;
    ids.sort();
    Ok(ids)
}

/// The dictionary a writer uses: the one with the smallest id that opens, if any.
///
/// # Errors
/// Store errors while listing (a dictionary that does not open is skipped).
pub(crate) fn current(store: &dyn Store, keys: &KeySet) -> Result<Option<Dictionary>> {
    for id in list(store)? {
        match load(store, keys, &id) {
            Ok(d) => return Ok(Some(d)),
            Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
            Err(_) => {}
        }
    }
    Ok(None)
}

/// The dictionaries one reader has needed, loaded once each (a failure too: a restore of a
/// thousand blobs of a missing dictionary asks the store once).
pub(crate) struct DictCache<'a> {
    store: &'a dyn Store,
    keys: &'a KeySet,
    loaded: HashMap<Id, Result<Dictionary>>,
}

impl<'a> DictCache<'a> {
    /// An empty cache reading from `store`.
    pub(crate) fn new(store: &'a dyn Store, keys: &'a KeySet) -> DictCache<'a> {
        DictCache { store, keys, loaded: HashMap::new() }
    }
}

impl DictSource for DictCache<'_> {
    fn dictionary(&mut self, id: &Id) -> Result<&Dictionary> {
        let (store, keys) = (self.store, self.keys);
        // A transient store error is not remembered: the next blob asks again.
        if matches!(self.loaded.get(id), Some(Err(e)) if e.kind() == crate::ErrorKind::Io) {
            self.loaded.remove(id);
        }
        let entry = self.loaded.entry(*id).or_insert_with(|| load(store, keys, id));
        match entry {
            Ok(d) => Ok(d),
            Err(e) => Err(e.duplicate()),
        }
    }
}

#[cfg(test)]
mod tests;

//! A session's compression dictionary (format-spec.md §5.17; the policy is in `crate::dict`):
//! the repository's dictionary when it has one, used on the session's small chunks; otherwise a
//! sample of them, from which commit trains one and keeps it when it pays.

use std::sync::{Mutex, PoisonError};

use crate::crypto::{KeySet, TAG_LEN};
use crate::dict::train::{self, Sampler};
use crate::error::Result;
use crate::format::blob::{self, Codec, Dictionary, SealedBlob};
use crate::id::{ChunkId, Id};
use crate::store::Store;

/// What a session does about dictionaries.
pub(super) struct DictHook {
    /// The dictionary this session compresses with.
    pub(super) current: Option<Dictionary>,
    /// The sample of small compressible chunks (no dictionary yet, dictionaries enabled).
    sampler: Option<Mutex<Sampler>>,
}

/// What commit did about a dictionary (for [`BackupOutcome`](super::BackupOutcome)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DictionaryOutcome {
    /// The session compressed its small chunks with this existing dictionary.
    Used(Id),
    /// The session trained this dictionary and stored it for the next sessions: on the
    /// held-out sample it shrank `plain` frame bytes to `with_dictionary`.
    Stored {
        /// The new dictionary.
        id: Id,
        /// Held-out frame bytes without the dictionary.
        plain: u64,
        /// The same with it (the better codec per chunk, references included).
        with_dictionary: u64,
    },
    /// The session trained a dictionary and dropped it: it did not pay (same figures).
    NotWorthIt {
        /// Held-out frame bytes without the dictionary.
        plain: u64,
        /// The same with it.
        with_dictionary: u64,
    },
    /// No dictionary: disabled, or too few small compressible chunks to train on.
    None,
}

impl DictHook {
    /// With `enabled`, the repository's dictionary, or a sampler when it has none.
    pub(super) fn new(store: &dyn Store, keys: &KeySet, enabled: bool) -> Result<DictHook> {
        if !enabled {
            return Ok(DictHook { current: None, sampler: None });
        }
        let current = crate::dict::current(store, keys)?;
        let sampler = current.is_none().then(|| Mutex::new(Sampler::default()));
        Ok(DictHook { current, sampler })
    }

    /// Turns dictionaries off for the rest of the session.
    pub(super) fn disable(&mut self) {
        self.current = None;
        self.sampler = None;
    }

    /// Seals a new data chunk (the pipeline's compress-and-seal step).
    pub(super) fn seal(&self, keys: &KeySet, id: ChunkId, data: &[u8], level: Option<i32>) -> SealedBlob {
        let sealed = blob::seal_data(keys, id.0, data, level, self.current.as_ref());
        if let (Some(s), Codec::Zstd) = (&self.sampler, sealed.codec) {
            let frame = sealed.bytes.len() - TAG_LEN;
            if Sampler::eligible(data.len(), frame) {
                s.lock().unwrap_or_else(PoisonError::into_inner).offer(&id.0, data, frame);
            }
        }
        sealed
    }

    /// At commit, before the index file: with no dictionary, trains one on the sample and
    /// stores it when it pays (it is used from the next session on).
    pub(super) fn finish(&mut self, store: &dyn Store, keys: &KeySet, level: i32) -> Result<DictionaryOutcome> {
        if let Some(d) = &self.current {
            return Ok(DictionaryOutcome::Used(d.id));
        }
        let Some(sampler) = self.sampler.take() else { return Ok(DictionaryOutcome::None) };
        let sampler = sampler.into_inner().unwrap_or_else(PoisonError::into_inner);
        let samples: Vec<&[u8]> = sampler.samples().collect();
        let Some(v) = train::judge(&samples, sampler.eligible_frames, level) else {
            return Ok(DictionaryOutcome::None);
        };
        let (_, _, plain, with_dictionary) = v.held_out;
        if !v.keep {
            return Ok(DictionaryOutcome::NotWorthIt { plain, with_dictionary });
        }
        let d = crate::dict::save(store, keys, v.dictionary)?;
        Ok(DictionaryOutcome::Stored { id: d.id, plain, with_dictionary })
    }
}

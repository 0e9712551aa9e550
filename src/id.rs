//! 32-byte identifiers: chunk, tree, pack, index-file and snapshot ids.
//!
//! All ids are 32 bytes (format-spec.md §3). They print as 64 lowercase hex digits and parse
//! from the same; [`Id::short`] gives the 8-digit prefix used in listings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Length of every id in bytes.
pub const ID_LEN: usize = 32;

/// A 32-byte identifier with no type attached.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Id(pub [u8; ID_LEN]);

impl Id {
    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The first 8 hex digits, as shown in listings.
    #[must_use]
    pub fn short(&self) -> String {
        hex_encode(&self.0[..4])
    }

    /// Full lowercase hex.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `s` is not exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Id, Error> {
        let bytes = hex_decode(s).ok_or_else(|| Error::InvalidArgument(format!("not a 64-digit hex id: {s:?}")))?;
        let arr: [u8; ID_LEN] =
            bytes.try_into().map_err(|_| Error::InvalidArgument(format!("not a 64-digit hex id: {s:?}")))?;
        Ok(Id(arr))
    }

    /// The BLAKE3 hash of `data` (unkeyed), used for pack, index-file and snapshot ids.
    #[must_use]
    pub fn hash_of(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = Error;
    fn from_str(s: &str) -> Result<Id, Error> {
        Id::from_hex(s)
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Id);

        impl $name {
            /// The raw bytes.
            #[must_use]
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0 .0
            }
            /// The first 8 hex digits.
            #[must_use]
            pub fn short(&self) -> String {
                self.0.short()
            }
            /// Full lowercase hex.
            #[must_use]
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
            /// Wraps raw bytes.
            #[must_use]
            pub fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                $name(Id(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.short())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Id::from_hex(s).map($name)
            }
        }

        impl From<$name> for Id {
            fn from(v: $name) -> Id {
                v.0
            }
        }
    };
}

typed_id!(
    /// Id of a data chunk: BLAKE3 keyed with the chunk-id key over the chunk's plaintext.
    ChunkId
);
typed_id!(
    /// Id of a tree blob: BLAKE3 keyed with the tree-id key over the encoded tree.
    TreeId
);
typed_id!(
    /// Id of a pack: BLAKE3 of the pack file's bytes.
    PackId
);
typed_id!(
    /// Id of an index file: BLAKE3 of the file's bytes.
    IndexId
);
typed_id!(
    /// Id of a snapshot: BLAKE3 of the snapshot file's bytes.
    SnapshotId
);

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks_exact(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::hash_of(b"abc");
        assert_eq!(id.to_hex().len(), 64);
        assert_eq!(Id::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(Id::from_hex(&id.to_hex().to_uppercase()).unwrap(), id);
        assert_eq!(id.short(), &id.to_hex()[..8]);
    }

    #[test]
    fn hex_rejects_bad_input() {
        assert!(Id::from_hex("abc").is_err());
        assert!(Id::from_hex(&"g".repeat(64)).is_err());
        assert!(Id::from_hex(&"0".repeat(62)).is_err());
    }
}

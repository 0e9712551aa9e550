//! Identifiers: 32-byte chunk, tree, pack, index-file and snapshot ids, and the 16-byte
//! repository and keyslot ids.
//!
//! The 32-byte ids (format-spec.md §3) print as 64 lowercase hex digits and parse from the
//! same; [`Id::short`] gives the 8-digit prefix used in listings. Repository and keyslot ids
//! are random 16-byte names and print as 32 hex digits.
//!
//! Parsing fails with this module's own [`IdParseError`], not the crate's [`Error`]: ids sit
//! below everything else (errors name ids in their [`Location`]s), so this module imports
//! nothing of the crate and the error module may import it without a cycle. The conversion
//! into [`Error::InvalidArgument`] happens at the boundary, through `From`.
//!
//! [`Error`]: crate::Error
//! [`Error::InvalidArgument`]: crate::Error::InvalidArgument
//! [`Location`]: crate::Location

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A string that is not the hex form of an id: wrong length or a character that is not a hex
/// digit. Converts into [`Error::InvalidArgument`](crate::Error::InvalidArgument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a {digits}-digit hex {what}: {input:?}")]
pub struct IdParseError {
    what: &'static str,
    digits: usize,
    /// The rejected text, cut to [`IdParseError::MAX_SHOWN`] characters.
    input: String,
}

impl IdParseError {
    /// Longest part of the rejected text an error repeats.
    pub const MAX_SHOWN: usize = 80;

    fn new(what: &'static str, digits: usize, input: &str) -> IdParseError {
        IdParseError { what, digits, input: input.chars().take(Self::MAX_SHOWN).collect() }
    }

    /// What was being parsed, e.g. "id" or "keyslot id".
    #[must_use]
    pub fn what(&self) -> &'static str {
        self.what
    }
}

/// Parses exactly `N` bytes of hex (either case).
fn parse_hex<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], IdParseError> {
    hex_decode(s).and_then(|b| <[u8; N]>::try_from(b).ok()).ok_or_else(|| IdParseError::new(what, 2 * N, s))
}

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

    /// Parses 64 hex digits (either case).
    ///
    /// # Errors
    /// [`IdParseError`] when `s` is not exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Id, IdParseError> {
        parse_hex(s, "id").map(Id)
    }

    /// The BLAKE3 hash of `data` (unkeyed), used for pack, index-file and snapshot ids.
    #[must_use]
    pub fn hash_of(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }
}

impl fmt::Display for Id {
    /// 64 lowercase hex digits (width and alignment flags apply).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Id, IdParseError> {
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
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, IdParseError> {
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

macro_rules! short_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name([u8; 16]);

        impl $name {
            /// Wraps raw bytes.
            #[must_use]
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }
            /// The raw bytes.
            #[must_use]
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
            /// The first 8 hex digits.
            #[must_use]
            pub fn short(&self) -> String {
                hex_encode(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            /// 32 lowercase hex digits (width and alignment flags apply).
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&hex_encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), hex_encode(&self.0))
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            /// Parses 32 hex digits (either case).
            fn from_str(s: &str) -> Result<Self, IdParseError> {
                parse_hex(s, $what).map($name)
            }
        }
    };
}

short_id!(
    /// Id of a repository: 16 random bytes chosen at `init`, in the clear in the config file
    /// (format-spec.md §5.10). Public: it names the repository, not its keys.
    RepoId,
    "repository id"
);
short_id!(
    /// Id of a keyslot: 16 random bytes, its file name under `keys/` (format-spec.md §5.11).
    SlotId,
    "keyslot id"
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
        let e = "zz".parse::<SnapshotId>().unwrap_err();
        assert_eq!(e.to_string(), "not a 64-digit hex id: \"zz\"");
        // A long input is cut in the message.
        let e = Id::from_hex(&"x".repeat(10_000)).unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
    }

    #[test]
    fn short_ids_round_trip() {
        let id = RepoId::from_bytes(std::array::from_fn(|i| i as u8 * 17));
        let text = id.to_string();
        assert_eq!(text, "00112233445566778899aabbccddeeff");
        assert_eq!(text.parse::<RepoId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<RepoId>().unwrap(), id);
        assert_eq!(id.short(), "00112233");
        assert_eq!(format!("{:<34}|", SlotId::from_bytes([0xab; 16])), format!("{}  |", "ab".repeat(16)));
        let e = "0011".parse::<SlotId>().unwrap_err();
        assert_eq!(e.to_string(), "not a 32-digit hex keyslot id: \"0011\"");
        assert_eq!(e.what(), "keyslot id");
        assert!(Id::hash_of(b"x").to_hex().parse::<SlotId>().is_err(), "64 digits are no keyslot id");
    }
}

//! Sealed blobs: seal a fuzzed plaintext, apply one fuzzed change (bit flip, truncation,
//! lying length or codec, decompression bomb), open. Opening succeeds only when nothing was
//! changed, and then gives back the plaintext exactly. With a fuzzed dictionary (format-spec.md
//! §5.17), data blobs may be sealed with codec 2; opening them without their dictionary, or
//! with a damaged dictionary file, fails, naming the dictionary.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use packvault::format::blob::{BlobKind, Codec};
use packvault::hazmat;

#[derive(Arbitrary, Debug)]
enum Change {
    None,
    Flip { at: u16, mask: u8 },
    Truncate { keep: u16 },
    RawLen { delta: i16 },
    SwapCodec,
    OtherKind,
    Bomb { repeat: u16 },
    /// Open without any dictionary.
    NoDictionary,
    /// Flip a bit of the dictionary file before opening it.
    DictionaryFlip { at: u16, mask: u8 },
    /// Hand the reader a dictionary file of a hostile length.
    DictionaryLength { len: u32 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    plaintext: Vec<u8>,
    level: Option<i8>,
    tree: bool,
    change: Change,
    dictionary: Option<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let keys = common::keys();
    let kind = if input.tree { BlobKind::Tree } else { BlobKind::Data };
    let level = input.level.map(|l| i32::from(l).clamp(-7, 19));
    // A dictionary of 8 B – 4 KiB, for data blobs.
    let dict_bytes = input.dictionary.as_ref().filter(|d| (8..=4096).contains(&d.len()) && !input.tree);
    let dict = dict_bytes.map(|d| {
        let (id, file) = hazmat::encode_dictionary(&keys, d).unwrap();
        (hazmat::open_dictionary(&keys, &id, &file).unwrap(), file)
    });
    let s = match &dict {
        Some((d, _)) => hazmat::seal_data_blob(&keys, &input.plaintext, level, Some(d)),
        None => hazmat::seal_blob(&keys, kind, &input.plaintext, level),
    };
    let mut dictionaries: Vec<_> = dict.iter().map(|(d, _)| d.clone()).collect();
    let (mut sealed, mut codec, mut raw_len, mut open_kind) = (s.bytes.clone(), s.codec, s.raw_len, kind);
    let changed = match input.change {
        Change::NoDictionary => {
            dictionaries.clear();
            s.codec == Codec::ZstdDict
        }
        Change::DictionaryFlip { at, mask } => match &dict {
            Some((d, file)) => {
                let mut bad = file.clone();
                let i = usize::from(at) % bad.len();
                bad[i] ^= mask;
                match hazmat::open_dictionary(&keys, &d.id, &bad) {
                    Ok(opened) => assert!(mask == 0 && opened == *d, "a changed dictionary opened"),
                    Err(_) => assert!(mask != 0),
                }
                false
            }
            None => false,
        },
        Change::DictionaryLength { len } => {
            // Any length above the bound is refused before the bytes are looked at.
            let len = 135_193 + (len as usize % 4096);
            let err = hazmat::open_dictionary(&keys, &s.id, &vec![0u8; len]).unwrap_err();
            assert!(err.to_string().contains("above the limit"), "{err}");
            false
        }
        Change::None => false,
        Change::Flip { at, mask } => {
            let i = usize::from(at) % sealed.len();
            sealed[i] ^= mask;
            mask != 0
        }
        Change::Truncate { keep } => {
            let keep = usize::from(keep) % sealed.len();
            sealed.truncate(keep);
            true
        }
        Change::RawLen { delta } => {
            raw_len = raw_len.saturating_add_signed(i32::from(delta));
            raw_len != s.raw_len
        }
        Change::SwapCodec => {
            codec = match codec {
                Codec::Raw => Codec::Zstd,
                Codec::Zstd => Codec::ZstdDict,
                _ => Codec::Raw,
            };
            true
        }
        Change::OtherKind => {
            open_kind = if kind == BlobKind::Data { BlobKind::Tree } else { BlobKind::Data };
            true
        }
        Change::Bomb { repeat } => {
            // A valid frame that inflates far beyond the declared length.
            let unit = if input.plaintext.is_empty() { &[0u8][..] } else { &input.plaintext[..] };
            let times = (usize::from(repeat % 64) + 2).max((s.raw_len as usize * 2 + 1) / unit.len() + 1);
            let big = unit.repeat(times.min((1 << 20) / unit.len() + 1));
            let frame = zstd::bulk::compress(&big, 1).unwrap();
            let b = hazmat::seal_blob_body(&keys, kind, &s.id, Codec::Zstd, s.raw_len, &frame);
            sealed = b.bytes;
            codec = Codec::Zstd;
            big != input.plaintext
        }
    };
    match hazmat::open_blob_with_dictionaries(&keys, open_kind, &s.id, codec, raw_len, &sealed, &dictionaries) {
        Ok(plain) => {
            assert_eq!(plain, input.plaintext);
            assert!(!changed, "a changed blob opened: {:?}", input.change);
        }
        Err(e) => {
            assert!(changed, "an unchanged blob failed: {e}");
            if matches!(input.change, Change::NoDictionary) {
                assert!(e.dictionary().is_some(), "{e}");
            }
        }
    }
});

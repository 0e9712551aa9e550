//! Sealed blobs: seal a fuzzed plaintext, apply one fuzzed change (bit flip, truncation,
//! lying length or codec, decompression bomb), open. Opening succeeds only when nothing was
//! changed, and then gives back the plaintext exactly.
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
}

#[derive(Arbitrary, Debug)]
struct Input {
    plaintext: Vec<u8>,
    level: Option<i8>,
    tree: bool,
    change: Change,
}

fuzz_target!(|input: Input| {
    let keys = common::keys();
    let kind = if input.tree { BlobKind::Tree } else { BlobKind::Data };
    let level = input.level.map(|l| i32::from(l).clamp(-7, 19));
    let s = hazmat::seal_blob(&keys, kind, &input.plaintext, level);
    let (mut sealed, mut codec, mut raw_len, mut open_kind) = (s.bytes.clone(), s.codec, s.raw_len, kind);
    let changed = match input.change {
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
            codec = if codec == Codec::Raw { Codec::Zstd } else { Codec::Raw };
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
    match hazmat::open_blob(&keys, open_kind, &s.id, codec, raw_len, &sealed) {
        Ok(plain) => {
            assert_eq!(plain, input.plaintext);
            assert!(!changed, "a changed blob opened: {:?}", input.change);
        }
        Err(e) => assert!(changed, "an unchanged blob failed: {e}"),
    }
});

use super::*;
use crate::crypto::{KeySet, MasterKey};
use crate::format::blob;

fn blobs(ks: &KeySet, sizes: &[usize]) -> Vec<SealedBlob> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let data: Vec<u8> = (0..n).map(|j| (j * 31 + i * 7) as u8).collect();
            blob::seal(ks, BlobKind::Data, ks.chunk_id(&data).0, &data, None)
        })
        .collect()
}

fn sample() -> (KeySet, Vec<u8>, Vec<BlobEntry>) {
    let ks = KeySet::derive(&MasterKey::from_bytes([5; 32]));
    let b = blobs(&ks, &[1000, 1037, 1074, 1111, 1148]);
    let (pack, entries) = encode(ks.meta_key(), BlobKind::Data, &b, &[1; 12]);
    (ks, pack, entries)
}

#[test]
fn round_trip_and_padded_length() {
    let (ks, pack, entries) = sample();
    assert_eq!(pack.len() as u64, padme(pack.len() as u64));
    let dir = decode_pack(ks.meta_key(), &pack).unwrap();
    assert_eq!(dir.kind, BlobKind::Data);
    assert_eq!(dir.entries, entries);
    for e in &dir.entries {
        let sealed = &pack[e.offset as usize..e.end() as usize];
        blob::open(&ks, BlobKind::Data, &e.id, e.codec, e.raw_len, sealed).unwrap();
    }
    let t = Trailer::decode(ks.meta_key(), pack.len() as u64, &pack[pack.len() - TRAILER_LEN..]).unwrap();
    assert_eq!(u64::from(t.blobs_len), entries.last().unwrap().end());
    assert_eq!(t.dir_len as usize, directory_len(entries.len()));
}

/// The leak of version 1: its plaintext trailer said `D`, and so the exact sum of sealed
/// blob lengths. Two packs of one padded length whose blobs differ in total must now show
/// the provider the same plaintext: equal lengths and the same bytes wherever a byte is not
/// ciphertext, i.e. only the header at the very end.
#[test]
fn packs_of_one_padded_length_show_nothing_of_their_blob_total() {
    let ks = KeySet::derive(&MasterKey::from_bytes([5; 32]));
    let (a, ea) = encode(ks.meta_key(), BlobKind::Data, &blobs(&ks, &[40_000, 9_000]), &[1; 12]);
    let (b, eb) = encode(ks.meta_key(), BlobKind::Data, &blobs(&ks, &[40_000, 8_000]), &[1; 12]);
    assert_eq!(a.len(), b.len(), "one Padmé bucket");
    assert_ne!(ea.last().unwrap().end(), eb.last().unwrap().end(), "different blob totals");
    let (ta, tb) = (&a[a.len() - TRAILER_LEN..], &b[b.len() - TRAILER_LEN..]);
    assert_eq!(TrailerFields::parse(ta), TrailerFields::parse(tb));
    assert_eq!(ta[TRAILER_LEN - HEADER_LEN..], tb[TRAILER_LEN - HEADER_LEN..], "the only plaintext");
    // No 4-byte window of either trailer spells the blob total or the directory length (in
    // version 1, the first four bytes were the directory length, from which the total follows).
    for (t, total) in [(ta, ea.last().unwrap().end()), (tb, eb.last().unwrap().end())] {
        let d = directory_len(2) as u32;
        for w in t.windows(4) {
            let v = u32::from_le_bytes(w.try_into().unwrap());
            assert!(v != total as u32 && v != d, "a length in the clear");
        }
    }
    // Between the blobs and the trailer no run of zeros betrays where the blobs end.
    for p in [&a, &b] {
        let zeros = p.windows(16).filter(|w| w.iter().all(|&x| x == 0)).count();
        assert_eq!(zeros, 0, "zero padding in the clear");
    }
}

#[test]
fn trailer_round_trip_and_fields() {
    let (ks, pack, _) = sample();
    let key = ks.meta_key();
    let len = pack.len() as u64;
    let bytes = &pack[pack.len() - TRAILER_LEN..];
    let t = Trailer::decode(key, len, bytes).unwrap();
    assert_eq!(t.encode(key, len).as_slice(), bytes);
    assert!(t.directory_start(len) < len);
    assert_eq!(t.filler_len(len), t.directory_start(len) - u64::from(t.blobs_len));
    let f = TrailerFields::parse(bytes).unwrap();
    assert_eq!((&f.magic, f.version), (b"PVPACK", 2));
    assert!(TrailerFields::parse(&bytes[1..]).is_none());
    let mut other = t.encode(key, len);
    other[TRAILER_LEN - 2] = 3;
    // A newer version is reported as unsupported, before its tag is looked at.
    assert!(matches!(Trailer::decode(key, len, &other), Err(Error::UnsupportedVersion { found: 3, .. })));
    assert_eq!(TrailerFields::parse(&other).unwrap().version, 3, "the fields show what is written");
    // The sealed lengths are bound to the pack's length.
    assert!(matches!(Trailer::decode(key, len + 8, bytes), Err(Error::Integrity(_))));
    // Sealed lengths that do not give this pack's Padmé length are refused by the trailer;
    // lengths within the bucket but not the directory's, by the directory (its AD binds them).
    for (blobs_len, dir_len) in
        [(t.blobs_len + 5000, t.dir_len), (t.blobs_len, t.dir_len + 48 * 100), (t.blobs_len, 10)]
    {
        let bad = Trailer { blobs_len, dir_len, nonce: t.nonce }.encode(key, len);
        assert!(matches!(Trailer::decode(key, len, &bad), Err(Error::Malformed { .. })), "{blobs_len} {dir_len}");
    }
    for (blobs_len, dir_len) in
        [(t.blobs_len + 1, t.dir_len), (t.blobs_len - 1, t.dir_len), (t.blobs_len, t.dir_len - 48)]
    {
        let mut bad = pack.clone();
        let at = bad.len() - TRAILER_LEN;
        bad[at..].copy_from_slice(&Trailer { blobs_len, dir_len, nonce: t.nonce }.encode(key, len));
        assert!(decode_pack(key, &bad).is_err(), "{blobs_len} {dir_len}");
    }
    let huge = Trailer { blobs_len: u32::MAX, dir_len: u32::MAX, nonce: t.nonce }.encode(key, len);
    assert!(Trailer::decode(key, len, &huge).is_err());
}

#[test]
fn every_truncation_is_rejected() {
    let (ks, pack, _) = sample();
    for n in 0..pack.len() {
        assert!(decode_pack(ks.meta_key(), &pack[..n]).is_err(), "prefix of {n} bytes accepted");
        assert!(decode_pack(ks.meta_key(), &pack[pack.len() - n..]).is_err(), "suffix of {n} bytes accepted");
    }
}

#[test]
fn filler_directory_and_trailer_flips_are_rejected() {
    let (ks, pack, entries) = sample();
    let blobs_end = entries.last().unwrap().end() as usize;
    assert!(pack.len() - blobs_end > directory_len(entries.len()) + TRAILER_LEN, "the sample has a filler");
    for i in blobs_end..pack.len() {
        let mut bad = pack.clone();
        bad[i] ^= 0x01;
        assert!(decode_pack(ks.meta_key(), &bad).is_err(), "flip at {i} accepted");
    }
}

#[test]
fn empty_pack_is_the_smallest() {
    let ks = KeySet::derive(&MasterKey::from_bytes([5; 32]));
    let (pack, _) = encode(ks.meta_key(), BlobKind::Tree, &[], &[9; 12]);
    assert_eq!(pack.len() as u64, padme(MIN_PACK_LEN));
    let dir = decode_pack(ks.meta_key(), &pack).unwrap();
    assert_eq!((dir.kind, dir.entries.len()), (BlobKind::Tree, 0));
}

#[test]
fn plaintext_checks() {
    // Entries that overlap, leave a gap, or overrun are refused.
    let e = |offset, sealed_len| BlobEntry { id: Id([1; 32]), offset, sealed_len, raw_len: 10, codec: Codec::Raw };
    let build = |es: &[BlobEntry], kind: u8| {
        let mut p = vec![kind, 0, 0, 0];
        p.extend_from_slice(&(es.len() as u32).to_le_bytes());
        for x in es {
            x.encode(&mut p);
        }
        p
    };
    assert!(decode_directory_plaintext(&build(&[e(0, 40), e(40, 40)], 0), 80).is_ok());
    assert!(decode_directory_plaintext(&build(&[e(0, 40), e(39, 41)], 0), 80).is_err());
    assert!(decode_directory_plaintext(&build(&[e(0, 40), e(41, 39)], 0), 80).is_err());
    assert!(decode_directory_plaintext(&build(&[e(0, 40)], 0), 80).is_err());
    assert!(decode_directory_plaintext(&build(&[e(0, 40)], 2), 40).is_err());
    assert!(decode_directory_plaintext(&build(&[e(0, 16)], 0), 16).is_err());
    // No padding inside the directory any more: trailing bytes, even zeros, are refused.
    let mut padded = build(&[e(0, 40)], 0);
    padded.extend_from_slice(&[0; ENTRY_LEN]);
    assert!(decode_directory_plaintext(&padded, 40).is_err());
    // A count that cannot fit is refused before any allocation.
    let mut huge = vec![0, 0, 0, 0];
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode_directory_plaintext(&huge, 0).is_err());
}

//! The chunker with arbitrary parameters, key and input: cut points cover the input, respect
//! min (except the last chunk) and max, and are identical through a reader with arbitrary
//! short reads.
#![no_main]

use std::io::Read;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use packvault::format::config::ChunkerParams;
use packvault::hazmat::{ChunkReader, Chunker};
use packvault::SecretKey;

#[derive(Arbitrary, Debug)]
struct Input {
    min: u16,
    avg: u16,
    max: u32,
    normalization: u8,
    key: [u8; 32],
    reads: Vec<u16>,
    data: Vec<u8>,
}

struct Reads<'a> {
    data: &'a [u8],
    sizes: &'a [u16],
    i: usize,
}

impl Read for Reads<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let want = self.sizes.get(self.i).map_or(out.len(), |&s| usize::from(s).max(1));
        self.i += 1;
        let n = want.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: Input| {
    let params = ChunkerParams {
        min_size: u32::from(input.min) * 2,
        avg_size: u32::from(input.avg) * 2,
        max_size: (input.max % (1 << 20)) * 2,
        normalization: input.normalization % 4,
        ..ChunkerParams::default()
    };
    let Ok(chunker) = Chunker::new(&params, &SecretKey::from_bytes(input.key)) else {
        return;
    };
    let cuts = chunker.cut_points(&input.data);
    let mut prev = 0;
    for (i, &c) in cuts.iter().enumerate() {
        let len = c - prev;
        assert!(len > 0 && len <= params.max_size as usize);
        if i + 1 < cuts.len() {
            assert!(len > params.min_size as usize || len == params.max_size as usize, "chunk {i}: {len}");
        }
        prev = c;
    }
    assert_eq!(prev, input.data.len());
    let mut r = ChunkReader::new(Reads { data: &input.data, sizes: &input.reads, i: 0 }, chunker);
    let mut pos = 0;
    let mut streamed = Vec::new();
    while let Some(c) = r.next_chunk().unwrap() {
        assert_eq!(c, &input.data[pos..pos + c.len()]);
        pos += c.len();
        streamed.push(pos);
    }
    assert_eq!(streamed, cuts);
});

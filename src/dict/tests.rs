//! Tests of the writer's dictionary policy, and the measurement behind its thresholds.

use super::train::{judge, Sampler};
use crate::crypto::{KeySet, MasterKey};

fn keys() -> KeySet {
    KeySet::derive(&MasterKey::from_bytes([5; 32]))
}

/// Fixed-size pieces of each file (a file's last piece may be shorter).
fn pieces(files: &[Vec<u8>], size: usize) -> Vec<Vec<u8>> {
    files.iter().flat_map(|f| f.chunks(size).map(<[u8]>::to_vec)).collect()
}

/// One row of the ratio table: the kind, piece size, and (for all pieces) raw bytes, stored
/// bytes without a dictionary, stored bytes with it (projected from the held-out ratio, plus
/// the dictionary file), and the rule's verdict.
fn measure(kind: &str, piece: usize, all: &[Vec<u8>], level: i32) -> String {
    let ks = keys();
    let mut sampler = Sampler::default();
    let mut raw_total = 0u64;
    let mut stored_plain = 0u64;
    let mut c = zstd::bulk::Compressor::new(level).unwrap();
    for p in all {
        let id = ks.chunk_id(p).0;
        let f = c.compress(p).unwrap().len();
        raw_total += p.len() as u64;
        stored_plain += f.min(p.len()) as u64;
        // The measurement bypasses the size bound of the sampler: it asks what a dictionary
        // would do for pieces of this size.
        if f < p.len() {
            sampler.eligible_frames += f as u64;
            sampler.eligible_raw += p.len() as u64;
            sampler.force_offer(&id, p);
        }
    }
    let samples: Vec<&[u8]> = sampler.samples().collect();
    let Some(v) = judge(&samples, sampler.eligible_frames, level) else {
        return format!(
            "{kind:<22} {piece:>6} {:>11} {raw_total:>11} {stored_plain:>11} {:>8}  (too few samples)",
            all.len(),
            "-"
        );
    };
    let (n, hraw, hplain, hwith) = v.held_out;
    let dict_file = crate::format::dict::encode(&ks, &v.dictionary).unwrap().1.len() as u64;
    let stored_with = (u128::from(stored_plain) * u128::from(hwith) / u128::from(hplain)) as u64 + dict_file;
    format!(
        "{kind:<22} {piece:>6} {:>11} {raw_total:>11} {stored_plain:>11} {stored_with:>11} {dict_file:>8} {:>6.3} {:>6.3} {:>6.2}% {n:>6} {hraw:>10} {hplain:>10} {hwith:>10} {}",
        all.len(),
        raw_total as f64 / stored_plain as f64,
        raw_total as f64 / stored_with as f64,
        100.0 * (hplain - hwith) as f64 / hplain as f64,
        if v.keep { "KEEP" } else { "drop" }
    )
}

fn read_tree(dir: &std::path::Path, out: &mut Vec<Vec<u8>>, filter: &dyn Fn(&std::path::Path) -> bool) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(&p, out, filter);
        } else if filter(&p) {
            if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
    }
}

/// The ratio table of BENCHMARKS.md (run with `--ignored --nocapture` in release mode; reads
/// /tmp/peerbench and /usr/share/doc; writes bench/results/dict-ratio.txt).
#[test]
#[ignore = "measurement; needs the benchmark data"]
fn dictionary_ratio_table() {
    use std::path::Path;
    let level = 3;
    let mut rows = vec![format!(
        "{:<22} {:>6} {:>11} {:>11} {:>11} {:>11} {:>8} {:>6} {:>6} {:>7} {:>6} {:>10} {:>10} {:>10} rule",
        "kind",
        "piece",
        "pieces",
        "raw",
        "stored",
        "stored+d",
        "dictfile",
        "ratio",
        "ratio+d",
        "gain",
        "held",
        "held_raw",
        "held_plain",
        "held_dict"
    )];
    let db = std::fs::read("/tmp/peerbench/data-200m/day1/databases/msgstore.db").unwrap();
    for piece in [4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10] {
        rows.push(measure("sqlite msgstore.db", piece, &pieces(std::slice::from_ref(&db), piece), level));
    }
    let mut json = Vec::new();
    read_tree(Path::new("/tmp/peerbench/data-200m/day1/export"), &mut json, &|p| {
        p.extension().is_some_and(|e| e == "json")
    });
    for piece in [4 << 10, 16 << 10, 32 << 10, 64 << 10] {
        rows.push(measure("json export", piece, &pieces(&json, piece), level));
    }
    let mut changelogs = Vec::new();
    read_tree(Path::new("/usr/share/doc"), &mut changelogs, &|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("changelog") && n.ends_with(".gz"))
    });
    let changelogs: Vec<Vec<u8>> = changelogs
        .into_iter()
        .filter_map(|gz| {
            let mut out = Vec::new();
            let mut child = std::process::Command::new("gzip")
                .args(["-dc"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .ok()?;
            let mut stdin = child.stdin.take()?;
            let t = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &gz));
            std::io::Read::read_to_end(child.stdout.as_mut()?, &mut out).ok()?;
            t.join().ok()?.ok()?;
            child.wait().ok()?;
            Some(out)
        })
        .collect();
    for piece in [4 << 10, 16 << 10, 32 << 10, 64 << 10] {
        rows.push(measure("debian changelogs", piece, &pieces(&changelogs, piece), level));
    }
    let mut irc = Vec::new();
    read_tree(Path::new("/tmp/peerbench/fluid-irc-logs"), &mut irc, &|p| p.extension().is_none_or(|e| e != "md"));
    for piece in [4 << 10, 16 << 10, 32 << 10, 64 << 10] {
        rows.push(measure("irc logs (fluid)", piece, &pieces(&irc, piece), level));
    }
    let text = rows.join("\n") + "\n";
    let rows = text.lines().count();
    print!("{text}");
    let _ = std::fs::create_dir_all("bench/results");
    std::fs::write("bench/results/dict-ratio.txt", text).unwrap();
    assert_eq!(rows, 18);
}

//! What the storage provider learns (format-spec.md §9.1), checked against its own view: a
//! [`RecordingStore`] under the repository records every request, and the tests here read
//! nothing else (plus the stored bytes themselves, which the provider holds).
//!
//! `cargo test --release privacy` runs exactly these tests (no other test has "privacy" in its
//! name). They share one process-wide switch (`hazmat::weaken_provider_privacy`), so they take
//! a lock and run one at a time.
//!
//! **The attack** (eprint 2025/532, "Chunking Attacks on File Backup Services using
//! Content-Defined Chunking"): the provider knows a file (a forwarded meme, a leaked document)
//! and wants to know whether the user's repository holds it. We give the attacker more than
//! the paper does: the exact sealed length of every chunk of the file as this repository would
//! store it (as if it had recovered the keyed chunker's cut points, eprint 2025/558), so the
//! sum `S` of those lengths is the exact number of bytes the file occupies in packs. It then
//! looks at what it sees for a length that gives the file away: every pack's blob-area length
//! as the plaintext trailer states it, every read's length, and the bytes each restore read in
//! total, leaving out packs that most restores read (those hold the snapshot's trees). The
//! user restores the snapshot one file at a time, as a chat app fetches one attachment or
//! conversation when it is shown. Its statistic is the distance from `S` to the
//! nearest of those numbers.
//!
//! **The experiment**: per trial, a fresh repository (its own key) holds 37 MiB of other files
//! (random sizes from 256 KiB to 4 MiB, random content) and one 3 MiB file at a random place
//! among them: (a) the known file, or (b) another random 3 MiB file, so that the total size,
//! which the provider always sees, is the same in both worlds. The issue asks for 200 MiB of
//! other data; 37 MiB keeps the whole run near a minute in release builds, and favours the
//! attacker: what it matches is local (a file's chunks and the few MiB of other data that the
//! writer mixes them with), and less other data means fewer lengths that could be confused with
//! `S`. Packs have the default 16 MiB target. The attacker's advantage is
//! `|P(decide present | a) − P(decide present | b)|`, for the exact-match decision and for the
//! best threshold on the distance in hindsight (the two-sample Kolmogorov–Smirnov statistic,
//! compared with its 0.1 % critical value: "within noise").
//!
//! With the defences on the advantage is within noise; with them off (exact reads, blobs in
//! input order, one open pack: `weaken_provider_privacy`) the same attacker finds the file in
//! every trial, so the test has teeth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use packvault::format::config::ChunkerParams;
use packvault::format::keyslot::Argon2Params;
use packvault::hazmat::{self, Chunker, Keys, MasterKey};
use packvault::{
    ClientState, Credentials, FileKind, FileMeta, InitOptions, MemorySink, MemoryStore, PruneOptions, RecordingStore,
    Repository, SinkOptions, SnapshotInfo, Store, StoreEvent, StoreOp,
};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// The known file's length.
const TARGET_LEN: usize = 3 * MIB;
/// Other data in each trial's snapshot.
const OTHER_LEN: usize = 37 * MIB;
/// Reads are aligned to this (the library's `READ_ALIGN`).
const BLOCK: u64 = 64 << 10;
const META: FileMeta = FileMeta { mode: 0o600, mtime_secs: 1_780_000_000, mtime_nanos: 0 };

/// The defences switch is process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Turns the defences off for its lifetime (on again even if the test fails).
struct Weakened;

impl Weakened {
    fn new() -> Weakened {
        hazmat::weaken_provider_privacy(true);
        Weakened
    }
}

impl Drop for Weakened {
    fn drop(&mut self) {
        hazmat::weaken_provider_privacy(false);
    }
}

/// splitmix64: the trials' data and keys (the library's own choices use the OS RNG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// A fresh repository in memory, under a recording store, with the master key from `rng`.
fn new_repo(rng: &mut Rng) -> (Arc<MemoryStore>, Arc<RecordingStore>, Repository, Keys) {
    let mut master = [0u8; 32];
    master.copy_from_slice(&rng.bytes(32));
    let keys = Keys::derive(&MasterKey::from_bytes(master));
    let mem = Arc::new(MemoryStore::new());
    let rec = Arc::new(RecordingStore::new(mem.clone()));
    let options = InitOptions {
        kdf: Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 },
        state: ClientState::Disabled,
        ..InitOptions::default()
    };
    let repo = hazmat::init_with_master_key(
        rec.clone(),
        MasterKey::from_bytes(master),
        &Credentials::passphrase("a passphrase for the privacy tests"),
        options,
    )
    .unwrap();
    (mem, rec, repo, keys)
}

fn info() -> SnapshotInfo {
    SnapshotInfo { hostname: Some("phone".into()), username: Some("user".into()), ..SnapshotInfo::default() }
}

/// The sealed lengths of `file`'s chunks in a repository with `keys` (default chunker and
/// zstd level): what the strongest attacker knows.
fn sealed_lengths(keys: &Keys, file: &[u8]) -> Vec<u64> {
    let chunker = Chunker::new(&ChunkerParams::default(), keys.chunker_key()).unwrap();
    let mut start = 0;
    chunker
        .cut_points(file)
        .into_iter()
        .map(|end| {
            let s = hazmat::seal_blob(keys, packvault::format::blob::BlobKind::Data, &file[start..end], Some(3));
            start = end;
            s.bytes.len() as u64
        })
        .collect()
}

/// Blob-area lengths that pack trailers state in plaintext (format-spec.md §5.5.1): the
/// provider reads them from the bytes it stores.
fn trailer_areas(mem: &MemoryStore) -> Vec<u64> {
    mem.list(FileKind::Pack)
        .unwrap()
        .into_iter()
        .filter_map(|name| {
            let bytes = mem.get(FileKind::Pack, &name).ok()?;
            let t = bytes.get(bytes.len().checked_sub(12)?..)?;
            let d = u64::from(u32::from_le_bytes(t[..4].try_into().ok()?));
            (bytes.len() as u64).checked_sub(12 + d)
        })
        .collect()
}

fn pack_reads(events: &[StoreEvent]) -> impl Iterator<Item = &StoreEvent> {
    events.iter().filter(|e| e.op == StoreOp::Read && e.kind == "packs")
}

/// One trial: the attacker's distance (0: a length it sees is exactly the file's).
fn trial(seed: u64, target: &[u8], with_target: bool) -> u64 {
    let mut rng = Rng(seed);
    let (mem, rec, mut repo, keys) = new_repo(&mut rng);
    let mut files: Vec<Vec<u8>> = Vec::new();
    let mut other = 0;
    while other < OTHER_LEN {
        let len = (256 * KIB + rng.below(15 * 256 * KIB)).min(OTHER_LEN - other);
        files.push(rng.bytes(len));
        other += len;
    }
    let third = if with_target { target.to_vec() } else { rng.bytes(TARGET_LEN) };
    let at = rng.below(files.len() + 1);
    files.insert(at, third);
    let names: Vec<String> = (0..files.len()).map(|i| format!("chat/attachment-{i:03}.bin")).collect();

    let mut session = repo.backup().unwrap();
    for (name, data) in names.iter().zip(&files) {
        session.add_stream(name, &data[..], META).unwrap();
    }
    let record = session.commit(info()).unwrap().record;
    let _backup = rec.take_events();

    // The user restores the snapshot one file at a time; the provider sees each restore's reads.
    let mut seen: Vec<u64> = trailer_areas(&mem);
    let mut restores = Vec::new();
    for name in &names {
        let mut sink = MemorySink::default();
        let options = SinkOptions { include: vec![name.clone()], ..SinkOptions::default() };
        repo.restore_to(&record, &options, &mut sink).unwrap();
        restores.push(rec.take_events());
    }
    // Packs that most restores read hold the snapshot's trees: the attacker leaves them out
    // of each restore's total, which is then the bytes read for the file alone.
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for events in &restores {
        let mut packs: Vec<&str> = pack_reads(events).map(|e| e.name.as_str()).collect();
        packs.sort_unstable();
        packs.dedup();
        for p in packs {
            *readers.entry(p).or_default() += 1;
        }
    }
    for events in &restores {
        let mut total = 0;
        for e in pack_reads(events) {
            seen.push(e.len);
            if readers[e.name.as_str()] * 2 <= restores.len() {
                total += e.len;
            }
        }
        seen.push(total);
    }
    let s: u64 = sealed_lengths(&keys, target).iter().sum();
    seen.iter().map(|&x| x.abs_diff(s)).min().unwrap_or(u64::MAX)
}

/// (exact-match advantage, best-threshold advantage) of the attacker over `trials` trials per
/// world, and the distances it saw.
fn attack(trials: u64, first_seed: u64) -> (f64, f64, Vec<u64>, Vec<u64>) {
    let target = Rng(0x7A46_E7F1_1E00_0001).bytes(TARGET_LEN);
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for t in 0..trials {
        present.push(trial(first_seed + 2 * t, &target, true));
        absent.push(trial(first_seed + 2 * t + 1, &target, false));
    }
    let n = trials as f64;
    let rate = |v: &[u64], tau: u64| v.iter().filter(|&&d| d <= tau).count() as f64 / n;
    let exact = (rate(&present, 0) - rate(&absent, 0)).abs();
    let best =
        present.iter().chain(&absent).map(|&tau| (rate(&present, tau) - rate(&absent, tau)).abs()).fold(0.0, f64::max);
    (exact, best, present, absent)
}

/// The two-sample Kolmogorov–Smirnov critical value at 0.1 % for `n` trials per world: a
/// best-threshold advantage below it is within noise.
fn noise_bound(n: u64) -> f64 {
    let alpha: f64 = 0.001;
    (-(alpha / 2.0).ln() / 2.0).sqrt() * (2.0 / n as f64).sqrt()
}

#[test]
fn privacy_known_file_attack_fails_with_the_defences_on() {
    let _serial = serial();
    let trials = 64;
    let (exact, best, present, absent) = attack(trials, 1000);
    let bound = noise_bound(trials);
    println!(
        "privacy attack, defences on, {trials} trials per world: exact-match advantage {exact:.3}, \
         best-threshold advantage {best:.3} (noise bound {bound:.3}); distances present {present:?}, absent {absent:?}"
    );
    assert!(exact <= 1.0 / trials as f64, "an exact length gives the file away: advantage {exact}");
    assert!(best < bound, "best-threshold advantage {best} is above the noise bound {bound}");
}

#[test]
fn privacy_known_file_attack_succeeds_against_the_weakened_configuration() {
    let _serial = serial();
    let _weak = Weakened::new();
    let trials = 12;
    let (exact, best, present, absent) = attack(trials, 5000);
    println!(
        "privacy attack, defences OFF, {trials} trials per world: exact-match advantage {exact:.3}, \
         best-threshold advantage {best:.3}; distances present {present:?}, absent {absent:?}"
    );
    assert!(exact >= 0.85, "without the defences the attack must find the file: advantage {exact}");
}

/// Every ranged read of backup, restore (whole and per file), `open_file`, check (with and
/// without data), forget and prune starts on a 64 KiB block and ends on one or at the end of
/// the object; every other object is read whole.
#[test]
fn privacy_every_read_is_block_aligned_or_whole() {
    let _serial = serial();
    let events = lifecycle_view();
    let sizes = object_sizes(&events);
    let reads: Vec<&StoreEvent> = events.iter().filter(|e| e.op == StoreOp::Read).collect();
    assert!(reads.len() > 20, "the lifecycle reads packs by ranges: {} reads", reads.len());
    for e in &reads {
        let size = sizes.get(&(e.kind.clone(), e.name.clone())).copied();
        let end = e.offset + e.len;
        assert!(
            e.offset % BLOCK == 0 && (end % BLOCK == 0 || Some(end) == size),
            "read of {} bytes at {} of {}/{} (size {size:?}) is not block-aligned",
            e.len,
            e.offset,
            e.kind,
            e.name
        );
    }
    for e in events.iter().filter(|e| e.op == StoreOp::Get) {
        let size = sizes.get(&(e.kind.clone(), e.name.clone())).copied();
        assert!(size.is_none_or(|s| s == e.len), "a whole read of {}/{} returned part of it", e.kind, e.name);
    }
    // The same lifecycle without the defences reads at blob boundaries (the check has teeth).
    let weak = {
        let _weak = Weakened::new();
        lifecycle_view()
    };
    let sizes = object_sizes(&weak);
    assert!(
        weak.iter().filter(|e| e.op == StoreOp::Read).any(|e| {
            let end = e.offset + e.len;
            e.offset % BLOCK != 0
                || (end % BLOCK != 0 && Some(end) != sizes.get(&(e.kind.clone(), e.name.clone())).copied())
        }),
        "the weakened reads were aligned too: the check above would pass without the defence"
    );
}

/// Every pack, index file and snapshot the provider receives has a Padmé length (§5.2): its
/// size tells no more than the padded length of what it holds.
#[test]
fn privacy_stored_objects_have_padded_lengths() {
    let _serial = serial();
    let events = lifecycle_view();
    let mut checked = 0;
    for e in events.iter().filter(|e| e.op == StoreOp::Put && e.ok) {
        if ["packs", "index", "snapshots"].contains(&e.kind.as_str()) {
            assert_eq!(packvault::format::padding::padme(e.len), e.len, "{}/{} has an unpadded length", e.kind, e.name);
            checked += 1;
        }
    }
    assert!(checked >= 6, "the lifecycle writes packs, index files and snapshots: {checked}");
}

/// The size of every object the view names, from its puts and size answers.
fn object_sizes(events: &[StoreEvent]) -> HashMap<(String, String), u64> {
    events
        .iter()
        .filter(|e| e.ok && matches!(e.op, StoreOp::Put | StoreOp::Size))
        .map(|e| ((e.kind.clone(), e.name.clone()), e.len))
        .collect()
}

/// The provider's view of two backups, a whole restore, per-file restores, `open_file` reads,
/// check with data, forget and prune, in one repository.
fn lifecycle_view() -> Vec<StoreEvent> {
    let mut rng = Rng(77);
    let (_mem, rec, mut repo, _keys) = new_repo(&mut rng);
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            let len = 64 * KIB + rng.below(2 * MIB);
            (format!("chat/{i:02}.bin"), rng.bytes(len))
        })
        .collect();
    let mut s = repo.backup().unwrap();
    for (name, data) in &files[..8] {
        s.add_stream(name, &data[..], META).unwrap();
    }
    let first = s.commit(info()).unwrap().snapshot;
    let mut s = repo.backup().unwrap();
    for (name, data) in &files[4..] {
        s.add_stream(name, &data[..], META).unwrap();
    }
    let second = s.commit(info()).unwrap().record;
    let mut sink = MemorySink::default();
    repo.restore_to(&second, &SinkOptions::default(), &mut sink).unwrap();
    for (name, data) in &files[4..7] {
        let mut sink = MemorySink::default();
        let options = SinkOptions { include: vec![name.clone()], ..SinkOptions::default() };
        repo.restore_to(&second, &options, &mut sink).unwrap();
        assert_eq!(sink.files.get(name.as_str()), Some(data));
        let mut f = repo.open_file(&second, name).unwrap();
        let mut head = [0u8; 100];
        std::io::Read::read_exact(&mut f, &mut head).unwrap();
        assert_eq!(head[..], data[..100]);
    }
    let report = repo.check(packvault::CheckOptions { read_data: true, ..packvault::CheckOptions::default() }).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let policy = packvault::ForgetPolicy { ids: vec![first], ..packvault::ForgetPolicy::default() };
    repo.forget(&policy, false).unwrap();
    repo.prune(PruneOptions { max_unused_percent: 0.0, ..PruneOptions::default() }).unwrap();
    let mut sink = MemorySink::default();
    repo.restore_to(&second, &SinkOptions::default(), &mut sink).unwrap();
    assert_eq!(sink.files.len(), 8);
    rec.take_events()
}

//! Writes a deterministic sample chat history, one full folder per day:
//! `OUT/day1`, `OUT/day2`, … (see `tests/support/history.rs` for what is in it).
//!
//! ```sh
//! cargo run --release --example gen_history -- --out /tmp/history --days 3 [--scale 4] [--seed 7]
//! ```
//! `--scale` multiplies the message, page and media counts (scale 1 is about 6 MiB on day 1).

#[path = "../tests/support/history.rs"]
mod history;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut out: Option<PathBuf> = None;
    let mut days = 2u32;
    let mut scale = 1usize;
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--out" => out = Some(value("--out").into()),
            "--days" => days = value("--days").parse().expect("--days takes a number"),
            "--scale" => scale = value("--scale").parse().expect("--scale takes a number"),
            "--seed" => seed = value("--seed").parse().expect("--seed takes a number"),
            _ => {
                eprintln!("usage: gen_history --out DIR [--days N] [--scale S] [--seed N]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(out) = out else {
        eprintln!("usage: gen_history --out DIR [--days N] [--scale S] [--seed N]");
        return ExitCode::from(2);
    };
    let d = history::HistoryParams::default();
    let p = history::HistoryParams {
        seed,
        messages_per_day: d.messages_per_day * scale,
        first_day_messages: d.first_day_messages * scale,
        db_pages: d.db_pages * scale,
        media_per_day: d.media_per_day * scale,
        ..d
    };
    for day in 1..=days {
        let dir = out.join(format!("day{day}"));
        if dir.exists() {
            eprintln!("{} exists; remove it first", dir.display());
            return ExitCode::from(1);
        }
        if let Err(e) = history::write_day(&dir, &p, day) {
            eprintln!("cannot write {}: {e}", dir.display());
            return ExitCode::from(1);
        }
        println!("wrote {} ({} bytes)", dir.display(), history::tree_bytes(&dir));
    }
    ExitCode::SUCCESS
}

//! Regenerates the known-answer vectors: `tests/vectors/*.txt` and their hex dumps in
//! format-spec.md §11. Run from the repository root:
//!
//! ```sh
//! cargo run --example gen_vectors
//! ```
//!
//! Only do this for an intended format change (with a version bump where old readers would
//! misread the new bytes); `cargo test` fails while the committed vectors are stale.

#[path = "../tests/support/vectors.rs"]
mod vectors;

use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/vectors");
    fs::create_dir_all(&dir)?;
    let all = vectors::all();
    for v in &all {
        fs::write(dir.join(v.name), v.render())?;
        println!("wrote tests/vectors/{}", v.name);
    }
    let spec_path = root.join("format-spec.md");
    let spec = fs::read_to_string(&spec_path)?;
    let (Some(a), Some(b)) = (spec.find(vectors::SPEC_BEGIN), spec.find(vectors::SPEC_END)) else {
        eprintln!("format-spec.md lacks the vector markers; not updated");
        std::process::exit(1);
    };
    let updated = format!("{}{}{}{}", &spec[..a], vectors::SPEC_BEGIN, vectors::spec_section(&all), &spec[b..]);
    fs::write(&spec_path, updated)?;
    println!("updated format-spec.md §11");
    Ok(())
}

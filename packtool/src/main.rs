//! The `packtool` binary: all of it lives in the library (`lib.rs`).

fn main() -> std::process::ExitCode {
    packtool::main()
}

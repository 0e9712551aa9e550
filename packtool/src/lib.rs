//! `packtool`: the command-line front end of packvault.
//!
//! It parses arguments, calls the library and prints; it has no format logic of its own.
//! Exit codes: 0 success, 1 error, 2 usage error, 3 integrity problems found (by `check`, or
//! files a `restore` could not restore), 4 repository locked by another client.
//!
//! The crate is a library so that test harnesses can run the command in-process; the
//! `packtool` binary is `main.rs`, one call to [`main`]. Nothing here is a stable API.

mod access;
mod cli;
mod commands;
mod copy;
mod inspect;
mod output;
mod progress;
mod rotate;
mod trace;

use std::process::ExitCode;

use clap::Parser;
use packvault::ErrorKind;

use crate::cli::Cli;
use crate::output::Out;

/// Runs `packtool` with the process's arguments and environment; the exit code.
#[must_use]
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let out = Out::new(cli.global.json, cli.global.quiet);
    let result = commands::run(&cli, &out);
    let result = match trace::finish(&cli.global) {
        Ok(()) => result,
        Err(e) => result.and(Err(e)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("packtool: error: {e:#}");
            let locked =
                e.chain().any(|c| c.downcast_ref::<packvault::Error>().is_some_and(|p| p.kind() == ErrorKind::Locked));
            ExitCode::from(if locked { 4 } else { 1 })
        }
    }
}

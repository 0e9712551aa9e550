//! `packvault-vault`: the PIN vault server and its operator commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use packvault_vault::server::{self, ServeConfig, DEFAULT_ATTEMPT_LIMIT};

/// A rate-limited PIN vault for packvault (OPAQUE over HTTP, records in SQLite).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the vault until SIGTERM or ctrl-c. On first start, creates the database and, next
    /// to it, the key file DB.key (0600): in production that key lives in an HSM or enclave.
    Serve {
        /// The SQLite database of records.
        #[arg(long, value_name = "PATH")]
        db: PathBuf,
        /// Address to listen on (port 0: any free port; the address is printed).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
        /// Wrong PINs in a row that destroy a record (for records enrolled from now on).
        #[arg(long, value_name = "N", default_value_t = DEFAULT_ATTEMPT_LIMIT)]
        attempt_limit: u32,
    },
    /// Print counts of records: live, locked out (destroyed or at the limit), with failures.
    Stats {
        /// The SQLite database of records.
        #[arg(long, value_name = "PATH")]
        db: PathBuf,
    },
    /// Print the vault's public key (clients are configured with it: --vault-key).
    Key {
        /// The SQLite database of records (the key file is DB.key).
        #[arg(long, value_name = "PATH")]
        db: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { db, listen, attempt_limit } => server::serve(&ServeConfig { db, listen, attempt_limit }),
        Command::Stats { db } => server::stats(&db).map(|s| {
            println!("records: {}", s.records);
            println!("locked out: {}", s.locked_out);
            println!("with failed attempts: {}", s.with_failures);
        }),
        Command::Key { db } => server::public_key(&db).map(|k| println!("{k}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("packvault-vault: {e}");
            ExitCode::FAILURE
        }
    }
}

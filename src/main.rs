//! `ovlink`: Docker's legacy `overlay` storage driver as a command-line tool.
//!
//! The binary stays thin: argument parsing ([`cli`]), one module per command group
//! ([`commands`]), and error printing. All the work is in the `ovlink-*` library crates.

mod cli;
mod commands;
mod output;

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _};
use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    let given = |id: &str| {
        matches
            .value_source(id)
            .is_some_and(|s| s != ValueSource::DefaultValue)
    };
    let given = commands::Given {
        root: given("root"),
        driver: given("driver"),
    };
    let args = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match commands::run(args, given) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`ovlink layer ls | head`) is not an error.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("ovlink: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

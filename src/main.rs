//! `ovlink`: Docker's legacy `overlay` storage driver as a command-line tool.
//!
//! The binary stays thin: argument parsing ([`cli`]), one module per command group
//! ([`commands`]), and error printing. All the work is in the `ovlink-*` library crates.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

fn main() -> ExitCode {
    exit_quietly_on_closed_stdout();
    let (args, given) = cli::parse();
    match commands::run(args, given) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`ovlink layer ls | head`) is not an error.
            if err.chain().any(is_broken_pipe) {
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

/// Whether `e` is a write to a closed pipe: an `io::Error`, or a `serde_json::Error` wrapping
/// one (its `source()` skips the `io::Error` itself, so the chain alone does not show it).
fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let broken = Some(std::io::ErrorKind::BrokenPipe);
    e.downcast_ref::<std::io::Error>().map(|e| e.kind()) == broken
        || e.downcast_ref::<serde_json::Error>()
            .and_then(|e| e.io_error_kind())
            == broken
}

/// `println!` panics when stdout is a closed pipe (Rust ignores SIGPIPE, and `unsafe` to
/// restore it is forbidden here): such a panic ends the process with success and no message,
/// as a reader that stopped early (`| head`) expects. Every other panic is reported as usual.
fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

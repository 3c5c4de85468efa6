//! The `gpu-cnn` command-line tool.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    // Mesa's device-select Vulkan layer prints `XDG_RUNTIME_DIR is invalid` on
    // headless machines; it only reorders adapters, which gpu-cnn ranks itself.
    // Set before any thread exists, as set_var requires.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    let args = cli::Cli::parse();
    match cli::run(args, started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

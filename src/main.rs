//! The `gpu-cnn` command-line tool.

#[macro_use]
mod cli;

use std::process::ExitCode;

use cli::output::{StdoutError, CLOSED_STDOUT_EXIT};

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    // Mesa's device-select Vulkan layer prints `XDG_RUNTIME_DIR is invalid` on
    // headless machines; it only reorders adapters, which gpu-cnn ranks itself.
    // Set before any thread exists, as set_var requires.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    let args = cli::Cli::from_env();
    match cli::run(args, started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(code) = e.downcast_ref::<cli::Exit>() {
                // Already reported (an interrupted `train`).
                return ExitCode::from(code.0);
            }
            if e.chain().any(|c| c.downcast_ref::<StdoutError>().is_some_and(StdoutError::closed)) {
                return ExitCode::from(CLOSED_STDOUT_EXIT);
            }
            errln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! Printing without panicking. `println!` panics when standard output is a closed pipe
//! (`gpu-cnn summary | true`) or a full disk; `out!`/`outln!` return the failure as a
//! `StdoutError` instead, which `main` turns into an exit code: 141 for a closed pipe,
//! silently, as a shell reports a program SIGPIPE killed; 1 with the error otherwise.
//! `train` does not return it mid-run: it stops at the step boundary and saves first.
//! `errln!` writes to standard error and ignores failures: there is nowhere left to report them.

use std::io::Write;

/// Writing to standard output failed.
#[derive(Debug)]
pub struct StdoutError(pub std::io::Error);

impl StdoutError {
    /// The reader went away (a closed pipe): not worth a message.
    pub fn closed(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "standard output: cannot write: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

/// The exit code of a closed standard output: 128 + SIGPIPE, what a shell shows for a
/// program that signal killed.
pub const CLOSED_STDOUT_EXIT: u8 = 141;

pub fn write_out(args: std::fmt::Arguments) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    // Flushed here, not at exit, where std would drop the error.
    out.write_fmt(args).and_then(|_| out.flush()).map_err(StdoutError)
}

pub fn write_err(args: std::fmt::Arguments) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `print!` that returns a `StdoutError` instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!($($arg)*))
    };
}

/// `println!` that returns a `StdoutError` instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

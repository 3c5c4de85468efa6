//! Where a run writes, and whether it may: a finished run in that directory is a
//! user's work, replaced only when asked.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

use gpu_cnn::train::checkpoints::has_run_files;

use super::Args;
use crate::cli::shell;

/// The directory a checkpoint file is in (`.` for a bare file name).
pub fn run_dir_of(checkpoint: &Path) -> &Path {
    checkpoint.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Where the run writes: --out, else the resumed checkpoint's directory, else runs/latest.
pub fn out_dir(a: &Args) -> PathBuf {
    match (&a.out, &a.resume) {
        (Some(out), _) => out.clone(),
        (None, Some(resume)) => run_dir_of(resume).to_path_buf(),
        (None, None) => PathBuf::from("runs/latest"),
    }
}

/// Refuse to replace the run `out` holds, unless --overwrite says to, or this run
/// continues it from its own directory: a finished run is a user's work.
pub fn check_out_is_free(a: &Args, out: &Path) -> Result<()> {
    if a.overwrite || !has_run_files(out) {
        return Ok(());
    }
    let real = |p: &Path| std::fs::canonicalize(p).ok();
    if let Some(resume) = &a.resume {
        if real(run_dir_of(resume)).is_some_and(|d| Some(d) == real(out)) {
            return Ok(());
        }
    }
    let checkpoint = out.join("checkpoint.safetensors");
    if !checkpoint.exists() {
        // A run killed during its first save leaves its weights without a checkpoint.
        bail!(
            "{}: holds another run's files but no checkpoint to resume; replace them with --overwrite, or give another --out",
            out.display()
        );
    }
    bail!(
        "{}: holds another run; continue it with --resume {}, replace it with --overwrite, or give another --out",
        out.display(),
        shell::word(&checkpoint.to_string_lossy())
    )
}

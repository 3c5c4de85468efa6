//! A run's output directory: the lock that keeps a second trainer out of it, the
//! temporaries a killed run leaves there, and its two weight files,
//! `checkpoint.safetensors` (weights, optimizer state and position, for `--resume`)
//! and `model.safetensors` (weights only, a PyTorch state_dict).
//!
//! The pair: both files carry the run and step they were written at (`Stamp`), and a
//! save writes `model.safetensors` first, then `checkpoint.safetensors`, each
//! atomically. So whatever stops a save, `model.safetensors` is never older than the
//! checkpoint of its run: it is the same step, or (killed between the two) a later
//! step that resuming from the checkpoint recomputes exactly.

use anyhow::{bail, Context, Result};
use std::fs::{File, TryLockError};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use super::Diverged;
use crate::checkpoint::{self, Position, Stamp};
use crate::executor::{Optimizer, Trainer};
use crate::model::Model;

/// The files a run writes into its directory.
pub const RUN_FILES: [&str; 4] = ["checkpoint.safetensors", "model.safetensors", "metrics.jsonl", "curves.png"];

/// The lock file of a run directory; it stays after the run (removing it would race a
/// trainer that has just opened it) and names its last holder.
pub const LOCK_FILE: &str = ".gpu-cnn.lock";

/// Whether `dir` holds any file of a run.
pub fn has_run_files(dir: &Path) -> bool {
    RUN_FILES.iter().any(|f| dir.join(f).exists())
}

/// An exclusive lock on a run directory, held until dropped. It is the operating
/// system's (`flock` on Unix), so it ends with the process however that ends: a run
/// killed with -9 leaves no lock behind, only the file.
pub struct RunLock {
    dir: PathBuf,
    _file: File,
}

impl RunLock {
    /// Lock `dir` (which must exist) and write who holds it into the lock file, or fail
    /// naming the trainer that holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_FILE);
        let p = path.display();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("{p}: cannot open the run directory's lock file"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).ok().and_then(|s| holder_description(&s));
                bail!(
                    "{}: another gpu-cnn train is writing to this directory ({}); wait for it to end, stop it, or give another --out",
                    dir.display(),
                    holder.unwrap_or_else(|| format!("{p} does not say which: it may have just started"))
                );
            }
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("{p}: cannot lock")),
        }
        let holder = holder_line(std::process::id(), &host_name(), std::time::SystemTime::now());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(holder.as_bytes()))
            .with_context(|| format!("{p}: cannot write"))?;
        Ok(RunLock { dir: dir.to_path_buf(), _file: file })
    }

    /// Remove the temporaries of the run files that a killed run left (safe: this
    /// process holds the directory, so no other trainer is writing them). Returns them.
    pub fn remove_stale_temporaries(&self) -> Result<Vec<PathBuf>> {
        crate::files::remove_stale_temporaries(&self.dir, &RUN_FILES)
    }
}

/// The lock file's content: one JSON object, `{"pid":…,"host":…,"started":…,"started_unix":…}`.
fn holder_line(pid: u32, host: &str, started: std::time::SystemTime) -> String {
    let unix = started.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let j = serde_json::json!({"pid": pid, "host": host, "started": utc(unix), "started_unix": unix});
    format!("{j}\n")
}

/// "pid 1234 on host h, started 2025-01-02 03:04:05 UTC", from a lock file's content.
fn holder_description(content: &str) -> Option<String> {
    let j: serde_json::Value = serde_json::from_str(content.trim()).ok()?;
    let (pid, host, started) = (j["pid"].as_u64()?, j["host"].as_str()?, j["started"].as_str()?);
    Some(format!(
        "pid {pid} on host {}, started {}",
        crate::arch::shortened(host, 80),
        crate::arch::shortened(started, 40)
    ))
}

fn host_name() -> String {
    let from_file = |f: &str| std::fs::read_to_string(f).ok().map(|s| s.trim().to_string());
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Seconds since 1970 as "YYYY-MM-DD hh:mm:ss UTC" (the civil calendar from days, after
/// Howard Hinnant's `civil_from_days`).
fn utc(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

pub struct Checkpoints {
    pub checkpoint: PathBuf,
    pub weights: PathBuf,
    model: Model,
    optimizer: Optimizer,
    run: String,
}

impl Checkpoints {
    /// The pair of run `run` in `dir`.
    pub fn new(dir: &Path, model: &Model, optimizer: Optimizer, run: &str) -> Self {
        Checkpoints {
            checkpoint: dir.join("checkpoint.safetensors"),
            weights: dir.join("model.safetensors"),
            model: model.clone(),
            optimizer,
            run: run.to_string(),
        }
    }

    /// Write both files from the trainer's state at `pos`: the weights, then the
    /// checkpoint, each atomically (the pairing rule above). Weights or optimizer state
    /// that are not finite are a `Diverged` error and write nothing: the loss read back
    /// last was finite, but the update after it need not be, and the last good pair
    /// must survive.
    pub fn save(&self, trainer: &mut dyn Trainer, pos: Position) -> Result<()> {
        let params = trainer.params()?;
        let state = trainer.optimizer_state()?;
        if !params.iter().chain(&state.vectors).all(|x| x.is_finite()) {
            return Err(Diverged { step: pos.global_step, loss: f64::NAN }.into());
        }
        let stamp = Stamp { run: self.run.clone(), step: pos.global_step };
        let weights = checkpoint::to_bytes_stamped(&self.model, &params, None, None, Some(&stamp))?;
        crate::files::write_atomic(&self.weights, &weights)?;
        let opt = Some((&self.optimizer, &state));
        let bytes = checkpoint::to_bytes_stamped(&self.model, &params, opt, Some(&pos), Some(&stamp))?;
        crate::files::write_atomic(&self.checkpoint, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_735_689_599), "2024-12-31 23:59:59 UTC");
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let e = format!("{:#}", RunLock::acquire(dir.path()).err().unwrap());
        let me = format!("pid {} on host {}, started 2", std::process::id(), host_name());
        assert!(e.contains("another gpu-cnn train") && e.contains(&me), "{e}");
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn only_stale_run_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mine = format!(".model.safetensors.tmp-{}", std::process::id());
        let names = [
            ".checkpoint.safetensors.tmp-123",
            ".metrics.jsonl.tmp-9",
            ".curves.png.tmp-77",
            &mine,
            ".compare.png.tmp-5",
            ".checkpoint.safetensors.tmp-",
            ".checkpoint.safetensors.tmp-12x",
            "checkpoint.safetensors.tmp-5",
            "notes.txt",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let lock = RunLock::acquire(dir.path()).unwrap();
        let mut removed: Vec<String> = lock
            .remove_stale_temporaries()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        removed.sort();
        assert_eq!(removed, [".checkpoint.safetensors.tmp-123", ".curves.png.tmp-77", ".metrics.jsonl.tmp-9"]);
        for n in &names[3..] {
            assert!(dir.path().join(n).exists(), "{n} was removed");
        }
    }
}

//! `metrics.jsonl`, the run's log: one JSON object per line, a training log point
//! (`step`, `epoch`, `loss`, `accuracy`, `samples_per_s`, `lr`) every few steps and a
//! test evaluation (`step`, `epoch`, `test_loss`, `test_accuracy`) after each epoch.

use anyhow::{Context, Result};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::Position;
use crate::executor::Stats;
use crate::train::Evaluation;

pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Open `path`: appended to when a run resumes, started afresh otherwise.
    pub fn open(path: &Path, append: bool) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    fn line(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}").with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Training loss and accuracy after step `step` of epoch `epoch` (from 1).
    pub fn log_point(&mut self, step: u64, epoch: usize, stats: &Stats, samples_per_s: f64, lr: f32) -> Result<()> {
        self.line(json!({
            "step": step,
            "epoch": epoch,
            "loss": stats.mean_loss(),
            "accuracy": stats.accuracy(),
            "samples_per_s": samples_per_s,
            "lr": lr as f64,
        }))
    }

    /// The test evaluation at the end of the epoch `pos` starts after.
    pub fn epoch_end(&mut self, pos: &Position, eval: &Evaluation) -> Result<()> {
        self.line(json!({
            "step": pos.global_step,
            "epoch": pos.epoch,
            "test_loss": eval.loss,
            "test_accuracy": eval.accuracy,
        }))
    }
}

//! What `--resume` keeps: the flags it would silently drop are refused. And the
//! commands a run prints for the user to paste: the one that continues it after a
//! stop, and the one that evaluates it when `--steps` ends it inside an epoch.

use anyhow::{bail, Result};
use clap::ValueEnum;
use std::path::Path;

use gpu_cnn::checkpoint::{Checkpoint, Position};
use gpu_cnn::executor::Optimizer;

use super::{Args, OptimizerKind, DEFAULT_CHECKPOINT_EVERY, DEFAULT_EPOCHS, DEFAULT_LOG_EVERY};
use crate::cli::shell::{self, program};
use crate::cli::{Backend, Gemm};

/// The command that continues this run from `checkpoint`: the same program, output,
/// length, data, device and cadence; the checkpoint holds the rest.
pub fn resume_command(a: &Args, out: &Path, gemm: Gemm, checkpoint: &Path) -> String {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut words = vec![program(), "train".into(), "--resume".into(), path(checkpoint), "--out".into(), path(out)];
    let mut flag = |name: &str, value: String| words.extend([name.to_string(), value]);
    if a.epochs != DEFAULT_EPOCHS {
        flag("--epochs", a.epochs.to_string());
    }
    if let Some(s) = a.steps {
        flag("--steps", s.to_string());
    }
    if let Some(d) = &a.data {
        flag("--data", path(d));
    }
    if a.log_every != DEFAULT_LOG_EVERY {
        flag("--log-every", a.log_every.to_string());
    }
    if a.checkpoint_every != DEFAULT_CHECKPOINT_EVERY {
        flag("--checkpoint-every", a.checkpoint_every.to_string());
    }
    words.extend(device_words(a, gemm));
    shell::line(&words)
}

/// The command that evaluates `weights` on the test split the run trained beside, on
/// its device.
pub fn eval_command(a: &Args, gemm: Gemm, weights: &Path) -> String {
    let mut words = vec![program(), "eval".into(), "--weights".into(), weights.to_string_lossy().into_owned()];
    if let Some(d) = &a.data {
        words.extend(["--data".to_string(), d.to_string_lossy().into_owned()]);
    }
    words.extend(device_words(a, gemm));
    shell::line(&words)
}

/// The run's `--backend` and `--gemm`, for a command that should run where it ran.
fn device_words(a: &Args, gemm: Gemm) -> Vec<String> {
    let mut words = Vec::new();
    if a.device.backend != Backend::Auto {
        let name = a.device.backend.to_possible_value().map_or(String::new(), |v| v.get_name().to_string());
        words.extend(["--backend".to_string(), name]);
    }
    if let Some(g) = gemm {
        words.extend(["--gemm".to_string(), g.name().to_string()]);
    }
    words
}

/// The flags that --resume would silently drop: each one given must be the checkpoint's.
/// And a schedule laid over the run that started it cannot stretch: `epoch_steps` (the
/// checkpoint's batch over the training split) turns --epochs into the run's end.
pub fn check_resume_flags(
    a: &Args,
    path: &Path,
    c: &Checkpoint,
    opt: &Optimizer,
    pos: &Position,
    epoch_steps: u64,
) -> Result<()> {
    let mut differ = Vec::new();
    if let Some(spec) = &a.arch {
        let asked = crate::cli::model_from(Some(spec))?;
        if asked != c.model {
            differ.push(format!("--arch '{spec}' (it holds '{}')", gpu_cnn::arch::spec_of(&c.model)));
        }
    }
    let (kind, momentum) = match *opt {
        Optimizer::Adam { .. } => (OptimizerKind::Adam, None),
        Optimizer::Sgd { momentum, .. } => (OptimizerKind::Sgd, Some(momentum)),
    };
    if let Some(k) = a.optimizer.filter(|k| *k != kind) {
        differ.push(format!("--optimizer {k:?} (it holds {kind:?})").to_lowercase());
    }
    if let Some(lr) = a.lr.filter(|lr| *lr != opt.lr()) {
        differ.push(format!("--lr {lr} (it holds {})", opt.lr()));
    }
    match (a.momentum, momentum) {
        (Some(m), Some(held)) if m != held => differ.push(format!("--momentum {m} (it holds {held})")),
        (Some(m), None) => differ.push(format!("--momentum {m} (it holds Adam, which has none)")),
        _ => {}
    }
    if let Some(b) = a.batch_size.filter(|b| *b != pos.batch_size) {
        differ.push(format!("--batch-size {b} (it holds {})", pos.batch_size));
    }
    if a.no_shuffle && pos.shuffle {
        differ.push("--no-shuffle (it shuffles)".into());
    }
    if let Some(s) = a.seed {
        differ.push(format!("--seed {s} (it holds its shuffle position; a seed only starts a run)"));
    }
    if !differ.is_empty() {
        bail!(
            "{}: --resume continues the run as saved, but {} {} from it; leave {} out, or start \
             from its weights with --init (a fresh optimizer, at step 0) to change {}",
            path.display(),
            differ.join(", "),
            if differ.len() == 1 { "differs" } else { "differ" },
            if differ.len() == 1 { "it" } else { "them" },
            if differ.len() == 1 { "it" } else { "them" }
        );
    }
    let end = super::start::run_end(a, epoch_steps);
    let schedule = pos.schedule;
    if schedule.spans_run() && end > schedule.total {
        let asked = match a.steps {
            Some(s) if s == end => format!("--steps {s}"),
            _ => format!("--epochs {} ({end} steps)", a.epochs),
        };
        bail!(
            "{}: its {} schedule spans the {} steps of the run that started it, but {asked} would run past \
             its end, where every step gets its final rate; resume with a run of at most {} steps, or start \
             from its weights with --init and a new --schedule",
            path.display(),
            schedule.name(),
            schedule.total,
            schedule.total
        );
    }
    Ok(())
}

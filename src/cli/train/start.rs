//! Where a run starts: fresh, from `--init`'s weights, or from `--resume`'s checkpoint,
//! with the flags checked against what it starts from, and what it finds already done.

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

use gpu_cnn::checkpoint::{self, Position, Stamp};
use gpu_cnn::data::Dataset;
use gpu_cnn::executor::{Optimizer, OptimizerState};
use gpu_cnn::files::read_file;
use gpu_cnn::metrics_log::{self, kept_on_resume};
use gpu_cnn::model::Model;
use gpu_cnn::schedule::Schedule;
use gpu_cnn::train::checkpoints::has_run_files;
use gpu_cnn::train::start_position;

use super::out_dir::run_dir_of;
use super::resume::check_resume_flags;
use super::{Args, OptimizerKind, DEFAULT_BATCH, DEFAULT_LR, DEFAULT_MOMENTUM};
use crate::cli::{check_arch_agrees, model_from};

/// What a run starts from.
pub struct Start {
    pub model: Model,
    pub params: Vec<f32>,
    pub opt: Optimizer,
    /// A resumed run's optimizer state (moments), to go on with.
    pub opt_state: Option<OptimizerState>,
    pub pos: Position,
    /// A resumed checkpoint's run and step.
    pub stamp: Option<Stamp>,
}

/// The optimizer the flags ask for a run that starts (fresh or from --init).
pub fn requested_optimizer(a: &Args) -> Result<Optimizer> {
    let lr = a.lr.unwrap_or(DEFAULT_LR);
    let opt = match a.optimizer.unwrap_or(OptimizerKind::Adam) {
        OptimizerKind::Adam => {
            if let Some(m) = a.momentum {
                bail!("--momentum {m}: Adam has no momentum; give --optimizer sgd, or leave --momentum out");
            }
            Optimizer::adam(lr)
        }
        OptimizerKind::Sgd => Optimizer::sgd(lr, a.momentum.unwrap_or(DEFAULT_MOMENTUM)),
    }
    .with_weight_decay(a.weight_decay);
    if let Some((name, v, range)) = checkpoint::optimizer_problem(&opt) {
        bail!("--{} {v}: must be {range}", name.replace('_', "-"));
    }
    Ok(opt)
}

/// The model, weights, optimizer and position of the run: `requested` (the flags'
/// optimizer, None with --resume) from fresh or --init weights, or --resume's
/// checkpoint with every flag it fixes checked against it.
pub fn start(a: &Args, train: &Dataset, requested: Option<Optimizer>) -> Result<Start> {
    let default_model = model_from(a.arch.as_deref())?;
    if let (Some(path), None) = (&a.resume, requested) {
        let c = checkpoint::load(path, &default_model)?;
        let (opt, state) = c.optimizer.clone().ok_or_else(|| {
            anyhow!("{}: has no optimizer state to resume from (use --init to start from its weights)", path.display())
        })?;
        let pos = c.position.ok_or_else(|| anyhow!("{}: has no training position to resume from", path.display()))?;
        check_resume_flags(a, path, &c, &opt, &pos, train.len().div_ceil(pos.batch_size) as u64)?;
        return Ok(Start { model: c.model, params: c.params, opt, opt_state: Some(state), pos, stamp: c.stamp });
    }
    let (model, params) = match &a.init {
        Some(path) => {
            let c = checkpoint::load(path, &default_model)?;
            check_arch_agrees(path, a.arch.is_some(), &default_model, &c.model)?;
            (c.model, c.params)
        }
        None => (default_model.clone(), default_model.init_params(a.seed.unwrap_or(0))),
    };
    let (batch, seed) = (a.batch_size.unwrap_or(DEFAULT_BATCH), a.seed.unwrap_or(0));
    let opt = requested.unwrap_or(Optimizer::adam(DEFAULT_LR));
    let epoch_steps = train.len().div_ceil(batch) as u64;
    let schedule = Schedule::from_spec(&a.schedule, a.warmup, run_end(a, epoch_steps), epoch_steps)
        .context("--schedule/--warmup")?;
    let pos = Position { schedule, ..start_position(seed, batch, !a.no_shuffle) };
    Ok(Start { model, params, opt, opt_state: None, pos, stamp: None })
}

/// The global step at which this run stops: `--steps`, or `--epochs` whole epochs of
/// `epoch_steps`, whichever comes first.
pub fn run_end(a: &Args, epoch_steps: u64) -> u64 {
    a.steps.unwrap_or(u64::MAX).min(epoch_steps.saturating_mul(a.epochs as u64))
}

/// Why a run starting at `pos` has nothing to train (already at --epochs or --steps),
/// said as the line to print, or None.
pub fn nothing_to_train(a: &Args, pos: &Position, out: &Path) -> Option<String> {
    let limit = match a.steps {
        Some(s) if pos.global_step >= s => format!("--steps {s}"),
        _ if pos.epoch >= a.epochs => format!("--epochs {}", a.epochs),
        _ => return None,
    };
    // A run that trains nothing leaves whatever the directory holds as it was.
    let left = if has_run_files(out) { "left as it was" } else { "nothing written" };
    let at = match (pos.epoch, pos.batch_in_epoch) {
        (e, 0) if e > 0 => format!("step {} (the end of epoch {e})", pos.global_step),
        (e, _) => format!("step {} (in epoch {})", pos.global_step, e + 1),
    };
    Some(format!("nothing to train: the run is at {at}, already at {limit}; {}: {left}", out.display()))
}

/// The metrics.jsonl lines a resumed run goes on from: its own, cut back to its
/// checkpoint's step (empty for a run that does not resume).
pub fn resumed_metrics(a: &Args, pos: &Position, stamp: Option<&Stamp>) -> Result<String> {
    let Some(path) = &a.resume else { return Ok(String::new()) };
    let from = run_dir_of(path).join("metrics.jsonl");
    if std::fs::metadata(&from).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Ok(String::new());
    }
    // Not std::fs::read: a FIFO there blocked the resume forever, and a huge file was read whole.
    let bytes = read_file(&from, metrics_log::MAX_BYTES)?;
    let step = pos.global_step;
    let (kept, dropped) = kept_on_resume(&String::from_utf8_lossy(&bytes), stamp.map(|s| s.run.as_str()), step);
    if dropped > 0 {
        errln!(
            "note: {}: {dropped} lines logged after the checkpoint's step {step}, or not by its run, are left out",
            from.display()
        );
    }
    Ok(kept)
}

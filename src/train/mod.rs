//! The training loop shared by `gpu-cnn train` and the tests: epoch ordering,
//! batching, resumable positions, reading loss and accuracy back every few
//! steps, and stopping when they stop being finite. What to do with each event
//! (a progress bar, `metrics.jsonl`, checkpoints) is the caller's: `gpu-cnn
//! train` uses `checkpoints` beside this file and `metrics_log::MetricsWriter`.

pub mod checkpoints;

use anyhow::Result;
use std::time::Instant;

use crate::checkpoint::Position;
use crate::data::Dataset;
use crate::executor::{Inference, Stats, Trainer};
use crate::rng::Rng;
use crate::schedule::Schedule;

/// The shuffling stream for `seed`, kept apart from the weight initialisation's
/// stream (`Rng::new(seed)`) so the two are not the same numbers.
pub fn shuffle_rng(seed: u64) -> Rng {
    Rng::new(seed ^ 0xD1B5_4A32_D192_ED03)
}

/// Sample order for one epoch: a Fisher-Yates shuffle from `rng`, or 0..n.
pub fn epoch_order(n: usize, rng: &mut Rng, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        rng.shuffle(&mut order);
    }
    order
}

/// Where a run stands at its start, at a constant learning rate.
pub fn start_position(seed: u64, batch_size: usize, shuffle: bool) -> Position {
    Position {
        epoch: 0,
        batch_in_epoch: 0,
        global_step: 0,
        epoch_rng: shuffle_rng(seed).state(),
        batch_size,
        shuffle,
        schedule: Schedule::constant(),
    }
}

/// How long a run goes and how often it reads its loss back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLength {
    /// Epochs in all, counting those of the run being resumed.
    pub epochs: usize,
    /// Steps in all, counting those of the run being resumed.
    pub max_steps: Option<u64>,
    /// Read loss and accuracy back every this many steps (and at each epoch's end
    /// and the run's last step); at least 1.
    pub log_every: u64,
}

/// What the training loop reports to its caller, in order.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// Epoch `epoch` (from 0) of `batches` batches begins, at batch `first` when resumed.
    EpochStart { epoch: usize, batches: usize, first: usize },
    /// A step ran on batch `batch_in_epoch`; `global` steps are done.
    Step { epoch: usize, batch_in_epoch: usize, batches: usize, global: u64 },
    /// Loss and accuracy since the last `Logged`, read back after step `global`,
    /// at `samples_per_s` over that stretch; `lr` is the learning rate of step
    /// `global`. Never reported with a non-finite loss: the run stops with
    /// `Diverged` instead.
    Logged {
        epoch: usize,
        batch_in_epoch: usize,
        batches: usize,
        global: u64,
        stats: Stats,
        samples_per_s: f64,
        lr: f32,
    },
    /// The step limit stopped the run inside an epoch; it resumes from here.
    Stopped(Position),
    /// An epoch ended; the next one starts from here.
    EpochEnd(Position),
}

/// The error a run stops with when its loss stops being finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diverged {
    /// The step after which the loss was read.
    pub step: u64,
    pub loss: f64,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the loss became {} at step {}: training diverged", self.loss, self.step)
    }
}

impl std::error::Error for Diverged {}

/// Train from `pos` for `length`, cycling through `data` in epochs shuffled from
/// the position's RNG (the last partial batch of an epoch is kept, as PyTorch's
/// DataLoader does). Step t runs at the position's schedule's rate for step t,
/// with the trainer's optimizer as the base (set back when the run returns).
/// Reports each `Event` to `on` and returns where the run stopped; resuming from
/// a returned or reported position continues the same run exactly. A non-finite
/// loss stops the run with a `Diverged` error.
pub fn run(
    trainer: &mut dyn Trainer,
    data: &Dataset,
    pos: Position,
    length: RunLength,
    on: impl FnMut(&mut dyn Trainer, Event) -> Result<()>,
) -> Result<Position> {
    let base = trainer.optimizer();
    let result = run_from(trainer, data, pos, length, base, on);
    let restored = trainer.set_optimizer(base);
    let end = result?;
    restored.map(|_| end)
}

fn run_from(
    trainer: &mut dyn Trainer,
    data: &Dataset,
    pos: Position,
    length: RunLength,
    base: crate::executor::Optimizer,
    mut on: impl FnMut(&mut dyn Trainer, Event) -> Result<()>,
) -> Result<Position> {
    let mut rng = Rng::from_state(pos.epoch_rng);
    let (mut epoch, mut skip, mut global) = (pos.epoch, pos.batch_in_epoch, pos.global_step);
    let at = |epoch, batch_in_epoch, global_step, epoch_rng| Position {
        epoch,
        batch_in_epoch,
        global_step,
        epoch_rng,
        ..pos
    };
    let reached = |g: u64| length.max_steps.is_some_and(|s| g >= s);
    let log_every = length.log_every.max(1);
    // Samples and time since the last log point, restarted at each epoch so the
    // caller's evaluation between epochs is not counted.
    let (mut since, mut samples): (Instant, usize);
    while epoch < length.epochs && !reached(global) {
        let epoch_rng = rng.state();
        let order = epoch_order(data.len(), &mut rng, pos.shuffle);
        let batches: Vec<&[usize]> = order.chunks(pos.batch_size).collect();
        let n = batches.len();
        on(trainer, Event::EpochStart { epoch, batches: n, first: skip })?;
        (since, samples) = (Instant::now(), 0);
        for (bi, idx) in batches.iter().enumerate().skip(skip) {
            if reached(global) {
                let p = at(epoch, bi, global, epoch_rng);
                on(trainer, Event::Stopped(p))?;
                return Ok(p);
            }
            if !pos.schedule.is_constant() {
                trainer.set_optimizer(base.at_rate(pos.schedule.at(global, base.lr() as f64)))?;
            }
            trainer.train_batch(data, idx)?;
            (global, samples) = (global + 1, samples + idx.len());
            on(trainer, Event::Step { epoch, batch_in_epoch: bi, batches: n, global })?;
            if global % log_every == 0 || bi + 1 == n || reached(global) {
                let stats = trainer.take_stats()?;
                if !stats.mean_loss().is_finite() {
                    return Err(Diverged { step: global, loss: stats.mean_loss() }.into());
                }
                let samples_per_s = samples as f64 / since.elapsed().as_secs_f64();
                (since, samples) = (Instant::now(), 0);
                let lr = trainer.optimizer().lr();
                let logged = Event::Logged { epoch, batch_in_epoch: bi, batches: n, global, stats, samples_per_s, lr };
                on(trainer, logged)?;
            }
        }
        skip = 0;
        epoch += 1;
        on(trainer, Event::EpochEnd(at(epoch, 0, global, rng.state())))?;
    }
    Ok(at(epoch, skip, global, rng.state()))
}

/// Test-set figures: mean cross-entropy, accuracy and every prediction.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub predictions: Vec<u32>,
}

/// Evaluate `net` on all of `data`, `batch` images at a time.
pub fn evaluate(net: &mut dyn Inference, data: &Dataset, batch: usize) -> Result<Evaluation> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let (mut loss, mut correct) = (0.0, 0);
    let mut predictions = Vec::with_capacity(data.len());
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        data.batch(chunk, &mut images, &mut labels);
        let e = net.evaluate(&images, &labels)?;
        (loss, correct) = (loss + e.loss_sum, correct + e.correct);
        predictions.extend(e.predictions);
    }
    let n = data.len().max(1) as f64;
    Ok(Evaluation { loss: loss / n, accuracy: correct as f64 / n, predictions })
}

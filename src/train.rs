//! The training loop shared by the CLI and the tests (epoch ordering, batching,
//! resumable positions), and evaluation.

use anyhow::Result;

use crate::checkpoint::Position;
use crate::data::Dataset;
use crate::executor::Executor;
use crate::rng::Rng;

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

/// Where a run stands (from the start, or from a checkpoint's `Position`).
pub fn start_position(seed: u64, batch_size: usize, shuffle: bool) -> Position {
    Position { epoch: 0, batch_in_epoch: 0, global_step: 0, epoch_rng: shuffle_rng(seed).state(), batch_size, shuffle }
}

/// What the training loop reports to its caller, in order.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// Epoch `epoch` (from 0) of `batches` batches begins, at batch `first` when resumed.
    EpochStart { epoch: usize, batches: usize, first: usize },
    /// A step ran on batch `batch_in_epoch` of `samples` samples; `global` steps are done.
    /// `last` is true for the epoch's last batch and for the run's last step.
    Step { epoch: usize, batch_in_epoch: usize, batches: usize, global: u64, samples: usize, last: bool },
    /// The step limit stopped the run inside an epoch; it resumes from here.
    Stopped(Position),
    /// An epoch ended; the next one starts from here.
    EpochEnd(Position),
}

/// Train from `pos` until `epochs` epochs or `max_steps` steps in all, cycling through
/// `data` in epochs shuffled from the position's RNG (the last partial batch of an
/// epoch is kept, as PyTorch's DataLoader does). Reports each `Event` to `on` and
/// returns where the run stopped. Resuming from a returned or reported position
/// continues the same run exactly.
pub fn run(
    exec: &mut dyn Executor,
    data: &Dataset,
    pos: Position,
    epochs: usize,
    max_steps: Option<u64>,
    mut on: impl FnMut(&mut dyn Executor, Event) -> Result<()>,
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
    let reached = |g: u64| max_steps.is_some_and(|s| g >= s);
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    while epoch < epochs && !reached(global) {
        let epoch_rng = rng.state();
        let order = epoch_order(data.len(), &mut rng, pos.shuffle);
        let batches: Vec<&[usize]> = order.chunks(pos.batch_size).collect();
        on(exec, Event::EpochStart { epoch, batches: batches.len(), first: skip })?;
        for (bi, idx) in batches.iter().enumerate().skip(skip) {
            if reached(global) {
                let p = at(epoch, bi, global, epoch_rng);
                on(exec, Event::Stopped(p))?;
                return Ok(p);
            }
            data.batch(idx, &mut images, &mut labels);
            exec.train_step(&images, &labels)?;
            global += 1;
            let last = bi + 1 == batches.len() || reached(global);
            let n = batches.len();
            on(exec, Event::Step { epoch, batch_in_epoch: bi, batches: n, global, samples: idx.len(), last })?;
        }
        skip = 0;
        epoch += 1;
        on(exec, Event::EpochEnd(at(epoch, 0, global, rng.state())))?;
    }
    Ok(at(epoch, skip, global, rng.state()))
}

/// Test-set figures: mean cross-entropy, accuracy and every prediction.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub predictions: Vec<usize>,
}

pub fn evaluate(exec: &mut dyn Executor, data: &Dataset, batch: usize) -> Result<Evaluation> {
    let classes = exec.model().classes();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut loss = 0.0;
    let mut predictions = Vec::with_capacity(data.len());
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch) {
        data.batch(chunk, &mut images, &mut labels);
        let probs = exec.predict(&images)?;
        for (row, &l) in probs.chunks(classes).zip(&labels) {
            loss -= (row[l as usize].max(f32::MIN_POSITIVE) as f64).ln();
        }
        predictions.extend(crate::cpu::ops::argmax_rows(&probs, classes));
    }
    let correct = predictions.iter().zip(&data.labels).filter(|(&p, &l)| p == l as usize).count();
    Ok(Evaluation {
        loss: loss / data.len().max(1) as f64,
        accuracy: correct as f64 / data.len().max(1) as f64,
        predictions,
    })
}

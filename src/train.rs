//! The training loop pieces shared by the CLI, the tests and the benchmarks:
//! epoch ordering, batching, and evaluation.

use anyhow::Result;

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

/// Run `steps` training steps of `batch` samples, cycling through `data` in epochs
/// shuffled from `seed` (the last partial batch of an epoch is kept, as PyTorch's
/// DataLoader does). Calls `on_step(step, executor)` after each step.
pub fn train_steps(
    exec: &mut dyn Executor,
    data: &Dataset,
    batch: usize,
    steps: usize,
    seed: u64,
    mut on_step: impl FnMut(usize, &mut dyn Executor) -> Result<()>,
) -> Result<()> {
    let mut rng = shuffle_rng(seed);
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut step = 0;
    while step < steps {
        let order = epoch_order(data.len(), &mut rng, true);
        for idx in order.chunks(batch) {
            if step == steps {
                break;
            }
            data.batch(idx, &mut images, &mut labels);
            exec.train_step(&images, &labels)?;
            step += 1;
            on_step(step, exec)?;
        }
    }
    Ok(())
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

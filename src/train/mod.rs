//! The training loop shared by `gpu-cnn train` and the tests: epoch ordering,
//! batching, resumable positions, reading loss and accuracy back every few
//! steps, stopping when they stop being finite, stopping cleanly at a step boundary
//! when asked (a signal) and offering checkpoints between epoch ends. What to do with each event
//! (a progress bar, `metrics.jsonl`, checkpoints) is the caller's: `gpu-cnn
//! train` uses `checkpoints` beside this file and `metrics_log::MetricsWriter`.

pub mod checkpoints;

use anyhow::{bail, Result};
use std::time::{Duration, Instant};

use crate::checkpoint::{Position, MAX_STEP};
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
    /// The step limit or `Control::stop` stopped the run; it resumes from here. A stop
    /// asked for after an epoch's last step comes before its `EpochEnd`: the position
    /// is then that epoch's end (`batch_in_epoch` = its batches), and resuming from it
    /// begins with the `EpochEnd`.
    Stopped(Position),
    /// An epoch ended; the next one starts from here.
    EpochEnd(Position),
    /// `Control::checkpoint_every` has passed since the run's start, the last epoch end or
    /// the last `Checkpoint`: the run resumes exactly from here. Its step was also `Logged`
    /// (so a diverged loss is seen before the weights are offered). Not sent when an
    /// `EpochEnd` or `Stopped` follows at the same step.
    Checkpoint(Position),
}

/// How often a run offers a `Checkpoint` between epoch ends: every so many steps, or
/// once so much wall time has passed since the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    Steps(u64),
    Every(Duration),
}

impl std::str::FromStr for Cadence {
    type Err = String;

    /// A number of steps (`500`) or a duration, a whole number with a unit
    /// (`90s`, `5m`, `2h`), more than zero.
    fn from_str(s: &str) -> std::result::Result<Cadence, String> {
        let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let n: u64 =
            digits.parse().map_err(|_| format!("{s:?} is not a number of steps or a duration like 90s, 5m or 2h"))?;
        if n == 0 {
            return Err("must be more than zero".into());
        }
        let seconds = |per: u64| n.checked_mul(per).map(Duration::from_secs).ok_or("is too long".to_string());
        Ok(match unit {
            "" => Cadence::Steps(n),
            "s" => Cadence::Every(seconds(1)?),
            "m" => Cadence::Every(seconds(60)?),
            "h" => Cadence::Every(seconds(3600)?),
            _ => {
                return Err(format!("unknown unit {unit:?}: give steps (500) or a duration in s, m or h (90s, 5m, 2h)"))
            }
        })
    }
}

impl std::fmt::Display for Cadence {
    /// As `from_str` reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Cadence::Steps(n) => write!(f, "{n}"),
            Cadence::Every(d) => match d.as_secs() {
                s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
                s if s % 60 == 0 => write!(f, "{}m", s / 60),
                s => write!(f, "{s}s"),
            },
        }
    }
}

/// What a caller asks of a run beyond its length (`run` asks nothing of this).
pub struct Control<'a> {
    /// Asked after every step and before every epoch: true stops the run there with
    /// `Stopped` (after logging the step), so the step in flight is never lost.
    pub stop: &'a dyn Fn() -> bool,
    /// Offer a `Checkpoint` this often; None: only epoch ends and stops.
    pub checkpoint_every: Option<Cadence>,
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
    run_with(trainer, data, pos, length, Control { stop: &|| false, checkpoint_every: None }, on)
}

/// `run`, stopped early by `control.stop` and offering checkpoints every
/// `control.checkpoint_every`.
pub fn run_with(
    trainer: &mut dyn Trainer,
    data: &Dataset,
    pos: Position,
    length: RunLength,
    control: Control,
    on: impl FnMut(&mut dyn Trainer, Event) -> Result<()>,
) -> Result<Position> {
    let base = trainer.optimizer();
    let result = run_from(trainer, data, pos, length, base, control, on);
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
    control: Control,
    mut on: impl FnMut(&mut dyn Trainer, Event) -> Result<()>,
) -> Result<Position> {
    if pos.batch_size == 0 {
        bail!("a batch size of 0 takes no step");
    }
    // Past it the step counter could wrap (checkpoint::load refuses such a file; this is
    // for positions made otherwise). Below it, `global + 1` cannot overflow in any run.
    if pos.global_step > MAX_STEP {
        bail!("a run at step {} is past the last step a run may reach, 2^53", pos.global_step);
    }
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
    // The last point the caller saved at (the start counts): a step and when.
    let mut saved = (global, Instant::now());
    let due = |saved: (u64, Instant), global: u64| match control.checkpoint_every {
        None => false,
        Some(Cadence::Steps(n)) => global - saved.0 >= n,
        Some(Cadence::Every(d)) => saved.1.elapsed() >= d,
    };
    // Samples and time since the last log point, restarted at each epoch so the
    // caller's evaluation between epochs is not counted.
    let (mut since, mut samples): (Instant, usize);
    while epoch < length.epochs && !reached(global) {
        let epoch_rng = rng.state();
        if (control.stop)() {
            let p = at(epoch, skip, global, epoch_rng);
            on(trainer, Event::Stopped(p))?;
            return Ok(p);
        }
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
            let last = bi + 1 == n;
            // Asked once, so the log point and the stop agree.
            let stopping = (control.stop)();
            let checkpoint = !last && !stopping && !reached(global) && due(saved, global);
            if global % log_every == 0 || last || reached(global) || stopping || checkpoint {
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
            if stopping {
                let p = at(epoch, bi + 1, global, epoch_rng);
                on(trainer, Event::Stopped(p))?;
                return Ok(p);
            }
            if checkpoint {
                on(trainer, Event::Checkpoint(at(epoch, bi + 1, global, epoch_rng)))?;
                saved = (global, Instant::now());
            }
        }
        skip = 0;
        epoch += 1;
        on(trainer, Event::EpochEnd(at(epoch, 0, global, rng.state())))?;
        saved = (global, Instant::now());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuTrainer;
    use crate::data::{bundled_mnist_dir, Split};
    use crate::executor::Optimizer;
    use std::cell::Cell;

    #[test]
    fn cadences_read_as_steps_or_durations() {
        for (s, want) in [
            ("500", Cadence::Steps(500)),
            ("90s", Cadence::Every(Duration::from_secs(90))),
            ("5m", Cadence::Every(Duration::from_secs(300))),
            ("2h", Cadence::Every(Duration::from_secs(7200))),
        ] {
            let c: Cadence = s.parse().unwrap();
            assert_eq!(c, want, "{s}");
            assert_eq!(c.to_string(), s, "written back as read");
        }
        for (s, want) in [
            ("0", "more than zero"),
            ("0m", "more than zero"),
            ("5x", "unknown unit \"x\""),
            ("m", "is not a number of steps or a duration"),
            ("", "is not a number"),
            ("-5", "is not a number"),
            ("99999999999999999999h", "is not a number"),
            ("9999999999999999999h", "is too long"),
        ] {
            let e = s.parse::<Cadence>().unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    /// 40 MNIST pictures (5 batches of 8 an epoch) and a tiny model on the CPU.
    fn setup() -> (Dataset, Box<dyn Fn() -> CpuTrainer>) {
        let data = Dataset::load(&bundled_mnist_dir(), Split::Train).unwrap().take(40);
        let make = || {
            let model = crate::arch::parse("c2k3 relu pool2 flat fc10", crate::model::Shape::image(1, 28, 28)).unwrap();
            let params = model.init_params(0);
            CpuTrainer::new(model, Optimizer::adam(1e-2), params).unwrap()
        };
        (data, Box::new(make))
    }

    fn length(max_steps: u64) -> RunLength {
        RunLength { epochs: 10, max_steps: Some(max_steps), log_every: 100 }
    }

    /// The events of a run, by name and step.
    fn events(
        trainer: &mut CpuTrainer,
        data: &Dataset,
        pos: Position,
        steps: u64,
        control: Control,
    ) -> (Vec<String>, Position) {
        let mut seen = Vec::new();
        let end = run_with(trainer, data, pos, length(steps), control, |_, e| {
            seen.push(match e {
                Event::Logged { global, .. } => format!("log {global}"),
                Event::Checkpoint(p) => format!("checkpoint {}", p.global_step),
                Event::EpochEnd(p) => format!("end {}", p.global_step),
                Event::Stopped(p) => format!("stop {}", p.global_step),
                Event::EpochStart { .. } | Event::Step { .. } => return Ok(()),
            });
            Ok(())
        })
        .unwrap();
        (seen, end)
    }

    #[test]
    fn checkpoints_come_at_the_cadence_logged_and_never_beside_an_epoch_end() {
        let (data, make) = setup();
        let control = Control { stop: &|| false, checkpoint_every: Some(Cadence::Steps(3)) };
        let (seen, _) = events(&mut make(), &data, start_position(0, 8, true), 12, control);
        let want = [
            "log 3",
            "checkpoint 3",
            "log 5",
            "end 5", // not at step 6: the epoch end saved at 5
            "log 8",
            "checkpoint 8",
            "log 10",
            "end 10",
            "log 12",
            "stop 12",
        ];
        assert_eq!(seen, want);
    }

    #[test]
    fn a_stop_comes_after_the_step_in_flight_and_resumes_exactly() {
        let (data, make) = setup();
        let start = start_position(0, 8, true);
        let (_, whole) = events(&mut make(), &data, start, 9, Control { stop: &|| false, checkpoint_every: None });
        let mut uninterrupted = make();
        run(&mut uninterrupted, &data, start, length(9), |_, _| Ok(())).unwrap();

        // The stop is asked before the epoch, then after each step: true on the 5th
        // asking (during step 4) stops after step 4, its loss logged.
        let asked = Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() >= 5
        };
        let mut first = make();
        let (seen, at) = events(&mut first, &data, start, 9, Control { stop: &stop, checkpoint_every: None });
        assert_eq!(seen, ["log 4", "stop 4"]);
        assert_eq!((at.epoch, at.batch_in_epoch, at.global_step), (0, 4, 4));
        let mut second = make();
        second.set_params(&first.params().unwrap()).unwrap();
        second.set_optimizer_state(&first.optimizer_state().unwrap()).unwrap();
        let (_, end) = events(&mut second, &data, at, 9, Control { stop: &|| false, checkpoint_every: None });
        assert_eq!(end, whole);
        assert_eq!(second.params().unwrap(), uninterrupted.params().unwrap(), "stopped and resumed differs");

        // Asked during an epoch's last step: the stop comes before its end, which the
        // resumed run then begins with.
        let asked = Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() >= 6
        };
        let (seen, at) = events(&mut make(), &data, start, 9, Control { stop: &stop, checkpoint_every: None });
        assert_eq!(seen, ["log 5", "stop 5"]);
        assert_eq!((at.epoch, at.batch_in_epoch), (0, 5));
        let (seen, _) = events(&mut make(), &data, at, 7, Control { stop: &|| false, checkpoint_every: None });
        assert_eq!(seen, ["end 5", "log 7", "stop 7"]);

        // Asked before the first step: nothing trained.
        let (seen, at) = events(&mut make(), &data, start, 9, Control { stop: &|| true, checkpoint_every: None });
        assert_eq!((seen, at), (vec!["stop 0".to_string()], start));
    }

    #[test]
    fn a_position_past_the_last_step_is_refused_not_wrapped() {
        let (data, make) = setup();
        // The last step a run may reach still trains on.
        let last = Position { global_step: MAX_STEP, ..start_position(0, 8, true) };
        let (seen, end) =
            events(&mut make(), &data, last, MAX_STEP + 2, Control { stop: &|| false, checkpoint_every: None });
        assert_eq!((seen.last().map(String::as_str), end.global_step), (Some("stop 9007199254740994"), MAX_STEP + 2));
        // u64::MAX wrapped to 0 on its next step.
        let past = Position { global_step: u64::MAX, ..start_position(0, 8, true) };
        let e = run(&mut make(), &data, past, RunLength { epochs: 10, max_steps: None, log_every: 100 }, |_, _| Ok(()));
        let e = format!("{:#}", e.unwrap_err());
        assert!(e.contains("step 18446744073709551615 is past the last step"), "{e}");
    }
}

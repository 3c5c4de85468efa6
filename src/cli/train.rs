//! `gpu-cnn train`: the training loop (`train::run_with`) with a progress display,
//! `metrics.jsonl`, a test evaluation and atomic checkpoints after each epoch and every
//! `--checkpoint-every`, exact resume, and a clear message when the loss diverges.
//!
//! Losing no work: the output directory is locked for the whole run; the first SIGINT,
//! SIGTERM or SIGHUP, a closed standard output or a failed metrics write stops the run
//! after the steps in flight, saves it and prints how to resume; a second signal ends the
//! process at once. What a crash can still lose is in docs/robustness.md.

use anyhow::{anyhow, Context, Result};
use clap::ValueEnum;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gpu_cnn::checkpoint::{Position, Stamp};
use gpu_cnn::data::{Dataset, Split};
use gpu_cnn::executor::Optimizer;
use gpu_cnn::files::{self, MidwayHook};
use gpu_cnn::metrics_log::{MetricsLog, MetricsWriter, Record};
use gpu_cnn::plot;
use gpu_cnn::schedule::Schedule;
use gpu_cnn::train::checkpoints::{Checkpoints, RunLock};
use gpu_cnn::train::{self, evaluate, Cadence, Control, Diverged, Event, RunLength};

mod out_dir;
mod resume;
mod start;
mod stop;

use super::progress::Progress;
use super::shell::{self, program};
use super::signals;
use super::{DeviceArgs, Exit, Gemm};
use out_dir::{check_out_is_free, out_dir};
use resume::{eval_command, resume_command};
use start::{nothing_to_train, requested_optimizer, resumed_metrics, Start};
use stop::{SignalNotice, Stop};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

const DEFAULT_EPOCHS: usize = 1;
const DEFAULT_BATCH: usize = 64;
const DEFAULT_LR: f32 = 1e-3;
const DEFAULT_MOMENTUM: f32 = 0.9;
const DEFAULT_LOG_EVERY: u64 = 50;
const DEFAULT_CHECKPOINT_EVERY: Cadence = Cadence::Every(Duration::from_secs(300));

// The settings a checkpoint fixes (--arch, --optimizer, --lr, --momentum, --batch-size,
// --no-shuffle, --seed) have no clap default, so that a flag the user gave can be told
// from one they did not: --resume refuses one that differs from the checkpoint.
#[derive(clap::Args)]
pub struct Args {
    /// Total epochs (a resumed run continues up to this many)
    #[arg(long, default_value_t = DEFAULT_EPOCHS)]
    epochs: usize,
    /// Stop after this many training steps in total (counting a resumed run's)
    #[arg(long)]
    steps: Option<u64>,
    /// Pictures per step [default: 64; with --resume, the checkpoint's]
    #[arg(long, value_parser = gpu_cnn::data::parse_batch_size)]
    batch_size: Option<usize>,
    /// Learning rate [default: 0.001; with --resume, the checkpoint's]
    #[arg(long)]
    lr: Option<f32>,
    /// [default: adam; with --resume, the checkpoint's]
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// SGD momentum [default: 0.9; with --resume, the checkpoint's]
    #[arg(long)]
    momentum: Option<f32>,
    /// Weight decay: L2 added to the gradient for SGD, decoupled (AdamW) for Adam
    #[arg(long, default_value_t = 0.0, conflicts_with = "resume")]
    weight_decay: f32,
    /// Learning-rate schedule over the run: constant, step[:EVERY[:GAMMA]] (default:
    /// every epoch, gamma 0.1), cosine (to 0 at the last step) or onecycle (--lr is the peak)
    #[arg(long, default_value = "constant", conflicts_with = "resume", value_parser = schedule_spec)]
    schedule: String,
    /// Steps of linear learning-rate warmup before the schedule
    #[arg(long, default_value_t = 0, conflicts_with = "resume")]
    warmup: u64,
    /// Seed of the initial weights and of the shuffles [default: 0; not with --resume]
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the dataset order instead of shuffling every epoch
    #[arg(long)]
    no_shuffle: bool,
    #[command(flatten)]
    device: DeviceArgs,
    /// A directory with the four MNIST-format IDX files (e.g. Fashion-MNIST); the bundled MNIST by default
    #[arg(long)]
    data: Option<PathBuf>,
    /// A model other than the tutorial CNN (see the README); with --resume or --init, the file's
    #[arg(long)]
    arch: Option<String>,
    /// Start from this checkpoint's weights (fresh optimizer, step 0)
    #[arg(long, conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Continue a run exactly: weights, optimizer state, epoch/step and shuffle position
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Where checkpoint.safetensors, model.safetensors, metrics.jsonl and curves.png go
    /// [default: runs/latest; with --resume, the checkpoint's directory]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Let a new run replace the run --out already holds (as it saves; until its first
    /// save the earlier run's files stay whole)
    #[arg(long)]
    overwrite: bool,
    /// Read loss and accuracy back from the GPU every this many steps
    #[arg(long, default_value_t = DEFAULT_LOG_EVERY, value_parser = clap::value_parser!(u64).range(1..))]
    log_every: u64,
    /// Also save a checkpoint between epoch ends this often: steps (500) or a duration
    /// (90s, 5m, 2h); a kill -9 loses at most this much work
    #[arg(long, default_value_t = DEFAULT_CHECKPOINT_EVERY)]
    checkpoint_every: Cadence,
}

/// A --schedule that parses, for any run length (the length is checked once known).
fn schedule_spec(spec: &str) -> std::result::Result<String, String> {
    Schedule::from_spec(spec, 0, 1, 1).map(|_| spec.to_string()).map_err(|e| e.to_string())
}

/// Test-only (`tests/crash.rs`): `GPU_CNN_TEST_PAUSE_WRITE=FILE:N[:SECONDS]` pauses the
/// Nth write of the file named FILE (e.g. `checkpoint.safetensors:2`) halfway through
/// its temporary, for SECONDS (default 600), after saying so on stderr, so a test can
/// kill the process inside the write.
fn pause_hook() -> Option<MidwayHook> {
    let spec = std::env::var("GPU_CNN_TEST_PAUSE_WRITE").ok()?;
    let mut parts = spec.split(':');
    let file = parts.next()?.to_string();
    let nth: u32 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let seconds: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(600);
    let seen = std::sync::atomic::AtomicU32::new(0);
    Some(Box::new(move |tmp: &Path| {
        let name = tmp.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let ours = name.starts_with(&format!(".{file}.tmp-"));
        if ours && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == nth {
            errln!("test hook: pausing halfway through {} for {seconds} s", tmp.display());
            std::thread::sleep(Duration::from_secs(seconds));
        }
    }))
}

/// What a run has saved: the pair in its directory, and its metrics, committed with each save.
struct Saved {
    checkpoints: Checkpoints,
    metrics: MetricsWriter,
    /// The step the pair holds, once `any`; the run's first step before.
    step: u64,
    any: bool,
}

impl Saved {
    fn save(&mut self, trainer: &mut dyn gpu_cnn::executor::Trainer, p: Position) -> Result<()> {
        self.checkpoints.save(trainer, p)?;
        (self.step, self.any) = (p.global_step, true);
        self.metrics.commit()
    }
}

/// `started` is the process start: each epoch's line says how long after it the
/// test evaluation finished (the time-to-accuracy figure, evaluation included).
pub fn run(a: Args, started: std::time::Instant) -> Result<()> {
    let (backend, gemm) = a.device.resolve()?;
    // Bad --lr/--momentum/--weight-decay before any work.
    let requested = if a.resume.is_none() { Some(requested_optimizer(&a)?) } else { None };
    let out = &out_dir(&a);

    let dir = super::data_dir(a.data.clone());
    let train = Arc::new(Dataset::load(&dir, Split::Train)?);
    let test = Dataset::load(&dir, Split::Test)?;

    // Model, weights, optimizer, position and run: fresh, from --init, or from --resume.
    let start = start::start(&a, &train, requested)?;
    // Both splits, before any work: a bad test split would otherwise fail after an epoch.
    train.check_against(&start.model)?;
    test.check_against(&start.model)?;
    if let Some(line) = nothing_to_train(&a, &start.pos, out) {
        outln!("{line}")?;
        return Ok(());
    }
    let Start { model, params, opt, opt_state, pos, stamp } = start;
    // Asked again under the lock; here, so that a refusal comes before the GPU starts,
    // unless a trainer is writing there now: that is the better reason to give.
    if let Err(e) = check_out_is_free(&a, out) {
        RunLock::acquire(out)?;
        return Err(e);
    }
    let batch = pos.batch_size;
    let mut trainer = super::trainer(backend, gemm, model.clone(), opt, &params, batch, &train)?;
    if let Some(state) = &opt_state {
        trainer.set_optimizer_state(state)?;
    }
    // The directory only now, so that a refused argument leaves nothing behind.
    std::fs::create_dir_all(out).with_context(|| format!("cannot create output directory {}", out.display()))?;
    let lock = RunLock::acquire(out)?;
    check_out_is_free(&a, out)?;
    let removed = lock.remove_stale_temporaries()?;
    if !removed.is_empty() {
        let names: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
        errln!("note: removed what a killed run left half-written: {}", names.join(", "));
    }
    let run_id = stamp.as_ref().map_or_else(Stamp::new_run, |s| s.run.clone());
    let checkpoints = Checkpoints::new(out, &model, opt, &run_id);
    if let Some(hook) = pause_hook() {
        files::set_midway_hook(hook);
    }
    let metrics_path = out.join("metrics.jsonl");
    let metrics = MetricsWriter::start(&metrics_path, &run_id, resumed_metrics(&a, &pos, stamp.as_ref())?);
    let schedule = match pos.schedule.is_constant() {
        true => String::new(),
        false => format!(", schedule {}", pos.schedule.to_metadata()),
    };
    outln!(
        "training {} parameters on {} ({} train / {} test images, batch {batch}, {:?}{schedule}) -> {} (checkpoint every {})",
        model.num_params,
        trainer.describe(),
        train.len(),
        test.len(),
        opt,
        out.display(),
        a.checkpoint_every
    )?;

    if batch > train.len() {
        errln!(
            "note: a batch of {batch} is more than the {} training images: each step takes all of them",
            train.len()
        );
    }

    let stop: RefCell<Option<Stop>> = RefCell::new(None);
    let fail = |e: anyhow::Error| {
        stop.borrow_mut().get_or_insert_with(|| Stop::from_error(e));
    };
    let mut progress = Progress::new(a.epochs);
    let signal = SignalNotice::new(progress.notices());
    let stopping = || {
        if let Some(s) = signal.caught() {
            stop.borrow_mut().get_or_insert(Stop::Signal(s));
        }
        stop.borrow().is_some()
    };
    let mut saved = Saved { checkpoints, metrics, step: pos.global_step, any: false };
    let length = RunLength { epochs: a.epochs, max_steps: a.steps, log_every: a.log_every };
    let control = Control { stop: &stopping, checkpoint_every: Some(a.checkpoint_every) };
    signals::catch().context("cannot catch SIGINT/SIGTERM/SIGHUP")?;
    let watcher = signal.clone();
    std::thread::spawn(move || {
        while watcher.caught().is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let result = train::run_with(trainer.as_mut(), &train, pos, length, control, |trainer, event| {
        match event {
            Event::EpochStart { epoch, batches, first } => progress.epoch_start(epoch, batches, first),
            Event::Step { .. } => progress.step(),
            Event::Logged { epoch, batch_in_epoch, batches, global, stats, samples_per_s, lr } => {
                if let Err(e) = progress.logged(epoch, batch_in_epoch, batches, global, &stats, samples_per_s) {
                    fail(e.into());
                }
                let (loss, accuracy, epoch) = (stats.mean_loss(), stats.accuracy(), epoch as u64 + 1);
                let record = Record::Train { step: global, epoch, loss, accuracy };
                if let Err(e) = saved.metrics.train_point(record, samples_per_s, lr as f64) {
                    fail(e);
                }
            }
            Event::Checkpoint(p) => saved.save(trainer, p)?,
            Event::Stopped(p) => {
                progress.finish();
                // Not when nothing was trained since the last save (or at all).
                if p.global_step != saved.step {
                    saved.save(trainer, p)?;
                }
            }
            Event::EpochEnd(p) => {
                progress.finish();
                let ev = evaluate(trainer.inference(), &test, batch)?;
                let line = outln!(
                    "epoch {}/{}: step {}, test loss {:.4}, test accuracy {:.2}% ({:.1} s since start)",
                    p.epoch,
                    a.epochs,
                    p.global_step,
                    ev.loss,
                    100.0 * ev.accuracy,
                    started.elapsed().as_secs_f64()
                );
                if let Err(e) = line {
                    fail(e.into());
                }
                let (step, epoch) = (p.global_step, p.epoch as u64);
                let record = Record::Test { step, epoch, loss: ev.loss, accuracy: ev.accuracy };
                if let Err(e) = saved.metrics.test_point(record) {
                    fail(e);
                }
                saved.save(trainer, p)?;
            }
        }
        Ok(())
    });
    // A signal that came during the last step stopped nothing, but it is still answered.
    let stop = stop.into_inner().or_else(|| signal.caught().map(Stop::Signal));
    let (ckpt, weights) = (&saved.checkpoints.checkpoint, &saved.checkpoints.weights);
    let end = match result {
        Err(e) => {
            progress.abandon();
            return Err(failure(e, &a, out, gemm, (opt, &pos), &saved, stop));
        }
        Ok(end) => end,
    };
    if let Some(s) = &stop {
        if !saved.any {
            errln!("{} before the first step: nothing written", s.describe());
            return Err(Exit(s.exit_code()).into());
        }
    }
    let plot_path = out.join("curves.png");
    let drawn = draw_curves(&metrics_path, &plot_path);
    if let Some(s) = stop {
        errln!("{}: stopped after step {} and saved {}", s.describe(), end.global_step, ckpt.display());
        errln!("resume with: {}", resume_command(&a, out, gemm, ckpt));
        if let Err(e) = drawn {
            errln!("error: {e:#}");
        }
        return Err(Exit(s.exit_code()).into());
    }
    drawn?;
    outln!(
        "step {}: wrote {}, {}, {} and {}",
        end.global_step,
        ckpt.display(),
        weights.display(),
        metrics_path.display(),
        plot_path.display()
    )?;
    if end.batch_in_epoch != 0 {
        // The test set is evaluated at epoch ends; a run cut by --steps gets the command.
        outln!(
            "the run ended inside epoch {}, before its test evaluation; for the test accuracy: {}",
            end.epoch + 1,
            eval_command(&a, gemm, weights)
        )?;
    }
    Ok(())
}

/// The error a run that failed ends with: what failed, what is left to resume from
/// and the command that does (after a diverged loss, what to lower instead). `(opt,
/// pos)`: the optimizer and position the run started from.
fn failure(
    e: anyhow::Error,
    a: &Args,
    out: &Path,
    gemm: Gemm,
    (opt, pos): (Optimizer, &Position),
    saved: &Saved,
    stop: Option<Stop>,
) -> anyhow::Error {
    let ckpt = &saved.checkpoints.checkpoint;
    // What is left to resume from: this run's last save, or where it started.
    let last = match (saved.any, &a.resume) {
        (true, _) => Some((ckpt.as_path(), saved.step)),
        (false, Some(r)) => Some((r.as_path(), pos.global_step)),
        (false, None) => None,
    };
    let kept = match last {
        Some((path, step)) => format!("The last good checkpoint is kept: {} (step {step}).", path.display()),
        None if ckpt.exists() => {
            format!("This run saved no checkpoint; {} is an earlier run's, left as it was.", ckpt.display())
        }
        None => "No checkpoint was written.".to_string(),
    };
    if let Some(d) = e.downcast_ref::<Diverged>() {
        let hint = match (&a.resume, last) {
            // --lr would be refused with --resume: its weights can start a new run.
            (Some(_), Some((path, _))) => format!(
                "the learning rate {} is the checkpoint's; to go on with a lower one, start from its weights: {} train --init {} --lr {:.1e} --out NEW_DIR",
                opt.lr(),
                shell::word(&program()),
                shell::word(&path.to_string_lossy()),
                opt.lr() / 10.0
            ),
            _ => stop::divergence_advice(opt, &pos.schedule, d.step),
        };
        return anyhow!("{d}; {hint}. {kept}");
    }
    if let Some(s) = stop {
        errln!("{}", s.describe());
    }
    match last {
        Some((path, _)) => anyhow!("{e:#}. {kept} Resume with: {}", resume_command(a, out, gemm, path)),
        None => anyhow!("{e:#}. {kept}"),
    }
}

/// curves.png from the whole of metrics.jsonl, so a resumed run's picture shows the run
/// from its first step.
fn draw_curves(metrics: &Path, picture: &Path) -> Result<()> {
    let log = MetricsLog::read(metrics)?;
    for w in &log.warnings {
        errln!("warning: {w}");
    }
    let (train, test) = log.curves();
    plot::training_curves(&train, &test, picture)
}

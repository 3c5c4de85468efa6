//! `gpu-cnn train`: the training loop (`train::run`) with a progress display,
//! `metrics.jsonl`, a test evaluation and atomic checkpoints after each epoch,
//! exact resume, and a clear message when the loss diverges. The output directory is
//! locked for the whole run; metrics.jsonl and the checkpoint pair are stamped with the
//! run, and a resumed run's metrics are cut back to its checkpoint's step.

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use std::path::{Path, PathBuf};

use gpu_cnn::checkpoint::{self, Position, Stamp};
use gpu_cnn::data::{Dataset, Split};
use gpu_cnn::executor::Optimizer;
use gpu_cnn::metrics_log::{kept_on_resume, MetricsLog, MetricsWriter, Record};
use gpu_cnn::plot;
use gpu_cnn::train::checkpoints::{has_run_files, Checkpoints, RunLock};
use gpu_cnn::train::{self, evaluate, start_position, Diverged, Event, RunLength};

use super::progress::Progress;
use super::{Backend, Gemm};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

#[derive(clap::Args)]
pub struct Args {
    /// Total epochs (a resumed run continues up to this many)
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Stop after this many training steps in total (counting a resumed run's)
    #[arg(long)]
    steps: Option<u64>,
    #[arg(long, default_value_t = 64, value_parser = gpu_cnn::data::parse_batch_size)]
    batch_size: usize,
    /// Learning rate
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    optimizer: OptimizerKind,
    /// SGD momentum
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Seed of the initial weights and of the shuffles
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep the dataset order instead of shuffling every epoch
    #[arg(long)]
    no_shuffle: bool,
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// A directory with the four MNIST-format IDX files (e.g. Fashion-MNIST); the bundled MNIST by default
    #[arg(long)]
    data: Option<PathBuf>,
    /// A model other than the tutorial CNN (see the README)
    #[arg(long)]
    arch: Option<String>,
    /// Start from this checkpoint's weights (fresh optimizer, step 0)
    #[arg(long, conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Continue a run exactly: weights, optimizer state, epoch/step and shuffle position
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Where checkpoint.safetensors, model.safetensors, metrics.jsonl and curves.png go
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
    /// Read loss and accuracy back from the GPU every this many steps
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    log_every: u64,
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

pub fn run(a: Args, gemm: Gemm) -> Result<()> {
    let requested = match a.optimizer {
        OptimizerKind::Adam => Optimizer::adam(a.lr),
        OptimizerKind::Sgd => Optimizer::sgd(a.lr, a.momentum),
    };
    checkpoint::check_optimizer(&requested).context("--lr/--momentum")?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create output directory {}", a.out.display()))?;
    let lock = RunLock::acquire(&a.out)?;
    let removed = lock.remove_stale_temporaries()?;
    if !removed.is_empty() {
        let names: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
        errln!("note: removed what a killed run left half-written: {}", names.join(", "));
    }

    let dir = super::data_dir(a.data.clone());
    let train = Dataset::load(&dir, Split::Train)?;
    let test = Dataset::load(&dir, Split::Test)?;

    // Model, weights, optimizer, position and run: fresh, from --init, or from --resume.
    let default_model = super::model_from(a.arch.as_deref())?;
    let (model, params, opt, opt_state, pos, stamp) = if let Some(path) = &a.resume {
        let c = checkpoint::load(path, &default_model)?;
        let (opt, state) = c.optimizer.ok_or_else(|| {
            anyhow!("{}: has no optimizer state to resume from (use --init to start from its weights)", path.display())
        })?;
        let pos = c.position.ok_or_else(|| anyhow!("{}: has no training position to resume from", path.display()))?;
        (c.model, c.params, opt, Some(state), pos, c.stamp)
    } else {
        let (model, params) = match &a.init {
            Some(path) => {
                let c = checkpoint::load(path, &default_model)?;
                (c.model, c.params)
            }
            None => (default_model.clone(), default_model.init_params(a.seed)),
        };
        (model, params, requested, None, start_position(a.seed, a.batch_size, !a.no_shuffle), None)
    };
    // Both splits, before any work: a bad test split would otherwise fail after an epoch.
    train.check_against(&model)?;
    test.check_against(&model)?;
    let out = &a.out;
    if pos.epoch >= a.epochs || a.steps.is_some_and(|s| pos.global_step >= s) {
        // A run that trains nothing leaves whatever the directory holds as it was.
        let limit = match a.steps {
            Some(s) if pos.global_step >= s => format!("--steps {s}"),
            _ => format!("--epochs {}", a.epochs),
        };
        let left = if has_run_files(out) { "left as it was" } else { "nothing written" };
        let at = format!("step {} (epoch {})", pos.global_step, pos.epoch);
        println!("nothing to train: the run is at {at}, already at {limit}; {}: {left}", out.display());
        return Ok(());
    }
    let batch = pos.batch_size;
    let mut trainer = super::trainer(a.backend, gemm, model.clone(), opt, &params, batch)?;
    if let Some(state) = &opt_state {
        trainer.set_optimizer_state(state)?;
    }
    let run_id = stamp.as_ref().map_or_else(Stamp::new_run, |s| s.run.clone());
    let checkpoints = Checkpoints::new(out, &model, opt, &run_id);
    let metrics_path = out.join("metrics.jsonl");
    // A resumed run's metrics go on from its own, cut back to its checkpoint's step.
    let kept = match &a.resume {
        Some(path) => {
            let from =
                path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("metrics.jsonl");
            match std::fs::read(&from) {
                Ok(bytes) => {
                    let step = pos.global_step;
                    let (kept, dropped) =
                        kept_on_resume(&String::from_utf8_lossy(&bytes), stamp.as_ref().map(|s| s.run.as_str()), step);
                    if dropped > 0 {
                        errln!("note: {}: {dropped} lines logged after the checkpoint's step {step}, or not by its run, are left out", from.display());
                    }
                    kept
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e).with_context(|| format!("{}: cannot read", from.display())),
            }
        }
        None => String::new(),
    };
    let metrics = MetricsWriter::start(&metrics_path, &run_id, kept);
    println!(
        "training {} parameters on {} ({} train / {} test images, batch {batch}, {:?}) -> {}",
        model.num_params,
        trainer.describe(),
        train.len(),
        test.len(),
        opt,
        out.display()
    );

    let mut saved = Saved { checkpoints, metrics, step: pos.global_step, any: false };
    let mut progress = Progress::new(a.epochs);
    let length = RunLength { epochs: a.epochs, max_steps: a.steps, log_every: a.log_every };
    let result = train::run(trainer.as_mut(), &train, pos, length, |trainer, event| {
        match event {
            Event::EpochStart { epoch, batches, first } => progress.epoch_start(epoch, batches, first),
            Event::Step { .. } => progress.step(),
            Event::Logged { epoch, batch_in_epoch, batches, global, stats, samples_per_s } => {
                progress.logged(epoch, batch_in_epoch, batches, global, &stats, samples_per_s);
                let (loss, accuracy, epoch) = (stats.mean_loss(), stats.accuracy(), epoch as u64 + 1);
                saved.metrics.train_point(
                    Record::Train { step: global, epoch, loss, accuracy },
                    samples_per_s,
                    opt.lr() as f64,
                )?;
            }
            Event::Stopped(p) => {
                progress.finish();
                saved.save(trainer, p)?;
            }
            Event::EpochEnd(p) => {
                progress.finish();
                let ev = evaluate(trainer.inference(), &test, batch)?;
                println!(
                    "epoch {}/{}: step {}, test loss {:.4}, test accuracy {:.2}%",
                    p.epoch,
                    a.epochs,
                    p.global_step,
                    ev.loss,
                    100.0 * ev.accuracy
                );
                let (step, epoch) = (p.global_step, p.epoch as u64);
                saved.metrics.test_point(Record::Test { step, epoch, loss: ev.loss, accuracy: ev.accuracy })?;
                saved.save(trainer, p)?;
            }
        }
        Ok(())
    });
    let (ckpt, weights) = (&saved.checkpoints.checkpoint, &saved.checkpoints.weights);
    let end = match result {
        Err(e) => {
            progress.abandon();
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
                bail!("{d}; try a lower --lr (e.g. {:e}). {kept}", opt.lr() / 10.0);
            }
            bail!("{e:#}. {kept}")
        }
        Ok(end) => end,
    };
    let plot_path = out.join("curves.png");
    draw_curves(&metrics_path, &plot_path)?;
    println!(
        "step {}: wrote {}, {}, {} and {}",
        end.global_step,
        ckpt.display(),
        weights.display(),
        metrics_path.display(),
        plot_path.display()
    );
    Ok(())
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

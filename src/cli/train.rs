//! `gpu-cnn train`: the training loop (`train::run`) with a progress display,
//! `metrics.jsonl`, a test evaluation and atomic checkpoints after each epoch,
//! exact resume, and a clear message when the loss diverges. The output directory is
//! locked for the whole run.

use anyhow::{anyhow, Context, Result};
use clap::ValueEnum;
use std::path::PathBuf;

use gpu_cnn::checkpoint;
use gpu_cnn::data::{Dataset, Split};
use gpu_cnn::executor::Optimizer;
use gpu_cnn::metrics_log::{MetricsWriter, Record};
use gpu_cnn::plot;
use gpu_cnn::train::checkpoints::{Checkpoints, RunLock};
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

    // Model, weights, optimizer and position: fresh, from --init, or from --resume.
    let default_model = super::model_from(a.arch.as_deref())?;
    let (model, params, opt, opt_state, pos) = if let Some(path) = &a.resume {
        let c = checkpoint::load(path, &default_model)?;
        let (opt, state) = c.optimizer.ok_or_else(|| {
            anyhow!("{}: has no optimizer state to resume from (use --init to start from its weights)", path.display())
        })?;
        let pos = c.position.ok_or_else(|| anyhow!("{}: has no training position to resume from", path.display()))?;
        (c.model, c.params, opt, Some(state), pos)
    } else {
        let (model, params) = match &a.init {
            Some(path) => {
                let c = checkpoint::load(path, &default_model)?;
                (c.model, c.params)
            }
            None => (default_model.clone(), default_model.init_params(a.seed)),
        };
        (model, params, requested, None, start_position(a.seed, a.batch_size, !a.no_shuffle))
    };
    // Both splits, before any work: a bad test split would otherwise fail after an epoch.
    train.check_against(&model)?;
    test.check_against(&model)?;
    let batch = pos.batch_size;
    let mut trainer = super::trainer(a.backend, gemm, model.clone(), opt, &params, batch)?;
    if let Some(state) = &opt_state {
        trainer.set_optimizer_state(state)?;
    }
    let out = &a.out;
    let checkpoints = Checkpoints::new(out, &model, opt);
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = MetricsWriter::open(&metrics_path, a.resume.is_some())?;
    println!(
        "training {} parameters on {} ({} train / {} test images, batch {batch}, {:?}) -> {}",
        model.num_params,
        trainer.describe(),
        train.len(),
        test.len(),
        opt,
        out.display()
    );

    let mut history: Vec<(u64, f64, f64)> = Vec::new(); // (step, train loss, train accuracy)
    let mut test_history: Vec<(u64, f64, f64)> = Vec::new();
    let mut progress = Progress::new(a.epochs);
    let length = RunLength { epochs: a.epochs, max_steps: a.steps, log_every: a.log_every };
    let result = train::run(trainer.as_mut(), &train, pos, length, |trainer, event| {
        match event {
            Event::EpochStart { epoch, batches, first } => progress.epoch_start(epoch, batches, first),
            Event::Step { .. } => progress.step(),
            Event::Logged { epoch, batch_in_epoch, batches, global, stats, samples_per_s } => {
                history.push((global, stats.mean_loss(), stats.accuracy()));
                progress.logged(epoch, batch_in_epoch, batches, global, &stats, samples_per_s);
                let (loss, accuracy, epoch) = (stats.mean_loss(), stats.accuracy(), epoch as u64 + 1);
                metrics.train_point(
                    Record::Train { step: global, epoch, loss, accuracy },
                    samples_per_s,
                    opt.lr() as f64,
                )?;
            }
            Event::Stopped(p) => {
                progress.finish();
                checkpoints.save(trainer, p)?;
            }
            Event::EpochEnd(p) => {
                progress.finish();
                let ev = evaluate(trainer.inference(), &test, batch)?;
                test_history.push((p.global_step, ev.loss, ev.accuracy));
                println!(
                    "epoch {}/{}: step {}, test loss {:.4}, test accuracy {:.2}%",
                    p.epoch,
                    a.epochs,
                    p.global_step,
                    ev.loss,
                    100.0 * ev.accuracy
                );
                let (step, epoch) = (p.global_step, p.epoch as u64);
                metrics.test_point(Record::Test { step, epoch, loss: ev.loss, accuracy: ev.accuracy })?;
                checkpoints.save(trainer, p)?;
            }
        }
        Ok(())
    });
    let end = match result {
        Err(e) => {
            progress.abandon();
            return Err(match e.downcast_ref::<Diverged>() {
                Some(d) => anyhow!(
                    "{d}; try a lower --lr (e.g. {:e}). {}",
                    opt.lr() / 10.0,
                    if checkpoints.checkpoint.exists() {
                        format!("The last good checkpoint is kept: {}", checkpoints.checkpoint.display())
                    } else {
                        "No checkpoint was written.".to_string()
                    }
                ),
                None => e,
            });
        }
        Ok(end) => end,
    };
    if !checkpoints.checkpoint.exists() {
        // Nothing to do (already at --steps/--epochs): still leave the weights.
        checkpoints.save(trainer.as_mut(), end)?;
    }
    let plot_path = out.join("curves.png");
    plot::training_curves(&history, &test_history, &plot_path)?;
    println!(
        "step {}: wrote {}, {}, {} and {}",
        end.global_step,
        checkpoints.checkpoint.display(),
        checkpoints.weights.display(),
        metrics_path.display(),
        plot_path.display()
    );
    Ok(())
}

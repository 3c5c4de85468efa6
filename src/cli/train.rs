//! `gpu-cnn train`: the training loop with progress, metrics, evaluation after each
//! epoch, atomic checkpoints, exact resume and NaN detection.

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use gpu_cnn::checkpoint::{self, Position};
use gpu_cnn::data::{Dataset, Split};
use gpu_cnn::executor::{Executor, Optimizer};
use gpu_cnn::plot;
use gpu_cnn::train::{self, evaluate, start_position, Event};

use super::Backend;

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
    /// A model other than the seed CNN (see the README)
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

/// One line of metrics.jsonl.
fn metric(fields: &[(&str, serde_json::Value)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    serde_json::Value::Object(map).to_string()
}

pub fn run(a: Args) -> Result<()> {
    let requested = match a.optimizer {
        OptimizerKind::Adam => Optimizer::adam(a.lr),
        OptimizerKind::Sgd => Optimizer::sgd(a.lr, a.momentum),
    };
    checkpoint::check_optimizer(&requested).context("--lr/--momentum")?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create output directory {}", a.out.display()))?;
    let probe = a.out.join(".write-test");
    std::fs::write(&probe, b"").with_context(|| format!("output directory {} is not writable", a.out.display()))?;
    std::fs::remove_file(&probe).ok();

    let dir = super::data_dir(a.data.clone());
    let train = Dataset::load(&dir, Split::Train)?;
    let test = Dataset::load(&dir, Split::Test)?;

    // Model, weights, optimizer and position: fresh, from --init, or from --resume.
    let seed_model = super::model_from(a.arch.as_deref())?;
    let (model, params, opt, opt_state, pos) = if let Some(path) = &a.resume {
        let c = checkpoint::load(path, &seed_model)?;
        let (opt, state) = c.optimizer.ok_or_else(|| {
            anyhow!("{}: has no optimizer state to resume from (use --init to start from its weights)", path.display())
        })?;
        let pos = c.position.ok_or_else(|| anyhow!("{}: has no training position to resume from", path.display()))?;
        (c.model, c.params, opt, Some(state), pos)
    } else {
        let (model, params) = match &a.init {
            Some(path) => {
                let c = checkpoint::load(path, &seed_model)?;
                (c.model, c.params)
            }
            None => (seed_model.clone(), seed_model.init_params(a.seed)),
        };
        (model, params, requested, None, start_position(a.seed, a.batch_size, !a.no_shuffle))
    };
    // Both splits, before any work: a bad test split would otherwise fail after an epoch.
    train.check_against(&model)?;
    test.check_against(&model)?;
    let batch = pos.batch_size;
    let mut exec = super::executor(a.backend, model.clone(), opt, &params, batch)?;
    if let Some(state) = &opt_state {
        exec.set_optimizer_state(state)?;
    }
    let out = &a.out;
    let (ckpt_path, model_path, metrics_path) =
        (out.join("checkpoint.safetensors"), out.join("model.safetensors"), out.join("metrics.jsonl"));
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(a.resume.is_some())
        .write(true)
        .truncate(a.resume.is_none())
        .open(&metrics_path)
        .with_context(|| format!("cannot write {}", metrics_path.display()))?;
    let fancy = std::io::stdout().is_terminal();
    println!(
        "training {} parameters on {} ({} train / {} test images, batch {batch}, {:?}) -> {}",
        model.num_params,
        exec.describe(),
        train.len(),
        test.len(),
        opt,
        out.display()
    );

    let mut history: Vec<(u64, f64, f64)> = Vec::new(); // (step, train loss, train accuracy)
    let mut test_history: Vec<(u64, f64, f64)> = Vec::new();
    let save = |exec: &mut dyn Executor, p: Position| -> Result<()> {
        let params = exec.params()?;
        let state = exec.optimizer_state()?;
        checkpoint::save(&ckpt_path, &model, &params, Some((&opt, &state)), Some(&p))?;
        checkpoint::save(&model_path, &model, &params, None, None)
    };
    let mut bar = ProgressBar::hidden();
    let (mut t_log, mut samples_since) = (Instant::now(), 0usize);
    let end = train::run(exec.as_mut(), &train, pos, a.epochs, a.steps, |exec, event| {
        match event {
            Event::EpochStart { epoch, batches, first } => {
                if fancy {
                    bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stdout());
                }
                bar.set_style(
                    ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                        .unwrap()
                        .progress_chars("=> "),
                );
                bar.set_prefix(format!("{}/{}", epoch + 1, a.epochs));
                bar.set_position(first as u64);
                (t_log, samples_since) = (Instant::now(), 0);
            }
            Event::Step { epoch, batch_in_epoch, batches, global, samples, last } => {
                samples_since += samples;
                bar.inc(1);
                if global % a.log_every != 0 && !last {
                    return Ok(());
                }
                let s = exec.take_stats()?;
                if !s.mean_loss().is_finite() {
                    bar.abandon();
                    bail!(
                        "the loss became {} at step {global}: training diverged; try a lower --lr (e.g. {:e}). {}",
                        s.mean_loss(),
                        opt.lr() / 10.0,
                        if ckpt_path.exists() {
                            format!("The last good checkpoint is kept: {}", ckpt_path.display())
                        } else {
                            "No checkpoint was written.".to_string()
                        }
                    );
                }
                let rate = samples_since as f64 / t_log.elapsed().as_secs_f64();
                (t_log, samples_since) = (Instant::now(), 0);
                history.push((global, s.mean_loss(), s.accuracy()));
                let msg = format!("loss {:.4} acc {:.2}% {:.0} samples/s", s.mean_loss(), 100.0 * s.accuracy(), rate);
                if fancy {
                    bar.set_message(msg);
                } else {
                    println!("epoch {} step {global} ({}/{batches}) {msg}", epoch + 1, batch_in_epoch + 1);
                }
                writeln!(
                    metrics,
                    "{}",
                    metric(&[
                        ("step", global.into()),
                        ("epoch", (epoch + 1).into()),
                        ("loss", s.mean_loss().into()),
                        ("accuracy", s.accuracy().into()),
                        ("samples_per_s", rate.into()),
                        ("lr", (opt.lr() as f64).into()),
                    ])
                )?;
            }
            Event::Stopped(p) => {
                bar.finish_and_clear();
                save(exec, p)?;
            }
            Event::EpochEnd(p) => {
                bar.finish_and_clear();
                let ev = evaluate(exec, &test, batch)?;
                test_history.push((p.global_step, ev.loss, ev.accuracy));
                println!(
                    "epoch {}/{}: step {}, test loss {:.4}, test accuracy {:.2}%",
                    p.epoch,
                    a.epochs,
                    p.global_step,
                    ev.loss,
                    100.0 * ev.accuracy
                );
                writeln!(
                    metrics,
                    "{}",
                    metric(&[
                        ("step", p.global_step.into()),
                        ("epoch", p.epoch.into()),
                        ("test_loss", ev.loss.into()),
                        ("test_accuracy", ev.accuracy.into())
                    ])
                )?;
                save(exec, p)?;
            }
        }
        Ok(())
    })?;
    if !ckpt_path.exists() {
        // Nothing to do (already at --steps/--epochs): still leave the weights.
        save(exec.as_mut(), end)?;
    }
    let global = end.global_step;
    let plot_path = out.join("curves.png");
    plot::training_curves(&history, &test_history, &plot_path)?;
    println!(
        "step {global}: wrote {}, {}, {} and {}",
        ckpt_path.display(),
        model_path.display(),
        metrics_path.display(),
        plot_path.display()
    );
    Ok(())
}

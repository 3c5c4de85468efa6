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
use gpu_cnn::rng::Rng;
use gpu_cnn::train::{epoch_order, evaluate, shuffle_rng};

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
    #[arg(long, default_value_t = 64)]
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
    #[arg(long, default_value_t = 50)]
    log_every: u64,
}

/// One line of metrics.jsonl.
fn metric(fields: &[(&str, serde_json::Value)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    serde_json::Value::Object(map).to_string()
}

pub fn run(a: Args) -> Result<()> {
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr must be a positive number");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create output directory {}", a.out.display()))?;
    let probe = a.out.join(".write-test");
    std::fs::write(&probe, b"").with_context(|| format!("output directory {} is not writable", a.out.display()))?;
    std::fs::remove_file(&probe).ok();

    let dir = super::data_dir(a.data.clone());
    let train = Dataset::load(&dir, Split::Train)?;
    let test = Dataset::load(&dir, Split::Test)?;
    if (train.rows, train.cols) != (28, 28) {
        bail!("{}: images are {}x{}; gpu-cnn's models take 28x28", dir.display(), train.rows, train.cols);
    }

    // Model, weights, optimizer and position: fresh, from --init, or from --resume.
    let seed_model = super::model_from(a.arch.as_deref())?;
    let requested = match a.optimizer {
        OptimizerKind::Adam => Optimizer::adam(a.lr),
        OptimizerKind::Sgd => Optimizer::sgd(a.lr, a.momentum),
    };
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
        let pos = Position {
            epoch: 0,
            batch_in_epoch: 0,
            global_step: 0,
            epoch_rng: shuffle_rng(a.seed).state(),
            batch_size: a.batch_size,
            shuffle: !a.no_shuffle,
        };
        (model, params, requested, None, pos)
    };
    let classes = train.labels.iter().copied().max().unwrap_or(0) as usize + 1;
    if model.classes() < classes {
        bail!("the model has {} outputs but the dataset has labels up to {}", model.classes(), classes - 1);
    }
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

    let mut rng = Rng::from_state(pos.epoch_rng);
    let (mut epoch, mut skip, mut global) = (pos.epoch, pos.batch_in_epoch, pos.global_step);
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut history: Vec<(u64, f64, f64)> = Vec::new(); // (step, train loss, train accuracy)
    let mut test_history: Vec<(u64, f64, f64)> = Vec::new();
    let save = |exec: &mut dyn Executor, p: Position| -> Result<()> {
        let params = exec.params()?;
        let state = exec.optimizer_state()?;
        checkpoint::save(&ckpt_path, &model, &params, Some((&opt, &state)), Some(&p))?;
        checkpoint::save(&model_path, &model, &params, None, None)
    };
    let reached = |g: u64| a.steps.is_some_and(|s| g >= s);
    'epochs: while epoch < a.epochs && !reached(global) {
        let epoch_rng = rng.state();
        let order = epoch_order(train.len(), &mut rng, pos.shuffle);
        let batches: Vec<&[usize]> = order.chunks(batch).collect();
        let bar = if fancy {
            ProgressBar::with_draw_target(Some(batches.len() as u64), ProgressDrawTarget::stdout())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, a.epochs));
        bar.set_position(skip as u64);
        let mut t_log = Instant::now();
        let mut samples_since = 0usize;
        for (bi, idx) in batches.iter().enumerate().skip(skip) {
            if reached(global) {
                bar.finish_and_clear();
                save(
                    exec.as_mut(),
                    Position {
                        epoch,
                        batch_in_epoch: bi,
                        global_step: global,
                        epoch_rng,
                        batch_size: batch,
                        shuffle: pos.shuffle,
                    },
                )?;
                break 'epochs;
            }
            train.batch(idx, &mut images, &mut labels);
            exec.train_step(&images, &labels)?;
            global += 1;
            samples_since += idx.len();
            bar.inc(1);
            if global % a.log_every == 0 || bi + 1 == batches.len() || reached(global) {
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
                    println!("epoch {} step {global} ({}/{}) {msg}", epoch + 1, bi + 1, batches.len());
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
        }
        bar.finish_and_clear();
        skip = 0;
        epoch += 1;
        let ev = evaluate(exec.as_mut(), &test, batch)?;
        test_history.push((global, ev.loss, ev.accuracy));
        println!(
            "epoch {epoch}/{}: step {global}, test loss {:.4}, test accuracy {:.2}%",
            a.epochs,
            ev.loss,
            100.0 * ev.accuracy
        );
        writeln!(
            metrics,
            "{}",
            metric(&[
                ("step", global.into()),
                ("epoch", epoch.into()),
                ("test_loss", ev.loss.into()),
                ("test_accuracy", ev.accuracy.into())
            ])
        )?;
        save(
            exec.as_mut(),
            Position {
                epoch,
                batch_in_epoch: 0,
                global_step: global,
                epoch_rng: rng.state(),
                batch_size: batch,
                shuffle: pos.shuffle,
            },
        )?;
    }
    if !ckpt_path.exists() {
        // Nothing to do (already at --steps/--epochs): still leave the weights.
        save(
            exec.as_mut(),
            Position {
                epoch,
                batch_in_epoch: skip,
                global_step: global,
                epoch_rng: rng.state(),
                batch_size: batch,
                shuffle: pos.shuffle,
            },
        )?;
    }
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

//! Argument parsing and what the subcommands share: choosing a backend, the
//! model, the dataset and the default weights.

#[macro_use]
pub mod output;
mod bench;
mod devices;
#[cfg(test)]
mod doc_examples;
mod eval;
mod explain;
mod infer;
mod pictures;
mod plot;
mod progress;
mod serve;
mod shell;
mod signals;
mod summary;
mod train;

use anyhow::{bail, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gpu_cnn::arch;
use gpu_cnn::checkpoint::{self, Checkpoint};
use gpu_cnn::cpu::{CpuInference, CpuTrainer};
use gpu_cnn::data::Dataset;
use gpu_cnn::executor::{Explain, Inference, Optimizer, Trainer};
use gpu_cnn::gpu::warmup::{self, Asked};
use gpu_cnn::gpu::{BackendChoice, GemmEngine, Gpu, Precision};
use gpu_cnn::model::{Model, Shape};

#[derive(Parser)]
#[command(
    name = "gpu-cnn",
    version,
    about = "Train and run a CNN for 28x28 digits through hand-written WGSL compute shaders on wgpu"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the commands that run the model run it: the adapter and the GEMM engine.
#[derive(clap::Args)]
pub struct DeviceArgs {
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    #[command(flatten)]
    engine: EngineArgs,
}

impl DeviceArgs {
    /// The backend, and the engine asked for (None: the best f32 engine for the adapter).
    pub fn resolve(&self) -> Result<(Backend, Gemm)> {
        Ok((self.backend, self.engine.engine()?))
    }
}

/// The GEMM engine and precision (`devices` takes them alone, to say what it would run).
#[derive(clap::Args)]
pub struct EngineArgs {
    /// GEMM engine of the convolutions, Linear layers and the reference SGEMM:
    /// auto (the best f32 engine for the adapter), tiled, subgroup, or the mixed-precision
    /// coop (tensor cores) and coop-emulated (its arithmetic without them, for checking)
    #[arg(long, env = "GPU_CNN_GEMM", default_value = "auto", value_parser = parse_gemm)]
    gemm: Gemm,
    /// What the convolutions compute in: f32, or mixed (f16 operands and f32 sums on
    /// tensor cores, the coop engine). Default: f32, or mixed when --gemm names a
    /// mixed-precision engine
    #[arg(long, env = "GPU_CNN_PRECISION", value_parser = parse_precision)]
    precision: Option<Precision>,
}

impl EngineArgs {
    /// The engine asked for (None: the best f32 engine for the adapter).
    pub fn engine(&self) -> Result<Gemm> {
        engine_for(self.gemm, self.precision)
    }
}

impl Cli {
    /// This process's arguments, where any value may be a negative number: `--epochs -1`
    /// then reaches the option's own parser, whose message names the option, not clap's
    /// "unexpected argument '-1'" (whose tip, `-- -1`, would make it a file name). A value
    /// that starts with a minus but is no number (`-90s`, `-1,2`) still gets clap's message.
    pub fn from_env() -> Cli {
        let matches = Cli::command_line().get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The command line's grammar, as `from_env` parses it.
    fn command_line() -> clap::Command {
        fn negatives(c: clap::Command) -> clap::Command {
            c.mut_args(|a| if a.get_action().takes_values() { a.allow_negative_numbers(true) } else { a })
                .mut_subcommands(negatives)
        }
        negatives(Cli::command())
    }
}

/// `--gemm`: None for auto.
pub type Gemm = Option<GemmEngine>;

fn parse_gemm(s: &str) -> Result<Gemm> {
    match s {
        "auto" | "" => Ok(None),
        // The value may come from GPU_CNN_GEMM, which clap's message does not name.
        _ => GemmEngine::parse(s).map(Some).map_err(|e| anyhow::anyhow!("{e}, or auto (from --gemm or GPU_CNN_GEMM)")),
    }
}

fn parse_precision(s: &str) -> Result<Precision> {
    match s {
        "f32" => Ok(Precision::F32),
        "mixed" => Ok(Precision::Mixed),
        _ => bail!("unknown precision '{s}': expected f32 or mixed"),
    }
}

/// The engine `--gemm` and `--precision` ask for together (None: the best f32
/// engine for the adapter), or why they contradict each other.
pub fn engine_for(gemm: Gemm, precision: Option<Precision>) -> Result<Gemm> {
    match (gemm, precision) {
        (None, Some(Precision::Mixed)) => Ok(Some(GemmEngine::Coop)),
        (Some(e), Some(p)) if e.precision() != p => bail!(
            "--gemm {e} computes in {} precision, not {}: drop one of --gemm and --precision",
            e.precision().name(),
            p.name()
        ),
        (g, _) => Ok(g),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on an MNIST-format dataset (the bundled MNIST by default)
    Train(train::Args),
    /// Read digits from image files or directories
    Infer(infer::Args),
    /// A picture sheet of what happens inside the network for each picture
    Explain(explain::Args),
    /// Accuracy, loss, per-class accuracy and confusion matrix on a test set
    Eval(eval::Args),
    /// The model's layers, output shapes, parameters and FLOPs
    Summary(summary::Args),
    /// The GPU adapters wgpu finds, with the limits that matter for compute
    Devices {
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Training and inference throughput, first-step latency and a per-op GPU profile
    Bench(bench::Args),
    /// Compare runs: loss and accuracy of several run directories on shared axes
    Plot(plot::Args),
    /// A web page to draw a digit and watch the network think, and its JSON API
    Serve(serve::Args),
}

/// An error whose message has already been printed: `main` exits with this code.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

pub fn run(cli: Cli, started: std::time::Instant) -> Result<()> {
    if let Ok(v) = std::env::var("GPU_CNN_CONV") {
        bail!("GPU_CNN_CONV={v}: the variable is now GPU_CNN_GEMM (or the --gemm option), with the same values");
    }
    match cli.command {
        Command::Bench(a) => bench::run(a, started),
        Command::Train(a) => train::run(a, started),
        Command::Infer(a) => infer::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Summary(a) => summary::run(a),
        Command::Devices { engine } => devices::run(engine.engine()?),
        Command::Plot(a) => plot::run(a),
        Command::Serve(a) => serve::run(a),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
    /// The plain-Rust CPU reference (slow, but needs no GPU)
    Cpu,
}

impl Backend {
    pub fn gpu_choice(self) -> Option<BackendChoice> {
        Some(match self {
            Backend::Auto => BackendChoice::Auto,
            Backend::Vulkan => BackendChoice::Vulkan,
            Backend::Metal => BackendChoice::Metal,
            Backend::Dx12 => BackendChoice::Dx12,
            Backend::Gl => BackendChoice::Gl,
            Backend::Cpu => return None,
        })
    }
}

/// A training executor on `backend` for batches up to `max_batch` from `data`. When
/// `auto` found only a software driver, it says so first (a newcomer without a GPU
/// should know why training is slow, and what makes it faster).
pub fn trainer(
    backend: Backend,
    gemm: Gemm,
    model: Model,
    opt: Optimizer,
    params: &[f32],
    max_batch: usize,
    data: &Arc<Dataset>,
) -> Result<Box<dyn Trainer>> {
    Ok(match backend.gpu_choice() {
        None => Box::new(CpuTrainer::new(model, opt, cpu_params(params, gemm)?)?),
        Some(choice) => {
            let gpu = Arc::new(Gpu::new(choice, gemm)?);
            if backend == Backend::Auto {
                if let Some(note) = gpu.software_note() {
                    outln!("{note}")?;
                }
            }
            Box::new(warmup::trainer(&gpu, &model, opt, params, max_batch, Some(data.clone()))?.0)
        }
    })
}

/// The device of `backend`, or None for the CPU reference.
fn device(backend: Backend, gemm: Gemm) -> Result<Option<Arc<Gpu>>> {
    match backend.gpu_choice() {
        Some(choice) => Gpu::new(choice, gemm).map(|g| Some(Arc::new(g))),
        None => cpu_params(&[], gemm).map(|_| None),
    }
}

/// `params` for the CPU reference, which computes in f32 alone: asking it for mixed
/// precision is an error, not a silent f32 run.
pub(crate) fn cpu_params(params: &[f32], gemm: Gemm) -> Result<Vec<f32>> {
    if gemm.is_some_and(|e| e.precision() == Precision::Mixed) {
        bail!("--backend cpu computes in f32 only; mixed precision needs a GPU with tensor cores");
    }
    Ok(params.to_vec())
}

/// An inference executor on `backend` for batches up to `max_batch`, which will be
/// `asked` for predictions or evaluations. Here and below, on lavapipe the kernels
/// are compiled on two cores before it is returned (`gpu::warmup`), so the first
/// answer compiles nothing and a server is ready when it says so.
pub fn inference(
    backend: Backend,
    gemm: Gemm,
    model: Model,
    params: &[f32],
    max_batch: usize,
    asked: Asked,
) -> Result<Box<dyn Inference>> {
    Ok(match device(backend, gemm)? {
        None => Box::new(CpuInference::new(model, params.to_vec())?),
        Some(gpu) => Box::new(warmup::inference(&gpu, &model, params, max_batch, asked)?),
    })
}

/// An explainer on `backend` (one picture at a time, forward and back to the input).
pub fn explainer(backend: Backend, gemm: Gemm, model: Model, params: &[f32]) -> Result<Box<dyn Explain>> {
    Ok(match device(backend, gemm)? {
        None => Box::new(CpuInference::new(model, params.to_vec())?),
        Some(gpu) => Box::new(warmup::explainer(&gpu, &model, params)?),
    })
}

/// An inference executor and an explainer sharing one device of `backend`, for
/// `serve`'s worker: one device holds the weights once and compiles each shader once.
pub fn inference_and_explainer(
    backend: Backend,
    gemm: Gemm,
    model: Model,
    params: &[f32],
    max_batch: usize,
) -> Result<(Box<dyn Inference>, Box<dyn Explain>)> {
    Ok(match device(backend, gemm)? {
        None => (
            Box::new(CpuInference::new(model.clone(), params.to_vec())?),
            Box::new(CpuInference::new(model, params.to_vec())?),
        ),
        Some(gpu) => {
            let (net, explainer) = warmup::inference_and_explainer(&gpu, &model, params, max_batch)?;
            (Box::new(net), Box::new(explainer))
        }
    })
}

/// The trained model a command runs: `--weights` and `--arch`, as `infer`, `explain`
/// and `eval` take them.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// Weights to use (a gpu-cnn or PyTorch safetensors checkpoint); the bundled ones by default
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Model spec, for a weights file without gpu-cnn metadata
    #[arg(long)]
    pub arch: Option<String>,
}

impl ModelArgs {
    /// The weights file (the bundled one by default) and its checkpoint.
    pub fn load(&self) -> Result<(PathBuf, Checkpoint)> {
        let weights = weights_or_default(self.weights.clone())?;
        let asked = model_from(self.arch.as_deref())?;
        let ck = checkpoint::load(&weights, &asked)?;
        check_arch_agrees(&weights, self.arch.is_some(), &asked, &ck.model)?;
        Ok((weights, ck))
    }

    /// As `load`, for commands that read pictures: the model must take the 1x28x28
    /// input that picture preprocessing makes.
    pub fn load_for_pictures(&self) -> Result<(PathBuf, Checkpoint)> {
        let (weights, ck) = self.load()?;
        if ck.model.input != MNIST_INPUT {
            bail!(
                "{}: the model takes {} inputs, but pictures are prepared as 28x28 grayscale (1x28x28)",
                weights.display(),
                ck.model.input
            );
        }
        Ok((weights, ck))
    }

    /// The weights as a user should read their name.
    pub fn shown(&self) -> String {
        match &self.weights {
            Some(w) => w.display().to_string(),
            None => "the bundled ones (assets/weights/mnist-cnn.safetensors)".into(),
        }
    }
}

pub const MNIST_INPUT: Shape = Shape { c: 1, h: 28, w: 28, flat: false };

/// A file that names its model wins over --arch only where the two agree: a different
/// --arch is refused rather than silently ignored.
pub fn check_arch_agrees(path: &Path, given: bool, asked: &Model, held: &Model) -> Result<()> {
    if given && asked != held {
        bail!(
            "{}: holds the model '{}', not --arch's; leave --arch out (the file says its model)",
            path.display(),
            arch::spec_of(held)
        );
    }
    Ok(())
}

/// The tutorial CNN, or the model `--arch` describes.
pub fn model_from(arch_spec: Option<&str>) -> Result<Model> {
    match arch_spec {
        None => Ok(Model::tutorial()),
        Some(s) => arch::parse(s, MNIST_INPUT),
    }
}

/// Weights trained by gpu-cnn itself and shipped with the repository.
pub fn default_weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets").join("weights").join("mnist-cnn.safetensors")
}

pub fn weights_or_default(weights: Option<PathBuf>) -> Result<PathBuf> {
    match weights {
        Some(w) => Ok(w),
        None => {
            let d = default_weights();
            if !d.is_file() {
                bail!(
                    "no --weights given and the default weights {} are missing; train some with `gpu-cnn train`",
                    d.display()
                );
            }
            Ok(d)
        }
    }
}

pub fn data_dir(data: Option<PathBuf>) -> PathBuf {
    data.unwrap_or_else(gpu_cnn::data::bundled_mnist_dir)
}

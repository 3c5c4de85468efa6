//! `gpu-cnn bench`: end-to-end figures and a per-op profile of a training step.

use anyhow::Result;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

use gpu_cnn::bench::{time_dispatches, timestamp_dispatches, OpTiming};
use gpu_cnn::cpu::{CpuInference, CpuTrainer};
use gpu_cnn::data::{bundled_mnist_dir, Dataset, Split};
use gpu_cnn::executor::{Inference, Optimizer, Trainer};
use gpu_cnn::gpu::{warmup, Gpu, GpuInference, GpuTrainer};
use gpu_cnn::model::Model;

use super::{shell, DeviceArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    device: DeviceArgs,
    /// Training batch size
    #[arg(long, default_value_t = 64, value_parser = gpu_cnn::data::parse_batch_size)]
    batch_size: usize,
    /// Training steps to time (after one warm-up step)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// Inference batch sizes to time
    #[arg(long, value_delimiter = ',', default_value = "1,64,1000", value_parser = gpu_cnn::data::parse_batch_size)]
    infer_batches: Vec<usize>,
    /// Machine-readable output
    #[arg(long)]
    json: bool,
}

/// Seconds per call of `f`, over enough calls to take ~`budget` seconds (at least 2).
fn per_call(budget: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    let once = t.elapsed().as_secs_f64();
    let reps = ((budget / once.max(1e-6)) as usize).clamp(2, 200);
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

pub fn run(a: Args, started: Instant) -> Result<()> {
    let (backend, gemm) = a.device.resolve()?;
    let model = Model::tutorial();
    let params = model.init_params(0);
    let opt = Optimizer::adam(1e-3);
    let train = Arc::new(Dataset::load(&bundled_mnist_dir(), Split::Train)?);
    let b = a.batch_size;
    let (gpu, mut exec, shares): (Option<Arc<Gpu>>, Box<dyn Trainer>, _) = match backend.gpu_choice() {
        None => (None, Box::new(CpuTrainer::new(model.clone(), opt, super::cpu_params(&params, gemm)?)?), None),
        Some(choice) => {
            let gpu = Arc::new(Gpu::new(choice, gemm)?);
            let (trainer, shares) = warmup::trainer(&gpu, &model, opt, &params, b, Some(train.clone()))?;
            (Some(gpu), Box::new(trainer), shares)
        }
    };
    // As `train` runs its steps: from the training set, kept in GPU memory.
    let batch = train.first_indices(b);
    exec.train_batch(&train, &batch)?;
    exec.take_stats()?;
    let first_step = started.elapsed().as_secs_f64();

    let t = Instant::now();
    for _ in 0..a.steps {
        exec.train_batch(&train, &batch)?;
    }
    exec.take_stats()?;
    let step_s = t.elapsed().as_secs_f64() / a.steps as f64;
    let train_rate = b as f64 / step_s;
    let train_gflops = 3.0 * model.flops_per_sample() as f64 * train_rate / 1e9;

    let mut inference = Vec::new();
    for &n in &a.infer_batches {
        let mut ex: Box<dyn Inference> = match &gpu {
            None => Box::new(CpuInference::new(model.clone(), params.clone())?),
            Some(g) => Box::new(GpuInference::new(g.clone(), model.clone(), &params, n)?),
        };
        let (x, _) = train.first_batch(n);
        let s = per_call(2.0, || ex.predict(&x).map(|_| ()))?;
        inference.push((n, s, n as f64 / s));
    }

    // Per-op profile and the reference matmul (GPU only).
    let mut ops: Vec<OpTiming> = Vec::new();
    let mut timing = "none";
    let mut sgemm = None;
    let mut profiled = b;
    if let Some(g) = &gpu {
        let mut ex = GpuTrainer::new(g.clone(), model.clone(), opt, &params, b)?;
        ex.train_batch(&train, &batch)?;
        // A batch over the binding limit runs as micro-batches: profile one of them.
        profiled = b.min(ex.micro_batch());
        let ds = ex.train_dispatches(profiled)?;
        // A CPU driver runs one dispatch at a time, so wall time measures it well; and
        // lavapipe's timestamps stop following the work once a dispatch reads a texture
        // (the operands' copies on AMD CPUs, src/gpu/ops/texture_copy.rs): most ops
        // then measured ~0.05 ms.
        let stamped = g.info.device_type != wgpu::DeviceType::Cpu;
        let stamps = if stamped { timestamp_dispatches(g, &ds, 3)? } else { None };
        (ops, timing) = match stamps {
            Some(t) => (t, "GPU timestamps"),
            None => (time_dispatches(g, &ds, 3)?, "wall time per dispatch"),
        };
        // A plain 512x512x512 matmul on the conv engine's technique (shaders/sgemm*.wgsl).
        let (x, w, y) = (
            g.upload("a", &vec![0.5f32; 512 * 512]),
            g.upload("b", &vec![0.25f32; 512 * 512]),
            g.storage("c", 512 * 512 * 4),
        );
        let mm = g.kernels.sgemm.matmul([512; 3], &x, &w, &y)?;
        let stamps = if stamped { timestamp_dispatches(g, &[&mm], 3)? } else { None };
        let t = match stamps {
            Some(t) => t,
            None => time_dispatches(g, &[&mm], 3)?,
        };
        sgemm = Some(t[0].gflops());
    }
    let step_ops: f64 = ops.iter().map(|o| o.seconds).sum();
    // A compute-bound op's rate as a share of the reference SGEMM's.
    let of_sgemm = |o: &OpTiming| sgemm.filter(|_| o.flops > 0).map(|s| o.gflops() / s);

    if a.json {
        let j = json!({
            "command": shell::this_command(),
            "backend": exec.describe(),
            "precision": gpu.as_ref().map_or("f32", |g| g.kernels.engine.precision().name()),
            "batch_size": b,
            "profiled_batch": profiled,
            "first_step_s": first_step,
            "first_step_compiled_by": shares.map(|s| json!({"this_device": s.here, "helper": s.helper})),
            "train_samples_per_s": train_rate,
            "train_gflops": train_gflops,
            "inference": inference.iter().map(|&(n, s, r)| json!({"batch": n, "seconds": s, "images_per_s": r})).collect::<Vec<_>>(),
            "reference_sgemm_gflops": sgemm,
            "op_timing": timing,
            "ops": ops.iter().map(|o| json!({"op": o.name, "layer": o.layer, "workgroups": o.workgroups, "ms": o.seconds * 1e3, "flops": o.flops, "bytes": o.bytes, "gflops": o.gflops(), "gbytes_per_s": o.gbytes_per_s(), "share": o.seconds / step_ops, "of_sgemm": of_sgemm(o)})).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&j)?)?;
        return Ok(());
    }
    // First, so that figures pasted anywhere say how they were made.
    outln!("command            {}", shell::this_command())?;
    outln!("backend            {}", exec.describe())?;
    outln!("first step         {first_step:.2} s from process start to the end of the first training step")?;
    if let Some(s) = shares {
        outln!(
            "                   (its pipelines compiled on two cores first: {} + {} on a helper)",
            s.here,
            s.helper
        )?;
    }
    outln!(
        "training           {train_rate:.1} samples/s at batch {b} ({train_gflops:.2} GFLOP/s, {:.1} ms/step)",
        step_s * 1e3
    )?;
    for (n, s, r) in &inference {
        outln!("inference          {r:.1} images/s at batch {n} ({:.2} ms/batch)", s * 1e3)?;
    }
    if let Some(s) = sgemm {
        let module = gpu.as_ref().map_or("", |g| g.kernels.engine.spec().sgemm_module);
        outln!("reference matmul   {s:.2} GFLOP/s (plain 512x512x512 SGEMM in f32, shaders/{module})")?;
    }
    if !ops.is_empty() {
        outln!("\nper-op profile of one training step at batch {profiled} ({timing}):")?;
        // As wide as the longest name (which carries its tile and fusions).
        let w = ops.iter().map(|o| o.name.len()).max().unwrap_or(0).max(24);
        outln!(
            "{:<8} {:<w$} {:>12} {:>9} {:>16} {:>9} {:>7}",
            "layer",
            "op",
            "workgroups",
            "ms",
            "rate",
            "of sgemm",
            "share"
        )?;
        for o in &ops {
            let wg = format!("{}x{}x{}", o.workgroups[0], o.workgroups[1], o.workgroups[2]);
            let rate = if o.flops > 0 {
                format!("{:.2} GFLOP/s", o.gflops())
            } else if o.bytes > 0 {
                format!("{:.2} GB/s", o.gbytes_per_s())
            } else {
                "-".into()
            };
            let of = of_sgemm(o).map(|f| format!("{:.0}%", 100.0 * f)).unwrap_or_else(|| "-".into());
            outln!(
                "{:<8} {:<w$} {wg:>12} {:>9.3} {rate:>16} {of:>9} {:>6.1}%",
                o.layer,
                o.name,
                o.seconds * 1e3,
                100.0 * o.seconds / step_ops
            )?;
        }
        outln!("{:<8} {:<w$} {:>12} {:>9.3}", "", "sum", "", step_ops * 1e3)?;
    }
    Ok(())
}

//! `cargo bench`: every WGSL entry point at the tutorial model's real shapes (batch
//! 64), the reference SGEMM, a whole training step, and inference at batch 1, 64 and
//! 1000, on the best adapter (`GPU_CNN_BACKEND=vulkan|gl|metal|dx12` to choose, and
//! `GPU_CNN_GEMM=tiled|subgroup` for the engine). Compute-bound ops report FLOP/s
//! (criterion's "elem/s" = FLOP/s here), memory-bound ones bytes/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use std::time::Duration;

use gpu_cnn::data::{bundled_mnist_dir, Dataset, Split};
use gpu_cnn::executor::{Inference, Optimizer, Trainer};
use gpu_cnn::gpu::{BackendChoice, GemmEngine, Gpu, GpuInference, GpuTrainer};
use gpu_cnn::model::Model;

fn gpu() -> Arc<Gpu> {
    let choice = std::env::var("GPU_CNN_BACKEND")
        .ok()
        .map(|s| s.parse().expect("GPU_CNN_BACKEND"))
        .unwrap_or(BackendChoice::Auto);
    let engine = std::env::var("GPU_CNN_GEMM").ok().map(|s| GemmEngine::parse(&s).expect("GPU_CNN_GEMM"));
    Arc::new(Gpu::new(choice, engine).expect("a GPU adapter"))
}

fn wait(g: &Gpu) {
    g.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
}

fn benches(c: &mut Criterion) {
    let g = gpu();
    eprintln!("benchmarking on {}", g.describe());
    let model = Model::tutorial();
    let params = model.init_params(0);
    let opt = Optimizer::adam(1e-3);
    let data = Dataset::load(&bundled_mnist_dir(), Split::Train).unwrap();
    let (x, y) = data.first_batch(64);
    let mut exec = GpuTrainer::new(g.clone(), model.clone(), opt, &params, 64).unwrap();
    exec.train_step(&x, &y).unwrap();

    let mut ops = c.benchmark_group("ops (seed model, batch 64)");
    ops.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for (i, d) in exec.train_dispatches(64).unwrap().into_iter().enumerate() {
        if d.flops > 0 {
            ops.throughput(Throughput::Elements(d.flops));
        } else {
            ops.throughput(Throughput::Bytes(d.bytes.max(1)));
        }
        let id = format!("{i:02} {} {}", d.layer, d.name);
        ops.bench_function(id, |b| {
            b.iter(|| {
                g.run(&[d]);
                wait(&g);
            })
        });
    }
    // The reference SGEMM the per-op rates compare with (`gpu-cnn bench` prints the shares).
    let (a, b, out) = (
        g.upload("a", &vec![0.5f32; 512 * 512]),
        g.upload("b", &vec![0.25f32; 512 * 512]),
        g.storage("c", 512 * 512 * 4),
    );
    let mm = g.kernels.sgemm.matmul([512; 3], &a, &b, &out).unwrap();
    ops.throughput(Throughput::Elements(mm.flops));
    ops.bench_function(format!("reference sgemm 512x512x512 ({} engine)", g.kernels.engine), |bch| {
        bch.iter(|| {
            g.run(&[&mm]);
            wait(&g);
        })
    });
    ops.finish();

    let mut step = c.benchmark_group("training step");
    step.sample_size(10).measurement_time(Duration::from_secs(5));
    step.throughput(Throughput::Elements(64));
    step.bench_function("batch 64 (elem/s = samples/s)", |b| {
        b.iter(|| {
            exec.train_step(&x, &y).unwrap();
            exec.take_stats().unwrap();
        })
    });
    step.finish();

    let mut inf = c.benchmark_group("inference");
    inf.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in [1usize, 64, 1000] {
        let (xs, _) = data.first_batch(n);
        let mut e = GpuInference::new(g.clone(), model.clone(), &params, n).unwrap();
        inf.throughput(Throughput::Elements(n as u64));
        inf.bench_function(format!("batch {n} (elem/s = images/s)"), |b| b.iter(|| e.predict(&xs).unwrap()));
    }
    inf.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);

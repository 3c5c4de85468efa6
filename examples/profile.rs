use gpu_cnn::executor::Optimizer;
use gpu_cnn::gpu::{BackendChoice, Gpu, GpuExecutor};
use gpu_cnn::model::Model;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let batch: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(64);
    let gpu = Arc::new(Gpu::new(BackendChoice::Vulkan)?);
    let model = Model::seed();
    let mut exec = GpuExecutor::new(gpu.clone(), model.clone(), Optimizer::adam(1e-3), &model.init_params(0), batch)?;
    let ds = exec.train_dispatches(batch)?;
    let t = gpu_cnn::bench::time_dispatches(&gpu, &ds, 3)?;
    let total: f64 = t.iter().map(|t| t.seconds).sum();
    for x in &t {
        println!("{:<28} {:>6.2} ms {:>6.2} GFLOP/s {:?}", x.name, x.seconds * 1e3, x.gflops(), x.workgroups);
    }
    println!("total {:.1} ms -> {:.0} samples/s", total * 1e3, batch as f64 / total);
    Ok(())
}

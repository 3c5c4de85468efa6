//! What a training process holds across steps, read from the OS: the wgpu counters of
//! gpu_training.rs `no_resource_growth_across_steps` cannot see what a driver allocates
//! for itself. A file of its own so that no other test shares the process.

mod common;

use gpu_cnn::data::{bundled_mnist_dir, Dataset, Split};
use gpu_cnn::executor::{Optimizer, Trainer};
use gpu_cnn::gpu::{BackendChoice, GpuTrainer};
use gpu_cnn::model::Model;

/// This process's resident memory in bytes (Linux).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

// At batch 128, lavapipe (Mesa 22.3) compiled a specialised copy of the conv
// pipelines at every dispatch and kept each one: 25 MB more a step, and a step 12-33%
// slower, until the conv shaders read their uniform through an index it cannot fold
// (conv2d_common.wgsl, `load_uniform`). Six steps after three of warm-up must hold
// well under one step's worth of that.
#[cfg(target_os = "linux")]
#[test]
fn steps_at_batch_128_hold_no_more_memory_on_vulkan() {
    let Some(lease) = common::gpu(BackendChoice::Vulkan) else { return };
    let g = &lease.gpu;
    let model = Model::tutorial();
    let (images, labels) = Dataset::load(&bundled_mnist_dir(), Split::Train).unwrap().first_batch(128);
    let mut exec =
        GpuTrainer::new(g.clone(), model.clone(), Optimizer::adam(1e-3), &model.init_params(0), 128).unwrap();
    let step = |exec: &mut GpuTrainer| {
        exec.train_step(&images, &labels).unwrap();
        exec.take_stats().unwrap();
    };
    for _ in 0..3 {
        step(&mut exec);
    }
    let before = resident_bytes();
    for _ in 0..6 {
        step(&mut exec);
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "{}: 6 steps at batch 128 grew resident memory by {:.1} MiB",
        g.describe(),
        grown as f64 / (1 << 20) as f64
    );
}

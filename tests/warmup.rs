//! The warm-ups of a software Vulkan driver (src/gpu/warmup.rs), read from Mesa's
//! shader cache on disk: after them, the first training step (from the dataset in
//! GPU memory, as `train` runs it, or from host batches), prediction, evaluation and
//! explanation compile nothing. A file of its own, so that the cache directory is
//! this test's from the driver's first load.

mod common;

use std::path::Path;
use std::sync::Arc;

use gpu_cnn::data::{bundled_mnist_dir, Dataset, Split};
use gpu_cnn::executor::{Explain, Inference};
use gpu_cnn::executor::{Optimizer, Trainer};
use gpu_cnn::gpu::warmup::{self, Asked};
use gpu_cnn::gpu::{BackendChoice, Gpu, GpuExplainer, GpuInference, GpuTrainer};
use gpu_cnn::model::Model;

/// Compiled kernels in a Mesa shader cache directory: its entry files, not the
/// index or a write in progress.
fn cache_entries(dir: &Path) -> usize {
    let Ok(read) = std::fs::read_dir(dir) else { return 0 };
    read.flatten()
        .map(|e| {
            let (path, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
            if path.is_dir() {
                cache_entries(&path)
            } else {
                usize::from(name != "index" && !name.ends_with(".tmp"))
            }
        })
        .sum()
}

#[test]
fn after_the_warm_ups_the_first_step_and_answers_compile_nothing() {
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("MESA_SHADER_CACHE_DIR", cache.path());
    std::env::remove_var("MESA_SHADER_CACHE_DISABLE");
    let gpu = match Gpu::new(BackendChoice::Vulkan, None) {
        Ok(g) => Arc::new(g),
        Err(e) if common::in_ci() => panic!("CI requires a vulkan adapter: {e:#}"),
        Err(e) => return eprintln!("\n*** SKIPPED: no vulkan adapter on this machine ({e:#}) ***\n"),
    };
    if !warmup::applies(&gpu) {
        // CI's Vulkan adapter is lavapipe on two cores, which must get one.
        assert!(!common::in_ci(), "{}: CI's adapter gets no warm-up", gpu.describe());
        return eprintln!("\n*** SKIPPED: {} gets no warm-up ***\n", gpu.describe());
    }
    let model = Model::tutorial();
    let opt = Optimizer::adam(1e-3);
    let params = model.init_params(0);
    let data = Arc::new(Dataset::load(&bundled_mnist_dir(), Split::Train).unwrap());
    let (images, labels) = data.first_batch(64);
    let who = gpu.describe();
    assert_eq!(cache_entries(cache.path()), 0, "opening the device compiled kernels");

    // Each warm-up on a device of its own, closed before counting so that everything
    // it and its helper compiled is on disk; then what it prepares for, on another
    // device closed before counting, must compile nothing more. The evaluation goes
    // first, so that no other warm-up has compiled its kernels for it.
    let open = || Arc::new(Gpu::open_matching(&gpu.info, gpu.kernels.engine).unwrap());
    let phase = |what: &str, warm: &dyn Fn(&Arc<Gpu>), run: &dyn Fn(&Arc<Gpu>)| {
        let before = cache_entries(cache.path());
        warm(&open());
        let warmed = cache_entries(cache.path());
        assert!(warmed > before, "{who}: the warm-up for {what} compiled nothing ({warmed} cache entries)");
        run(&open());
        let after = cache_entries(cache.path());
        assert_eq!(
            after, warmed,
            "{who}: {what} compiled kernels its warm-up had not (cache entries: {warmed} after the warm-up, \
             {after} after {what})"
        );
    };

    let evaluations = 16;
    phase(
        "the first evaluation",
        &|g| drop(warmup::inference(g, &model, &params, evaluations, Asked::Evaluations).unwrap()),
        &|g| {
            let mut net = GpuInference::new(g.clone(), model.clone(), &params, evaluations).unwrap();
            let (x, y) = data.first_batch(evaluations);
            net.evaluate(&x, &y).unwrap();
        },
    );

    let answers = 8;
    phase(
        "the first prediction and explanation (serve)",
        &|g| drop(warmup::inference_and_explainer(g, &model, &params, answers).unwrap()),
        &|g| {
            let mut net = GpuInference::new(g.clone(), model.clone(), &params, answers).unwrap();
            net.predict(&data.first_batch(answers).0).unwrap();
            let mut explainer = GpuExplainer::new(g.clone(), model.clone(), &params).unwrap();
            explainer.explain(&images[..model.input.numel()]).unwrap();
        },
    );

    phase(
        "the first training step (from the dataset in GPU memory, then from the host)",
        &|g| {
            let (mut exec, shares) = warmup::trainer(g, &model, opt, &params, 64, Some(data.clone())).unwrap();
            let shares = shares.expect("it applies");
            let mut pipelines: Vec<wgpu::ComputePipeline> = Vec::new();
            for d in exec.first_step_dispatches(64, Some(&data)).unwrap() {
                if !pipelines.contains(d.pipeline()) {
                    pipelines.push(d.pipeline().clone());
                }
            }
            assert!(shares.here > 0 && shares.helper > 0, "{who}: one side compiled every pipeline: {shares:?}");
            assert_eq!(shares.here + shares.helper, pipelines.len(), "{who}: {shares:?}");
        },
        &|g| {
            let mut exec = GpuTrainer::new(g.clone(), model.clone(), opt, &params, 64).unwrap();
            exec.train_batch(&data, &data.first_indices(64)).unwrap();
            exec.train_step(&images, &labels).unwrap();
            exec.take_stats().unwrap();
        },
    );
    drop(gpu);
}

//! The warm-ups of a software Vulkan driver (src/gpu/warmup.rs), read from Mesa's
//! shader cache on disk: after them, the first training step, prediction and
//! explanation compile nothing. A file of its own, so that the cache directory is
//! this test's from the driver's first load.

mod common;

use std::path::Path;
use std::sync::Arc;

use gpu_cnn::data::{bundled_mnist_dir, Dataset, Split};
use gpu_cnn::executor::{Explain, Inference};
use gpu_cnn::executor::{Optimizer, Trainer};
use gpu_cnn::gpu::{warmup, BackendChoice, Gpu, GpuExplainer, GpuInference, GpuTrainer};
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
    assert_eq!(cache_entries(cache.path()), 0, "opening the device compiled kernels");

    // The two-sided compile on a device of its own, closed before counting, so that
    // everything it and its helper compiled is on disk.
    let pipelines = {
        let side = Arc::new(Gpu::open_matching(&gpu.info, gpu.kernels.engine).unwrap());
        let (mut exec, shares) = warmup::trainer(&side, &model, opt, &model.init_params(0), 64).unwrap();
        let shares = shares.expect("it applies");
        let mut pipelines: Vec<wgpu::ComputePipeline> = Vec::new();
        for d in exec.train_dispatches(64).unwrap() {
            if !pipelines.contains(d.pipeline()) {
                pipelines.push(d.pipeline().clone());
            }
        }
        assert!(
            shares.here > 0 && shares.helper > 0,
            "{}: one side compiled every pipeline: {shares:?}",
            side.describe()
        );
        assert_eq!(shares.here + shares.helper, pipelines.len(), "{}: {shares:?}", side.describe());
        pipelines.len()
    };
    let warmed = cache_entries(cache.path());
    assert!(
        warmed >= pipelines,
        "{}: the warm-up left {warmed} kernels in the cache, for a step of {pipelines} pipelines",
        gpu.describe()
    );

    // `serve`'s pair, on another device closed before counting.
    let answers = 8;
    drop(
        warmup::inference_and_explainer(
            &Arc::new(Gpu::open_matching(&gpu.info, gpu.kernels.engine).unwrap()),
            &model,
            &model.init_params(0),
            answers,
        )
        .unwrap(),
    );
    let served = cache_entries(cache.path());
    assert!(served > warmed, "{}: the serving warm-up compiled nothing ({served} cache entries)", gpu.describe());

    let data = Dataset::load(&bundled_mnist_dir(), Split::Train).unwrap();
    let mut exec = GpuTrainer::new(gpu.clone(), model.clone(), opt, &model.init_params(0), 64).unwrap();
    let (images, labels) = data.first_batch(64);
    exec.train_step(&images, &labels).unwrap();
    exec.take_stats().unwrap();
    let mut net = GpuInference::new(gpu.clone(), model.clone(), &model.init_params(0), answers).unwrap();
    net.predict(&data.first_batch(answers).0).unwrap();
    let mut explainer = GpuExplainer::new(gpu.clone(), model.clone(), &model.init_params(0)).unwrap();
    explainer.explain(&images[..model.input.numel()]).unwrap();
    let describe = gpu.describe();
    // Closing the last device of the instance waits for the driver's cache writes.
    drop((exec, net, explainer, gpu));
    let after = cache_entries(cache.path());
    assert_eq!(
        after, served,
        "{describe}: the first step, prediction or explanation compiled kernels the warm-ups had not \
         (cache entries: {served} after the warm-ups, {after} after them)"
    );
}

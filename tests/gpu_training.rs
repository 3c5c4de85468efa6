//! Whole-model checks on every backend: one full training step against the CPU
//! reference on every GEMM engine (mixed precision too), micro-batches against the
//! whole batch, the GPU-resident dataset against host batches, the inference executor
//! and the explainer against the CPU, a scheduled run resumed exactly, learning on
//! real MNIST and logistic regression, the divergence stop, and no resource growth
//! across steps.

mod common;

use std::sync::Arc;
use std::time::Instant;

use gpu_cnn::arch;
use gpu_cnn::checkpoint;
use gpu_cnn::cpu::{CpuInference, CpuTrainer};
use gpu_cnn::data::{bundled_mnist_dir, Dataset, Split};
use gpu_cnn::executor::{Explain, Inference, Optimizer, Stats, Trainer};
use gpu_cnn::gpu::kernels::Kernels;
use gpu_cnn::gpu::ops::texture_copy::TextureCopy;
use gpu_cnn::gpu::plan::{Gradients, MemoryPlan};
use gpu_cnn::gpu::{GemmEngine, Gpu, GpuExplainer, GpuInference, GpuTrainer, Precision};
use gpu_cnn::model::{Model, Shape};
use gpu_cnn::train::{self, evaluate, start_position, Diverged, Event, RunLength};

use common::{assert_close, to64};

fn mnist(split: Split) -> Dataset {
    Dataset::load(&bundled_mnist_dir(), split).unwrap()
}

// One Adam step of the tutorial model at batch 8 on the GPU and on the CPU reference,
// from the same weights and batch, on every f32 GEMM engine the device runs (the
// subgroup engine's kernel-row products with their operands from texture copies and
// from the buffers, whatever the CPU). Tolerances:
// - loss: 1e-5 + 1e-4·|ref| (a forward quantity);
// - gradients: 1e-7 + 1e-3·|ref|. Gradients here are up to ~1e-2 (measured differences
//   ≤ 3e-8); the two sides sum 50k-term reductions in different orders through five
//   layers, and a max-pool whose inputs differ by rounding may route one term elsewhere;
// - updated weights: 1e-6 + 1e-4·|ref|. Adam's first step is lr·g/(|g|+eps) ≈ ±lr, so a
//   weight whose gradient is below the gradient tolerance (|g| < 1e-7 and the two sides
//   disagree) has a direction f32 cannot settle: it may differ by up to 2·lr, and such
//   weights must stay under 1% of the model or the check would be too weak.
/// One Adam step of the tutorial model at batch 8 on the CPU reference, from seed 42's
/// weights and the first training images: what the whole-step tests compare with.
struct CpuStep {
    model: Model,
    params: Vec<f32>,
    opt: Optimizer,
    images: Vec<f32>,
    labels: Vec<u32>,
    stats: Stats,
    grads: Vec<f32>,
    stepped: Vec<f32>,
}

fn cpu_step() -> CpuStep {
    let model = Model::tutorial();
    let params = model.init_params(42);
    let opt = Optimizer::adam(1e-3);
    let (images, labels) = mnist(Split::Train).first_batch(8);
    let mut cpu = CpuTrainer::new(model.clone(), opt, params.clone()).unwrap();
    cpu.train_step(&images, &labels).unwrap();
    let stats = cpu.take_stats().unwrap();
    let (grads, stepped) = (cpu.grads().unwrap(), cpu.params().unwrap());
    CpuStep { model, params, opt, images, labels, stats, grads, stepped }
}

per_backend!(whole_training_step_matches_cpu, |g: &Arc<Gpu>| {
    let CpuStep { model, params, opt, images, labels, stats: cs, grads: cg, stepped: cp } = cpu_step();
    // Every f32 engine, and the subgroup engine's kernel-row products also the way the
    // CPU does not pick (their operands from texture copies, or from the buffers), so
    // the executors' fills and refreshes run on any CPU.
    let mut gpus = Vec::new();
    for &engine in g.engines.iter().filter(|e| e.precision() == Precision::F32) {
        let gpu = g.with_engine(engine).unwrap();
        if engine.spec().kernel_row_products {
            let (max, textures) =
                (g.limits.max_compute_workgroups_per_dimension, gpu.kernels.conv.operands_from_textures());
            let other = Kernels::with_operand_loads(&g.device, g.info.device_type, engine, max, !textures);
            gpus.push(g.with_kernels(other).unwrap());
        }
        gpus.push(gpu);
    }
    for gpu in gpus {
        let engine = gpu.kernels.engine;
        let copies = if gpu.kernels.conv.operands_from_textures() { " (operands from texture copies)" } else { "" };
        let who = gpu.describe() + copies;
        let mut exec = GpuTrainer::new(Arc::new(gpu), model.clone(), opt, &params, 8).unwrap();
        // Both pools run in their convolution's epilogue where the engine can (the
        // subgroup engine's kernel-row forward), so this step checks that path too.
        let names: Vec<String> = exec.train_dispatches(8).unwrap().iter().map(|d| d.name.clone()).collect();
        let pooled = names.iter().filter(|n| n.ends_with("+relu+pool")).count();
        assert_eq!(pooled, if engine == GemmEngine::Subgroup { 2 } else { 0 }, "{who}: {names:?}");
        assert_eq!(names.iter().filter(|n| *n == "maxpool.forward").count(), 2 - pooled, "{who}: {names:?}");
        exec.train_step(&images, &labels).unwrap();
        let gs = exec.take_stats().unwrap();
        assert_eq!((gs.samples, gs.correct), (cs.samples, cs.correct), "{who}");
        let e_loss = assert_close(&format!("{who}: loss"), &[gs.mean_loss() as f32], &[cs.mean_loss()], 1e-5, 1e-4);
        let gg = exec.grads().unwrap();
        let mut e_grad = 0f64;
        for p in &model.params {
            let r = p.offset..p.offset + p.numel();
            let e = assert_close(&format!("{who}: grad {}", p.name), &gg[r.clone()], &to64(&cg[r]), 1e-7, 1e-3);
            e_grad = e_grad.max(e);
        }
        let gp = exec.params().unwrap();
        let (mut e_param, mut undetermined) = (0f64, 0);
        for i in 0..gp.len() {
            let err = (gp[i] as f64 - cp[i] as f64).abs();
            if cg[i].abs() < 1e-7 && gg[i] != cg[i] {
                undetermined += 1;
                assert!(err <= 2e-3 + 1e-6, "{who}: param {i}: {} vs {} with gradient {}", gp[i], cp[i], cg[i]);
            } else {
                let ok = err <= 1e-6 + 1e-4 * (cp[i] as f64).abs();
                assert!(ok, "{who}: param {i}: {} vs {} (|Δ| {err:e})", gp[i], cp[i]);
                e_param = e_param.max(err);
            }
        }
        assert!(undetermined < gp.len() / 100, "{who}: {undetermined} weights with undetermined step direction");
        // And the step moved the weights (about a quarter have an exactly zero gradient at
        // batch 8: dead ReLU units, zero inputs to the classifier).
        let moved = gp.iter().zip(&params).filter(|(a, b)| a != b).count();
        assert!(moved > gp.len() * 2 / 3, "{who}: only {moved} weights moved");
        // Every kernel that reads the weights sees the update (on AMD CPUs the subgroup
        // engine's read a texture copy, src/gpu/params.rs): the next forward pass is
        // the CPU's with the stepped weights.
        let after = exec.inference().predict(&images).unwrap();
        let want = CpuInference::new(model.clone(), gp.clone()).unwrap().predict(&images).unwrap();
        assert_close(&format!("{who}: probabilities after the step"), &after, &to64(&want), 1e-5, 1e-4);
        eprintln!(
            "whole step, {who}: max |Δ| loss {e_loss:.2e}, grads {e_grad:.2e}, weights {e_param:.2e} ({undetermined} near-zero-gradient weights)"
        );
    }
});

// The same step in mixed precision (f16 operands in every convolution, f32 sums), on
// every mixed-precision engine the device runs (coop-emulated on lavapipe; coop on a
// GPU with tensor cores), against the f32 CPU reference. Per-element bounds would
// mean little after five layers of f16 rounding, so the tolerances are on the whole:
// - loss within 1e-3 relative, and the same correct count;
// - each parameter tensor's gradient within 10% of its norm (‖Δ‖ / ‖ref‖). Measured
//   on lavapipe (coop-emulated): 1.7-4.1% for the convolutions, 5e-4 for the
//   classifier. Most of it is not the rounding of one product but its consequences:
//   a ReLU or a max-pool whose inputs move by f16 rounding can flip, and then routes
//   a whole gradient term elsewhere. A wrong tile, a lost term or a wrong scale is off
//   by far more;
// - the update agrees in direction (sign of the step) for 99% of the weights whose
//   reference gradient exceeds 1e-5 (Adam's first step is about ±lr whatever the
//   size); measured 99.87%.
per_backend!(mixed_precision_training_step_matches_cpu, gl ignored: "wgpu's GL backend has no f16 in shaders", |g: &Arc<Gpu>| {
    let mixed: Vec<GemmEngine> = g.engines.iter().copied().filter(|e| e.precision() == Precision::Mixed).collect();
    let CpuStep { model, params, opt, images, labels, stats: cs, grads: cg, stepped: cp } = cpu_step();
    let mut devices: Vec<Arc<Gpu>> = mixed.iter().map(|&e| Arc::new(g.with_engine(e).unwrap())).collect();
    devices.extend(common::coop_device(g));
    if g.info.backend == wgpu::Backend::Vulkan && g.info.name.contains("llvmpipe") {
        assert!(!devices.is_empty(), "{}: lavapipe must run coop-emulated", g.describe());
    }
    if devices.is_empty() {
        eprintln!("\n*** SKIPPED: {} has no f16 in shaders, so no mixed-precision engine ***\n", g.describe());
    }
    for gpu in devices {
        let who = gpu.describe();
        let mut exec = GpuTrainer::new(gpu, model.clone(), opt, &params, 8).unwrap();
        exec.train_step(&images, &labels).unwrap();
        let gs = exec.take_stats().unwrap();
        assert_eq!((gs.samples, gs.correct), (cs.samples, cs.correct), "{who}");
        let e_loss = assert_close(&format!("{who}: loss"), &[gs.mean_loss() as f32], &[cs.mean_loss()], 0.0, 1e-3);
        let gg = exec.grads().unwrap();
        let mut worst = 0f64;
        for p in &model.params {
            let r = p.offset..p.offset + p.numel();
            let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
            let diff = norm(&mut gg[r.clone()].iter().zip(&cg[r.clone()]).map(|(a, b)| *a as f64 - *b as f64));
            let rel = diff / norm(&mut cg[r].iter().map(|&x| x as f64));
            assert!(rel <= 0.1, "{who}: grad {}: ‖Δ‖/‖ref‖ = {rel:.2e}", p.name);
            worst = worst.max(rel);
        }
        let gp = exec.params().unwrap();
        let settled: Vec<usize> = (0..gp.len()).filter(|&i| cg[i].abs() > 1e-5).collect();
        let agree = settled.iter().filter(|&&i| (gp[i] - params[i]).signum() == (cp[i] - params[i]).signum()).count();
        let share = agree as f64 / settled.len() as f64;
        assert!(share >= 0.99, "{who}: the step's direction agrees for {:.2}% of the weights", 100.0 * share);
        eprintln!(
            "mixed-precision step, {who}: loss {e_loss:.2e} off, gradients within {worst:.2e} of their norm, \
             direction agrees for {:.3}% of {} weights",
            100.0 * share,
            settled.len()
        );
    }
});

// A batch split into micro-batches trains exactly like the whole batch: gradients
// summed over the micro-batches, the loss's mean taken over the whole batch, one
// optimizer step, and the logged loss and accuracy the whole batch's. Two splits
// each: even halves (2,048 = 2 x 1,024 on Vulkan; 256 = 2 x 128 on the slower GL)
// and uneven thirds (40 = 16 + 16 + 8). Both sides run on the GPU, summing in
// different groupings: gradients to 1e-7 + 1e-4·|ref|, weights to 1e-6 + 1e-4·|ref|
// (Adam's step direction is settled for every gradient above ~1e-6; those below it
// may differ by up to 2·lr, as in the whole-step test).
per_backend!(micro_batches_add_up_to_the_whole_batch, |g: &Arc<Gpu>| {
    let model = Model::tutorial();
    let params = model.init_params(5);
    let opt = Optimizer::adam(1e-3);
    let big = if g.info.backend == wgpu::Backend::Vulkan { 2048 } else { 256 };
    for (batch, micro) in [(big, big / 2), (40, 16)] {
        let (images, labels) = mnist(Split::Train).first_batch(batch);
        let mut whole = GpuTrainer::new(g.clone(), model.clone(), opt, &params, batch).unwrap();
        let mut split = GpuTrainer::with_micro_batch(g.clone(), model.clone(), opt, &params, micro).unwrap();
        assert_eq!((whole.micro_batch(), split.micro_batch()), (batch, micro));
        let who = format!("{}, batch {batch} in micro-batches of {micro}", g.describe());
        whole.train_step(&images, &labels).unwrap();
        split.train_step(&images, &labels).unwrap();
        let (ws, ss) = (whole.take_stats().unwrap(), split.take_stats().unwrap());
        assert_eq!((ss.samples, ss.correct), (ws.samples, ws.correct), "{who}: stats");
        assert_eq!(ss.samples, batch as u64, "{who}: the logged stats cover the whole batch");
        assert_close(&format!("{who}: loss"), &[ss.mean_loss() as f32], &[ws.mean_loss()], 1e-5, 1e-4);
        let (wg, sg) = (whole.grads().unwrap(), split.grads().unwrap());
        assert_close(&format!("{who}: gradients"), &sg, &to64(&wg), 1e-7, 1e-4);
        let (wp, sp) = (whole.params().unwrap(), split.params().unwrap());
        for i in 0..wp.len() {
            let err = (wp[i] - sp[i]).abs() as f64;
            let bound = if wg[i].abs() < 1e-6 { 2e-3 + 1e-6 } else { 1e-6 + 1e-4 * wp[i].abs() as f64 };
            assert!(err <= bound, "{who}: param {i}: {} vs {} (gradient {})", sp[i], wp[i], wg[i]);
        }
    }
});

// The training set kept in GPU memory and gathered by index trains exactly as
// batches uploaded from the host: the same floats reach the model (the gather reads
// the host's own byte-to-value table), so the weights agree bit for bit, also for a
// step split into micro-batches (which then runs in one submission) and after the
// trainer is handed another dataset.
per_backend!(resident_dataset_trains_like_host_batches, |g: &Arc<Gpu>| {
    let model = Model::tutorial();
    let params = model.init_params(9);
    let opt = Optimizer::sgd(0.05, 0.9);
    let train = mnist(Split::Train).take(600);
    // 301 labels: the last one is in a word the upload pads.
    let other = mnist(Split::Test).take(301);
    let mut host = GpuTrainer::with_micro_batch(g.clone(), model.clone(), opt, &params, 24).unwrap();
    let mut resident = GpuTrainer::with_micro_batch(g.clone(), model.clone(), opt, &params, 24).unwrap();
    let batches: [(&Dataset, Vec<usize>); 3] = [
        (&train, (100..120).collect()),
        (
            &train,
            vec![
                5, 599, 3, 3, 41, 0, 250, 7, 8, 9, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93,
                94, 95, 96, 97, 98, 99, 1, 2, 4, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
            ],
        ),
        (&other, (271..301).rev().collect()),
    ];
    for (data, idx) in &batches {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        data.batch(idx, &mut images, &mut labels);
        host.train_step(&images, &labels).unwrap();
        resident.train_batch(data, idx).unwrap();
        let who = format!("{}, a step of {}", g.describe(), idx.len());
        assert_eq!(resident.take_stats().unwrap(), host.take_stats().unwrap(), "{who}: stats");
        assert_eq!(resident.params().unwrap(), host.params().unwrap(), "{who}: weights");
    }
    // Memory accounts for the resident set (the last one): its pixel and label bytes at least.
    let set = (other.images.len() + other.labels.len()) as u64;
    let (with, without) = (resident.allocated_bytes(), host.allocated_bytes());
    assert!(
        with >= without + set,
        "{}: {with} bytes held with a resident set of {set}, {without} without",
        g.describe()
    );
});

// The inference executor against the CPU reference: probabilities, and the loss,
// correct count and predictions it computes on the device, over batches that do
// not divide its largest batch; and it allocates far less than a trainer.
per_backend!(inference_executor_matches_cpu, |g: &Arc<Gpu>| {
    let model = Model::tutorial();
    let params = model.init_params(7);
    let test = mnist(Split::Test);
    let (images, labels) = test.first_batch(50);
    let mut gpu = GpuInference::new(g.clone(), model.clone(), &params, 16).unwrap();
    let mut cpu = CpuInference::new(model.clone(), params.clone()).unwrap();
    let who = g.describe();
    let before = gpu.allocated_bytes();
    let (gp, cp) = (gpu.predict(&images).unwrap(), cpu.predict(&images).unwrap());
    let e = assert_close(&format!("{who}: probabilities"), &gp, &to64(&cp), 1e-5, 1e-4);
    let (ge, ce) = (gpu.evaluate(&images, &labels).unwrap(), cpu.evaluate(&images, &labels).unwrap());
    assert_eq!(ge.predictions, ce.predictions, "{who}: predictions");
    assert_eq!(ge.correct, ce.correct, "{who}: correct count");
    assert_close(&format!("{who}: loss sum"), &[ge.loss_sum as f32], &[ce.loss_sum], 1e-4, 1e-4);
    // A random model is right about a tenth of the time; the check must see both kinds.
    assert!(ge.correct > 0 && ge.correct < 50, "{who}: {} of 50 correct", ge.correct);
    // Running brings texture copies, where the convolutions read them: one a buffer,
    // shared by every batch size (batches of 16 and 2 ran above; now 5).
    let copies = gpu.allocated_bytes() - before;
    assert_eq!(copies > 0, g.kernels.conv.operands_from_textures(), "{who}: {copies} bytes of texture copies");
    let textures = || {
        let c = g.device.get_internal_counters().hal;
        [c.texture_views.read(), c.texture_memory.read()]
    };
    let made = textures();
    gpu.predict(&images[..5 * 784]).unwrap();
    assert_eq!(textures(), made, "{who}: a third batch size made textures [views, bytes]");
    assert_eq!(gpu.allocated_bytes() - before, copies, "{who}: a third batch size's texture copies");

    let at_1000 = GpuInference::new(g.clone(), model.clone(), &params, 1000).unwrap().allocated_bytes();
    let trainer = GpuTrainer::new(g.clone(), model.clone(), Optimizer::adam(1e-3), &params, 1000).unwrap();
    eprintln!(
        "{who}: inference vs CPU max |Δ| {e:.2e}; at batch 1000 inference allocates {:.1} MiB, training {:.1} MiB",
        at_1000 as f64 / 1048576.0,
        trainer.allocated_bytes() as f64 / 1048576.0
    );
    // The trainer holds at least every gradient buffer of its memory plan and the
    // optimizer state on top of what inference holds; inference holds none of them.
    let plan = MemoryPlan::new(&model, Gradients::Weights);
    let gradients = 4 * (1000 * plan.grads.iter().map(|s| s.per_sample).sum::<usize>() + 3 * model.num_params) as u64;
    assert!(trainer.allocated_bytes() >= at_1000 + gradients, "{who}: the trainer lacks gradient buffers");
    assert!(at_1000 * 3 < trainer.allocated_bytes() * 2, "{who}: inference allocates too much");
    // Where both max-pools run in their convolutions' epilogues (the subgroup engine),
    // the unpooled outputs of conv1.0 and conv2.2 are never written, and inference
    // holds a 4-byte placeholder for each instead; the tiled engine writes them.
    if [GemmEngine::Subgroup, GemmEngine::Tiled].iter().all(|e| g.engines.contains(e)) {
        // Buffers only: less the weights' texture copy, where the engine reads one.
        let on = |e: GemmEngine| {
            let gpu = Arc::new(g.with_engine(e).unwrap());
            let copy = match gpu.kernels.conv.operands_from_textures() {
                true => TextureCopy::new(&gpu.device, "weights", model.num_params).unwrap().bytes(),
                false => 0,
            };
            GpuInference::new(gpu, model.clone(), &params, 1000).unwrap().allocated_bytes() - copy
        };
        let unpooled = plan.values.iter().filter(|s| ["conv1.0", "conv2.2"].contains(&s.name.as_str()));
        let saved = 4 * unpooled.map(|s| 1000 * s.per_sample as u64 - 1).sum::<u64>();
        assert_eq!(on(GemmEngine::Tiled) - on(GemmEngine::Subgroup), saved, "{who}: unpooled outputs allocated");
    }
});

// What `gpu-cnn explain` shows, on the GPU against the CPU reference, for the
// shipped weights and a few test digits: probabilities and feature maps to forward
// tolerance (1e-5 + 1e-4·|ref|), the saliency map (the predicted logit's gradient
// with respect to the input, through every layer's backward including conv1's
// input gradient, which training never runs) to the gradient tolerance
// 1e-6 + 1e-3·|ref|. Also for a model with other layers (`--arch`).
per_backend!(explainer_matches_cpu, |g: &Arc<Gpu>| {
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/weights/mnist-cnn.safetensors");
    let tutorial = checkpoint::load(&weights, &Model::tutorial()).unwrap();
    let other = arch::parse("c4k3 relu relu pool2 c6k3s2p0 flat fc10", Shape::image(1, 28, 28)).unwrap();
    let test = mnist(Split::Test);
    for (model, params) in [(tutorial.model, tutorial.params), (other.clone(), other.init_params(3))] {
        let mut gpu = GpuExplainer::new(g.clone(), model.clone(), &params).unwrap();
        let mut cpu = CpuInference::new(model.clone(), params).unwrap();
        for i in [0, 1, 18] {
            let (image, _) = test.take(i + 1).first_batch(i + 1);
            let image = &image[i * 784..];
            let (ge, ce) = (gpu.explain(image).unwrap(), cpu.explain(image).unwrap());
            let who = format!("{} {} picture {i}", g.describe(), gpu_cnn::arch::spec_of(&model));
            assert_eq!(ge.prediction, ce.prediction, "{who}");
            assert_close(&format!("{who}: probabilities"), &ge.probs, &to64(&ce.probs), 1e-5, 1e-4);
            let names = |e: &gpu_cnn::executor::Explanation| e.maps.iter().map(|m| m.layer.clone()).collect::<Vec<_>>();
            assert_eq!(names(&ge), names(&ce), "{who}");
            for (gm, cm) in ge.maps.iter().zip(&ce.maps) {
                assert_eq!(gm.shape, cm.shape, "{who}: {}", gm.layer);
                assert_close(&format!("{who}: map {}", gm.layer), &gm.values, &to64(&cm.values), 1e-5, 1e-4);
            }
            let e = assert_close(&format!("{who}: saliency"), &ge.saliency, &to64(&ce.saliency), 1e-6, 1e-3);
            let peak = ce.saliency.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(peak > 1e-3, "{who}: a saliency map of zeros checks nothing");
            eprintln!("{who}: saliency max |Δ| {e:.2e} (peak {peak:.3})");
        }
    }
    // The tutorial model's maps are its conv layers (after their ReLUs) and pools, then the logits.
    let mut gpu = GpuExplainer::new(g.clone(), Model::tutorial(), &Model::tutorial().init_params(0)).unwrap();
    let e = gpu.explain(&test.first_batch(1).0).unwrap();
    let names: Vec<&str> = e.maps.iter().map(|m| m.layer.as_str()).collect();
    assert_eq!(names, ["conv1.0", "conv1.2", "conv2.0", "conv2.2", "conv2.4", "conv3.0", "out"]);
});

// Train the tutorial CNN from a fixed seed on a 6,400-image subset of MNIST for 200
// steps of 32 (Adam, lr 1e-3) and require ≥ 90% on the first 1,000 test images.
// The loss must fall too.
per_backend!(it_learns_mnist, |g: &Arc<Gpu>| {
    let model = Model::tutorial();
    let train = mnist(Split::Train).take(6400);
    let test = mnist(Split::Test).take(1000);
    let mut exec = GpuTrainer::new(g.clone(), model.clone(), Optimizer::adam(1e-3), &model.init_params(0), 32).unwrap();
    let t0 = Instant::now();
    let mut losses = Vec::new();
    // The same loop `gpu-cnn train` runs, stopped by a step limit rather than epochs.
    let length = RunLength { epochs: usize::MAX, max_steps: Some(200), log_every: 50 };
    let end = train::run(&mut exec, &train, start_position(0, 32, true), length, |_, event| {
        if let Event::Logged { global, stats, .. } = event {
            if global % 50 == 0 {
                losses.push(stats.mean_loss());
            }
        }
        Ok(())
    })
    .unwrap();
    assert_eq!((end.global_step, end.epoch, end.batch_in_epoch), (200, 1, 0), "6,400 / 32 = 200: one epoch");
    let ev = evaluate(exec.inference(), &test, 500).unwrap();
    eprintln!(
        "{}: 200 steps of 32 in {:.1}s, loss per 50 steps {losses:.3?}, test accuracy {:.2}% (loss {:.3})",
        g.describe(),
        t0.elapsed().as_secs_f64(),
        ev.accuracy * 100.0,
        ev.loss
    );
    assert_eq!(losses.len(), 4, "{}: log points", g.describe());
    assert!(losses[3] < losses[0] * 0.5, "{}: loss did not fall: {losses:?}", g.describe());
    assert!(ev.accuracy >= 0.90, "{}: test accuracy {:.2}% < 90%", g.describe(), ev.accuracy * 100.0);
});

// A learning rate far too large makes the loss infinite within a few steps; the loop
// the tests and the CLI share stops with `Diverged` at the first log point that sees it.
per_backend!(a_diverging_run_stops_inside_the_loop, |g: &Arc<Gpu>| {
    let model = Model::tutorial();
    let train = mnist(Split::Train).take(256);
    let mut exec = GpuTrainer::new(g.clone(), model.clone(), Optimizer::adam(1e30), &model.init_params(0), 16).unwrap();
    let mut logged = Vec::new();
    let length = RunLength { epochs: 5, max_steps: None, log_every: 2 };
    let err = train::run(&mut exec, &train, start_position(0, 16, false), length, |_, event| {
        if let Event::Logged { global, .. } = event {
            logged.push(global);
        }
        Ok(())
    })
    .expect_err("lr 1e30 must diverge");
    let d =
        *err.downcast_ref::<Diverged>().unwrap_or_else(|| panic!("{}: not a Diverged error: {err:#}", g.describe()));
    assert!(!d.loss.is_finite() && d.step % 2 == 0, "{}: {d:?}", g.describe());
    assert!(logged.iter().all(|&s| s < d.step), "{}: a non-finite loss was reported as logged", g.describe());
    assert!(d.step < 5 * 16, "{}: diverged only at step {}", g.describe(), d.step);
});

// A learning-rate schedule (cosine with warmup, SGD with weight decay) runs each
// step at its rate, logs that rate, and survives a checkpoint: 10 steps, a save and
// load through the safetensors metadata, a fresh trainer, 14 more steps, give the
// same weights bit for bit as 24 steps in one go.
per_backend!(a_scheduled_run_logs_its_rates_and_resumes_exactly, |g: &Arc<Gpu>| {
    use gpu_cnn::checkpoint::Position;
    use gpu_cnn::schedule::Schedule;
    let model = arch::parse("c4k3 relu pool2 c8k3 relu pool2 flat fc10", Shape::image(1, 28, 28)).unwrap();
    let train = mnist(Split::Train).take(96);
    let base = Optimizer::sgd(0.05, 0.9).with_weight_decay(1e-3);
    let schedule = Schedule::from_spec("cosine", 3, 24, 12).unwrap();
    let start = Position { schedule, ..start_position(3, 8, true) };
    let length = |steps| RunLength { epochs: 2, max_steps: Some(steps), log_every: 1 };
    let who = g.describe();
    let fresh = |params: &[f32]| GpuTrainer::new(g.clone(), model.clone(), base, params, 8).unwrap();

    let mut whole = fresh(&model.init_params(3));
    let mut rates = Vec::new();
    train::run(&mut whole, &train, start, length(24), |_, e| {
        if let Event::Logged { global, lr, .. } = e {
            rates.push((global, lr));
        }
        Ok(())
    })
    .unwrap();
    let want: Vec<(u64, f32)> = (0..24).map(|t| (t + 1, schedule.at(t, 0.05f32 as f64).lr as f32)).collect();
    assert_eq!(rates, want, "{who}: logged rates");
    assert!(rates[0].1 < rates[2].1 && rates[23].1 < rates[12].1, "{who}: warmup, then decay: {rates:?}");
    assert_eq!(whole.optimizer(), base, "{who}: the base optimizer is set back after the run");

    let mut first = fresh(&model.init_params(3));
    let stop = train::run(&mut first, &train, start, length(10), |_, _| Ok(())).unwrap();
    let state = first.optimizer_state().unwrap();
    let bytes = checkpoint::to_bytes(&model, &first.params().unwrap(), Some((&base, &state)), Some(&stop)).unwrap();
    let ck = checkpoint::load_bytes(std::path::Path::new("scheduled.safetensors"), &bytes, &model).unwrap();
    let (opt, state) = ck.optimizer.unwrap();
    let pos = ck.position.unwrap();
    assert_eq!((opt, pos), (base, stop), "{who}: the checkpoint keeps the base optimizer and the schedule");
    let mut second = fresh(&ck.params);
    second.set_optimizer_state(&state).unwrap();
    train::run(&mut second, &train, pos, length(24), |_, _| Ok(())).unwrap();
    assert_eq!(second.params().unwrap(), whole.params().unwrap(), "{who}: resumed weights");
});

// A model that flattens before any convolution (logistic regression) has no layer
// that needs an input gradient: the executor must plan none and still train.
per_backend!(logistic_regression_trains, |g: &Arc<Gpu>| {
    let model = arch::parse("flat fc10", Shape::image(1, 28, 28)).unwrap();
    let train = mnist(Split::Train).take(2048);
    let mut exec = GpuTrainer::new(g.clone(), model.clone(), Optimizer::adam(1e-2), &model.init_params(0), 64).unwrap();
    let length = RunLength { epochs: 1, max_steps: None, log_every: 32 };
    let mut last = None;
    train::run(&mut exec, &train, start_position(0, 64, true), length, |_, e| {
        if let Event::Logged { stats, .. } = e {
            last = Some(stats);
        }
        Ok(())
    })
    .unwrap();
    let acc = last.unwrap().accuracy();
    assert!(acc > 0.7, "{}: logistic regression reached only {:.1}%", g.describe(), 100.0 * acc);
});

// Steps after the first create no buffers, bind groups, pipelines or memory:
// everything is built once per model and batch size.
per_backend!(no_resource_growth_across_steps, |g: &Arc<Gpu>| {
    let model = Model::tutorial();
    let (images, labels) = mnist(Split::Train).first_batch(4);
    let mut exec =
        GpuTrainer::new(g.clone(), model.clone(), Optimizer::sgd(0.01, 0.9), &model.init_params(1), 4).unwrap();
    let counts = |g: &Gpu| {
        g.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        let c = g.device.get_internal_counters().hal;
        [c.buffers.read(), c.bind_groups.read(), c.compute_pipelines.read(), c.buffer_memory.read()]
    };
    let cycle = |exec: &mut GpuTrainer| {
        exec.train_step(&images, &labels).unwrap();
        exec.take_stats().unwrap();
        exec.inference().predict(&images).unwrap();
        exec.inference().evaluate(&images, &labels).unwrap();
    };
    for _ in 0..2 {
        cycle(&mut exec);
    }
    let before = counts(g);
    // (GL does not count buffer bytes, so only the object counts prove the counters are on.)
    assert!(before[0] > 20 && before[1] > 20, "the resource counters are off: {before:?}");
    for _ in 0..10 {
        cycle(&mut exec);
    }
    assert_eq!(counts(g), before, "{}: [buffers, bind groups, pipelines, buffer bytes] grew", g.describe());
});

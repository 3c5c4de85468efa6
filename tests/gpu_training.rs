//! Whole-model checks on every backend: one full training step against the CPU
//! reference, learning on real MNIST, and no resource growth across steps.

mod common;

use std::sync::Arc;
use std::time::Instant;

use gpu_cnn::cpu::CpuExecutor;
use gpu_cnn::data::{bundled_mnist_dir, Dataset, Split};
use gpu_cnn::executor::{Executor, Optimizer};
use gpu_cnn::gpu::{Gpu, GpuExecutor};
use gpu_cnn::model::Model;
use gpu_cnn::train::{self, evaluate, start_position, Event};

use common::{assert_close, to64};

fn first_batch(n: usize) -> (Vec<f32>, Vec<u32>) {
    let data = Dataset::load(&bundled_mnist_dir(), Split::Train).unwrap();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    data.batch(&(0..n).collect::<Vec<_>>(), &mut images, &mut labels);
    (images, labels)
}

// One Adam step of the seed model at batch 8 on the GPU and on the CPU reference,
// from the same weights and batch. Tolerances:
// - loss: 1e-5 + 1e-4·|ref| (a forward quantity);
// - gradients: 1e-7 + 1e-3·|ref|. Gradients here are up to ~1e-2 (measured differences
//   ≤ 3e-8); the two sides sum 50k-term reductions in different orders through five
//   layers, and a max-pool whose inputs differ by rounding may route one term elsewhere;
// - updated weights: 1e-6 + 1e-4·|ref|. Adam's first step is lr·g/(|g|+eps) ≈ ±lr, so a
//   weight whose gradient is below the gradient tolerance (|g| < 1e-7 and the two sides
//   disagree) has a direction f32 cannot settle: it may differ by up to 2·lr, and such
//   weights must stay under 1% of the model or the check would be too weak.
per_backend!(whole_training_step_matches_cpu, |g: &Arc<Gpu>| {
    let model = Model::seed();
    let params = model.init_params(42);
    let opt = Optimizer::adam(1e-3);
    let (images, labels) = first_batch(8);
    let mut gpu = GpuExecutor::new(g.clone(), model.clone(), opt, &params, 8).unwrap();
    let mut cpu = CpuExecutor::new(model.clone(), opt, params.clone()).unwrap();
    gpu.train_step(&images, &labels).unwrap();
    cpu.train_step(&images, &labels).unwrap();

    let (gs, cs) = (gpu.take_stats().unwrap(), cpu.take_stats().unwrap());
    assert_eq!((gs.samples, gs.correct), (cs.samples, cs.correct));
    let e_loss = assert_close("loss", &[gs.mean_loss() as f32], &[cs.mean_loss()], 1e-5, 1e-4);

    let (gg, cg) = (gpu.grads().unwrap(), cpu.grads().unwrap());
    let mut e_grad = 0f64;
    for p in &model.params {
        let r = p.offset..p.offset + p.numel();
        let e = assert_close(&format!("grad {}", p.name), &gg[r.clone()], &to64(&cg[r]), 1e-7, 1e-3);
        e_grad = e_grad.max(e);
    }
    let (gp, cp) = (gpu.params().unwrap(), cpu.params().unwrap());
    let mut e_param = 0f64;
    let mut undetermined = 0;
    for i in 0..gp.len() {
        let err = (gp[i] as f64 - cp[i] as f64).abs();
        if cg[i].abs() < 1e-7 && gg[i] != cg[i] {
            undetermined += 1;
            assert!(err <= 2e-3 + 1e-6, "param {i}: {} vs {} with gradient {}", gp[i], cp[i], cg[i]);
        } else {
            assert!(err <= 1e-6 + 1e-4 * (cp[i] as f64).abs(), "param {i}: {} vs {} (|Δ| {err:e})", gp[i], cp[i]);
            e_param = e_param.max(err);
        }
    }
    assert!(
        undetermined < gp.len() / 100,
        "{undetermined} weights with undetermined step direction: the check would be too weak"
    );
    // And the step moved the weights (about a quarter have an exactly zero gradient at
    // batch 8: dead ReLU units, zero inputs to the classifier).
    let moved = gp.iter().zip(&params).filter(|(a, b)| a != b).count();
    assert!(moved > gp.len() * 2 / 3, "only {moved} weights moved");
    eprintln!(
        "whole step {:?}: max |Δ| loss {e_loss:.2e}, grads {e_grad:.2e}, weights {e_param:.2e} ({undetermined} near-zero-gradient weights)",
        g.info.backend
    );
});

// Train the seed CNN from a fixed seed on a 6,400-image subset of MNIST for 200 steps of
// 32 (Adam, lr 1e-3) and require ≥ 90% on the first 1,000 test images. The loss must fall too.
per_backend!(it_learns_mnist, |g: &Arc<Gpu>| {
    let model = Model::seed();
    let train = Dataset::load(&bundled_mnist_dir(), Split::Train).unwrap().take(6400);
    let test = Dataset::load(&bundled_mnist_dir(), Split::Test).unwrap().take(1000);
    let mut exec =
        GpuExecutor::new(g.clone(), model.clone(), Optimizer::adam(1e-3), &model.init_params(0), 32).unwrap();
    let t0 = Instant::now();
    let mut losses = Vec::new();
    // The same loop `gpu-cnn train` runs, stopped by a step limit rather than epochs.
    let end = train::run(&mut exec, &train, start_position(0, 32, true), usize::MAX, Some(200), |e, event| {
        if let Event::Step { global, .. } = event {
            if global % 50 == 0 {
                losses.push(e.take_stats()?.mean_loss());
            }
        }
        Ok(())
    })
    .unwrap();
    assert_eq!((end.global_step, end.epoch, end.batch_in_epoch), (200, 1, 0), "6,400 / 32 = 200: one epoch");
    let ev = evaluate(&mut exec, &test, 500).unwrap();
    eprintln!(
        "{:?}: 200 steps of 32 in {:.1}s, loss per 50 steps {losses:.3?}, test accuracy {:.2}% (loss {:.3})",
        g.info.backend,
        t0.elapsed().as_secs_f64(),
        ev.accuracy * 100.0,
        ev.loss
    );
    assert!(losses[3] < losses[0] * 0.5, "loss did not fall: {losses:?}");
    assert!(ev.accuracy >= 0.90, "test accuracy {:.2}% < 90%", ev.accuracy * 100.0);
});

// Steps after the first create no buffers, bind groups, pipelines or memory:
// everything is built once per model and batch size.
per_backend!(no_resource_growth_across_steps, |g: &Arc<Gpu>| {
    let model = Model::seed();
    let (images, labels) = first_batch(4);
    let mut exec =
        GpuExecutor::new(g.clone(), model.clone(), Optimizer::sgd(0.01, 0.9), &model.init_params(1), 4).unwrap();
    let counts = |g: &Gpu| {
        g.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        let c = g.device.get_internal_counters().hal;
        [c.buffers.read(), c.bind_groups.read(), c.compute_pipelines.read(), c.buffer_memory.read()]
    };
    for _ in 0..2 {
        exec.train_step(&images, &labels).unwrap();
        exec.take_stats().unwrap();
        exec.predict(&images).unwrap();
    }
    let before = counts(g);
    // (GL does not count buffer bytes, so only the object counts prove the counters are on.)
    assert!(before[0] > 20 && before[1] > 20, "the resource counters are off: {before:?}");
    for _ in 0..10 {
        exec.train_step(&images, &labels).unwrap();
        exec.take_stats().unwrap();
        exec.predict(&images).unwrap();
    }
    assert_eq!(counts(g), before, "[buffers, bind groups, pipelines, buffer bytes] grew across steps");
});

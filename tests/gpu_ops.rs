//! Every GPU entry point, forward and backward, against the CPU reference (run in
//! f64), on every backend: odd sizes that are not multiples of the tiles, batch 1,
//! padding edges, strides, and dispatches folded over two dimensions.
//!
//! Tolerances, |Δ| ≤ atol + rtol·|ref|:
//! - forwards and element-wise ops: 1e-5 + 1e-4·|ref|, as the issue sets. Inputs have
//!   realistic magnitudes (activations in [-1,1], weights within PyTorch's init bound
//!   1/√fan_in) so a K-term dot product rounds to ~√K·6e-8 of its terms' size.
//! - gradient reductions (conv/linear weight and bias gradients, conv input gradients,
//!   sums of up to N·OH·OW = 50k terms of ±1 in different orders on GPU and CPU):
//!   1e-4 + 1e-4·|ref| + 2e-7·Σ|terms| is the f32 worst-case bound; we use the simpler
//!   1e-4 + 1e-3·|ref| and the shapes here keep Σ|terms| ≤ ~10⁴.
//!
//! ReLU and max-pool see exactly the same f32 inputs on both sides, so their masks
//! and argmax agree bit for bit and their results must match to rounding.

mod common;

use std::sync::{Arc, OnceLock};

use gpu_cnn::cpu::ops;
use gpu_cnn::dims::{ConvDims, LinearDims, PoolDims};
use gpu_cnn::gpu::kernels::{sgemm_tile, ConvEngine};
use gpu_cnn::gpu::{Dispatch, Gpu, Kernels};
use gpu_cnn::rng::Rng;

use common::{assert_close, to64, uniform};

const FWD: (f64, f64) = (1e-5, 1e-4);
const RED: (f64, f64) = (1e-4, 1e-3);

/// The device's kernels, a second set that folds dispatches over two dimensions
/// after only 3 workgroups (so every entry point's 2-D path runs on small shapes),
/// and, where the device runs the subgroup conv engine, the tiled engine too,
/// plain and folded: every engine the device can run is checked.
fn kernel_sets(g: &Arc<Gpu>) -> Vec<&Kernels> {
    // Built once per backend, on first use.
    static VK: OnceLock<Vec<Kernels>> = OnceLock::new();
    static GL: OnceLock<Vec<Kernels>> = OnceLock::new();
    let cell = if g.info.backend == wgpu::Backend::Vulkan { &VK } else { &GL };
    let extra = cell.get_or_init(|| {
        let folded = |engine| {
            let mut k = Kernels::new(&g.device, g.info.device_type, engine);
            k.set_max_workgroups_per_dim(3);
            k
        };
        let mut sets = vec![folded(g.kernels.conv_engine)];
        if g.kernels.conv_engine != ConvEngine::Tiled {
            sets.push(Kernels::new(&g.device, g.info.device_type, ConvEngine::Tiled));
            sets.push(folded(ConvEngine::Tiled));
        }
        sets
    });
    std::iter::once(&g.kernels).chain(extra).collect()
}

fn run(g: &Gpu, ds: &[Dispatch]) {
    g.run(&ds.iter().collect::<Vec<_>>());
}

fn conv_shapes() -> Vec<ConvDims> {
    vec![
        // the seed model's conv1 and conv3, small batch
        ConvDims { n: 2, c: 1, h: 28, w: 28, oc: 16, k: 5, stride: 1, pad: 2 },
        ConvDims { n: 1, c: 32, h: 7, w: 7, oc: 64, k: 5, stride: 1, pad: 2 },
        // odd everything, stride 2
        ConvDims { n: 3, c: 3, h: 7, w: 9, oc: 5, k: 3, stride: 2, pad: 1 },
        // out channels crossing a 32-wide tile, kernel as large as the padded input
        ConvDims { n: 1, c: 2, h: 5, w: 5, oc: 33, k: 5, stride: 1, pad: 2 },
        // no padding, stride 3 that skips input pixels
        ConvDims { n: 2, c: 4, h: 11, w: 10, oc: 7, k: 2, stride: 3, pad: 0 },
        // batch 1, 1x1 kernel
        ConvDims { n: 1, c: 17, h: 3, w: 3, oc: 3, k: 1, stride: 1, pad: 0 },
    ]
}

fn conv_case(g: &Gpu, k: &Kernels, d: ConvDims, seed: u64) -> [f64; 5] {
    let mut rng = Rng::new(seed);
    let bound = 1.0 / ((d.c * d.k * d.k) as f64).sqrt();
    // params holds a few leading values so the offsets are exercised too
    let lead = 3;
    let mut params = uniform(&mut rng, lead, -1.0, 1.0);
    params.extend(uniform(&mut rng, d.weight_len() + d.oc, -bound, bound));
    let (w_off, b_off) = (lead, lead + d.weight_len());
    let x = uniform(&mut rng, d.input_len(), -1.0, 1.0);
    let dy = uniform(&mut rng, d.output_len(), -1.0, 1.0);
    let (p64, x64, dy64) = (to64(&params), to64(&x), to64(&dy));
    let (w64, b64) = (&p64[w_off..b_off], &p64[b_off..]);

    let bx = g.upload("x", &x);
    let bp = g.upload("params", &params);
    let by = g.storage("y", d.output_len() as u64 * 4);
    let bdy = g.upload("dy", &dy);
    let bdx = g.storage("dx", d.input_len() as u64 * 4);
    let bpart = g.storage("partial", k.conv_partial_len(d) as u64 * 4);
    let bgrads = g.storage("grads", params.len() as u64 * 4);
    let mut ds = vec![k.conv_forward(&g.device, d, w_off, b_off, false, &bx, &bp, &by)];
    ds.push(k.conv_backward_input(&g.device, d, w_off, &bdy, &bp, &bdx));
    ds.extend(k.conv_backward_params(&g.device, d, w_off, b_off, &bx, &bdy, &bpart, &bgrads));
    run(g, &ds);

    let mut y = vec![0f64; d.output_len()];
    ops::conv2d_forward(&mut y, &x64, w64, b64, d);
    let (mut dx, mut dw, mut db) = (vec![0f64; d.input_len()], vec![0f64; d.weight_len()], vec![0f64; d.oc]);
    ops::conv2d_backward(Some(&mut dx), &mut dw, &mut db, &dy64, &x64, w64, d);
    let grads = g.read::<f32>(&bgrads).unwrap();
    let e_fwd = assert_close(&format!("conv forward {d:?}"), &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1);
    let e_dx = assert_close(&format!("conv backward_input {d:?}"), &g.read::<f32>(&bdx).unwrap(), &dx, RED.0, RED.1);
    let e_dw = assert_close(&format!("conv backward_weight {d:?}"), &grads[w_off..b_off], &dw, RED.0, RED.1);
    let e_db = assert_close(&format!("conv bias gradient {d:?}"), &grads[b_off..], &db, RED.0, RED.1);

    // The fused conv+ReLU epilogue against the reference composition.
    let fused = k.conv_forward(&g.device, d, w_off, b_off, true, &bx, &bp, &by);
    run(g, &[fused]);
    let mut yr = vec![0f64; y.len()];
    ops::relu_forward(&mut yr, &y);
    let e_fused = assert_close(&format!("conv forward+relu {d:?}"), &g.read::<f32>(&by).unwrap(), &yr, FWD.0, FWD.1);
    [e_fwd, e_dx, e_dw, e_db, e_fused]
}

fn report(g: &Gpu, op: &str, err: f64) {
    eprintln!("max |gpu - cpu| {:<8} {op:<28} {err:.3e}", format!("{:?}", g.info.backend));
}

per_backend!(conv2d, |g: &Arc<Gpu>| {
    let mut worst = [0f64; 5];
    for ks in kernel_sets(g) {
        for (i, d) in conv_shapes().into_iter().enumerate() {
            let e = conv_case(g, ks, d, 100 + i as u64);
            for j in 0..5 {
                worst[j] = worst[j].max(e[j]);
            }
        }
    }
    for (name, e) in [
        "conv2d.forward",
        "conv2d.backward_input",
        "conv2d.backward_weight",
        "conv2d db (backward_weight)",
        "conv2d.forward+relu",
    ]
    .iter()
    .zip(worst)
    {
        report(g, name, e);
    }
});

// A batch big enough that the real device must fold its dispatch over two dimensions:
// 5,400 images of 28x28 are 66,150 row tiles of 64 pixels (> 65,535).
per_backend!(conv2d_large_batch_2d_dispatch, |g: &Arc<Gpu>| {
    let d = ConvDims { n: 5400, c: 1, h: 28, w: 28, oc: 1, k: 3, stride: 1, pad: 1 };
    let rows = (d.n * d.oh() * d.ow()).div_ceil(64) as u32;
    assert!(rows > g.limits.max_compute_workgroups_per_dimension, "the shape no longer needs a 2-D dispatch");
    let mut rng = Rng::new(5);
    let x = uniform(&mut rng, d.input_len(), -1.0, 1.0);
    let params = uniform(&mut rng, 10, -0.3, 0.3);
    let dy = uniform(&mut rng, d.output_len(), -1.0, 1.0);
    let (bx, bp, bdy) = (g.upload("x", &x), g.upload("p", &params), g.upload("dy", &dy));
    let by = g.storage("y", d.output_len() as u64 * 4);
    let bdx = g.storage("dx", d.input_len() as u64 * 4);
    let fwd = g.kernels.conv_forward(&g.device, d, 0, 9, false, &bx, &bp, &by);
    assert!(fwd.workgroups()[1] > 1);
    let bwd = g.kernels.conv_backward_input(&g.device, d, 0, &bdy, &bp, &bdx);
    run(g, &[fwd, bwd]);
    let (mut y, mut dx) = (vec![0f64; d.output_len()], vec![0f64; d.input_len()]);
    let p64 = to64(&params);
    ops::conv2d_forward(&mut y, &to64(&x), &p64[..9], &p64[9..], d);
    let (mut dw, mut db) = (vec![0f64; 9], vec![0f64; 1]);
    ops::conv2d_backward(Some(&mut dx), &mut dw, &mut db, &to64(&dy), &to64(&x), &p64[..9], d);
    let e = assert_close("conv forward, 2-D dispatch", &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1);
    report(g, "conv2d.forward (2-D grid)", e);
    let e = assert_close("conv backward_input, 2-D dispatch", &g.read::<f32>(&bdx).unwrap(), &dx, RED.0, RED.1);
    report(g, "conv2d.backward_input (2-D)", e);
});

per_backend!(relu, |g: &Arc<Gpu>| {
    let mut worst = [0f64; 2];
    for ks in kernel_sets(g) {
        for (i, len) in [1usize, 255, 257, 3 * 256 * 4 + 13].into_iter().enumerate() {
            let mut rng = Rng::new(200 + i as u64);
            let x = uniform(&mut rng, len, -1.0, 1.0);
            let dy = uniform(&mut rng, len, -1.0, 1.0);
            let (bx, bdy) = (g.upload("x", &x), g.upload("dy", &dy));
            let (by, bdx) = (g.storage("y", len as u64 * 4), g.storage("dx", len as u64 * 4));
            run(g, &[ks.relu_forward(&g.device, len, &bx, &by), ks.relu_backward(&g.device, len, &bx, &bdy, &bdx)]);
            let (mut y, mut dx) = (vec![0f64; len], vec![0f64; len]);
            ops::relu_forward(&mut y, &to64(&x));
            ops::relu_backward(&mut dx, &to64(&dy), &to64(&x));
            worst[0] = worst[0].max(assert_close("relu forward", &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1));
            worst[1] = worst[1].max(assert_close("relu backward", &g.read::<f32>(&bdx).unwrap(), &dx, FWD.0, FWD.1));
        }
    }
    report(g, "relu.forward", worst[0]);
    report(g, "relu.backward", worst[1]);
});

per_backend!(maxpool, |g: &Arc<Gpu>| {
    let shapes = [
        PoolDims { n: 2, c: 16, h: 28, w: 28, k: 2, stride: 2 },
        PoolDims { n: 1, c: 3, h: 7, w: 7, k: 2, stride: 2 }, // odd size: last row/col dropped
        PoolDims { n: 3, c: 2, h: 9, w: 8, k: 3, stride: 2 }, // overlapping windows
        PoolDims { n: 1, c: 1, h: 5, w: 6, k: 3, stride: 3 },
    ];
    let mut worst = [0f64; 2];
    for ks in kernel_sets(g) {
        for (i, d) in shapes.into_iter().enumerate() {
            let mut rng = Rng::new(300 + i as u64);
            let mut x = uniform(&mut rng, d.input_len(), -1.0, 1.0);
            // a few exact ties, to check that the first maximum wins on the GPU too
            for j in (0..x.len().saturating_sub(1)).step_by(7) {
                x[j + 1] = x[j];
            }
            let dy = uniform(&mut rng, d.output_len(), -1.0, 1.0);
            let (bx, bdy) = (g.upload("x", &x), g.upload("dy", &dy));
            let by = g.storage("y", d.output_len() as u64 * 4);
            let bidx = g.storage("argmax", d.output_len() as u64 * 4);
            let bdx = g.storage("dx", d.input_len() as u64 * 4);
            run(
                g,
                &[ks.pool_forward(&g.device, d, &bx, &by, &bidx), ks.pool_backward(&g.device, d, &bidx, &bdy, &bdx)],
            );
            let (mut y, mut idx, mut dx) =
                (vec![0f64; d.output_len()], vec![0u32; d.output_len()], vec![0f64; d.input_len()]);
            ops::maxpool_forward(&mut y, &mut idx, &to64(&x), d);
            ops::maxpool_backward(&mut dx, &to64(&dy), &idx, d);
            assert_eq!(g.read::<u32>(&bidx).unwrap(), idx, "maxpool argmax {d:?}");
            worst[0] = worst[0].max(assert_close("maxpool forward", &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1));
            worst[1] = worst[1].max(assert_close("maxpool backward", &g.read::<f32>(&bdx).unwrap(), &dx, FWD.0, FWD.1));
        }
    }
    report(g, "maxpool.forward", worst[0]);
    report(g, "maxpool.backward", worst[1]);
});

per_backend!(linear, |g: &Arc<Gpu>| {
    // Batches from LINEAR_GEMM_MIN_BATCH (16) up also run on the subgroup conv GEMM.
    let shapes = [
        LinearDims { n: 4, inf: 3136, outf: 10 }, // the seed's classifier
        LinearDims { n: 64, inf: 3136, outf: 10 },
        LinearDims { n: 1, inf: 5, outf: 3 },
        LinearDims { n: 7, inf: 65, outf: 17 },
        LinearDims { n: 7000, inf: 3, outf: 10 }, // 70,000 workgroups: a 2-D dispatch on any device
    ];
    let mut worst = [0f64; 3];
    for ks in kernel_sets(g) {
        for (i, d) in shapes.into_iter().enumerate() {
            let mut rng = Rng::new(400 + i as u64);
            let bound = 1.0 / (d.inf as f64).sqrt();
            let mut params = uniform(&mut rng, 2, -1.0, 1.0);
            params.extend(uniform(&mut rng, d.outf * d.inf + d.outf, -bound, bound));
            let (w_off, b_off) = (2, 2 + d.outf * d.inf);
            let x = uniform(&mut rng, d.n * d.inf, -1.0, 1.0);
            let dy = uniform(&mut rng, d.n * d.outf, -1.0, 1.0);
            let (bx, bp, bdy) = (g.upload("x", &x), g.upload("params", &params), g.upload("dy", &dy));
            let by = g.storage("y", (d.n * d.outf) as u64 * 4);
            let bdx = g.storage("dx", (d.n * d.inf) as u64 * 4);
            let bg = g.storage("grads", params.len() as u64 * 4);
            let bpart = g.storage("partial", ks.linear_partial_len(d).max(1) as u64 * 4);
            let mut ds = vec![
                ks.linear_forward(&g.device, d, w_off, b_off, &bx, &bp, &by),
                ks.linear_backward_input(&g.device, d, w_off, &bdy, &bp, &bdx),
            ];
            ds.extend(ks.linear_backward_params(&g.device, d, w_off, b_off, &bx, &bdy, &bpart, &bg));
            run(g, &ds);
            let p64 = to64(&params);
            let (w, b) = (&p64[w_off..b_off], &p64[b_off..]);
            let mut y = vec![0f64; d.n * d.outf];
            ops::linear_forward(&mut y, &to64(&x), w, b, d);
            let (mut dx, mut dw, mut db) = (vec![0f64; d.n * d.inf], vec![0f64; w.len()], vec![0f64; d.outf]);
            ops::linear_backward(Some(&mut dx), &mut dw, &mut db, &to64(&dy), &to64(&x), w, d);
            let grads = g.read::<f32>(&bg).unwrap();
            worst[0] = worst[0].max(assert_close(
                &format!("linear forward {d:?}"),
                &g.read::<f32>(&by).unwrap(),
                &y,
                FWD.0,
                FWD.1,
            ));
            worst[1] = worst[1].max(assert_close(
                &format!("linear backward_input {d:?}"),
                &g.read::<f32>(&bdx).unwrap(),
                &dx,
                RED.0,
                RED.1,
            ));
            let mut dwb = dw.clone();
            dwb.extend(&db);
            worst[2] = worst[2].max(assert_close(
                &format!("linear backward_params {d:?}"),
                &grads[w_off..],
                &dwb,
                RED.0,
                RED.1,
            ));
        }
    }
    report(g, "linear.forward", worst[0]);
    report(g, "linear.backward_input", worst[1]);
    report(g, "linear.backward_params", worst[2]);
});

per_backend!(softmax_ce, |g: &Arc<Gpu>| {
    let mut worst = [0f64; 4];
    for ks in kernel_sets(g) {
        for (i, (n, classes)) in [(1usize, 10usize), (64, 10), (300, 7), (3, 1)].into_iter().enumerate() {
            let mut rng = Rng::new(500 + i as u64);
            let mut z = uniform(&mut rng, n * classes, -8.0, 8.0);
            z[0] = 90.0; // exp(90) overflows f32 unless the row max is subtracted
            let labels: Vec<u32> = (0..n).map(|_| rng.below(classes as u64) as u32).collect();
            let (bz, bl) = (g.upload("logits", &z), g.upload("labels", &labels));
            let bp = g.storage("probs", (n * classes) as u64 * 4);
            let bp2 = g.storage("probs2", (n * classes) as u64 * 4);
            let bloss = g.storage("losses", n as u64 * 4);
            let bdz = g.storage("dlogits", (n * classes) as u64 * 4);
            let bm = g.upload("metrics", &[1.5f32, 2.0, 3.0, 0.0]);
            run(
                g,
                &[
                    ks.softmax_forward(&g.device, n, classes, &bz, &bl, &bp, &bloss),
                    ks.softmax_accumulate(&g.device, n, classes, &bl, &bp, &bloss, &bm),
                    ks.softmax_backward(&g.device, n, classes, &bl, &bp, &bdz),
                    ks.softmax_predict(&g.device, n, classes, &bz, &bp2),
                ],
            );
            let (mut p, mut l, mut dz) = (vec![0f64; n * classes], vec![0f64; n], vec![0f64; n * classes]);
            let mean = ops::softmax_ce_forward(&mut p, &mut l, &to64(&z), &labels, n, classes);
            ops::softmax_ce_backward(&mut dz, &p, &labels, n, classes);
            worst[0] = worst[0].max(assert_close("softmax probs", &g.read::<f32>(&bp).unwrap(), &p, FWD.0, FWD.1));
            worst[1] = worst[1].max(assert_close("softmax losses", &g.read::<f32>(&bloss).unwrap(), &l, FWD.0, FWD.1));
            worst[2] = worst[2].max(assert_close("softmax dlogits", &g.read::<f32>(&bdz).unwrap(), &dz, FWD.0, FWD.1));
            worst[3] = worst[3].max(assert_close("softmax predict", &g.read::<f32>(&bp2).unwrap(), &p, FWD.0, FWD.1));
            // metrics started at [1.5, 2, 3]: the batch's loss sum, correct count and size are added
            let correct = ops::argmax_rows(&p, classes).iter().zip(&labels).filter(|(&a, &b)| a == b as usize).count();
            let want = [1.5 + mean * n as f64, 2.0 + correct as f64, 3.0 + n as f64, 0.0];
            assert_close("softmax accumulate", &g.read::<f32>(&bm).unwrap(), &want, RED.0, RED.1);
        }
    }
    report(g, "softmax_ce.forward (probs)", worst[0]);
    report(g, "softmax_ce.forward (loss)", worst[1]);
    report(g, "softmax_ce.backward", worst[2]);
    report(g, "softmax_ce.predict", worst[3]);
});

per_backend!(optimizers, |g: &Arc<Gpu>| {
    use gpu_cnn::executor::Optimizer;
    use gpu_cnn::gpu::kernels::OptimParams;
    let len = 1000;
    let mut worst = 0f64;
    for ks in kernel_sets(g) {
        for opt in [Optimizer::sgd(0.05, 0.9), Optimizer::adam(1e-3)] {
            let mut rng = Rng::new(600);
            let mut p = uniform(&mut rng, len, -1.0, 1.0);
            let (bp, bg) = (g.upload("params", &p), g.storage("grads", len as u64 * 4));
            let (bm, bv) = (g.storage("m", len as u64 * 4), g.storage("v", len as u64 * 4));
            let d = ks.optimizer(&g.device, opt, len, &bp, &bg, &bm, &bv);
            let (mut m, mut v) = (vec![0f32; len], vec![0f32; len]);
            for step in 1..=3 {
                let grads = uniform(&mut rng, len, -1e-2, 1e-2);
                g.queue.write_buffer(&bg, 0, bytemuck::cast_slice(&grads));
                g.queue.write_buffer(&d.uniform, 0, bytemuck::bytes_of(&OptimParams::new(opt, len, step)));
                g.run(&[&d]);
                match opt {
                    Optimizer::Sgd { lr, momentum } => ops::sgd_update(&mut p, &grads, &mut m, lr, momentum),
                    Optimizer::Adam { lr, beta1, beta2, eps } => {
                        let (s, c) = Optimizer::adam_factors(lr, beta1, beta2, step);
                        ops::adam_update(&mut p, &grads, &mut m, &mut v, beta1, beta2, eps, s, c)
                    }
                }
            }
            worst = worst.max(assert_close(
                &format!("{opt:?} params"),
                &g.read::<f32>(&bp).unwrap(),
                &to64(&p),
                FWD.0,
                FWD.1,
            ));
            assert_close(&format!("{opt:?} state"), &g.read::<f32>(&bm).unwrap(), &to64(&m), FWD.0, FWD.1);
        }
    }
    report(g, "optim.sgd/adam", worst);
});

// The reference SGEMM `gpu-cnn bench` divides the convs by: it must compute a
// matmul, or the shares it yields mean nothing. 128x128x48 fits both engines'
// tiles (64x64x16 and 32x64x4) with more than one tile each way.
per_backend!(reference_sgemm, |g: &Arc<Gpu>| {
    let [m, n, k] = [128, 128, 48];
    let mut rng = Rng::new(9);
    let a = uniform(&mut rng, m * k, -1.0, 1.0);
    let b = uniform(&mut rng, k * n, -1.0, 1.0);
    let mut want = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] = (0..k).map(|r| a[i * k + r] as f64 * b[r * n + j] as f64).sum();
        }
    }
    for ks in kernel_sets(g) {
        assert!(sgemm_tile(ks.conv_engine).iter().zip([m, n, k]).all(|(t, x)| x % t == 0 && x / t >= 2));
        let (ba, bb, bc) = (g.upload("a", &a), g.upload("b", &b), g.storage("c", (m * n * 4) as u64));
        run(g, &[ks.sgemm(&g.device, [m, n, k], &ba, &bb, &bc).unwrap()]);
        let e = assert_close("sgemm", &g.read::<f32>(&bc).unwrap(), &want, FWD.0, FWD.1);
        report(g, &format!("sgemm ({})", ks.conv_engine.name()), e);
        assert!(ks.sgemm(&g.device, [m + 1, n, k], &ba, &bb, &bc).is_err(), "a size off the tile must be refused");
    }
});

// lavapipe (8-lane subgroups) must run the subgroup engine, or its speed silently
// goes; GL has no subgroups and runs the tiled one. Both are checked above either way.
per_backend!(conv_engine_matches_the_adapter, |g: &Arc<Gpu>| {
    let want = match g.info.backend {
        wgpu::Backend::Vulkan if g.info.name.contains("llvmpipe") => ConvEngine::Subgroup,
        wgpu::Backend::Gl => ConvEngine::Tiled,
        _ => return,
    };
    assert_eq!(g.kernels.conv_engine, want, "{} (is GPU_CNN_CONV set?)", g.describe());
});

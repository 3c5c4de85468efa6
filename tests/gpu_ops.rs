//! Every GPU entry point, forward and backward, against the CPU reference (run in
//! f64), on every backend and every GEMM engine the device can run, plain and with
//! dispatches folded over two dimensions: odd sizes that are not multiples of the
//! tiles, batch 1, padding edges, strides. Failure messages name the backend, the
//! engine and the variant (e.g. `Vulkan/subgroup, folded`).
//!
//! Tolerances, |Δ| ≤ atol + rtol·|ref|:
//! - forwards and element-wise ops: 1e-5 + 1e-4·|ref|. Inputs have realistic
//!   magnitudes (activations in [-1,1], weights within PyTorch's init bound
//!   1/√fan_in) so a K-term dot product rounds to ~√K·6e-8 of its terms' size.
//! - gradient reductions (conv/linear weight and bias gradients, conv input gradients,
//!   sums of up to N·OH·OW = 50k terms of ±1 in different orders on GPU and CPU):
//!   1e-4 + 1e-4·|ref| + 2e-7·Σ|terms| is the f32 worst-case bound; we use the simpler
//!   1e-4 + 1e-3·|ref| and the shapes here keep Σ|terms| ≤ ~10⁴.
//!
//! ReLU and max-pool see exactly the same f32 inputs on both sides, so their masks
//! and argmax agree bit for bit and their results must match to rounding.

mod common;

use std::sync::Arc;

use gpu_cnn::cpu::ops;
use gpu_cnn::dims::{ConvDims, ElemDims, LinearDims, PoolDims};
use gpu_cnn::executor::Optimizer;
use gpu_cnn::gpu::ops::conv::{ConvKernels, DIRECT_MAX_REDUCTION};
use gpu_cnn::gpu::ops::linear::LinearRoute;
use gpu_cnn::gpu::ops::optim::{OptimBuffers, OptimUniform};
use gpu_cnn::gpu::ops::pool::PoolOutput;
use gpu_cnn::gpu::ops::softmax_ce::SoftmaxBuffers;
use gpu_cnn::gpu::ops::texture_copy::TextureCopies;
use gpu_cnn::gpu::ops::WeightGrads;
use gpu_cnn::gpu::params::Params;
use gpu_cnn::gpu::{BackendChoice, Dispatch, GemmEngine, Gpu, Kernels};
use gpu_cnn::model::ParamOffsets;
use gpu_cnn::rng::Rng;

use common::{assert_close, assert_within, kernel_sets, to64, uniform, KernelSet, GPU_TILES};

const FWD: (f64, f64) = (1e-5, 1e-4);
const RED: (f64, f64) = (1e-4, 1e-3);

fn run(g: &Gpu, ds: &[Dispatch]) {
    g.run(&ds.iter().collect::<Vec<_>>());
}

fn report(g: &Gpu, op: &str, err: f64) {
    eprintln!("max |gpu - cpu| {:<8} {op:<36} {err:.3e}", format!("{:?}", g.info.backend));
}

/// Parameters with a few leading values before the layer's, so offsets are exercised:
/// (params, where the layer's weight and bias start).
fn params_with_lead(rng: &mut Rng, weights: usize, biases: usize, bound: f64) -> (Vec<f32>, ParamOffsets) {
    let lead = 3;
    let mut params = uniform(rng, lead, -1.0, 1.0);
    params.extend(uniform(rng, weights + biases, -bound, bound));
    (params, ParamOffsets { weight: lead, bias: lead + weights })
}

fn conv_shapes() -> Vec<ConvDims> {
    vec![
        // the tutorial model's conv1 and conv3, small batch
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
        // single-channel layers for the direct forward: stride 2 on odd sizes with 20
        // channels (a group of 16 and one of 4), and a kernel as large as the image
        ConvDims { n: 3, c: 1, h: 9, w: 7, oc: 20, k: 3, stride: 2, pad: 1 },
        ConvDims { n: 1, c: 1, h: 5, w: 5, oc: 3, k: 5, stride: 1, pad: 2 },
        // 5x5 with four channels a side (kernel rows in fours) and pad 1: rows of 13
        // and 11 pixels padded to 16 and 12
        ConvDims { n: 3, c: 4, h: 10, w: 13, oc: 8, k: 5, stride: 1, pad: 1 },
        // 5x5 with pad 3 (the output larger than the input, rows of 3 and 5 padded
        // to 4 and 8), and with no padding (outputs 2 wide)
        ConvDims { n: 2, c: 3, h: 4, w: 3, oc: 5, k: 5, stride: 1, pad: 3 },
        ConvDims { n: 2, c: 2, h: 9, w: 6, oc: 3, k: 5, stride: 1, pad: 0 },
        // wide, with grids large enough for the tiled engine's wide tile on any device:
        // forward (40 channels of 16x48x48 pixels) and backward to the input (the same)
        ConvDims { n: 16, c: 3, h: 48, w: 48, oc: 40, k: 3, stride: 1, pad: 1 },
        ConvDims { n: 16, c: 40, h: 48, w: 48, oc: 6, k: 3, stride: 1, pad: 1 },
    ]
}

/// One conv layer's data, random with realistic magnitudes (inputs in [-1,1],
/// weights within PyTorch's init bound, gradients within ±dy_size), and its buffers.
struct ConvData {
    params: Vec<f32>,
    offs: ParamOffsets,
    x: Vec<f32>,
    dy: Vec<f32>,
    bx: wgpu::Buffer,
    bp: Params,
    by: wgpu::Buffer,
    bdy: wgpu::Buffer,
    bdx: wgpu::Buffer,
    scratch: wgpu::Buffer,
    bgrads: wgpu::Buffer,
}

fn conv_data(g: &Gpu, k: &ConvKernels, d: ConvDims, seed: u64, dy_size: f64) -> ConvData {
    conv_data_as(g, k, d, seed, dy_size, |_, _, _| {})
}

/// `conv_data` with the values passed through `adjust(params, x, dy)` before upload.
fn conv_data_as(
    g: &Gpu,
    k: &ConvKernels,
    d: ConvDims,
    seed: u64,
    dy_size: f64,
    adjust: impl Fn(&mut [f32], &mut [f32], &mut [f32]),
) -> ConvData {
    let mut rng = Rng::new(seed);
    let bound = 1.0 / ((d.c * d.k * d.k) as f64).sqrt();
    let (mut params, offs) = params_with_lead(&mut rng, d.weight_len(), d.oc, bound);
    let mut x = uniform(&mut rng, d.input_len(), -1.0, 1.0);
    let mut dy = uniform(&mut rng, d.output_len(), -dy_size, dy_size);
    adjust(&mut params, &mut x, &mut dy);
    ConvData {
        bx: g.upload("x", &x),
        bp: Params::upload(g, "params", &params).unwrap(),
        by: g.storage("y", d.output_len() as u64 * 4),
        bdy: g.upload("dy", &dy),
        bdx: g.storage("dx", d.input_len() as u64 * 4),
        scratch: g.storage("scratch", k.scratch_len(d) as u64 * 4),
        bgrads: g.storage("grads", params.len() as u64 * 4),
        params,
        offs,
        x,
        dy,
    }
}

/// One conv layer's CPU reference in f64: the forward with bias (no ReLU) and, for
/// `dy`, the gradients of the input, the weights and the bias.
struct ConvRef {
    y: Vec<f64>,
    dx: Vec<f64>,
    dw: Vec<f64>,
    db: Vec<f64>,
}

fn conv_reference(d: ConvDims, w: &[f64], b: &[f64], x: &[f64], dy: &[f64]) -> ConvRef {
    let mut y = vec![0f64; d.output_len()];
    ops::conv2d_forward(&mut y, x, w, b, d);
    let (mut dx, mut dw, mut db) = (vec![0f64; d.input_len()], vec![0f64; d.weight_len()], vec![0f64; d.oc]);
    ops::conv2d_backward(Some(&mut dx), &mut dw, &mut db, dy, x, w, d);
    ConvRef { y, dx, dw, db }
}

fn conv_case(g: &Gpu, set: &KernelSet, d: ConvDims, seed: u64) -> [f64; 5] {
    let (k, at) = (&set.kernels.conv, |what: &str| format!("{} conv {what} {d:?}", set.label));
    let ConvData { params, offs, x, dy, bx, bp, by, bdy, bdx, scratch, bgrads } = conv_data(g, k, d, seed, 1.0);
    // One copy a buffer, as an executor keeps them: every product below fills the same textures.
    let copies = TextureCopies::default();
    let (p64, x64, dy64) = (to64(&params), to64(&x), to64(&dy));
    let (w64, b64) = (&p64[offs.weight..offs.bias], &p64[offs.bias..]);
    let mut ds = vec![
        k.forward(d, offs, false, &bx, &bp, &by, &copies),
        k.backward_input(d, offs, &bdy, &bp, &bdx, None, &copies),
    ];
    // Short reductions take the direct forward where the engine wants it, the rest the GEMM.
    let direct = d.c * d.k * d.k <= DIRECT_MAX_REDUCTION && set.kernels.engine != GemmEngine::Subgroup;
    assert_eq!(k.direct_forward(d), direct, "{}", at(""));
    assert_eq!(ds[0].name == "conv2d_direct.forward", direct, "{}: forward ran {}", at(""), ds[0].name);
    // Stride-1 5x5 kernels run kernel row by kernel row where the engine has such products.
    let rows = k.by_kernel_rows(d);
    assert_eq!(rows, set.kernels.engine == GemmEngine::Subgroup && d.stride == 1 && d.k == 5, "{}", at(""));
    assert_eq!(ds[0].name.contains(".forward_rows"), rows && !direct, "{}: forward ran {}", at(""), ds[0].name);
    assert_eq!(ds[1].name.contains(".backward_input_rows"), rows, "{}: input gradient ran {}", at(""), ds[1].name);
    // The tiled engine's tile configurations, each where it is meant to run.
    if set.label.contains("/tiled") {
        let wide = |p: &str| ds.iter().any(|dsp| dsp.name.starts_with(&format!("conv2d_tiled.{p}@64x128")));
        // A CPU driver keeps to the narrow tile, unless the set chooses as a GPU does.
        let gpu_rules = g.info.device_type != wgpu::DeviceType::Cpu || set.label.contains(GPU_TILES);
        let big = |pixels: usize, channels: usize| gpu_rules && pixels >= 256 * 128 && channels > 32;
        assert_eq!(wide("forward"), !direct && big(d.n * d.oh() * d.ow(), d.oc), "{}: forward tile", at(""));
        assert_eq!(wide("backward_input"), big(d.n * d.h * d.w, d.c), "{}: input tile", at(""));
    }
    ds.extend(k.backward_weight_bias(
        d,
        offs,
        &bx,
        &bdy,
        &WeightGrads { scratch: &scratch, grads: &bgrads, accumulate: false },
        &copies,
    ));
    assert_eq!(
        ds[2].name.contains(".backward_weight_bias_rows"),
        rows,
        "{}: weight gradient ran {}",
        at(""),
        ds[2].name
    );
    if set.label.contains("/tiled") {
        // Weight gradients choose by channels alone, where the wide tile is usable.
        let gpu_rules = g.info.device_type != wgpu::DeviceType::Cpu || set.label.contains(GPU_TILES);
        let wide = ds[2].name.starts_with("conv2d_tiled.backward_weight_bias@64x128");
        assert_eq!(wide, gpu_rules && d.oc > 32, "{}: weight-gradient tile ran {}", at(""), ds[2].name);
    }
    // A folded set is one: past 3 workgroups its dispatches go on along y.
    if set.label.ends_with(", folded") {
        for dsp in &ds {
            assert!(dsp.workgroups()[0] <= 3, "{}: {} is not folded: {:?}", at(""), dsp.name, dsp.workgroups());
        }
    }
    run(g, &ds);

    let ConvRef { y, dx, dw, db } = conv_reference(d, w64, b64, &x64, &dy64);
    let grads = g.read::<f32>(&bgrads).unwrap();
    let e_fwd = assert_close(&at("forward"), &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1);
    let e_dx = assert_close(&at("backward_input"), &g.read::<f32>(&bdx).unwrap(), &dx, RED.0, RED.1);
    let e_dw = assert_close(&at("weight gradient"), &grads[offs.weight..offs.bias], &dw, RED.0, RED.1);
    let e_db = assert_close(&at("bias gradient"), &grads[offs.bias..], &db, RED.0, RED.1);
    // A second micro-batch of the same data adds the same gradients again.
    run(
        g,
        &k.backward_weight_bias(
            d,
            offs,
            &bx,
            &bdy,
            &WeightGrads { scratch: &scratch, grads: &bgrads, accumulate: true },
            &copies,
        ),
    );
    let twice: Vec<f64> = dw.iter().chain(&db).map(|v| 2.0 * v).collect();
    assert_close(
        &at("accumulated gradients"),
        &g.read::<f32>(&bgrads).unwrap()[offs.weight..],
        &twice,
        2.0 * RED.0,
        RED.1,
    );

    // The backward of a ReLU before the conv, done in backward_input's epilogue:
    // the gradient is zero where the input (the ReLU's output) is not positive.
    run(g, &[k.backward_input(d, offs, &bdy, &bp, &bdx, Some(&bx), &copies)]);
    let mut gated = vec![0f64; dx.len()];
    ops::relu_backward(&mut gated, &dx, &x64);
    assert_close(&at("backward_input+relu"), &g.read::<f32>(&bdx).unwrap(), &gated, RED.0, RED.1);

    // The fused conv+ReLU epilogue against the reference composition.
    run(g, &[k.forward(d, offs, true, &bx, &bp, &by, &copies)]);
    let mut yr = vec![0f64; y.len()];
    ops::relu_forward(&mut yr, &y);
    let e_fused = assert_close(&at("forward+relu"), &g.read::<f32>(&by).unwrap(), &yr, FWD.0, FWD.1);

    // A 2x2 max-pool of stride 2 in the kernel-row forward's epilogue: each pixel is
    // the same sum as without it, so the pooled values and argmaxes must be exactly
    // the CPU reference's pooling of the unfused forward's output, ties included
    // (the ReLU makes windows of zeros). The outputs start as garbage.
    let p = PoolDims { n: d.n, c: d.oc, h: d.oh(), w: d.ow(), k: 2, stride: 2 };
    let pools = k.pools_in_epilogue(d, p);
    assert_eq!(pools, rows && d.oh() >= 2 && d.ow() >= 2, "{}", at("pools in the epilogue"));
    for relu in [false, true].into_iter().filter(|_| pools) {
        run(g, &[k.forward(d, offs, relu, &bx, &bp, &by, &copies)]);
        let (mut want, mut want_at) = (vec![0f32; p.output_len()], vec![0u32; p.output_len()]);
        ops::maxpool_forward(&mut want, &mut want_at, &g.read::<f32>(&by).unwrap(), p);
        let garbage = vec![7.0f32; p.output_len()];
        let (bpy, bat) = (g.upload("pooled y", &garbage), g.upload("argmax", &garbage));
        let fused = k.forward_pooled(d, offs, relu, &bx, &bp, PoolOutput { d: p, y: &bpy, argmax: &bat }, &copies);
        assert!(fused.name.ends_with("+pool"), "{}: ran {}", at("pooled forward"), fused.name);
        run(g, &[fused]);
        let what = at(&format!("pooled forward (relu: {relu})"));
        assert_eq!(g.read::<f32>(&bpy).unwrap(), want, "{what}: values");
        assert_eq!(g.read::<u32>(&bat).unwrap(), want_at, "{what}: argmax");

        // The pool's backward after it, as the trainer runs it: the unpooled output
        // was never written (here it holds NaNs), so the ReLU's gate must come from
        // the pooled output. Gradients are routed, not summed: exact.
        let unwritten = g.upload("unwritten x", &vec![f32::NAN; d.output_len()]);
        let pdy = uniform(&mut Rng::new(seed + 1), p.output_len(), -1.0, 1.0);
        let (bpdy, bpdx) = (g.upload("pooled dy", &pdy), g.upload("unpooled dx", &vec![7.0f32; d.output_len()]));
        let pooled = PoolOutput { d: p, y: &bpy, argmax: &bat };
        run(g, &[set.kernels.pool.backward(pooled, &unwritten, &bpdy, &bpdx, relu)]);
        let mut routed = vec![0f64; d.output_len()];
        ops::maxpool_backward(&mut routed, &to64(&pdy), &want_at, p);
        let mut want_dx = routed.clone();
        if relu {
            ops::relu_backward(&mut want_dx, &routed, &to64(&g.read::<f32>(&by).unwrap()));
        }
        assert_close(
            &format!("{what}: the pool's backward after it"),
            &g.read::<f32>(&bpdx).unwrap(),
            &want_dx,
            0.0,
            0.0,
        );
    }
    [e_fwd, e_dx, e_dw, e_db, e_fused]
}

per_backend!(conv2d, |g: &Arc<Gpu>| {
    let mut worst = [0f64; 5];
    for set in kernel_sets(g) {
        for (i, d) in conv_shapes().into_iter().enumerate() {
            let e = conv_case(g, set, d, 100 + i as u64);
            for j in 0..5 {
                worst[j] = worst[j].max(e[j]);
            }
        }
    }
    let names = ["forward", "backward_input", "weight gradient", "bias gradient", "forward+relu"];
    for (name, e) in names.iter().zip(worst) {
        report(g, &format!("conv2d {name}"), e);
    }
});

// Where the kernel-row products load their operands from texture copies
// (src/gpu/ops/texture_copy.rs), the copies follow their buffers. The dispatches are
// built once and run twice; between the runs the weights change on the device (as the
// optimizer changes them) and are refreshed, and x and dy are rewritten (as the
// previous layer rewrites them each step), so the second run must copy them again
// before its products read them: the forward, input gradient and weight gradient
// must match the CPU with the new values (forward and reduction tolerances); and
// weights then written to the buffer alone must not reach the forward. The
// 383 parameters fill a row of 256 texels and part of the next, weights in both. GL
// runs no such products and keeps no copy.
per_backend!(texture_copies_follow_their_buffers, |g: &Arc<Gpu>| {
    let d = ConvDims { n: 2, c: 3, h: 6, w: 9, oc: 5, k: 5, stride: 1, pad: 2 };
    let mut rng = Rng::new(41);
    let (before, offs) = params_with_lead(&mut rng, d.weight_len(), d.oc, 0.3);
    let after: Vec<f32> = before.iter().map(|&p| 0.5 - 0.7 * p).collect();
    let values = |rng: &mut Rng| (uniform(rng, d.input_len(), -1.0, 1.0), uniform(rng, d.output_len(), -1.0, 1.0));
    let ((x0, dy0), (x, dy)) = (values(&mut rng), values(&mut rng));
    let bp = Params::upload(g, "params", &before).unwrap();
    let sets: Vec<&KernelSet> = kernel_sets(g).iter().filter(|s| s.kernels.conv.operands_from_textures()).collect();
    if g.info.backend == wgpu::Backend::Gl {
        assert!(sets.is_empty() && bp.texture_copy().is_none(), "{}: GL reads a texture copy", g.describe());
        return;
    }
    assert!(!sets.is_empty() && bp.texture_copy().is_some(), "{}: no kernels read texture copies", g.describe());
    let p64 = to64(&after);
    let want = conv_reference(d, &p64[offs.weight..offs.bias], &p64[offs.bias..], &to64(&x), &to64(&dy));
    for set in sets {
        let k = &set.kernels.conv;
        bp.write(&g.queue, &before);
        let (bx, bdy) = (g.upload("x", &x0), g.upload("dy", &dy0));
        let (by, bdx) = (g.storage("y", d.output_len() as u64 * 4), g.storage("dx", d.input_len() as u64 * 4));
        let (scratch, grads) = (g.storage("scratch", k.scratch_len(d) as u64 * 4), g.storage("grads", 383 * 4));
        let to = WeightGrads { scratch: &scratch, grads: &grads, accumulate: false };
        let copies = TextureCopies::default();
        let mut ds = vec![
            k.forward(d, offs, false, &bx, &bp, &by, &copies),
            k.backward_input(d, offs, &bdy, &bp, &bdx, None, &copies),
        ];
        ds.extend(k.backward_weight_bias(d, offs, &bx, &bdy, &to, &copies));
        run(g, &ds);
        g.queue.write_buffer(bp.buffer(), 0, bytemuck::cast_slice(&after));
        let mut enc = g.device.create_command_encoder(&Default::default());
        bp.refresh(&mut enc);
        g.queue.submit([enc.finish()]);
        g.queue.write_buffer(&bx, 0, bytemuck::cast_slice(&x));
        g.queue.write_buffer(&bdy, 0, bytemuck::cast_slice(&dy));
        run(g, &ds);
        let got_grads = g.read::<f32>(&grads).unwrap();
        let (got_w, got_b) = got_grads.split_at(offs.bias);
        for (what, got, want, (atol, rtol)) in [
            ("forward", g.read::<f32>(&by).unwrap(), &want.y, FWD),
            ("input gradient", g.read::<f32>(&bdx).unwrap(), &want.dx, RED),
            ("weight gradient", got_w[offs.weight..].to_vec(), &want.dw, RED),
            ("bias gradient", got_b.to_vec(), &want.db, RED),
        ] {
            let what = format!("{}: {what}, second run", set.label);
            assert_close(&what, &got, want, atol, rtol);
        }
        // The products read the copy, not the buffer: weights written to the buffer
        // alone (no refresh) leave the forward as it was. (The epilogue reads the
        // biases from the buffer, so they stay.)
        let stale = &before[offs.weight..offs.bias];
        g.queue.write_buffer(bp.buffer(), 4 * offs.weight as u64, bytemuck::cast_slice(stale));
        run(g, &ds[..1]);
        assert_close(
            &format!("{}: forward from a stale copy", set.label),
            &g.read::<f32>(&by).unwrap(),
            &want.y,
            FWD.0,
            FWD.1,
        );
    }
});

// The mixed-precision engines (f16 operands, f32 sums) against the f64 CPU reference,
// with the bound f16 rounding allows: WGSL lets a conversion to f16 take either
// neighbour, so each operand is within 2^-10 of its value (2^-11 if rounded to
// nearest), each product within 2^-9, and a sum within 2^-9 of the sum of its terms'
// magnitudes, which the CPU reference computes with |x|, |W| and |dy|:
// |Δ| <= 2^-9·Σ|terms| + 1e-3·|ref| + 1e-9 (the f32 summation's share as in the f32
// tests, scaled down with the data). Gradients alternate between ±1 and ±1e-6, which
// f16 holds only as subnormals with 4 or 5 bits: the engine's gradient scaling must
// keep them within the bound. And the engine must not be f32
// in disguise: somewhere its error exceeds what f32 rounding could make (2^-20 of
// Σ|terms|).
//
// This machine has no tensor cores; coop-emulated (the same staging, scaling and
// epilogues as coop, conv2d_mixed.wgsl, and the same arithmetic) runs wherever f16
// shaders do, and CI's lavapipe must run it. `coop` itself runs where an adapter
// reports 16x16x16 f16 -> f32 cooperative matrices, on a device of its own.
fn mixed_engines(g: &Arc<Gpu>) -> Vec<(String, Arc<Gpu>, Kernels)> {
    let mut sets = Vec::new();
    if g.engines.contains(&GemmEngine::CoopEmulated) {
        for (variant, max) in [("", g.limits.max_compute_workgroups_per_dimension), (", folded", 3)] {
            let k = g.kernels_for(GemmEngine::CoopEmulated, max).unwrap();
            sets.push((format!("{:?}/coop-emulated{variant}", g.info.backend), g.clone(), k));
        }
    }
    if let Some(coop) = common::coop_device(g) {
        let k = coop.kernels_for(GemmEngine::Coop, g.limits.max_compute_workgroups_per_dimension).unwrap();
        sets.push((format!("{:?}/coop on {}", coop.info.backend, coop.info.name), coop, k));
    }
    sets
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

fn mixed_bound(refs: &[f64], magnitudes: &[f64]) -> Vec<f64> {
    refs.iter().zip(magnitudes).map(|(r, m)| m / 512.0 + 1e-3 * r.abs() + 1e-9).collect()
}

/// Values whose f16 conversion, scaled as conv2d_mixed.wgsl stages them (dy times
/// its GRAD_SCALE, 2^12), and every product are exact, so that a mixed-precision
/// engine rounds only its f32 sums: inputs multiples of 2^-8 in [-1,1], weights of
/// 2^-12 (within 0.5), gradients of 2^-10 in [-1,1], each an 11-bit f16 mantissa
/// or less, scaled gradients within f16's range and none subnormal.
fn exact_in_f16(params: &mut [f32], x: &mut [f32], dy: &mut [f32]) {
    let grid = |v: &mut [f32], step: f32| v.iter_mut().for_each(|e| *e = (*e / step).round() * step);
    grid(params, 2f32.powi(-12));
    grid(x, 2f32.powi(-8));
    grid(dy, 2f32.powi(-10));
}

per_backend!(conv2d_mixed_precision, gl ignored: "wgpu's GL backend has no f16 in shaders", |g: &Arc<Gpu>| {
    let sets = mixed_engines(g);
    if g.info.backend == wgpu::Backend::Vulkan && g.info.name.contains("llvmpipe") {
        assert!(!sets.is_empty(), "{}: lavapipe has f16 shaders, so coop-emulated must run", g.describe());
    }
    if sets.is_empty() {
        eprintln!("\n*** SKIPPED: {} has no f16 in shaders, so no mixed-precision engine ***\n", g.describe());
    }
    for (label, g, kernels) in &sets {
        let k = &kernels.conv;
        // Operands exact in f16: then only the f32 sums round, and every output must
        // be as close as an f32 engine's (RED), which a lost tile or a term summed
        // twice is not, however small.
        for (i, d) in conv_shapes().into_iter().enumerate() {
            let at = |what: &str| format!("{label} conv {what} {d:?}, operands exact in f16");
            let ConvData { params, offs, x, dy, bx, bp, by, bdy, bdx, scratch, bgrads } =
                conv_data_as(g, k, d, 750 + i as u64, 1.0, exact_in_f16);
            let (p64, x64, dy64) = (to64(&params), to64(&x), to64(&dy));
            let (w64, b64) = (&p64[offs.weight..offs.bias], &p64[offs.bias..]);
            let to = WeightGrads { scratch: &scratch, grads: &bgrads, accumulate: false };
            let copies = TextureCopies::default();
            let mut ds = vec![k.forward(d, offs, false, &bx, &bp, &by, &copies), k.backward_input(d, offs, &bdy, &bp, &bdx, None, &copies)];
            ds.extend(k.backward_weight_bias(d, offs, &bx, &bdy, &to, &copies));
            run(g, &ds);
            let ConvRef { y, dx, dw, db } = conv_reference(d, w64, b64, &x64, &dy64);
            let grads = g.read::<f32>(&bgrads).unwrap();
            assert_close(&at("forward"), &g.read::<f32>(&by).unwrap(), &y, RED.0, RED.1);
            assert_close(&at("backward_input"), &g.read::<f32>(&bdx).unwrap(), &dx, RED.0, RED.1);
            assert_close(&at("weight gradient"), &grads[offs.weight..offs.bias], &dw, RED.0, RED.1);
            assert_close(&at("bias gradient"), &grads[offs.bias..], &db, RED.0, RED.1);
        }
        // Random operands, rounded to f16: within the bound of that rounding.
        let (mut beyond_f32, mut worst) = (false, [0f64; 4]);
        for (i, d) in conv_shapes().into_iter().enumerate() {
            let at = |what: &str| format!("{label} conv {what} {d:?}");
            let dy_size = if i % 2 == 0 { 1e-6 } else { 1.0 };
            let ConvData { params, offs, x, dy, bx, bp, by, bdy, bdx, scratch, bgrads } =
                conv_data(g, k, d, 700 + i as u64, dy_size);
            let (p64, x64, dy64) = (to64(&params), to64(&x), to64(&dy));
            let (w64, b64) = (&p64[offs.weight..offs.bias], &p64[offs.bias..]);
            let to = WeightGrads { scratch: &scratch, grads: &bgrads, accumulate: false };
            let copies = TextureCopies::default();
            let mut ds =
                vec![k.forward(d, offs, true, &bx, &bp, &by, &copies), k.backward_input(d, offs, &bdy, &bp, &bdx, None, &copies)];
            ds.extend(k.backward_weight_bias(d, offs, &bx, &bdy, &to, &copies));
            run(g, &ds);

            let ConvRef { y, dx, dw, db } = conv_reference(d, w64, b64, &x64, &dy64);
            let mut yr = vec![0f64; y.len()];
            ops::relu_forward(&mut yr, &y);
            // The same sums over the terms' magnitudes.
            let ConvRef { y: y_mag, dx: dx_mag, dw: dw_mag, db: db_mag } =
                conv_reference(d, &abs(w64), &vec![0.0; d.oc], &abs(&x64), &abs(&dy64));

            let got_y = g.read::<f32>(&by).unwrap();
            let got_dx = g.read::<f32>(&bdx).unwrap();
            let grads = g.read::<f32>(&bgrads).unwrap();
            let e = [
                assert_within(&at("forward+relu"), &got_y, &yr, &mixed_bound(&y, &y_mag)),
                assert_within(&at("backward_input"), &got_dx, &dx, &mixed_bound(&dx, &dx_mag)),
                assert_within(&at("weight gradient"), &grads[offs.weight..offs.bias], &dw, &mixed_bound(&dw, &dw_mag)),
                assert_within(&at("bias gradient"), &grads[offs.bias..], &db, &mixed_bound(&db, &db_mag)),
            ];
            for j in 0..4 {
                worst[j] = worst[j].max(e[j]);
            }
            beyond_f32 |= got_dx.iter().zip(&dx).zip(&dx_mag).any(|((g, r), m)| (*g as f64 - r).abs() > m / 1048576.0);
        }
        assert!(beyond_f32, "{label}: never off by more than f32 rounding: are the operands f16?");
        let names = ["forward+relu", "backward_input", "weight gradient", "bias gradient"];
        for (name, e) in names.iter().zip(worst) {
            report(g, &format!("conv2d {name} ({label})"), e);
        }
    }
});

// A batch big enough that the device must fold its dispatch over two dimensions:
// 5,400 images of 28x28 are 66,150 tiles of 64 pixels (> 65,535).
per_backend!(conv2d_large_batch_2d_dispatch, |g: &Arc<Gpu>| {
    let d = ConvDims { n: 5400, c: 1, h: 28, w: 28, oc: 1, k: 3, stride: 1, pad: 1 };
    let tiles = (d.n * d.oh() * d.ow()).div_ceil(64) as u32;
    assert!(tiles > g.limits.max_compute_workgroups_per_dimension, "the shape no longer needs a 2-D dispatch");
    let mut rng = Rng::new(5);
    let x = uniform(&mut rng, d.input_len(), -1.0, 1.0);
    let params = uniform(&mut rng, 10, -0.3, 0.3);
    let dy = uniform(&mut rng, d.output_len(), -1.0, 1.0);
    let (bx, bp, bdy) = (g.upload("x", &x), Params::upload(g, "p", &params).unwrap(), g.upload("dy", &dy));
    let by = g.storage("y", d.output_len() as u64 * 4);
    let bdx = g.storage("dx", d.input_len() as u64 * 4);
    let offs = ParamOffsets { weight: 0, bias: 9 };
    let p64 = to64(&params);
    let ConvRef { y, dx, .. } = conv_reference(d, &p64[..9], &p64[9..], &to64(&x), &to64(&dy));
    let (k, copies) = (&g.kernels.conv, TextureCopies::default());
    let fwd = k.forward(d, offs, false, &bx, &bp, &by, &copies);
    assert!(fwd.workgroups()[1] > 1, "{}: not folded", g.describe());
    run(g, &[fwd, k.backward_input(d, offs, &bdy, &bp, &bdx, None, &copies)]);
    let what = |op: &str| format!("{:?}/{} conv {op}, 2-D dispatch", g.info.backend, g.kernels.engine);
    let e = assert_close(&what("forward"), &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1);
    report(g, "conv2d forward (2-D grid)", e);
    let e = assert_close(&what("backward_input"), &g.read::<f32>(&bdx).unwrap(), &dx, RED.0, RED.1);
    report(g, "conv2d backward_input (2-D grid)", e);
});

per_backend!(relu, |g: &Arc<Gpu>| {
    let mut worst = [0f64; 2];
    for set in kernel_sets(g) {
        let k = &set.kernels.relu;
        for (i, len) in [1usize, 255, 257, 3 * 256 * 4 + 13].into_iter().enumerate() {
            let d = ElemDims { n: 1, per_sample: len };
            let mut rng = Rng::new(200 + i as u64);
            let x = uniform(&mut rng, len, -1.0, 1.0);
            let dy = uniform(&mut rng, len, -1.0, 1.0);
            let (bx, bdy) = (g.upload("x", &x), g.upload("dy", &dy));
            let (by, bdx) = (g.storage("y", len as u64 * 4), g.storage("dx", len as u64 * 4));
            run(g, &[k.forward(d, &bx, &by), k.backward(d, &bx, &bdy, &bdx)]);
            let (mut y, mut dx) = (vec![0f64; len], vec![0f64; len]);
            ops::relu_forward(&mut y, &to64(&x));
            ops::relu_backward(&mut dx, &to64(&dy), &to64(&x));
            let what = |op: &str| format!("{} relu {op} (len {len})", set.label);
            worst[0] = worst[0].max(assert_close(&what("forward"), &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1));
            worst[1] = worst[1].max(assert_close(&what("backward"), &g.read::<f32>(&bdx).unwrap(), &dx, FWD.0, FWD.1));
        }
    }
    report(g, "relu forward", worst[0]);
    report(g, "relu backward", worst[1]);
});

per_backend!(maxpool, |g: &Arc<Gpu>| {
    let shapes = [
        PoolDims { n: 2, c: 16, h: 28, w: 28, k: 2, stride: 2 },
        PoolDims { n: 1, c: 3, h: 7, w: 7, k: 2, stride: 2 }, // odd size: last row/col dropped
        PoolDims { n: 3, c: 2, h: 9, w: 8, k: 3, stride: 2 }, // overlapping windows
        PoolDims { n: 1, c: 1, h: 5, w: 6, k: 3, stride: 3 },
    ];
    let mut worst = [0f64; 2];
    for set in kernel_sets(g) {
        let k = &set.kernels.pool;
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
            // dx starts as garbage, as a reused buffer would: backward must write every element.
            let bdx = g.upload("dx", &vec![7.0f32; d.input_len()]);
            let back = k.backward(PoolOutput { d, y: &by, argmax: &bidx }, &bx, &bdy, &bdx, false);
            let windows = back.name == "maxpool.backward_windows";
            assert_eq!(windows, d.k == d.stride, "{} maxpool {d:?}: {}", set.label, back.name);
            run(g, &[k.forward(d, &bx, &by, &bidx), back]);
            let (mut y, mut idx, mut dx) =
                (vec![0f64; d.output_len()], vec![0u32; d.output_len()], vec![0f64; d.input_len()]);
            ops::maxpool_forward(&mut y, &mut idx, &to64(&x), d);
            ops::maxpool_backward(&mut dx, &to64(&dy), &idx, d);
            let what = |op: &str| format!("{} maxpool {op} {d:?}", set.label);
            assert_eq!(g.read::<u32>(&bidx).unwrap(), idx, "{}", what("argmax"));
            let (bdx2, mut gated) = (g.upload("dx, gated", &vec![7.0f32; d.input_len()]), vec![0f64; d.input_len()]);
            run(g, &[k.backward(PoolOutput { d, y: &by, argmax: &bidx }, &bx, &bdy, &bdx2, true)]);
            ops::relu_backward(&mut gated, &dx, &to64(&x));
            assert_close(&what("backward+relu"), &g.read::<f32>(&bdx2).unwrap(), &gated, FWD.0, FWD.1);
            worst[0] = worst[0].max(assert_close(&what("forward"), &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1));
            worst[1] = worst[1].max(assert_close(&what("backward"), &g.read::<f32>(&bdx).unwrap(), &dx, FWD.0, FWD.1));
        }
    }
    report(g, "maxpool forward", worst[0]);
    report(g, "maxpool backward", worst[1]);
});

per_backend!(linear, |g: &Arc<Gpu>| {
    let shapes = [
        LinearDims { n: 4, in_features: 3136, out_features: 10 }, // the tutorial model's classifier
        LinearDims { n: 64, in_features: 3136, out_features: 10 },
        LinearDims { n: 1, in_features: 5, out_features: 3 },
        LinearDims { n: 7, in_features: 65, out_features: 17 },
        LinearDims { n: 7000, in_features: 3, out_features: 10 }, // 70,000 workgroups: a 2-D dispatch on any device
    ];
    let mut worst = [0f64; 3];
    let mut routes = Vec::new();
    for set in kernel_sets(g) {
        let k = &set.kernels.linear;
        for (i, d) in shapes.into_iter().enumerate() {
            routes.push(k.route(d));
            let mut rng = Rng::new(400 + i as u64);
            let bound = 1.0 / (d.in_features as f64).sqrt();
            let (params, offs) = params_with_lead(&mut rng, d.out_features * d.in_features, d.out_features, bound);
            let x = uniform(&mut rng, d.input_len(), -1.0, 1.0);
            let dy = uniform(&mut rng, d.output_len(), -1.0, 1.0);
            let (bx, bp, bdy) = (g.upload("x", &x), Params::upload(g, "params", &params).unwrap(), g.upload("dy", &dy));
            let by = g.storage("y", d.output_len() as u64 * 4);
            let bdx = g.storage("dx", d.input_len() as u64 * 4);
            let bg = g.storage("grads", params.len() as u64 * 4);
            let scratch = g.storage("scratch", k.scratch_len(d).max(1) as u64 * 4);
            let bdx2 = g.storage("dx, gated", d.input_len() as u64 * 4);
            let mut ds = vec![
                k.forward(d, offs, &bx, &bp, &by),
                k.backward_input(d, offs, &bdy, &bp, &bdx, None),
                k.backward_input(d, offs, &bdy, &bp, &bdx2, Some(&bx)),
            ];
            ds.extend(k.backward_weight_bias(
                d,
                offs,
                &bx,
                &bdy,
                &WeightGrads { scratch: &scratch, grads: &bg, accumulate: false },
            ));
            run(g, &ds);
            let p64 = to64(&params);
            let (w, b) = (&p64[offs.weight..offs.bias], &p64[offs.bias..]);
            let mut y = vec![0f64; d.output_len()];
            ops::linear_forward(&mut y, &to64(&x), w, b, d);
            let (mut dx, mut dw, mut db) = (vec![0f64; d.input_len()], vec![0f64; w.len()], vec![0f64; d.out_features]);
            ops::linear_backward(Some(&mut dx), &mut dw, &mut db, &to64(&dy), &to64(&x), w, d);
            let what = |op: &str| format!("{} linear ({:?}) {op} {d:?}", set.label, k.route(d));
            let grads = g.read::<f32>(&bg).unwrap();
            worst[0] = worst[0].max(assert_close(&what("forward"), &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1));
            let e = assert_close(&what("backward_input"), &g.read::<f32>(&bdx).unwrap(), &dx, RED.0, RED.1);
            worst[1] = worst[1].max(e);
            let mut gated = vec![0f64; dx.len()];
            ops::relu_backward(&mut gated, &dx, &to64(&x));
            assert_close(&what("backward_input+relu"), &g.read::<f32>(&bdx2).unwrap(), &gated, RED.0, RED.1);
            dw.extend(&db);
            worst[2] =
                worst[2].max(assert_close(&what("weight and bias gradient"), &grads[offs.weight..], &dw, RED.0, RED.1));
        }
    }
    // Both routes ran where the device has an engine that takes Linear onto its GEMM.
    assert!(routes.contains(&LinearRoute::Dot), "{}: linear.wgsl never ran", g.describe());
    if g.engines.contains(&GemmEngine::Subgroup) {
        assert!(routes.contains(&LinearRoute::ConvGemm), "{}: the conv GEMM route never ran", g.describe());
    }
    report(g, "linear forward", worst[0]);
    report(g, "linear backward_input", worst[1]);
    report(g, "linear weight and bias gradient", worst[2]);
});

per_backend!(softmax_ce, |g: &Arc<Gpu>| {
    let mut worst = [0f64; 4];
    for set in kernel_sets(g) {
        let k = &set.kernels.softmax;
        for (i, (n, classes)) in [(1usize, 10usize), (64, 10), (300, 7), (3, 1)].into_iter().enumerate() {
            let mut rng = Rng::new(500 + i as u64);
            let mut z = uniform(&mut rng, n * classes, -8.0, 8.0);
            z[0] = 90.0; // exp(90) overflows f32 unless the row max is subtracted
            if classes > 2 && n > 1 {
                z[classes + 1] = z[classes]; // a tie: the first maximum is the prediction
                z[classes] = 50.0;
                z[classes + 1] = 50.0;
            }
            let labels: Vec<u32> = (0..n).map(|_| rng.below(classes as u64) as u32).collect();
            let (bz, bl) = (g.upload("logits", &z), g.upload("labels", &labels));
            let (bp, bp2) =
                (g.storage("probs", (n * classes) as u64 * 4), g.storage("probs2", (n * classes) as u64 * 4));
            let (bloss, bpred) = (g.storage("losses", n as u64 * 4), g.storage("predictions", n as u64 * 4));
            let bpred2 = g.storage("predictions2", n as u64 * 4);
            let bdz = g.storage("dlogits", (n * classes) as u64 * 4);
            let bdz3 = g.storage("dlogits of a micro-batch", (n * classes) as u64 * 4);
            let bm = g.upload("metrics", &[1.5f32, 2.0, 3.0, 0.0]);
            let b = SoftmaxBuffers { logits: &bz, labels: &bl, probs: &bp, losses: &bloss, predictions: &bpred };
            let b2 = SoftmaxBuffers { probs: &bp2, predictions: &bpred2, ..b };
            run(
                g,
                &[
                    k.forward(n, classes, &b),
                    k.accumulate(n, classes, &b, &bm),
                    k.backward(n, n, classes, &b, &bdz),
                    k.backward(n, 3 * n, classes, &b, &bdz3),
                    k.predict(n, classes, &b2),
                ],
            );
            let (mut p, mut l, mut dz) = (vec![0f64; n * classes], vec![0f64; n], vec![0f64; n * classes]);
            let mean = ops::softmax_ce_forward(&mut p, &mut l, &to64(&z), &labels, n, classes);
            ops::softmax_ce_backward(&mut dz, &p, &labels, n, classes);
            let pred = ops::argmax_rows(&z, classes);
            let what = |op: &str| format!("{} softmax_ce {op} (n {n}, classes {classes})", set.label);
            worst[0] = worst[0].max(assert_close(&what("probs"), &g.read::<f32>(&bp).unwrap(), &p, FWD.0, FWD.1));
            worst[1] = worst[1].max(assert_close(&what("losses"), &g.read::<f32>(&bloss).unwrap(), &l, FWD.0, FWD.1));
            worst[2] = worst[2].max(assert_close(&what("dlogits"), &g.read::<f32>(&bdz).unwrap(), &dz, FWD.0, FWD.1));
            // A micro-batch of a batch three times its size: the mean is over the whole batch.
            let dz3: Vec<f64> = dz.iter().map(|v| v / 3.0).collect();
            assert_close(&what("dlogits over 3n"), &g.read::<f32>(&bdz3).unwrap(), &dz3, FWD.0, FWD.1);
            worst[3] = worst[3].max(assert_close(&what("predict"), &g.read::<f32>(&bp2).unwrap(), &p, FWD.0, FWD.1));
            assert_eq!(g.read::<u32>(&bpred).unwrap(), pred, "{}", what("predictions"));
            assert_eq!(g.read::<u32>(&bpred2).unwrap(), pred, "{}", what("predict's predictions"));
            // metrics started at [1.5, 2, 3]: the batch's loss sum, correct count and size are added
            let correct = pred.iter().zip(&labels).filter(|(a, b)| a == b).count();
            let want = [1.5 + mean * n as f64, 2.0 + correct as f64, 3.0 + n as f64, 0.0];
            assert_close(&what("accumulate"), &g.read::<f32>(&bm).unwrap(), &want, RED.0, RED.1);
        }
    }
    report(g, "softmax_ce forward (probs)", worst[0]);
    report(g, "softmax_ce forward (loss)", worst[1]);
    report(g, "softmax_ce backward", worst[2]);
    report(g, "softmax_ce predict", worst[3]);
});

// Three updates of each optimizer against the CPU reference's, both in f32. What is
// compared is each parameter's change over the three steps (about 3e-3), not the
// parameter (about 1): a weight decay of Adam's 1e-3 x 0.1, or SGD's, moves a weight by
// 1e-4 of itself a step, which a tolerance on the weights would not see. The bound,
// 1e-6 + 1e-3 of the change, allows a few f32 roundings of the weights a step.
per_backend!(optimizers, |g: &Arc<Gpu>| {
    let len = 1000;
    let mut worst = 0f64;
    for set in kernel_sets(g) {
        for opt in [
            Optimizer::sgd(0.05, 0.9),
            Optimizer::adam(1e-3),
            Optimizer::sgd(0.05, 0.9).with_weight_decay(5e-3),
            Optimizer::adam(1e-3).with_weight_decay(0.1),
        ] {
            let mut rng = Rng::new(600);
            let mut p = uniform(&mut rng, len, -1.0, 1.0);
            let p0 = to64(&p);
            let (bp, bg) = (g.upload("params", &p), g.storage("grads", len as u64 * 4));
            let (bm, bv) = (g.storage("m", len as u64 * 4), g.storage("v", len as u64 * 4));
            let d = set.kernels.optim.update(opt, len, &OptimBuffers { params: &bp, grads: &bg, m: &bm, v: &bv });
            let (mut m, mut v) = (vec![0f32; len], vec![0f32; len]);
            for step in 1..=3 {
                let grads = uniform(&mut rng, len, -1e-2, 1e-2);
                g.queue.write_buffer(&bg, 0, bytemuck::cast_slice(&grads));
                g.queue.write_buffer(&d.uniform, 0, bytemuck::bytes_of(&OptimUniform::new(opt, len, step)));
                g.run(&[&d]);
                match (opt, opt.adam_step(step)) {
                    (_, Some(adam)) => ops::adam_update(&mut p, &grads, &mut m, &mut v, &adam),
                    (Optimizer::Sgd { lr, momentum, weight_decay }, None) => {
                        ops::sgd_update(&mut p, &grads, &mut m, lr, momentum, weight_decay)
                    }
                    (Optimizer::Adam { .. }, None) => unreachable!(),
                }
            }
            let what = |x: &str| format!("{} {opt:?} {x}", set.label);
            let change = |after: &[f32]| -> Vec<f64> { after.iter().zip(&p0).map(|(a, b)| *a as f64 - b).collect() };
            let (got, want) = (change(&g.read::<f32>(&bp).unwrap()), change(&p));
            let got: Vec<f32> = got.iter().map(|&x| x as f32).collect();
            worst = worst.max(assert_close(&what("change of the params"), &got, &want, 1e-6, 1e-3));
            assert_close(&what("m"), &g.read::<f32>(&bm).unwrap(), &to64(&m), FWD.0, FWD.1);
            if opt.state_vectors() > 1 {
                assert_close(&what("v"), &g.read::<f32>(&bv).unwrap(), &to64(&v), 1e-9, 1e-4);
            }
        }
    }
    report(g, "optim sgd/adam", worst);
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
    for set in kernel_sets(g) {
        let tile = set.kernels.engine.spec().sgemm_tile;
        assert!(tile.iter().zip([m, n, k]).all(|(t, x)| x % t == 0 && x / t >= 2), "{}: {tile:?}", set.label);
        let (ba, bb, bc) = (g.upload("a", &a), g.upload("b", &b), g.storage("c", (m * n * 4) as u64));
        run(g, &[set.kernels.sgemm.matmul([m, n, k], &ba, &bb, &bc).unwrap()]);
        let e = assert_close(&format!("{} sgemm", set.label), &g.read::<f32>(&bc).unwrap(), &want, FWD.0, FWD.1);
        report(g, &format!("sgemm ({})", set.label), e);
        let off = set.kernels.sgemm.matmul([m + 1, n, k], &ba, &bb, &bc);
        assert!(off.is_err(), "{}: a size off the tile must be refused", set.label);
    }
});

// The engine a device gets by default is decided by the library alone, from the
// adapter: lavapipe (8-lane subgroups) gets the subgroup engine or its speed
// silently goes; GL has no subgroups; a real GPU's subgroups are 32 or 64 lanes.
per_backend!(gemm_engine_matches_the_adapter, |g: &Arc<Gpu>| {
    let info = &g.info;
    let llvmpipe = info.name.contains("llvmpipe");
    let want = match (info.backend, info.device_type) {
        (wgpu::Backend::Vulkan, _) if llvmpipe => GemmEngine::Subgroup,
        (wgpu::Backend::Gl, _) => GemmEngine::Tiled,
        (_, wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu) => GemmEngine::Tiled,
        // Any other (a CPU or virtual adapter): the subgroup engine where it runs.
        _ if g.engines.contains(&GemmEngine::Subgroup) => GemmEngine::Subgroup,
        _ => GemmEngine::Tiled,
    };
    assert_eq!(g.kernels.engine, want, "{}", g.describe());
    assert!(g.engines.contains(&GemmEngine::Tiled), "{}: the tiled engine runs everywhere", g.describe());
    assert_eq!(g.kernels.engine.precision(), gpu_cnn::gpu::Precision::F32, "{}: f32 unless asked", g.describe());
    if llvmpipe && info.backend == wgpu::Backend::Vulkan {
        assert!(g.engines.contains(&GemmEngine::Subgroup), "{}", g.describe());
        assert!(g.engines.contains(&GemmEngine::CoopEmulated), "{}: lavapipe has f16 shaders", g.describe());
        // No tensor cores: mixed precision on the coop engine is refused, saying why.
        let e = Gpu::new(BackendChoice::Vulkan, Some(GemmEngine::Coop)).err();
        let e = format!("{:#}", e.expect("the coop engine on lavapipe must be refused"));
        assert!(e.contains("tensor cores") && e.contains("--precision f32"), "{e}");
    }
    if info.backend == wgpu::Backend::Gl {
        assert_eq!(g.engines, [GemmEngine::Tiled], "{}", g.describe());
        // Asking for an engine the adapter cannot run is an error that says why.
        let e = Gpu::new(BackendChoice::Gl, Some(GemmEngine::Subgroup)).err();
        let e = format!("{:#}", e.expect("the subgroup engine on GL must be refused"));
        assert!(e.contains("subgroup") && e.contains("none"), "{e}");
        let e = Gpu::new(BackendChoice::Gl, Some(GemmEngine::CoopEmulated)).err();
        let e = format!("{:#}", e.expect("the coop-emulated engine on GL must be refused"));
        assert!(e.contains("f16 in shaders") && e.contains("none"), "{e}");
    }
});

// shaders/udiv.wgsl, run on the device as the shaders run it: `udiv` must be exact
// for every u32 dividend (indices across a batch of any size), `udiv_small` below
// 2^24, for divisors below 2^24. Edges (0, 2^24 ± 1, u32::MAX, multiples and their
// neighbours) and 20,000 random pairs.
per_backend!(integer_division_through_reciprocals, |g: &Arc<Gpu>| {
    let src = gpu_cnn::gpu::shader::compose("udiv.wgsl").unwrap()
        + "
@group(0) @binding(0) var<storage, read> pairs: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read_write> quotients: array<vec2<u32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x + id.y * 64u * 1024u;
    if (i < arrayLength(&pairs)) {
        let p = pairs[i];
        let inv = 1.0 / f32(p.y);
        quotients[i] = vec2(udiv(p.x, p.y, inv), select(0u, udiv_small(p.x, p.y, inv), p.x < (1u << 24u)));
    }
}";
    let module = g.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("udiv test"),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    });
    let pipeline = g.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("udiv test"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let mut rng = Rng::new(11);
    let mut pairs: Vec<[u32; 2]> = Vec::new();
    for b in [1u32, 2, 3, 7, 10, 25, 49, 196, 784, 12544, 65535, (1 << 24) - 1] {
        for a in [0u32, 1, b - 1, b, b + 1, (1 << 24) - 1, 1 << 24, (1 << 24) + 1, u32::MAX - 1, u32::MAX] {
            pairs.push([a, b]);
            pairs.push([a / b * b, b]);
            pairs.push([(a / b * b).saturating_sub(1), b]);
        }
    }
    while pairs.len() < 20_000 {
        let range = if rng.below(2) == 0 { 1 << 24 } else { 4096 };
        let b = 1 + rng.below(range - 1) as u32;
        pairs.push([rng.next_u64() as u32, b]);
    }
    let input = g.upload("pairs", &pairs);
    let out = g.storage("quotients", (pairs.len() * 8) as u64);
    let bind = g.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: input.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: out.as_entire_binding() },
        ],
    });
    let mut enc = g.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups((pairs.len() as u32).div_ceil(64), 1, 1);
    }
    g.queue.submit([enc.finish()]);
    let got = g.read::<[u32; 2]>(&out).unwrap();
    for (&[a, b], &[q, q_small]) in pairs.iter().zip(&got) {
        assert_eq!(q, a / b, "{:?}: udiv({a}, {b})", g.info.backend);
        if a < 1 << 24 {
            assert_eq!(q_small, a / b, "{:?}: udiv_small({a}, {b})", g.info.backend);
        }
    }
    report(g, &format!("udiv, udiv_small ({} pairs)", pairs.len()), 0.0);
});

// Tensors past 2^24 elements and batches past 2^24 pixels: the indices the
// shaders divide are exact whatever the batch (udiv). The convolution runs on the
// engine each backend gets by default (subgroup on lavapipe, tiled on GL): on
// llvmpipe the tiled engine takes ~3 minutes for 16.9M one-channel pixels, as it
// pays a workgroup per 64 pixels, so the other engine is left to the tests of
// shaders/udiv.wgsl itself above.
per_backend!(tensors_past_2_pow_24_elements, |g: &Arc<Gpu>| {
    let pool = PoolDims { n: 1400, c: 16, h: 28, w: 28, k: 2, stride: 2 };
    assert!(pool.input_len() > 1 << 24);
    let conv = ConvDims { n: 21_500, c: 1, h: 28, w: 28, oc: 1, k: 1, stride: 1, pad: 0 };
    assert!(conv.n * conv.oh() * conv.ow() > 1 << 24, "the conv's pixel count must pass 2^24");
    let mut rng = Rng::new(12);
    let x = uniform(&mut rng, pool.input_len(), -1.0, 1.0);
    let dy = uniform(&mut rng, pool.output_len(), -1.0, 1.0);
    let (mut y, mut idx, mut dx) =
        (vec![0f32; pool.output_len()], vec![0u32; pool.output_len()], vec![0f32; pool.input_len()]);
    ops::maxpool_forward(&mut y, &mut idx, &x, pool);
    ops::maxpool_backward(&mut dx, &dy, &idx, pool);
    let (bx, bdy) = (g.upload("x", &x), g.upload("dy", &dy));
    let (by, bidx) = (g.storage("y", pool.output_len() as u64 * 4), g.storage("argmax", pool.output_len() as u64 * 4));
    let bdx = g.storage("dx", pool.input_len() as u64 * 4);
    let k = &g.kernels.pool;
    run(
        g,
        &[
            k.forward(pool, &bx, &by, &bidx),
            k.backward(PoolOutput { d: pool, y: &by, argmax: &bidx }, &bx, &bdy, &bdx, false),
        ],
    );
    let who = g.describe();
    assert_eq!(g.read::<u32>(&bidx).unwrap(), idx, "{who}: maxpool argmax past 2^24 elements");
    assert_eq!(g.read::<f32>(&by).unwrap(), y, "{who}: maxpool forward past 2^24 elements");
    assert_eq!(g.read::<f32>(&bdx).unwrap(), dx, "{who}: maxpool backward past 2^24 elements");
    drop((bx, bdy, by, bidx, bdx));

    let params = uniform(&mut rng, 2, -0.3, 0.3);
    let offs = ParamOffsets { weight: 0, bias: 1 };
    let x = uniform(&mut rng, conv.input_len(), 0.0, 1.0);
    let dy = uniform(&mut rng, conv.output_len(), -1e-3, 1e-3);
    let p64 = to64(&params);
    let ConvRef { y, dx, mut dw, db } = conv_reference(conv, &p64[..1], &p64[1..], &to64(&x), &to64(&dy));
    dw.extend(&db);
    let (bx, bp, bdy) = (g.upload("x", &x), Params::upload(g, "params", &params).unwrap(), g.upload("dy", &dy));
    let (by, bdx) = (g.storage("y", conv.output_len() as u64 * 4), g.storage("dx", conv.input_len() as u64 * 4));
    {
        let (engine, k) = (g.kernels.engine, &g.kernels.conv);
        let scratch = g.storage("scratch", k.scratch_len(conv) as u64 * 4);
        let grads = g.storage("grads", 2 * 4);
        let to = WeightGrads { scratch: &scratch, grads: &grads, accumulate: false };
        let copies = TextureCopies::default();
        let mut ds = vec![
            k.forward(conv, offs, false, &bx, &bp, &by, &copies),
            k.backward_input(conv, offs, &bdy, &bp, &bdx, None, &copies),
        ];
        ds.extend(k.backward_weight_bias(conv, offs, &bx, &bdy, &to, &copies));
        run(g, &ds);
        let what = |op: &str| format!("{:?}/{engine} conv {op}, {} pixels", g.info.backend, conv.n * 784);
        assert_close(&what("forward"), &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1);
        assert_close(&what("backward_input"), &g.read::<f32>(&bdx).unwrap(), &dx, RED.0, RED.1);
        // 16.9M-term sums of terms up to 1e-3: the f32 bound is ~2e-7 * 1.7e4 = 3e-3 absolute.
        let grads = g.read::<f32>(&grads).unwrap();
        assert_close(&what("weight and bias gradient"), &grads, &dw, 5e-3, 1e-3);
    }
    drop((bx, bp, bdy, by, bdx));
    // 5x5 kernels, which the subgroup engine runs kernel row by kernel row on pixel
    // columns padded to whole rows of 4: one channel a side, so that the batch's
    // padded columns (the index it divides) pass 2^24, and four channels a side, so
    // that the tensors' offsets do while the four-row steps run (fewer images fit).
    for d in [ConvDims { k: 5, pad: 2, ..conv }, ConvDims { n: 5400, c: 4, oc: 4, k: 5, pad: 2, ..conv }] {
        assert!(d.input_len() > 1 << 24 && d.output_len() > 1 << 24);
        let rows = g.kernels.conv.by_kernel_rows(d);
        assert_eq!(rows, g.kernels.engine == GemmEngine::Subgroup, "{}: kernel rows for {d:?}", g.describe());
        if rows {
            conv5x5_past_2_pow_24(g, d, &mut rng);
        }
    }
    report(g, "maxpool, conv past 2^24 elements", 0.0);
});

fn conv5x5_past_2_pow_24(g: &Gpu, d: ConvDims, rng: &mut Rng) {
    let wl = d.weight_len();
    let params = uniform(rng, wl + d.oc, -0.3, 0.3);
    let offs = ParamOffsets { weight: 0, bias: wl };
    let x = uniform(rng, d.input_len(), -1.0, 1.0);
    let dy = uniform(rng, d.output_len(), -1.0, 1.0);
    let p64 = to64(&params);
    let ConvRef { y, dx, mut dw, db } = conv_reference(d, &p64[..wl], &p64[wl..], &to64(&x), &to64(&dy));
    dw.extend(&db);
    let (bx, bp, bdy) = (g.upload("x", &x), Params::upload(g, "params", &params).unwrap(), g.upload("dy", &dy));
    let (by, bdx) = (g.storage("y", d.output_len() as u64 * 4), g.storage("dx", d.input_len() as u64 * 4));
    let k = &g.kernels.conv;
    let scratch = g.storage("scratch", k.scratch_len(d) as u64 * 4);
    let grads = g.storage("grads", dw.len() as u64 * 4);
    let to = WeightGrads { scratch: &scratch, grads: &grads, accumulate: false };
    let copies = TextureCopies::default();
    let mut ds = vec![
        k.forward(d, offs, false, &bx, &bp, &by, &copies),
        k.backward_input(d, offs, &bdy, &bp, &bdx, None, &copies),
    ];
    ds.extend(k.backward_weight_bias(d, offs, &bx, &bdy, &to, &copies));
    let names: Vec<&str> = ds.iter().map(|dsp| dsp.name.as_str()).collect();
    let by_rows = ["forward_rows", "backward_input_rows", "backward_weight_bias_rows"];
    assert!(by_rows.iter().zip(&names).all(|(want, ran)| ran.contains(want)), "{names:?}");
    run(g, &ds);
    let what = |op: &str| format!("{:?}/{} conv {op} {d:?}", g.info.backend, g.kernels.engine);
    assert_close(&what("forward"), &g.read::<f32>(&by).unwrap(), &y, FWD.0, FWD.1);
    assert_close(&what("backward_input"), &g.read::<f32>(&bdx).unwrap(), &dx, RED.0, RED.1);
    // Sums of 16.9M (or 4.2M) terms of |x*dy| <= 1, up to ~2,100 in size: f32's
    // rounding of the 8,192-term splits and of their sum came to 3.4e-3 at most on
    // lavapipe; a lost split (~30 in size) or row of pixels is far outside the bound.
    assert_close(&what("weight and bias gradient"), &g.read::<f32>(&grads).unwrap(), &dw, 0.02, 1e-5);
}

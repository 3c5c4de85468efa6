//! A mixed-precision engine checks itself when a device opens with it. The coop
//! engine runs on tensor cores that no adapter in this project's CI has, so before
//! a user relies on it, the device computes the three convolution products of one
//! small layer and compares them with the CPU reference within the f16 rounding
//! bound that tests/gpu_ops.rs `conv2d_mixed_precision` states. A driver or shader
//! fault then stops the run with an error naming the engine and the adapter,
//! instead of training a model on wrong gradients.

use anyhow::{bail, Result};

use crate::cpu::ops;
use crate::dims::ConvDims;
use crate::gpu::ops::texture_copy::TextureCopies;
use crate::gpu::ops::WeightGrads;
use crate::gpu::params::Params;
use crate::gpu::Gpu;
use crate::model::ParamOffsets;
use crate::rng::Rng;

/// A layer whose products cross tile edges both ways on both tile configurations:
/// 180 output pixels (three tiles of 64), 40 output channels (the 64-wide tile, 24
/// columns past the edge), 5 input channels for the input gradient (the 32-wide
/// tile), 46 rows of the weight gradient, padding on every side.
const LAYER: ConvDims = ConvDims { n: 2, c: 5, h: 9, w: 10, oc: 40, k: 3, stride: 1, pad: 1 };

/// Each product, its value and the sum of its terms' magnitudes: f16 operands are
/// each within 2^-10 of their value, so a product within 2^-9 of the magnitudes.
fn bound(reference: f64, magnitude: f64) -> f64 {
    magnitude / 512.0 + 1e-3 * reference.abs() + 1e-9
}

fn random(rng: &mut Rng, len: usize, size: f64) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-size, size) as f32).collect()
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn abs64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| (x as f64).abs()).collect()
}

/// Run `gpu`'s convolution products on `LAYER` and fail unless every value is within
/// the mixed-precision bound of the CPU reference.
pub fn check_mixed_products(gpu: &Gpu) -> Result<()> {
    let d = LAYER;
    let k = &gpu.kernels.conv;
    let mut rng = Rng::new(20261130);
    let params = random(&mut rng, d.weight_len() + d.oc, 0.3);
    let x = random(&mut rng, d.input_len(), 1.0);
    // Small gradients, as a late layer's: they reach f16 only through the engine's scaling.
    let dy = random(&mut rng, d.output_len(), 1e-4);
    let at = ParamOffsets { weight: 0, bias: d.weight_len() };

    let (bx, bp, bdy) =
        (gpu.upload("check x", &x), Params::upload(gpu, "check params", &params)?, gpu.upload("check dy", &dy));
    let by = gpu.storage("check y", d.output_len() as u64 * 4);
    let bdx = gpu.storage("check dx", d.input_len() as u64 * 4);
    let scratch = gpu.storage("check scratch", k.scratch_len(d) as u64 * 4);
    let grads = gpu.storage("check grads", params.len() as u64 * 4);
    let to = WeightGrads { scratch: &scratch, grads: &grads, accumulate: false };
    let copies = TextureCopies::default();
    let forward = k.forward(d, at, false, &bx, &bp, &by, &copies);
    let mut ds = vec![forward, k.backward_input(d, at, &bdy, &bp, &bdx, None, &copies)];
    ds.extend(k.backward_weight_bias(d, at, &bx, &bdy, &to, &copies));
    gpu.run(&ds.iter().collect::<Vec<_>>());
    let (got_y, got_dx, got_g) = (gpu.read::<f32>(&by)?, gpu.read::<f32>(&bdx)?, gpu.read::<f32>(&grads)?);

    let (p64, w_abs) = (to64(&params), abs64(&params[..d.weight_len()]));
    let (w, b) = p64.split_at(d.weight_len());
    let mut y = vec![0f64; d.output_len()];
    let mut y_mag = vec![0f64; d.output_len()];
    ops::conv2d_forward(&mut y, &to64(&x), w, b, d);
    ops::conv2d_forward(&mut y_mag, &abs64(&x), &w_abs, &vec![0.0; d.oc], d);
    let (mut dx, mut dw, mut db) = (vec![0f64; d.input_len()], vec![0f64; d.weight_len()], vec![0f64; d.oc]);
    let (mut dx_mag, mut dw_mag, mut db_mag) = (dx.clone(), dw.clone(), db.clone());
    ops::conv2d_backward(Some(&mut dx), &mut dw, &mut db, &to64(&dy), &to64(&x), w, d);
    ops::conv2d_backward(Some(&mut dx_mag), &mut dw_mag, &mut db_mag, &abs64(&dy), &abs64(&x), &w_abs, d);

    let (got_dw, got_db) = got_g.split_at(d.weight_len());
    let products = [
        ("forward", &got_y[..], &y, &y_mag),
        ("input gradient", &got_dx[..], &dx, &dx_mag),
        ("weight gradient", got_dw, &dw, &dw_mag),
        ("bias gradient", got_db, &db, &db_mag),
    ];
    for (what, got, want, magnitude) in products {
        for (i, ((&g, &r), &m)) in got.iter().zip(want.iter()).zip(magnitude.iter()).enumerate() {
            let err = (g as f64 - r).abs();
            let within = err <= bound(r, m); // false for NaN too
            if !within {
                bail!(
                    "the {} GEMM engine's self-check failed on {}: its {what} of a test layer is {g} at element \
                     {i} where the CPU reference has {r} (allowed error {:e}). This is a driver or gpu-cnn fault; \
                     use --precision f32, and please report it with the output of `gpu-cnn devices`",
                    gpu.kernels.engine,
                    gpu.info.name,
                    bound(r, m)
                );
            }
        }
    }
    Ok(())
}

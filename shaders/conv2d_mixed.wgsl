// Conv2d in mixed precision: the tiled engine's three products (the same operand
// gathers and epilogue, conv2d_gemm_io.wgsl) with f16 operands and f32 sums, for
// tensor cores. A module that includes this file supplies the tile's multiply-add
// as three functions over the workgroup tiles below:
//   mma_zero()              clear the accumulators
//   mma_step(li, sg, nsg)   accumulate As x Bs (one BK-deep step) into them
//   mma_store(li, sg, nsg)  write the accumulated BM x BN tile into Cs
// conv2d_coop.wgsl does it with cooperative matrices (tensor cores);
// conv2d_coop_emulated.wgsl does the same arithmetic on plain invocations, so the
// rest of this file runs, and is tested, on adapters without tensor cores.
// #include "conv2d_gemm_io.wgsl"
//
// Precision: every operand is rounded once to f16 as it is staged, and every
// product is summed in f32; weights, activations, gradients and optimizer state stay
// f32 in memory. Gradients (dy) are staged times GRAD_SCALE and the sums divided by
// it, a power of two, so exact: without it a gradient below f16's smallest normal
// (6.1e-5) would keep few bits, and under ~6e-8 none. Staging clamps to f16's range.
//
// Dispatch: workgroup_size(THREADS); x,y = the row-tile index folded into two
// dimensions, z = col tile (+ split * col tiles), as in conv2d_tiled.wgsl.

// The tile is set per pipeline (src/gpu/engine.rs): BM rows (pixels, or taps) by BN
// columns (channels), both multiples of the 16x16 fragments; THREADS is a multiple of
// both, so each thread stages one fixed A row and one fixed B column.
override BM: u32 = 64u;
override BN: u32 = 32u;
const BK: u32 = 16u;
const THREADS: u32 = 256u;
const FRAG: u32 = 16u;
const GRAD_SCALE: f32 = 4096.0;
const F16_MAX: f32 = 65504.0;

var<workgroup> As: array<f16, BK * BM>; // [BK][BM]: column-major BM x BK
var<workgroup> Bs: array<f16, BK * BN>; // [BK][BN]: row-major BK x BN
var<workgroup> Cs: array<f32, BM * BN>; // [BN][BM]: column-major BM x BN

fn to_f16(v: f32, scale: f32) -> f16 {
    return f16(clamp(v * scale, -F16_MAX, F16_MAX));
}

// One BM x BN tile over reduction range [red_begin, red_end), left in Cs (times
// a_scale * b_scale). Must be called in uniform control flow (barriers, and the
// cooperative operations, which the whole workgroup runs alike).
fn mixed_tile(mode: u32, li: u32, sg: u32, nsg: u32, row0: u32, col0: u32, rows: u32, cols: u32,
              red_begin: u32, red_end: u32, a_scale: f32, b_scale: f32) {
    let am = li % BM;
    let bn = li % BN;
    setup_row(mode, row0 + am, rows);
    let col_ok = col0 + bn < cols;
    mma_zero();
    for (var r0 = red_begin; r0 < red_end; r0 += BK) {
        for (var i = 0u; i < (BM * BK) / THREADS; i++) {
            let kr = li / BM + i * (THREADS / BM);
            var v = 0.0;
            if (row_ok && r0 + kr < red_end) {
                v = a_elem(mode, r0 + kr);
            }
            As[kr * BM + am] = to_f16(v, a_scale);
        }
        for (var i = 0u; i < (BN * BK) / THREADS; i++) {
            let kr = li / BN + i * (THREADS / BN);
            var v = 0.0;
            if (col_ok && r0 + kr < red_end) {
                v = b_elem(mode, r0 + kr, col0 + bn);
            }
            Bs[kr * BN + bn] = to_f16(v, b_scale);
        }
        workgroupBarrier();
        mma_step(li, sg, nsg);
        workgroupBarrier();
    }
    mma_store(li, sg, nsg);
    workgroupBarrier();
}

// forward or backward_input: the tile's rows are pixels of the output planes.
fn planes_product(mode: u32, li: u32, sg: u32, nsg: u32, wid: vec3<u32>, nwg: vec3<u32>,
                  channels: u32, plane: u32, red_len: u32, bias: bool) {
    let t = plane_tile(wid, nwg, plane, BM, BN);
    if (!t.live) {
        return;
    }
    let dy_scale = select(1.0, GRAD_SCALE, mode == MODE_BACKWARD_INPUT);
    mixed_tile(mode, li, sg, nsg, t.row0, t.col0, t.rows, channels, 0u, red_len, dy_scale, 1.0);
    // Consecutive threads store consecutive pixels of a channel plane.
    for (var e = li; e < BM * BN; e += THREADS) {
        let row = t.row0 + e % BM;
        let col = t.col0 + e / BM;
        if (row < t.rows && col < channels) {
            let n = udiv(row, plane, 1.0 / f32(plane));
            store_plane(n, row - n * plane, col, channels, plane, bias, Cs[e] / dy_scale);
        }
    }
}

@compute @workgroup_size(THREADS)
fn forward(@builtin(local_invocation_index) li: u32,
           @builtin(subgroup_id) sg: u32,
           @builtin(num_subgroups) nsg: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    planes_product(MODE_FORWARD, li, sg, nsg, wid, nwg, U.oc, U.oh * U.ow, U.c * U.k * U.k, true);
}

@compute @workgroup_size(THREADS)
fn backward_input(@builtin(local_invocation_index) li: u32,
                  @builtin(subgroup_id) sg: u32,
                  @builtin(num_subgroups) nsg: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    planes_product(MODE_BACKWARD_INPUT, li, sg, nsg, wid, nwg, U.c, U.h * U.w, U.oc * U.k * U.k, false);
}

@compute @workgroup_size(THREADS)
fn backward_weight_bias(@builtin(local_invocation_index) li: u32,
                        @builtin(subgroup_id) sg: u32,
                        @builtin(num_subgroups) nsg: u32,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    let t = weight_tile(wid, nwg, BM, BN);
    if (!t.live) {
        return;
    }
    mixed_tile(MODE_BACKWARD_WEIGHT_BIAS, li, sg, nsg, t.row0, t.col0, t.rows, U.oc, t.red_begin, t.red_end, 1.0,
               GRAD_SCALE);
    // Consecutive threads store consecutive channels of a tap (the scratch is tap-major).
    for (var e = li; e < BM * BN; e += THREADS) {
        let row = t.row0 + e / BN;
        let col = t.col0 + e % BN;
        if (row < t.rows && col < U.oc) {
            out[(t.split * t.rows + row) * U.oc + col] = Cs[(col - t.col0) * BM + (row - t.row0)] / GRAD_SCALE;
        }
    }
}

// Conv2d's shared-memory tiled engine (after tfjs-webgpu's conv2d): implicit
// GEMM on one tiled matmul, no im2col buffer ever materialised; the tile loaders
// compute each element's address from the shapes in `U`.
// #include "conv2d_common.wgsl"
//
// As GEMMs:
//   forward               rows = (n,oh,ow)  cols = oc  A = im2col(x)  B = W^T
//   backward_input        rows = (n,ih,iw)  cols = c   A = dy gathered through the kernel window
//   backward_weight_bias  rows = (c,kh,kw)  cols = oc  A = im2col(x)^T  B = dy
//                         (plus a row of ones after the taps: its product is db)
//
// Dispatch: x,y = the row-tile index folded into two dimensions (so any batch
// stays under 65,535 workgroups a dimension), z = col tile (+ split * col tiles).

// The tile is set per pipeline (the host's tile configurations, src/gpu/engine.rs):
// 64x32 with 64 threads for narrow products and small grids, 128x64 with 256 threads
// for wide ones. Each thread always owns an 8x4 register block.
override BM: u32 = 64u;   // tile rows
override BN: u32 = 32u;   // tile cols
const BK: u32 = 16u;      // reduction step
const TM: u32 = 8u;       // rows per thread (register block)
const TN: u32 = 4u;       // cols per thread
override THREADS: u32 = (BN / TN) * (BM / TM);

// Tiles stored as vec4 so each thread reads its 4 rows / 4 columns in one load and
// accumulates in four vec4 registers: no dynamically indexed arrays in the hot loop
// (llvmpipe spills those to memory).
var<workgroup> As: array<vec4<f32>, BK * BM / 4u>; // [BK][BM/4]
var<workgroup> Bs: array<vec4<f32>, BK * BN / 4u>; // [BK][BN/4]

const MODE_FORWARD: u32 = 0u;
const MODE_BACKWARD_INPUT: u32 = 1u;
const MODE_BACKWARD_WEIGHT_BIAS: u32 = 2u;

// Reciprocals of the divisors, and the state of the one A row each thread loads:
// a thread's row within the tile is fixed (THREADS is a multiple of BM), so its
// (n,oh,ow) / (n,ih,iw) / (c,kh,kw) decomposition is computed once, not per element.
var<private> inv_k: f32;
var<private> inv_kk: f32;
var<private> inv_ow: f32;
var<private> row_ok: bool;
var<private> row_base: u32;
var<private> row_y: i32;
var<private> row_x: i32;
var<private> row_bias: bool; // backward_weight_bias: the extra row of ones that yields db

fn setup_row(mode: u32, row: u32, rows: u32) {
    let kk = U.k * U.k;
    let ohw = U.oh * U.ow;
    inv_k = 1.0 / f32(U.k);
    inv_kk = 1.0 / f32(kk);
    inv_ow = 1.0 / f32(U.ow);
    inv_ohw = 1.0 / f32(ohw);
    inv_stride = 1.0 / f32(U.stride);
    row_ok = row < rows;
    let r = min(row, rows - 1u);
    switch mode {
        case MODE_FORWARD: {
            // row = output pixel (n,oh,ow); A = im2col(x)
            let n = udiv(r, ohw, inv_ohw);
            let q = r - n * ohw;
            let oh = udiv_small(q, U.ow, inv_ow);
            row_base = n * U.c * U.h * U.w;
            row_y = i32(oh * U.stride) - i32(U.pad);
            row_x = i32((q - oh * U.ow) * U.stride) - i32(U.pad);
        }
        case MODE_BACKWARD_INPUT: {
            // row = input pixel (n,ih,iw); A = dy through the kernel
            let hw = U.h * U.w;
            let n = udiv(r, hw, 1.0 / f32(hw));
            let q = r - n * hw;
            let ih = udiv_small(q, U.w, 1.0 / f32(U.w));
            row_base = n * U.oc * ohw;
            row_y = i32(ih + U.pad);
            row_x = i32(q - ih * U.w + U.pad);
        }
        default: {
            // row = kernel tap (c,kh,kw), or C*K*K for the bias; A = im2col(x) transposed
            row_bias = r == U.c * kk;
            let c = udiv_small(r, kk, inv_kk);
            let t = r - c * kk;
            let kh = udiv_small(t, U.k, inv_k);
            row_base = c * U.h * U.w;
            row_y = i32(kh) - i32(U.pad);
            row_x = i32(t - kh * U.k) - i32(U.pad);
        }
    }
}

fn a_elem(mode: u32, r: u32) -> f32 {
    let kk = U.k * U.k;
    switch mode {
        case MODE_FORWARD: {
            // r = (c,kh,kw)
            let c = udiv_small(r, kk, inv_kk);
            let t = r - c * kk;
            let kh = udiv_small(t, U.k, inv_k);
            let ih = row_y + i32(kh);
            let iw = row_x + i32(t - kh * U.k);
            if (ih < 0 || iw < 0 || ih >= i32(U.h) || iw >= i32(U.w)) {
                return 0.0;
            }
            return src_a[row_base + (c * U.h + u32(ih)) * U.w + u32(iw)];
        }
        case MODE_BACKWARD_INPUT: {
            // r = (oc,kh,kw): the output pixel this tap reaches, if any
            let oc = udiv_small(r, kk, inv_kk);
            let t = r - oc * kk;
            let kh = udiv_small(t, U.k, inv_k);
            let th = row_y - i32(kh);
            let tw = row_x - i32(t - kh * U.k);
            if (th < 0 || tw < 0) {
                return 0.0;
            }
            // Through udiv_small whatever the stride: llvmpipe runs both sides of a branch.
            let oh = udiv_small(u32(th), U.stride, inv_stride);
            let ow = udiv_small(u32(tw), U.stride, inv_stride);
            if (oh * U.stride != u32(th) || ow * U.stride != u32(tw) || oh >= U.oh || ow >= U.ow) {
                return 0.0;
            }
            return src_a[row_base + (oc * U.oh + oh) * U.ow + ow];
        }
        default: {
            // r = output pixel (n,oh,ow); the bias row is all ones: db = sum of dy
            if (row_bias) {
                return 1.0;
            }
            let ohw = U.oh * U.ow;
            let n = udiv(r, ohw, inv_ohw);
            let q = r - n * ohw;
            let oh = udiv_small(q, U.ow, inv_ow);
            let ih = i32(oh * U.stride) + row_y;
            let iw = i32((q - oh * U.ow) * U.stride) + row_x;
            if (ih < 0 || iw < 0 || ih >= i32(U.h) || iw >= i32(U.w)) {
                return 0.0;
            }
            return src_a[n * U.c * U.h * U.w + row_base + u32(ih) * U.w + u32(iw)];
        }
    }
}

// dy (in src_b) at output pixel p = (n,oh,ow), channel oc.
fn dy_at(p: u32, oc: u32) -> f32 {
    let ohw = U.oh * U.ow;
    let n = udiv(p, ohw, inv_ohw);
    return src_b[(n * U.oc + oc) * ohw + (p - n * ohw)];
}

fn b_elem(mode: u32, r: u32, col: u32) -> f32 {
    let kk = U.k * U.k;
    switch mode {
        case MODE_FORWARD: { return src_b[U.w_off + col * U.c * kk + r]; }
        case MODE_BACKWARD_INPUT: {
            let oc = udiv_small(r, kk, inv_kk);
            return src_b[U.w_off + (oc * U.c + col) * kk + (r - oc * kk)];
        }
        default: { return dy_at(r, col); }
    }
}

// One BM x BN output tile over reduction range [red_begin, red_end); each thread
// returns its TM x TN block (row i of the block in element i). Must be called in
// uniform control flow (barriers).
fn gemm_tile(mode: u32, lid: vec3<u32>, li: u32, row0: u32, col0: u32, rows: u32, cols: u32,
             red_begin: u32, red_end: u32) -> array<vec4<f32>, 8> {
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    var acc4 = vec4<f32>();
    var acc5 = vec4<f32>();
    var acc6 = vec4<f32>();
    var acc7 = vec4<f32>();
    // This thread always loads tile row li % BM of A and tile column li % BN of B.
    let am = li % BM;
    let bn = li % BN;
    setup_row(mode, row0 + am, rows);
    let col_ok = col0 + bn < cols;
    for (var r0 = red_begin; r0 < red_end; r0 += BK) {
        for (var i = 0u; i < (BM * BK) / THREADS; i++) {
            let kr = li / BM + i * (THREADS / BM);
            var v = 0.0;
            if (row_ok && r0 + kr < red_end) {
                v = a_elem(mode, r0 + kr);
            }
            As[kr * (BM / 4u) + am / 4u][am % 4u] = v;
        }
        for (var i = 0u; i < (BN * BK) / THREADS; i++) {
            let kr = li / BN + i * (THREADS / BN);
            var v = 0.0;
            if (col_ok && r0 + kr < red_end) {
                v = b_elem(mode, r0 + kr, col0 + bn);
            }
            Bs[kr * (BN / 4u) + bn / 4u][bn % 4u] = v;
        }
        workgroupBarrier();
        for (var kr = 0u; kr < BK; kr++) {
            let a = As[kr * (BM / 4u) + lid.y * 2u];
            let a2 = As[kr * (BM / 4u) + lid.y * 2u + 1u];
            let b = Bs[kr * (BN / 4u) + lid.x];
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
            acc4 = fma(vec4<f32>(a2.x), b, acc4);
            acc5 = fma(vec4<f32>(a2.y), b, acc5);
            acc6 = fma(vec4<f32>(a2.z), b, acc6);
            acc7 = fma(vec4<f32>(a2.w), b, acc7);
        }
        workgroupBarrier();
    }
    return array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
}

// The product whose rows are the pixels of an (N, channels, plane) output, forward
// or backward_input: one BM x BN tile of it, stored in NCHW order. Forward (`bias`)
// adds the channel's bias and, with U.relu, applies the ReLU; backward_input with
// U.relu zeroes the gradient where the input (`gate`) is not positive.
fn planes_product(mode: u32, lid: vec3<u32>, li: u32, wid: vec3<u32>, nwg: vec3<u32>,
                  channels: u32, plane: u32, red_len: u32, bias: bool) {
    let rows = U.n * plane;
    let row0 = folded_group(wid, nwg) * BM;
    if (row0 >= rows) {
        return;
    }
    let col0 = wid.z * BN;
    let acc = gemm_tile(mode, lid, li, row0, col0, rows, channels, 0u, red_len);
    for (var i = 0u; i < TM; i++) {
        let row = row0 + lid.y * TM + i;
        if (row >= rows) {
            break;
        }
        let n = row / plane;
        let q = row % plane;
        for (var j = 0u; j < TN; j++) {
            let col = col0 + lid.x * TN + j;
            if (col < channels) {
                let at = (n * channels + col) * plane + q;
                var v = acc[i][j];
                if (bias) {
                    v += src_b[U.b_off + col];
                    if (U.relu != 0u) {
                        v = max(v, 0.0);
                    }
                } else if (U.relu != 0u) {
                    v = select(0.0, v, gate[at] > 0.0);
                }
                out[at] = v;
            }
        }
    }
}

@compute @workgroup_size(BN / TN, BM / TM)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    planes_product(MODE_FORWARD, lid, li, wid, nwg, U.oc, U.oh * U.ow, U.c * U.k * U.k, true);
}

@compute @workgroup_size(BN / TN, BM / TM)
fn backward_input(@builtin(local_invocation_id) lid: vec3<u32>,
                  @builtin(local_invocation_index) li: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    planes_product(MODE_BACKWARD_INPUT, lid, li, wid, nwg, U.c, U.h * U.w, U.oc * U.k * U.k, false);
}

@compute @workgroup_size(BN / TN, BM / TM)
fn backward_weight_bias(@builtin(local_invocation_id) lid: vec3<u32>,
                        @builtin(local_invocation_index) li: u32,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let rows = U.c * U.k * U.k + 1u; // the taps, then the bias
    let red_len = U.n * U.oh * U.ow;
    let tile = folded_group(wid, nwg);
    if (tile * BM >= rows) {
        return;
    }
    let col_tiles = (U.oc + BN - 1u) / BN;
    let split = wid.z / col_tiles;
    let row0 = tile * BM;
    let col0 = (wid.z % col_tiles) * BN;
    let red_begin = split * U.chunk;
    let red_end = min(red_begin + U.chunk, red_len);
    let acc = gemm_tile(MODE_BACKWARD_WEIGHT_BIAS, lid, li, row0, col0, rows, U.oc, red_begin, red_end);
    for (var i = 0u; i < TM; i++) {
        let row = row0 + lid.y * TM + i;
        if (row >= rows) {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let col = col0 + lid.x * TN + j;
            if (col < U.oc) {
                out[(split * rows + row) * U.oc + col] = acc[i][j];
            }
        }
    }
}

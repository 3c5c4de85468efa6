// Conv2d's shared-memory tiled engine (after tfjs-webgpu's conv2d): implicit
// GEMM on one tiled matmul, no im2col buffer ever materialised; the tile loaders
// compute each element's address from the shapes in `P`. Follows conv2d_common.wgsl.
//
// As GEMMs:
//   forward          rows = (n,oh,ow)  cols = oc  A = im2col(x)  B = W^T
//   backward_input   rows = (n,ih,iw)  cols = c   A = dy gathered through the kernel window
//   backward_weight  rows = (c,kh,kw)  cols = oc  A = im2col(x)^T  B = dy
//                    (plus a row of ones after the taps: its product is db)
//
// Dispatch: x,y = the row-tile index folded into two dimensions (so any batch
// stays under 65,535 workgroups a dimension), z = col tile (+ split * col tiles).

const BM: u32 = 64u;   // tile rows
const BN: u32 = 32u;   // tile cols
const BK: u32 = 16u;   // reduction step
const TM: u32 = 8u;    // rows per thread (register block)
const TN: u32 = 4u;    // cols per thread
const THREADS: u32 = 64u; // (BN/TN) x (BM/TM)

// Tiles stored as vec4 so each thread reads its 4 rows / 4 columns in one load and
// accumulates in four vec4 registers: no dynamically indexed arrays in the hot loop
// (llvmpipe spills those to memory).
var<workgroup> As: array<vec4<f32>, 256>; // [BK][BM/4]
var<workgroup> Bs: array<vec4<f32>, 128>; // [BK][BN/4]

const MODE_FORWARD: u32 = 0u;
const MODE_BACKWARD_INPUT: u32 = 1u;
const MODE_BACKWARD_WEIGHT: u32 = 2u;

// Reciprocals of the divisors, and the state of the one A row each thread loads:
// a thread's row within the tile is fixed (THREADS is a multiple of BM), so its
// (n,oh,ow) / (n,ih,iw) / (c,kh,kw) decomposition is computed once, not per element.
var<private> r_k: f32;
var<private> r_kk: f32;
var<private> r_ow: f32;
var<private> row_ok: bool;
var<private> row_base: u32;
var<private> row_y: i32;
var<private> row_x: i32;
var<private> row_bias: bool; // backward_weight: the extra row of ones that yields db

fn setup_row(mode: u32, row: u32, rows: u32) {
    let kk = P.k * P.k;
    let ohw = P.oh * P.ow;
    r_k = 1.0 / f32(P.k);
    r_kk = 1.0 / f32(kk);
    r_ow = 1.0 / f32(P.ow);
    r_ohw = 1.0 / f32(ohw);
    r_stride = 1.0 / f32(P.stride);
    row_ok = row < rows;
    let r = min(row, rows - 1u);
    switch mode {
        case 0u: {
            // row = output pixel (n,oh,ow); A = im2col(x)
            let n = fdiv(r, ohw, r_ohw);
            let q = r - n * ohw;
            let oh = fdiv(q, P.ow, r_ow);
            row_base = n * P.c * P.h * P.w;
            row_y = i32(oh * P.stride) - i32(P.pad);
            row_x = i32((q - oh * P.ow) * P.stride) - i32(P.pad);
        }
        case 1u: {
            // row = input pixel (n,ih,iw); A = dy through the kernel
            let hw = P.h * P.w;
            let n = fdiv(r, hw, 1.0 / f32(hw));
            let q = r - n * hw;
            let ih = fdiv(q, P.w, 1.0 / f32(P.w));
            row_base = n * P.oc * ohw;
            row_y = i32(ih + P.pad);
            row_x = i32(q - ih * P.w + P.pad);
        }
        default: {
            // row = kernel tap (c,kh,kw), or C*K*K for the bias; A = im2col(x) transposed
            row_bias = r == P.c * kk;
            let c = fdiv(r, kk, r_kk);
            let t = r - c * kk;
            let kh = fdiv(t, P.k, r_k);
            row_base = c * P.h * P.w;
            row_y = i32(kh) - i32(P.pad);
            row_x = i32(t - kh * P.k) - i32(P.pad);
        }
    }
}

fn a_elem(mode: u32, r: u32) -> f32 {
    let kk = P.k * P.k;
    switch mode {
        case 0u: {
            // r = (c,kh,kw)
            let c = fdiv(r, kk, r_kk);
            let t = r - c * kk;
            let kh = fdiv(t, P.k, r_k);
            let ih = row_y + i32(kh);
            let iw = row_x + i32(t - kh * P.k);
            if (ih < 0 || iw < 0 || ih >= i32(P.h) || iw >= i32(P.w)) {
                return 0.0;
            }
            return src_a[row_base + (c * P.h + u32(ih)) * P.w + u32(iw)];
        }
        case 1u: {
            // r = (oc,kh,kw): the output pixel this tap reaches, if any
            let oc = fdiv(r, kk, r_kk);
            let t = r - oc * kk;
            let kh = fdiv(t, P.k, r_k);
            let th = row_y - i32(kh);
            let tw = row_x - i32(t - kh * P.k);
            if (th < 0 || tw < 0) {
                return 0.0;
            }
            // Through fdiv whatever the stride: llvmpipe runs both sides of a branch.
            let oh = fdiv(u32(th), P.stride, r_stride);
            let ow = fdiv(u32(tw), P.stride, r_stride);
            if (oh * P.stride != u32(th) || ow * P.stride != u32(tw) || oh >= P.oh || ow >= P.ow) {
                return 0.0;
            }
            return src_a[row_base + (oc * P.oh + oh) * P.ow + ow];
        }
        default: {
            // r = output pixel (n,oh,ow); the bias row is all ones: db = sum of dy
            if (row_bias) {
                return 1.0;
            }
            let ohw = P.oh * P.ow;
            let n = fdiv(r, ohw, r_ohw);
            let q = r - n * ohw;
            let oh = fdiv(q, P.ow, r_ow);
            let ih = i32(oh * P.stride) + row_y;
            let iw = i32((q - oh * P.ow) * P.stride) + row_x;
            if (ih < 0 || iw < 0 || ih >= i32(P.h) || iw >= i32(P.w)) {
                return 0.0;
            }
            return src_a[n * P.c * P.h * P.w + row_base + u32(ih) * P.w + u32(iw)];
        }
    }
}

// dy (in src_b) at output pixel p = (n,oh,ow), channel oc.
fn dy_at(p: u32, oc: u32) -> f32 {
    let ohw = P.oh * P.ow;
    let n = fdiv(p, ohw, r_ohw);
    return src_b[(n * P.oc + oc) * ohw + (p - n * ohw)];
}

fn b_elem(mode: u32, r: u32, col: u32) -> f32 {
    let kk = P.k * P.k;
    switch mode {
        case 0u: { return src_b[P.w_off + col * P.c * kk + r]; }
        case 1u: {
            let oc = fdiv(r, kk, r_kk);
            return src_b[P.w_off + (oc * P.c + col) * kk + (r - oc * kk)];
        }
        default: { return dy_at(r, col); }
    }
}

// One BM x BN output tile over reduction range [r_begin, r_end); each thread
// returns its TM x TN block (row i of the block in element i). Must be called in uniform control flow (barriers).
fn gemm_tile(mode: u32, lid: vec3<u32>, li: u32, row0: u32, col0: u32, rows: u32, cols: u32,
             r_begin: u32, r_end: u32) -> array<vec4<f32>, 8> {
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
    for (var r0 = r_begin; r0 < r_end; r0 += BK) {
        for (var i = 0u; i < (BM * BK) / THREADS; i++) {
            let kr = li / BM + i * (THREADS / BM);
            var v = 0.0;
            if (row_ok && r0 + kr < r_end) {
                v = a_elem(mode, r0 + kr);
            }
            As[kr * (BM / 4u) + am / 4u][am % 4u] = v;
        }
        for (var i = 0u; i < (BN * BK) / THREADS; i++) {
            let kr = li / BN + i * (THREADS / BN);
            var v = 0.0;
            if (col_ok && r0 + kr < r_end) {
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

@compute @workgroup_size(8, 8)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let ohw = P.oh * P.ow;
    let rows = P.n * ohw;
    let tile = folded_tile(wid, nwg);
    if (tile * BM >= rows) {
        return;
    }
    let row0 = tile * BM;
    let col0 = wid.z * BN;
    let acc = gemm_tile(MODE_FORWARD, lid, li, row0, col0, rows, P.oc, 0u, P.c * P.k * P.k);
    for (var i = 0u; i < TM; i++) {
        let row = row0 + lid.y * TM + i;
        if (row >= rows) {
            break;
        }
        let n = row / ohw;
        let q = row % ohw;
        for (var j = 0u; j < TN; j++) {
            let col = col0 + lid.x * TN + j;
            if (col < P.oc) {
                var v = acc[i][j] + src_b[P.b_off + col];
                if (P.relu != 0u) {
                    v = max(v, 0.0);
                }
                out[(n * P.oc + col) * ohw + q] = v;
            }
        }
    }
}

@compute @workgroup_size(8, 8)
fn backward_input(@builtin(local_invocation_id) lid: vec3<u32>,
                  @builtin(local_invocation_index) li: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let hw = P.h * P.w;
    let rows = P.n * hw;
    let tile = folded_tile(wid, nwg);
    if (tile * BM >= rows) {
        return;
    }
    let row0 = tile * BM;
    let col0 = wid.z * BN;
    let acc = gemm_tile(MODE_BACKWARD_INPUT, lid, li, row0, col0, rows, P.c, 0u, P.oc * P.k * P.k);
    for (var i = 0u; i < TM; i++) {
        let row = row0 + lid.y * TM + i;
        if (row >= rows) {
            break;
        }
        let n = row / hw;
        let q = row % hw;
        for (var j = 0u; j < TN; j++) {
            let col = col0 + lid.x * TN + j;
            if (col < P.c) {
                out[(n * P.c + col) * hw + q] = acc[i][j];
            }
        }
    }
}

@compute @workgroup_size(8, 8)
fn backward_weight(@builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(local_invocation_index) li: u32,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let rows = P.c * P.k * P.k + 1u; // the taps, then the bias
    let red_len = P.n * P.oh * P.ow;
    let tile = folded_tile(wid, nwg);
    if (tile * BM >= rows) {
        return;
    }
    let col_tiles = (P.oc + BN - 1u) / BN;
    let split = wid.z / col_tiles;
    let row0 = tile * BM;
    let col0 = (wid.z % col_tiles) * BN;
    let r_begin = split * P.chunk;
    let r_end = min(r_begin + P.chunk, red_len);
    let acc = gemm_tile(MODE_BACKWARD_WEIGHT, lid, li, row0, col0, rows, P.oc, r_begin, r_end);
    for (var i = 0u; i < TM; i++) {
        let row = row0 + lid.y * TM + i;
        if (row >= rows) {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let col = col0 + lid.x * TN + j;
            if (col < P.oc) {
                out[(split * rows + row) * P.oc + col] = acc[i][j];
            }
        }
    }
}

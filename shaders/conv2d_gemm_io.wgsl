// Where a conv GEMM's operands come from and where its results go, for the engines
// whose workgroups stage A and B tiles in workgroup memory (conv2d_tiled.wgsl, and in
// mixed precision conv2d_mixed.wgsl): the element of A or B at a reduction index,
// gathered from the tensors through the shapes in `U` (no im2col buffer), and the
// epilogue that stores a product whose rows are the pixels of an NCHW output.
// #include "conv2d_common.wgsl"
//
// As GEMMs:
//   forward               rows = (n,oh,ow)  cols = oc  A = im2col(x)  B = W^T
//   backward_input        rows = (n,ih,iw)  cols = c   A = dy gathered through the kernel window
//   backward_weight_bias  rows = (c,kh,kw)  cols = oc  A = im2col(x)^T  B = dy
//                         (plus a row of ones after the taps: its product is db)

const MODE_FORWARD: u32 = 0u;
const MODE_BACKWARD_INPUT: u32 = 1u;
const MODE_BACKWARD_WEIGHT_BIAS: u32 = 2u;

// Reciprocals of the divisors, and the state of the one A row each thread loads: a
// thread's row within the tile is fixed (each engine's thread count is a multiple of
// its tile's rows), so its (n,oh,ow) / (n,ih,iw) / (c,kh,kw) decomposition is
// computed once, not per element.
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

// One value of a product whose rows are the pixels of an (N, channels, plane) output,
// forward or backward_input, at image n, pixel q, channel col, stored in NCHW order.
// Forward (`bias`) adds the channel's bias and, with U.relu, applies the ReLU;
// backward_input with U.relu zeroes the gradient where the input (`gate`) is not positive.
fn store_plane(n: u32, q: u32, col: u32, channels: u32, plane: u32, bias: bool, acc: f32) {
    let at = (n * channels + col) * plane + q;
    var v = acc;
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

// Where a forward or backward_input workgroup works, for tiles of `bm` rows (pixels of
// the N output planes of `plane` pixels) by `bn` columns (channels): the rows, the
// tile's first row and column; `live` is false for the workgroups a folded grid has
// past the last row tile.
struct PlaneTile {
    rows: u32,
    row0: u32,
    col0: u32,
    live: bool,
}

fn plane_tile(wid: vec3<u32>, nwg: vec3<u32>, plane: u32, bm: u32, bn: u32) -> PlaneTile {
    let rows = U.n * plane;
    let row0 = folded_group(wid, nwg) * bm;
    return PlaneTile(rows, row0, wid.z * bn, row0 < rows);
}

// Where a backward_weight_bias workgroup works, for tiles of `bm` rows (taps) by
// `bn` columns (channels): rows C*K*K + 1 (the taps, then the bias), the tile's
// first row and column, its split of the reduction and that split's range. `live`
// is false for the workgroups a folded grid has past the last row tile.
struct WeightTile {
    rows: u32,
    row0: u32,
    col0: u32,
    split: u32,
    red_begin: u32,
    red_end: u32,
    live: bool,
}

fn weight_tile(wid: vec3<u32>, nwg: vec3<u32>, bm: u32, bn: u32) -> WeightTile {
    let rows = U.c * U.k * U.k + 1u;
    let tile = folded_group(wid, nwg);
    let col_tiles = (U.oc + bn - 1u) / bn;
    let split = wid.z / col_tiles;
    let red_begin = split * U.chunk;
    let red_end = min(red_begin + U.chunk, U.n * U.oh * U.ow);
    return WeightTile(rows, tile * bm, (wid.z % col_tiles) * bn, split, red_begin, red_end, tile * bm < rows);
}

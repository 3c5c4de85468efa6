// Conv2d's subgroup-broadcast engine, for 8-lane SIMD: llvmpipe/lavapipe on
// AVX2, where a subgroup is one 256-bit register.
// #include "conv2d_subgroup_io.wgsl"
// #include "conv2d_subgroup_rows.wgsl"
//
// Why a second engine: llvmpipe runs 8 invocations as the lanes of one vector
// and turns every storage or workgroup-memory load whose address differs across
// lanes into a loop of 8 scalar loads. The tiled engine's inner loop reads
// workgroup memory per FMA, so on llvmpipe it is bound by those loops. Here a
// workgroup is one 8-lane subgroup and shares nothing through memory: each lane
// loads a value once and `subgroupBroadcast` (an extract and a splat) hands it
// to the other seven, so each loaded value feeds 8 to 32 vector FMAs.
//
// As GEMMs, with out[row, col] = sum_r A[row, r] * B[r, col]:
//   forward               rows = oc  cols = (n,oh,ow)  A = W    B = im2col(x)
//   backward_input        rows = c   cols = (n,ih,iw)  A = W^T  B = dy through the kernel window
//   backward_weight_bias  rows = oc  cols = (c,kh,kw)  A = dy  B = im2col(x)^T, split along r
//                         (plus a column of ones after the taps: its product is db)
// The rows are always the short channel dimension, loaded by lane `l` for rows
// l, l+8, l+16, l+24 of the tile and broadcast; the columns are the long pixel
// or tap dimension, 8 per lane (4l..4l+3 and 32+4l..32+4l+3 of a 64-wide tile),
// gathered from src_a. Each lane accumulates ROW_GROUPS*8 rows x 8 columns.
//
// Stride-1 5x5 convolutions (all of the tutorial model's) run all three products
// in conv2d_subgroup_rows.wgsl instead, which reuses each gathered input along a
// kernel row.
//
// Dispatch: workgroup_size(8); x,y = column tile folded into two dimensions,
// z = row tile (+ split * row tiles for backward_weight_bias).

// (c, kh, kw) of reduction index r over (channels, K, K); inv_k = 1/K, inv_kk = 1/K^2.
var<private> inv_k: f32;
var<private> inv_kk: f32;

fn tap_of(r: u32) -> vec3<u32> {
    let kk = U.k * U.k;
    let c = udiv_small(r, kk, inv_kk);
    let t = r - c * kk;
    let kh = udiv_small(t, U.k, inv_k);
    return vec3(c, kh, t - kh * U.k);
}

// Output columns of an (N, rows, plane) tensor at flat pixels p = (n, q) of a plane of `plane` pixels.
fn plane_cols(p: vec4<u32>, rows: u32, plane: u32) -> OutCols {
    let n = p / plane;
    return OutCols(n * rows * plane + (p - n * plane), p < vec4(U.n * plane));
}

// Store the tile into an (N, rows, plane) tensor: y (forward, with bias) or dx
// (backward_input, gated by the input's sign if U.relu).
fn emit_planes(t: Tile, rows: u32, plane: u32, bias: bool) {
    out_lo = plane_cols(t.col_lo, rows, plane);
    out_hi = plane_cols(t.col_hi, rows, plane);
    out_row_stride = plane;
    out_rows = rows;
    out_bias = bias;
    out_gate = !bias && U.relu != 0u;
    emit_all(t.row0);
}

// im2col columns: for output pixels p = (n,oh,ow), where each kernel tap reads x.
struct PixelCols {
    base: vec4<u32>, // n*C*H*W
    y0: vec4<i32>,   // oh*stride - pad
    x0: vec4<i32>,   // ow*stride - pad
    ok: vec4<bool>,
}

fn pixel_cols(p: vec4<u32>) -> PixelCols {
    let ohw = U.oh * U.ow;
    let n = p / ohw;
    let q = p - n * ohw;
    let oh = q / U.ow;
    let ow = q - oh * U.ow;
    let s = U.stride;
    return PixelCols(n * (U.c * U.h * U.w), vec4<i32>(oh * s) - i32(U.pad), vec4<i32>(ow * s) - i32(U.pad),
                     p < vec4(U.n * ohw));
}

// x at tap (c,kh,kw) for each of the four pixels (zero unless `live`).
fn im2col(cols: PixelCols, tap: vec3<u32>, live: bool) -> vec4<f32> {
    let ih = cols.y0 + i32(tap.y);
    let iw = cols.x0 + i32(tap.z);
    let ok = cols.ok & vec4(live) & (ih >= vec4(0)) & (iw >= vec4(0)) & (ih < vec4(i32(U.h))) & (iw < vec4(i32(U.w)));
    let idx = cols.base + (tap.x * U.h) * U.w + vec4<u32>(ih) * U.w + vec4<u32>(iw);
    return gather_a(idx, ok);
}

// Reduction step r < len of the forward product; w_row = this lane's rows of W (OC, C*K*K).
fn forward_step(lo: PixelCols, hi: PixelCols, w_row: vec4<u32>, w_ok: vec4<bool>, r: u32, len: u32) -> Step {
    let live = r < len;
    let tap = tap_of(r);
    return Step(gather_rows(w_row + r, w_ok & vec4(live)), im2col(lo, tap, live), im2col(hi, tap, live),
                vec2(0.0));
}

@compute @workgroup_size(8)
fn forward(@builtin(subgroup_invocation_id) lane: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    let col_tile = folded_group(wid, nwg);
    if (col_tile * TILE_COLS >= U.n * U.oh * U.ow) {
        return;
    }
    let t = tile_at(lane, wid.z, col_tile);
    let lo = pixel_cols(t.col_lo);
    let hi = pixel_cols(t.col_hi);
    inv_k = 1.0 / f32(U.k);
    inv_kk = 1.0 / f32(U.k * U.k);
    let ckk = U.c * U.k * U.k;
    let w_row = U.w_off + t.rows * ckk;
    let w_ok = t.rows < vec4(U.oc);
    for (var r = 0u; r < ckk; r += STEPS) {
        accumulate4(forward_step(lo, hi, w_row, w_ok, r, ckk), forward_step(lo, hi, w_row, w_ok, r + 1u, ckk),
                    forward_step(lo, hi, w_row, w_ok, r + 2u, ckk), forward_step(lo, hi, w_row, w_ok, r + 3u, ckk));
    }
    emit_planes(t, U.oc, U.oh * U.ow, true);
}

// dy columns: for input pixels (n,ih,iw), the output pixels their taps reach.
struct InputCols {
    base: vec4<u32>, // n*OC*OH*OW
    yy: vec4<i32>,   // ih + pad
    xx: vec4<i32>,   // iw + pad
    ok: vec4<bool>,
}

fn input_cols(p: vec4<u32>) -> InputCols {
    let hw = U.h * U.w;
    let n = p / hw;
    let q = p - n * hw;
    let ih = q / U.w;
    return InputCols(n * (U.oc * U.oh * U.ow), vec4<i32>(ih) + i32(U.pad), vec4<i32>(q - ih * U.w) + i32(U.pad),
                     p < vec4(U.n * hw));
}

// A pipeline compiled for stride 1 (the host sets this for convolutions of stride
// 1), where the window needs no division: llvmpipe runs both sides of every branch,
// so only a compile-time constant removes the general path.
override UNIT_STRIDE: bool = false;

// dy[n, oc, oh, ow] where oh*stride = ih + pad - kh and ow*stride = iw + pad - kw.
fn dy_window(cols: InputCols, tap: vec3<u32>, live: bool) -> vec4<f32> {
    let th = cols.yy - i32(tap.y);
    let tw = cols.xx - i32(tap.z);
    let uh = vec4<u32>(max(th, vec4(0)));
    let uw = vec4<u32>(max(tw, vec4(0)));
    var oh = uh;
    var ow = uw;
    var ok = cols.ok & vec4(live) & (th >= vec4(0)) & (tw >= vec4(0));
    if (!UNIT_STRIDE) {
        oh = udiv_small4(uh, U.stride, inv_stride);
        ow = udiv_small4(uw, U.stride, inv_stride);
        ok &= (oh * U.stride == uh) & (ow * U.stride == uw);
    }
    ok &= (oh < vec4(U.oh)) & (ow < vec4(U.ow));
    let idx = cols.base + tap.x * U.oh * U.ow + oh * U.ow + ow;
    return gather_a(idx, ok);
}

// Reduction step r = (oc,kh,kw) < len of the backward-input product; w_row = this
// lane's rows c of W^T as w_off + c*K*K (W[oc, c, kh, kw] is w_row + oc*C*K*K + kh*K + kw).
fn backward_input_step(lo: InputCols, hi: InputCols, w_row: vec4<u32>, w_ok: vec4<bool>, r: u32, len: u32) -> Step {
    let live = r < len;
    let tap = tap_of(r);
    let kk = U.k * U.k;
    let w = gather_rows(w_row + tap.x * U.c * kk + (r - tap.x * kk), w_ok & vec4(live));
    return Step(w, dy_window(lo, tap, live), dy_window(hi, tap, live), vec2(0.0));
}

@compute @workgroup_size(8)
fn backward_input(@builtin(subgroup_invocation_id) lane: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    let col_tile = folded_group(wid, nwg);
    if (col_tile * TILE_COLS >= U.n * U.h * U.w) {
        return;
    }
    let t = tile_at(lane, wid.z, col_tile);
    inv_stride = 1.0 / f32(U.stride);
    let lo = input_cols(t.col_lo);
    let hi = input_cols(t.col_hi);
    inv_k = 1.0 / f32(U.k);
    inv_kk = 1.0 / f32(U.k * U.k);
    let len = U.oc * U.k * U.k;
    let w_row = U.w_off + t.rows * (U.k * U.k);
    let w_ok = t.rows < vec4(U.c);
    for (var r = 0u; r < len; r += STEPS) {
        accumulate4(backward_input_step(lo, hi, w_row, w_ok, r, len),
                    backward_input_step(lo, hi, w_row, w_ok, r + 1u, len),
                    backward_input_step(lo, hi, w_row, w_ok, r + 2u, len),
                    backward_input_step(lo, hi, w_row, w_ok, r + 3u, len));
    }
    emit_planes(t, U.c, U.h * U.w, false);
}

// im2col^T columns: for kernel taps (c,kh,kw), where each output pixel reads x;
// column C*K*K is the bias, all ones (its product is db).
struct TapCols {
    off: vec4<u32>,  // c*H*W + (kh - pad)*W + (kw - pad), wrapping: x's offset from the pixel's (oh, ow)
    dy: vec4<u32>,   // kh - pad, wrapping
    dx: vec4<u32>,   // kw - pad, wrapping
    ok: vec4<bool>,  // a tap
    bias: vec4<bool>,
}

fn tap_cols(tap: vec4<u32>) -> TapCols {
    let kk = U.k * U.k;
    let c = tap / kk;
    let q = tap - c * kk;
    let kh = q / U.k;
    let dy = kh - U.pad;
    let dx = q - kh * U.k - U.pad;
    return TapCols(c * U.h * U.w + dy * U.w + dx, dy, dx, tap < vec4(U.c * kk), tap == vec4(U.c * kk));
}

var<private> inv_ow: f32;

// x at output pixel (n,oh,ow) through each of the four taps (zero unless `live`).
// In wrapping u32 arithmetic a row or column left of 0 becomes huge, so one
// unsigned comparison a side bounds it, and x's index is the pixel's plus the tap's.
fn im2col_t(cols: TapCols, n: u32, oh: u32, ow: u32, live: bool) -> vec4<f32> {
    let y = oh * U.stride;
    let x = ow * U.stride;
    let ok = cols.ok & vec4(live) & (y + cols.dy < vec4(U.h)) & (x + cols.dx < vec4(U.w));
    let idx = (n * U.c * U.h + y) * U.w + x + cols.off;
    return select(gather_a(idx, ok), vec4(1.0), cols.bias & vec4(live));
}

// Reduction step r = output pixel (n,oh,ow) < end of the backward-weight product;
// dy_row = this lane's rows oc as oc*OH*OW (dy[n, oc, q] is at n*OC*OH*OW + dy_row + q).
fn backward_weight_step(lo: TapCols, hi: TapCols, dy_row: vec4<u32>, dy_ok: vec4<bool>, r: u32, end: u32) -> Step {
    let live = r < end;
    let ohw = U.oh * U.ow;
    let n = udiv(r, ohw, inv_ohw);
    let q = r - n * ohw;
    let oh = udiv_small(q, U.ow, inv_ow);
    let dy = gather_rows(n * U.oc * ohw + dy_row + q, dy_ok & vec4(live));
    return Step(dy, im2col_t(lo, n, oh, q - oh * U.ow, live), im2col_t(hi, n, oh, q - oh * U.ow, live),
                vec2(0.0));
}

@compute @workgroup_size(8)
fn backward_weight_bias(@builtin(subgroup_invocation_id) lane: u32,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    let place = split_of(wid.z);
    let col_tile = folded_group(wid, nwg);
    let ckk = U.c * U.k * U.k;
    let cols = ckk + 1u; // the taps, then the bias
    if (col_tile * TILE_COLS >= cols) {
        return;
    }
    let t = tile_at(lane, place.row_tile, col_tile);
    let lo = tap_cols(t.col_lo);
    let hi = tap_cols(t.col_hi);
    let ohw = U.oh * U.ow;
    let red_begin = place.split * U.chunk;
    let red_end = min(red_begin + U.chunk, U.n * ohw);
    inv_ohw = 1.0 / f32(ohw);
    inv_ow = 1.0 / f32(U.ow);
    let dy_row = t.rows * ohw;
    let dy_ok = t.rows < vec4(U.oc);
    // Four steps at a time; those past red_end are zero.
    for (var r = red_begin; r < red_end; r += STEPS) {
        accumulate4(backward_weight_step(lo, hi, dy_row, dy_ok, r, red_end),
                    backward_weight_step(lo, hi, dy_row, dy_ok, r + 1u, red_end),
                    backward_weight_step(lo, hi, dy_row, dy_ok, r + 2u, red_end),
                    backward_weight_step(lo, hi, dy_row, dy_ok, r + 3u, red_end));
    }
    out_lo = OutCols((place.split * cols + t.col_lo) * U.oc, t.col_lo < vec4(cols));
    out_hi = OutCols((place.split * cols + t.col_hi) * U.oc, t.col_hi < vec4(cols));
    emit_partials(t.row0);
}

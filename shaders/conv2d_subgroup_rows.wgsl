// The subgroup engine's forward and input gradient for stride-1 5x5 convolutions
// (every layer of the tutorial model), walking the kernel a row at a time.
// #include "conv2d_subgroup_io.wgsl"
//
// Why: in the general products (conv2d_subgroup.wgsl) each of a lane's pixel
// columns gathers its own input at every tap, 8 gathers a reduction step, and on
// llvmpipe each gather is a loop over the 8 lanes. Here a lane's four columns are
// four neighbouring pixels of one image row, so along one kernel row (fixed c, kh)
// its 4 pixels x 5 taps read only 8 distinct inputs, one row of the source: 8
// gathered floats serve five reduction steps where the general products gather 20.
//
// The cost is the layout of the columns: (n, row, x) with each image row padded
// to a multiple of 4 pixels, so no lane's four straddle two rows. Widths 28, 14 and
// 7 become 28, 16 and 8 columns; the padding's FMAs are wasted (1/8 at widths 14
// and 7). The host counts columns with the same padding (`ConvKernels::layout`).
//
//   forward_rows         rows = oc  cols = (n,oh,ow < pad4(OW))  r = (c,kh,kw)   B(kw) = x[n, c, oh+kh-pad, ow+kw-pad]
//   backward_input_rows  rows = c   cols = (n,ih,iw < pad4(W))   r = (oc,kh,kw)  B(kw) = dy[n, oc, ih+pad-kh, iw+pad-kw]
// (pad4: rounded up to a multiple of 4). udiv_small splits a column within an
// image, so one image's padded plane (rows x pad4(width)) must stay under 2^24.
// Both run 4 kernel rows (20 reduction steps) an iteration, then the rows left
// (C*5 or OC*5 modulo 4) one at a time; conv1's forward (C = 1) is 4 + 1.

// The kernel size these products are written for (`ROW_KERNEL` on the host).
const ROW_K: u32 = 5u;
const INV_ROW_K: f32 = 1.0 / 5.0;
// Pixel columns a lane's group of four spans: rows are padded to a multiple of it.
const ROW_PIXELS: u32 = 4u;
// Kernel rows an iteration of `rows4` takes.
const KERNEL_ROWS_A_STEP: u32 = 4u;

// Eight consecutive inputs of one source row: positions 0..3 in a, 4..7 in b.
struct Win {
    a: vec4<f32>,
    b: vec4<f32>,
}

// A lane's B values at the five taps kw = 0..4 of one kernel row, for its 4 pixels.
struct Taps {
    k0: vec4<f32>,
    k1: vec4<f32>,
    k2: vec4<f32>,
    k3: vec4<f32>,
    k4: vec4<f32>,
}

// Forward: pixel i at tap kw reads window position i + kw.
fn taps_rising(w: Win) -> Taps {
    return Taps(w.a, vec4(w.a.yzw, w.b.x), vec4(w.a.zw, w.b.xy), vec4(w.a.w, w.b.xyz), w.b);
}

// Input gradient: pixel i at tap kw reads window position i + 4 - kw.
fn taps_falling(w: Win) -> Taps {
    return Taps(w.b, vec4(w.a.w, w.b.xyz), vec4(w.a.zw, w.b.xy), vec4(w.a.yzw, w.b.x), w.a);
}

// A lane's four pixels (n, row, x0..x0+3) of columns laid out (n, row, x) with
// `xp` (a multiple of 4) columns a row.
struct RowPixels {
    n: u32,
    row: u32,
    x0: u32,
    ok: bool,
}

var<private> inv_row_plane: f32;
var<private> inv_xp: f32;

fn row_pixels(col: u32, rows: u32, xp: u32) -> RowPixels {
    let plane = rows * xp;
    let n = udiv(col, plane, inv_row_plane);
    let q = col - n * plane;
    let row = udiv_small(q, xp, inv_xp);
    return RowPixels(n, row, q - row * xp, n < U.n);
}

// Where the pixels' results go in an (N, channels, rows, width) tensor.
fn row_out(p: RowPixels, channels: u32, rows: u32, width: u32) -> OutCols {
    let x = p.x0 + vec4(0u, 1u, 2u, 3u);
    return OutCols(p.n * channels * rows * width + p.row * width + x, vec4(p.ok) & (x < vec4(width)));
}

// Where a lane's windows lie in an (N, planes, rows, width) source: row `row0` plus
// (forward) or minus (input gradient) kh, columns col0..col0+7.
struct Source {
    img: u32, // n*planes*rows*width
    rows: u32,
    width: u32,
    row0: i32,
    col0: i32,
    ok_a: vec4<bool>, // columns col0..col0+3 inside the row (and the pixels exist)
    ok_b: vec4<bool>, // columns col0+4..col0+7
}

fn source(p: RowPixels, planes: u32, rows: u32, width: u32, row0: i32, col0: i32) -> Source {
    let xa = vec4(col0) + vec4(0, 1, 2, 3);
    let xb = xa + 4;
    let w = vec4(i32(width));
    let ok = vec4(p.ok);
    return Source(p.n * planes * rows * width, rows, width, row0, col0, ok & (xa >= vec4(0)) & (xa < w),
                  ok & (xb >= vec4(0)) & (xb < w));
}

// Row `y` of plane `plane`, columns col0..col0+7 (zero outside the source).
fn window(s: Source, plane: u32, y: i32) -> Win {
    let ok = vec4(y >= 0 && y < i32(s.rows));
    // u32(col0) wraps for a negative col0; those columns are masked.
    let i = s.img + (plane * s.rows + u32(y)) * s.width + u32(s.col0) + vec4(0u, 1u, 2u, 3u);
    return Win(gather_a(i, s.ok_a & ok), gather_a(i + 4u, s.ok_b & ok));
}

fn row_step(w_row: vec4<u32>, w_ok: vec4<bool>, off: u32, lo: vec4<f32>, hi: vec4<f32>) -> Step {
    return Step(gather_rows(w_row + off, w_ok), lo, hi);
}

// Twenty reduction steps: four kernel rows j, each of five taps, whose A values
// sit at w_row + a[j] + kw. Written out for the register tile (subgroup_tile.wgsl).
fn rows4(w_row: vec4<u32>, w_ok: vec4<bool>, a: vec4<u32>,
         l0: Taps, h0: Taps, l1: Taps, h1: Taps, l2: Taps, h2: Taps, l3: Taps, h3: Taps) {
    accumulate4(row_step(w_row, w_ok, a.x, l0.k0, h0.k0), row_step(w_row, w_ok, a.x + 1u, l0.k1, h0.k1),
                row_step(w_row, w_ok, a.x + 2u, l0.k2, h0.k2), row_step(w_row, w_ok, a.x + 3u, l0.k3, h0.k3));
    accumulate4(row_step(w_row, w_ok, a.x + 4u, l0.k4, h0.k4), row_step(w_row, w_ok, a.y, l1.k0, h1.k0),
                row_step(w_row, w_ok, a.y + 1u, l1.k1, h1.k1), row_step(w_row, w_ok, a.y + 2u, l1.k2, h1.k2));
    accumulate4(row_step(w_row, w_ok, a.y + 3u, l1.k3, h1.k3), row_step(w_row, w_ok, a.y + 4u, l1.k4, h1.k4),
                row_step(w_row, w_ok, a.z, l2.k0, h2.k0), row_step(w_row, w_ok, a.z + 1u, l2.k1, h2.k1));
    accumulate4(row_step(w_row, w_ok, a.z + 2u, l2.k2, h2.k2), row_step(w_row, w_ok, a.z + 3u, l2.k3, h2.k3),
                row_step(w_row, w_ok, a.z + 4u, l2.k4, h2.k4), row_step(w_row, w_ok, a.w, l3.k0, h3.k0));
    accumulate4(row_step(w_row, w_ok, a.w + 1u, l3.k1, h3.k1), row_step(w_row, w_ok, a.w + 2u, l3.k2, h3.k2),
                row_step(w_row, w_ok, a.w + 3u, l3.k3, h3.k3), row_step(w_row, w_ok, a.w + 4u, l3.k4, h3.k4));
}

// One kernel row, where fewer than four are left: the register tile takes four
// steps at a time, so three of these eight are zero.
fn row1(w_row: vec4<u32>, w_ok: vec4<bool>, a: u32, l: Taps, h: Taps) {
    let zero = Step(vec4(0.0), vec4(0.0), vec4(0.0));
    accumulate4(row_step(w_row, w_ok, a, l.k0, h.k0), row_step(w_row, w_ok, a + 1u, l.k1, h.k1),
                row_step(w_row, w_ok, a + 2u, l.k2, h.k2), row_step(w_row, w_ok, a + 3u, l.k3, h.k3));
    accumulate4(row_step(w_row, w_ok, a + 4u, l.k4, h.k4), zero, zero, zero);
}

// (plane, kh) of kernel rows rr..rr+3, over (planes, ROW_K).
struct KernelRows {
    plane: vec4<u32>,
    kh: vec4<u32>,
}

fn kernel_rows_from(rr: u32) -> KernelRows {
    let r = rr + vec4(0u, 1u, 2u, 3u);
    let plane = vec4(udiv_small(r.x, ROW_K, INV_ROW_K), udiv_small(r.y, ROW_K, INV_ROW_K),
                     udiv_small(r.z, ROW_K, INV_ROW_K), udiv_small(r.w, ROW_K, INV_ROW_K));
    return KernelRows(plane, r - plane * ROW_K);
}

@compute @workgroup_size(8)
fn forward_rows(@builtin(subgroup_invocation_id) lane: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let xp = (U.ow + ROW_PIXELS - 1u) / ROW_PIXELS * ROW_PIXELS;
    let col_tile = folded_group(wid, nwg);
    if (col_tile * TILE_COLS >= U.n * U.oh * xp) {
        return;
    }
    let t = tile_at(lane, wid.z, col_tile);
    inv_row_plane = 1.0 / f32(U.oh * xp);
    inv_xp = 1.0 / f32(xp);
    let plo = row_pixels(t.col_lo.x, U.oh, xp);
    let phi = row_pixels(t.col_hi.x, U.oh, xp);
    let pad = i32(U.pad);
    let lo = source(plo, U.c, U.h, U.w, i32(plo.row) - pad, i32(plo.x0) - pad);
    let hi = source(phi, U.c, U.h, U.w, i32(phi.row) - pad, i32(phi.x0) - pad);
    let ckk = U.c * ROW_K * ROW_K;
    let w_row = U.w_off + t.rows * ckk;
    let w_ok = t.rows < vec4(U.oc);
    let count = U.c * ROW_K;
    let fours = count / KERNEL_ROWS_A_STEP * KERNEL_ROWS_A_STEP;
    for (var rr = 0u; rr < fours; rr += KERNEL_ROWS_A_STEP) {
        let k = kernel_rows_from(rr);
        let y = vec4<i32>(k.kh);
        rows4(w_row, w_ok, rr * ROW_K + vec4(0u, 5u, 10u, 15u),
              taps_rising(window(lo, k.plane.x, lo.row0 + y.x)),
              taps_rising(window(hi, k.plane.x, hi.row0 + y.x)),
              taps_rising(window(lo, k.plane.y, lo.row0 + y.y)),
              taps_rising(window(hi, k.plane.y, hi.row0 + y.y)),
              taps_rising(window(lo, k.plane.z, lo.row0 + y.z)),
              taps_rising(window(hi, k.plane.z, hi.row0 + y.z)),
              taps_rising(window(lo, k.plane.w, lo.row0 + y.w)),
              taps_rising(window(hi, k.plane.w, hi.row0 + y.w)));
    }
    for (var rr = fours; rr < count; rr++) {
        let k = kernel_rows_from(rr);
        let y = i32(k.kh.x);
        row1(w_row, w_ok, rr * ROW_K, taps_rising(window(lo, k.plane.x, lo.row0 + y)),
             taps_rising(window(hi, k.plane.x, hi.row0 + y)));
    }
    out_lo = row_out(plo, U.oc, U.oh, U.ow);
    out_hi = row_out(phi, U.oc, U.oh, U.ow);
    out_row_stride = U.oh * U.ow;
    out_rows = U.oc;
    out_bias = true;
    out_gate = false;
    emit_all(t.row0);
}

@compute @workgroup_size(8)
fn backward_input_rows(@builtin(subgroup_invocation_id) lane: u32,
                       @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let xp = (U.w + ROW_PIXELS - 1u) / ROW_PIXELS * ROW_PIXELS;
    let col_tile = folded_group(wid, nwg);
    if (col_tile * TILE_COLS >= U.n * U.h * xp) {
        return;
    }
    let t = tile_at(lane, wid.z, col_tile);
    inv_row_plane = 1.0 / f32(U.h * xp);
    inv_xp = 1.0 / f32(xp);
    let plo = row_pixels(t.col_lo.x, U.h, xp);
    let phi = row_pixels(t.col_hi.x, U.h, xp);
    // Pixel x0 + i at tap kw reads dy column x0 + i + pad - kw: the window starts at x0 + pad - 4.
    let pad = i32(U.pad);
    let back = i32(ROW_K) - 1;
    let lo = source(plo, U.oc, U.oh, U.ow, i32(plo.row) + pad, i32(plo.x0) + pad - back);
    let hi = source(phi, U.oc, U.oh, U.ow, i32(phi.row) + pad, i32(phi.x0) + pad - back);
    let kk = ROW_K * ROW_K;
    // W[oc, c, kh, kw] is at w_row + oc*C*K*K + kh*K + kw for this lane's rows c.
    let w_row = U.w_off + t.rows * kk;
    let w_ok = t.rows < vec4(U.c);
    let count = U.oc * ROW_K;
    let fours = count / KERNEL_ROWS_A_STEP * KERNEL_ROWS_A_STEP;
    for (var rr = 0u; rr < fours; rr += KERNEL_ROWS_A_STEP) {
        let k = kernel_rows_from(rr);
        let y = vec4<i32>(k.kh);
        rows4(w_row, w_ok, k.plane * (U.c * kk) + k.kh * ROW_K,
              taps_falling(window(lo, k.plane.x, lo.row0 - y.x)),
              taps_falling(window(hi, k.plane.x, hi.row0 - y.x)),
              taps_falling(window(lo, k.plane.y, lo.row0 - y.y)),
              taps_falling(window(hi, k.plane.y, hi.row0 - y.y)),
              taps_falling(window(lo, k.plane.z, lo.row0 - y.z)),
              taps_falling(window(hi, k.plane.z, hi.row0 - y.z)),
              taps_falling(window(lo, k.plane.w, lo.row0 - y.w)),
              taps_falling(window(hi, k.plane.w, hi.row0 - y.w)));
    }
    for (var rr = fours; rr < count; rr++) {
        let k = kernel_rows_from(rr);
        let y = i32(k.kh.x);
        row1(w_row, w_ok, k.plane.x * (U.c * kk) + k.kh.x * ROW_K, taps_falling(window(lo, k.plane.x, lo.row0 - y)),
             taps_falling(window(hi, k.plane.x, hi.row0 - y)));
    }
    out_lo = row_out(plo, U.c, U.h, U.w);
    out_hi = row_out(phi, U.c, U.h, U.w);
    out_row_stride = U.h * U.w;
    out_rows = U.c;
    out_bias = false;
    out_gate = U.relu != 0u;
    emit_all(t.row0);
}

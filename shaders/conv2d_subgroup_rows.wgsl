// The subgroup engine's products for stride-1 5x5 convolutions (every layer of
// the tutorial model), walking the kernel a row at a time: the forward and input
// gradient (`rows`), and the weight gradient (`weight_rows`, at the end of the file).
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
//
// With U.pool the forward also does the 2x2, stride-2 max-pool after it (and its
// ReLU): a lane's lo and hi pixels are then the same four columns of two
// neighbouring rows (2p, 2p+1) rather than of one row, so its eight values are two
// whole windows, and it stores the pooled value and argmax of each; the unpooled
// output is never written. The columns are (n, p, x < pad4(OW)), the last row
// dropped when OH is odd (floor mode), as many as without the pool when OH is even.
//
// The forward and input gradient are one entry point, `rows`, which U.flip
// switches, and each iteration takes 4 kernel rows (20 reduction steps), the last
// one padded with rows that add zero (conv1's forward, C*5 = 5 kernel rows, runs
// 8). Why: llvmpipe compiles each pipeline at its first dispatch, and these
// written-out steps are most of a cold start's compile; one entry point without a
// tail loop compiles a third as many (docs/performance.md, "Start-up on a cold
// shader cache"). The weight gradient's tile has two more columns a lane, so it is
// a pipeline of its own.

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

// A lane's B values for its 4 pixels at window offsets j = 0..4: positions j..j+3.
struct Taps {
    k0: vec4<f32>,
    k1: vec4<f32>,
    k2: vec4<f32>,
    k3: vec4<f32>,
    k4: vec4<f32>,
}

fn taps(w: Win) -> Taps {
    return Taps(w.a, vec4(w.a.yzw, w.b.x), vec4(w.a.zw, w.b.xy), vec4(w.a.w, w.b.xyz), w.b);
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

// Row `y` of plane `plane`, columns col0..col0+7 (zero outside the source, and
// where the kernel row is not `live`).
fn window(s: Source, plane: u32, y: i32, live: bool) -> Win {
    let ok = vec4(live && y >= 0 && y < i32(s.rows));
    // u32(col0) wraps for a negative col0; those columns are masked.
    let i = s.img + (plane * s.rows + u32(y)) * s.width + u32(s.col0) + vec4(0u, 1u, 2u, 3u);
    return Win(gather_a(i, s.ok_a & ok), gather_a(i + 4u, s.ok_b & ok));
}

fn row_step(w_row: vec4<u32>, w_ok: vec4<bool>, off: u32, lo: vec4<f32>, hi: vec4<f32>) -> Step {
    return Step(gather_rows(w_row + off, w_ok), lo, hi, vec2(0.0));
}

// Twenty reduction steps: four kernel rows, each of five window offsets j, whose
// A values sit at w_row + a[row] + d[j] (d[0] = 0). Written out for the register
// tile (subgroup_tile.wgsl).
fn rows4(w_row: vec4<u32>, w_ok: vec4<bool>, a: vec4<u32>, d: vec4<u32>,
         l0: Taps, h0: Taps, l1: Taps, h1: Taps, l2: Taps, h2: Taps, l3: Taps, h3: Taps) {
    accumulate4(row_step(w_row, w_ok, a.x, l0.k0, h0.k0), row_step(w_row, w_ok, a.x + d.x, l0.k1, h0.k1),
                row_step(w_row, w_ok, a.x + d.y, l0.k2, h0.k2), row_step(w_row, w_ok, a.x + d.z, l0.k3, h0.k3));
    accumulate4(row_step(w_row, w_ok, a.x + d.w, l0.k4, h0.k4), row_step(w_row, w_ok, a.y, l1.k0, h1.k0),
                row_step(w_row, w_ok, a.y + d.x, l1.k1, h1.k1), row_step(w_row, w_ok, a.y + d.y, l1.k2, h1.k2));
    accumulate4(row_step(w_row, w_ok, a.y + d.z, l1.k3, h1.k3), row_step(w_row, w_ok, a.y + d.w, l1.k4, h1.k4),
                row_step(w_row, w_ok, a.z, l2.k0, h2.k0), row_step(w_row, w_ok, a.z + d.x, l2.k1, h2.k1));
    accumulate4(row_step(w_row, w_ok, a.z + d.y, l2.k2, h2.k2), row_step(w_row, w_ok, a.z + d.z, l2.k3, h2.k3),
                row_step(w_row, w_ok, a.z + d.w, l2.k4, h2.k4), row_step(w_row, w_ok, a.w, l3.k0, h3.k0));
    accumulate4(row_step(w_row, w_ok, a.w + d.x, l3.k1, h3.k1), row_step(w_row, w_ok, a.w + d.y, l3.k2, h3.k2),
                row_step(w_row, w_ok, a.w + d.z, l3.k3, h3.k3), row_step(w_row, w_ok, a.w + d.w, l3.k4, h3.k4));
}

// (plane, kh) of kernel rows rr..rr+3, over (planes, ROW_K), of `count`. A row
// past the last is not `live`: it repeats the last row's place, so every index
// stays inside the tensors, and its window reads zero.
struct KernelRows {
    plane: vec4<u32>,
    kh: vec4<u32>,
    live: vec4<bool>,
}

fn kernel_rows_from(rr: u32, count: u32) -> KernelRows {
    return kernel_rows_at(rr + vec4(0u, 1u, 2u, 3u), count);
}

// The same for any four kernel rows `all`.
fn kernel_rows_at(all: vec4<u32>, count: u32) -> KernelRows {
    let r = min(all, vec4(count - 1u));
    let plane = vec4(udiv_small(r.x, ROW_K, INV_ROW_K), udiv_small(r.y, ROW_K, INV_ROW_K),
                     udiv_small(r.z, ROW_K, INV_ROW_K), udiv_small(r.w, ROW_K, INV_ROW_K));
    return KernelRows(plane, r - plane * ROW_K, all < vec4(count));
}

// The tile's pixel columns (n, row, x < xp) for an output of `rows` x `width`
// pixels an image, where xp is `width` padded to a multiple of ROW_PIXELS; with
// U.pool, columns (n, p, x < xp) of rows/2 pairs, lo on row 2p and hi on 2p+1.
struct RowTile {
    t: Tile,
    lo: RowPixels,
    hi: RowPixels,
    exists: bool, // false past the last column: the workgroup returns
}

fn row_tile(lane: u32, wid: vec3<u32>, nwg: vec3<u32>, rows: u32, width: u32) -> RowTile {
    let xp = (width + ROW_PIXELS - 1u) / ROW_PIXELS * ROW_PIXELS;
    let col_tile = folded_group(wid, nwg);
    let t = tile_at(lane, wid.z, col_tile);
    inv_xp = 1.0 / f32(xp);
    if (U.pool != 0u) {
        // Half a tile of columns (n, p, x), each one pixel of row 2p (lo) and of 2p+1 (hi).
        let pairs = rows / 2u;
        let half_tile = TILE_COLS / 2u;
        inv_row_plane = 1.0 / f32(pairs * xp);
        let p = row_pixels(col_tile * half_tile + lane * ROW_PIXELS, pairs, xp);
        return RowTile(t, RowPixels(p.n, 2u * p.row, p.x0, p.ok), RowPixels(p.n, 2u * p.row + 1u, p.x0, p.ok),
                       col_tile * half_tile < U.n * pairs * xp);
    }
    inv_row_plane = 1.0 / f32(rows * xp);
    return RowTile(t, row_pixels(t.col_lo.x, rows, xp), row_pixels(t.col_hi.x, rows, xp),
                   col_tile * TILE_COLS < U.n * rows * xp);
}

// The reduction over `count` kernel rows (plane, kh) of the sources lo and hi.
// Kernel row (plane, kh) reads source row row0 + kh, or row0 - kh if `flip` (the
// input gradient, whose taps run backwards over the window); its weights are at
// w_row + plane * plane_stride + kh * ROW_K + kw, where window offset j is tap
// kw = j, or kw = 4 - j if `flip`.
fn walk_kernel_rows(lo: Source, hi: Source, w_row: vec4<u32>, w_ok: vec4<bool>, count: u32, plane_stride: u32,
                    flip: bool) {
    let sign = select(1, -1, flip);
    let d = select(vec4(1u, 2u, 3u, 4u), vec4(0u) - vec4(1u, 2u, 3u, 4u), flip);
    let first = select(0u, ROW_K - 1u, flip);
    for (var rr = 0u; rr < count; rr += KERNEL_ROWS_A_STEP) {
        let k = kernel_rows_from(rr, count);
        let y = vec4<i32>(k.kh) * sign;
        rows4(w_row, w_ok, k.plane * plane_stride + k.kh * ROW_K + first, d,
              taps(window(lo, k.plane.x, lo.row0 + y.x, k.live.x)), taps(window(hi, k.plane.x, hi.row0 + y.x, k.live.x)),
              taps(window(lo, k.plane.y, lo.row0 + y.y, k.live.y)), taps(window(hi, k.plane.y, hi.row0 + y.y, k.live.y)),
              taps(window(lo, k.plane.z, lo.row0 + y.z, k.live.z)), taps(window(hi, k.plane.z, hi.row0 + y.z, k.live.z)),
              taps(window(lo, k.plane.w, lo.row0 + y.w, k.live.w)), taps(window(hi, k.plane.w, hi.row0 + y.w, k.live.w)));
    }
}

// Store the tile into an (N, channels, rows, width) tensor: y (forward, with bias)
// or dx (input gradient, gated by the input's sign if U.relu).
fn emit_rows(rt: RowTile, channels: u32, rows: u32, width: u32, bias: bool) {
    out_lo = row_out(rt.lo, channels, rows, width);
    out_hi = row_out(rt.hi, channels, rows, width);
    out_row_stride = rows * width;
    out_rows = channels;
    out_bias = bias;
    out_gate = !bias && U.relu != 0u;
    emit_all(rt.t.row0);
}

// Store the tile (with U.pool) pooled into (N, channels, rows/2, width/2), with
// bias and ReLU (if U.relu) before the pool, and each window's argmax.
fn emit_pooled(rt: RowTile, channels: u32, rows: u32, width: u32) {
    let pw = width / 2u;
    let px = rt.lo.x0 / 2u + vec2(0u, 1u);
    out_rows = channels;
    out_row_stride = rows / 2u * pw;
    out_bias = true;
    out_gate = false;
    out_pool = true;
    pool_cols = PoolCols(rt.lo.n * channels * out_row_stride + rt.lo.row / 2u * pw + px,
                         vec2(rt.lo.ok) & (px < vec2(pw)), rt.lo.row * width + rt.lo.x0 + vec2(0u, 2u), width);
    emit_all(rt.t.row0);
}

// The forward (U.flip = 0): y (N,OC,OH,OW) from x (N,C,H,W), rows oc, kernel rows
// (c, kh), or with U.pool y pooled (N,OC,OH/2,OW/2) and pool_argmax; or the input
// gradient (U.flip = 1): dx (N,C,H,W) from dy (N,OC,OH,OW), rows c, kernel rows (oc, kh).
@compute @workgroup_size(8)
fn rows(@builtin(subgroup_invocation_id) lane: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    let flip = U.flip != 0u;
    let out_ch = select(U.oc, U.c, flip);
    let out_h = select(U.oh, U.h, flip);
    let out_w = select(U.ow, U.w, flip);
    let src_ch = select(U.c, U.oc, flip);
    let src_h = select(U.h, U.oh, flip);
    let src_w = select(U.w, U.ow, flip);
    let rt = row_tile(lane, wid, nwg, out_h, out_w);
    if (!rt.exists) {
        return;
    }
    // Pixel x0 + i at tap kw reads x column x0 + i + kw - pad (the window starts at
    // x0 - pad), or dy column x0 + i + pad - kw (it starts at x0 + pad - 4).
    let pad = i32(U.pad);
    let row_shift = select(-pad, pad, flip);
    let col_shift = select(-pad, pad - (i32(ROW_K) - 1), flip);
    let lo = source(rt.lo, src_ch, src_h, src_w, i32(rt.lo.row) + row_shift, i32(rt.lo.x0) + col_shift);
    let hi = source(rt.hi, src_ch, src_h, src_w, i32(rt.hi.row) + row_shift, i32(rt.hi.x0) + col_shift);
    // W[oc, c, kh, kw] is at w_off + oc*C*K*K + c*K*K + kh*K + kw: a lane's rows are
    // oc (forward) or c, and a kernel row's plane the other one.
    let kk = ROW_K * ROW_K;
    let row_stride = select(U.c * kk, kk, flip);
    let plane_stride = select(kk, U.c * kk, flip);
    walk_kernel_rows(lo, hi, U.w_off + rt.t.rows * row_stride, rt.t.rows < vec4(out_ch), src_ch * ROW_K, plane_stride,
                     flip);
    if (U.pool != 0u) {
        emit_pooled(rt, out_ch, out_h, out_w);
    } else {
        emit_rows(rt, out_ch, out_h, out_w, !flip);
    }
}

// The weight gradient by kernel rows (weight_rows, compiled with EXTRA_COLS):
//   rows = oc  cols = kernel rows (c, kh), two a lane  r = (n, oh, 4-pixel group of a row padded to 4)
// In the general product (conv2d_subgroup.wgsl) a lane's columns are eight taps, and
// each gathers its own x at every pixel. Here a lane owns two kernel rows, R0 =
// 16t + l and R1 = 16t + 8 + l of column tile t, all five taps of each: lo = taps
// kw 0..3 of R0, hi = those of R1, ex = tap 4 of each. A reduction group is four
// neighbouring output pixels ow0..ow0+3 of one row, and step j of it pixel ow0 + j:
// its taps kw read x at ow0 + j + kw - pad, positions j..j+4 of the window of 8
// inputs from ow0 - pad, so one window (8 gathers) serves a kernel row's 5 taps x 4
// pixels, where the general product gathers 20, and the dy values (A, the rows)
// feed 10 columns instead of 8. Padding pixels (ow >= OW) read dy = 0.
// The partial sums are the general product's (splits, C*K*K + 1, OC). Their bias
// row, a tap of ones there, is here each lane's sum of the dy values it loads,
// which the first column tile stores.
@compute @workgroup_size(8)
fn weight_rows(@builtin(subgroup_invocation_id) lane: u32,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    let place = split_of(wid.z);
    let col_tile = folded_group(wid, nwg);
    let kernel_rows = U.c * ROW_K;
    let rows_a_tile = 2u * LANES;
    if (col_tile * rows_a_tile >= kernel_rows) {
        return;
    }
    let t = tile_at(lane, place.row_tile, col_tile);
    // This lane's kernel rows (c, kh), R0 in .x and R1 in .y.
    let kr = col_tile * rows_a_tile + lane + vec2(0u, LANES);
    let k = kernel_rows_at(vec4(kr, kr), kernel_rows);
    let kr_ok = k.live.xy;
    let r = k.plane.xy * ROW_K + k.kh.xy;
    // x's row for output row oh is oh + kh - pad: wrapping, so one unsigned
    // comparison bounds it on both sides.
    let dh = k.kh.xy - vec2(U.pad);
    let plane = k.plane.xy * U.h * U.w + dh * U.w;
    // Reduction groups: (n, oh, g) with g < xg groups of 4 pixels a row.
    let xg = (U.ow + ROW_PIXELS - 1u) / ROW_PIXELS;
    let inv_xg = 1.0 / f32(xg);
    let inv_oh = 1.0 / f32(U.oh);
    let begin = place.split * U.chunk;
    let end = min(begin + U.chunk, U.n * U.oh * xg);
    let ohw = U.oh * U.ow;
    let dy_row = t.rows * ohw;
    let dy_ok = t.rows < vec4(U.oc);
    let j = vec4(0u, 1u, 2u, 3u);
    var db = vec4(0.0);
    for (var gi = begin; gi < end; gi++) {
        let line = udiv(gi, xg, inv_xg);
        let n = udiv(line, U.oh, inv_oh);
        let oh = line - n * U.oh;
        let ow0 = (gi - line * xg) * ROW_PIXELS;
        let px = ow0 + j < vec4(U.ow);
        let dy_at = n * U.oc * ohw + oh * U.ow + ow0 + dy_row;
        // The window's columns ow0 - pad + 0..7, and its rows in each kernel row.
        let xa = ow0 - U.pad + j;
        let ok_a = xa < vec4(U.w);
        let ok_b = xa + 4u < vec4(U.w);
        let y = oh + dh;
        let y_ok = kr_ok & (y < vec2(U.h));
        let at = n * U.c * U.h * U.w + oh * U.w + plane;
        let w0 = Win(gather_a(at.x + xa, ok_a & vec4(y_ok.x)), gather_a(at.x + xa + 4u, ok_b & vec4(y_ok.x)));
        let w1 = Win(gather_a(at.y + xa, ok_a & vec4(y_ok.y)), gather_a(at.y + xa + 4u, ok_b & vec4(y_ok.y)));
        let lo = taps(w0);
        let hi = taps(w1);
        let d0 = gather_rows(dy_at, dy_ok & vec4(px.x));
        let d1 = gather_rows(dy_at + 1u, dy_ok & vec4(px.y));
        let d2 = gather_rows(dy_at + 2u, dy_ok & vec4(px.z));
        let d3 = gather_rows(dy_at + 3u, dy_ok & vec4(px.w));
        db += (d0 + d1) + (d2 + d3);
        accumulate4(Step(d0, lo.k0, hi.k0, vec2(w0.b.x, w1.b.x)), Step(d1, lo.k1, hi.k1, vec2(w0.b.y, w1.b.y)),
                    Step(d2, lo.k2, hi.k2, vec2(w0.b.z, w1.b.z)), Step(d3, lo.k3, hi.k3, vec2(w0.b.w, w1.b.w)));
    }
    // The bias row (the last), then the taps: (c, kh, kw) of kernel row R is R*5 + kw.
    let cols = kernel_rows * ROW_K + 1u;
    if (col_tile == 0u) {
        let bias_at = (place.split * cols + cols - 1u) * U.oc + t.rows;
        let live = dy_ok & vec4(true, true, ROW_GROUPS > 2u, ROW_GROUPS > 2u);
        for (var i = 0u; i < 4u; i++) {
            if (live[i]) {
                out[bias_at[i]] = db[i];
            }
        }
    }
    let tap = (place.split * cols + r * ROW_K) * U.oc;
    out_lo = OutCols(tap.x + j * U.oc, vec4(kr_ok.x));
    out_hi = OutCols(tap.y + j * U.oc, vec4(kr_ok.y));
    out_ex = OutCols(vec4(tap + 4u * U.oc, 0u, 0u), vec4(kr_ok, false, false));
    emit_partials(t.row0);
}

// The subgroup engine's loads and stores, shared by its general products
// (conv2d_subgroup.wgsl) and its kernel-row products (conv2d_subgroup_rows.wgsl):
// the gathers, the tile's place, and the epilogue that stores a lane's columns.
// #include "conv2d_common.wgsl"
// #include "subgroup_tile.wgsl"

// The texture copies of src_a and src_b (src/gpu/ops/texture_copy.rs), from which
// the kernel-row products load their operands with OPERAND_TEXTURES: on llvmpipe a
// texel fetch at a per-lane address is one vector gather, where a storage load is
// a loop over the lanes that stalls on AMD CPUs (`GemmEngine::operands_in_textures`).
// Products that read no copies bind 1x1 textures here.
@group(0) @binding(6) var b_copy: texture_2d<f32>;
@group(0) @binding(7) var a_copy: texture_2d<f32>;
override OPERAND_TEXTURES: bool = false;

fn a_at(i: u32) -> f32 {
    if (OPERAND_TEXTURES) {
        return textureLoad(a_copy, vec2(i & ((1u << U.a_shift) - 1u), i >> U.a_shift), 0).x;
    }
    return src_a[i];
}

fn b_at(i: u32) -> f32 {
    if (OPERAND_TEXTURES) {
        return textureLoad(b_copy, vec2(i & ((1u << U.b_shift) - 1u), i >> U.b_shift), 0).x;
    }
    return src_b[i];
}

// Four gathered loads; a lane outside the tensor reads element 0 and gets 0.
fn gather_a(idx: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    let i = select(vec4(0u), idx, ok);
    let v = vec4(a_at(i.x), a_at(i.y), a_at(i.z), a_at(i.w));
    return select(vec4(0.0), v, ok);
}

// This lane's A values for its rows l, l+8 (and l+16, l+24 with 4 row groups), from src_b.
fn gather_rows(idx: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    let i = select(vec4(0u), idx, ok);
    var v = vec4(b_at(i.x), b_at(i.y), 0.0, 0.0);
    if (ROW_GROUPS > 2u) {
        v.z = b_at(i.z);
        v.w = b_at(i.w);
    }
    return select(vec4(0.0), v, ok);
}

// The tile's place: `lane`, its four rows (l, l+8, l+16, l+24 from row0) and its
// first columns (lo at col_lo + 0..3, hi at col_lo + 32 + 0..3).
struct Tile {
    lane: u32,
    row0: u32,
    rows: vec4<u32>,
    col_lo: vec4<u32>,
    col_hi: vec4<u32>,
}

fn tile_at(lane: u32, row_tile: u32, col_tile: u32) -> Tile {
    let row0 = row_tile * ROW_GROUPS * 8u;
    let c = col_tile * TILE_COLS + lane * 4u + vec4(0u, 1u, 2u, 3u);
    return Tile(lane, row0, row0 + lane + vec4(0u, 8u, 16u, 24u), c, c + 32u);
}

// A weight gradient's workgroup z: split * (row tiles) + row tile, as the host lays
// out its grid.
struct SplitOf {
    split: u32,
    row_tile: u32,
}

fn split_of(z: u32) -> SplitOf {
    let row_tiles = (U.oc + ROW_GROUPS * 8u - 1u) / (ROW_GROUPS * 8u);
    return SplitOf(z / row_tiles, z % row_tiles);
}

// Where each of this lane's output columns goes: element `base[j] + row * row_stride`
// of `out` for tile row `row`, if `ok[j]` and the row exists. Computed once per
// tile, so the epilogue does no division per value.
struct OutCols {
    base: vec4<u32>,
    ok: vec4<bool>,
}

var<private> out_lo: OutCols;
var<private> out_hi: OutCols;
var<private> out_ex: OutCols; // with EXTRA_COLS: the ex columns in .xy (.zw never ok)
var<private> out_row_stride: u32;
var<private> out_rows: u32;
var<private> out_bias: bool; // forward: add the bias of the row (and apply ReLU if U.relu)
var<private> out_gate: bool; // backward_input: zero where `gate` (the input) is not positive

// The kernel-row forward with U.pool (conv2d_subgroup_rows.wgsl): a lane's lo and
// hi columns are the same four pixels of rows 2p and 2p+1, two 2x2 windows, whose
// maxima go to `out` and their places to pool_argmax. It rides the loop above
// (emit keeps lo until hi comes) rather than a loop of its own: llvmpipe compiles
// every copy of a store loop (docs/performance.md, "Start-up on a cold shader cache").
@group(0) @binding(5) var<storage, read_write> pool_argmax: array<u32>;

struct PoolCols {
    at: vec2<u32>,    // the two windows' pooled outputs in row 0 (out_row_stride a row)
    ok: vec2<bool>,
    first: vec2<u32>, // each window's first pixel, ih*W+iw in the unpooled plane
    width: u32,       // W, the unpooled row
}

var<private> out_pool: bool;
var<private> pool_cols: PoolCols;
var<private> pool_lo: vec4<f32>;

// A 2x2 window's maximum and where it is: a, b from row 2p, c, d from 2p+1, at
// offsets 0, 1, W, W+1 from its first pixel. Strict >: ties keep the first maximum
// in row-major order, as maxpool.wgsl and PyTorch do.
struct Best {
    v: f32,
    at: u32,
}

fn best_of(a: f32, b: f32, c: f32, d: f32, width: u32) -> Best {
    var v = a;
    var at = 0u;
    at = select(at, 1u, b > v);
    v = select(v, b, b > v);
    at = select(at, width, c > v);
    v = select(v, c, c > v);
    at = select(at, width + 1u, d > v);
    return Best(select(v, d, d > v), at);
}

fn emit_pooled_row(row: u32, lo: vec4<f32>, hi: vec4<f32>) {
    let c = pool_cols;
    let o = c.at + row * out_row_stride;
    let left = best_of(lo.x, lo.y, hi.x, hi.y, c.width);
    let right = best_of(lo.z, lo.w, hi.z, hi.w, c.width);
    if (c.ok.x) {
        out[o.x] = left.v;
        pool_argmax[o.x] = c.first.x + left.at;
    }
    if (c.ok.y) {
        out[o.y] = right.v;
        pool_argmax[o.y] = c.first.y + right.at;
    }
}

// Store a weight gradient's tile into the partial sums (splits, C*K*K + 1, OC),
// tap-major, so a row (oc) is one element apart; the caller sets out_lo, out_hi
// (and out_ex) to its columns' taps.
fn emit_partials(row0: u32) {
    out_row_stride = 1u;
    out_rows = U.oc;
    out_bias = false;
    out_gate = false;
    emit_all(row0);
}

fn emit(row: u32, half: u32, v: vec4<f32>) {
    if (row >= out_rows) {
        return;
    }
    var cols = out_lo;
    if (half == 1u) {
        cols = out_hi;
    }
    if (EXTRA_COLS && half == 2u) {
        cols = out_ex;
    }
    var o = v;
    if (out_bias) {
        o += src_b[U.b_off + row];
        if (U.relu != 0u) {
            o = max(o, vec4(0.0));
        }
    }
    if (out_pool) {
        if (half == 0u) {
            pool_lo = o;
        } else {
            emit_pooled_row(row, pool_lo, o);
        }
        return;
    }
    let idx = cols.base + row * out_row_stride;
    for (var j = 0u; j < 4u; j++) {
        if (cols.ok[j]) {
            if (out_gate) {
                o[j] = select(0.0, o[j], gate[idx[j]] > 0.0);
            }
            out[idx[j]] = o[j];
        }
    }
}

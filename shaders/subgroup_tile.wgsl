// The register tile of the subgroup-broadcast GEMMs, included by
// conv2d_subgroup_io.wgsl and sgemm_subgroup.wgsl. A workgroup is one 8-lane
// subgroup; it owns a tile of ROW_GROUPS*8 rows by 64 columns. Lane l holds
// columns 4l..4l+3 ("lo") and 32+4l..32+4l+3 ("hi") of every row, and supplies
// the A values of rows l, l+8, l+16, l+24, which subgroupBroadcast hands to
// the other lanes. The including files define `emit(row, half, v)`, which
// stores row `row` of this lane's lo (half 0) or hi (half 1) columns. emit_all
// calls half 0 of a row just before its half 1: the pooled epilogue relies on it.
//
// The rank update is written out rather than looped: llvmpipe keeps any
// dynamically indexed local array in memory, and a broadcast's lane must be a
// constant. The epilogue, which runs once a tile, is looped (see emit_all).

// The subgroup size this tile is written for: one row group is one lane each.
const LANES: u32 = 8u;
// 8-row groups per tile, 2 or 4 (set per pipeline).
override ROW_GROUPS: u32 = 4u;
const TILE_COLS: u32 = 64u;
// Reduction steps per `accumulate4`: the GEMM loops advance by this much.
const STEPS: u32 = 4u;
// Two more columns a lane (`ex`), 10 in all: the kernel-row weight gradient's
// (conv2d_subgroup_rows.wgsl), whose lane owns two kernel rows of five taps. A
// pipeline constant, so the other products compile without them.
override EXTRA_COLS: bool = false;

// 8 rows x this lane's 8 columns: lo = columns 4l..4l+3, hi = 32+4l..32+4l+3
// (and ex, its 2 extra columns, with EXTRA_COLS).
struct Acc {
    lo0: vec4<f32>, lo1: vec4<f32>, lo2: vec4<f32>, lo3: vec4<f32>,
    lo4: vec4<f32>, lo5: vec4<f32>, lo6: vec4<f32>, lo7: vec4<f32>,
    hi0: vec4<f32>, hi1: vec4<f32>, hi2: vec4<f32>, hi3: vec4<f32>,
    hi4: vec4<f32>, hi5: vec4<f32>, hi6: vec4<f32>, hi7: vec4<f32>,
    ex0: vec2<f32>, ex1: vec2<f32>, ex2: vec2<f32>, ex3: vec2<f32>,
    ex4: vec2<f32>, ex5: vec2<f32>, ex6: vec2<f32>, ex7: vec2<f32>,
}

// One reduction step of the whole tile: this lane's A values for rows l, l+8,
// l+16, l+24 (x), and its B values in its lo and hi columns (and with EXTRA_COLS
// in its ex columns; products without them pass zeros).
struct Step {
    x: vec4<f32>,
    lo: vec4<f32>,
    hi: vec4<f32>,
    ex: vec2<f32>,
}

// Four reduction steps of 8 rows: acc[i] += sum_j (lane i's x[j]) * (lo_j, hi_j, ex_j).
// Row by row, so each row's accumulators stay in registers across the four steps
// and the B values are read from where they spilled as FMA memory operands: one
// instruction per FMA instead of a load, an FMA and a store.
fn rank8x4(x: vec4<f32>, s0: Step, s1: Step, s2: Step, s3: Step, acc: Acc) -> Acc {
    var o = acc;
    {
        let v0 = vec4(subgroupBroadcast(x.x, 0u));
        let v1 = vec4(subgroupBroadcast(x.y, 0u));
        let v2 = vec4(subgroupBroadcast(x.z, 0u));
        let v3 = vec4(subgroupBroadcast(x.w, 0u));
        o.lo0 = fma(v3, s3.lo, fma(v2, s2.lo, fma(v1, s1.lo, fma(v0, s0.lo, o.lo0))));
        o.hi0 = fma(v3, s3.hi, fma(v2, s2.hi, fma(v1, s1.hi, fma(v0, s0.hi, o.hi0))));
        if (EXTRA_COLS) {
            o.ex0 = fma(v3.xy, s3.ex, fma(v2.xy, s2.ex, fma(v1.xy, s1.ex, fma(v0.xy, s0.ex, o.ex0))));
        }
    }
    {
        let v0 = vec4(subgroupBroadcast(x.x, 1u));
        let v1 = vec4(subgroupBroadcast(x.y, 1u));
        let v2 = vec4(subgroupBroadcast(x.z, 1u));
        let v3 = vec4(subgroupBroadcast(x.w, 1u));
        o.lo1 = fma(v3, s3.lo, fma(v2, s2.lo, fma(v1, s1.lo, fma(v0, s0.lo, o.lo1))));
        o.hi1 = fma(v3, s3.hi, fma(v2, s2.hi, fma(v1, s1.hi, fma(v0, s0.hi, o.hi1))));
        if (EXTRA_COLS) {
            o.ex1 = fma(v3.xy, s3.ex, fma(v2.xy, s2.ex, fma(v1.xy, s1.ex, fma(v0.xy, s0.ex, o.ex1))));
        }
    }
    {
        let v0 = vec4(subgroupBroadcast(x.x, 2u));
        let v1 = vec4(subgroupBroadcast(x.y, 2u));
        let v2 = vec4(subgroupBroadcast(x.z, 2u));
        let v3 = vec4(subgroupBroadcast(x.w, 2u));
        o.lo2 = fma(v3, s3.lo, fma(v2, s2.lo, fma(v1, s1.lo, fma(v0, s0.lo, o.lo2))));
        o.hi2 = fma(v3, s3.hi, fma(v2, s2.hi, fma(v1, s1.hi, fma(v0, s0.hi, o.hi2))));
        if (EXTRA_COLS) {
            o.ex2 = fma(v3.xy, s3.ex, fma(v2.xy, s2.ex, fma(v1.xy, s1.ex, fma(v0.xy, s0.ex, o.ex2))));
        }
    }
    {
        let v0 = vec4(subgroupBroadcast(x.x, 3u));
        let v1 = vec4(subgroupBroadcast(x.y, 3u));
        let v2 = vec4(subgroupBroadcast(x.z, 3u));
        let v3 = vec4(subgroupBroadcast(x.w, 3u));
        o.lo3 = fma(v3, s3.lo, fma(v2, s2.lo, fma(v1, s1.lo, fma(v0, s0.lo, o.lo3))));
        o.hi3 = fma(v3, s3.hi, fma(v2, s2.hi, fma(v1, s1.hi, fma(v0, s0.hi, o.hi3))));
        if (EXTRA_COLS) {
            o.ex3 = fma(v3.xy, s3.ex, fma(v2.xy, s2.ex, fma(v1.xy, s1.ex, fma(v0.xy, s0.ex, o.ex3))));
        }
    }
    {
        let v0 = vec4(subgroupBroadcast(x.x, 4u));
        let v1 = vec4(subgroupBroadcast(x.y, 4u));
        let v2 = vec4(subgroupBroadcast(x.z, 4u));
        let v3 = vec4(subgroupBroadcast(x.w, 4u));
        o.lo4 = fma(v3, s3.lo, fma(v2, s2.lo, fma(v1, s1.lo, fma(v0, s0.lo, o.lo4))));
        o.hi4 = fma(v3, s3.hi, fma(v2, s2.hi, fma(v1, s1.hi, fma(v0, s0.hi, o.hi4))));
        if (EXTRA_COLS) {
            o.ex4 = fma(v3.xy, s3.ex, fma(v2.xy, s2.ex, fma(v1.xy, s1.ex, fma(v0.xy, s0.ex, o.ex4))));
        }
    }
    {
        let v0 = vec4(subgroupBroadcast(x.x, 5u));
        let v1 = vec4(subgroupBroadcast(x.y, 5u));
        let v2 = vec4(subgroupBroadcast(x.z, 5u));
        let v3 = vec4(subgroupBroadcast(x.w, 5u));
        o.lo5 = fma(v3, s3.lo, fma(v2, s2.lo, fma(v1, s1.lo, fma(v0, s0.lo, o.lo5))));
        o.hi5 = fma(v3, s3.hi, fma(v2, s2.hi, fma(v1, s1.hi, fma(v0, s0.hi, o.hi5))));
        if (EXTRA_COLS) {
            o.ex5 = fma(v3.xy, s3.ex, fma(v2.xy, s2.ex, fma(v1.xy, s1.ex, fma(v0.xy, s0.ex, o.ex5))));
        }
    }
    {
        let v0 = vec4(subgroupBroadcast(x.x, 6u));
        let v1 = vec4(subgroupBroadcast(x.y, 6u));
        let v2 = vec4(subgroupBroadcast(x.z, 6u));
        let v3 = vec4(subgroupBroadcast(x.w, 6u));
        o.lo6 = fma(v3, s3.lo, fma(v2, s2.lo, fma(v1, s1.lo, fma(v0, s0.lo, o.lo6))));
        o.hi6 = fma(v3, s3.hi, fma(v2, s2.hi, fma(v1, s1.hi, fma(v0, s0.hi, o.hi6))));
        if (EXTRA_COLS) {
            o.ex6 = fma(v3.xy, s3.ex, fma(v2.xy, s2.ex, fma(v1.xy, s1.ex, fma(v0.xy, s0.ex, o.ex6))));
        }
    }
    {
        let v0 = vec4(subgroupBroadcast(x.x, 7u));
        let v1 = vec4(subgroupBroadcast(x.y, 7u));
        let v2 = vec4(subgroupBroadcast(x.z, 7u));
        let v3 = vec4(subgroupBroadcast(x.w, 7u));
        o.lo7 = fma(v3, s3.lo, fma(v2, s2.lo, fma(v1, s1.lo, fma(v0, s0.lo, o.lo7))));
        o.hi7 = fma(v3, s3.hi, fma(v2, s2.hi, fma(v1, s1.hi, fma(v0, s0.hi, o.hi7))));
        if (EXTRA_COLS) {
            o.ex7 = fma(v3.xy, s3.ex, fma(v2.xy, s2.ex, fma(v1.xy, s1.ex, fma(v0.xy, s0.ex, o.ex7))));
        }
    }
    return o;
}

var<private> acc0: Acc; // rows 0..7 of the tile
var<private> acc1: Acc; // rows 8..15
var<private> acc2: Acc; // rows 16..23 (ROW_GROUPS = 4)
var<private> acc3: Acc; // rows 24..31 (ROW_GROUPS = 4)

// Four reduction steps of the whole tile.
fn accumulate4(s0: Step, s1: Step, s2: Step, s3: Step) {
    acc0 = rank8x4(vec4(s0.x.x, s1.x.x, s2.x.x, s3.x.x), s0, s1, s2, s3, acc0);
    acc1 = rank8x4(vec4(s0.x.y, s1.x.y, s2.x.y, s3.x.y), s0, s1, s2, s3, acc1);
    if (ROW_GROUPS > 2u) {
        acc2 = rank8x4(vec4(s0.x.z, s1.x.z, s2.x.z, s3.x.z), s0, s1, s2, s3, acc2);
        acc3 = rank8x4(vec4(s0.x.w, s1.x.w, s2.x.w, s3.x.w), s0, s1, s2, s3, acc3);
    }
}

// Row group g of the tile (acc0..acc3).
fn group(g: u32) -> Acc {
    var a = acc0;
    if (g == 1u) {
        a = acc1;
    }
    if (ROW_GROUPS > 2u) {
        if (g == 2u) {
            a = acc2;
        }
        if (g == 3u) {
            a = acc3;
        }
    }
    return a;
}

// Row k of a group: this lane's lo (half 0) or hi (half 1) columns, or its ex
// columns in .xy (half 2).
fn group_row(a: Acc, k: u32, half: u32) -> vec4<f32> {
    let hi = half == 1u;
    var v = select(a.lo0, a.hi0, hi);
    v = select(v, select(a.lo1, a.hi1, hi), k == 1u);
    v = select(v, select(a.lo2, a.hi2, hi), k == 2u);
    v = select(v, select(a.lo3, a.hi3, hi), k == 3u);
    v = select(v, select(a.lo4, a.hi4, hi), k == 4u);
    v = select(v, select(a.lo5, a.hi5, hi), k == 5u);
    v = select(v, select(a.lo6, a.hi6, hi), k == 6u);
    v = select(v, select(a.lo7, a.hi7, hi), k == 7u);
    if (EXTRA_COLS) {
        var e = a.ex0;
        e = select(e, a.ex1, k == 1u);
        e = select(e, a.ex2, k == 2u);
        e = select(e, a.ex3, k == 3u);
        e = select(e, a.ex4, k == 4u);
        e = select(e, a.ex5, k == 5u);
        e = select(e, a.ex6, k == 6u);
        e = select(e, a.ex7, k == 7u);
        v = select(v, vec4(e, 0.0, 0.0), half == 2u);
    }
    return v;
}

// Store the whole tile, whose first row is `row0`. Loops, not written out:
// llvmpipe turns each store into a loop over the lanes and compiles every copy,
// and written-out copies made most of a cold start's compile time
// (docs/performance.md, "Start-up on a cold shader cache").
fn emit_all(row0: u32) {
    let halves = select(2u, 3u, EXTRA_COLS);
    for (var g = 0u; g < ROW_GROUPS; g++) {
        let a = group(g);
        for (var i = 0u; i < halves * LANES; i++) {
            let k = i / halves;
            let half = i - k * halves;
            emit(row0 + g * LANES + k, half, group_row(a, k, half));
        }
    }
}

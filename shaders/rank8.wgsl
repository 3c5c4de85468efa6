// The register tile of the subgroup-broadcast GEMMs (conv2d_subgroup.wgsl,
// sgemm_subgroup.wgsl), which Rust prepends to them. A workgroup is one 8-lane
// subgroup; it owns a tile of ROW_GROUPS*8 rows by 64 columns. Lane l holds
// columns 4l..4l+3 ("lo") and 32+4l..32+4l+3 ("hi") of every row, and supplies
// the A values of rows l, l+8, l+16, l+24, which subgroupBroadcast hands to
// the other lanes. The including file defines `emit(row, half, v)`, which
// stores row `row` of this lane's lo (half 0) or hi (half 1) columns.
//
// Written out rather than looped: llvmpipe keeps any dynamically indexed local
// array in memory, and a broadcast's lane must be a constant.

// 8-row groups per tile, 2 or 4 (set per pipeline).
override ROW_GROUPS: u32 = 4u;
const TILE_COLS: u32 = 64u;

// 8 rows x this lane's 8 columns: lo = columns 4l..4l+3, hi = 32+4l..32+4l+3.
struct Acc {
    lo0: vec4<f32>, lo1: vec4<f32>, lo2: vec4<f32>, lo3: vec4<f32>,
    lo4: vec4<f32>, lo5: vec4<f32>, lo6: vec4<f32>, lo7: vec4<f32>,
    hi0: vec4<f32>, hi1: vec4<f32>, hi2: vec4<f32>, hi3: vec4<f32>,
    hi4: vec4<f32>, hi5: vec4<f32>, hi6: vec4<f32>, hi7: vec4<f32>,
}

// acc[i] += (lane i's x) * (lo, hi): a rank-1 update of 8 rows by 8 columns.
fn rank8(x: f32, lo: vec4<f32>, hi: vec4<f32>, acc: Acc) -> Acc {
    var o = acc;
    { let v = vec4(subgroupBroadcast(x, 0u)); o.lo0 = fma(v, lo, o.lo0); o.hi0 = fma(v, hi, o.hi0); }
    { let v = vec4(subgroupBroadcast(x, 1u)); o.lo1 = fma(v, lo, o.lo1); o.hi1 = fma(v, hi, o.hi1); }
    { let v = vec4(subgroupBroadcast(x, 2u)); o.lo2 = fma(v, lo, o.lo2); o.hi2 = fma(v, hi, o.hi2); }
    { let v = vec4(subgroupBroadcast(x, 3u)); o.lo3 = fma(v, lo, o.lo3); o.hi3 = fma(v, hi, o.hi3); }
    { let v = vec4(subgroupBroadcast(x, 4u)); o.lo4 = fma(v, lo, o.lo4); o.hi4 = fma(v, hi, o.hi4); }
    { let v = vec4(subgroupBroadcast(x, 5u)); o.lo5 = fma(v, lo, o.lo5); o.hi5 = fma(v, hi, o.hi5); }
    { let v = vec4(subgroupBroadcast(x, 6u)); o.lo6 = fma(v, lo, o.lo6); o.hi6 = fma(v, hi, o.hi6); }
    { let v = vec4(subgroupBroadcast(x, 7u)); o.lo7 = fma(v, lo, o.lo7); o.hi7 = fma(v, hi, o.hi7); }
    return o;
}

var<private> acc0: Acc; // rows 0..7 of the tile
var<private> acc1: Acc; // rows 8..15
var<private> acc2: Acc; // rows 16..23 (ROW_GROUPS = 4)
var<private> acc3: Acc; // rows 24..31 (ROW_GROUPS = 4)

// One reduction step: x = this lane's A values for rows l, l+8, l+16, l+24;
// lo, hi = B in this lane's columns.
fn accumulate(x: vec4<f32>, lo: vec4<f32>, hi: vec4<f32>) {
    acc0 = rank8(x.x, lo, hi, acc0);
    acc1 = rank8(x.y, lo, hi, acc1);
    if (ROW_GROUPS > 2u) {
        acc2 = rank8(x.z, lo, hi, acc2);
        acc3 = rank8(x.w, lo, hi, acc3);
    }
}

fn emit_group(row: u32, a: Acc) {
    emit(row + 0u, 0u, a.lo0);
    emit(row + 0u, 1u, a.hi0);
    emit(row + 1u, 0u, a.lo1);
    emit(row + 1u, 1u, a.hi1);
    emit(row + 2u, 0u, a.lo2);
    emit(row + 2u, 1u, a.hi2);
    emit(row + 3u, 0u, a.lo3);
    emit(row + 3u, 1u, a.hi3);
    emit(row + 4u, 0u, a.lo4);
    emit(row + 4u, 1u, a.hi4);
    emit(row + 5u, 0u, a.lo5);
    emit(row + 5u, 1u, a.hi5);
    emit(row + 6u, 0u, a.lo6);
    emit(row + 6u, 1u, a.hi6);
    emit(row + 7u, 0u, a.lo7);
    emit(row + 7u, 1u, a.hi7);
}

// Store the whole tile, whose first row is `row0`.
fn emit_all(row0: u32) {
    emit_group(row0, acc0);
    emit_group(row0 + 8u, acc1);
    if (ROW_GROUPS > 2u) {
        emit_group(row0 + 16u, acc2);
        emit_group(row0 + 24u, acc3);
    }
}

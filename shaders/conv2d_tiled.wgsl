// Conv2d's shared-memory tiled engine (after tfjs-webgpu's conv2d): implicit
// GEMM on one tiled matmul, no im2col buffer ever materialised; the tile loaders
// compute each element's address from the shapes in `U`.
// #include "conv2d_gemm_io.wgsl"
//
// The products and their operands: conv2d_gemm_io.wgsl.
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
// or backward_input: one BM x BN tile of it, through `store_plane`.
fn planes_product(mode: u32, lid: vec3<u32>, li: u32, wid: vec3<u32>, nwg: vec3<u32>,
                  channels: u32, plane: u32, red_len: u32, bias: bool) {
    let t = plane_tile(wid, nwg, plane, BM, BN);
    if (!t.live) {
        return;
    }
    let acc = gemm_tile(mode, lid, li, t.row0, t.col0, t.rows, channels, 0u, red_len);
    for (var i = 0u; i < TM; i++) {
        let row = t.row0 + lid.y * TM + i;
        if (row >= t.rows) {
            break;
        }
        let n = row / plane;
        let q = row % plane;
        for (var j = 0u; j < TN; j++) {
            let col = t.col0 + lid.x * TN + j;
            if (col < channels) {
                store_plane(n, q, col, channels, plane, bias, acc[i][j]);
            }
        }
    }
}

@compute @workgroup_size(BN / TN, BM / TM)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    planes_product(MODE_FORWARD, lid, li, wid, nwg, U.oc, U.oh * U.ow, U.c * U.k * U.k, true);
}

@compute @workgroup_size(BN / TN, BM / TM)
fn backward_input(@builtin(local_invocation_id) lid: vec3<u32>,
                  @builtin(local_invocation_index) li: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    planes_product(MODE_BACKWARD_INPUT, lid, li, wid, nwg, U.c, U.h * U.w, U.oc * U.k * U.k, false);
}

@compute @workgroup_size(BN / TN, BM / TM)
fn backward_weight_bias(@builtin(local_invocation_id) lid: vec3<u32>,
                        @builtin(local_invocation_index) li: u32,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    let t = weight_tile(wid, nwg, BM, BN);
    if (!t.live) {
        return;
    }
    let acc = gemm_tile(MODE_BACKWARD_WEIGHT_BIAS, lid, li, t.row0, t.col0, t.rows, U.oc, t.red_begin, t.red_end);
    for (var i = 0u; i < TM; i++) {
        let row = t.row0 + lid.y * TM + i;
        if (row >= t.rows) {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let col = t.col0 + lid.x * TN + j;
            if (col < U.oc) {
                out[(t.split * t.rows + row) * U.oc + col] = acc[i][j];
            }
        }
    }
}

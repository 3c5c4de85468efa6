// Conv2d, forward and backward, as implicit GEMM on one shared-memory tiled
// matmul (after tfjs-webgpu's conv2d): no im2col buffer is ever materialised,
// the tile loaders compute each element's address from the shapes in `P`.
//
// The three products, written C[row, col] = sum_r A[row, r] * B[r, col]:
//   forward          rows = (n,oh,ow)  cols = oc  r = (c,kh,kw)    A = im2col(x)  B = W^T
//   backward_input   rows = (n,ih,iw)  cols = c   r = (oc,kh,kw)   A = dy gathered through the kernel window
//   backward_weight  rows = (c,kh,kw)  cols = oc  r = (n,oh,ow)    A = im2col(x)^T  B = dy, split along r
// backward_weight's reduction is N*OH*OW long (50k terms for conv1 at batch 64),
// so it is cut into `splits` chunks that run as separate workgroups and write
// partial sums; reduce_weight adds them up. backward_bias is a tree reduction.
//
// Dispatch: x,y = the row-tile index folded into two dimensions (so any batch
// stays under 65,535 workgroups a dimension), z = col tile (+ split * col tiles).

struct Params {
    n: u32, c: u32, h: u32, w: u32,
    oc: u32, oh: u32, ow: u32, k: u32,
    stride: u32, pad: u32, w_off: u32, b_off: u32,
    chunk: u32,   // backward_weight: reduction length per split, a multiple of BK
    splits: u32,  // backward_weight / reduce_weight: number of splits
    relu: u32,    // forward: 1 = apply ReLU in the epilogue
    _pad: u32,
}

// The GEMM's two operands come from bindings 1 and 2 whatever the product, so
// that every entry point binds only what it reads (one tile loop serves all three):
//   forward          src_a = x (N,C,H,W)      src_b = params (W at w_off, bias at b_off)
//   backward_input   src_a = dy (N,OC,OH,OW)  src_b = params
//   backward_weight  src_a = x                src_b = dy
//   backward_bias                             src_b = dy
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;        // (N,OC,OH,OW)
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;       // (N,C,H,W)
@group(0) @binding(6) var<storage, read_write> partial: array<f32>;  // (splits, C*K*K, OC)
@group(0) @binding(7) var<storage, read_write> grads: array<f32>;    // flat, same layout as params

const BM: u32 = 64u;   // tile rows
const BN: u32 = 32u;   // tile cols
const BK: u32 = 16u;   // reduction step
const TM: u32 = 4u;    // rows per thread (register block)
const TN: u32 = 4u;    // cols per thread
const THREADS: u32 = 128u; // (BN/TN) x (BM/TM)

var<workgroup> As: array<f32, 1024>; // [BK][BM]
var<workgroup> Bs: array<f32, 512>;  // [BK][BN]
var<workgroup> red: array<f32, 256>;

const MODE_FORWARD: u32 = 0u;
const MODE_BACKWARD_INPUT: u32 = 1u;
const MODE_BACKWARD_WEIGHT: u32 = 2u;

// x (in src_a) seen as the im2col matrix: element (p = (n,oh,ow), kidx = (c,kh,kw)); zero in the padding.
fn im2col(p: u32, kidx: u32) -> f32 {
    let ohw = P.oh * P.ow;
    let n = p / ohw;
    let q = p % ohw;
    let kk = P.k * P.k;
    let c = kidx / kk;
    let r = kidx % kk;
    let ih = i32((q / P.ow) * P.stride + r / P.k) - i32(P.pad);
    let iw = i32((q % P.ow) * P.stride + r % P.k) - i32(P.pad);
    if (ih < 0 || iw < 0 || ih >= i32(P.h) || iw >= i32(P.w)) {
        return 0.0;
    }
    return src_a[((n * P.c + c) * P.h + u32(ih)) * P.w + u32(iw)];
}

// dy (in src_b) at output pixel p = (n,oh,ow), channel oc.
fn dy_at(p: u32, oc: u32) -> f32 {
    let ohw = P.oh * P.ow;
    return src_b[((p / ohw) * P.oc + oc) * ohw + p % ohw];
}

// dy (in src_a) seen from input pixel m = (n,ih,iw) through kernel tap r = (oc,kh,kw): the output
// pixel that tap reaches, or zero where it falls between strides or off the edge.
fn dy_through_kernel(m: u32, r: u32) -> f32 {
    let hw = P.h * P.w;
    let n = m / hw;
    let q = m % hw;
    let kk = P.k * P.k;
    let oc = r / kk;
    let t = r % kk;
    let th = i32(q / P.w) + i32(P.pad) - i32(t / P.k);
    let tw = i32(q % P.w) + i32(P.pad) - i32(t % P.k);
    if (th < 0 || tw < 0) {
        return 0.0;
    }
    let s = P.stride;
    if (u32(th) % s != 0u || u32(tw) % s != 0u) {
        return 0.0;
    }
    let oh = u32(th) / s;
    let ow = u32(tw) / s;
    if (oh >= P.oh || ow >= P.ow) {
        return 0.0;
    }
    return src_a[((n * P.oc + oc) * P.oh + oh) * P.ow + ow];
}

fn a_elem(mode: u32, row: u32, r: u32) -> f32 {
    switch mode {
        case 0u: { return im2col(row, r); }
        case 1u: { return dy_through_kernel(row, r); }
        default: { return im2col(r, row); }
    }
}

fn b_elem(mode: u32, r: u32, col: u32) -> f32 {
    let kk = P.k * P.k;
    switch mode {
        case 0u: { return src_b[P.w_off + col * P.c * kk + r]; }
        case 1u: { return src_b[P.w_off + ((r / kk) * P.c + col) * kk + r % kk]; }
        default: { return dy_at(r, col); }
    }
}

// One BM x BN output tile over reduction range [r_begin, r_end); each thread
// returns its TM x TN block. Must be called in uniform control flow (barriers).
fn gemm_tile(mode: u32, lid: vec3<u32>, li: u32, row0: u32, col0: u32, rows: u32, cols: u32,
             r_begin: u32, r_end: u32) -> array<array<f32, 4>, 4> {
    var acc: array<array<f32, 4>, 4>;
    for (var r0 = r_begin; r0 < r_end; r0 += BK) {
        for (var i = 0u; i < (BM * BK) / THREADS; i++) {
            let e = li + i * THREADS;
            let m = e % BM;
            let kr = e / BM;
            var v = 0.0;
            if (row0 + m < rows && r0 + kr < r_end) {
                v = a_elem(mode, row0 + m, r0 + kr);
            }
            As[kr * BM + m] = v;
        }
        for (var i = 0u; i < (BN * BK) / THREADS; i++) {
            let e = li + i * THREADS;
            let nn = e % BN;
            let kr = e / BN;
            var v = 0.0;
            if (col0 + nn < cols && r0 + kr < r_end) {
                v = b_elem(mode, r0 + kr, col0 + nn);
            }
            Bs[kr * BN + nn] = v;
        }
        workgroupBarrier();
        for (var kr = 0u; kr < BK; kr++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < TM; i++) {
                a[i] = As[kr * BM + lid.y * TM + i];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = Bs[kr * BN + lid.x * TN + j];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    return acc;
}

fn row_tile(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@compute @workgroup_size(8, 16)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let ohw = P.oh * P.ow;
    let rows = P.n * ohw;
    let tile = row_tile(wid, nwg);
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
                y[(n * P.oc + col) * ohw + q] = v;
            }
        }
    }
}

@compute @workgroup_size(8, 16)
fn backward_input(@builtin(local_invocation_id) lid: vec3<u32>,
                  @builtin(local_invocation_index) li: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let hw = P.h * P.w;
    let rows = P.n * hw;
    let tile = row_tile(wid, nwg);
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
                dx[(n * P.c + col) * hw + q] = acc[i][j];
            }
        }
    }
}

@compute @workgroup_size(8, 16)
fn backward_weight(@builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(local_invocation_index) li: u32,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let rows = P.c * P.k * P.k;
    let red_len = P.n * P.oh * P.ow;
    let tile = row_tile(wid, nwg);
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
                partial[(split * rows + row) * P.oc + col] = acc[i][j];
            }
        }
    }
}

// dW[oc, kidx] = sum over splits of partial[s, kidx, oc]; one thread per weight,
// `splits` terms each (the long reduction already happened in backward_weight).
@compute @workgroup_size(256)
fn reduce_weight(@builtin(local_invocation_index) li: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let rows = P.c * P.k * P.k;
    let idx = (wid.x + wid.y * nwg.x) * 256u + li;
    if (idx >= rows * P.oc) {
        return;
    }
    let oc = idx / rows;
    let kidx = idx % rows;
    var s = 0.0;
    for (var sp = 0u; sp < P.splits; sp++) {
        s += partial[(sp * rows + kidx) * P.oc + oc];
    }
    grads[P.w_off + idx] = s;
}

// db[oc] = sum over (n,oh,ow) of dy: one workgroup per output channel, tree reduction.
@compute @workgroup_size(256)
fn backward_bias(@builtin(local_invocation_index) li: u32,
                 @builtin(workgroup_id) wid: vec3<u32>) {
    let oc = wid.x;
    let len = P.n * P.oh * P.ow;
    var s = 0.0;
    for (var p = li; p < len; p += 256u) {
        s += dy_at(p, oc);
    }
    red[li] = s;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if (li < half) {
            red[li] += red[li + half];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        grads[P.b_off + oc] = red[0];
    }
}

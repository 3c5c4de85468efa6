// Conv2d's forward for layers whose reduction is short (C*K*K <= 25, as the
// tutorial model's conv1: one input channel, 5x5), on the engines whose spec asks
// for it (src/gpu/engine.rs `direct_short_forwards`). As a GEMM such a layer is 25
// multiply-adds per output against a whole tile's setup and epilogue (conv1 ran at
// 0.6 TFLOP/s on an H200 as a tiled GEMM). Here one invocation computes OCG output
// channels of one pixel: it reads each input value of its window once and
// multiplies it into all of them, with the weights at workgroup-uniform addresses
// (a broadcast on a GPU), and one invocation per pixel can fill any GPU. llvmpipe
// loads those weights lane by lane, so the subgroup engine, which broadcasts them,
// keeps conv1 there.
// #include "conv2d_common.wgsl"
//
// Bindings as the GEMM forward: src_a = x (N,C,H,W), src_b = params (W at w_off,
// bias at b_off), out = y (N,OC,OH,OW); with U.relu, the ReLU is applied.
// Dispatch: workgroup_size(WG); x,y = pixel tiles of WG folded over two dimensions,
// z = groups of OCG output channels.

const WG: u32 = 64u;
const OCG: u32 = 16u; // output channels per invocation: four vec4 accumulators

// The weights of output channels oc..oc+3 at reduction index r; channels past OC
// read the last one (their sums are never stored).
fn weights4(oc: u32, r: u32, ckk: u32) -> vec4<f32> {
    let last = U.oc - 1u;
    let at = U.w_off + r;
    return vec4(src_b[at + min(oc, last) * ckk], src_b[at + min(oc + 1u, last) * ckk],
                src_b[at + min(oc + 2u, last) * ckk], src_b[at + min(oc + 3u, last) * ckk]);
}

fn store4(n: u32, oc: u32, q: u32, ohw: u32, acc: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if (oc + j < U.oc) {
            var v = acc[j] + src_b[U.b_off + oc + j];
            if (U.relu != 0u) {
                v = max(v, 0.0);
            }
            out[(n * U.oc + oc + j) * ohw + q] = v;
        }
    }
}

@compute @workgroup_size(WG)
fn forward(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    let ohw = U.oh * U.ow;
    let p = folded_group(wid, nwg) * WG + li; // output pixel (n, oh, ow)
    if (p >= U.n * ohw) {
        return;
    }
    let oc0 = wid.z * OCG;
    let n = udiv(p, ohw, 1.0 / f32(ohw));
    let q = p - n * ohw;
    let oh = udiv_small(q, U.ow, 1.0 / f32(U.ow));
    let y0 = i32(oh * U.stride) - i32(U.pad);
    let x0 = i32((q - oh * U.ow) * U.stride) - i32(U.pad);
    let ckk = U.c * U.k * U.k;
    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    var r = 0u;
    for (var c = 0u; c < U.c; c++) {
        for (var kh = 0u; kh < U.k; kh++) {
            let ih = y0 + i32(kh);
            for (var kw = 0u; kw < U.k; kw++) {
                let iw = x0 + i32(kw);
                // Selects, not a branch: llvmpipe would run both sides of one anyway.
                let inside = ih >= 0 && iw >= 0 && ih < i32(U.h) && iw < i32(U.w);
                let at = select(0u, ((n * U.c + c) * U.h + u32(ih)) * U.w + u32(iw), inside);
                let v = vec4(select(0.0, src_a[at], inside));
                a0 = fma(v, weights4(oc0, r, ckk), a0);
                a1 = fma(v, weights4(oc0 + 4u, r, ckk), a1);
                a2 = fma(v, weights4(oc0 + 8u, r, ckk), a2);
                a3 = fma(v, weights4(oc0 + 12u, r, ckk), a3);
                r++;
            }
        }
    }
    store4(n, oc0, q, ohw, a0);
    store4(n, oc0 + 4u, q, ohw, a1);
    store4(n, oc0 + 8u, q, ohw, a2);
    store4(n, oc0 + 12u, q, ohw, a3);
}

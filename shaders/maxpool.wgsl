// MaxPool2d (no padding, floor mode), forward with argmax and backward. Follows fdiv.wgsl.
// Backward gathers rather than scatters: each input element sums the outputs
// whose window holds it and whose argmax is it, so overlapping windows
// (kernel > stride) need no atomics.

struct Params {
    n: u32, c: u32, h: u32, w: u32,
    k: u32, stride: u32, oh: u32, ow: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;             // (N,C,H,W)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;       // (N,C,OH,OW)
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;  // (N,C,OH,OW): ih*W+iw in its plane
@group(0) @binding(4) var<storage, read> dy: array<f32>;            // (N,C,OH,OW)
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;      // (N,C,H,W)

fn flat_index(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + li;
}

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(li, wid, nwg);
    let ohw = P.oh * P.ow;
    if (i >= P.n * P.c * ohw) {
        return;
    }
    let nc = fdiv(i, ohw, 1.0 / f32(ohw));
    let q = i - nc * ohw;
    let oh = fdiv(q, P.ow, 1.0 / f32(P.ow));
    let plane = nc * P.h * P.w;
    let h0 = oh * P.stride;
    let w0 = (q - oh * P.ow) * P.stride;
    var best = h0 * P.w + w0;
    var best_v = x[plane + best];
    for (var kh = 0u; kh < P.k; kh++) {
        for (var kw = 0u; kw < P.k; kw++) {
            let at = (h0 + kh) * P.w + w0 + kw;
            let v = x[plane + at];
            // strict >: ties keep the first maximum in row-major order, as PyTorch
            if (v > best_v) {
                best = at;
                best_v = v;
            }
        }
    }
    y[i] = best_v;
    argmax[i] = best;
}

@compute @workgroup_size(256)
fn backward(@builtin(local_invocation_index) li: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(li, wid, nwg);
    let hw = P.h * P.w;
    if (i >= P.n * P.c * hw) {
        return;
    }
    let nc = fdiv(i, hw, 1.0 / f32(hw));
    let at = i - nc * hw;
    let ih = fdiv(at, P.w, 1.0 / f32(P.w));
    let iw = at - ih * P.w;
    // windows oh*stride <= ih < oh*stride + k: ceil((ih + 1 - k) / stride) <= oh <= ih / stride
    let rs = 1.0 / f32(P.stride);
    let oh_lo = fdiv(max(ih + 1u, P.k) - P.k + P.stride - 1u, P.stride, rs);
    let ow_lo = fdiv(max(iw + 1u, P.k) - P.k + P.stride - 1u, P.stride, rs);
    let oh_hi = min(fdiv(ih, P.stride, rs) + 1u, P.oh);
    let ow_hi = min(fdiv(iw, P.stride, rs) + 1u, P.ow);
    var s = 0.0;
    for (var oh = oh_lo; oh < oh_hi; oh++) {
        for (var ow = ow_lo; ow < ow_hi; ow++) {
            let o = (nc * P.oh + oh) * P.ow + ow;
            if (argmax[o] == at) {
                s += dy[o];
            }
        }
    }
    dx[i] = s;
}

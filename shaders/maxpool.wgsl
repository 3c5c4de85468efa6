// MaxPool2d (no padding, floor mode), forward with argmax and backward.
// Backward gathers rather than scatters: each input element sums the outputs
// whose window holds it and whose argmax is it, so overlapping windows
// (kernel > stride) need no atomics; windows that tile the input (kernel ==
// stride) take backward_windows, one invocation a window. With `relu`, backward
// also does the backward pass of the ReLU before the pool, zeroing the gradient
// where x is not positive; backward_windows reads that from y, which is x at the
// argmax, the only place its gradient is not zero (so it also runs after a
// convolution that pooled in its epilogue and never wrote x).
// #include "grid.wgsl"
// #include "udiv.wgsl"

struct PoolUniform {
    n: u32, c: u32, h: u32, w: u32,
    k: u32, stride: u32, oh: u32, ow: u32,
    relu: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> U: PoolUniform;
@group(0) @binding(1) var<storage, read> x: array<f32>;             // (N,C,H,W); backward: only with relu
@group(0) @binding(2) var<storage, read_write> y: array<f32>;       // (N,C,OH,OW); backward_windows: only with relu
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;  // (N,C,OH,OW): ih*W+iw in its plane
@group(0) @binding(4) var<storage, read> dy: array<f32>;            // (N,C,OH,OW)
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;      // (N,C,H,W)

// Output element i = (nc, oh, ow) of the (N*C, OH, OW) output: its window's place.
struct Window {
    plane: u32, // nc*H*W, where its input plane starts
    oh: u32,
    ow: u32,
}

fn window_of(i: u32) -> Window {
    let ohw = U.oh * U.ow;
    let nc = udiv(i, ohw, 1.0 / f32(ohw));
    let q = i - nc * ohw;
    let oh = udiv_small(q, U.ow, 1.0 / f32(U.ow));
    return Window(nc * U.h * U.w, oh, q - oh * U.ow);
}

@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn forward(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_thread(li, wid, nwg);
    if (i >= U.n * U.c * U.oh * U.ow) {
        return;
    }
    let win = window_of(i);
    let plane = win.plane;
    let h0 = win.oh * U.stride;
    let w0 = win.ow * U.stride;
    var best = h0 * U.w + w0;
    var best_v = x[plane + best];
    for (var kh = 0u; kh < U.k; kh++) {
        for (var kw = 0u; kw < U.k; kw++) {
            let at = (h0 + kh) * U.w + w0 + kw;
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

@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn backward(@builtin(local_invocation_index) li: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_thread(li, wid, nwg);
    let hw = U.h * U.w;
    if (i >= U.n * U.c * hw) {
        return;
    }
    let nc = udiv(i, hw, 1.0 / f32(hw));
    let at = i - nc * hw;
    let ih = udiv_small(at, U.w, 1.0 / f32(U.w));
    let iw = at - ih * U.w;
    let stride_inv = 1.0 / f32(U.stride);
    // windows oh*stride <= ih < oh*stride + k: ceil((ih + 1 - k) / stride) <= oh <= ih / stride
    let oh_lo = udiv_small(max(ih + 1u, U.k) - U.k + U.stride - 1u, U.stride, stride_inv);
    let ow_lo = udiv_small(max(iw + 1u, U.k) - U.k + U.stride - 1u, U.stride, stride_inv);
    let oh_hi = min(udiv_small(ih, U.stride, stride_inv) + 1u, U.oh);
    let ow_hi = min(udiv_small(iw, U.stride, stride_inv) + 1u, U.ow);
    var s = 0.0;
    for (var oh = oh_lo; oh < oh_hi; oh++) {
        for (var ow = ow_lo; ow < ow_hi; ow++) {
            let o = (nc * U.oh + oh) * U.ow + ow;
            if (argmax[o] == at) {
                s += dy[o];
            }
        }
    }
    if (U.relu != 0u) {
        s = select(0.0, s, x[i] > 0.0);
    }
    dx[i] = s;
}

// Backward for windows that tile the input (kernel == stride, as in the tutorial
// model), where each input element lies in at most one window: one invocation per
// window writes all of it, its gradient at the argmax and zero elsewhere, reading
// argmax and dy once instead of once per element. The last window of a row (and of
// a column) also zeroes the input past the last window, which floor mode leaves out.
@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn backward_windows(@builtin(local_invocation_index) li: u32,
                    @builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_thread(li, wid, nwg);
    if (o >= U.n * U.c * U.oh * U.ow) {
        return;
    }
    let win = window_of(o);
    let plane = win.plane;
    let h0 = win.oh * U.k;
    let w0 = win.ow * U.k;
    let h1 = select(h0 + U.k, U.h, win.oh + 1u == U.oh);
    let w1 = select(w0 + U.k, U.w, win.ow + 1u == U.ow);
    let best = argmax[o];
    var g = dy[o];
    if (U.relu != 0u) {
        g = select(0.0, g, y[o] > 0.0);
    }
    for (var ih = h0; ih < h1; ih++) {
        for (var iw = w0; iw < w1; iw++) {
            let at = ih * U.w + iw;
            dx[plane + at] = select(0.0, g, at == best);
        }
    }
}

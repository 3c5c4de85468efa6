// Linear, forward and backward, for GPUs and small batches (on the subgroup
// engine, batches from 16 up run on the convolution GEMM instead: see
// src/gpu/ops/linear.rs). The classifier layer is small (3136 -> 10 in the
// tutorial model) but deep in its reduction, so forward gives each output one
// workgroup that reduces the dot product in shared memory instead of one long
// serial loop.
// #include "grid.wgsl"

struct LinearUniform {
    n: u32, in_features: u32, out_features: u32, w_off: u32,
    b_off: u32,
    accumulate: u32, // backward_weight_bias: 1 = add to the gradients (micro-batches after the first)
    relu: u32,       // backward_input: 1 = zero dx where x (a ReLU's output) is not positive
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> U: LinearUniform;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // (N,IN)
@group(0) @binding(2) var<storage, read> params: array<f32>;      // flat: W (OUT,IN) at w_off, bias (OUT) at b_off
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // (N,OUT)
@group(0) @binding(4) var<storage, read> dy: array<f32>;          // (N,OUT)
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;    // (N,IN)
@group(0) @binding(6) var<storage, read_write> grads: array<f32>; // flat, same layout as params

const DOT_THREADS: u32 = 64u;
var<workgroup> partial: array<f32, DOT_THREADS>;

// One workgroup per (n, o).
@compute @workgroup_size(DOT_THREADS)
fn forward(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = folded_group(wid, nwg);
    if (g >= U.n * U.out_features) {
        return;
    }
    let n = g / U.out_features;
    let o = g % U.out_features;
    var s = 0.0;
    for (var i = li; i < U.in_features; i += DOT_THREADS) {
        s = fma(x[n * U.in_features + i], params[U.w_off + o * U.in_features + i], s);
    }
    partial[li] = s;
    workgroupBarrier();
    for (var half = DOT_THREADS / 2u; half > 0u; half >>= 1u) {
        if (li < half) {
            partial[li] += partial[li + half];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        y[g] = partial[0] + params[U.b_off + o];
    }
}

// dx[n,i] = sum_o dy[n,o] W[o,i] (then the ReLU before, with U.relu); one thread per (n,i).
@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn backward_input(@builtin(local_invocation_index) li: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_thread(li, wid, nwg);
    if (idx >= U.n * U.in_features) {
        return;
    }
    let n = idx / U.in_features;
    let i = idx % U.in_features;
    var s = 0.0;
    for (var o = 0u; o < U.out_features; o++) {
        s = fma(dy[n * U.out_features + o], params[U.w_off + o * U.in_features + i], s);
    }
    if (U.relu != 0u) {
        s = select(0.0, s, x[idx] > 0.0);
    }
    dx[idx] = s;
}

// dW[o,i] = sum_n dy[n,o] x[n,i] for the first OUT*IN threads, then db[o] = sum_n dy[n,o]
// for the next OUT: one dispatch writes the whole gradient of the layer.
@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn backward_weight_bias(@builtin(local_invocation_index) li: u32,
                        @builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_thread(li, wid, nwg);
    let nw = U.out_features * U.in_features;
    if (idx < nw) {
        let o = idx / U.in_features;
        let i = idx % U.in_features;
        var s = 0.0;
        for (var n = 0u; n < U.n; n++) {
            s = fma(dy[n * U.out_features + o], x[n * U.in_features + i], s);
        }
        let at = U.w_off + idx;
        grads[at] = select(s, grads[at] + s, U.accumulate != 0u);
    } else if (idx < nw + U.out_features) {
        let o = idx - nw;
        var s = 0.0;
        for (var n = 0u; n < U.n; n++) {
            s += dy[n * U.out_features + o];
        }
        let at = U.b_off + o;
        grads[at] = select(s, grads[at] + s, U.accumulate != 0u);
    }
}

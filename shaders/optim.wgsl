// Optimizer updates over the whole flat parameter vector in one dispatch, with
// PyTorch's formulas: SGD with momentum and L2 weight decay, and AdamW (Adam with
// decoupled weight decay). Adam's bias corrections and a schedule's rate change
// every step; the host computes them in f64 and writes them to `U`.
// #include "grid.wgsl"

struct OptimUniform {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    lr: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32, // Adam: lr / (1 - beta1^t)
    bc2_sqrt: f32,  // Adam: sqrt(1 - beta2^t)
    decay: f32,     // SGD: the L2 weight decay; Adam: lr * weight_decay, the share the weights shrink by
}

@group(0) @binding(0) var<uniform> U: OptimUniform;
@group(0) @binding(1) var<storage, read_write> params: array<f32>; // (len)
@group(0) @binding(2) var<storage, read> grads: array<f32>;        // (len)
@group(0) @binding(3) var<storage, read_write> m: array<f32>;      // (len) SGD momentum buffer / Adam first moment
@group(0) @binding(4) var<storage, read_write> v: array<f32>;      // (len) Adam second moment

// buf = momentum * buf + (g + decay * p); p -= lr * buf (buf starts at zero, so step 1
// is PyTorch's buf = g).
@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn sgd(@builtin(local_invocation_index) li: u32,
       @builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_thread(li, wid, nwg);
    if (i < U.len) {
        let b = U.momentum * m[i] + (grads[i] + U.decay * params[i]);
        m[i] = b;
        params[i] -= U.lr * b;
    }
}

@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn adam(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_thread(li, wid, nwg);
    if (i < U.len) {
        let g = grads[i];
        let mi = U.beta1 * m[i] + (1.0 - U.beta1) * g;
        let vi = U.beta2 * v[i] + (1.0 - U.beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        let p = params[i] * (1.0 - U.decay);
        params[i] = p - U.step_size * mi / (sqrt(vi) / U.bc2_sqrt + U.eps);
    }
}

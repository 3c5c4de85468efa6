// Optimizer updates over the whole flat parameter vector in one dispatch,
// with PyTorch's formulas (no weight decay). Adam's bias corrections change
// every step; the host computes them in f64 and writes them to `P`.

struct Params {
    len: u32, _p0: u32, _p1: u32, _p2: u32,
    lr: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32, // Adam: lr / (1 - beta1^t)
    bc2_sqrt: f32,  // Adam: sqrt(1 - beta2^t)
    _p3: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> params: array<f32>; // (len)
@group(0) @binding(2) var<storage, read> grads: array<f32>;        // (len)
@group(0) @binding(3) var<storage, read_write> m: array<f32>;      // (len) SGD momentum buffer / Adam first moment
@group(0) @binding(4) var<storage, read_write> v: array<f32>;      // (len) Adam second moment

fn flat_index(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + li;
}

// buf = momentum * buf + g; p -= lr * buf (buf starts at zero, so step 1 is PyTorch's buf = g).
@compute @workgroup_size(256)
fn sgd(@builtin(local_invocation_index) li: u32,
       @builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(li, wid, nwg);
    if (i < P.len) {
        let b = P.momentum * m[i] + grads[i];
        m[i] = b;
        params[i] -= P.lr * b;
    }
}

@compute @workgroup_size(256)
fn adam(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(li, wid, nwg);
    if (i < P.len) {
        let g = grads[i];
        let mi = P.beta1 * m[i] + (1.0 - P.beta1) * g;
        let vi = P.beta2 * v[i] + (1.0 - P.beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] -= P.step_size * mi / (sqrt(vi) / P.bc2_sqrt + P.eps);
    }
}

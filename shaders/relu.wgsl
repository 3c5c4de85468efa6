// ReLU, forward and backward, one thread per element. The workgroup index is
// folded over x and y so that tensors past 65,535 * 256 elements still dispatch.

struct Params {
    len: u32,
    _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // (len)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;   // (len)
@group(0) @binding(3) var<storage, read> dy: array<f32>;        // (len)
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;  // (len)

fn flat_index(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + li;
}

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(li, wid, nwg);
    if (i < P.len) {
        y[i] = max(x[i], 0.0);
    }
}

// x may be ReLU's input or its output: x > 0 exactly where the output is > 0.
// The subgradient at 0 is 0, as in PyTorch.
@compute @workgroup_size(256)
fn backward(@builtin(local_invocation_index) li: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(li, wid, nwg);
    if (i < P.len) {
        dx[i] = select(0.0, dy[i], x[i] > 0.0);
    }
}

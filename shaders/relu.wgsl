// ReLU, forward and backward, one thread per element.
// #include "grid.wgsl"

struct ReluUniform {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> U: ReluUniform;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // (len)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;   // (len)
@group(0) @binding(3) var<storage, read> dy: array<f32>;        // (len)
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;  // (len)

@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn forward(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_thread(li, wid, nwg);
    if (i < U.len) {
        y[i] = max(x[i], 0.0);
    }
}

// x may be ReLU's input or its output: x > 0 exactly where the output is > 0.
// The subgradient at 0 is 0, as in PyTorch.
@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn backward(@builtin(local_invocation_index) li: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_thread(li, wid, nwg);
    if (i < U.len) {
        dx[i] = select(0.0, dy[i], x[i] > 0.0);
    }
}

// Linear, forward and backward. The classifier layer is small (3136 -> 10 in the
// seed model) but deep in K, so forward gives each output one workgroup that
// reduces the dot product in shared memory instead of one long serial loop.

struct Params {
    n: u32, inf: u32, outf: u32, w_off: u32,
    b_off: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // (N,IN)
@group(0) @binding(2) var<storage, read> params: array<f32>;      // flat: W (OUT,IN) at w_off, bias (OUT) at b_off
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // (N,OUT)
@group(0) @binding(4) var<storage, read> dy: array<f32>;          // (N,OUT)
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;    // (N,IN)
@group(0) @binding(6) var<storage, read_write> grads: array<f32>; // flat, same layout as params

var<workgroup> red: array<f32, 64>;

fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// One workgroup per (n, o).
@compute @workgroup_size(64)
fn forward(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = flat_group(wid, nwg);
    if (g >= P.n * P.outf) {
        return;
    }
    let n = g / P.outf;
    let o = g % P.outf;
    var s = 0.0;
    for (var i = li; i < P.inf; i += 64u) {
        s = fma(x[n * P.inf + i], params[P.w_off + o * P.inf + i], s);
    }
    red[li] = s;
    workgroupBarrier();
    for (var half = 32u; half > 0u; half >>= 1u) {
        if (li < half) {
            red[li] += red[li + half];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        y[g] = red[0] + params[P.b_off + o];
    }
}

// dx[n,i] = sum_o dy[n,o] W[o,i]; one thread per (n,i).
@compute @workgroup_size(256)
fn backward_input(@builtin(local_invocation_index) li: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_group(wid, nwg) * 256u + li;
    if (idx >= P.n * P.inf) {
        return;
    }
    let n = idx / P.inf;
    let i = idx % P.inf;
    var s = 0.0;
    for (var o = 0u; o < P.outf; o++) {
        s = fma(dy[n * P.outf + o], params[P.w_off + o * P.inf + i], s);
    }
    dx[idx] = s;
}

// dW[o,i] = sum_n dy[n,o] x[n,i] for the first OUT*IN threads, then db[o] = sum_n dy[n,o]
// for the next OUT: one dispatch writes the whole gradient of the layer.
@compute @workgroup_size(256)
fn backward_params(@builtin(local_invocation_index) li: u32,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_group(wid, nwg) * 256u + li;
    let nw = P.outf * P.inf;
    if (idx < nw) {
        let o = idx / P.inf;
        let i = idx % P.inf;
        var s = 0.0;
        for (var n = 0u; n < P.n; n++) {
            s = fma(dy[n * P.outf + o], x[n * P.inf + i], s);
        }
        grads[P.w_off + idx] = s;
    } else if (idx < nw + P.outf) {
        let o = idx - nw;
        var s = 0.0;
        for (var n = 0u; n < P.n; n++) {
            s += dy[n * P.outf + o];
        }
        grads[P.b_off + o] = s;
    }
}

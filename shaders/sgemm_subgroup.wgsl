// The reference SGEMM of `gpu-cnn bench`, subgroup engine: c (M,N) = a (M,K) x b (K,N),
// row-major, M a multiple of ROW_GROUPS*8, N of 64, K of 4.
// Not an op of the model: it runs conv2d_subgroup.wgsl's register tile on plain
// operands, loaded four at a time (a along k, b along the row) with none of the
// convolution's address arithmetic, so each conv's GFLOP/s can be read as a share
// of it. Dispatch: (N/64, M/(ROW_GROUPS*8)), workgroup_size(8).
// #include "sgemm_common.wgsl"
// #include "subgroup_tile.wgsl"

var<private> lane_col4: u32; // this lane's lo column quad in c's rows

fn emit(row: u32, half: u32, v: vec4<f32>) {
    c[row * (U.n / 4u) + lane_col4 + half * 8u] = v;
}

@compute @workgroup_size(8)
fn matmul(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * ROW_GROUPS * 8u;
    lane_col4 = wid.x * 16u + lane;
    let k4 = U.k / 4u;
    let n4 = U.n / 4u;
    // This lane's rows of a: l, l+8, l+16, l+24 from row0.
    let a0 = (row0 + lane) * k4;
    let a1 = a0 + 8u * k4;
    let a2 = a0 + 16u * k4;
    let a3 = a0 + 24u * k4;
    for (var kq = 0u; kq < k4; kq++) {
        let x0 = a[a0 + kq];
        let x1 = a[a1 + kq];
        var x2 = vec4<f32>();
        var x3 = vec4<f32>();
        if (ROW_GROUPS > 2u) {
            x2 = a[a2 + kq];
            x3 = a[a3 + kq];
        }
        let bi = kq * 4u * n4 + lane_col4;
        accumulate4(Step(vec4(x0.x, x1.x, x2.x, x3.x), b[bi], b[bi + 8u], vec2(0.0)),
                    Step(vec4(x0.y, x1.y, x2.y, x3.y), b[bi + n4], b[bi + n4 + 8u], vec2(0.0)),
                    Step(vec4(x0.z, x1.z, x2.z, x3.z), b[bi + 2u * n4], b[bi + 2u * n4 + 8u], vec2(0.0)),
                    Step(vec4(x0.w, x1.w, x2.w, x3.w), b[bi + 3u * n4], b[bi + 3u * n4 + 8u], vec2(0.0)));
    }
    emit_all(row0);
}

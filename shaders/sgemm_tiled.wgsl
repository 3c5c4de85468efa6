// The reference SGEMM of `gpu-cnn bench`, tiled engine: c (M,N) = a (M,K) x b (K,N),
// row-major, M and N multiples of 64, K a multiple of 16.
// Not an op of the model: it tells what this adapter reaches on a plain matmul
// with the conv engine's technique (shared-memory tiles, 4x4 register blocks), so
// each conv's GFLOP/s can be read as a share of it. Dispatch: (N/64, M/64).
// #include "sgemm_common.wgsl"

const TILE: u32 = 64u; // rows and columns of c a workgroup computes
const STEP: u32 = 16u; // reduction steps per shared-memory fill

var<workgroup> As: array<vec4<f32>, 256>; // [k 16][row 64 / 4]: a's tile, transposed
var<workgroup> Bs: array<vec4<f32>, 256>; // [k 16][col 64 / 4]

// 16x16 threads; thread (x, y) owns rows 4y..4y+3 and columns 4x..4x+3 of the tile.
@compute @workgroup_size(16, 16)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let k4 = U.k / 4u;
    let n4 = U.n / 4u;
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var k0 = 0u; k0 < U.k; k0 += STEP) {
        // a: 64 rows x 16 k as 256 vec4 along k; thread li loads row li/4, k quad li%4.
        let av = a[(row0 + li / 4u) * k4 + k0 / 4u + li % 4u];
        let r = li / 4u;
        for (var j = 0u; j < 4u; j++) {
            As[((li % 4u) * 4u + j) * 16u + r / 4u][r % 4u] = av[j];
        }
        // b: 16 k x 64 cols as 256 vec4 along the row.
        Bs[li] = b[(k0 + li / 16u) * n4 + col0 / 4u + li % 16u];
        workgroupBarrier();
        for (var kk = 0u; kk < STEP; kk++) {
            let x = As[kk * 16u + lid.y];
            let y = Bs[kk * 16u + lid.x];
            acc0 = fma(vec4(x.x), y, acc0);
            acc1 = fma(vec4(x.y), y, acc1);
            acc2 = fma(vec4(x.z), y, acc2);
            acc3 = fma(vec4(x.w), y, acc3);
        }
        workgroupBarrier();
    }
    let out = (row0 + lid.y * 4u) * n4 + col0 / 4u + lid.x;
    c[out] = acc0;
    c[out + n4] = acc1;
    c[out + 2u * n4] = acc2;
    c[out + 3u * n4] = acc3;
}

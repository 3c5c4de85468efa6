// Conv2d in mixed precision without tensor cores: conv2d_mixed.wgsl's tile
// multiply-add on plain invocations, with the arithmetic of conv2d_coop.wgsl (the
// same f16 operands from As and Bs, products and sums in f32). It exists so the
// mixed-precision engine's staging, scaling and epilogues run, and are tested
// against the CPU reference, on any adapter with f16 shaders; it is no faster than
// the f32 engines.
enable f16;
// #include "conv2d_mixed.wgsl"

// Elements of the tile each invocation owns: li, li + THREADS, ... (at most 16: a
// 64 x 64 tile over 256 invocations).
const OWNED: u32 = 16u;
var<private> acc: array<f32, OWNED>;

fn mma_zero() {
    for (var e = 0u; e < OWNED; e++) {
        acc[e] = 0.0;
    }
}

fn mma_step(li: u32, sg: u32, nsg: u32) {
    for (var e = 0u; e < (BM * BN) / THREADS; e++) {
        let at = li + e * THREADS; // column-major in the tile, as Cs
        let m = at % BM;
        let n = at / BM;
        var s = acc[e];
        for (var k = 0u; k < BK; k++) {
            s = fma(f32(As[k * BM + m]), f32(Bs[k * BN + n]), s);
        }
        acc[e] = s;
    }
}

fn mma_store(li: u32, sg: u32, nsg: u32) {
    for (var e = 0u; e < (BM * BN) / THREADS; e++) {
        Cs[li + e * THREADS] = acc[e];
    }
}

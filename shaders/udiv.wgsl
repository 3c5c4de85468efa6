// Unsigned integer division through an f32 reciprocal. CPU SIMD (llvmpipe) has no
// vector integer division, so a `/` in a shader becomes eight scalar divides per
// vector; a GPU's integer divide is a slow multi-instruction sequence too.
//
// a / b for a < 2^24, given b_inv = 1 / f32(b): f32(a) is exact and the product
// is within one of the quotient, which one correction step fixes. The executor
// refuses tensors of 2^24 elements or more, so every dividend stays below that.

fn udiv_recip(a: u32, b: u32, b_inv: f32) -> u32 {
    var q = u32(f32(a) * b_inv);
    q -= select(0u, 1u, q * b > a);
    q += select(0u, 1u, (q + 1u) * b <= a);
    return q;
}

fn udiv_recip4(a: vec4<u32>, b: u32, b_inv: f32) -> vec4<u32> {
    var q = vec4<u32>(vec4<f32>(a) * b_inv);
    q -= select(vec4(0u), vec4(1u), q * b > a);
    q += select(vec4(0u), vec4(1u), (q + 1u) * b <= a);
    return q;
}

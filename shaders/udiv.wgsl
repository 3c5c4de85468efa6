// Unsigned integer division through an f32 reciprocal. CPU SIMD (llvmpipe) has no
// vector integer division, so a `/` in a shader becomes eight scalar divides per
// vector; a GPU's integer divide is a slow multi-instruction sequence too.
// Both take b_inv = 1 / f32(b) and need b < 2^24.

// a / b for a < 2^24 (an index within one image, a kernel tap): f32(a) is exact
// and the product is within one of the quotient, which one correction fixes.
fn udiv_small(a: u32, b: u32, b_inv: f32) -> u32 {
    var q = u32(f32(a) * b_inv);
    q -= select(0u, 1u, q * b > a);
    q += select(0u, 1u, (q + 1u) * b <= a);
    return q;
}

fn udiv_small4(a: vec4<u32>, b: u32, b_inv: f32) -> vec4<u32> {
    var q = vec4<u32>(vec4<f32>(a) * b_inv);
    q -= select(vec4(0u), vec4(1u), q * b > a);
    q += select(vec4(0u), vec4(1u), (q + 1u) * b <= a);
    return q;
}

// a / b for any u32 a (an index across a batch of any size). The first estimate is
// within a*2^-21 + 1 of the quotient; its remainder a - q*b is then small enough
// (|r| < 2^11 + b, computed exactly in wrapping arithmetic) for a second estimate
// within one, and the sign of the last remainder fixes that.
// For b = 1 and a >= 2^32 - 128, f32(a) rounds up to 2^32, which no u32 holds: WGSL
// clamps such a conversion, but GLSL leaves it undefined: llvmpipe's GL on an
// AVX2-only CPU gave udiv(2^32 - 2, 1) = 2^32 - 1. The min keeps the estimate in range
// on every backend (4294967040, the largest f32 below 2^32, is 256 short of it:
// within reach of the second estimate).
fn udiv(a: u32, b: u32, b_inv: f32) -> u32 {
    var q = u32(min(f32(a) * b_inv, 4294967040.0));
    q = u32(i32(q) + i32(f32(i32(a - q * b)) * b_inv));
    let r = i32(a - q * b);
    q -= select(0u, 1u, r < 0);
    q += select(0u, 1u, r >= i32(b));
    return q;
}

// The reference SGEMMs' interface, included by sgemm_tiled.wgsl and sgemm_subgroup.wgsl:
// c (M,N) = a (M,K) x b (K,N), row-major, read and written four floats at a time.

struct SgemmUniform {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> U: SgemmUniform;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

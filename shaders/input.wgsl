// A training batch gathered on the GPU from a dataset kept in GPU memory as bytes:
// per step the host writes only the batch's sample indices. Pixel bytes become the
// model's input through the host's own table of values (`data::pixel_values`), so
// the GPU and the CPU reference see the same floats.
// #include "grid.wgsl"
// #include "udiv.wgsl"

struct GatherUniform {
    n: u32,       // samples in this (micro-)batch
    pixels: u32,  // bytes per sample
    first: u32,   // this batch's first entry in `indices`
    _pad: u32,
}

@group(0) @binding(0) var<uniform> U: GatherUniform;
@group(0) @binding(1) var<storage, read> images: array<u32>;       // the dataset's pixel bytes, four a word
@group(0) @binding(2) var<storage, read> labels_in: array<u32>;    // the dataset's label bytes, four a word
@group(0) @binding(3) var<storage, read> indices: array<u32>;      // the sample indices of the whole step
@group(0) @binding(4) var<storage, read> values: array<f32, 256>;  // a pixel byte's input value
@group(0) @binding(5) var<storage, read_write> x: array<f32>;      // (N, pixels)
@group(0) @binding(6) var<storage, read_write> labels: array<u32>; // (N)

fn byte_of(word: u32, at: u32) -> u32 {
    return (word >> ((at % 4u) * 8u)) & 0xffu;
}

// One thread per input element; the first of each sample also copies its label.
@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn gather(@builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_thread(li, wid, nwg);
    if (i >= U.n * U.pixels) {
        return;
    }
    let b = udiv(i, U.pixels, 1.0 / f32(U.pixels));
    let p = i - b * U.pixels;
    let sample = indices[U.first + b];
    let at = sample * U.pixels + p;
    x[i] = values[byte_of(images[at / 4u], at)];
    if (p == 0u) {
        labels[b] = byte_of(labels_in[sample / 4u], sample);
    }
}

//! A batch gathered on the GPU from a dataset kept in GPU memory as bytes, so a
//! training step's host work is writing the batch's indices.
//! WGSL: shaders/input.wgsl. CPU twin: `data::Dataset::batch`.
//! Test: tests/gpu_training.rs `resident_dataset_trains_like_host_batches`.

use crate::gpu::dispatch::{u32_of, uniform, Dispatch, Entry, Launcher};

uniform! {
    /// One gather (`GatherUniform` in input.wgsl).
    pub struct GatherUniform in "input.wgsl" {
        n: u32, pixels: u32, first: u32, _pad: u32,
    }
}

/// A dataset's buffers in GPU memory, and the step's indices.
pub struct DatasetBuffers<'a> {
    pub images: &'a wgpu::Buffer,  // pixel bytes, four a u32
    pub labels: &'a wgpu::Buffer,  // label bytes, four a u32
    pub indices: &'a wgpu::Buffer, // (step batch) u32
    pub values: &'a wgpu::Buffer,  // (256) f32: `data::pixel_values`
}

#[derive(Debug, Clone)]
pub struct InputKernels {
    launcher: Launcher,
    gather: Entry,
}

impl InputKernels {
    pub fn new(launcher: &Launcher) -> Self {
        let module = super::module(launcher, "input.wgsl");
        InputKernels { launcher: launcher.clone(), gather: launcher.entry(&module, "input.wgsl", "gather", &[]) }
    }

    /// x (n, pixels) and labels (n) of the samples at `indices[first..first + n]`.
    pub fn gather(
        &self,
        n: usize,
        pixels: usize,
        first: usize,
        data: &DatasetBuffers,
        x: &wgpu::Buffer,
        labels: &wgpu::Buffer,
    ) -> Dispatch {
        let u = GatherUniform { n: u32_of(n), pixels: u32_of(pixels), first: u32_of(first), _pad: 0 };
        let bindings = [(1, data.images), (2, data.labels), (3, data.indices), (4, data.values), (5, x), (6, labels)];
        self.launcher.dispatch(&self.gather, &u, &bindings, self.launcher.grid.flat(n * pixels)).moving(5 * n * pixels)
    }
}

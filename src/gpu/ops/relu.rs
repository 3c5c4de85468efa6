//! ReLU, forward and backward (where no conv epilogue absorbs it).
//! WGSL: shaders/relu.wgsl. CPU twin: `cpu::ops::relu_forward` / `relu_backward`.
//! Test: tests/gpu_ops.rs `relu`.

use crate::dims::ElemDims;
use crate::gpu::dispatch::{u32_of, uniform, Dispatch, Entry, Launcher};

uniform! {
    /// The element count (`ReluUniform` in relu.wgsl).
    pub struct ReluUniform in "relu.wgsl" {
        len: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }
}

#[derive(Debug, Clone)]
pub struct ReluKernels {
    launcher: Launcher,
    forward: Entry,
    backward: Entry,
}

impl ReluKernels {
    pub fn new(launcher: &Launcher) -> Self {
        let module = super::module(launcher, "relu.wgsl");
        let entry = |name: &str| launcher.entry(&module, "relu.wgsl", name, &[]);
        ReluKernels { launcher: launcher.clone(), forward: entry("forward"), backward: entry("backward") }
    }

    fn uniform(d: ElemDims) -> ReluUniform {
        ReluUniform { len: u32_of(d.len()), ..Default::default() }
    }

    pub fn forward(&self, d: ElemDims, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Dispatch {
        let groups = self.launcher.grid.flat(d.len());
        self.launcher.dispatch(&self.forward, &Self::uniform(d), &[(1, x), (2, y)], groups).moving(8 * d.len())
    }

    /// `x` may be the ReLU's input or its output (the mask is the same).
    pub fn backward(&self, d: ElemDims, x: &wgpu::Buffer, dy: &wgpu::Buffer, dx: &wgpu::Buffer) -> Dispatch {
        let groups = self.launcher.grid.flat(d.len());
        let bindings = [(1, x), (3, dy), (4, dx)];
        self.launcher.dispatch(&self.backward, &Self::uniform(d), &bindings, groups).moving(12 * d.len())
    }
}

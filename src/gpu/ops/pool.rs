//! MaxPool2d: forward with argmax, and backward through the argmax.
//! WGSL: shaders/maxpool.wgsl. CPU twin: `cpu::ops::maxpool_forward` /
//! `maxpool_backward`. Test: tests/gpu_ops.rs `maxpool`.

use crate::dims::PoolDims;
use crate::gpu::dispatch::{u32_of, uniform, Dispatch, Entry, Launcher};

uniform! {
    /// Shapes of one pooling call (`PoolUniform` in maxpool.wgsl).
    pub struct PoolUniform in "maxpool.wgsl" {
        n: u32, c: u32, h: u32, w: u32,
        k: u32, stride: u32, oh: u32, ow: u32,
        relu: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }
}

impl PoolUniform {
    fn new(d: PoolDims) -> Self {
        PoolUniform {
            n: u32_of(d.n),
            c: u32_of(d.c),
            h: u32_of(d.h),
            w: u32_of(d.w),
            k: u32_of(d.k),
            stride: u32_of(d.stride),
            oh: u32_of(d.oh()),
            ow: u32_of(d.ow()),
            ..Default::default()
        }
    }
}

/// A pooling layer's outputs: its shape, y (N,C,OH,OW) and argmax (N,C,OH,OW) u32.
#[derive(Clone, Copy)]
pub struct PoolOutput<'a> {
    pub d: PoolDims,
    pub y: &'a wgpu::Buffer,
    pub argmax: &'a wgpu::Buffer,
}

#[derive(Debug, Clone)]
pub struct PoolKernels {
    launcher: Launcher,
    forward: Entry,
    backward: Entry,
    /// backward for windows that tile the input (kernel == stride): one invocation a window.
    backward_windows: Entry,
}

impl PoolKernels {
    pub fn new(launcher: &Launcher) -> Self {
        let module = super::module(launcher, "maxpool.wgsl");
        let entry = |name: &str| launcher.entry(&module, "maxpool.wgsl", name, &[]);
        PoolKernels {
            launcher: launcher.clone(),
            forward: entry("forward"),
            backward: entry("backward"),
            backward_windows: entry("backward_windows"),
        }
    }

    /// y (N,C,OH,OW) and argmax (N,C,OH,OW) u32 from x (N,C,H,W).
    pub fn forward(&self, d: PoolDims, x: &wgpu::Buffer, y: &wgpu::Buffer, argmax: &wgpu::Buffer) -> Dispatch {
        let groups = self.launcher.grid.flat(d.output_len());
        let bindings = [(1, x), (2, y), (3, argmax)];
        self.launcher
            .dispatch(&self.forward, &PoolUniform::new(d), &bindings, groups)
            .moving(4 * d.input_len() + 8 * d.output_len())
    }

    /// dx (N,C,H,W) from dy (N,C,OH,OW) through the forward's argmax in `out`, from x
    /// and `out.y`; with `relu` (x is a ReLU's output), also that ReLU's backward:
    /// dx is zero where x is not positive. Windows that tile the input gate by y,
    /// which is x at the argmax, so they work after `ConvKernels::forward_pooled`
    /// too, which leaves x unwritten.
    pub fn backward(
        &self,
        out: PoolOutput,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        relu: bool,
    ) -> Dispatch {
        let PoolOutput { d, y, argmax } = out;
        let u = PoolUniform { relu: relu as u32, ..PoolUniform::new(d) };
        let (entry, groups, gate, gated) = match d.k == d.stride {
            true => (&self.backward_windows, self.launcher.grid.flat(d.output_len()), (2, y), d.output_len()),
            false => (&self.backward, self.launcher.grid.flat(d.input_len()), (1, x), d.input_len()),
        };
        let bindings = [(3, argmax), (4, dy), (5, dx), gate];
        self.launcher
            .dispatch(entry, &u, &bindings, groups)
            .moving(4 * d.input_len() + 8 * d.output_len() + if relu { 4 * gated } else { 0 })
            .fusing_relu(relu)
    }
}

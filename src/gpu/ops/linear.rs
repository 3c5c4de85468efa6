//! Linear: forward (+bias), backward to the input, and the weight and bias
//! gradients. Two routes, chosen by `LinearKernels::route`: linear.wgsl's dot
//! products, or the engine's convolution GEMM (the same product as a 1x1
//! convolution of 1x1 images) where the engine says so for the batch.
//! WGSL: shaders/linear.wgsl (and the conv modules). CPU twin:
//! `cpu::ops::linear_forward` / `linear_backward`. Test: tests/gpu_ops.rs `linear`.

use crate::dims::LinearDims;
use crate::gpu::dispatch::{u32_of, uniform, Dispatch, Entry, Launcher};
use crate::gpu::engine::GemmEngine;
use crate::gpu::ops::conv::ConvKernels;
use crate::gpu::ops::texture_copy::TextureCopies;
use crate::gpu::ops::WeightGrads;
use crate::gpu::params::Params;
use crate::model::ParamOffsets;

uniform! {
    /// Shapes and offsets of one Linear call (`LinearUniform` in linear.wgsl).
    pub struct LinearUniform in "linear.wgsl" {
        n: u32, in_features: u32, out_features: u32, w_off: u32,
        b_off: u32, accumulate: u32, relu: u32, _pad0: u32,
    }
}

impl LinearUniform {
    fn new(d: LinearDims, at: ParamOffsets) -> Self {
        LinearUniform {
            n: u32_of(d.n),
            in_features: u32_of(d.in_features),
            out_features: u32_of(d.out_features),
            w_off: u32_of(at.weight),
            b_off: u32_of(at.bias),
            ..Default::default()
        }
    }
}

/// Which kernels run a Linear call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearRoute {
    /// linear.wgsl: one workgroup per output for forward, one thread per gradient.
    Dot,
    /// The engine's convolution GEMM, as a 1x1 convolution (`LinearDims::as_conv`),
    /// which reads no texture copies (only 5x5 products do): it is given none.
    ConvGemm,
}

#[derive(Debug, Clone)]
pub struct LinearKernels {
    launcher: Launcher,
    forward: Entry,
    backward_input: Entry,
    backward_weight_bias: Entry,
    conv: ConvKernels,
    on_conv_from_batch: Option<usize>,
}

impl LinearKernels {
    pub fn new(launcher: &Launcher, engine: GemmEngine, conv: &ConvKernels) -> Self {
        let module = super::module(launcher, "linear.wgsl");
        let entry = |name: &str| launcher.entry(&module, "linear.wgsl", name, &[]);
        LinearKernels {
            launcher: launcher.clone(),
            forward: entry("forward"),
            backward_input: entry("backward_input"),
            backward_weight_bias: entry("backward_weight_bias"),
            conv: conv.clone(),
            on_conv_from_batch: engine.spec().linear_on_conv_from_batch,
        }
    }

    /// The route for a call of `d`: the conv GEMM from the engine's threshold batch up.
    pub fn route(&self, d: LinearDims) -> LinearRoute {
        match self.on_conv_from_batch {
            Some(min) if d.n >= min => LinearRoute::ConvGemm,
            _ => LinearRoute::Dot,
        }
    }

    /// Elements of the scratch buffer `backward_weight_bias` needs for `d`.
    pub fn scratch_len(&self, d: LinearDims) -> usize {
        match self.route(d) {
            LinearRoute::ConvGemm => self.conv.scratch_len(d.as_conv()),
            LinearRoute::Dot => 0,
        }
    }

    /// y (N,OUT) = x (N,IN) W^T + b, with W (OUT,IN) and b at `at` in `params`.
    pub fn forward(
        &self,
        d: LinearDims,
        at: ParamOffsets,
        x: &wgpu::Buffer,
        params: &Params,
        y: &wgpu::Buffer,
    ) -> Dispatch {
        if self.route(d) == LinearRoute::ConvGemm {
            return self.conv.forward(d.as_conv(), at, false, x, params, y, &TextureCopies::default());
        }
        let groups = self.launcher.grid.folded(d.output_len() as u64, 1);
        let u = LinearUniform::new(d, at);
        self.launcher.dispatch(&self.forward, &u, &[(1, x), (2, params.buffer()), (3, y)], groups).with_flops(d.flops())
    }

    /// dx (N,IN) = dy (N,OUT) W; with `relu_input` (this layer's input x, a ReLU's
    /// output), also that ReLU's backward: dx is zero where x is not positive.
    pub fn backward_input(
        &self,
        d: LinearDims,
        at: ParamOffsets,
        dy: &wgpu::Buffer,
        params: &Params,
        dx: &wgpu::Buffer,
        relu_input: Option<&wgpu::Buffer>,
    ) -> Dispatch {
        if self.route(d) == LinearRoute::ConvGemm {
            return self.conv.backward_input(d.as_conv(), at, dy, params, dx, relu_input, &TextureCopies::default());
        }
        let groups = self.launcher.grid.flat(d.input_len());
        let u = LinearUniform { relu: relu_input.is_some() as u32, ..LinearUniform::new(d, at) };
        let x = relu_input.unwrap_or(&self.launcher.unused);
        let bindings = [(4, dy), (2, params.buffer()), (5, dx), (1, x)];
        self.launcher
            .dispatch(&self.backward_input, &u, &bindings, groups)
            .with_flops(d.flops())
            .fusing_relu(relu_input.is_some())
    }

    /// dW (OUT,IN) and db (OUT) into `to.grads` at `at`; `to.scratch` holds
    /// `scratch_len(d)` floats.
    pub fn backward_weight_bias(
        &self,
        d: LinearDims,
        at: ParamOffsets,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        to: &WeightGrads,
    ) -> Vec<Dispatch> {
        if self.route(d) == LinearRoute::ConvGemm {
            return self.conv.backward_weight_bias(d.as_conv(), at, x, dy, to, &TextureCopies::default()).into();
        }
        let groups = self.launcher.grid.flat(d.out_features * d.in_features + d.out_features);
        let u = LinearUniform { accumulate: to.accumulate as u32, ..LinearUniform::new(d, at) };
        vec![self
            .launcher
            .dispatch(&self.backward_weight_bias, &u, &[(1, x), (4, dy), (6, to.grads)], groups)
            .with_flops(d.flops())]
    }
}

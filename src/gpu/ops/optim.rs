//! The optimizer update of the whole flat parameter vector: SGD with momentum
//! or Adam, PyTorch's formulas. WGSL: shaders/optim.wgsl. CPU twin:
//! `cpu::ops::sgd_update` / `adam_update`. Test: tests/gpu_ops.rs `optimizers`.

use bytemuck::Zeroable;

use crate::executor::Optimizer;
use crate::gpu::dispatch::{u32_of, uniform, Dispatch, Entry, Launcher};

uniform! {
    /// One step's hyper-parameters (`OptimUniform` in optim.wgsl).
    pub struct OptimUniform in "optim.wgsl" {
        len: u32, _pad0: u32, _pad1: u32, _pad2: u32,
        lr: f32, momentum: f32, beta1: f32, beta2: f32,
        eps: f32, step_size: f32, bc2_sqrt: f32, decay: f32,
    }
}

impl OptimUniform {
    /// The uniform for update number `step` (from 1) over `len` parameters.
    pub fn new(opt: Optimizer, len: usize, step: u32) -> Self {
        let mut u = OptimUniform::zeroed();
        u.len = u32_of(len);
        match (opt, opt.adam_step(step)) {
            (Optimizer::Sgd { lr, momentum, weight_decay }, _) => {
                (u.lr, u.momentum, u.decay) = (lr, momentum, weight_decay)
            }
            (_, Some(a)) => {
                u.lr = opt.lr();
                (u.beta1, u.beta2, u.eps, u.step_size, u.bc2_sqrt, u.decay) =
                    (a.beta1, a.beta2, a.eps, a.step_size, a.bc2_sqrt, a.shrink);
            }
            (Optimizer::Adam { .. }, None) => unreachable!("adam_step is Some for Adam"),
        }
        u
    }
}

/// The optimizer's buffers, each `len` floats; `v` is Adam's alone.
pub struct OptimBuffers<'a> {
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub m: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
}

#[derive(Debug, Clone)]
pub struct OptimKernels {
    launcher: Launcher,
    sgd: Entry,
    adam: Entry,
}

impl OptimKernels {
    pub fn new(launcher: &Launcher) -> Self {
        let module = super::module(launcher, "optim.wgsl");
        let entry = |name: &str| launcher.entry(&module, "optim.wgsl", name, &[]);
        OptimKernels { launcher: launcher.clone(), sgd: entry("sgd"), adam: entry("adam") }
    }

    /// One update of all `len` parameters. Rewrite `Dispatch::uniform` with
    /// `OptimUniform::new(opt, len, step)` before each step (Adam's factors change).
    pub fn update(&self, opt: Optimizer, len: usize, b: &OptimBuffers) -> Dispatch {
        let u = OptimUniform::new(opt, len, 1);
        let groups = self.launcher.grid.flat(len);
        match opt {
            Optimizer::Sgd { .. } => {
                let bindings = [(1, b.params), (2, b.grads), (3, b.m)];
                self.launcher.dispatch(&self.sgd, &u, &bindings, groups).moving(20 * len)
            }
            Optimizer::Adam { .. } => {
                let bindings = [(1, b.params), (2, b.grads), (3, b.m), (4, b.v)];
                self.launcher.dispatch(&self.adam, &u, &bindings, groups).moving(28 * len)
            }
        }
    }
}

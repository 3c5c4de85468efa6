//! Every op family's pipelines for one device and one GEMM engine, each compiled once
//! (the convolutions' when a dispatch first needs them).

use crate::gpu::dispatch::{Grid, Launcher};
use crate::gpu::engine::GemmEngine;
use crate::gpu::ops::{
    conv::ConvKernels, input::InputKernels, linear::LinearKernels, optim::OptimKernels, pool::PoolKernels,
    relu::ReluKernels, sgemm::SgemmKernels, softmax_ce::SoftmaxKernels,
};

#[derive(Debug)]
pub struct Kernels {
    pub engine: GemmEngine,
    pub grid: Grid,
    pub input: InputKernels,
    pub conv: ConvKernels,
    pub linear: LinearKernels,
    pub pool: PoolKernels,
    pub relu: ReluKernels,
    pub softmax: SoftmaxKernels,
    pub optim: OptimKernels,
    /// The reference SGEMM, compiled on first use: only `bench` runs it.
    pub sgemm: SgemmKernels,
}

impl Kernels {
    /// Compile every family on `device` (of an adapter of `device_type`), which must
    /// have `engine`'s features. Dispatches fold past `max_workgroups_per_dim`
    /// workgroups: the device's limit, or fewer so a test reaches the folded path
    /// with small shapes.
    pub fn new(
        device: &wgpu::Device,
        device_type: wgpu::DeviceType,
        engine: GemmEngine,
        max_workgroups_per_dim: u32,
    ) -> Kernels {
        let textures = engine.operands_in_textures(device_type);
        Self::with_operand_loads(device, device_type, engine, max_workgroups_per_dim, textures)
    }

    /// As `new`, with the kernel-row products loading their operands from texture
    /// copies or not, whatever `GemmEngine::operands_in_textures` says: the tests
    /// run both ways on any CPU.
    pub fn with_operand_loads(
        device: &wgpu::Device,
        device_type: wgpu::DeviceType,
        engine: GemmEngine,
        max_workgroups_per_dim: u32,
        textures: bool,
    ) -> Kernels {
        let limit = device.limits().max_compute_workgroups_per_dimension;
        let grid = Grid { max_per_dim: max_workgroups_per_dim.clamp(1, limit) };
        let launcher = Launcher::new(device, grid);
        let conv = ConvKernels::new(&launcher, engine, device_type, textures);
        Kernels {
            engine,
            grid,
            input: InputKernels::new(&launcher),
            linear: LinearKernels::new(&launcher, engine, &conv),
            conv,
            pool: PoolKernels::new(&launcher),
            relu: ReluKernels::new(&launcher),
            softmax: SoftmaxKernels::new(&launcher),
            optim: OptimKernels::new(&launcher),
            sgemm: SgemmKernels::new(&launcher, engine),
        }
    }
}

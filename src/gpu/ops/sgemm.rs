//! The reference SGEMM of `gpu-cnn bench`: a plain row-major matmul on the
//! engine's technique, so each convolution's rate reads as a share of it. Not
//! an op of the model, so it is compiled on first use.
//! WGSL: shaders/sgemm_tiled.wgsl or sgemm_subgroup.wgsl (on sgemm_common.wgsl).
//! Test: tests/gpu_ops.rs `reference_sgemm`.

use anyhow::{bail, Result};
use std::sync::OnceLock;

use crate::gpu::dispatch::{u32_of, uniform, Dispatch, Entry, Launcher};
use crate::gpu::engine::GemmEngine;

uniform! {
    /// The matmul's sizes (`SgemmUniform` in sgemm_common.wgsl).
    pub struct SgemmUniform in "sgemm_common.wgsl" {
        m: u32, n: u32, k: u32, _pad: u32,
    }
}

#[derive(Debug)]
pub struct SgemmKernels {
    launcher: Launcher,
    engine: GemmEngine,
    matmul: OnceLock<Entry>,
}

impl SgemmKernels {
    pub fn new(launcher: &Launcher, engine: GemmEngine) -> Self {
        SgemmKernels { launcher: launcher.clone(), engine, matmul: OnceLock::new() }
    }

    /// c (m,n) = a (m,k) x b (k,n), row-major. The sizes must be multiples of the
    /// engine's `sgemm_tile`: it exists to be timed, not to serve shapes.
    pub fn matmul(
        &self,
        [m, n, k]: [usize; 3],
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let spec = self.engine.spec();
        let tile = spec.sgemm_tile;
        if [m, n, k].iter().zip(tile).any(|(&x, t)| x == 0 || x % t != 0) {
            bail!("sgemm {m}x{n}x{k}: sizes must be multiples of {tile:?} on the {} engine", self.engine);
        }
        let entry = self.matmul.get_or_init(|| {
            let module = super::module(&self.launcher, spec.sgemm_module);
            self.launcher.entry(&module, spec.sgemm_module, "matmul", spec.sgemm_constants)
        });
        let u = SgemmUniform { m: u32_of(m), n: u32_of(n), k: u32_of(k), _pad: 0 };
        let groups = [u32_of(n / tile[1]), u32_of(m / tile[0]), 1];
        Ok(self.launcher.dispatch(entry, &u, &[(1, a), (2, b), (3, c)], groups).with_flops(2 * (m * n * k) as u64))
    }
}

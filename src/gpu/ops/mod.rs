//! One file per WGSL op family: its uniform struct (beside the code that fills
//! it), its pipelines and its launchers, which build `Dispatch`es. A family's
//! WGSL, CPU twin and test are named at the top of its file.

pub mod conv;
pub mod input;
pub mod linear;
pub mod optim;
pub mod pool;
pub mod relu;
pub mod sgemm;
pub mod softmax_ce;
pub mod texture_copy;

use crate::gpu::dispatch::{Launcher, Uniform};
use crate::gpu::shader;

/// Where a layer's weight and bias gradients go: the flat gradient vector (laid
/// out as the parameters), written or, for a micro-batch after the first, added
/// to; and the scratch for split sums.
pub struct WeightGrads<'a> {
    pub scratch: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub accumulate: bool,
}

/// The composed WGSL module `file` (its includes resolved), compiled on the launcher's device.
fn module(launcher: &Launcher, file: &str) -> wgpu::ShaderModule {
    let src = shader::compose(file).unwrap_or_else(|e| panic!("composing {file}: {e:#}"));
    launcher.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(file),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    })
}

/// A uniform struct as tests/shaders.rs compares it with WGSL.
#[derive(Debug, Clone)]
pub struct UniformLayout {
    pub wgsl_file: &'static str,
    pub name: &'static str,
    pub size: usize,
    /// (member name, Rust scalar type, byte offset)
    pub members: Vec<(&'static str, &'static str, usize)>,
}

fn layout<U: Uniform>() -> UniformLayout {
    UniformLayout { wgsl_file: U::WGSL_FILE, name: U::WGSL_NAME, size: std::mem::size_of::<U>(), members: U::members() }
}

/// Every uniform struct of the op families.
pub fn uniform_layouts() -> Vec<UniformLayout> {
    vec![
        layout::<conv::ConvUniform>(),
        layout::<input::GatherUniform>(),
        layout::<linear::LinearUniform>(),
        layout::<optim::OptimUniform>(),
        layout::<pool::PoolUniform>(),
        layout::<relu::ReluUniform>(),
        layout::<sgemm::SgemmUniform>(),
        layout::<softmax_ce::SoftmaxUniform>(),
    ]
}

//! `gpu-cnn devices`: every adapter wgpu finds, the GEMM engine each would run, and
//! whether it can run mixed precision.

use anyhow::{bail, Result};

use gpu_cnn::gpu::context::{adapters, NO_ADAPTER_HELP};
use gpu_cnn::gpu::{BackendChoice, GemmEngine};

use super::Gemm;

pub fn run(gemm: Gemm) -> Result<()> {
    let found = adapters(BackendChoice::Auto);
    if found.is_empty() {
        bail!("{NO_ADAPTER_HELP}");
    }
    for (i, a) in found.iter().enumerate() {
        let info = a.get_info();
        let l = a.limits();
        outln!("[{i}] {} ({:?}, {:?})", info.name, info.backend, info.device_type)?;
        outln!("    driver: {} {}", info.driver, info.driver_info)?;
        outln!(
            "    storage buffers/stage {}, storage binding {} MiB, buffer {} MiB, workgroup storage {} KiB",
            l.max_storage_buffers_per_shader_stage,
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_workgroup_storage_size >> 10
        )?;
        outln!(
            "    invocations/workgroup {}, workgroup size {}x{}x{}, workgroups/dimension {}",
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_z,
            l.max_compute_workgroups_per_dimension
        )?;
        outln!("    timestamp queries: {}", a.features().contains(wgpu::Features::TIMESTAMP_QUERY))?;
        let subgroups = if a.features().contains(wgpu::Features::SUBGROUP) {
            format!("{}..{} lanes", info.subgroup_min_size, info.subgroup_max_size)
        } else {
            "none".to_string()
        };
        let available: Vec<&str> = GemmEngine::available(a).iter().map(|e| e.name()).collect();
        // The engine this adapter runs with the same --gemm / GPU_CNN_GEMM as the other commands.
        let runs = match GemmEngine::resolve(gemm, a) {
            Ok(e) if gemm.is_some() => format!("{e} (asked for)"),
            Ok(e) => format!("{e} (the best here)"),
            Err(e) => format!("none: {e}"),
        };
        outln!("    subgroups: {subgroups}; GEMM engines: {}; runs: {runs}", available.join(", "))?;
        // What --precision mixed needs (the coop engine): tensor cores as wgpu reports them.
        let shapes: Vec<String> = a
            .cooperative_matrix_properties()
            .iter()
            .map(|p| format!("{}x{}x{} {:?}->{:?}", p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type))
            .collect();
        let shapes = if shapes.is_empty() { "none".to_string() } else { shapes.join(", ") };
        let mixed = match GemmEngine::Coop.check(a) {
            Ok(()) => "yes (coop engine)".to_string(),
            Err(_) => "no".to_string(),
        };
        outln!(
            "    f16 shaders: {}; cooperative matrices: {shapes}; --precision mixed: {mixed}",
            a.features().contains(wgpu::Features::SHADER_F16)
        )?;
    }
    Ok(())
}

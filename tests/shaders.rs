//! Every WGSL file parses and validates with naga, and translates to the
//! languages of the backends this machine lacks: SPIR-V (Vulkan), MSL (Metal),
//! HLSL (DX12) and GLSL (GL), once for each value the host gives a shader's
//! override constants. This is how Metal and DX12 are checked here.

use gpu_cnn::gpu::kernels::SHADERS;
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

#[test]
fn every_shader_validates_and_translates_to_all_backends() {
    assert_eq!(SHADERS.len(), 9);
    for (name, src) in SHADERS {
        let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::default() | Capabilities::SUBGROUP)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        let entries: Vec<_> = module.entry_points.iter().map(|e| e.name.clone()).collect();
        // Op families pair forward and backward; the reference SGEMMs are one matmul.
        let least = if name.starts_with("sgemm") { 1 } else { 2 };
        assert!(entries.len() >= least, "{name}: forward and backward entry points expected, found {entries:?}");
        // Translate with every value the host gives the shader's override constants.
        let constant_sets: &[&[(&str, f64)]] = match *name {
            "conv2d_subgroup.wgsl" => &[&[("ROW_GROUPS", 2.0)], &[("ROW_GROUPS", 4.0)]],
            "sgemm_subgroup.wgsl" => &[&[("ROW_GROUPS", 4.0)]],
            _ => &[&[]],
        };
        for constants in constant_sets {
            let mut pc = naga::back::PipelineConstants::default();
            pc.extend(constants.iter().map(|&(k, v)| (k.to_string(), v)));
            let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &pc)
                .unwrap_or_else(|e| panic!("{name} {constants:?}: {e}"));
            translate(name, &module, &info);
        }
    }
}

fn translate(name: &str, module: &naga::Module, info: &naga::valid::ModuleInfo) {
    spv::write_vec(module, info, &spv::Options::default(), None).unwrap_or_else(|e| panic!("{name} -> SPIR-V: {e}"));

    let mut out = String::new();
    let (hlsl_options, hlsl_pipeline) = (hlsl::Options::default(), hlsl::PipelineOptions::default());
    let mut w = hlsl::Writer::new(&mut out, &hlsl_options, &hlsl_pipeline);
    w.write(module, info, None).unwrap_or_else(|e| panic!("{name} -> HLSL: {e}"));

    msl::write_string(module, info, &msl::Options::default(), &msl::PipelineOptions::default())
        .unwrap_or_else(|e| panic!("{name} -> MSL: {e}"));

    for ep in &module.entry_points {
        let mut out = String::new();
        let options = glsl::Options { version: glsl::Version::Desktop(430), ..Default::default() };
        let pipeline = glsl::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: ep.name.clone(),
            multiview: None,
        };
        glsl::Writer::new(&mut out, module, info, &options, &pipeline, Default::default())
            .and_then(|mut w| w.write())
            .unwrap_or_else(|e| panic!("{name}::{} -> GLSL: {e}", ep.name));
    }
}

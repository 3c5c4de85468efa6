//! The WGSL side, checked without a GPU:
//! - every module, its includes composed, parses and validates with naga and
//!   translates to the languages of the backends this machine lacks: SPIR-V
//!   (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL), once for each value the
//!   host gives its override constants (taken from the engines' specs); a module
//!   that enables f16 skips GLSL and one that enables cooperative matrices runs
//!   only where wgpu implements them (SPIR-V and MSL): the coop engine's WGSL is
//!   checked here even though no adapter of this machine can run it; SPIR-V is
//!   written with the options wgpu gives naga for a Vulkan 1.3 device (SPIR-V 1.6,
//!   only the capabilities it declares for the engine's features);
//! - every uniform struct a module binds has a Rust twin with the same member
//!   names, types and offsets, and the same size;
//! - every tile size Rust computes grids with equals the WGSL constant it mirrors.

use gpu_cnn::gpu::dispatch::FLAT_WORKGROUP_SIZE;
use gpu_cnn::gpu::engine::{Precision, COOP_SHAPE, COOP_SUBGROUP_LANES, MIXED_WORKGROUP_BYTES, SUBGROUP_LANES};
use gpu_cnn::gpu::ops::{conv, uniform_layouts};
use gpu_cnn::gpu::{shader, GemmEngine};
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn parse(file: &str) -> (naga::Module, naga::valid::ModuleInfo, String) {
    let src = shader::compose(file).unwrap();
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&src)));
    let caps = Capabilities::default()
        | Capabilities::SUBGROUP
        | Capabilities::SHADER_FLOAT16
        | Capabilities::COOPERATIVE_MATRIX;
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&src)));
    (module, info, src)
}

/// The device features and override values the host compiles `file` with: one
/// pair per pipeline variant.
fn variants(file: &str) -> Vec<(wgpu::Features, Vec<(&'static str, f64)>)> {
    let mut sets = Vec::new();
    for e in GemmEngine::ALL {
        let spec = e.spec();
        if spec.conv_module == file {
            for t in spec.tiles {
                sets.push((spec.features, t.constants.to_vec()));
                if let Some(name) = spec.unit_stride_override {
                    sets.push((spec.features, t.constants.iter().copied().chain([(name, 1.0)]).collect()));
                }
                if spec.kernel_row_products {
                    let (cols, textures) = ((conv::EXTRA_COLS, 1.0), (conv::OPERAND_TEXTURES, 1.0));
                    for names in [&[cols][..], &[textures], &[cols, textures]] {
                        sets.push((spec.features, t.constants.iter().chain(names).copied().collect()));
                    }
                }
            }
        }
        if spec.sgemm_module == file {
            sets.push((spec.features, spec.sgemm_constants.to_vec()));
        }
    }
    if sets.is_empty() {
        sets.push((wgpu::Features::empty(), Vec::new()));
    }
    sets
}

/// The SPIR-V options wgpu 30 gives naga for a Vulkan 1.3 device with `features`
/// (wgpu-hal's `vulkan/adapter.rs`, `device_from_raw`): SPIR-V 1.6 and only the
/// capabilities it declares, which naga enforces. The coop engine's module never
/// reaches a real driver on this machine, so a capability it needs that wgpu does
/// not declare would otherwise first show as a failed pipeline on a lent GPU.
fn wgpu_vulkan_options(features: wgpu::Features) -> spv::Options<'static> {
    use spv::Capability as C;
    let mut caps = vec![
        C::Shader,
        C::Matrix,
        C::Sampled1D,
        C::Image1D,
        C::ImageQuery,
        C::DerivativeControl,
        C::StorageImageExtendedFormats,
    ];
    if features.contains(wgpu::Features::SUBGROUP) {
        caps.extend([
            C::GroupNonUniform,
            C::GroupNonUniformVote,
            C::GroupNonUniformArithmetic,
            C::GroupNonUniformBallot,
            C::GroupNonUniformShuffle,
            C::GroupNonUniformShuffleRelative,
            C::GroupNonUniformQuad,
        ]);
    }
    if features.contains(wgpu::Features::SHADER_F16) {
        caps.push(C::Float16);
    }
    if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        caps.extend([C::CooperativeMatrixKHR, C::VulkanMemoryModel]);
    }
    spv::Options {
        lang_version: (1, 6),
        capabilities: Some(caps.into_iter().collect()),
        force_loop_bounding: true,
        use_storage_input_output_16: features.contains(wgpu::Features::SHADER_F16),
        ..Default::default()
    }
}

#[test]
fn every_module_validates_and_translates_to_all_backends() {
    let modules: Vec<&str> = shader::modules().collect();
    for m in [
        "conv2d_tiled.wgsl",
        "conv2d_subgroup.wgsl",
        "conv2d_coop.wgsl",
        "conv2d_coop_emulated.wgsl",
        "linear.wgsl",
        "maxpool.wgsl",
        "relu.wgsl",
    ] {
        assert!(modules.contains(&m), "{m} is not a module: {modules:?}");
    }
    for name in modules {
        let (module, info, src) = parse(name);
        let entries: Vec<_> = module.entry_points.iter().map(|e| e.name.clone()).collect();
        // Op families pair forward and backward; the reference SGEMMs are one matmul,
        // and the input gather has nothing to differentiate.
        let least = if name.starts_with("sgemm") || name == "input.wgsl" { 1 } else { 2 };
        assert!(entries.len() >= least, "{name}: forward and backward entry points expected, found {entries:?}");
        for (features, constants) in variants(name) {
            let constants = &constants[..];
            let mut pc = naga::back::PipelineConstants::default();
            pc.extend(constants.iter().map(|&(k, v)| (k.to_string(), v)));
            let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &pc)
                .unwrap_or_else(|e| panic!("{name} {constants:?}: {e}"));
            translate(name, features, &module, &info, &src);
        }
    }
}

fn translate(name: &str, features: wgpu::Features, module: &naga::Module, info: &naga::valid::ModuleInfo, src: &str) {
    let coop = src.contains("enable wgpu_cooperative_matrix;");
    let f16 = src.contains("enable f16;");
    spv::write_vec(module, info, &wgpu_vulkan_options(features), None)
        .unwrap_or_else(|e| panic!("{name} {features:?} -> SPIR-V: {e}"));
    // Metal's simdgroup matrices need MSL 2.3, which wgpu uses where the device has them.
    let msl_options = msl::Options { lang_version: if coop { (2, 3) } else { (1, 0) }, ..Default::default() };
    msl::write_string(module, info, &msl_options, &msl::PipelineOptions::default())
        .unwrap_or_else(|e| panic!("{name} -> MSL: {e}"));
    if coop {
        return;
    }

    let mut out = String::new();
    let (hlsl_options, hlsl_pipeline) = (hlsl::Options::default(), hlsl::PipelineOptions::default());
    let mut w = hlsl::Writer::new(&mut out, &hlsl_options, &hlsl_pipeline);
    w.write(module, info, None).unwrap_or_else(|e| panic!("{name} -> HLSL: {e}"));
    if f16 {
        return;
    }

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

/// (member name, type name as Rust spells it, byte offset) of struct `ty`, and its size.
fn wgsl_struct(module: &naga::Module, ty: naga::Handle<naga::Type>) -> (Vec<(String, String, usize)>, usize) {
    let naga::TypeInner::Struct { members, span } = &module.types[ty].inner else {
        panic!("not a struct: {:?}", module.types[ty]);
    };
    let fields = members
        .iter()
        .map(|m| {
            let kind = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Uint, width: 4 }) => "u32",
                naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Float, width: 4 }) => "f32",
                naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Sint, width: 4 }) => "i32",
                ref other => panic!("uniform member {:?} has type {other:?}", m.name),
            };
            (m.name.clone().unwrap(), kind.to_string(), m.offset as usize)
        })
        .collect();
    (fields, *span as usize)
}

#[test]
fn every_uniform_matches_its_rust_twin() {
    let layouts = uniform_layouts();
    let mut bound = Vec::new();
    for name in shader::modules() {
        let (module, _, _) = parse(name);
        for (_, var) in module.global_variables.iter() {
            if var.space != naga::AddressSpace::Uniform {
                continue;
            }
            // conv2d_common.wgsl binds its uniform as a one-element array (`load_uniform`).
            let ty = match module.types[var.ty].inner {
                naga::TypeInner::Array { base, size: naga::ArraySize::Constant(n), .. } if n.get() == 1 => base,
                _ => var.ty,
            };
            let wgsl_name = module.types[ty].name.clone().unwrap();
            let twin = layouts
                .iter()
                .find(|l| l.name == wgsl_name)
                .unwrap_or_else(|| panic!("{name}: uniform struct {wgsl_name} has no Rust twin in gpu::ops"));
            let (fields, size) = wgsl_struct(&module, ty);
            let rust: Vec<(String, String, usize)> =
                twin.members.iter().map(|&(n, t, o)| (n.to_string(), t.to_string(), o)).collect();
            assert_eq!(rust, fields, "{name}: {wgsl_name}'s members (name, type, offset) differ from Rust's");
            assert_eq!(twin.size, size, "{name}: {wgsl_name} is {size} bytes in WGSL, {} in Rust", twin.size);
            assert!(shader::compose(twin.wgsl_file).unwrap().contains(&format!("struct {wgsl_name} ")));
            bound.push(wgsl_name);
        }
    }
    for l in &layouts {
        assert!(bound.contains(&l.name.to_string()), "{} is bound by no module", l.name);
    }
}

// The conv modules read their uniform into `U` with `load_uniform` (see
// conv2d_common.wgsl for why); an entry point that skipped it would see U as zeros.
#[test]
fn every_conv_entry_point_loads_its_uniform_first() {
    let mut checked = 0;
    for name in shader::modules() {
        let (module, _, _) = parse(name);
        if !name.starts_with("conv2d_") || module.entry_points.is_empty() {
            continue;
        }
        let (load, _) = module
            .functions
            .iter()
            .find(|(_, f)| f.name.as_deref() == Some("load_uniform"))
            .unwrap_or_else(|| panic!("{name}: a conv module without load_uniform"));
        for ep in &module.entry_points {
            let first_call = ep.function.body.iter().find_map(|st| match st {
                naga::Statement::Call { function, .. } => Some(*function),
                _ => None,
            });
            assert_eq!(first_call, Some(load), "{name}: entry point {} does not call load_uniform first", ep.name);
            checked += 1;
        }
    }
    // 19 when this was written (tiled 4, subgroup 5, direct 2, coop and coop-emulated
    // 4 each): a lower count means modules went unread.
    assert!(checked >= 19, "only {checked} conv entry points found");
}

/// The value of `const name` in the composed `file`, or of the override `name`
/// as the pipeline constants `overrides` set it.
fn u32_const(file: &str, name: &str) -> u32 {
    let (module, _, _) = parse(file);
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{file}: no const {name}"));
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => v,
        ref e => panic!("{file}: const {name} is {e:?}"),
    }
}

fn override_value(constants: &[(&str, f64)], name: &str) -> u32 {
    constants.iter().find(|(k, _)| *k == name).unwrap_or_else(|| panic!("{name} is not set")).1 as u32
}

#[test]
fn tile_sizes_agree_between_rust_and_wgsl() {
    assert_eq!(u32_const("relu.wgsl", "FLAT_WORKGROUP_SIZE") as u64, FLAT_WORKGROUP_SIZE);
    assert_eq!(u32_const("conv2d_direct.wgsl", "WG") as u64, conv::DIRECT_PIXELS);
    assert_eq!(u32_const("conv2d_direct.wgsl", "OCG") as u64, conv::DIRECT_CHANNELS);
    let rows = "conv2d_subgroup.wgsl"; // with conv2d_subgroup_rows.wgsl
    assert_eq!(u32_const(rows, "ROW_K") as usize, conv::ROW_KERNEL);
    assert_eq!(u32_const(rows, "ROW_PIXELS") as usize, conv::ROW_PIXELS);

    let tiled = GemmEngine::Tiled.spec();
    let file = tiled.conv_module;
    assert!(tiled.tiles.len() >= 2, "a narrow and a wide tile");
    for t in tiled.tiles {
        assert_eq!(override_value(t.constants, "BM") as u64, t.pixels, "{file}: BM is the pixel side");
        assert_eq!(override_value(t.constants, "BN") as u64, t.channels, "{file}: BN is the channel side");
        // Each thread owns an 8x4 block and loads one fixed tile row (conv2d_tiled.wgsl).
        let threads = (t.channels / 4) * (t.pixels / 8);
        assert!(threads <= 256 && threads % t.pixels == 0 && threads % t.channels == 0, "{file}: {t:?}");
    }
    assert_eq!(u32_const(file, "BK") as u64, tiled.reduction_step, "{file}: BK");
    let s = tiled.sgemm_module;
    assert_eq!(
        tiled.sgemm_tile,
        [u32_const(s, "TILE"), u32_const(s, "TILE"), u32_const(s, "STEP")].map(|v| v as usize)
    );

    let sub = GemmEngine::Subgroup.spec();
    let file = sub.conv_module;
    assert_eq!(u32_const(file, "LANES"), SUBGROUP_LANES);
    // A workgroup is one subgroup of that many lanes in every entry point that takes
    // its lane; the others are flat (one thread an element).
    for m in [sub.conv_module, sub.sgemm_module] {
        for ep in &parse(m).0.entry_points {
            let lane = naga::Binding::BuiltIn(naga::BuiltIn::SubgroupInvocationId);
            let by_lane = ep.function.arguments.iter().any(|a| a.binding.as_ref() == Some(&lane));
            let want = if by_lane { SUBGROUP_LANES } else { FLAT_WORKGROUP_SIZE as u32 };
            assert_eq!(ep.workgroup_size, [want, 1, 1], "{m}: {}", ep.name);
        }
    }
    assert_eq!(u32_const(file, "STEPS") as u64, sub.reduction_step);
    // The kernel-row weight gradient: two kernel rows a lane.
    let per_tile = u32_const(file, "TILE_COLS") as usize / conv::KERNEL_ROW_COLUMNS;
    assert_eq!(per_tile, 2 * SUBGROUP_LANES as usize, "{file}: kernel rows a weight_rows tile");
    for t in sub.tiles {
        assert_eq!(t.pixels, u32_const(file, "TILE_COLS") as u64, "{file}: {t:?}");
        assert_eq!(t.channels, (override_value(t.constants, "ROW_GROUPS") * SUBGROUP_LANES) as u64, "{file}: {t:?}");
    }
    let s = sub.sgemm_module;
    let rows = override_value(sub.sgemm_constants, "ROW_GROUPS") * SUBGROUP_LANES;
    assert_eq!(sub.sgemm_tile, [rows, u32_const(s, "TILE_COLS"), u32_const(s, "STEPS")].map(|v| v as usize));

    for e in GemmEngine::ALL.into_iter().filter(|e| e.precision() == Precision::Mixed) {
        let spec = e.spec();
        let file = spec.conv_module;
        let threads = u32_const(file, "THREADS") as u64;
        let frag = u32_const(file, "FRAG") as u64;
        assert_eq!(u32_const(file, "BK") as u64, spec.reduction_step, "{file}: BK");
        let shape = [COOP_SHAPE.m_size, COOP_SHAPE.n_size, COOP_SHAPE.k_size].map(u64::from);
        assert_eq!(shape, [frag; 3], "{file}: FRAG against engine::COOP_SHAPE");
        let mut widest = 0;
        for t in spec.tiles {
            assert_eq!(override_value(t.constants, "BM") as u64, t.pixels, "{file}: BM is the pixel side");
            assert_eq!(override_value(t.constants, "BN") as u64, t.channels, "{file}: BN is the channel side");
            // Each thread stages one fixed A row and B column (conv2d_mixed.wgsl), and
            // 4 or 8 subgroups own 1, 2 or 4 fragments each (conv2d_coop.wgsl).
            assert!(threads.is_multiple_of(t.pixels) && threads.is_multiple_of(t.channels), "{file}: {t:?}");
            assert!(t.pixels.is_multiple_of(frag) && t.channels.is_multiple_of(frag), "{file}: {t:?}");
            let frags = (t.pixels / frag) * (t.channels / frag);
            assert!(frags == 8 || frags == 16, "{file}: {t:?} has {frags} fragments");
            assert!(frags <= u32_const("conv2d_coop_emulated.wgsl", "OWNED") as u64 * threads / (frag * frag));
            // Tensor cores: at either end of the subgroup sizes the engine accepts, the
            // workgroup's subgroups share the fragments evenly, at most 4 each (acc0..3).
            for lanes in [*COOP_SUBGROUP_LANES.start(), *COOP_SUBGROUP_LANES.end()] {
                let subgroups = threads / lanes as u64;
                assert!(frags.is_multiple_of(subgroups) && frags / subgroups <= 4, "{t:?} on {lanes}-lane subgroups");
            }
            widest = widest.max(t.pixels * t.channels);
        }
        let bk = spec.reduction_step;
        let bytes = widest * 4 + bk * (spec.tiles.iter().map(|t| t.pixels + t.channels).max().unwrap()) * 2;
        assert_eq!(bytes, MIXED_WORKGROUP_BYTES as u64, "{file}: the workgroup memory the engine checks for");
    }
}

//! The GEMM engines: the ways this project computes a matrix product on a GPU, as
//! data. An engine decides the kernels of the convolutions, of Linear layers at
//! large batches, and of the reference SGEMM `gpu-cnn bench` compares them with,
//! and the precision the convolutions compute in. Which one runs is an explicit
//! choice: `GemmEngine::best` for an adapter (always f32) unless the caller asks
//! for another (the CLI reads `--gemm` and `--precision`).

use anyhow::{bail, Result};

/// Which GEMM engine a `Kernels` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmEngine {
    /// Shared-memory tiles, 64 threads a workgroup; runs everywhere.
    Tiled,
    /// One 8-lane subgroup a workgroup, operands shared by `subgroupBroadcast`
    /// instead of workgroup memory; needs subgroups of exactly 8 lanes (llvmpipe
    /// on AVX2), where it is several times faster than the tiled engine.
    Subgroup,
    /// Mixed precision on tensor cores: the tiled engine's tiles with f16 operands
    /// multiplied by cooperative matrices into f32 sums; needs an adapter that
    /// reports 16x16x16 f16 -> f32 cooperative matrices.
    Coop,
    /// The coop engine's arithmetic without tensor cores (any adapter with f16
    /// shaders and subgroups): for checking mixed precision, not for speed.
    CoopEmulated,
}

/// What an engine's convolutions compute in. Everything else (Linear below the
/// engine's batch threshold, element-wise ops, the optimizer, every tensor in
/// memory) is f32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 operands and sums: matches the CPU reference to f32 rounding.
    F32,
    /// f16 operands, f32 sums, gradients scaled by a power of two while in f16
    /// (shaders/conv2d_mixed.wgsl).
    Mixed,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Mixed => "mixed",
        }
    }
}

/// The cooperative-matrix shape the coop engine's shaders use (conv2d_coop.wgsl).
pub const COOP_SHAPE: wgpu::CooperativeMatrixProperties = wgpu::CooperativeMatrixProperties {
    m_size: 16,
    n_size: 16,
    k_size: 16,
    ab_type: wgpu::CooperativeScalarType::F16,
    cr_type: wgpu::CooperativeScalarType::F32,
    saturating_accumulation: false,
};

/// Subgroup sizes the coop engine runs with: its 256-invocation workgroups must make
/// 4 or 8 subgroups, so each owns the same number of a tile's 8 or 16 fragments.
pub const COOP_SUBGROUP_LANES: std::ops::RangeInclusive<u32> = 32..=64;

/// Workgroup memory of the mixed-precision engines' widest tile (conv2d_mixed.wgsl:
/// f16 As and Bs of 16 reduction steps, the f32 tile Cs): 64x64.
pub const MIXED_WORKGROUP_BYTES: u32 = 16 * 64 * 2 + 16 * 64 * 2 + 64 * 64 * 4;

/// One tile configuration of an engine's convolution GEMM (one pipeline each).
/// Both engines lay the long pixel (or kernel-tap) side of a product along the
/// folded x/y grid and the short channel side along z.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileConfig {
    /// Channels (rows of W) one tile covers.
    pub channels: u64,
    /// Pixels, or kernel taps, one tile covers.
    pub pixels: u64,
    /// The pipeline override constants that select this configuration.
    pub constants: &'static [(&'static str, f64)],
}

/// Everything that differs between the engines.
#[derive(Debug, PartialEq)]
pub struct EngineSpec {
    pub name: &'static str,
    /// The WGSL modules of its convolution GEMM and its reference SGEMM.
    pub conv_module: &'static str,
    pub sgemm_module: &'static str,
    /// Device features the engine needs.
    pub features: wgpu::Features,
    /// What its convolutions compute in.
    pub precision: Precision,
    /// Tile configurations, narrowest first: a GEMM takes the first that covers
    /// its channels, else the widest (see `GemmEngine::tile_for`).
    pub tiles: &'static [TileConfig],
    /// How many of `tiles` (the narrowest) a CPU driver uses: a tile a CPU does not
    /// run faster costs llvmpipe its compile at the first dispatch all the same.
    pub cpu_tiles: usize,
    /// Whether a forward or input-gradient GEMM whose grid would be too small for the
    /// device with its tile steps down to a narrower one (`tile_for`).
    pub narrower_for_small_grids: bool,
    /// A boolean override that compiles the input gradient for stride 1 alone, where
    /// the engine has one: each tile configuration then has a second such pipeline.
    pub unit_stride_override: Option<&'static str>,
    /// Reduction steps per tile update: a weight-gradient split is a multiple of it.
    pub reduction_step: u64,
    /// The reference SGEMM's tile (rows, columns, reduction step) and pipeline constants.
    pub sgemm_tile: [usize; 3],
    pub sgemm_constants: &'static [(&'static str, f64)],
    /// Workgroups a weight-gradient GEMM aims for on a CPU driver, which runs
    /// one workgroup per core thread: fewer, longer splits write fewer partial sums.
    pub cpu_split_target: u64,
    /// The smallest batch whose Linear layers run on the convolution GEMM as a
    /// 1x1 convolution (`LinearDims::as_conv`); None: never.
    pub linear_on_conv_from_batch: Option<usize>,
    /// Whether a forward with a short reduction (C*K*K at most
    /// `ops::conv::DIRECT_MAX_REDUCTION`: conv1) runs conv2d_direct.wgsl instead
    /// of the engine's GEMM.
    pub direct_short_forwards: bool,
    /// Whether stride-1 convolutions with `ops::conv::ROW_KERNEL` taps a side run
    /// their forward and input gradient kernel row by kernel row
    /// (conv2d_subgroup_rows.wgsl), on pixel columns padded to whole rows of 4.
    pub kernel_row_products: bool,
}

/// Workgroups a weight-gradient GEMM aims for on a GPU, which wants many.
pub const GPU_SPLIT_TARGET: u64 = 1024;

/// Workgroups a forward or input-gradient GEMM keeps before a wide tile is worth it:
/// about two per compute unit of a large GPU (an H200 has 132), and on a CPU driver
/// enough for every core thread of a workstation.
const GPU_MIN_GROUPS: u64 = 256;
const CPU_MIN_GROUPS: u64 = 64;

/// The subgroup size the subgroup engine is written for (`LANES` in subgroup_tile.wgsl).
pub const SUBGROUP_LANES: u32 = 8;

const TILED: EngineSpec = EngineSpec {
    name: "tiled",
    conv_module: "conv2d_tiled.wgsl",
    sgemm_module: "sgemm_tiled.wgsl",
    features: wgpu::Features::empty(),
    precision: Precision::F32,
    // BN x BM of conv2d_tiled.wgsl: 64 threads, and 256 for wide products, where each
    // loaded value feeds twice the FMAs.
    tiles: &[
        TileConfig { channels: 32, pixels: 64, constants: &[("BN", 32.0), ("BM", 64.0)] },
        TileConfig { channels: 64, pixels: 128, constants: &[("BN", 64.0), ("BM", 128.0)] },
    ],
    // The wide tile is for GPUs: on GL/llvmpipe conv3's weight gradient, the one
    // product that takes it at batch 64, ran no faster on it, and its compile was
    // 6.9 of the 20 s of a cold start (docs/performance.md, "Tile configurations").
    cpu_tiles: 1,
    narrower_for_small_grids: true,
    unit_stride_override: None,
    reduction_step: 16,
    sgemm_tile: [64, 64, 16],
    sgemm_constants: &[],
    cpu_split_target: 256,
    // The tiled GEMM would run Linear's whole reduction in one workgroup.
    linear_on_conv_from_batch: None,
    // conv1's forward on lavapipe: 88-105 ms as a tiled GEMM, 53-68 direct.
    direct_short_forwards: true,
    kernel_row_products: false,
};

const SUBGROUP: EngineSpec = EngineSpec {
    name: "subgroup",
    conv_module: "conv2d_subgroup.wgsl",
    sgemm_module: "sgemm_subgroup.wgsl",
    features: wgpu::Features::SUBGROUP,
    precision: Precision::F32,
    // ROW_GROUPS row groups of LANES channels, by TILE_COLS pixels (subgroup_tile.wgsl).
    tiles: &[
        TileConfig { channels: 16, pixels: 64, constants: &[("ROW_GROUPS", 2.0)] },
        TileConfig { channels: 32, pixels: 64, constants: &[("ROW_GROUPS", 4.0)] },
    ],
    cpu_tiles: 2,
    // One subgroup a workgroup: its tiles are small already.
    narrower_for_small_grids: false,
    unit_stride_override: Some("UNIT_STRIDE"),
    reduction_step: 4,
    sgemm_tile: [32, 64, 4],
    sgemm_constants: &[("ROW_GROUPS", 4.0)],
    cpu_split_target: 64,
    // From about a quarter of a 64-column tile the register tile beats linear.wgsl's
    // one reduction per output; at batch 1 one tile would walk the whole reduction alone.
    linear_on_conv_from_batch: Some(16),
    // conv1's forward on lavapipe: 8.5-10.2 ms on this engine, 42-45 direct (its
    // weight loads are per lane there; this engine broadcasts them).
    direct_short_forwards: false,
    // conv2.2: forward 33 -> 23 ms, input gradient 37 -> 27 ms on lavapipe (docs/performance.md).
    kernel_row_products: true,
};

/// BN x BM of conv2d_mixed.wgsl: 8 or 16 fragments of 16x16 over 256 invocations.
const MIXED_TILES: &[TileConfig] = &[
    TileConfig { channels: 32, pixels: 64, constants: &[("BN", 32.0), ("BM", 64.0)] },
    TileConfig { channels: 64, pixels: 64, constants: &[("BN", 64.0), ("BM", 64.0)] },
];

// The tiled engine's tiling (its split targets, Linear off the GEMM, conv1 direct)
// with f16 fragments multiplied on tensor cores. Its reference SGEMM stays the f32
// tiled one: `bench` compares the convolutions with what the GPU does without them.
const COOP: EngineSpec = EngineSpec {
    name: "coop",
    conv_module: "conv2d_coop.wgsl",
    features: wgpu::Features::SHADER_F16
        .union(wgpu::Features::SUBGROUP)
        .union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
    precision: Precision::Mixed,
    tiles: MIXED_TILES,
    // coop-emulated checks the coop engine's arithmetic on lavapipe: both its tiles.
    cpu_tiles: MIXED_TILES.len(),
    ..TILED
};

const COOP_EMULATED: EngineSpec = EngineSpec {
    name: "coop-emulated",
    conv_module: "conv2d_coop_emulated.wgsl",
    features: wgpu::Features::SHADER_F16.union(wgpu::Features::SUBGROUP),
    ..COOP
};

impl GemmEngine {
    pub const ALL: [GemmEngine; 4] =
        [GemmEngine::Tiled, GemmEngine::Subgroup, GemmEngine::Coop, GemmEngine::CoopEmulated];

    pub fn spec(self) -> &'static EngineSpec {
        match self {
            GemmEngine::Tiled => &TILED,
            GemmEngine::Subgroup => &SUBGROUP,
            GemmEngine::Coop => &COOP,
            GemmEngine::CoopEmulated => &COOP_EMULATED,
        }
    }

    pub fn precision(self) -> Precision {
        self.spec().precision
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// `tiled`, `subgroup`, `coop` or `coop-emulated`.
    pub fn parse(s: &str) -> Result<GemmEngine> {
        match GemmEngine::ALL.into_iter().find(|e| e.name() == s) {
            Some(e) => Ok(e),
            None => bail!("unknown GEMM engine '{s}': expected tiled, subgroup, coop or coop-emulated"),
        }
    }

    /// Whether `adapter` can run this engine, or why not.
    pub fn check(self, adapter: &wgpu::Adapter) -> Result<()> {
        let info = adapter.get_info();
        let here = format!("{} ({:?})", info.name, info.backend);
        let missing = self.spec().features - adapter.features();
        if self == GemmEngine::Coop
            && (missing.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
                || !adapter.cooperative_matrix_properties().contains(&COOP_SHAPE))
        {
            bail!(
                "the coop GEMM engine (--precision mixed) needs tensor cores: cooperative matrices with \
                 16x16x16 f16 inputs and f32 sums, which {here} does not report. Use --precision f32 (the \
                 default), or --gemm coop-emulated for the same arithmetic without tensor cores (slow)"
            );
        }
        let names = [
            (wgpu::Features::SUBGROUP, "subgroups"),
            (wgpu::Features::SHADER_F16, "f16 in shaders"),
            (wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX, "cooperative matrices"),
        ];
        let lacks: Vec<&str> = names.iter().filter(|(f, _)| missing.contains(*f)).map(|(_, n)| *n).collect();
        if !lacks.is_empty() {
            bail!("the {} GEMM engine needs {}; {here} has none", self.name(), lacks.join(" and "));
        }
        let lanes = info.subgroup_min_size..=info.subgroup_max_size;
        match self {
            GemmEngine::Subgroup if lanes != (SUBGROUP_LANES..=SUBGROUP_LANES) => bail!(
                "the subgroup GEMM engine needs subgroups of exactly {SUBGROUP_LANES} lanes; {here} has {}..{}",
                lanes.start(),
                lanes.end()
            ),
            GemmEngine::Coop
                if !COOP_SUBGROUP_LANES.contains(lanes.start()) || !COOP_SUBGROUP_LANES.contains(lanes.end()) =>
            {
                bail!(
                    "the coop GEMM engine needs subgroups of {} to {} lanes; {here} has {}..{}",
                    COOP_SUBGROUP_LANES.start(),
                    COOP_SUBGROUP_LANES.end(),
                    lanes.start(),
                    lanes.end()
                )
            }
            GemmEngine::Coop | GemmEngine::CoopEmulated
                if adapter.limits().max_compute_workgroup_storage_size < MIXED_WORKGROUP_BYTES =>
            {
                bail!(
                    "the {} GEMM engine needs {MIXED_WORKGROUP_BYTES} bytes of workgroup memory; {here} has {}",
                    self.name(),
                    adapter.limits().max_compute_workgroup_storage_size
                )
            }
            _ => Ok(()),
        }
    }

    /// Every engine `adapter` can run.
    pub fn available(adapter: &wgpu::Adapter) -> Vec<GemmEngine> {
        GemmEngine::ALL.into_iter().filter(|e| e.check(adapter).is_ok()).collect()
    }

    /// The fastest f32 engine `adapter` can run: subgroup where its subgroups are
    /// exactly 8 lanes (measured: lavapipe 54 -> 355 samples/s), tiled elsewhere.
    pub fn best(adapter: &wgpu::Adapter) -> GemmEngine {
        if GemmEngine::Subgroup.check(adapter).is_ok() {
            GemmEngine::Subgroup
        } else {
            GemmEngine::Tiled
        }
    }

    /// `wanted`, if `adapter` can run it, else `best`.
    pub fn resolve(wanted: Option<GemmEngine>, adapter: &wgpu::Adapter) -> Result<GemmEngine> {
        match wanted {
            None => Ok(GemmEngine::best(adapter)),
            Some(e) => e.check(adapter).map(|_| e),
        }
    }

    /// The tile configuration for a product of `pixels` by `channels` (its long and
    /// short sides): the narrowest tile that covers the channels, else the widest;
    /// where the engine allows, a narrower one while the chosen tile's grid would
    /// have fewer than `min_groups` workgroups (a grid too small to fill the device).
    /// `min_groups` 0 keeps the choice by channels alone (a weight-gradient GEMM,
    /// whose grid its reduction splits fill). Only the first `usable` tiles are
    /// chosen (`usable_tiles`).
    pub fn tile_for(self, pixels: u64, channels: u64, min_groups: u64, usable: usize) -> (usize, &'static TileConfig) {
        let spec = self.spec();
        let tiles = &spec.tiles[..usable.clamp(1, spec.tiles.len())];
        let mut i = tiles.iter().position(|t| t.channels >= channels).unwrap_or(tiles.len() - 1);
        let groups = |t: &TileConfig| pixels.div_ceil(t.pixels) * channels.div_ceil(t.channels);
        while spec.narrower_for_small_grids && i > 0 && groups(&tiles[i]) < min_groups {
            i -= 1;
        }
        (i, &tiles[i])
    }

    /// How many of the tiles (the narrowest) an adapter of `device_type` uses.
    pub fn usable_tiles(self, device_type: wgpu::DeviceType) -> usize {
        match device_type {
            wgpu::DeviceType::Cpu => self.spec().cpu_tiles,
            _ => self.spec().tiles.len(),
        }
    }

    /// Workgroups a forward or input-gradient GEMM needs before it takes a wide tile
    /// (a GPU wants a few per compute unit; a CPU driver runs one per core thread).
    pub fn min_groups(self, device_type: wgpu::DeviceType) -> u64 {
        match device_type {
            wgpu::DeviceType::Cpu => CPU_MIN_GROUPS,
            _ => GPU_MIN_GROUPS,
        }
    }

    /// Workgroups a weight-gradient GEMM aims for on an adapter of `device_type`.
    pub fn split_target(self, device_type: wgpu::DeviceType) -> u64 {
        match device_type {
            wgpu::DeviceType::Cpu => self.spec().cpu_split_target,
            _ => GPU_SPLIT_TARGET,
        }
    }

    /// Whether the kernel-row products load their operands (the weights, and the
    /// windows of activations or gradients) from texture copies (`ops::texture_copy`)
    /// rather than from their buffers: on a CPU driver running on an AMD CPU. There a
    /// per-lane storage load stalls on llvmpipe (each lane's value goes through
    /// memory, and the load waits for the stores): 4.3 ns against a texel fetch's
    /// 1.9 ns on a Zen 3 EPYC. On the Intel machine of the earlier figures the texel
    /// fetch was the slower (1.1 ns against 0.86), so there the buffers stay
    /// (docs/performance.md, "Operands through textures").
    pub fn operands_in_textures(self, device_type: wgpu::DeviceType) -> bool {
        self.spec().kernel_row_products && device_type == wgpu::DeviceType::Cpu && amd_cpu()
    }
}

/// Whether this process runs on an AMD x86 CPU (a CPU driver's, too).
fn amd_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID leaf 0: the vendor in ebx, edx, ecx. Every x86_64 CPU has it.
        #[allow(unused_unsafe)]
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        let vendor: Vec<u8> = [r.ebx, r.edx, r.ecx].iter().flat_map(|w| w.to_le_bytes()).collect();
        vendor == b"AuthenticAMD"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

impl std::fmt::Display for GemmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_TILES: usize = usize::MAX;

    #[test]
    fn names_parse_back_and_tiles_cover_channels() {
        for e in GemmEngine::ALL {
            assert_eq!(GemmEngine::parse(e.name()).unwrap(), e);
            let widest = e.spec().tiles.last().unwrap();
            assert_eq!(
                e.tile_for(1_000_000, 1_000_000, 0, ALL_TILES).1,
                widest,
                "{e}: wide products take the widest tile"
            );
            assert!(e.spec().tiles.windows(2).all(|w| w[0].channels < w[1].channels), "{e}: narrowest first");
        }
        assert!(GemmEngine::parse("auto").is_err());
        assert_eq!(GemmEngine::Subgroup.tile_for(1 << 20, 16, 0, ALL_TILES).0, 0);
        assert_eq!(GemmEngine::Subgroup.tile_for(1 << 20, 17, 0, ALL_TILES).0, 1);
        assert_eq!(GemmEngine::Subgroup.tile_for(64, 32, 256, ALL_TILES).0, 1, "the subgroup engine keeps its tile");
    }

    #[test]
    fn the_tiled_engine_takes_its_wide_tile_only_for_wide_products_on_large_grids() {
        let t = GemmEngine::Tiled;
        // The tutorial model's conv3 (64 channels of 7x7) at batch 64 and 1024.
        assert_eq!(t.tile_for(64 * 49, 64, 256, ALL_TILES).1.channels, 32, "25 wide tiles cannot fill a GPU");
        assert_eq!(t.tile_for(1024 * 49, 64, 256, ALL_TILES).1.channels, 64, "392 wide tiles can");
        assert_eq!(t.tile_for(1024 * 196, 32, 256, ALL_TILES).1.channels, 32, "32 channels fit the narrow tile");
        assert_eq!(t.tile_for(801, 64, 0, ALL_TILES).1.channels, 64, "weight gradients: by channels alone");
        assert_eq!(t.tile_for(10, 1000, 1 << 30, ALL_TILES).0, 0, "the narrowest is the floor");
        let cpu = t.usable_tiles(wgpu::DeviceType::Cpu);
        assert_eq!(t.tile_for(801, 64, 0, cpu).1.channels, 32, "a CPU driver keeps to the narrow tile");
        assert_eq!(t.usable_tiles(wgpu::DeviceType::DiscreteGpu), 2);
        assert_eq!(GemmEngine::Subgroup.usable_tiles(wgpu::DeviceType::Cpu), 2);
        assert_eq!(GemmEngine::CoopEmulated.usable_tiles(wgpu::DeviceType::Cpu), 2);
    }
}

//! One compute pipeline per WGSL entry point, compiled once per device, and the
//! builders that bind buffers to them. A `Dispatch` is built once (uniforms,
//! bind group, workgroup counts) and then only recorded, step after step.

use bytemuck::{Pod, Zeroable};
use std::sync::OnceLock;
use wgpu::util::DeviceExt;

use crate::dims::{ConvDims, LinearDims, PoolDims};
use crate::executor::Optimizer;

/// The WGSL sources, one file per op family (also validated by naga in tests).
pub const SHADERS: &[(&str, &str)] = &[
    // Both conv engines start with the shared part (uniform, bindings, reductions);
    // the subgroup one also with the register tile it shares with its SGEMM.
    (
        "conv2d.wgsl",
        concat!(
            include_str!("../../shaders/fdiv.wgsl"),
            include_str!("../../shaders/conv2d_common.wgsl"),
            include_str!("../../shaders/conv2d.wgsl")
        ),
    ),
    (
        "conv2d_subgroup.wgsl",
        concat!(
            include_str!("../../shaders/fdiv.wgsl"),
            include_str!("../../shaders/conv2d_common.wgsl"),
            include_str!("../../shaders/rank8.wgsl"),
            include_str!("../../shaders/conv2d_subgroup.wgsl")
        ),
    ),
    ("relu.wgsl", include_str!("../../shaders/relu.wgsl")),
    ("maxpool.wgsl", concat!(include_str!("../../shaders/fdiv.wgsl"), include_str!("../../shaders/maxpool.wgsl"))),
    ("linear.wgsl", include_str!("../../shaders/linear.wgsl")),
    ("softmax_ce.wgsl", include_str!("../../shaders/softmax_ce.wgsl")),
    ("optim.wgsl", include_str!("../../shaders/optim.wgsl")),
    // The reference matmuls of `gpu-cnn bench`, one per conv engine.
    ("sgemm.wgsl", concat!(include_str!("../../shaders/sgemm_common.wgsl"), include_str!("../../shaders/sgemm.wgsl"))),
    (
        "sgemm_subgroup.wgsl",
        concat!(
            include_str!("../../shaders/sgemm_common.wgsl"),
            include_str!("../../shaders/rank8.wgsl"),
            include_str!("../../shaders/sgemm_subgroup.wgsl")
        ),
    ),
];

// Tile sizes of conv2d.wgsl's GEMM; they must match its constants.
const CONV_BM: u64 = 64;
const CONV_BN: u64 = 32;
const CONV_BK: u64 = 16;
// conv2d_subgroup.wgsl: columns per tile, and rows per 8-lane row group.
const SG_COLS: u64 = 64;
const SG_GROUP_ROWS: u64 = 8;
/// The subgroup size conv2d_subgroup.wgsl is written for.
pub const SG_LANES: u32 = 8;

/// Which GEMM engine runs the convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvEngine {
    /// conv2d.wgsl: shared-memory tiles of 64x32, 64 threads a workgroup; runs everywhere.
    Tiled,
    /// conv2d_subgroup.wgsl: one 8-lane subgroup a workgroup, operands shared by
    /// `subgroupBroadcast` instead of workgroup memory; needs subgroups of exactly 8
    /// (llvmpipe on AVX2), where it is several times faster.
    Subgroup,
}

impl ConvEngine {
    pub fn name(self) -> &'static str {
        match self {
            ConvEngine::Tiled => "tiled",
            ConvEngine::Subgroup => "subgroup",
        }
    }

    /// The fastest engine the adapter can run.
    pub fn best(adapter: &wgpu::Adapter) -> ConvEngine {
        let info = adapter.get_info();
        let can_subgroup = adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == SG_LANES
            && info.subgroup_max_size == SG_LANES;
        if can_subgroup {
            ConvEngine::Subgroup
        } else {
            ConvEngine::Tiled
        }
    }

    /// `best`, unless the environment variable `GPU_CNN_CONV` (`tiled` or `subgroup`)
    /// says otherwise: for comparing the engines on one adapter.
    pub fn choose(adapter: &wgpu::Adapter) -> anyhow::Result<ConvEngine> {
        let info = adapter.get_info();
        let best = Self::best(adapter);
        match std::env::var("GPU_CNN_CONV").ok().as_deref() {
            None | Some("") | Some("auto") => Ok(best),
            Some("tiled") => Ok(ConvEngine::Tiled),
            Some("subgroup") if best == ConvEngine::Subgroup => Ok(ConvEngine::Subgroup),
            Some("subgroup") => anyhow::bail!(
                "GPU_CNN_CONV=subgroup needs subgroups of exactly {SG_LANES} lanes; {} ({:?}) has {}",
                info.name,
                info.backend,
                if adapter.features().contains(wgpu::Features::SUBGROUP) {
                    format!("{}..{}", info.subgroup_min_size, info.subgroup_max_size)
                } else {
                    "none".to_string()
                }
            ),
            Some(other) => anyhow::bail!("GPU_CNN_CONV={other}: expected auto, tiled or subgroup"),
        }
    }

    /// Device features the engine needs.
    pub fn features(self) -> wgpu::Features {
        match self {
            ConvEngine::Tiled => wgpu::Features::empty(),
            ConvEngine::Subgroup => wgpu::Features::SUBGROUP,
        }
    }
}

/// The three GEMM entry points of one engine (forward, backward_input, backward_weight).
struct ConvGemms {
    forward: wgpu::ComputePipeline,
    backward_input: wgpu::ComputePipeline,
    backward_weight: wgpu::ComputePipeline,
}

enum ConvPipelines {
    Tiled(ConvGemms),
    /// Built twice: 16-row tiles for 16-channel GEMMs, 32-row tiles for wider ones.
    Subgroup {
        narrow: ConvGemms,
        wide: ConvGemms,
    },
}

/// The reference SGEMM's tile: rows, columns, reduction step (M, N, K must be multiples).
pub fn sgemm_tile(engine: ConvEngine) -> [usize; 3] {
    match engine {
        ConvEngine::Tiled => [64, 64, 16],
        ConvEngine::Subgroup => [32, 64, 4],
    }
}

#[derive(Clone, Copy)]
enum ConvOp {
    Forward,
    BackwardInput,
    BackwardWeight,
}

/// How one conv GEMM is laid out on the grid.
struct GemmShape<'a> {
    pipeline: &'a wgpu::ComputePipeline,
    /// Tiles along the dimension folded over x and y.
    folded: u64,
    /// Tiles along z (before splits).
    z: u64,
}
/// The smallest batch whose Linear layers run on the subgroup conv GEMM.
pub const LINEAR_GEMM_MIN_BATCH: usize = 16;
/// Aim for this many workgroups in a conv weight-gradient GEMM, splitting its
/// reduction. A GPU wants many (on an H200, 1024 instead of 256 took batch-1024
/// training from 53.6k to 78.1k samples/s); a CPU driver runs a workgroup per core
/// thread, where fewer, longer splits write fewer partial sums (llvmpipe's tiled
/// engine: 53.2 samples/s with 256, 49.0 with 1024; its subgroup engine: 64).
fn weight_split_target(device_type: wgpu::DeviceType, engine: ConvEngine) -> u64 {
    match (device_type, engine) {
        (wgpu::DeviceType::Cpu, ConvEngine::Subgroup) => 64,
        (wgpu::DeviceType::Cpu, ConvEngine::Tiled) => 256,
        _ => 1024,
    }
}
/// Threads per workgroup of the element-wise entry points.
const FLAT: u64 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    oc: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad: u32,
    w_off: u32,
    b_off: u32,
    chunk: u32,
    splits: u32,
    relu: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PoolParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    k: u32,
    stride: u32,
    oh: u32,
    ow: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LinearParams {
    n: u32,
    inf: u32,
    outf: u32,
    w_off: u32,
    b_off: u32,
    _pad: [u32; 3],
}

/// sgemm_common.wgsl's `Dims`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SgemmParams {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

/// Element-wise ops, softmax: a length (or batch and classes) padded to 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SizeParams {
    a: u32,
    b: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct OptimParams {
    len: u32,
    _pad: [u32; 3],
    lr: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    bc2_sqrt: f32,
    _pad2: f32,
}

impl OptimParams {
    /// The uniform for update number `step` (from 1) over `len` parameters.
    pub fn new(opt: Optimizer, len: usize, step: u32) -> Self {
        let mut p = OptimParams::zeroed();
        p.len = len as u32;
        match opt {
            Optimizer::Sgd { lr, momentum } => {
                p.lr = lr;
                p.momentum = momentum;
            }
            Optimizer::Adam { lr, beta1, beta2, eps } => {
                let (step_size, bc2_sqrt) = Optimizer::adam_factors(lr, beta1, beta2, step);
                (p.lr, p.beta1, p.beta2, p.eps, p.step_size, p.bc2_sqrt) = (lr, beta1, beta2, eps, step_size, bc2_sqrt);
            }
        }
        p
    }
}

/// A recorded-many-times dispatch: pipeline, bind group (uniform at binding 0) and workgroup counts.
pub struct Dispatch {
    /// The WGSL entry point, e.g. `conv2d.forward`.
    pub name: &'static str,
    /// Useful FLOPs per execution (0 for memory-bound ops), for profiles.
    pub flops: u64,
    /// Bytes a memory-bound op must move per execution (0 for compute-bound ones).
    pub bytes: u64,
    /// The layer it belongs to, when built by the executor (e.g. `conv2.2`).
    pub layer: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    /// The uniform buffer, for dispatches whose parameters change per step (the optimizer).
    pub uniform: wgpu::Buffer,
}

impl Dispatch {
    fn moving(mut self, bytes: usize) -> Self {
        self.bytes = bytes as u64;
        self
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }

    pub fn workgroups(&self) -> [u32; 3] {
        self.groups
    }
}

pub struct Kernels {
    max_groups: u32,
    pub conv_engine: ConvEngine,
    conv: ConvPipelines,
    weight_split_target: u64,
    /// The reference SGEMM, compiled on first use: only `bench` runs it.
    sgemm: OnceLock<wgpu::ComputePipeline>,
    conv_reduce_weight: wgpu::ComputePipeline,
    relu_forward: wgpu::ComputePipeline,
    relu_backward: wgpu::ComputePipeline,
    pool_forward: wgpu::ComputePipeline,
    pool_backward: wgpu::ComputePipeline,
    linear_forward: wgpu::ComputePipeline,
    linear_backward_input: wgpu::ComputePipeline,
    linear_backward_params: wgpu::ComputePipeline,
    softmax_forward: wgpu::ComputePipeline,
    softmax_predict: wgpu::ComputePipeline,
    softmax_backward: wgpu::ComputePipeline,
    softmax_accumulate: wgpu::ComputePipeline,
    sgd: wgpu::ComputePipeline,
    adam: wgpu::ComputePipeline,
}

fn u(x: usize) -> u32 {
    u32::try_from(x).expect("a dimension exceeds u32")
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

fn shader_module(device: &wgpu::Device, name: &str) -> wgpu::ShaderModule {
    let src = SHADERS.iter().find(|(n, _)| *n == name).unwrap().1;
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    })
}

fn pipeline(
    device: &wgpu::Device,
    m: &wgpu::ShaderModule,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module: m,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
        cache: None,
    })
}

impl Kernels {
    /// Every pipeline of the model's ops, compiled once; `device` (of an adapter of
    /// `device_type`) must have `conv_engine.features()`.
    pub fn new(device: &wgpu::Device, device_type: wgpu::DeviceType, conv_engine: ConvEngine) -> Kernels {
        let module = |name: &str| shader_module(device, name);
        let pipe_with =
            |m: &wgpu::ShaderModule, entry: &str, constants: &[(&str, f64)]| pipeline(device, m, entry, constants);
        let pipe = |m: &wgpu::ShaderModule, entry: &str| pipe_with(m, entry, &[]);
        let gemms = |m: &wgpu::ShaderModule, constants: &[(&str, f64)]| ConvGemms {
            forward: pipe_with(m, "forward", constants),
            backward_input: pipe_with(m, "backward_input", constants),
            backward_weight: pipe_with(m, "backward_weight", constants),
        };
        let conv = match conv_engine {
            ConvEngine::Tiled => module("conv2d.wgsl"),
            ConvEngine::Subgroup => module("conv2d_subgroup.wgsl"),
        };
        let conv_pipelines = match conv_engine {
            ConvEngine::Tiled => ConvPipelines::Tiled(gemms(&conv, &[])),
            ConvEngine::Subgroup => ConvPipelines::Subgroup {
                narrow: gemms(&conv, &[("ROW_GROUPS", 2.0)]),
                wide: gemms(&conv, &[("ROW_GROUPS", 4.0)]),
            },
        };
        let relu = module("relu.wgsl");
        let pool = module("maxpool.wgsl");
        let linear = module("linear.wgsl");
        let sm = module("softmax_ce.wgsl");
        let optim = module("optim.wgsl");
        Kernels {
            max_groups: device.limits().max_compute_workgroups_per_dimension,
            conv_engine,
            conv: conv_pipelines,
            weight_split_target: weight_split_target(device_type, conv_engine),
            sgemm: OnceLock::new(),
            conv_reduce_weight: pipe(&conv, "reduce_weight"),
            relu_forward: pipe(&relu, "forward"),
            relu_backward: pipe(&relu, "backward"),
            pool_forward: pipe(&pool, "forward"),
            pool_backward: pipe(&pool, "backward"),
            linear_forward: pipe(&linear, "forward"),
            linear_backward_input: pipe(&linear, "backward_input"),
            linear_backward_params: pipe(&linear, "backward_params"),
            softmax_forward: pipe(&sm, "forward"),
            softmax_predict: pipe(&sm, "predict"),
            softmax_backward: pipe(&sm, "backward"),
            softmax_accumulate: pipe(&sm, "accumulate"),
            sgd: pipe(&optim, "sgd"),
            adam: pipe(&optim, "adam"),
        }
    }

    /// Fold dispatches over two dimensions past `n` workgroups instead of the device's
    /// limit: the tests use a tiny `n` to run every entry point's 2-D path on small shapes.
    pub fn set_max_workgroups_per_dim(&mut self, n: u32) {
        self.max_groups = n.clamp(1, self.max_groups);
    }

    /// Fold `groups` workgroups over x and y so neither exceeds the per-dimension limit
    /// (the shaders rebuild the flat index as x + y * num_workgroups.x and skip the excess).
    fn grid(&self, groups: u64) -> (u32, u32) {
        let max = self.max_groups as u64;
        let y = ceil_div(groups.max(1), max);
        let x = ceil_div(groups.max(1), y);
        (x as u32, y as u32)
    }

    fn flat_groups(&self, threads: usize) -> [u32; 3] {
        let (x, y) = self.grid(ceil_div(threads as u64, FLAT));
        [x, y, 1]
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        device: &wgpu::Device,
        name: &'static str,
        pipeline: &wgpu::ComputePipeline,
        uniform: &[u8],
        buffers: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
        flops: u64,
    ) -> Dispatch {
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(name),
            contents: uniform,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        entries.extend(
            buffers.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }),
        );
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch {
            name,
            flops,
            bytes: 0,
            layer: String::new(),
            pipeline: pipeline.clone(),
            bind_group,
            groups,
            uniform,
        }
    }

    fn conv_params(d: ConvDims, w_off: usize, b_off: usize) -> ConvParams {
        ConvParams {
            n: u(d.n),
            c: u(d.c),
            h: u(d.h),
            w: u(d.w),
            oc: u(d.oc),
            oh: u(d.oh()),
            ow: u(d.ow()),
            k: u(d.k),
            stride: u(d.stride),
            pad: u(d.pad),
            w_off: u(w_off),
            b_off: u(b_off),
            chunk: 0,
            splits: 1,
            relu: 0,
            _pad: 0,
        }
    }

    /// Grid layout of one conv GEMM on this engine.
    fn gemm_shape(&self, op: ConvOp, d: ConvDims) -> GemmShape<'_> {
        let kk = (d.c * d.k * d.k) as u64;
        // (rows, cols) of the product as each engine orients it.
        let (pixels, channels) = match op {
            ConvOp::Forward => ((d.n * d.oh() * d.ow()) as u64, d.oc as u64),
            ConvOp::BackwardInput => ((d.n * d.h * d.w) as u64, d.c as u64),
            // the taps, then the bias as one more (see conv2d_common.wgsl)
            ConvOp::BackwardWeight => (kk + 1, d.oc as u64),
        };
        fn pick(g: &ConvGemms, op: ConvOp) -> &wgpu::ComputePipeline {
            match op {
                ConvOp::Forward => &g.forward,
                ConvOp::BackwardInput => &g.backward_input,
                ConvOp::BackwardWeight => &g.backward_weight,
            }
        }
        match &self.conv {
            // Rows = pixels (or taps), columns = channels.
            ConvPipelines::Tiled(g) => {
                GemmShape { pipeline: pick(g, op), folded: ceil_div(pixels, CONV_BM), z: ceil_div(channels, CONV_BN) }
            }
            // Rows = channels, in groups of 8; columns = pixels (or taps).
            ConvPipelines::Subgroup { narrow, wide } => {
                let (g, row_groups) = if channels <= 2 * SG_GROUP_ROWS { (narrow, 2) } else { (wide, 4) };
                GemmShape {
                    pipeline: pick(g, op),
                    folded: ceil_div(pixels, SG_COLS),
                    z: ceil_div(channels, row_groups * SG_GROUP_ROWS),
                }
            }
        }
    }

    /// Splits of the weight-gradient reduction (N*OH*OW long): (splits, chunk).
    fn conv_weight_splits(&self, d: ConvDims) -> (u64, u64) {
        let red = (d.n * d.oh() * d.ow()) as u64;
        let shape = self.gemm_shape(ConvOp::BackwardWeight, d);
        let want = ceil_div(self.weight_split_target, shape.folded * shape.z).clamp(1, ceil_div(red, CONV_BK));
        let chunk = ceil_div(ceil_div(red, want), CONV_BK) * CONV_BK;
        (ceil_div(red, chunk), chunk)
    }

    /// Elements of the scratch buffer `conv_backward_params` needs for `d`.
    pub fn conv_partial_len(&self, d: ConvDims) -> usize {
        self.conv_weight_splits(d).0 as usize * (d.c * d.k * d.k + 1) * d.oc
    }

    /// y (N,OC,OH,OW) = conv(x (N,C,H,W), W at `w_off` of `params`) + bias at `b_off`, then ReLU if `relu`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_forward(
        &self,
        device: &wgpu::Device,
        d: ConvDims,
        w_off: usize,
        b_off: usize,
        relu: bool,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Dispatch {
        let mut p = Self::conv_params(d, w_off, b_off);
        p.relu = relu as u32;
        let shape = self.gemm_shape(ConvOp::Forward, d);
        let (gx, gy) = self.grid(shape.folded);
        let groups = [gx, gy, shape.z as u32];
        let name = if relu { "conv2d.forward+relu" } else { "conv2d.forward" };
        self.dispatch(
            device,
            name,
            shape.pipeline,
            bytemuck::bytes_of(&p),
            &[(1, x), (2, params), (3, y)],
            groups,
            d.flops(),
        )
    }

    /// dx (N,C,H,W) from dy (N,OC,OH,OW) and W at `w_off` of `params`.
    pub fn conv_backward_input(
        &self,
        device: &wgpu::Device,
        d: ConvDims,
        w_off: usize,
        dy: &wgpu::Buffer,
        params: &wgpu::Buffer,
        dx: &wgpu::Buffer,
    ) -> Dispatch {
        let p = Self::conv_params(d, w_off, 0);
        let shape = self.gemm_shape(ConvOp::BackwardInput, d);
        let (gx, gy) = self.grid(shape.folded);
        let groups = [gx, gy, shape.z as u32];
        let b = [(1, dy), (2, params), (3, dx)];
        self.dispatch(device, "conv2d.backward_input", shape.pipeline, bytemuck::bytes_of(&p), &b, groups, d.flops())
    }

    /// dW and db into `grads` at `w_off`/`b_off`: a split-reduction GEMM into `partial`
    /// (`conv_partial_len(d)` floats) whose extra row of ones yields db, and its reduction.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_backward_params(
        &self,
        device: &wgpu::Device,
        d: ConvDims,
        w_off: usize,
        b_off: usize,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        partial: &wgpu::Buffer,
        grads: &wgpu::Buffer,
    ) -> [Dispatch; 2] {
        let (splits, chunk) = self.conv_weight_splits(d);
        let mut p = Self::conv_params(d, w_off, b_off);
        (p.splits, p.chunk) = (splits as u32, chunk as u32);
        let p = bytemuck::bytes_of(&p);
        let shape = self.gemm_shape(ConvOp::BackwardWeight, d);
        let (gx, gy) = self.grid(shape.folded);
        let gemm = [gx, gy, (shape.z * splits) as u32];
        [
            self.dispatch(
                device,
                "conv2d.backward_weight",
                shape.pipeline,
                p,
                &[(1, x), (2, dy), (3, partial)],
                gemm,
                d.flops(),
            ),
            self.dispatch(
                device,
                "conv2d.reduce_weight",
                &self.conv_reduce_weight,
                p,
                &[(1, partial), (3, grads)],
                self.flat_groups(d.weight_len() + d.oc),
                0,
            ),
        ]
    }

    /// The reference SGEMM on this engine: c (m,n) = a (m,k) x b (k,n), row-major.
    /// The sizes must be multiples of `sgemm_tile`: it exists to be timed, not to serve shapes.
    pub fn sgemm(
        &self,
        device: &wgpu::Device,
        [m, n, k]: [usize; 3],
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) -> anyhow::Result<Dispatch> {
        let tile = sgemm_tile(self.conv_engine);
        if [m, n, k].iter().zip(tile).any(|(&x, t)| x == 0 || x % t != 0) {
            anyhow::bail!(
                "sgemm {m}x{n}x{k}: sizes must be multiples of {tile:?} on the {} engine",
                self.conv_engine.name()
            );
        }
        let p = SgemmParams { m: u(m), n: u(n), k: u(k), _pad: 0 };
        let groups = [u(n / tile[1]), u(m / tile[0]), 1];
        Ok(self.dispatch(
            device,
            "sgemm.matmul",
            self.sgemm.get_or_init(|| match self.conv_engine {
                ConvEngine::Tiled => pipeline(device, &shader_module(device, "sgemm.wgsl"), "matmul", &[]),
                ConvEngine::Subgroup => {
                    pipeline(device, &shader_module(device, "sgemm_subgroup.wgsl"), "matmul", &[("ROW_GROUPS", 4.0)])
                }
            }),
            bytemuck::bytes_of(&p),
            &[(1, a), (2, b), (3, c)],
            groups,
            2 * (m * n * k) as u64,
        ))
    }

    pub fn relu_forward(&self, device: &wgpu::Device, len: usize, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Dispatch {
        let p = SizeParams { a: u(len), b: 0, _pad: [0; 2] };
        self.dispatch(
            device,
            "relu.forward",
            &self.relu_forward,
            bytemuck::bytes_of(&p),
            &[(1, x), (2, y)],
            self.flat_groups(len),
            0,
        )
        .moving(8 * len)
    }

    /// `x` may be the ReLU's input or its output (the mask is the same).
    pub fn relu_backward(
        &self,
        device: &wgpu::Device,
        len: usize,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
    ) -> Dispatch {
        let p = SizeParams { a: u(len), b: 0, _pad: [0; 2] };
        let b = [(1, x), (3, dy), (4, dx)];
        self.dispatch(
            device,
            "relu.backward",
            &self.relu_backward,
            bytemuck::bytes_of(&p),
            &b,
            self.flat_groups(len),
            0,
        )
        .moving(12 * len)
    }

    fn pool_params(d: PoolDims) -> PoolParams {
        PoolParams {
            n: u(d.n),
            c: u(d.c),
            h: u(d.h),
            w: u(d.w),
            k: u(d.k),
            stride: u(d.stride),
            oh: u(d.oh()),
            ow: u(d.ow()),
        }
    }

    pub fn pool_forward(
        &self,
        device: &wgpu::Device,
        d: PoolDims,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        argmax: &wgpu::Buffer,
    ) -> Dispatch {
        let p = Self::pool_params(d);
        let b = [(1, x), (2, y), (3, argmax)];
        self.dispatch(
            device,
            "maxpool.forward",
            &self.pool_forward,
            bytemuck::bytes_of(&p),
            &b,
            self.flat_groups(d.output_len()),
            0,
        )
        .moving(4 * d.input_len() + 8 * d.output_len())
    }

    pub fn pool_backward(
        &self,
        device: &wgpu::Device,
        d: PoolDims,
        argmax: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
    ) -> Dispatch {
        let p = Self::pool_params(d);
        let b = [(3, argmax), (4, dy), (5, dx)];
        self.dispatch(
            device,
            "maxpool.backward",
            &self.pool_backward,
            bytemuck::bytes_of(&p),
            &b,
            self.flat_groups(d.input_len()),
            0,
        )
        .moving(4 * d.input_len() + 8 * d.output_len())
    }

    fn linear_params(d: LinearDims, w_off: usize, b_off: usize) -> LinearParams {
        LinearParams { n: u(d.n), inf: u(d.inf), outf: u(d.outf), w_off: u(w_off), b_off: u(b_off), _pad: [0; 3] }
    }

    /// Whether Linear runs on the conv GEMM, as a 1x1 convolution of 1x1 images
    /// (`LinearDims::as_conv`). On the subgroup engine it does once the batch fills
    /// a good part of a 64-column tile: the register tile is then ~4x faster than
    /// linear.wgsl's one reduction per output (measured at batch 64), while at batch 1
    /// one tile would walk the whole 3136-long reduction alone, ~15x slower. On GPUs
    /// linear.wgsl stays, since the tiled GEMM would run that reduction in a single
    /// workgroup.
    fn linear_on_conv_gemm(&self, d: LinearDims) -> bool {
        self.conv_engine == ConvEngine::Subgroup && d.n >= LINEAR_GEMM_MIN_BATCH
    }

    /// Elements of the scratch buffer `linear_backward_params` needs for `d`.
    pub fn linear_partial_len(&self, d: LinearDims) -> usize {
        if self.linear_on_conv_gemm(d) {
            self.conv_partial_len(d.as_conv())
        } else {
            0
        }
    }

    /// y (N,OUT) = x (N,IN) W^T + b, with W (OUT,IN) at `w_off` and b at `b_off` of `params`.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_forward(
        &self,
        device: &wgpu::Device,
        d: LinearDims,
        w_off: usize,
        b_off: usize,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Dispatch {
        if self.linear_on_conv_gemm(d) {
            return self.conv_forward(device, d.as_conv(), w_off, b_off, false, x, params, y);
        }
        let p = Self::linear_params(d, w_off, b_off);
        let (gx, gy) = self.grid((d.n * d.outf) as u64);
        let flops = 2 * (d.n * d.inf * d.outf) as u64;
        let b = [(1, x), (2, params), (3, y)];
        self.dispatch(device, "linear.forward", &self.linear_forward, bytemuck::bytes_of(&p), &b, [gx, gy, 1], flops)
    }

    /// dx (N,IN) = dy (N,OUT) W.
    pub fn linear_backward_input(
        &self,
        device: &wgpu::Device,
        d: LinearDims,
        w_off: usize,
        dy: &wgpu::Buffer,
        params: &wgpu::Buffer,
        dx: &wgpu::Buffer,
    ) -> Dispatch {
        if self.linear_on_conv_gemm(d) {
            return self.conv_backward_input(device, d.as_conv(), w_off, dy, params, dx);
        }
        let p = Self::linear_params(d, w_off, 0);
        let flops = 2 * (d.n * d.inf * d.outf) as u64;
        let b = [(4, dy), (2, params), (5, dx)];
        self.dispatch(
            device,
            "linear.backward_input",
            &self.linear_backward_input,
            bytemuck::bytes_of(&p),
            &b,
            self.flat_groups(d.n * d.inf),
            flops,
        )
    }

    #[allow(clippy::too_many_arguments)]
    /// dW (OUT,IN) and db (OUT) into `grads` at `w_off`/`b_off`; `partial` holds
    /// `linear_partial_len(d)` floats of scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_backward_params(
        &self,
        device: &wgpu::Device,
        d: LinearDims,
        w_off: usize,
        b_off: usize,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        partial: &wgpu::Buffer,
        grads: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        if self.linear_on_conv_gemm(d) {
            return self.conv_backward_params(device, d.as_conv(), w_off, b_off, x, dy, partial, grads).into();
        }
        let p = Self::linear_params(d, w_off, b_off);
        let flops = 2 * (d.n * d.inf * d.outf) as u64;
        let groups = self.flat_groups(d.outf * d.inf + d.outf);
        let b = [(1, x), (4, dy), (6, grads)];
        vec![self.dispatch(
            device,
            "linear.backward_params",
            &self.linear_backward_params,
            bytemuck::bytes_of(&p),
            &b,
            groups,
            flops,
        )]
    }

    /// probs (N,CLASSES) and per-sample losses (N) from logits and labels.
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_forward(
        &self,
        device: &wgpu::Device,
        n: usize,
        classes: usize,
        logits: &wgpu::Buffer,
        labels: &wgpu::Buffer,
        probs: &wgpu::Buffer,
        losses: &wgpu::Buffer,
    ) -> Dispatch {
        let p = SizeParams { a: u(n), b: u(classes), _pad: [0; 2] };
        let b = [(1, logits), (2, labels), (3, probs), (4, losses)];
        self.dispatch(
            device,
            "softmax_ce.forward",
            &self.softmax_forward,
            bytemuck::bytes_of(&p),
            &b,
            self.flat_groups(n),
            0,
        )
    }

    pub fn softmax_predict(
        &self,
        device: &wgpu::Device,
        n: usize,
        classes: usize,
        logits: &wgpu::Buffer,
        probs: &wgpu::Buffer,
    ) -> Dispatch {
        let p = SizeParams { a: u(n), b: u(classes), _pad: [0; 2] };
        let b = [(1, logits), (3, probs)];
        self.dispatch(
            device,
            "softmax_ce.predict",
            &self.softmax_predict,
            bytemuck::bytes_of(&p),
            &b,
            self.flat_groups(n),
            0,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn softmax_backward(
        &self,
        device: &wgpu::Device,
        n: usize,
        classes: usize,
        labels: &wgpu::Buffer,
        probs: &wgpu::Buffer,
        dlogits: &wgpu::Buffer,
    ) -> Dispatch {
        let p = SizeParams { a: u(n), b: u(classes), _pad: [0; 2] };
        let b = [(2, labels), (3, probs), (5, dlogits)];
        self.dispatch(
            device,
            "softmax_ce.backward",
            &self.softmax_backward,
            bytemuck::bytes_of(&p),
            &b,
            self.flat_groups(n * classes),
            0,
        )
    }

    /// metrics [loss_sum, correct, samples, _] += this batch's.
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_accumulate(
        &self,
        device: &wgpu::Device,
        n: usize,
        classes: usize,
        labels: &wgpu::Buffer,
        probs: &wgpu::Buffer,
        losses: &wgpu::Buffer,
        metrics: &wgpu::Buffer,
    ) -> Dispatch {
        let p = SizeParams { a: u(n), b: u(classes), _pad: [0; 2] };
        let b = [(2, labels), (3, probs), (4, losses), (6, metrics)];
        self.dispatch(
            device,
            "softmax_ce.accumulate",
            &self.softmax_accumulate,
            bytemuck::bytes_of(&p),
            &b,
            [1, 1, 1],
            0,
        )
    }

    /// One update of all `len` parameters; rewrite `Dispatch::uniform` with
    /// `OptimParams::new(opt, len, step)` before each step. SGD leaves `v` unbound.
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer(
        &self,
        device: &wgpu::Device,
        opt: Optimizer,
        len: usize,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        m: &wgpu::Buffer,
        v: &wgpu::Buffer,
    ) -> Dispatch {
        let p = OptimParams::new(opt, len, 1);
        let groups = self.flat_groups(len);
        match opt {
            Optimizer::Sgd { .. } => self
                .dispatch(
                    device,
                    "optim.sgd",
                    &self.sgd,
                    bytemuck::bytes_of(&p),
                    &[(1, params), (2, grads), (3, m)],
                    groups,
                    0,
                )
                .moving(20 * len),
            Optimizer::Adam { .. } => {
                let b = [(1, params), (2, grads), (3, m), (4, v)];
                self.dispatch(device, "optim.adam", &self.adam, bytemuck::bytes_of(&p), &b, groups, 0).moving(28 * len)
            }
        }
    }
}

//! Conv2d: forward (+bias, +ReLU, and on the subgroup engine +2x2 max-pool),
//! backward to the input, and the weight and bias gradients, as implicit GEMMs on
//! the engine's tiles; the forward of a layer with a short reduction (conv1) as a
//! direct convolution instead.
//! WGSL: shaders/conv2d_common.wgsl with the engine's module (conv2d_tiled.wgsl and
//! conv2d_gemm_io.wgsl; conv2d_subgroup.wgsl with conv2d_subgroup_io.wgsl and
//! conv2d_subgroup_rows.wgsl; conv2d_coop.wgsl or conv2d_coop_emulated.wgsl with
//! conv2d_mixed.wgsl), and conv2d_direct.wgsl.
//! CPU twin: `cpu::ops::conv2d_forward` / `conv2d_backward` (the pooled forward:
//! then `maxpool_forward`). Tests: tests/gpu_ops.rs
//! `conv2d`, `conv2d_mixed_precision`, `conv2d_large_batch_2d_dispatch`,
//! `tensors_past_2_pow_24_elements`.

use crate::dims::{ConvDims, PoolDims};
use std::sync::{Arc, OnceLock};

use crate::gpu::dispatch::{storage_layout, u32_of, uniform, Dispatch, Entry, Fill, Launcher};
use crate::gpu::engine::GemmEngine;
use crate::gpu::ops::pool::PoolOutput;
use crate::gpu::ops::texture_copy::{TextureCopies, TextureCopy};
use crate::gpu::ops::WeightGrads;
use crate::gpu::params::Params;
use crate::model::ParamOffsets;

uniform! {
    /// Shapes and offsets of one conv call (`ConvUniform` in conv2d_common.wgsl).
    pub struct ConvUniform in "conv2d_common.wgsl" {
        n: u32, c: u32, h: u32, w: u32,
        oc: u32, oh: u32, ow: u32, k: u32,
        stride: u32, pad: u32, w_off: u32, b_off: u32,
        chunk: u32, splits: u32, relu: u32, accumulate: u32,
        flip: u32, pool: u32, zero: u32, b_shift: u32,
        a_shift: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }
}

impl ConvUniform {
    fn new(d: ConvDims, at: ParamOffsets) -> Self {
        ConvUniform {
            n: u32_of(d.n),
            c: u32_of(d.c),
            h: u32_of(d.h),
            w: u32_of(d.w),
            oc: u32_of(d.oc),
            oh: u32_of(d.oh()),
            ow: u32_of(d.ow()),
            k: u32_of(d.k),
            stride: u32_of(d.stride),
            pad: u32_of(d.pad),
            w_off: u32_of(at.weight),
            b_off: u32_of(at.bias),
            chunk: 0,
            splits: 1,
            relu: 0,
            accumulate: 0,
            flip: 0,
            pool: 0,
            zero: 0,
            b_shift: 0,
            a_shift: 0,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        }
    }
}

/// The pipelines of one tile configuration: the three products, backward_input
/// compiled for stride 1 where the engine has such a variant, and the kernel-row
/// products where it has those (`by_kernel_rows`).
#[derive(Clone, Copy)]
enum Variant {
    Forward,
    BackwardInput,
    BackwardInputUnitStride,
    BackwardWeightBias,
    ForwardRows,
    BackwardInputRows,
    BackwardWeightRows,
}

/// The longest reduction one weight-gradient workgroup runs (see `splits`).
const MAX_CHUNK: u64 = 8192;

/// Forwards whose reduction C*K*K is at most this run conv2d_direct.wgsl on engines
/// whose spec says so (`direct_short_forwards`): the tutorial model's conv1 (25).
pub const DIRECT_MAX_REDUCTION: usize = 25;
/// conv2d_direct.wgsl's workgroup: WG pixels, OCG output channels an invocation.
pub const DIRECT_PIXELS: u64 = 64;
pub const DIRECT_CHANNELS: u64 = 16;
const DIRECT_MODULE: &str = "conv2d_direct.wgsl";

/// The kernel size of the kernel-row products (`ROW_K` in conv2d_subgroup_rows.wgsl).
pub const ROW_KERNEL: usize = 5;
/// Their pixel columns: image rows padded to a multiple of this (`ROW_PIXELS`).
pub const ROW_PIXELS: usize = 4;
/// The override that compiles the kernel-row weight gradient's two extra columns a
/// lane (`EXTRA_COLS` in subgroup_tile.wgsl).
pub const EXTRA_COLS: &str = "EXTRA_COLS";
/// Where the kernel-row products read the texture copies of their operands
/// (`ops::texture_copy`): `b_copy` (the weights, or the weight gradient's dy) and
/// `a_copy` (the windows: x, or the input gradient's dy) in conv2d_subgroup_io.wgsl,
/// and the override that has them read those.
pub const B_COPY_BINDING: u32 = 6;
pub const A_COPY_BINDING: u32 = 7;
pub const OPERAND_TEXTURES: &str = "OPERAND_TEXTURES";
/// Columns of a tile one kernel row takes in that product: a lane's lo or hi quad
/// (its fifth tap goes to an extra column), so a 64-column tile holds 16 kernel rows.
pub const KERNEL_ROW_COLUMNS: usize = 4;

#[derive(Clone, Copy)]
enum Product {
    Forward,
    /// The kernel-row forward with a 2x2 max-pool in its epilogue: two rows a column.
    ForwardPooled,
    BackwardInput,
    BackwardWeightBias,
}

/// A tensor a product reads: its copy's label, its buffer, and its length.
type Tensor<'a> = (&'static str, &'a wgpu::Buffer, usize);

/// A product's second operand.
#[derive(Clone, Copy)]
enum Operand<'a> {
    Tensor(Tensor<'a>),
    /// The weights, whose texture copy `Params::write` and `Params::refresh` keep in step.
    Weights(&'a Params),
}

#[derive(Debug, Clone)]
pub struct ConvKernels {
    launcher: Launcher,
    engine: GemmEngine,
    module: wgpu::ShaderModule,
    /// Whether an engine's product reads `gate` depends on how its epilogues are
    /// shared; one layout for all three keeps their bindings alike. Binding 5 is
    /// the pooled forward's argmax (conv2d_subgroup_io.wgsl); the other products
    /// bind their output there. Engines with kernel-row products also bind the
    /// texture copies of their operands (`B_COPY_BINDING`, `A_COPY_BINDING`).
    layout: wgpu::PipelineLayout,
    /// A 1x1 texture for those bindings where a product reads no copy.
    no_texture: Option<wgpu::TextureView>,
    /// Whether the kernel-row products read their operands from texture copies
    /// (`GemmEngine::operands_in_textures`) or from their buffers.
    textures: bool,
    /// Per tile configuration, each `Variant`'s pipeline, compiled on first use and
    /// shared by every clone: a model needs a few of them (inference only the
    /// forward ones), and on llvmpipe each costs 0.25-1.3 s of compile at its first dispatch.
    gemms: Arc<Vec<[OnceLock<Entry>; 7]>>,
    /// conv2d_direct.wgsl's forward, compiled on first use.
    direct: Arc<OnceLock<Entry>>,
    reduce_weight_bias: Entry,
    split_target: u64,
    /// Workgroups a forward or input-gradient grid keeps before it takes a wide tile.
    min_groups: u64,
    /// How many of the engine's tiles this adapter uses (`GemmEngine::usable_tiles`).
    usable_tiles: usize,
}

impl ConvKernels {
    /// The pipelines of `engine`; its kernel-row products, where it has them, load
    /// their operands from texture copies if `textures`.
    pub fn new(launcher: &Launcher, engine: GemmEngine, device_type: wgpu::DeviceType, textures: bool) -> Self {
        let spec = engine.spec();
        let module = super::module(launcher, spec.conv_module);
        let bindings: &[u32] = if spec.kernel_row_products { &[B_COPY_BINDING, A_COPY_BINDING] } else { &[] };
        let layout = storage_layout(&launcher.device, spec.conv_module, 1..=5, &[3, 5], bindings);
        let no_texture = spec.kernel_row_products.then(|| {
            let t = launcher.device.create_texture(&wgpu::TextureDescriptor {
                label: Some("no texture copy"),
                size: wgpu::Extent3d { width: 1, height: 1, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::R32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING,
                view_formats: &[],
            });
            t.create_view(&Default::default())
        });
        let gemms = spec.tiles.iter().map(|_| Default::default()).collect();
        let reduce_weight_bias =
            launcher.entry(&module, spec.conv_module, "reduce_weight_bias", spec.tiles[0].constants);
        ConvKernels {
            launcher: launcher.clone(),
            engine,
            module,
            layout,
            no_texture,
            textures: textures && spec.kernel_row_products,
            gemms: Arc::new(gemms),
            direct: Default::default(),
            reduce_weight_bias,
            split_target: engine.split_target(device_type),
            min_groups: engine.min_groups(device_type),
            usable_tiles: engine.usable_tiles(device_type),
        }
    }

    /// Tile configuration `tile`'s pipeline of `variant`, compiled on first use.
    fn entry(&self, tile: usize, variant: Variant) -> &Entry {
        self.gemms[tile][variant as usize].get_or_init(|| {
            let spec = self.engine.spec();
            let t = &spec.tiles[tile];
            let mut constants = t.constants.to_vec();
            // (WGSL entry point, the name profiles show, its suffix)
            let (wgsl, name, suffix) = match variant {
                Variant::Forward => ("forward", "forward", ""),
                Variant::BackwardInput => ("backward_input", "backward_input", ""),
                Variant::BackwardInputUnitStride => {
                    constants.extend(spec.unit_stride_override.map(|name| (name, 1.0)));
                    ("backward_input", "backward_input", "@stride1")
                }
                Variant::BackwardWeightBias => ("backward_weight_bias", "backward_weight_bias", ""),
                Variant::ForwardRows => {
                    constants.push((OPERAND_TEXTURES, self.textures as u8 as f64));
                    ("rows", "forward_rows", "")
                }
                Variant::BackwardInputRows => ("rows", "backward_input_rows", ""),
                Variant::BackwardWeightRows => {
                    constants.push((EXTRA_COLS, 1.0));
                    constants.push((OPERAND_TEXTURES, self.textures as u8 as f64));
                    ("weight_rows", "backward_weight_bias_rows", "")
                }
            };
            // The kernel-row products are one entry point (U.flip says which), so
            // llvmpipe compiles it once: see conv2d_subgroup_rows.wgsl.
            let pipeline = match variant {
                Variant::BackwardInputRows => self.entry(tile, Variant::ForwardRows).pipeline.clone(),
                _ => {
                    let l = &self.launcher;
                    l.entry_in_layout(&self.module, spec.conv_module, wgsl, &constants, Some(&self.layout)).pipeline
                }
            };
            let mut name = Entry::name_of(spec.conv_module, name);
            // Profiles and test failures say which tile ran, where there is a choice.
            if spec.tiles.len() > 1 {
                name += &format!("@{}x{}", t.channels, t.pixels);
            }
            Entry { name: name + suffix, pipeline }
        })
    }

    /// Whether the kernel-row products load their operands from texture copies.
    pub fn operands_from_textures(&self) -> bool {
        self.textures
    }

    /// Where `d`'s products read their operands from texture copies, the fill that
    /// brings the tensor's first `len` elements into its buffer's copy in `copies`
    /// before the product runs.
    fn copy_of(&self, d: ConvDims, copies: &TextureCopies, tensor: Tensor) -> Option<Fill> {
        if !(self.textures && self.by_kernel_rows(d)) {
            return None;
        }
        let (label, src, len) = tensor;
        // The executors keep every buffer within `texture_copy::max_elements`.
        let to = copies.of(&self.launcher.device, label, src).unwrap_or_else(|e| panic!("{e:#}"));
        Some(Fill { src: src.clone(), to, len })
    }

    /// A dispatch of one of `d`'s products, which reads `a` (a tensor) and `b` (a
    /// tensor or the weights) from texture copies where `copy_of` finds them, with
    /// the fills of the tensors' copies.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        d: ConvDims,
        entry: &Entry,
        u: ConvUniform,
        bindings: &[(u32, &wgpu::Buffer)],
        (a, b): (Tensor, Operand),
        copies: &TextureCopies,
        groups: [u32; 3],
    ) -> Dispatch {
        let a_fill = self.copy_of(d, copies, a);
        let b_fill = match b {
            Operand::Tensor(t) => self.copy_of(d, copies, t),
            Operand::Weights(_) => None,
        };
        let b_copy = match b {
            Operand::Tensor(_) => b_fill.as_ref().map(|f| &f.to),
            Operand::Weights(params) => a_fill.as_ref().map(|_| self.weights_copy(params)),
        };
        let copies = a_fill.as_ref().map(|f| &f.to).zip(b_copy);
        let product = self.dispatch(entry, u, bindings, copies, groups).with_flops(d.flops());
        product.filling(a_fill.into_iter().chain(b_fill).collect())
    }

    /// A dispatch of one of this engine's products, binding the texture copies of
    /// its operands, (a, b), where it reads them, and placeholders otherwise.
    fn dispatch(
        &self,
        entry: &Entry,
        u: ConvUniform,
        bindings: &[(u32, &wgpu::Buffer)],
        copies: Option<(&TextureCopy, &TextureCopy)>,
        groups: [u32; 3],
    ) -> Dispatch {
        let Some(none) = &self.no_texture else {
            return self.launcher.dispatch(entry, &u, bindings, groups);
        };
        let ((a, a_shift), (b, b_shift)) = match copies {
            Some((a, b)) => ((a.view(), a.shift()), (b.view(), b.shift())),
            None => ((none, 0), (none, 0)),
        };
        let u = ConvUniform { a_shift, b_shift, ..u };
        self.launcher.dispatch_with_textures(entry, &u, bindings, &[(A_COPY_BINDING, a), (B_COPY_BINDING, b)], groups)
    }

    /// The weights' texture copy, which the kernel-row products read with a copy of
    /// their windows.
    fn weights_copy<'a>(&self, params: &'a Params) -> &'a TextureCopy {
        params.texture_copy().expect("these kernels read the weights' texture copy, and the Params have none")
    }

    /// Whether `d`'s forward runs conv2d_direct.wgsl.
    pub fn direct_forward(&self, d: ConvDims) -> bool {
        self.engine.spec().direct_short_forwards && d.c * d.k * d.k <= DIRECT_MAX_REDUCTION
    }

    /// The direct forward, compiled on first use; its bindings are the GEMM forward's.
    fn direct(&self) -> &Entry {
        self.direct.get_or_init(|| {
            let module = super::module(&self.launcher, DIRECT_MODULE);
            self.launcher.entry_in_layout(&module, DIRECT_MODULE, "forward", &[], Some(&self.layout))
        })
    }

    /// Whether `d`'s products run kernel row by kernel row: on engines that have
    /// such products, for stride-1 5x5 kernels.
    pub fn by_kernel_rows(&self, d: ConvDims) -> bool {
        self.engine.spec().kernel_row_products && d.stride == 1 && d.k == ROW_KERNEL
    }

    /// The entry point and grid of one product: the pixel (or tap) side folded
    /// over x and y, the channel side along z.
    fn layout(&self, p: Product, d: ConvDims) -> (&Entry, u64, u64) {
        let rows = self.by_kernel_rows(d);
        let padded = |width: usize| width.div_ceil(ROW_PIXELS) * ROW_PIXELS;
        let (pixels, channels) = match p {
            Product::Forward if rows => (d.n * d.oh() * padded(d.ow()), d.oc),
            Product::ForwardPooled => (d.n * (d.oh() / 2 * 2) * padded(d.ow()), d.oc),
            Product::Forward => (d.n * d.oh() * d.ow(), d.oc),
            Product::BackwardInput if rows => (d.n * d.h * padded(d.w), d.c),
            Product::BackwardInput => (d.n * d.h * d.w, d.c),
            // kernel rows (c, kh), each KERNEL_ROW_COLUMNS of a tile (weight_rows)
            Product::BackwardWeightBias if rows => (d.c * d.k * KERNEL_ROW_COLUMNS, d.oc),
            // the taps, then the bias as one more (see conv2d_common.wgsl)
            Product::BackwardWeightBias => (d.c * d.k * d.k + 1, d.oc),
        };
        let min_groups = match p {
            Product::BackwardWeightBias => 0,
            Product::Forward | Product::ForwardPooled | Product::BackwardInput => self.min_groups,
        };
        let (i, tile) = self.engine.tile_for(pixels as u64, channels as u64, min_groups, self.usable_tiles);
        let unit_stride = self.engine.spec().unit_stride_override.is_some() && d.stride == 1;
        let entry = self.entry(
            i,
            match p {
                Product::Forward if rows => Variant::ForwardRows,
                Product::ForwardPooled => Variant::ForwardRows,
                Product::Forward => Variant::Forward,
                Product::BackwardInput if rows => Variant::BackwardInputRows,
                Product::BackwardInput if unit_stride => Variant::BackwardInputUnitStride,
                Product::BackwardInput => Variant::BackwardInput,
                Product::BackwardWeightBias if rows => Variant::BackwardWeightRows,
                Product::BackwardWeightBias => Variant::BackwardWeightBias,
            },
        );
        (entry, (pixels as u64).div_ceil(tile.pixels), (channels as u64).div_ceil(tile.channels))
    }

    /// How the weight-gradient reduction (N*OH*OW long) is split: (splits, chunk).
    /// Splits aim for the engine's workgroup target, and are never longer than
    /// `MAX_CHUNK` reduction steps: on llvmpipe (Vulkan and GL alike) the tiled
    /// kernel's partial sums came out zero once one workgroup reduced ~30,000 steps
    /// (a batch of 10,000 28x28 images at 256 splits); 24,500 still summed right.
    /// The kernel-row product reduces over groups of ROW_PIXELS pixels of a row
    /// (its rows padded to a multiple of it), a group per step.
    fn splits(&self, d: ConvDims) -> (u64, u64) {
        let (red, step, group) = if self.by_kernel_rows(d) {
            ((d.n * d.oh() * d.ow().div_ceil(ROW_PIXELS)) as u64, 1, ROW_PIXELS as u64)
        } else {
            ((d.n * d.oh() * d.ow()) as u64, self.engine.spec().reduction_step, 1)
        };
        let (_, folded, z) = self.layout(Product::BackwardWeightBias, d);
        let longest = MAX_CHUNK / group;
        let want = self.split_target.div_ceil(folded * z).max(red.div_ceil(longest)).clamp(1, red.div_ceil(step));
        let chunk = red.div_ceil(want).div_ceil(step) * step;
        (red.div_ceil(chunk), chunk)
    }

    /// Elements of the scratch buffer `backward_weight_bias` needs for `d`.
    pub fn scratch_len(&self, d: ConvDims) -> usize {
        self.splits(d).0 as usize * (d.c * d.k * d.k + 1) * d.oc
    }

    /// y (N,OC,OH,OW) = conv(x (N,C,H,W), W) + b, then ReLU if `relu`; W and b at
    /// `at` in `params`. Texture copies of tensors (where these kernels read them)
    /// come from `copies`, here and in every product below.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        d: ConvDims,
        at: ParamOffsets,
        relu: bool,
        x: &wgpu::Buffer,
        params: &Params,
        y: &wgpu::Buffer,
        copies: &TextureCopies,
    ) -> Dispatch {
        let u = ConvUniform { relu: relu as u32, ..ConvUniform::new(d, at) };
        let (entry, folded, z) = if self.direct_forward(d) {
            let pixels = (d.n * d.oh() * d.ow()) as u64;
            (self.direct(), pixels.div_ceil(DIRECT_PIXELS), (d.oc as u64).div_ceil(DIRECT_CHANNELS))
        } else {
            self.layout(Product::Forward, d)
        };
        let groups = self.launcher.grid.folded(folded, z);
        let bindings = [(1, x), (2, params.buffer()), (3, y), (4, x), (5, y)];
        let operands = (("x copy", x, d.input_len()), Operand::Weights(params));
        self.product(d, entry, u, &bindings, operands, copies, groups).fusing_relu(relu)
    }

    /// Whether `forward_pooled` can run `d` followed by max-pool `p`: on engines
    /// with kernel-row products, for a 2x2 pool of stride 2 over `d`'s whole output.
    pub fn pools_in_epilogue(&self, d: ConvDims, p: PoolDims) -> bool {
        self.by_kernel_rows(d)
            && (p.k, p.stride) == (2, 2)
            && (p.n, p.c, p.h, p.w) == (d.n, d.oc, d.oh(), d.ow())
            && p.h >= 2
            && p.w >= 2
    }

    /// `forward`, then max-pool `pool.d` in the same kernel (where
    /// `pools_in_epilogue`) into `pool.y` and `pool.argmax`, as `PoolKernels::forward`
    /// writes them; the unpooled output is never stored.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_pooled(
        &self,
        d: ConvDims,
        at: ParamOffsets,
        relu: bool,
        x: &wgpu::Buffer,
        params: &Params,
        pool: PoolOutput,
        copies: &TextureCopies,
    ) -> Dispatch {
        let PoolOutput { d: p, y, argmax } = pool;
        assert!(self.pools_in_epilogue(d, p), "forward_pooled: {d:?} then {p:?} cannot pool in the epilogue");
        let u = ConvUniform { relu: relu as u32, pool: 1, ..ConvUniform::new(d, at) };
        let (entry, folded, z) = self.layout(Product::ForwardPooled, d);
        let groups = self.launcher.grid.folded(folded, z);
        let bindings = [(1, x), (2, params.buffer()), (3, y), (4, x), (5, argmax)];
        let operands = (("x copy", x, d.input_len()), Operand::Weights(params));
        self.product(d, entry, u, &bindings, operands, copies, groups).fusing_relu(relu).fusing_pool()
    }

    /// dx (N,C,H,W) from dy (N,OC,OH,OW) and W at `at.weight` in `params`; with
    /// `relu_input` (this conv's input x, the output of a ReLU), also the backward
    /// pass of that ReLU: dx is zero where x is not positive.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self,
        d: ConvDims,
        at: ParamOffsets,
        dy: &wgpu::Buffer,
        params: &Params,
        dx: &wgpu::Buffer,
        relu_input: Option<&wgpu::Buffer>,
        copies: &TextureCopies,
    ) -> Dispatch {
        let (entry, folded, z) = self.layout(Product::BackwardInput, d);
        let groups = self.launcher.grid.folded(folded, z);
        let u = ConvUniform { relu: relu_input.is_some() as u32, flip: 1, ..ConvUniform::new(d, at) };
        let gate = relu_input.unwrap_or(&self.launcher.unused);
        let bindings = [(1, dy), (2, params.buffer()), (3, dx), (4, gate), (5, dx)];
        let operands = (("dy copy", dy, d.output_len()), Operand::Weights(params));
        self.product(d, entry, u, &bindings, operands, copies, groups).fusing_relu(relu_input.is_some())
    }

    /// dW and db into `to.grads` at `at`: a split-reduction GEMM into `to.scratch`
    /// (`scratch_len(d)` floats) whose extra tap of ones yields db (the kernel-row
    /// product sums the dy it loads instead), then its reduction.
    pub fn backward_weight_bias(
        &self,
        d: ConvDims,
        at: ParamOffsets,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        to: &WeightGrads,
        copies: &TextureCopies,
    ) -> [Dispatch; 2] {
        let (splits, chunk) = self.splits(d);
        let (scratch, grads) = (to.scratch, to.grads);
        let (splits32, chunk32, accumulate) = (splits as u32, chunk as u32, to.accumulate as u32);
        let u = ConvUniform { splits: splits32, chunk: chunk32, accumulate, ..ConvUniform::new(d, at) };
        let (entry, folded, z) = self.layout(Product::BackwardWeightBias, d);
        let gemm = self.launcher.grid.folded(folded, z * splits);
        let reduce = self.launcher.grid.flat(d.weight_len() + d.oc);
        let bindings = [(1, x), (2, dy), (3, scratch), (4, x), (5, scratch)];
        let operands = (("x copy", x, d.input_len()), Operand::Tensor(("dy copy", dy, d.output_len())));
        let product = self.product(d, entry, u, &bindings, operands, copies, gemm);
        let reduce = self.launcher.dispatch(&self.reduce_weight_bias, &u, &[(1, scratch), (3, grads)], reduce);
        [product, reduce]
    }
}

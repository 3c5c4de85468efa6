//! What every op family's launcher builds: a `Dispatch` (pipeline, uniform and
//! bind group made once, then recorded step after step), the grid arithmetic
//! that keeps any size under the per-dimension workgroup limit, and the
//! `Uniform` trait through which a test checks each Rust uniform struct
//! against its WGSL twin.

use wgpu::util::DeviceExt;

use crate::gpu::ops::texture_copy::TextureCopy;

/// Threads per workgroup of the element-wise entry points (`FLAT_WORKGROUP_SIZE`
/// in shaders/grid.wgsl; tests/shaders.rs checks they agree).
pub const FLAT_WORKGROUP_SIZE: u64 = 256;

/// A Rust struct that mirrors a WGSL uniform struct byte for byte; made by `uniform!`.
pub trait Uniform: bytemuck::Pod {
    /// The WGSL file that declares the struct, and its name there (the Rust name).
    const WGSL_FILE: &'static str;
    const WGSL_NAME: &'static str;
    /// (member name, Rust scalar type, byte offset) in declaration order.
    fn members() -> Vec<(&'static str, &'static str, usize)>;
}

/// Declares a uniform struct with its `Uniform` description, so the layout a
/// test compares with WGSL is the one the compiler laid out.
macro_rules! uniform {
    ($(#[$meta:meta])* pub struct $name:ident in $file:literal { $($field:ident: $ty:ident),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $(pub $field: $ty),*
        }
        impl $crate::gpu::dispatch::Uniform for $name {
            const WGSL_FILE: &'static str = $file;
            const WGSL_NAME: &'static str = stringify!($name);
            fn members() -> Vec<(&'static str, &'static str, usize)> {
                vec![$((stringify!($field), stringify!($ty), std::mem::offset_of!($name, $field))),*]
            }
        }
    };
}
pub(crate) use uniform;

/// How dispatches of one `Kernels` are laid out: past `max_per_dim` workgroups a
/// dispatch folds over x and y, and the shaders rebuild the flat index
/// (`folded_group` in shaders/grid.wgsl) and skip the excess.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    pub max_per_dim: u32,
}

impl Grid {
    /// `groups` workgroups as (x, y), neither over the limit.
    pub fn fold(&self, groups: u64) -> [u32; 2] {
        let max = self.max_per_dim as u64;
        let y = groups.max(1).div_ceil(max);
        let x = groups.max(1).div_ceil(y);
        [x as u32, y as u32]
    }

    /// `groups` folded workgroups, times `z` along z.
    pub fn folded(&self, groups: u64, z: u64) -> [u32; 3] {
        let [x, y] = self.fold(groups);
        [x, y, z as u32]
    }

    /// Workgroups for one thread per element of `threads` (an element-wise entry point).
    pub fn flat(&self, threads: usize) -> [u32; 3] {
        self.folded((threads as u64).div_ceil(FLAT_WORKGROUP_SIZE), 1)
    }
}

/// A recorded-many-times dispatch: pipeline, bind group (uniform at binding 0) and workgroup counts.
pub struct Dispatch {
    /// The WGSL module and entry point, e.g. `conv2d_tiled.forward`.
    pub name: String,
    /// Useful FLOPs per execution (0 for memory-bound ops), for profiles.
    pub flops: u64,
    /// Bytes a memory-bound op must move per execution (0 for compute-bound ones).
    pub bytes: u64,
    /// The layer it belongs to, when an executor built it (e.g. `conv2.2`).
    pub layer: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    /// The uniform buffer, for dispatches whose uniform changes per step (the optimizer).
    pub uniform: wgpu::Buffer,
    /// Texture copies of buffers it reads, to bring in step just before it runs.
    fills: Vec<Fill>,
}

/// A buffer a dispatch reads through a texture copy (`ops::texture_copy`): its first
/// `len` elements copied into the texture before the dispatch, outside a compute
/// pass (`record_all`).
#[derive(Debug, Clone)]
pub struct Fill {
    pub src: wgpu::Buffer,
    pub to: TextureCopy,
    pub len: usize,
}

/// Record `dispatches` in order into compute passes of `encoder`: one pass, split
/// before each dispatch with fills, whose copies go between the passes.
pub fn record_all(encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch]) {
    let mut rest = dispatches;
    while let Some((first, _)) = rest.split_first() {
        first.record_fills(encoder);
        let run = 1 + rest[1..].iter().take_while(|d| d.fills.is_empty()).count();
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for d in &rest[..run] {
            d.record(&mut pass);
        }
        rest = &rest[run..];
    }
}

impl Dispatch {
    /// Named `…+relu` when it also runs a ReLU (forward) or a ReLU's backward pass.
    pub fn fusing_relu(mut self, relu: bool) -> Self {
        if relu {
            self.name += "+relu";
        }
        self
    }

    pub fn fusing_pool(mut self) -> Self {
        self.name += "+pool";
        self
    }

    pub fn with_flops(mut self, flops: u64) -> Self {
        self.flops = flops;
        self
    }

    pub fn moving(mut self, bytes: usize) -> Self {
        self.bytes = bytes as u64;
        self
    }

    /// Copies `fills` into their textures before it runs.
    pub fn filling(mut self, fills: Vec<Fill>) -> Self {
        self.fills = fills;
        self
    }

    /// Record the copies into the textures this dispatch reads (outside a pass).
    pub fn record_fills(&self, encoder: &mut wgpu::CommandEncoder) {
        for f in &self.fills {
            f.to.copy_from(encoder, &f.src, f.len);
        }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }

    /// Record this dispatch over no workgroups: it runs nothing, but a driver that
    /// compiles at a pipeline's first dispatch compiles it (see `warmup`).
    pub fn record_empty(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(0, 0, 0);
    }

    pub fn pipeline(&self) -> &wgpu::ComputePipeline {
        &self.pipeline
    }

    pub fn workgroups(&self) -> [u32; 3] {
        self.groups
    }
}

/// A compiled entry point and the name profiles show for it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub pipeline: wgpu::ComputePipeline,
}

impl Entry {
    /// The name profiles and test failures show for entry point `entry` of
    /// `module_name`: `conv2d_tiled.forward` for conv2d_tiled.wgsl's `forward`.
    pub fn name_of(module_name: &str, entry: &str) -> String {
        format!("{}.{entry}", module_name.trim_end_matches(".wgsl"))
    }
}

/// What each op family holds to build its dispatches: the device and the grid.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub device: wgpu::Device,
    pub grid: Grid,
    /// Four bytes, bound where an entry point's optional input is switched off
    /// (its uniform says so): a pipeline's bindings must all be bound.
    pub unused: wgpu::Buffer,
}

impl Launcher {
    pub fn new(device: &wgpu::Device, grid: Grid) -> Self {
        let unused = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused binding"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Launcher { device: device.clone(), grid, unused }
    }

    /// The compute pipeline of `entry` in the composed `module`, with override `constants`.
    pub fn entry(
        &self,
        module: &wgpu::ShaderModule,
        module_name: &str,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Entry {
        self.entry_in_layout(module, module_name, entry, constants, None)
    }

    /// As `entry`, with an explicit pipeline layout instead of the one derived from
    /// the bindings the entry point uses: for entry points that must all bind alike.
    pub fn entry_in_layout(
        &self,
        module: &wgpu::ShaderModule,
        module_name: &str,
        entry: &str,
        constants: &[(&str, f64)],
        layout: Option<&wgpu::PipelineLayout>,
    ) -> Entry {
        // No zeroing of workgroup memory: every shader here writes its workgroup
        // arrays before a barrier and reads them after it (the tile loaders store
        // their zeros explicitly), so WebGPU's zeroing only costs. On GL naga writes
        // it as code that llvmpipe compiles for seconds a pipeline (docs/performance.md,
        // "Start-up on a cold shader cache").
        let options = wgpu::PipelineCompilationOptions { constants, zero_initialize_workgroup_memory: false };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout,
            module,
            entry_point: Some(entry),
            compilation_options: options,
            cache: None,
        });
        Entry { name: Entry::name_of(module_name, entry), pipeline }
    }

    /// A dispatch of `entry` over `groups` workgroups with `uniform` at binding 0
    /// and each (binding, buffer) of `bindings`.
    pub fn dispatch<U: Uniform>(
        &self,
        entry: &Entry,
        uniform: &U,
        bindings: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
    ) -> Dispatch {
        self.dispatch_with_textures(entry, uniform, bindings, &[], groups)
    }

    /// As `dispatch`, with each (binding, texture view) of `textures` too.
    pub fn dispatch_with_textures<U: Uniform>(
        &self,
        entry: &Entry,
        uniform: &U,
        bindings: &[(u32, &wgpu::Buffer)],
        textures: &[(u32, &wgpu::TextureView)],
        groups: [u32; 3],
    ) -> Dispatch {
        let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(&entry.name),
            contents: bytemuck::bytes_of(uniform),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        entries.extend(
            bindings.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }),
        );
        entries.extend(
            textures
                .iter()
                .map(|&(binding, v)| wgpu::BindGroupEntry { binding, resource: wgpu::BindingResource::TextureView(v) }),
        );
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&entry.name),
            layout: &entry.pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch {
            name: entry.name.clone(),
            flops: 0,
            bytes: 0,
            layer: String::new(),
            pipeline: entry.pipeline.clone(),
            bind_group,
            groups,
            uniform,
            fills: Vec::new(),
        }
    }
}

/// A pipeline layout of one bind group: a uniform at binding 0, then storage
/// buffers, read-only unless their binding is in `writes`, and at each binding of
/// `textures` an unfilterable f32 2D texture (`ops::texture_copy`).
pub fn storage_layout(
    device: &wgpu::Device,
    label: &str,
    storage: std::ops::RangeInclusive<u32>,
    writes: &[u32],
    textures: &[u32],
) -> wgpu::PipelineLayout {
    let entry =
        |binding, ty| wgpu::BindGroupLayoutEntry { binding, visibility: wgpu::ShaderStages::COMPUTE, ty, count: None };
    let buffer = |ty| wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None };
    let entries: Vec<wgpu::BindGroupLayoutEntry> = std::iter::once(entry(0, buffer(wgpu::BufferBindingType::Uniform)))
        .chain(storage.map(|b| entry(b, buffer(wgpu::BufferBindingType::Storage { read_only: !writes.contains(&b) }))))
        .chain(textures.iter().map(|&b| {
            let ty = wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            };
            entry(b, ty)
        }))
        .collect();
    let group =
        device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &entries });
    device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&group)],
        immediate_size: 0,
    })
}

/// A dimension as the u32 the shaders take; the executor refuses larger tensors first.
pub fn u32_of(x: usize) -> u32 {
    u32::try_from(x).expect("a dimension exceeds u32: the executor's size checks should have refused it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_stays_under_the_limit_and_covers_every_group() {
        let g = Grid { max_per_dim: 3 };
        for groups in 1..40u64 {
            let [x, y] = g.fold(groups);
            assert!(x <= 3 && (y <= 3 || groups > 9), "{groups}: {x}x{y}");
            assert!((x * y) as u64 >= groups, "{groups}: {x}x{y} misses groups");
            assert!(((x * y) as u64) < groups + x as u64, "{groups}: {x}x{y} has a whole idle row");
        }
        assert_eq!(g.flat(1), [1, 1, 1]);
        assert_eq!(Grid { max_per_dim: 65535 }.flat(257), [2, 1, 1]);
    }
}

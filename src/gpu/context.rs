//! Adapter selection and the device: one `Gpu` owns the device, the queue and
//! every compiled pipeline, and offers the few buffer helpers the rest needs.

use anyhow::{anyhow, bail, Context, Result};
use std::fmt;
use std::str::FromStr;
use wgpu::util::DeviceExt;

use crate::gpu::kernels::{ConvEngine, Dispatch, Kernels};

/// Which wgpu backend to use; `Auto` prefers native APIs over GL and real GPUs over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    pub fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Auto => wgpu::Backends::all(),
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

impl FromStr for BackendChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => BackendChoice::Auto,
            "vulkan" | "vk" => BackendChoice::Vulkan,
            "metal" => BackendChoice::Metal,
            "dx12" | "d3d12" => BackendChoice::Dx12,
            "gl" | "gles" | "opengl" => BackendChoice::Gl,
            _ => bail!("unknown backend '{s}': expected auto, vulkan, metal, dx12 or gl"),
        })
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Vulkan => "vulkan",
            BackendChoice::Metal => "metal",
            BackendChoice::Dx12 => "dx12",
            BackendChoice::Gl => "gl",
        };
        f.write_str(s)
    }
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub kernels: Kernels,
}

fn instance(choice: BackendChoice) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = choice.backends();
    wgpu::Instance::new(desc)
}

/// Higher is better: native APIs before GL, real GPUs before software ones.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 1,
        wgpu::DeviceType::Cpu => 0,
    };
    let api = if info.backend == wgpu::Backend::Gl { 0 } else { 1 };
    (device, api)
}

/// Every adapter wgpu finds for `choice`.
pub fn adapters(choice: BackendChoice) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance(choice).enumerate_adapters(choice.backends()))
        .into_iter()
        .filter(|a| choice != BackendChoice::Auto || a.get_info().backend != wgpu::Backend::Noop)
        .collect()
}

pub const NO_ADAPTER_HELP: &str = "no GPU adapter found. On Linux without a GPU install Mesa's software drivers \
(Debian/Ubuntu: `apt-get install mesa-vulkan-drivers` for Vulkan/lavapipe; llvmpipe provides OpenGL), \
on a machine with a GPU install its Vulkan driver; or use `--backend cpu` for the CPU reference";

impl Gpu {
    /// Open the best adapter for `choice`, asking for the adapter's own limits
    /// (the downlevel defaults allow only 4 storage buffers per stage).
    pub fn new(choice: BackendChoice) -> Result<Gpu> {
        let mut found = adapters(choice);
        found.sort_by_key(|a| std::cmp::Reverse(rank(&a.get_info())));
        let adapter = found.into_iter().next().ok_or_else(|| anyhow!("backend {choice}: {NO_ADAPTER_HELP}"))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let conv_engine = ConvEngine::choose(&adapter)?;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gpu-cnn"),
            // Timestamps, where the adapter has them, for `gpu-cnn bench`'s per-op profile.
            required_features: (adapter.features() & wgpu::Features::TIMESTAMP_QUERY) | conv_engine.features(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("cannot open a device on {} ({:?})", info.name, info.backend))?;
        let kernels = checked(&device, || Kernels::new(&device, info.device_type, conv_engine))
            .with_context(|| format!("building the compute pipelines on {} ({:?})", info.name, info.backend))?;
        Ok(Gpu { device, queue, info, limits, kernels })
    }

    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// e.g. `Vulkan: llvmpipe (LLVM 15.0.6, 256 bits), subgroup conv kernels`.
    pub fn describe(&self) -> String {
        format!("{:?}: {}, {} conv kernels", self.info.backend, self.info.name, self.kernels.conv_engine.name())
    }

    pub fn storage(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    pub fn staging(&self, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Record `dispatches` into one compute pass and submit it.
    pub fn run(&self, dispatches: &[&Dispatch]) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.queue.submit([enc.finish()]);
    }

    /// Copy `count` values at element `offset` of `src` through `staging` and return them;
    /// `encoder` may already hold work to submit first (it is submitted here).
    pub fn read_with<T: bytemuck::Pod>(
        &self,
        mut encoder: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        offset: u64,
        count: usize,
        staging: &wgpu::Buffer,
    ) -> Result<Vec<T>> {
        let size = std::mem::size_of::<T>() as u64;
        let bytes = count as u64 * size;
        if bytes > staging.size() {
            bail!("read of {bytes} bytes exceeds the {}-byte staging buffer", staging.size());
        }
        encoder.copy_buffer_to_buffer(src, offset * size, staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let slice = staging.slice(..bytes);
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            tx.send(r).ok();
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).context("waiting for the GPU")?;
        pollster::block_on(rx.receive())
            .ok_or_else(|| anyhow!("the GPU dropped a buffer mapping"))?
            .context("mapping a buffer for reading")?;
        let out = bytemuck::cast_slice::<u8, T>(&slice.get_mapped_range().context("reading a mapped buffer")?).to_vec();
        staging.unmap();
        Ok(out)
    }

    /// Read a whole buffer through a temporary staging buffer (tests and one-off reads).
    pub fn read<T: bytemuck::Pod>(&self, src: &wgpu::Buffer) -> Result<Vec<T>> {
        let staging = self.staging(src.size());
        let count = src.size() as usize / std::mem::size_of::<T>();
        self.read_with(self.device.create_command_encoder(&Default::default()), src, 0, count, &staging)
    }
}

/// Run `f` inside a validation error scope and turn any wgpu error into an `Err`.
pub fn checked<T>(device: &wgpu::Device, f: impl FnOnce() -> T) -> Result<T> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let out = f();
    if let Some(e) = pollster::block_on(oom.pop()) {
        pollster::block_on(scope.pop());
        bail!("out of GPU memory: {e}");
    }
    if let Some(e) = pollster::block_on(scope.pop()) {
        bail!("wgpu validation error: {e}");
    }
    Ok(out)
}

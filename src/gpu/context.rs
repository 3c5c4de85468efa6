//! Adapter selection and the device: one `Gpu` owns the device, the queue and
//! the compiled pipelines of its GEMM engine, and offers the few buffer helpers
//! the rest needs.

use anyhow::{anyhow, bail, Context, Result};
use std::fmt;
use std::str::FromStr;
use wgpu::util::DeviceExt;

use crate::gpu::dispatch::{record_all, Dispatch};
use crate::gpu::engine::{GemmEngine, Precision};
use crate::gpu::kernels::Kernels;

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
    /// Every GEMM engine the device can run (it is opened with all their features).
    pub engines: Vec<GemmEngine>,
    /// The pipelines of the chosen engine.
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
    /// The adapter `Gpu::new` opens for `choice`: native APIs before GL, real GPUs
    /// before software ones.
    pub fn pick_adapter(choice: BackendChoice) -> Result<wgpu::Adapter> {
        let mut found = adapters(choice);
        found.sort_by_key(|a| std::cmp::Reverse(rank(&a.get_info())));
        found.into_iter().next().ok_or_else(|| anyhow!("backend {choice}: {NO_ADAPTER_HELP}"))
    }

    /// Open the best adapter for `choice` with GEMM engine `engine` (None: the
    /// best for the adapter), asking for the adapter's own limits (the downlevel
    /// defaults allow only 4 storage buffers per stage).
    pub fn new(choice: BackendChoice, engine: Option<GemmEngine>) -> Result<Gpu> {
        Self::open(Self::pick_adapter(choice)?, engine)
    }

    /// Another device on the adapter described by `info` (a `Gpu`'s), with GEMM
    /// engine `engine`, through an instance of its own (so a software driver's
    /// caches flush when it drops).
    pub fn open_matching(info: &wgpu::AdapterInfo, engine: GemmEngine) -> Result<Gpu> {
        let choice = match info.backend {
            wgpu::Backend::Vulkan => BackendChoice::Vulkan,
            wgpu::Backend::Metal => BackendChoice::Metal,
            wgpu::Backend::Dx12 => BackendChoice::Dx12,
            wgpu::Backend::Gl => BackendChoice::Gl,
            backend => bail!("no device to open on a {backend:?} adapter"),
        };
        let adapter = adapters(choice)
            .into_iter()
            .find(|a| a.get_info() == *info)
            .ok_or_else(|| anyhow!("{} ({:?}) is no longer listed", info.name, info.backend))?;
        Self::open(adapter, Some(engine))
    }

    fn open(adapter: wgpu::Adapter, engine: Option<GemmEngine>) -> Result<Gpu> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let engine = GemmEngine::resolve(engine, &adapter)?;
        // The features of every engine the adapter runs, so tests can compare them on
        // one device; experimental ones (cooperative matrices) only when asked for.
        let experimental = wgpu::Features::all_experimental_mask();
        let engines: Vec<GemmEngine> = GemmEngine::available(&adapter)
            .into_iter()
            .filter(|e| *e == engine || !e.spec().features.intersects(experimental))
            .collect();
        let engine_features = engines.iter().fold(wgpu::Features::empty(), |f, e| f | e.spec().features);
        let experimental_features = if engine_features.intersects(experimental) {
            // SAFETY: wgpu's token for its experimental features, whose implementation
            // may still have bugs. Only the coop engine asks for one (cooperative
            // matrices), only when chosen, and it checks its results against the CPU
            // reference in tests/gpu_ops.rs wherever an adapter has them.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gpu-cnn"),
            // Timestamps, where the adapter has them, for `gpu-cnn bench`'s per-op profile.
            required_features: (adapter.features() & wgpu::Features::TIMESTAMP_QUERY) | engine_features,
            required_limits: limits.clone(),
            experimental_features,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("cannot open a device on {} ({:?})", info.name, info.backend))?;
        let max_groups = limits.max_compute_workgroups_per_dimension;
        let kernels = checked(&device, || Kernels::new(&device, info.device_type, engine, max_groups))
            .with_context(|| format!("building the compute pipelines on {} ({:?})", info.name, info.backend))?;
        Gpu { device, queue, info, limits, engines, kernels }.checked_if_mixed()
    }

    /// Self, once a mixed-precision engine has checked its products (`selfcheck`).
    fn checked_if_mixed(self) -> Result<Gpu> {
        if self.kernels.engine.precision() == Precision::Mixed {
            super::selfcheck::check_mixed_products(&self)?;
        }
        Ok(self)
    }

    /// The same device and queue running GEMM engine `engine` instead.
    pub fn with_engine(&self, engine: GemmEngine) -> Result<Gpu> {
        self.with_kernels(self.kernels_for(engine, self.limits.max_compute_workgroups_per_dimension)?)
    }

    /// The same device and queue running `kernels`, built apart (the tests run
    /// executors on `Kernels::with_operand_loads` both ways on any CPU).
    pub fn with_kernels(&self, kernels: Kernels) -> Result<Gpu> {
        Gpu {
            device: self.device.clone(),
            queue: self.queue.clone(),
            info: self.info.clone(),
            limits: self.limits.clone(),
            engines: self.engines.clone(),
            kernels,
        }
        .checked_if_mixed()
    }

    /// Another engine's pipelines on this device (tests compare every engine it can
    /// run), folding dispatches past `max_workgroups_per_dim` workgroups.
    pub fn kernels_for(&self, engine: GemmEngine, max_workgroups_per_dim: u32) -> Result<Kernels> {
        if !self.engines.contains(&engine) {
            bail!("{} cannot run the {engine} GEMM engine", self.describe());
        }
        checked(&self.device, || Kernels::new(&self.device, self.info.device_type, engine, max_workgroups_per_dim))
    }

    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// A first-contact note when this device is a software driver on the CPU: what
    /// runs, how fast to expect it, and where GL runs, the package that gives the
    /// faster Vulkan one (measured on 2 cores: lavapipe ~390 samples/s and GL/llvmpipe
    /// ~53 on a recent Intel CPU, ~100 and ~8 on a 2 GHz AMD EPYC; docs/performance.md).
    /// None on a GPU.
    pub fn software_note(&self) -> Option<String> {
        if self.info.device_type != wgpu::DeviceType::Cpu {
            return None;
        }
        Some(match self.info.backend {
            wgpu::Backend::Gl => format!(
                "note: no GPU and no Vulkan driver found, so this runs on {}, Mesa's software OpenGL on the CPU, \
                 7-12x slower than Mesa's software Vulkan (lavapipe): install it for the faster one \
                 (Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1)",
                self.info.name
            ),
            wgpu::Backend::Vulkan => "note: no GPU found, so this runs on Mesa's software Vulkan (lavapipe) on the \
                 CPU: expect 100-400 samples/s on 2 cores (the CPU matters fourfold), where a GPU trains \
                 50x faster or more"
                .to_string(),
            backend => format!(
                "note: no GPU found, so this runs on {} ({backend:?}), a software driver on the CPU",
                self.info.name
            ),
        })
    }

    /// e.g. `Vulkan: llvmpipe (LLVM 15.0.6, 256 bits), subgroup GEMM engine`.
    pub fn describe(&self) -> String {
        let e = self.kernels.engine;
        let precision = match e.precision() {
            Precision::F32 => "",
            Precision::Mixed => " (mixed precision: f16 operands, f32 sums)",
        };
        format!("{:?}: {}, {e} GEMM engine{precision}", self.info.backend, self.info.name)
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

    /// Record `dispatches` (into one compute pass, split only for texture copies:
    /// `record_all`) and submit them.
    pub fn run(&self, dispatches: &[&Dispatch]) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        record_all(&mut enc, dispatches);
        self.queue.submit([enc.finish()]);
    }

    /// Copy `count` values at element `offset` of `src` through `staging` and return them;
    /// `encoder` may already hold work to submit first (it is submitted here).
    pub fn read_with<T: bytemuck::Pod>(
        &self,
        encoder: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        offset: u64,
        count: usize,
        staging: &wgpu::Buffer,
    ) -> Result<Vec<T>> {
        let size = std::mem::size_of::<T>() as u64;
        let bytes = self.read_parts(encoder, &[(src, offset * size, count as u64 * size)], staging)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes[0]))
    }

    /// Copy each (buffer, byte offset, byte count) into `staging`, one after the
    /// other, submit `encoder` (which may hold work to run first), wait, and return
    /// each part's bytes: one round trip for several results.
    pub fn read_parts(
        &self,
        mut encoder: wgpu::CommandEncoder,
        parts: &[(&wgpu::Buffer, u64, u64)],
        staging: &wgpu::Buffer,
    ) -> Result<Vec<Vec<u8>>> {
        let total: u64 = parts.iter().map(|p| p.2).sum();
        if total > staging.size() {
            bail!("read of {total} bytes exceeds the {}-byte staging buffer", staging.size());
        }
        let mut at = 0;
        for &(src, offset, bytes) in parts {
            encoder.copy_buffer_to_buffer(src, offset, staging, at, bytes);
            at += bytes;
        }
        self.queue.submit([encoder.finish()]);
        if total == 0 {
            return Ok(parts.iter().map(|_| Vec::new()).collect());
        }
        let slice = staging.slice(..total);
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            tx.send(r).ok();
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).context("waiting for the GPU")?;
        pollster::block_on(rx.receive())
            .ok_or_else(|| anyhow!("the GPU dropped a buffer mapping"))?
            .context("mapping a buffer for reading")?;
        let out = {
            let mapped = slice.get_mapped_range().context("reading a mapped buffer")?;
            let mut at = 0usize;
            parts
                .iter()
                .map(|p| {
                    let part = mapped[at..at + p.2 as usize].to_vec();
                    at += p.2 as usize;
                    part
                })
                .collect()
        };
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

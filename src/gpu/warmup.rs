//! A software Vulkan driver's kernels compiled on two cores before the first step.
//!
//! lavapipe compiles a kernel's machine code at its first dispatch, on the queue's
//! one thread, kernel after kernel: on a machine's first run that is most of the time
//! to the first finished step (docs/performance.md, "Start-up on a cold shader
//! cache"). It keeps the results in Mesa's shader cache on disk, which every device
//! of the process reads. So before the first step, this device and a second one on
//! the same adapter, on a thread of its own, dispatch the step's pipelines over no
//! workgroups, which compiles them and runs nothing: this device from the first
//! pipeline on, the helper from the last one back, each taking the next one from a
//! shared count until they meet. The helper's device then closes, which waits for its
//! cache writes, and the step finds every kernel compiled. GPU drivers compile when a
//! pipeline is created, and GL's zero-sized dispatches compile nothing, so only a
//! Vulkan driver on the CPU gets a helper.

use anyhow::{anyhow, Result};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::executor::Optimizer;
use crate::gpu::context::Gpu;
use crate::gpu::dispatch::Dispatch;
use crate::gpu::inference::GpuInference;
use crate::gpu::trainer::GpuTrainer;
use crate::model::Model;

/// The helper thread and the count both sides take pipelines by.
pub struct Warmup {
    taken: Arc<Mutex<Taken>>,
    thread: JoinHandle<Result<()>>,
}

/// How many of a step's pipelines each device compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    pub here: usize,
    pub helper: usize,
}

/// Pipelines taken from the front (by the device that runs the step) and from the
/// back (by the helper) of the same list, built alike on both devices.
#[derive(Default)]
struct Taken {
    front: usize,
    back: usize,
}

impl Taken {
    /// The next pipeline of a list of `len` from the front or the back, if any is left.
    fn next(&mut self, len: usize, from_back: bool) -> Option<usize> {
        (self.front + self.back < len).then(|| {
            if from_back {
                self.back += 1;
                len - self.back
            } else {
                self.front += 1;
                self.front - 1
            }
        })
    }
}

impl Warmup {
    /// Whether `gpu` gets a helper: a Vulkan driver on the CPU, and a second core.
    pub fn applies(gpu: &Gpu) -> bool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        gpu.info.device_type == wgpu::DeviceType::Cpu && gpu.info.backend == wgpu::Backend::Vulkan && cores > 1
    }

    /// Start the helper on the pipelines of a training step of `model` at `batch` (as
    /// `GpuTrainer::new` sizes it); None where it does not apply. `compile_training`
    /// does this device's share.
    pub fn train(gpu: &Gpu, model: &Model, optimizer: Optimizer, batch: usize) -> Option<Warmup> {
        let model = model.clone();
        Self::spawn(gpu, move |gpu, taken| {
            let mut trainer =
                GpuTrainer::new(gpu.clone(), model.clone(), optimizer, &vec![0.0; model.num_params], batch)?;
            let n = batch.min(trainer.micro_batch());
            compile(gpu, &trainer.train_dispatches(n)?, taken, true).map(|_| ())
        })
    }

    /// As `train`, for a prediction of up to `batch` pictures (as `GpuInference::new`
    /// sizes it); `compile_prediction` does this device's share.
    pub fn predict(gpu: &Gpu, model: &Model, batch: usize) -> Option<Warmup> {
        let model = model.clone();
        Self::spawn(gpu, move |gpu, taken| {
            let mut net = GpuInference::new(gpu.clone(), model.clone(), &vec![0.0; model.num_params], batch)?;
            let n = batch.min(net.max_batch());
            compile(gpu, &net.predict_dispatches(n)?, taken, true).map(|_| ())
        })
    }

    /// Compile this device's share of a training step's pipelines (`trainer` built as
    /// `train` was told), then wait for the helper if it took any.
    pub fn compile_training(self, trainer: &mut GpuTrainer, batch: usize) -> Result<Shares> {
        let gpu = trainer.gpu().clone();
        let n = batch.min(trainer.micro_batch());
        self.meet(&gpu, &trainer.train_dispatches(n)?)
    }

    /// As `compile_training`, for a prediction (`net` built as `predict` was told).
    pub fn compile_prediction(self, net: &mut GpuInference, batch: usize) -> Result<Shares> {
        let gpu = net.gpu().clone();
        let n = batch.min(net.max_batch());
        self.meet(&gpu, &net.predict_dispatches(n)?)
    }

    /// Take pipelines from the front until none is left; then, if the helper took
    /// any, wait for it, or the step would compile them again. A helper that failed
    /// costs only time: the step compiles what it left. One that took none (all of
    /// them were in the cache before it was ready) is left to end alone.
    fn meet(self, gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<Shares> {
        let here = compile(gpu, dispatches, &self.taken, false)?;
        let helper = self.taken.lock().map_or(0, |t| t.back);
        if helper > 0 {
            let _ = self.finish();
        }
        Ok(Shares { here, helper })
    }

    /// Wait for the helper to finish and close its device (which writes out its part
    /// of the cache); it takes every pipeline nobody has taken.
    pub fn finish(self) -> Result<()> {
        self.thread.join().unwrap_or_else(|_| Err(anyhow!("the warm-up thread panicked")))
    }

    fn spawn(
        gpu: &Gpu,
        helper: impl FnOnce(&Arc<Gpu>, &Mutex<Taken>) -> Result<()> + Send + 'static,
    ) -> Option<Warmup> {
        if !Self::applies(gpu) {
            return None;
        }
        let (info, engine) = (gpu.info.clone(), gpu.kernels.engine);
        let taken = Arc::new(Mutex::new(Taken::default()));
        let shared = taken.clone();
        let thread = std::thread::spawn(move || helper(&Arc::new(Gpu::open_matching(&info, engine)?), &shared));
        Some(Warmup { taken, thread })
    }
}

/// Dispatch the pipelines of `dispatches` over no workgroups, one at a time (with all
/// of its dispatches: lavapipe compiles a variant for each set of uniform values it
/// inlines), from the front or the back of their order of first use, until none is
/// left untaken; returns how many it took.
fn compile(gpu: &Gpu, dispatches: &[&Dispatch], taken: &Mutex<Taken>, from_back: bool) -> Result<usize> {
    let mut by_pipeline: Vec<Vec<&Dispatch>> = Vec::new();
    for &d in dispatches {
        match by_pipeline.iter_mut().find(|same| same[0].pipeline() == d.pipeline()) {
            Some(same) => same.push(d),
            None => by_pipeline.push(vec![d]),
        }
    }
    let (len, mut mine) = (by_pipeline.len(), 0);
    loop {
        // Its own statement: a guard in a `while let` would hold the lock through the body.
        let next = taken.lock().map_err(|_| anyhow!("the other side panicked"))?.next(len, from_back);
        let Some(i) = next else { return Ok(mine) };
        mine += 1;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in &by_pipeline[i] {
                d.record_empty(&mut pass);
            }
        }
        gpu.queue.submit([enc.finish()]);
        gpu.device.poll(wgpu::PollType::wait_indefinitely())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_take_every_pipeline_once() {
        for len in 0..6 {
            for pattern in 0..64u32 {
                let mut t = Taken::default();
                let mut seen = Vec::new();
                let mut k = 0;
                while let Some(i) = t.next(len, pattern >> (k % 6) & 1 == 1) {
                    seen.push(i);
                    k += 1;
                }
                seen.sort();
                assert_eq!(seen, (0..len).collect::<Vec<_>>(), "len {len}, pattern {pattern:b}");
            }
        }
    }
}

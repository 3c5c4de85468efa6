//! A software Vulkan driver's kernels compiled on two cores before the first step
//! (or answer): executors built here come back with their kernels compiled.
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
//! cache writes, and the step finds every kernel compiled. The same holds for the
//! first prediction and explanation (`serve` compiles both before it listens: its page
//! asks for explanations, scripts for predictions). GPU drivers compile when a
//! pipeline is created, and GL's zero-sized dispatches compile nothing, so only a
//! Vulkan driver on the CPU gets a helper.

use anyhow::{anyhow, Result};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::data::Dataset;
use crate::executor::Optimizer;
use crate::gpu::context::Gpu;
use crate::gpu::dispatch::Dispatch;
use crate::gpu::explainer::GpuExplainer;
use crate::gpu::inference::GpuInference;
use crate::gpu::trainer::GpuTrainer;
use crate::model::Model;

/// The helper thread and the count both sides take pipelines by. Dropping it waits
/// for the thread: a helper that closes its instance, which unloads the driver, while
/// the process runs its exit handlers can crash it (docs/performance.md, "Start-up on
/// a cold shader cache (lavapipe)").
struct Warmup {
    taken: Arc<Mutex<Taken>>,
    thread: Option<JoinHandle<Result<()>>>,
}

/// How many of a step's pipelines each device compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    pub here: usize,
    pub helper: usize,
}

/// Pipelines taken from the front (by the device that runs the step) and from the
/// back (by the helper) of the same list, built alike on both devices; `closed` once
/// the front side has found none left, so a helper that is late does not build.
#[derive(Default)]
struct Taken {
    front: usize,
    back: usize,
    closed: bool,
}

impl Taken {
    /// The next pipeline of a list of `len` from the front or the back, if any is left
    /// and the front side has not given up (an error ends its compile early).
    fn next(&mut self, len: usize, from_back: bool) -> Option<usize> {
        (!self.closed && self.front + self.back < len).then(|| {
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

/// A trainer for batches of `batch`, the kernels of its first step compiled (on two
/// cores where `applies`): of `train_batch` from `data` (which it then keeps in GPU
/// memory, where it fits), or of `train_step` without; with how many each side
/// compiled, where there was a helper.
pub fn trainer(
    gpu: &Arc<Gpu>,
    model: &Model,
    optimizer: Optimizer,
    params: &[f32],
    batch: usize,
    data: Option<Arc<Dataset>>,
) -> Result<(GpuTrainer, Option<Shares>)> {
    let model = model.clone();
    // The helper's gather reads one sample: its dispatch does not depend on the
    // dataset's size, and the helper is spared uploading all of it.
    let sample = data.as_ref().map(|d| Arc::new(d.take(1)));
    compiled(gpu, params, move |gpu, params, helper| {
        let trainer = GpuTrainer::new(gpu, model.clone(), optimizer, params, batch)?;
        Ok(Training { trainer, batch, data: if helper { sample.clone() } else { data.clone() } })
    })
    .map(|(t, shares)| (t.trainer, shares))
}

/// What an inference executor will be asked, so that its warm-up compiles that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// `predict`: the probabilities.
    Predictions,
    /// `evaluate`: the loss and its sums.
    Evaluations,
}

/// An inference executor for up to `batch` pictures, the kernels of what it is
/// `asked` compiled.
pub fn inference(gpu: &Arc<Gpu>, model: &Model, params: &[f32], batch: usize, asked: Asked) -> Result<GpuInference> {
    let model = model.clone();
    compiled(gpu, params, move |gpu, params, _| Prediction::new(gpu, &model, params, batch, asked)).map(|(p, _)| p.net)
}

/// An explainer, its explanation's kernels compiled.
pub fn explainer(gpu: &Arc<Gpu>, model: &Model, params: &[f32]) -> Result<GpuExplainer> {
    let model = model.clone();
    compiled(gpu, params, move |gpu, params, _| GpuExplainer::new(gpu, model.clone(), params)).map(|(e, _)| e)
}

/// `serve`'s pair on one device, the kernels of both compiled before it listens: its
/// page asks for explanations, scripts for predictions.
pub fn inference_and_explainer(
    gpu: &Arc<Gpu>,
    model: &Model,
    params: &[f32],
    batch: usize,
) -> Result<(GpuInference, GpuExplainer)> {
    let model = model.clone();
    let build = move |gpu: Arc<Gpu>, params: &[f32], _| -> Result<(Prediction, GpuExplainer)> {
        let net = Prediction::new(gpu.clone(), &model, params, batch, Asked::Predictions)?;
        Ok((net, GpuExplainer::new(gpu, model.clone(), params)?))
    };
    compiled(gpu, params, build).map(|((p, e), _)| (p.net, e))
}

/// Executors built alike on both devices, and the dispatches of what they will run
/// first, in order of first use.
trait Executors: Sized {
    fn dispatches(&mut self) -> Result<Vec<&Dispatch>>;
}

struct Training {
    trainer: GpuTrainer,
    batch: usize,
    data: Option<Arc<Dataset>>,
}

impl Executors for Training {
    fn dispatches(&mut self) -> Result<Vec<&Dispatch>> {
        self.trainer.first_step_dispatches(self.batch, self.data.as_deref())
    }
}

struct Prediction {
    net: GpuInference,
    n: usize,
    asked: Asked,
}

impl Prediction {
    fn new(gpu: Arc<Gpu>, model: &Model, params: &[f32], batch: usize, asked: Asked) -> Result<Prediction> {
        let net = GpuInference::new(gpu, model.clone(), params, batch)?;
        Ok(Prediction { n: batch.min(net.max_batch()), net, asked })
    }
}

impl Executors for Prediction {
    fn dispatches(&mut self) -> Result<Vec<&Dispatch>> {
        self.net.answer_dispatches(self.n, self.asked == Asked::Evaluations)
    }
}

impl Executors for GpuExplainer {
    fn dispatches(&mut self) -> Result<Vec<&Dispatch>> {
        Ok(self.explain_dispatches())
    }
}

impl<A: Executors, B: Executors> Executors for (A, B) {
    fn dispatches(&mut self) -> Result<Vec<&Dispatch>> {
        let mut all = self.0.dispatches()?;
        all.extend(self.1.dispatches()?);
        Ok(all)
    }
}

/// Build executors with `params` on `gpu` and, where a helper applies, with zeros on
/// a second device of the same adapter (`build`'s last argument true), and compile
/// their dispatches from both ends.
fn compiled<E: Executors>(
    gpu: &Arc<Gpu>,
    params: &[f32],
    build: impl Fn(Arc<Gpu>, &[f32], bool) -> Result<E> + Clone + Send + 'static,
) -> Result<(E, Option<Shares>)> {
    let (on_helper, len) = (build.clone(), params.len());
    let warmup = Warmup::spawn(gpu, move |side, taken| {
        let mut built = on_helper(side.clone(), &vec![0.0; len], true)?;
        compile(side, &built.dispatches()?, taken, true).map(|_| ())
    });
    let mut built = build(gpu.clone(), params, false)?;
    let shares = match warmup {
        Some(w) => Some(w.meet(gpu, &built.dispatches()?)?),
        None => None,
    };
    Ok((built, shares))
}

/// Whether `gpu` gets a helper: a Vulkan driver on the CPU, and a second core.
pub fn applies(gpu: &Gpu) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    gpu.info.device_type == wgpu::DeviceType::Cpu && gpu.info.backend == wgpu::Backend::Vulkan && cores > 1
}

impl Warmup {
    /// Take pipelines from the front until none is left, then wait for the helper, or
    /// the step would compile what it took again. A helper that failed costs only
    /// time: the step compiles what it left. One that has not built its executors yet
    /// (all of them were in the cache before it was ready) stops without building.
    fn meet(self, gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<Shares> {
        let here = compile(gpu, dispatches, &self.taken, false)?;
        let helper = self.close();
        drop(self);
        Ok(Shares { here, helper })
    }

    /// Tell the helper not to start building; how many pipelines it took.
    fn close(&self) -> usize {
        self.taken.lock().map_or(0, |mut t| {
            t.closed = true;
            t.back
        })
    }

    fn spawn(
        gpu: &Gpu,
        helper: impl FnOnce(&Arc<Gpu>, &Mutex<Taken>) -> Result<()> + Send + 'static,
    ) -> Option<Warmup> {
        if !applies(gpu) {
            return None;
        }
        let (info, engine) = (gpu.info.clone(), gpu.kernels.engine);
        let taken = Arc::new(Mutex::new(Taken::default()));
        let shared = taken.clone();
        let thread = std::thread::spawn(move || {
            let side = Arc::new(Gpu::open_matching(&info, engine)?);
            if shared.lock().map_or(true, |t| t.closed) {
                return Ok(());
            }
            helper(&side, &shared)
        });
        Some(Warmup { taken, thread: Some(thread) })
    }
}

impl Drop for Warmup {
    /// Also on the way out of an error, so no path leaves the thread running.
    fn drop(&mut self) {
        self.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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

    #[test]
    fn a_closed_count_gives_no_more() {
        let mut t = Taken::default();
        assert_eq!(t.next(3, false), Some(0));
        t.closed = true;
        assert_eq!((t.next(3, false), t.next(3, true)), (None, None));
    }

    #[test]
    fn dropping_a_warm_up_closes_the_count_and_waits_for_its_thread() {
        let taken = Arc::new(Mutex::new(Taken::default()));
        let shared = taken.clone();
        let thread = std::thread::spawn(move || {
            while !shared.lock().unwrap().closed {
                std::thread::yield_now();
            }
            // Still running after the close: the drop must wait for this.
            std::thread::sleep(std::time::Duration::from_millis(200));
            shared.lock().unwrap().back = 7;
            Ok(())
        });
        drop(Warmup { taken: taken.clone(), thread: Some(thread) });
        assert_eq!(taken.lock().unwrap().back, 7, "the drop returned before the helper ended");
    }
}

//! The GPU training executor (the graph executor): a `GpuInference` for the
//! forward pass, plus the gradient buffers of the memory plan, the optimizer
//! state and the backward dispatches. Everything is allocated once and each
//! batch size's dispatches are built once; a training step (forward, loss,
//! backward, optimizer update) is one command submission. A batch larger than
//! the adapter's binding limit allows runs as micro-batches, one submission
//! each, whose weight gradients add up to the whole batch's (the loss is the
//! mean over the whole batch), then one update. Loss and accuracy accumulate on
//! the GPU and are read back only by `take_stats`.

use anyhow::{bail, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::data::{pixel_values, Dataset};
use crate::executor::{batch_len, check_len, check_same_kind, Inference, Optimizer, OptimizerState, Stats, Trainer};
use crate::gpu::backward;
use crate::gpu::context::{checked, Gpu};
use crate::gpu::dispatch::{record_all, Dispatch};
use crate::gpu::inference::{binding_limit, Allocator, GpuInference};
use crate::gpu::ops::input::DatasetBuffers;
use crate::gpu::ops::optim::{OptimBuffers, OptimUniform};
use crate::gpu::ops::WeightGrads;
use crate::gpu::plan::{Gradients, MemoryPlan};
use crate::model::{Model, Op};

/// Which dispatches a (micro-)batch needs: its size, the size of the batch its
/// loss is the mean over, and whether its weight gradients add to earlier ones'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    n: usize,
    mean_over: usize,
    accumulate: bool,
}

/// The dispatches after the forward pass of one (micro-)batch, in recording order.
struct Plan {
    /// Training metrics accumulation, then softmax-CE backward.
    loss: Vec<Dispatch>,
    backward: Vec<Dispatch>,
}

pub struct GpuTrainer {
    net: GpuInference,
    optimizer: Optimizer,
    grads: wgpu::Buffer, // (num_params)
    opt_m: wgpu::Buffer, // (num_params) SGD momentum / Adam m
    opt_v: wgpu::Buffer, // (num_params) Adam v (4 bytes, unused, for SGD)
    /// gradients[memory.grad_of[i]] holds position i's gradient, each (max_batch, shape).
    gradients: Vec<wgpu::Buffer>,
    scratch: wgpu::Buffer, // weight-gradient split sums, sized for the largest layer
    metrics: wgpu::Buffer, // [loss_sum, correct, samples, _] since the last take_stats
    staging: wgpu::Buffer, // parameter-sized read-backs
    optim: Dispatch,
    plans: HashMap<PlanKey, Plan>,
    /// The training set in GPU memory, once `train_batch` has been given one.
    resident: Option<Resident>,
    step: u32,
    bytes: u64,
}

/// A dataset kept in GPU memory, and the gathers built for it.
struct Resident {
    id: u64,
    pixels: usize,
    /// The largest step batch the index buffer holds.
    capacity: usize,
    images: wgpu::Buffer,  // pixel bytes, four a u32
    labels: wgpu::Buffer,  // label bytes, four a u32
    indices: wgpu::Buffer, // (capacity) u32: this step's samples
    values: wgpu::Buffer,  // (256) f32
    /// By (samples, first index): one per micro-batch shape.
    gathers: HashMap<(usize, usize), Dispatch>,
}

impl GpuTrainer {
    /// Allocate everything for batches of `max_batch` samples (larger ones run as
    /// micro-batches), or for the largest micro-batch the adapter's binding limit
    /// allows; errors (rather than failing later) when not even one sample fits.
    pub fn new(gpu: Arc<Gpu>, model: Model, optimizer: Optimizer, params: &[f32], max_batch: usize) -> Result<Self> {
        Self::with_micro_batch(gpu, model, optimizer, params, max_batch)
    }

    /// As `new`, with micro-batches of at most `micro` samples (tests use a small
    /// one to check that micro-batches add up to the whole batch).
    pub fn with_micro_batch(
        gpu: Arc<Gpu>,
        model: Model,
        optimizer: Optimizer,
        params: &[f32],
        micro: usize,
    ) -> Result<Self> {
        let memory = MemoryPlan::new(&model, Gradients::Weights);
        let net = GpuInference::with_memory(gpu.clone(), model, memory, params, micro, true)?;
        let max_batch = net.max_batch();
        let (model, memory) = (net.model(), net.memory());
        let k = &gpu.kernels;
        let np = model.num_params;
        let mut a = Allocator::new(&gpu, max_batch)?;
        let (gradients, scratch, grads, opt_m, opt_v, metrics) = checked(&gpu.device, || -> Result<_> {
            let mut gradients = Vec::new();
            for s in &memory.grads {
                gradients.push(a.batch(&s.name, &format!("the gradient of layer {}", &s.name[2..]), s.per_sample)?);
            }
            let scratch_len = model
                .layers
                .iter()
                .map(|l| match l.op.at_batch(max_batch) {
                    Op::Conv2d(d, _) => k.conv.scratch_len(d),
                    Op::Linear(d, _) => k.linear.scratch_len(d),
                    _ => 0,
                })
                .max()
                .unwrap_or(0);
            let scratch = a.fixed("weight partial sums", "the weight-gradient partial sums", scratch_len.max(1))?;
            let grads = a.fixed("grads", "the gradients", np)?;
            let opt_m = a.fixed("optimizer m", "the optimizer state", np)?;
            let opt_v =
                a.fixed("optimizer v", "the optimizer state", if optimizer.state_vectors() > 1 { np } else { 1 })?;
            let metrics = a.fixed("metrics", "the metrics", 4)?;
            Ok((gradients, scratch, grads, opt_m, opt_v, metrics))
        })??;
        let staging = gpu.staging(np as u64 * 4);
        let bytes = a.bytes + np as u64 * 4;
        let optim = checked(&gpu.device, || {
            let b = OptimBuffers { params: net.params().buffer(), grads: &grads, m: &opt_m, v: &opt_v };
            k.optim.update(optimizer, np, &b)
        })?;
        Ok(GpuTrainer {
            net,
            optimizer,
            grads,
            opt_m,
            opt_v,
            gradients,
            scratch,
            metrics,
            staging,
            optim,
            plans: HashMap::new(),
            resident: None,
            step: 0,
            bytes,
        })
    }

    /// The largest batch one submission trains; larger ones run as micro-batches of this.
    pub fn micro_batch(&self) -> usize {
        self.net.max_batch()
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        self.net.gpu()
    }

    /// Bytes of GPU memory this executor holds, its forward half (and the texture
    /// copies) included, and the training set where it is resident.
    pub fn allocated_bytes(&self) -> u64 {
        let resident = self
            .resident
            .as_ref()
            .map_or(0, |r| [&r.images, &r.labels, &r.indices, &r.values].map(|b| b.size()).iter().sum());
        self.bytes + self.net.allocated_bytes() + resident
    }

    fn grad(&self, pos: usize) -> Option<&wgpu::Buffer> {
        self.net.memory().grad_of[pos].map(|g| &self.gradients[g])
    }

    fn build_plan(&self, key: PlanKey) -> Plan {
        let (net, n) = (&self.net, key.n);
        let (model, k) = (net.model(), &net.gpu().kernels);
        let (nl, classes) = (model.layers.len(), model.classes());
        let sm = net.softmax_buffers();
        let dlogits = self.grad(nl).expect("a model ends in a Linear layer, whose output has a gradient");
        let loss = vec![
            k.softmax.accumulate(n, classes, &sm, &self.metrics),
            k.softmax.backward(n, key.mean_over, classes, &sm, dlogits),
        ];
        let weights = WeightGrads { scratch: &self.scratch, grads: &self.grads, accumulate: key.accumulate };
        let backward = backward::dispatches(net, &self.gradients, Some(weights), n);
        Plan { loss, backward }
    }

    fn ensure_plan(&mut self, key: PlanKey) -> Result<()> {
        self.net.ensure_plan(key.n)?;
        if !self.plans.contains_key(&key) {
            let plan = checked(&self.gpu().device, || self.build_plan(key))?;
            self.plans.insert(key, plan);
        }
        Ok(())
    }

    /// Every dispatch of a training step at batch `n` (at most `micro_batch()`), in
    /// order (for profiling): from the dataset in GPU memory, with its gather, once
    /// `train_batch` has put one there.
    pub fn train_dispatches(&mut self, n: usize) -> Result<Vec<&Dispatch>> {
        if n > self.micro_batch() {
            bail!("batch {n} runs as micro-batches of {}: profile a batch of at most that", self.micro_batch());
        }
        let gathered = self.resident.as_ref().is_some_and(|r| r.capacity >= n);
        let keys = self.ensure_step(n, gathered)?;
        Ok(self.chunk_dispatches(keys[0], 0, true, gathered))
    }

    /// Every dispatch of the first training step at batch `n`, micro-batches
    /// included, in order: as `train_batch` runs it from `data` (kept in GPU memory
    /// from here on, where it fits), or as `train_step` runs it without.
    pub fn first_step_dispatches(&mut self, n: usize, data: Option<&Dataset>) -> Result<Vec<&Dispatch>> {
        let gathered = match data {
            Some(d) => self.make_resident(d, n)?,
            None => false,
        };
        let keys = self.ensure_step(n, gathered)?;
        let micro = self.micro_batch();
        let last = keys.len() - 1;
        Ok(keys
            .iter()
            .enumerate()
            .flat_map(|(c, &key)| self.chunk_dispatches(key, c * micro, c == last, gathered))
            .collect())
    }

    /// The (micro-)batches a step of `n` runs as, in order.
    fn step_keys(&self, n: usize) -> Vec<PlanKey> {
        let micro = self.micro_batch();
        (0..n.div_ceil(micro))
            .map(|c| PlanKey { n: micro.min(n - c * micro), mean_over: n, accumulate: c > 0 })
            .collect()
    }

    /// Build the dispatches of a step of `n`, gathers from the resident dataset
    /// included where `gathered`; its micro-batches' keys.
    fn ensure_step(&mut self, n: usize, gathered: bool) -> Result<Vec<PlanKey>> {
        let (keys, micro) = (self.step_keys(n), self.micro_batch());
        for (c, &key) in keys.iter().enumerate() {
            self.ensure_plan(key)?;
            if gathered {
                self.ensure_gather(key.n, c * micro)?;
            }
        }
        Ok(keys)
    }

    /// What the micro-batch `key` from sample `at` of a step records, in order: its
    /// gather where `gathered`, the forward pass, the loss and the backward pass, and
    /// the update where it is the `last`. The one list a step and its warm-up read.
    fn chunk_dispatches(&self, key: PlanKey, at: usize, last: bool, gathered: bool) -> Vec<&Dispatch> {
        let gather = gathered.then(|| &self.resident.as_ref().expect("a resident dataset").gathers[&(key.n, at)]);
        let plan = &self.plans[&key];
        let update = last.then_some(&self.optim);
        let steps = self.net.forward_with_loss(key.n).chain(&plan.loss).chain(&plan.backward);
        gather.into_iter().chain(steps).chain(update).collect()
    }

    /// Keep `data` in GPU memory for steps of up to `batch` samples, unless it is
    /// there already; false where it does not fit one binding (the caller then
    /// uploads each batch).
    fn make_resident(&mut self, data: &Dataset, batch: usize) -> Result<bool> {
        if self.resident.as_ref().is_some_and(|r| r.id == data.id && r.capacity >= batch) {
            return Ok(true);
        }
        self.resident = None;
        let gpu = self.gpu().clone();
        let capacity = batch.max(data.len());
        let limit = binding_limit(&gpu);
        if data.images.len() as u64 > limit || capacity as u64 * 4 > limit {
            return Ok(false);
        }
        self.resident = Some(checked(&gpu.device, || Resident {
            id: data.id,
            pixels: data.pixels(),
            capacity,
            images: gpu.upload("dataset images", words(&data.images).as_ref()),
            labels: gpu.upload("dataset labels", words(&data.labels).as_ref()),
            indices: gpu.storage("batch indices", capacity as u64 * 4),
            values: gpu.upload("pixel values", &pixel_values()),
            gathers: HashMap::new(),
        })?);
        Ok(true)
    }

    /// One optimizer step over a batch of `n`: from `host` (images, labels), or
    /// gathered from the resident dataset at the indices written for this step.
    /// Micro-batches past the first add their weight gradients; host batches are
    /// written between submissions, gathered ones all run in one.
    fn run_step(&mut self, n: usize, host: Option<(&[f32], &[u32])>) -> Result<()> {
        let (micro, per) = (self.micro_batch(), self.net.model().input.numel());
        let keys = self.ensure_step(n, host.is_none())?;
        let gpu = self.gpu().clone();
        let q = &gpu.queue;
        self.step += 1;
        let u = OptimUniform::new(self.optimizer, self.net.model().num_params, self.step);
        q.write_buffer(&self.optim.uniform, 0, bytemuck::bytes_of(&u));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for (c, &key) in keys.iter().enumerate() {
            let at = c * micro;
            if let Some((images, labels)) = host {
                if c > 0 {
                    // The next micro-batch's upload must land after this one ran.
                    q.submit([
                        std::mem::replace(&mut enc, gpu.device.create_command_encoder(&Default::default())).finish()
                    ]);
                }
                q.write_buffer(self.net.value(0), 0, bytemuck::cast_slice(&images[at * per..(at + key.n) * per]));
                q.write_buffer(self.net.labels_buffer(), 0, bytemuck::cast_slice(&labels[at..at + key.n]));
            }
            record_all(&mut enc, &self.chunk_dispatches(key, at, c + 1 == keys.len(), host.is_none()));
        }
        // The optimizer (in the last micro-batch's dispatches) changed the weights.
        self.net.params().refresh(&mut enc);
        q.submit([enc.finish()]);
        Ok(())
    }

    /// The gather of `n` samples from entry `first` of the resident indices.
    fn ensure_gather(&mut self, n: usize, first: usize) -> Result<()> {
        let r = self.resident.as_ref().expect("a resident dataset");
        if !r.gathers.contains_key(&(n, first)) {
            let k = &self.net.gpu().kernels;
            let data = DatasetBuffers { images: &r.images, labels: &r.labels, indices: &r.indices, values: &r.values };
            let (x, labels) = (self.net.value(0), self.net.labels_buffer());
            let d = checked(&self.net.gpu().device, || k.input.gather(n, r.pixels, first, &data, x, labels))?;
            self.resident.as_mut().expect("a resident dataset").gathers.insert((n, first), d);
        }
        Ok(())
    }

    fn read(&self, src: &wgpu::Buffer, count: usize) -> Result<Vec<f32>> {
        let enc = self.gpu().device.create_command_encoder(&Default::default());
        self.gpu().read_with(enc, src, 0, count, &self.staging)
    }
}

/// `bytes` as the u32 words shaders/input.wgsl reads, four bytes a word in
/// little-endian order as GPU memory holds them: the bytes as they are, padded.
fn words(bytes: &[u8]) -> Cow<'_, [u8]> {
    match bytes.len() % 4 {
        0 => Cow::Borrowed(bytes),
        r => Cow::Owned(bytes.iter().copied().chain(std::iter::repeat_n(0, 4 - r)).collect()),
    }
}

impl Trainer for GpuTrainer {
    fn describe(&self) -> String {
        self.net.describe()
    }

    fn model(&self) -> &Model {
        self.net.model()
    }

    fn optimizer(&self) -> Optimizer {
        self.optimizer
    }

    fn set_optimizer(&mut self, opt: Optimizer) -> Result<()> {
        check_same_kind(self.optimizer, opt)?;
        self.optimizer = opt;
        Ok(())
    }

    fn train_step(&mut self, images: &[f32], labels: &[u32]) -> Result<()> {
        let n = batch_len(self.net.model(), images, Some(labels))?;
        self.run_step(n, Some((images, labels)))
    }

    fn train_batch(&mut self, data: &Dataset, indices: &[usize]) -> Result<()> {
        if !self.make_resident(data, indices.len())? {
            let (mut images, mut labels) = (Vec::new(), Vec::new());
            data.batch(indices, &mut images, &mut labels);
            return self.train_step(&images, &labels);
        }
        let resident = self.resident.as_ref().expect("made resident");
        let words: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        self.gpu().queue.write_buffer(&resident.indices, 0, bytemuck::cast_slice(&words));
        self.run_step(indices.len(), None)
    }

    fn take_stats(&mut self) -> Result<Stats> {
        let m = self.read(&self.metrics, 3)?;
        self.gpu().queue.write_buffer(&self.metrics, 0, &[0u8; 16]);
        Ok(Stats { loss_sum: m[0] as f64, correct: m[1] as u64, samples: m[2] as u64 })
    }

    fn inference(&mut self) -> &mut dyn Inference {
        &mut self.net
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        self.read(self.net.params().buffer(), self.net.model().num_params)
    }

    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        check_len("parameters", params.len(), self.net.model().num_params)?;
        self.net.params().write(&self.gpu().queue, params);
        Ok(())
    }

    fn grads(&mut self) -> Result<Vec<f32>> {
        self.read(&self.grads, self.net.model().num_params)
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        let np = self.net.model().num_params;
        let mut vectors = self.read(&self.opt_m, np)?;
        if self.optimizer.state_vectors() > 1 {
            vectors.extend(self.read(&self.opt_v, np)?);
        }
        Ok(OptimizerState { step: self.step, vectors })
    }

    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let np = self.net.model().num_params;
        check_len("optimizer state", state.vectors.len(), np * self.optimizer.state_vectors())?;
        let q = &self.gpu().queue;
        q.write_buffer(&self.opt_m, 0, bytemuck::cast_slice(&state.vectors[..np]));
        if self.optimizer.state_vectors() > 1 {
            q.write_buffer(&self.opt_v, 0, bytemuck::cast_slice(&state.vectors[np..]));
        }
        self.step = state.step;
        Ok(())
    }
}

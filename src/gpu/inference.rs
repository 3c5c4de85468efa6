//! The GPU inference executor: the model forward and the loss layer, with the
//! buffers of a forward pass only (values, max-pool argmaxes, probabilities,
//! losses, predictions). Buffers are allocated once for the largest batch that
//! both the caller asks for and the adapter's binding limit allows (larger
//! requests run in chunks of that); each batch size's dispatches are built once
//! and kept. `GpuTrainer` runs its forward pass through one of these, sharing its
//! parameter buffer.

use anyhow::{bail, Result};
use std::collections::HashMap;
use std::sync::Arc;

use crate::dims::PoolDims;
use crate::executor::{batch_len, check_len, BatchEval, Inference};
use crate::gpu::context::{checked, Gpu};
use crate::gpu::dispatch::{record_all, Dispatch};
use crate::gpu::ops::conv::ROW_PIXELS;
use crate::gpu::ops::pool::PoolOutput;
use crate::gpu::ops::softmax_ce::SoftmaxBuffers;
use crate::gpu::ops::texture_copy::{self, TextureCopies};
use crate::gpu::params::Params;
use crate::gpu::plan::{Gradients, MemoryPlan};
use crate::model::{Model, Op};

/// Divisors the shaders divide by (a plane's pixels, a kernel's taps) must stay
/// below this: shaders/udiv.wgsl divides through f32 reciprocals.
pub const MAX_DIVISOR: usize = 1 << 24;

/// The largest buffer an executor binds: the adapter's binding and buffer limits,
/// u32 element indices, and where the convolutions read texture copies of their
/// operands, the largest texture.
pub(crate) fn binding_limit(gpu: &Gpu) -> u64 {
    let limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size).min(4 * u32::MAX as u64);
    match gpu.kernels.conv.operands_from_textures() {
        true => limit.min(4 * texture_copy::max_elements(&gpu.device)),
        false => limit,
    }
}

/// Refuse a model whose planes or kernels are too large for the shaders' division.
fn check_divisors(model: &Model) -> Result<()> {
    let padded = |width: usize| width.div_ceil(ROW_PIXELS) * ROW_PIXELS;
    for l in &model.layers {
        let largest = match l.op {
            // The kernel-row products divide by planes with rows padded to ROW_PIXELS.
            Op::Conv2d(d, _) => (d.h * padded(d.w)).max(d.oh() * padded(d.ow())).max(d.c * d.k * d.k + 1),
            Op::MaxPool2d(d) => (d.h * d.w).max(d.oh() * d.ow()),
            _ => 0,
        };
        if largest >= MAX_DIVISOR {
            bail!(
                "layer {} ({}): its {largest}-element planes are too large for the GPU shaders (2^24)",
                l.name,
                l.layer
            );
        }
    }
    Ok(())
}
/// Allocates an executor's buffers, refusing (with the layer's name) any that the
/// shaders or the adapter cannot take, and counting the bytes.
pub(crate) struct Allocator<'a> {
    gpu: &'a Gpu,
    max_batch: usize,
    pub bytes: u64,
}

impl<'a> Allocator<'a> {
    pub fn new(gpu: &'a Gpu, max_batch: usize) -> Result<Self> {
        if max_batch == 0 {
            bail!("batch size must be at least 1");
        }
        Ok(Allocator { gpu, max_batch, bytes: 0 })
    }

    /// A storage buffer of `per_sample` elements for each sample of the largest batch.
    pub fn batch(&mut self, label: &str, what: &str, per_sample: usize) -> Result<wgpu::Buffer> {
        let elems = per_sample.saturating_mul(self.max_batch);
        self.fixed(label, what, elems)
    }

    /// A storage buffer of `elems` elements (4 bytes each).
    pub fn fixed(&mut self, label: &str, what: &str, elems: usize) -> Result<wgpu::Buffer> {
        let limit = binding_limit(self.gpu);
        let bytes = (elems as u64).saturating_mul(4);
        if bytes > limit {
            bail!(
                "batch size {}: {what} needs {:.1} MiB, over this adapter's {:.1} MiB buffer limit; use a smaller batch size",
                self.max_batch,
                bytes as f64 / 1048576.0,
                limit as f64 / 1048576.0
            );
        }
        self.bytes += bytes.max(4);
        Ok(self.gpu.storage(label, bytes))
    }
}

/// The dispatches of one batch size, in recording order.
struct Plan {
    forward: Vec<Dispatch>,
    /// softmax probabilities and predictions, no labels.
    predict: Dispatch,
    /// softmax probabilities, per-sample losses and predictions, from the labels.
    loss: Dispatch,
    /// The batch's loss sum and correct count into `metrics`.
    accumulate: Dispatch,
}

pub struct GpuInference {
    gpu: Arc<Gpu>,
    model: Model,
    memory: MemoryPlan,
    max_batch: usize,
    /// The flat parameter vector (num_params); a trainer's optimizer updates it in place.
    params: Params,
    /// values[memory.value_of[i]] holds position i, each (max_batch, shape).
    values: Vec<wgpu::Buffer>,
    /// Per layer: max-pool argmax (max_batch,C,OH,OW) u32.
    argmax: Vec<Option<wgpu::Buffer>>,
    labels: wgpu::Buffer,      // (max_batch) u32
    probs: wgpu::Buffer,       // (max_batch, classes)
    losses: wgpu::Buffer,      // (max_batch)
    predictions: wgpu::Buffer, // (max_batch) u32
    metrics: wgpu::Buffer,     // [loss_sum, correct, samples, _] of one evaluated chunk
    staging: wgpu::Buffer,     // every read-back
    plans: HashMap<usize, Plan>,
    /// Texture copies of the buffers the convolutions read from textures, one a
    /// buffer whatever the batch sizes planned (the trainer's and the explainer's
    /// gradients' too).
    copies: TextureCopies,
    bytes: u64,
    /// Whether a max-pool after a convolution (and its ReLU) may run in the
    /// convolution's epilogue, leaving the unpooled activations unwritten.
    fuse_pools: bool,
    /// Per value buffer of the memory plan: unwritten, so a 4-byte placeholder.
    unwritten: Vec<bool>,
}

/// The max-pool layer after convolution `conv` (and its ReLU, where the plan fuses
/// one) that the convolution can do in its epilogue on `gpu`, at batch `n`.
fn pool_in_epilogue(gpu: &Gpu, model: &Model, memory: &MemoryPlan, conv: usize, n: usize) -> Option<(usize, PoolDims)> {
    let Op::Conv2d(d, _) = model.layers[conv].op.at_batch(n) else { return None };
    let at = conv + 1 + memory.relu_fused_after(conv) as usize;
    match model.layers.get(at)?.op.at_batch(n) {
        Op::MaxPool2d(p) if gpu.kernels.conv.pools_in_epilogue(d, p) => Some((at, p)),
        _ => None,
    }
}

/// Per value buffer of `memory`: whether nothing writes or reads it, because it is
/// the output of a convolution whose max-pool runs in its epilogue (with
/// `fuse_pools`). Such pools are 2x2 of stride 2, whose backward gates its ReLU by
/// the pooled output, and whether a pool fuses does not depend on the batch size.
fn unwritten_values(gpu: &Gpu, model: &Model, memory: &MemoryPlan, fuse_pools: bool) -> Vec<bool> {
    let mut unwritten = vec![false; memory.values.len()];
    if fuse_pools {
        for conv in 0..model.layers.len() {
            if pool_in_epilogue(gpu, model, memory, conv, 1).is_some() {
                unwritten[memory.value_of[conv + 1]] = true;
            }
        }
    }
    unwritten
}

impl GpuInference {
    /// Forward buffers for batches of up to `max_batch` samples (fewer where the
    /// adapter's binding limit says so; `max_batch()` tells), the weights uploaded.
    pub fn new(gpu: Arc<Gpu>, model: Model, params: &[f32], max_batch: usize) -> Result<Self> {
        let memory = MemoryPlan::new(&model, Gradients::None);
        Self::with_memory(gpu, model, memory, params, max_batch, true)
    }

    /// As `new`, for a memory plan whose value buffers are this executor's (a
    /// trainer's plan lists gradients too, which the trainer allocates). Without
    /// `fuse_pools` every activation is written, for a caller that reads them all.
    pub(crate) fn with_memory(
        gpu: Arc<Gpu>,
        model: Model,
        memory: MemoryPlan,
        params: &[f32],
        max_batch: usize,
        fuse_pools: bool,
    ) -> Result<Self> {
        check_len("parameters", params.len(), model.num_params)?;
        check_divisors(&model)?;
        if max_batch == 0 {
            bail!("batch size must be at least 1");
        }
        // The widest buffer of one sample that does not fit is refused by the allocator.
        let max_batch = max_batch.min(memory.max_batch_within(binding_limit(&gpu)).max(1));
        let g = gpu.clone();
        let classes = model.classes();
        let unwritten = unwritten_values(&gpu, &model, &memory, fuse_pools);
        let mut a = Allocator::new(&g, max_batch)?;
        let (values, argmax, params_buf, labels, probs, losses, predictions, metrics) =
            checked(&gpu.device, || -> Result<_> {
                let what = |name: &str| format!("the output of layer {name}");
                let mut values = Vec::new();
                for (s, &unwritten) in memory.values.iter().zip(&unwritten) {
                    // A placeholder: no dispatch binds it (see `unwritten_values`).
                    let per_sample = if unwritten { 0 } else { s.per_sample };
                    values.push(a.batch(&s.name, &what(&s.name), per_sample)?);
                }
                let mut argmax = Vec::new();
                for (l, per_sample) in model.layers.iter().zip(&memory.argmax) {
                    argmax.push(match per_sample {
                        Some(n) => Some(a.batch(&format!("argmax {}", l.name), &what(&l.name), *n)?),
                        None => None,
                    });
                }
                let buffer = a.fixed("params", "the parameters", model.num_params)?;
                // A copy only where this device's kernels read one: on GPUs and Intel CPUs
                // the optimizer's steps would refresh it (0.5 MB a step) for nothing.
                let copied = g.kernels.conv.operands_from_textures();
                let params_buf = Params::new(&g, buffer, model.num_params, copied)?;
                params_buf.write(&g.queue, params);
                let labels = a.batch("labels", "the labels", 1)?;
                let probs = a.batch("probs", "the probabilities", classes)?;
                let losses = a.batch("losses", "the losses", 1)?;
                let predictions = a.batch("predictions", "the predictions", 1)?;
                let metrics = a.fixed("metrics", "the metrics", 4)?;
                Ok((values, argmax, params_buf, labels, probs, losses, predictions, metrics))
            })??;
        // The largest read-back: the probabilities, or the metrics and the predictions.
        let staging_bytes = (max_batch * classes.max(2) + 4) as u64 * 4;
        let staging = gpu.staging(staging_bytes);
        let bytes = a.bytes + staging_bytes;
        Ok(GpuInference {
            gpu,
            model,
            memory,
            max_batch,
            params: params_buf,
            values,
            argmax,
            labels,
            probs,
            losses,
            predictions,
            metrics,
            staging,
            plans: HashMap::new(),
            copies: TextureCopies::default(),
            bytes,
            fuse_pools,
            unwritten,
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Bytes of GPU memory this executor holds: its buffers and staging, and the
    /// texture copies of the weights and of the buffers its dispatches have read
    /// (a trainer's or explainer's gradients included).
    pub fn allocated_bytes(&self) -> u64 {
        self.bytes + self.params.copy_bytes() + self.copies.bytes()
    }

    pub(crate) fn copies(&self) -> &TextureCopies {
        &self.copies
    }

    pub(crate) fn memory(&self) -> &MemoryPlan {
        &self.memory
    }

    pub(crate) fn params(&self) -> &Params {
        &self.params
    }

    pub(crate) fn labels_buffer(&self) -> &wgpu::Buffer {
        &self.labels
    }

    /// The buffer holding activation position `pos` (0: the input, L: the logits).
    pub(crate) fn value(&self, pos: usize) -> &wgpu::Buffer {
        &self.values[self.memory.value_of[pos]]
    }

    pub(crate) fn argmax(&self, layer: usize) -> Option<&wgpu::Buffer> {
        self.argmax[layer].as_ref()
    }

    pub(crate) fn softmax_buffers(&self) -> SoftmaxBuffers<'_> {
        SoftmaxBuffers {
            logits: self.value(self.model.layers.len()),
            labels: &self.labels,
            probs: &self.probs,
            losses: &self.losses,
            predictions: &self.predictions,
        }
    }

    /// The max-pool layer after convolution `conv` that the convolution does in its
    /// epilogue, at batch `n`, if this executor fuses pools.
    fn pool_after(&self, conv: usize, n: usize) -> Option<(usize, PoolDims)> {
        self.fuse_pools.then(|| pool_in_epilogue(&self.gpu, &self.model, &self.memory, conv, n)).flatten()
    }

    fn build_plan(&self, n: usize) -> Plan {
        let k = &self.gpu.kernels;
        let mut forward = Vec::new();
        // A pool that its convolution's epilogue already did.
        let mut pooled = None;
        for (i, l) in self.model.layers.iter().enumerate() {
            let first = forward.len();
            let (x, y) = (self.value(i), self.value(i + 1));
            let argmax = |layer: usize| self.argmax(layer).expect("a pool's argmax");
            match l.op.at_batch(n) {
                Op::Conv2d(d, at) => {
                    let relu = self.memory.relu_fused_after(i);
                    match self.pool_after(i, n) {
                        Some((p_at, p)) => {
                            let pool = PoolOutput { d: p, y: self.value(p_at + 1), argmax: argmax(p_at) };
                            forward.push(k.conv.forward_pooled(d, at, relu, x, &self.params, pool, &self.copies));
                            pooled = Some(p_at);
                        }
                        None => {
                            let unwritten = self.unwritten[self.memory.value_of[i + 1]];
                            assert!(!unwritten, "{}: an unpooled conv output without a buffer", l.name);
                            forward.push(k.conv.forward(d, at, relu, x, &self.params, y, &self.copies))
                        }
                    }
                }
                Op::Relu(d) if !self.memory.fused_relu[i] => forward.push(k.relu.forward(d, x, y)),
                Op::MaxPool2d(_) if pooled == Some(i) => {}
                Op::MaxPool2d(d) => forward.push(k.pool.forward(d, x, y, argmax(i))),
                Op::Linear(d, at) => forward.push(k.linear.forward(d, at, x, &self.params, y)),
                Op::Relu(_) | Op::Flatten => {}
            }
            forward[first..].iter_mut().for_each(|d| d.layer = l.name.clone());
        }
        let classes = self.model.classes();
        let sm = self.softmax_buffers();
        Plan {
            forward,
            predict: k.softmax.predict(n, classes, &sm),
            loss: k.softmax.forward(n, classes, &sm),
            accumulate: k.softmax.accumulate(n, classes, &sm, &self.metrics),
        }
    }

    /// Build batch size `n`'s dispatches on first use.
    pub(crate) fn ensure_plan(&mut self, n: usize) -> Result<()> {
        if n > self.max_batch {
            bail!("a batch of {n} exceeds this executor's largest batch of {}", self.max_batch);
        }
        if !self.plans.contains_key(&n) {
            let plan = checked(&self.gpu.device, || self.build_plan(n))?;
            self.plans.insert(n, plan);
        }
        Ok(())
    }

    /// The layers' forward dispatches at batch `n`; `ensure_plan(n)` must have run.
    pub(crate) fn forward(&self, n: usize) -> &[Dispatch] {
        &self.plans[&n].forward
    }

    /// Every dispatch of a prediction at batch `n`, or with `labels` of an
    /// evaluation, in order.
    pub fn answer_dispatches(&mut self, n: usize, labels: bool) -> Result<Vec<&Dispatch>> {
        self.ensure_plan(n)?;
        Ok(self.recorded(n, labels))
    }

    /// What `encode` records at batch `n`: the forward pass, then the probabilities,
    /// or with `labels` the loss and its sums.
    fn recorded(&self, n: usize, labels: bool) -> Vec<&Dispatch> {
        let plan = &self.plans[&n];
        let tail = if labels { vec![&plan.loss, &plan.accumulate] } else { vec![&plan.predict] };
        plan.forward.iter().chain(tail).collect()
    }

    /// The forward pass and the loss layer's forward at batch `n`, in order, as a
    /// training step starts; `ensure_plan(n)` must have run.
    pub(crate) fn forward_with_loss(&self, n: usize) -> impl Iterator<Item = &Dispatch> {
        let plan = &self.plans[&n];
        plan.forward.iter().chain([&plan.loss])
    }

    /// Upload `chunk` and record its forward pass, then the probabilities, or with
    /// `labels` the loss and its sums into `metrics` (zeroed first).
    fn encode(&mut self, chunk: &[f32], labels: Option<&[u32]>) -> Result<(usize, wgpu::CommandEncoder)> {
        let n = chunk.len() / self.model.input.numel();
        self.ensure_plan(n)?;
        let q = &self.gpu.queue;
        q.write_buffer(self.value(0), 0, bytemuck::cast_slice(chunk));
        if let Some(labels) = labels {
            q.write_buffer(&self.labels, 0, bytemuck::cast_slice(labels));
            q.write_buffer(&self.metrics, 0, &[0u8; 16]);
        }
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        record_all(&mut enc, &self.recorded(n, labels.is_some()));
        Ok((n, enc))
    }
}

impl Inference for GpuInference {
    fn describe(&self) -> String {
        self.gpu.describe()
    }

    fn model(&self) -> &Model {
        &self.model
    }

    fn predict(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        let total = batch_len(&self.model, images, None)?;
        let (per, classes) = (self.model.input.numel(), self.model.classes());
        let mut out = Vec::with_capacity(total * classes);
        for chunk in images.chunks(self.max_batch * per) {
            let (n, enc) = self.encode(chunk, None)?;
            out.extend(self.gpu.read_with::<f32>(enc, &self.probs, 0, n * classes, &self.staging)?);
        }
        Ok(out)
    }

    fn evaluate(&mut self, images: &[f32], labels: &[u32]) -> Result<BatchEval> {
        batch_len(&self.model, images, Some(labels))?;
        let per = self.model.input.numel();
        let mut eval = BatchEval { predictions: Vec::with_capacity(labels.len()), ..Default::default() };
        for (chunk, lab) in images.chunks(self.max_batch * per).zip(labels.chunks(self.max_batch)) {
            let (n, enc) = self.encode(chunk, Some(lab))?;
            let parts = [(&self.metrics, 0, 8), (&self.predictions, 0, n as u64 * 4)];
            let got = self.gpu.read_parts(enc, &parts, &self.staging)?;
            let metrics: Vec<f32> = bytemuck::pod_collect_to_vec(&got[0]);
            eval.loss_sum += metrics[0] as f64;
            eval.correct += metrics[1] as u64;
            eval.predictions.extend(bytemuck::pod_collect_to_vec::<u8, u32>(&got[1]));
        }
        Ok(eval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;
    use crate::model::Shape;

    #[test]
    fn planes_at_the_shaders_limit_are_refused_padded_rows_included() {
        let conv = |h: usize, w: usize| arch::parse("c1k5 flat fc2", Shape::image(1, h, w)).unwrap();
        // 4096 x 4095 is under 2^24 pixels, but its rows padded to 4 make 2^24.
        let err = check_divisors(&conv(4096, 4095)).unwrap_err().to_string();
        assert!(err.contains("16777216-element planes"), "{err}");
        check_divisors(&conv(4095, 4095)).unwrap();
    }
}

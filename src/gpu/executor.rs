//! The graph executor: for a model and a largest batch size it allocates every
//! buffer once (weights, gradients and optimizer state stay on the GPU), builds
//! the dispatches once per batch size, and records a whole training step —
//! forward, loss, backward, optimizer — into one command submission. Loss and
//! accuracy accumulate on the GPU and are read back only by `take_stats`.

use anyhow::{bail, Result};
use std::collections::HashMap;
use std::sync::Arc;

use crate::executor::{batch_len, check_len, Executor, Optimizer, OptimizerState, Stats};
use crate::gpu::context::{checked, Gpu};
use crate::gpu::kernels::{Dispatch, OptimParams};
use crate::model::{Layer, Model};

/// The dispatches of one batch size, in recording order.
struct Plan {
    forward: Vec<Dispatch>,
    /// softmax-CE forward, metrics accumulation, softmax-CE backward.
    loss: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    /// softmax probabilities for inference.
    predict: Dispatch,
}

/// Tensors must have fewer elements than this: the shaders divide indices through
/// f32 reciprocals (shaders/fdiv.wgsl), which is exact only below 2^24.
pub const MAX_TENSOR_ELEMS: usize = 1 << 24;

pub struct GpuExecutor {
    gpu: Arc<Gpu>,
    model: Model,
    optimizer: Optimizer,
    max_batch: usize,
    params: wgpu::Buffer, // (num_params)
    grads: wgpu::Buffer,  // (num_params)
    opt_m: wgpu::Buffer,  // (num_params) SGD momentum / Adam m
    opt_v: wgpu::Buffer,  // (num_params) Adam v (4 bytes, unused, for SGD)
    /// values[value_of[i]] holds activation position i (0 = the input, L = the logits),
    /// each (max_batch, shape). Flatten, and a ReLU fused into the conv before it, alias their input.
    values: Vec<wgpu::Buffer>,
    value_of: Vec<usize>,
    /// gradients[g] for grad_of[i] = Some(g); None where no gradient is needed (the input).
    gradients: Vec<wgpu::Buffer>,
    grad_of: Vec<Option<usize>>,
    /// Whether layer i is a ReLU folded into the preceding conv's epilogue.
    fused_relu: Vec<bool>,
    argmax: Vec<Option<wgpu::Buffer>>, // per MaxPool layer: (max_batch,C,OH,OW) u32
    labels: wgpu::Buffer,              // (max_batch) u32
    probs: wgpu::Buffer,               // (max_batch, classes)
    losses: wgpu::Buffer,              // (max_batch)
    metrics: wgpu::Buffer,             // [loss_sum, correct, samples, _]
    partial: wgpu::Buffer, // weight-gradient split sums, sized for the largest conv (or linear on the conv GEMM)
    staging: wgpu::Buffer, // reused for every read-back
    optim: Dispatch,
    plans: HashMap<usize, Plan>,
    step: u32,
}

impl GpuExecutor {
    /// Allocate everything for batches of up to `max_batch` samples; errors (rather than
    /// failing later) when a buffer would exceed the adapter's limits.
    pub fn new(gpu: Arc<Gpu>, model: Model, optimizer: Optimizer, params: &[f32], max_batch: usize) -> Result<Self> {
        check_len("parameters", params.len(), model.num_params)?;
        if max_batch == 0 {
            bail!("batch size must be at least 1");
        }
        let limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
        let sized = |what: &str, elems: usize| -> Result<u64> {
            if elems >= MAX_TENSOR_ELEMS {
                bail!(
                    "batch size {max_batch}: {what} would have {elems} elements; the shaders index exactly \
                     below {MAX_TENSOR_ELEMS} (2^24); use a smaller batch size"
                );
            }
            let bytes = elems as u64 * 4;
            if bytes > limit {
                bail!(
                    "batch size {max_batch}: {what} needs {:.1} MiB, over this adapter's {:.1} MiB buffer limit; use a smaller batch size",
                    bytes as f64 / 1048576.0,
                    limit as f64 / 1048576.0
                );
            }
            Ok(bytes)
        };
        let layers = &model.layers;
        let nl = layers.len();
        let classes = model.classes();

        let mut fused_relu = vec![false; nl];
        for i in 1..nl {
            fused_relu[i] = layers[i].layer == Layer::Relu && matches!(layers[i - 1].layer, Layer::Conv2d { .. });
        }
        let gpu_ref = &gpu;
        let (values, value_of, gradients, grad_of, argmax, partial) = checked(&gpu.device, || -> Result<_> {
            let mut values = vec![gpu_ref.storage("input", sized("the input batch", max_batch * model.input.numel())?)];
            let mut value_of = vec![0usize];
            let mut gradients = Vec::new();
            let mut grad_of: Vec<Option<usize>> = vec![None];
            let mut argmax = Vec::new();
            let mut partial_len = 1usize;
            for (i, l) in layers.iter().enumerate() {
                let elems = max_batch * l.output.numel();
                let what = format!("layer {i} ({})'s output", l.name);
                if l.layer == Layer::Flatten || fused_relu[i] {
                    value_of.push(value_of[i]);
                } else {
                    values.push(gpu_ref.storage(&l.name, sized(&what, elems)?));
                    value_of.push(values.len() - 1);
                }
                if l.layer == Layer::Flatten {
                    grad_of.push(grad_of[i]);
                } else {
                    gradients.push(gpu_ref.storage(&format!("d {}", l.name), sized(&what, elems)?));
                    grad_of.push(Some(gradients.len() - 1));
                }
                argmax.push(match l.layer {
                    Layer::MaxPool2d { .. } => Some(gpu_ref.storage("argmax", sized(&what, elems)?)),
                    _ => None,
                });
                if let Some(d) = l.conv_dims(max_batch) {
                    partial_len = partial_len.max(gpu.kernels.conv_partial_len(d));
                }
                if let Some(d) = l.linear_dims(max_batch) {
                    partial_len = partial_len.max(gpu.kernels.linear_partial_len(d));
                }
            }
            let partial = gpu_ref.storage("weight partial sums", sized("weight-gradient partial sums", partial_len)?);
            Ok((values, value_of, gradients, grad_of, argmax, partial))
        })??;

        let np = model.num_params;
        let bytes = sized("the parameters", np)?;
        let (param_buf, grads, opt_m, opt_v, labels, probs, losses, metrics, staging, optim) =
            checked(&gpu.device, || {
                let param_buf = gpu.upload("params", params);
                let grads = gpu.storage("grads", bytes);
                let opt_m = gpu.storage("optimizer m", bytes);
                let opt_v = gpu.storage("optimizer v", if optimizer.state_vectors() > 1 { bytes } else { 4 });
                let labels = gpu.storage("labels", max_batch as u64 * 4);
                let probs = gpu.storage("probs", (max_batch * classes) as u64 * 4);
                let losses = gpu.storage("losses", max_batch as u64 * 4);
                let metrics = gpu.storage("metrics", 16);
                let staging = gpu.staging(bytes.max((max_batch * classes) as u64 * 4).max(16));
                let optim = gpu.kernels.optimizer(&gpu.device, optimizer, np, &param_buf, &grads, &opt_m, &opt_v);
                (param_buf, grads, opt_m, opt_v, labels, probs, losses, metrics, staging, optim)
            })?;
        Ok(GpuExecutor {
            gpu,
            model,
            optimizer,
            max_batch,
            params: param_buf,
            grads,
            opt_m,
            opt_v,
            values,
            value_of,
            gradients,
            grad_of,
            fused_relu,
            argmax,
            labels,
            probs,
            losses,
            metrics,
            partial,
            staging,
            optim,
            plans: HashMap::new(),
            step: 0,
        })
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    fn value(&self, pos: usize) -> &wgpu::Buffer {
        &self.values[self.value_of[pos]]
    }

    fn grad(&self, pos: usize) -> Option<&wgpu::Buffer> {
        self.grad_of[pos].map(|g| &self.gradients[g])
    }

    fn build_plan(&self, n: usize) -> Plan {
        let (dev, k) = (&self.gpu.device, &self.gpu.kernels);
        let nl = self.model.layers.len();
        let classes = self.model.classes();
        let mut forward = Vec::new();
        for (i, l) in self.model.layers.iter().enumerate() {
            let first = forward.len();
            let (x, y) = (self.value(i), self.value(i + 1));
            match l.layer {
                Layer::Conv2d { .. } => {
                    let s = l.params.unwrap();
                    let relu = self.fused_relu.get(i + 1).copied().unwrap_or(false);
                    forward.push(k.conv_forward(
                        dev,
                        l.conv_dims(n).unwrap(),
                        s.weight,
                        s.bias,
                        relu,
                        x,
                        &self.params,
                        y,
                    ));
                }
                Layer::Relu if !self.fused_relu[i] => forward.push(k.relu_forward(dev, n * l.output.numel(), x, y)),
                Layer::MaxPool2d { .. } => {
                    forward.push(k.pool_forward(dev, l.pool_dims(n).unwrap(), x, y, self.argmax[i].as_ref().unwrap()))
                }
                Layer::Linear { .. } => {
                    let s = l.params.unwrap();
                    forward.push(k.linear_forward(
                        dev,
                        l.linear_dims(n).unwrap(),
                        s.weight,
                        s.bias,
                        x,
                        &self.params,
                        y,
                    ));
                }
                Layer::Relu | Layer::Flatten => {}
            }
            forward[first..].iter_mut().for_each(|d: &mut Dispatch| d.layer = l.name.clone());
        }
        let logits = self.value(nl);
        let dlogits = self.grad(nl).expect("the logits have a gradient");
        let loss = vec![
            k.softmax_forward(dev, n, classes, logits, &self.labels, &self.probs, &self.losses),
            k.softmax_accumulate(dev, n, classes, &self.labels, &self.probs, &self.losses, &self.metrics),
            k.softmax_backward(dev, n, classes, &self.labels, &self.probs, dlogits),
        ];
        let mut backward = Vec::new();
        for (i, l) in self.model.layers.iter().enumerate().rev() {
            let first = backward.len();
            let dy = self.grad(i + 1).expect("every layer output has a gradient");
            let dx = self.grad(i);
            match l.layer {
                Layer::Conv2d { .. } | Layer::Linear { .. } => {
                    // Weight and bias gradients, then the input gradient (none for the first layer).
                    let (s, x) = (l.params.unwrap(), self.value(i));
                    let (params, input) = match (l.conv_dims(n), l.linear_dims(n)) {
                        (Some(d), _) => (
                            Vec::from(k.conv_backward_params(
                                dev,
                                d,
                                s.weight,
                                s.bias,
                                x,
                                dy,
                                &self.partial,
                                &self.grads,
                            )),
                            dx.map(|dx| k.conv_backward_input(dev, d, s.weight, dy, &self.params, dx)),
                        ),
                        (None, Some(d)) => (
                            k.linear_backward_params(dev, d, s.weight, s.bias, x, dy, &self.partial, &self.grads),
                            dx.map(|dx| k.linear_backward_input(dev, d, s.weight, dy, &self.params, dx)),
                        ),
                        (None, None) => unreachable!("conv and linear layers have dims"),
                    };
                    backward.extend(params);
                    backward.extend(input);
                }
                Layer::Relu => {
                    if let Some(dx) = dx {
                        backward.push(k.relu_backward(dev, n * l.output.numel(), self.value(i + 1), dy, dx));
                    }
                }
                Layer::MaxPool2d { .. } => {
                    if let Some(dx) = dx {
                        backward.push(k.pool_backward(
                            dev,
                            l.pool_dims(n).unwrap(),
                            self.argmax[i].as_ref().unwrap(),
                            dy,
                            dx,
                        ));
                    }
                }
                Layer::Flatten => {}
            }
            backward[first..].iter_mut().for_each(|d: &mut Dispatch| d.layer = l.name.clone());
        }
        let predict = k.softmax_predict(dev, n, classes, logits, &self.probs);
        Plan { forward, loss, backward, predict }
    }

    /// The dispatches for batch size `n`, built on first use and kept.
    fn plan(&mut self, n: usize) -> Result<&Plan> {
        if n > self.max_batch {
            bail!("a batch of {n} exceeds this executor's largest batch of {}", self.max_batch);
        }
        if !self.plans.contains_key(&n) {
            let plan = checked(&self.gpu.device, || self.build_plan(n))?;
            self.plans.insert(n, plan);
        }
        Ok(&self.plans[&n])
    }

    /// Every dispatch of a training step at batch `n`, in order (for profiling).
    pub fn train_dispatches(&mut self, n: usize) -> Result<Vec<&Dispatch>> {
        self.plan(n)?;
        let p = &self.plans[&n];
        Ok(p.forward.iter().chain(&p.loss).chain(&p.backward).chain([&self.optim]).collect())
    }

    fn read(&self, src: &wgpu::Buffer, count: usize) -> Result<Vec<f32>> {
        let enc = self.gpu.device.create_command_encoder(&Default::default());
        self.gpu.read_with(enc, src, 0, count, &self.staging)
    }
}

impl Executor for GpuExecutor {
    fn describe(&self) -> String {
        self.gpu.describe()
    }

    fn model(&self) -> &Model {
        &self.model
    }

    fn optimizer(&self) -> Optimizer {
        self.optimizer
    }

    fn train_step(&mut self, images: &[f32], labels: &[u32]) -> Result<()> {
        let n = batch_len(&self.model, images, Some(labels))?;
        self.plan(n)?;
        let q = &self.gpu.queue;
        q.write_buffer(self.value(0), 0, bytemuck::cast_slice(images));
        q.write_buffer(&self.labels, 0, bytemuck::cast_slice(labels));
        self.step += 1;
        let op = OptimParams::new(self.optimizer, self.model.num_params, self.step);
        q.write_buffer(&self.optim.uniform, 0, bytemuck::bytes_of(&op));
        let plan = &self.plans[&n];
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in plan.forward.iter().chain(&plan.loss).chain(&plan.backward).chain([&self.optim]) {
                d.record(&mut pass);
            }
        }
        q.submit([enc.finish()]);
        Ok(())
    }

    fn take_stats(&mut self) -> Result<Stats> {
        let m = self.read(&self.metrics, 3)?;
        self.gpu.queue.write_buffer(&self.metrics, 0, &[0u8; 16]);
        Ok(Stats { loss_sum: m[0] as f64, correct: m[1] as u64, samples: m[2] as u64 })
    }

    fn predict(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        let total = batch_len(&self.model, images, None)?;
        let per = self.model.input.numel();
        let classes = self.model.classes();
        let mut out = Vec::with_capacity(total * classes);
        for chunk in images.chunks(self.max_batch * per) {
            let n = chunk.len() / per;
            self.plan(n)?;
            self.gpu.queue.write_buffer(self.value(0), 0, bytemuck::cast_slice(chunk));
            let plan = &self.plans[&n];
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for d in plan.forward.iter().chain([&plan.predict]) {
                    d.record(&mut pass);
                }
            }
            out.extend(self.gpu.read_with::<f32>(enc, &self.probs, 0, n * classes, &self.staging)?);
        }
        Ok(out)
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        self.read(&self.params, self.model.num_params)
    }

    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        check_len("parameters", params.len(), self.model.num_params)?;
        self.gpu.queue.write_buffer(&self.params, 0, bytemuck::cast_slice(params));
        Ok(())
    }

    fn grads(&mut self) -> Result<Vec<f32>> {
        self.read(&self.grads, self.model.num_params)
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        let np = self.model.num_params;
        let mut vectors = self.read(&self.opt_m, np)?;
        if self.optimizer.state_vectors() > 1 {
            vectors.extend(self.read(&self.opt_v, np)?);
        }
        Ok(OptimizerState { step: self.step, vectors })
    }

    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let np = self.model.num_params;
        check_len("optimizer state", state.vectors.len(), np * self.optimizer.state_vectors())?;
        let q = &self.gpu.queue;
        q.write_buffer(&self.opt_m, 0, bytemuck::cast_slice(&state.vectors[..np]));
        if self.optimizer.state_vectors() > 1 {
            q.write_buffer(&self.opt_v, 0, bytemuck::cast_slice(&state.vectors[np..]));
        }
        self.step = state.step;
        Ok(())
    }
}

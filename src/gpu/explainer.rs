//! The GPU explainer: one picture forward, then backward from a one-hot at its
//! prediction down to the input (a saliency map), with every feature map, the
//! probabilities and the saliency read back in one round trip. Weight gradients
//! are never computed. `gpu-cnn explain` and `serve` run it.

use anyhow::Result;
use std::sync::Arc;

use crate::executor::{check_len, Explain, Explanation, FeatureMap, Inference};
use crate::gpu::backward;
use crate::gpu::context::{checked, Gpu};
use crate::gpu::dispatch::{record_all, Dispatch};
use crate::gpu::inference::{Allocator, GpuInference};
use crate::gpu::plan::{Gradients, MemoryPlan};
use crate::model::Model;

pub struct GpuExplainer {
    net: GpuInference,
    /// gradients[memory.grad_of[i]] holds position i's gradient (batch 1).
    gradients: Vec<wgpu::Buffer>,
    /// Forward, probabilities and predictions, one-hot at the prediction, backward.
    dispatches: Vec<Dispatch>,
    staging: wgpu::Buffer,
}

impl GpuExplainer {
    pub fn new(gpu: Arc<Gpu>, model: Model, params: &[f32]) -> Result<Self> {
        let memory = MemoryPlan::new(&model, Gradients::WeightsAndInput);
        // It shows every activation, so no convolution may pool in its epilogue and skip one.
        let mut net = GpuInference::with_memory(gpu.clone(), model, memory, params, 1, false)?;
        let mut a = Allocator::new(&gpu, 1)?;
        let gradients = checked(&gpu.device, || -> Result<Vec<wgpu::Buffer>> {
            let what = |name: &str| format!("the gradient of {}", name.trim_start_matches("d "));
            net.memory().grads.iter().map(|s| a.batch(&s.name, &what(&s.name), s.per_sample)).collect()
        })??;
        net.ensure_plan(1)?;
        let (model, k) = (net.model(), &gpu.kernels);
        let (nl, classes) = (model.layers.len(), model.classes());
        let dlogits = &gradients[net.memory().grad_of[nl].expect("the logits have a gradient")];
        let dispatches = checked(&gpu.device, || {
            let mut ds: Vec<Dispatch> = Vec::new();
            ds.push(k.softmax.predict(1, classes, &net.softmax_buffers()));
            ds.push(k.softmax.onehot_prediction(1, classes, &net.softmax_buffers(), dlogits));
            ds.extend(backward::dispatches(&net, &gradients, None, 1));
            ds
        })?;
        let readback: usize = model.feature_maps().iter().map(|&(_, pos)| model.layers[pos - 1].output.numel()).sum();
        let staging = gpu.staging(((readback + classes + 1 + model.input.numel()) * 4) as u64);
        Ok(GpuExplainer { net, gradients, dispatches, staging })
    }

    /// What `explain` records: the forward pass at batch 1, then `dispatches`.
    pub(crate) fn explain_dispatches(&self) -> Vec<&Dispatch> {
        self.net.forward(1).iter().chain(&self.dispatches).collect()
    }
}

impl Explain for GpuExplainer {
    fn describe(&self) -> String {
        self.net.describe()
    }

    fn model(&self) -> &Model {
        self.net.model()
    }

    fn explain(&mut self, image: &[f32]) -> Result<Explanation> {
        let model = self.net.model();
        check_len("a picture", image.len(), model.input.numel())?;
        let gpu = self.net.gpu();
        gpu.queue.write_buffer(self.net.value(0), 0, bytemuck::cast_slice(image));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        record_all(&mut enc, &self.explain_dispatches());
        let maps = model.feature_maps();
        let classes = model.classes();
        let bytes = |elems: usize| elems as u64 * 4;
        let sm = self.net.softmax_buffers();
        let input_grad = &self.gradients[self.net.memory().grad_of[0].expect("the input has a gradient")];
        let mut parts =
            vec![(sm.probs, 0, bytes(classes)), (sm.predictions, 0, 4), (input_grad, 0, bytes(image.len()))];
        for &(_, pos) in &maps {
            parts.push((self.net.value(pos), 0, bytes(model.layers[pos - 1].output.numel())));
        }
        let got = gpu.read_parts(enc, &parts, &self.staging)?;
        let f32s = |b: &[u8]| bytemuck::pod_collect_to_vec::<u8, f32>(b);
        Ok(Explanation {
            probs: f32s(&got[0]),
            prediction: bytemuck::pod_collect_to_vec::<u8, u32>(&got[1])[0],
            saliency: f32s(&got[2]),
            maps: maps
                .iter()
                .zip(&got[3..])
                .map(|(&(i, pos), b)| FeatureMap {
                    layer: model.layers[i].name.clone(),
                    shape: model.layers[pos - 1].output,
                    values: f32s(b),
                })
                .collect(),
        })
    }
}

//! Softmax + cross-entropy: probabilities, per-sample losses and predictions,
//! the logits' gradient, and the running loss/accuracy sums.
//! WGSL: shaders/softmax_ce.wgsl. CPU twin: `cpu::ops::softmax_ce_forward` /
//! `softmax_ce_backward`. Test: tests/gpu_ops.rs `softmax_ce`.

use crate::gpu::dispatch::{u32_of, uniform, Dispatch, Entry, Launcher};

uniform! {
    /// Batch size and class count (`SoftmaxUniform` in softmax_ce.wgsl).
    pub struct SoftmaxUniform in "softmax_ce.wgsl" {
        n: u32, classes: u32, mean_over: u32, _pad0: u32,
    }
}

/// The buffers of the loss layer; each entry point binds those it uses.
pub struct SoftmaxBuffers<'a> {
    pub logits: &'a wgpu::Buffer,      // (N,CLASSES)
    pub labels: &'a wgpu::Buffer,      // (N) u32
    pub probs: &'a wgpu::Buffer,       // (N,CLASSES)
    pub losses: &'a wgpu::Buffer,      // (N)
    pub predictions: &'a wgpu::Buffer, // (N) u32
}

#[derive(Debug, Clone)]
pub struct SoftmaxKernels {
    launcher: Launcher,
    forward: Entry,
    predict: Entry,
    backward: Entry,
    onehot_prediction: Entry,
    accumulate: Entry,
}

impl SoftmaxKernels {
    pub fn new(launcher: &Launcher) -> Self {
        let module = super::module(launcher, "softmax_ce.wgsl");
        let entry = |name: &str| launcher.entry(&module, "softmax_ce.wgsl", name, &[]);
        SoftmaxKernels {
            launcher: launcher.clone(),
            forward: entry("forward"),
            predict: entry("predict"),
            backward: entry("backward"),
            onehot_prediction: entry("onehot_prediction"),
            accumulate: entry("accumulate"),
        }
    }

    fn uniform(n: usize, classes: usize) -> SoftmaxUniform {
        SoftmaxUniform { n: u32_of(n), classes: u32_of(classes), mean_over: u32_of(n), _pad0: 0 }
    }

    /// probs, predictions and per-sample losses from logits and labels.
    pub fn forward(&self, n: usize, classes: usize, b: &SoftmaxBuffers) -> Dispatch {
        let bindings = [(1, b.logits), (2, b.labels), (3, b.probs), (4, b.losses), (7, b.predictions)];
        self.launcher.dispatch(&self.forward, &Self::uniform(n, classes), &bindings, self.launcher.grid.flat(n))
    }

    /// probs and predictions from logits alone.
    pub fn predict(&self, n: usize, classes: usize, b: &SoftmaxBuffers) -> Dispatch {
        let bindings = [(1, b.logits), (3, b.probs), (7, b.predictions)];
        self.launcher.dispatch(&self.predict, &Self::uniform(n, classes), &bindings, self.launcher.grid.flat(n))
    }

    /// dlogits (N,CLASSES) of the loss's mean over `mean_over` samples (this batch
    /// of `n`, or the whole batch a micro-batch is part of), from the forward's probs.
    pub fn backward(
        &self,
        n: usize,
        mean_over: usize,
        classes: usize,
        b: &SoftmaxBuffers,
        dlogits: &wgpu::Buffer,
    ) -> Dispatch {
        let bindings = [(2, b.labels), (3, b.probs), (5, dlogits)];
        let groups = self.launcher.grid.flat(n * classes);
        let u = SoftmaxUniform { mean_over: u32_of(mean_over), ..Self::uniform(n, classes) };
        self.launcher.dispatch(&self.backward, &u, &bindings, groups)
    }

    /// dlogits (N,CLASSES) = one-hot at each row's prediction: the gradient of the
    /// predicted logit, which backward turns into a saliency map.
    pub fn onehot_prediction(&self, n: usize, classes: usize, b: &SoftmaxBuffers, dlogits: &wgpu::Buffer) -> Dispatch {
        let bindings = [(5, dlogits), (7, b.predictions)];
        let groups = self.launcher.grid.flat(n * classes);
        self.launcher.dispatch(&self.onehot_prediction, &Self::uniform(n, classes), &bindings, groups)
    }

    /// metrics [loss_sum, correct, samples, _] += this batch's, from the forward's losses and predictions.
    pub fn accumulate(&self, n: usize, classes: usize, b: &SoftmaxBuffers, metrics: &wgpu::Buffer) -> Dispatch {
        let bindings = [(2, b.labels), (4, b.losses), (6, metrics), (7, b.predictions)];
        self.launcher.dispatch(&self.accumulate, &Self::uniform(n, classes), &bindings, [1, 1, 1])
    }
}

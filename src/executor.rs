//! What the executors offer, on the GPU and on the CPU reference alike, so a test
//! can run the same step on both and the CLI can offer `--backend cpu`:
//! `Inference` runs the model forward (forward buffers only), `Trainer` trains it
//! and hands out the `Inference` that runs its current weights.

use anyhow::{bail, Result};

use crate::data::Dataset;
use crate::model::{Model, Shape};
use crate::schedule::StepRate;

/// The optimizer and its hyper-parameters, with PyTorch's formulas: SGD with
/// momentum and L2 weight decay (`torch.optim.SGD`: the decay is added to the
/// gradient), Adam with decoupled weight decay (`torch.optim.AdamW`: the weights
/// shrink by lr·decay before the step; with decay 0 it is `torch.optim.Adam`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    Sgd { lr: f32, momentum: f32, weight_decay: f32 },
    Adam { lr: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32 },
}

impl Optimizer {
    /// Adam with PyTorch's default betas and eps.
    pub fn adam(lr: f32) -> Self {
        Optimizer::Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        Optimizer::Sgd { lr, momentum, weight_decay: 0.0 }
    }
    pub fn with_weight_decay(self, decay: f32) -> Self {
        match self {
            Optimizer::Sgd { lr, momentum, .. } => Optimizer::Sgd { lr, momentum, weight_decay: decay },
            Optimizer::Adam { lr, beta1, beta2, eps, .. } => {
                Optimizer::Adam { lr, beta1, beta2, eps, weight_decay: decay }
            }
        }
    }
    pub fn lr(&self) -> f32 {
        match *self {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => lr,
        }
    }
    pub fn weight_decay(&self) -> f32 {
        match *self {
            Optimizer::Sgd { weight_decay, .. } | Optimizer::Adam { weight_decay, .. } => weight_decay,
        }
    }
    /// This optimizer with a schedule's rate for one step: the learning rate, and
    /// the momentum (SGD's momentum, Adam's beta1) where the schedule cycles it.
    pub fn at_rate(self, rate: StepRate) -> Self {
        let lr = rate.lr as f32;
        match self {
            Optimizer::Sgd { momentum, weight_decay, .. } => {
                Optimizer::Sgd { lr, momentum: rate.momentum.map_or(momentum, |m| m as f32), weight_decay }
            }
            Optimizer::Adam { beta1, beta2, eps, weight_decay, .. } => {
                let beta1 = rate.momentum.map_or(beta1, |m| m as f32);
                Optimizer::Adam { lr, beta1, beta2, eps, weight_decay }
            }
        }
    }
    /// State vectors per parameter: SGD keeps a momentum buffer, Adam keeps m and v.
    pub fn state_vectors(&self) -> usize {
        match self {
            Optimizer::Sgd { .. } => 1,
            Optimizer::Adam { .. } => 2,
        }
    }
    /// Adam's bias corrections for step `t` (from 1), as (lr/(1-β1ᵗ), √(1-β2ᵗ)),
    /// computed in f64 once per step so CPU and GPU use the same numbers.
    pub fn adam_factors(lr: f32, beta1: f32, beta2: f32, t: u32) -> (f32, f32) {
        let bc1 = 1.0 - (beta1 as f64).powi(t as i32);
        let bc2 = 1.0 - (beta2 as f64).powi(t as i32);
        ((lr as f64 / bc1) as f32, bc2.sqrt() as f32)
    }

    /// Update number `t` (from 1) of Adam, as the CPU reference and the GPU apply it.
    pub fn adam_step(self, t: u32) -> Option<crate::cpu::ops::AdamStep> {
        match self {
            Optimizer::Adam { lr, beta1, beta2, eps, weight_decay } => {
                let (step_size, bc2_sqrt) = Self::adam_factors(lr, beta1, beta2, t);
                let shrink = lr * weight_decay;
                Some(crate::cpu::ops::AdamStep { beta1, beta2, eps, step_size, bc2_sqrt, shrink })
            }
            Optimizer::Sgd { .. } => None,
        }
    }
}

/// Loss and accuracy summed over the training samples seen since the last read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub loss_sum: f64,
    pub correct: u64,
    pub samples: u64,
}

impl Stats {
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.samples.max(1) as f64
    }
}

/// Optimizer state: the step count and the state vectors, concatenated
/// (SGD: momentum; Adam: m then v), each `num_params` long.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    pub step: u32,
    pub vectors: Vec<f32>,
}

/// What a forward pass over labelled images yields, computed on the executor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchEval {
    /// Sum of the per-sample cross-entropy losses.
    pub loss_sum: f64,
    /// Samples whose prediction equals their label.
    pub correct: u64,
    /// Per sample, the class with the largest logit (the first on ties).
    pub predictions: Vec<u32>,
}

/// Runs a model forward: no gradients, no optimizer state.
pub trait Inference {
    /// e.g. `cpu reference` or `Vulkan: llvmpipe (LLVM 15.0.6, 256 bits), subgroup GEMM engine`.
    fn describe(&self) -> String;
    fn model(&self) -> &Model;
    /// Class probabilities (n, classes) for `images` (n,c,h,w), any n.
    fn predict(&mut self, images: &[f32]) -> Result<Vec<f32>>;
    /// Loss, correct count and predictions for `images` (n,c,h,w) with `labels` (n), any n.
    fn evaluate(&mut self, images: &[f32], labels: &[u32]) -> Result<BatchEval>;
}

/// One layer's output for one picture, as `Explain` reads it back.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    /// The layer whose output this is, as in the state_dict (`conv2.2`). A ReLU
    /// that runs in a convolution's epilogue is part of it: a convolution's map is
    /// then the map after its ReLU.
    pub layer: String,
    pub shape: Shape,
    pub values: Vec<f32>,
}

/// What happens inside the network for one picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Class probabilities.
    pub probs: Vec<f32>,
    /// The class with the largest logit (the first on ties).
    pub prediction: u32,
    /// Every layer's output, in order, that is not another's: a Flatten's is its
    /// input's, a fused ReLU's its convolution's.
    pub maps: Vec<FeatureMap>,
    /// d logit[prediction] / d input, shaped as the input: which pixels raise the
    /// predicted class's score.
    pub saliency: Vec<f32>,
}

/// Runs a model forward and back for one picture, keeping what a learner wants to see.
pub trait Explain {
    /// What runs it: the adapter and its backend, or the CPU reference.
    fn describe(&self) -> String;
    fn model(&self) -> &Model;
    /// `image` is one input (c,h,w).
    fn explain(&mut self, image: &[f32]) -> Result<Explanation>;
}

/// Trains a model: weights, gradients and optimizer state live in the executor.
pub trait Trainer {
    fn describe(&self) -> String;
    fn model(&self) -> &Model;
    fn optimizer(&self) -> Optimizer;
    /// Use `opt` from the next step on (a schedule's rate); it must be the same kind
    /// of optimizer, whose state the trainer keeps.
    fn set_optimizer(&mut self, opt: Optimizer) -> Result<()>;
    /// Forward, loss, backward and optimizer update on one batch:
    /// `images` is (n,c,h,w) f32, `labels` is (n).
    fn train_step(&mut self, images: &[f32], labels: &[u32]) -> Result<()>;
    /// `train_step` on the samples `indices` of `data`. An executor may keep `data`
    /// in its own memory across calls (the GPU does), so a step moves only indices.
    fn train_batch(&mut self, data: &Dataset, indices: &[usize]) -> Result<()> {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        data.batch(indices, &mut images, &mut labels);
        self.train_step(&images, &labels)
    }
    /// Loss/accuracy accumulated by `train_step` since the last call; resets them.
    fn take_stats(&mut self) -> Result<Stats>;
    /// The model forward on the current weights (sharing them: nothing is copied).
    fn inference(&mut self) -> &mut dyn Inference;
    /// The flat parameter vector, in `Model::params` order.
    fn params(&mut self) -> Result<Vec<f32>>;
    fn set_params(&mut self, params: &[f32]) -> Result<()>;
    /// Parameter gradients of the last `train_step` (before its update was applied).
    fn grads(&mut self) -> Result<Vec<f32>>;
    fn optimizer_state(&mut self) -> Result<OptimizerState>;
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()>;
}

/// Refuse a change of optimizer kind: the state vectors would not match.
pub fn check_same_kind(current: Optimizer, next: Optimizer) -> Result<()> {
    if std::mem::discriminant(&current) != std::mem::discriminant(&next) {
        bail!("cannot switch from {current:?} to {next:?}: their states differ");
    }
    Ok(())
}

/// Check a batch against the model's input and return its size.
pub fn batch_len(model: &Model, images: &[f32], labels: Option<&[u32]>) -> Result<usize> {
    let per = model.input.numel();
    if images.is_empty() || !images.len().is_multiple_of(per) {
        bail!("a batch of images must hold a positive multiple of {per} values, got {}", images.len());
    }
    let n = images.len() / per;
    if let Some(labels) = labels {
        if labels.len() != n {
            bail!("{n} images but {} labels", labels.len());
        }
        let classes = model.classes() as u32;
        if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
            bail!("label {bad} is outside 0..{classes}");
        }
    }
    Ok(n)
}

pub fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        bail!("{what}: expected {want} values, got {got}");
    }
    Ok(())
}

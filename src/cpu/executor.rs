//! The CPU reference executors: a model run layer by layer with `cpu::ops`.
//! `CpuInference` holds the weights and the activations of the last forward
//! pass; `CpuTrainer` adds gradients and optimizer state around one.

use anyhow::Result;

use crate::cpu::ops;
use crate::executor::{
    batch_len, check_len, check_same_kind, BatchEval, Explain, Explanation, FeatureMap, Inference, Optimizer,
    OptimizerState, Stats, Trainer,
};
use crate::model::{Model, Op};

pub struct CpuInference {
    model: Model,
    params: Vec<f32>, // (num_params)
    /// acts[i] is the input of layer i, acts[L] the logits; each (N, layer shape).
    acts: Vec<Vec<f32>>,
    /// Per layer: max-pool argmax (N,C,OH,OW), empty elsewhere.
    argmax: Vec<Vec<u32>>,
}

impl CpuInference {
    pub fn new(model: Model, params: Vec<f32>) -> Result<Self> {
        check_len("parameters", params.len(), model.num_params)?;
        let layers = model.layers.len();
        Ok(CpuInference { acts: vec![Vec::new(); layers + 1], argmax: vec![Vec::new(); layers], model, params })
    }

    /// Run every layer on a batch of `n`; afterwards `acts[L]` holds the logits (N, classes).
    fn forward(&mut self, images: &[f32], n: usize) {
        self.acts[0] = images.to_vec();
        for (i, l) in self.model.layers.iter().enumerate() {
            let mut out = vec![0f32; n * l.output.numel()];
            let (inp, p) = (&self.acts[i], &self.params);
            match l.op.at_batch(n) {
                Op::Conv2d(d, at) => {
                    ops::conv2d_forward(&mut out, inp, &p[at.weight..at.bias], &p[at.bias..at.bias + d.oc], d)
                }
                Op::Relu(_) => ops::relu_forward(&mut out, inp),
                Op::MaxPool2d(d) => {
                    self.argmax[i] = vec![0; d.output_len()];
                    ops::maxpool_forward(&mut out, &mut self.argmax[i], inp, d);
                }
                Op::Flatten => out.copy_from_slice(inp),
                Op::Linear(d, at) => {
                    ops::linear_forward(&mut out, inp, &p[at.weight..at.bias], &p[at.bias..at.bias + d.out_features], d)
                }
            }
            self.acts[i + 1] = out;
        }
    }

    fn logits(&self) -> &[f32] {
        &self.acts[self.model.layers.len()]
    }

    /// Back-propagate `dlogits` (N, classes) of a batch of `n` into `grads` (laid
    /// out as the parameters); returns the gradient of the network's input, which
    /// is computed only when `input_grad` asks for it (else empty).
    fn backward(&self, dlogits: Vec<f32>, n: usize, grads: &mut [f32], input_grad: bool) -> Vec<f32> {
        let mut dout = dlogits;
        for (i, l) in self.model.layers.iter().enumerate().rev() {
            let inp = &self.acts[i];
            let want_dinp = i > 0 || input_grad;
            let mut dinp = if want_dinp { vec![0f32; inp.len()] } else { Vec::new() };
            let p = &self.params;
            match l.op.at_batch(n) {
                Op::Conv2d(d, at) => {
                    let (dw, db) = grads[at.weight..at.bias + d.oc].split_at_mut(at.bias - at.weight);
                    let w = &p[at.weight..at.bias];
                    ops::conv2d_backward(want_dinp.then_some(&mut dinp[..]), dw, db, &dout, inp, w, d);
                }
                Op::Relu(_) if want_dinp => ops::relu_backward(&mut dinp, &dout, inp),
                Op::MaxPool2d(d) if want_dinp => ops::maxpool_backward(&mut dinp, &dout, &self.argmax[i], d),
                Op::Flatten if want_dinp => dinp.copy_from_slice(&dout),
                Op::Linear(d, at) => {
                    let (dw, db) = grads[at.weight..at.bias + d.out_features].split_at_mut(at.bias - at.weight);
                    let w = &p[at.weight..at.bias];
                    ops::linear_backward(want_dinp.then_some(&mut dinp[..]), dw, db, &dout, inp, w, d);
                }
                _ => {}
            }
            dout = dinp;
        }
        dout
    }

    /// Forward and loss on a labelled batch of `n`: (probs, per-sample losses).
    fn forward_loss(&mut self, images: &[f32], labels: &[u32], n: usize) -> (Vec<f32>, Vec<f32>) {
        let classes = self.model.classes();
        self.forward(images, n);
        let (mut probs, mut losses) = (vec![0f32; n * classes], vec![0f32; n]);
        ops::softmax_ce_forward(&mut probs, &mut losses, self.logits(), labels, n, classes);
        (probs, losses)
    }
}

impl Inference for CpuInference {
    fn describe(&self) -> String {
        "cpu reference".to_string()
    }

    fn model(&self) -> &Model {
        &self.model
    }

    fn predict(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        let n = batch_len(&self.model, images, None)?;
        let classes = self.model.classes();
        self.forward(images, n);
        let mut probs = vec![0f32; n * classes];
        ops::softmax_forward(&mut probs, self.logits(), n, classes);
        Ok(probs)
    }

    fn evaluate(&mut self, images: &[f32], labels: &[u32]) -> Result<BatchEval> {
        let n = batch_len(&self.model, images, Some(labels))?;
        let (_, losses) = self.forward_loss(images, labels, n);
        let predictions = ops::argmax_rows(self.logits(), self.model.classes());
        let correct = predictions.iter().zip(labels).filter(|(p, l)| p == l).count() as u64;
        Ok(BatchEval { loss_sum: losses.iter().map(|&l| l as f64).sum(), correct, predictions })
    }
}

impl Explain for CpuInference {
    fn describe(&self) -> String {
        Inference::describe(self)
    }

    fn model(&self) -> &Model {
        &self.model
    }

    fn explain(&mut self, image: &[f32]) -> Result<Explanation> {
        check_len("a picture", image.len(), self.model.input.numel())?;
        let classes = self.model.classes();
        self.forward(image, 1);
        let mut probs = vec![0f32; classes];
        ops::softmax_forward(&mut probs, self.logits(), 1, classes);
        let prediction = ops::argmax_rows(self.logits(), classes)[0];
        let maps = self
            .model
            .feature_maps()
            .into_iter()
            .map(|(i, pos)| {
                let l = &self.model.layers[i];
                let shape = self.model.layers[pos - 1].output;
                FeatureMap { layer: l.name.clone(), shape, values: self.acts[pos].clone() }
            })
            .collect();
        let mut dlogits = vec![0f32; classes];
        dlogits[prediction as usize] = 1.0;
        let mut grads = vec![0f32; self.model.num_params];
        let saliency = self.backward(dlogits, 1, &mut grads, true);
        Ok(Explanation { probs, prediction, maps, saliency })
    }
}

pub struct CpuTrainer {
    net: CpuInference,
    optimizer: Optimizer,
    grads: Vec<f32>,     // (num_params)
    opt_state: Vec<f32>, // (state_vectors * num_params)
    step: u32,
    stats: Stats,
}

impl CpuTrainer {
    pub fn new(model: Model, optimizer: Optimizer, params: Vec<f32>) -> Result<Self> {
        let n = model.num_params;
        Ok(CpuTrainer {
            net: CpuInference::new(model, params)?,
            optimizer,
            grads: vec![0.0; n],
            opt_state: vec![0.0; optimizer.state_vectors() * n],
            step: 0,
            stats: Stats::default(),
        })
    }
}

impl Trainer for CpuTrainer {
    fn describe(&self) -> String {
        Inference::describe(&self.net)
    }

    fn model(&self) -> &Model {
        &self.net.model
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
        let n = batch_len(&self.net.model, images, Some(labels))?;
        let classes = self.net.model.classes();
        let (probs, losses) = self.net.forward_loss(images, labels, n);
        let predictions = ops::argmax_rows(self.net.logits(), classes);
        self.stats.loss_sum += losses.iter().map(|&l| l as f64).sum::<f64>();
        self.stats.correct += predictions.iter().zip(labels).filter(|(p, l)| p == l).count() as u64;
        self.stats.samples += n as u64;
        let mut dlogits = vec![0f32; n * classes];
        ops::softmax_ce_backward(&mut dlogits, &probs, labels, n, classes);
        self.net.backward(dlogits, n, &mut self.grads, false);
        self.step += 1;
        let np = self.net.model.num_params;
        let params = &mut self.net.params;
        match (self.optimizer, self.optimizer.adam_step(self.step)) {
            (Optimizer::Sgd { lr, momentum, weight_decay }, _) => {
                ops::sgd_update(params, &self.grads, &mut self.opt_state, lr, momentum, weight_decay)
            }
            (_, Some(adam)) => {
                let (m, v) = self.opt_state.split_at_mut(np);
                ops::adam_update(params, &self.grads, m, v, &adam)
            }
            (Optimizer::Adam { .. }, None) => unreachable!("adam_step is Some for Adam"),
        }
        Ok(())
    }

    fn take_stats(&mut self) -> Result<Stats> {
        Ok(std::mem::take(&mut self.stats))
    }

    fn inference(&mut self) -> &mut dyn Inference {
        &mut self.net
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        Ok(self.net.params.clone())
    }

    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        check_len("parameters", params.len(), self.net.model.num_params)?;
        self.net.params.copy_from_slice(params);
        Ok(())
    }

    fn grads(&mut self) -> Result<Vec<f32>> {
        Ok(self.grads.clone())
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        Ok(OptimizerState { step: self.step, vectors: self.opt_state.clone() })
    }

    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        check_len("optimizer state", state.vectors.len(), self.opt_state.len())?;
        self.step = state.step;
        self.opt_state.copy_from_slice(&state.vectors);
        Ok(())
    }
}

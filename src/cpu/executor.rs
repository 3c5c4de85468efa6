//! The CPU reference executor: runs a model layer by layer with `cpu::ops`.

use anyhow::Result;

use crate::cpu::ops;
use crate::executor::{batch_len, check_len, Executor, Optimizer, OptimizerState, Stats};
use crate::model::{Layer, Model};

pub struct CpuExecutor {
    model: Model,
    optimizer: Optimizer,
    params: Vec<f32>,    // (num_params)
    grads: Vec<f32>,     // (num_params)
    opt_state: Vec<f32>, // (state_vectors * num_params)
    step: u32,
    acts: Vec<Vec<f32>>, // acts[i] is the input of layer i, acts[L] the logits; each (N, layer shape)
    argmax: Vec<Vec<u32>>, // per layer: max-pool argmax (N,C,OH,OW), empty elsewhere
    stats: Stats,
}

impl CpuExecutor {
    pub fn new(model: Model, optimizer: Optimizer, params: Vec<f32>) -> Result<Self> {
        check_len("parameters", params.len(), model.num_params)?;
        let n = model.num_params;
        let layers = model.layers.len();
        Ok(CpuExecutor {
            grads: vec![0.0; n],
            opt_state: vec![0.0; optimizer.state_vectors() * n],
            step: 0,
            acts: vec![Vec::new(); layers + 1],
            argmax: vec![Vec::new(); layers],
            stats: Stats::default(),
            model,
            optimizer,
            params,
        })
    }

    /// Run every layer; afterwards `acts[L]` holds the logits (N, classes).
    fn forward(&mut self, images: &[f32], n: usize) {
        self.acts[0] = images.to_vec();
        for (i, l) in self.model.layers.iter().enumerate() {
            let mut out = vec![0f32; n * l.output.numel()];
            let inp = &self.acts[i];
            let p = &self.params;
            match l.layer {
                Layer::Conv2d { .. } => {
                    let d = l.conv_dims(n).unwrap();
                    let s = l.params.unwrap();
                    ops::conv2d_forward(&mut out, inp, &p[s.weight..s.bias], &p[s.bias..s.bias + d.oc], d);
                }
                Layer::Relu => ops::relu_forward(&mut out, inp),
                Layer::MaxPool2d { .. } => {
                    let d = l.pool_dims(n).unwrap();
                    self.argmax[i] = vec![0; d.output_len()];
                    ops::maxpool_forward(&mut out, &mut self.argmax[i], inp, d);
                }
                Layer::Flatten => out.copy_from_slice(inp),
                Layer::Linear { .. } => {
                    let d = l.linear_dims(n).unwrap();
                    let s = l.params.unwrap();
                    ops::linear_forward(&mut out, inp, &p[s.weight..s.bias], &p[s.bias..s.bias + d.outf], d);
                }
            }
            self.acts[i + 1] = out;
        }
    }

    /// Back-propagate `dlogits` (N, classes) into `self.grads`.
    fn backward(&mut self, dlogits: Vec<f32>, n: usize) {
        let mut dout = dlogits;
        for (i, l) in self.model.layers.iter().enumerate().rev() {
            let inp = &self.acts[i];
            // The network's input needs no gradient.
            let mut dinp = if i > 0 { vec![0f32; inp.len()] } else { Vec::new() };
            let want_dinp = i > 0;
            match l.layer {
                Layer::Conv2d { .. } => {
                    let d = l.conv_dims(n).unwrap();
                    let s = l.params.unwrap();
                    let (dw, db) = self.grads[s.weight..s.bias + d.oc].split_at_mut(s.bias - s.weight);
                    let w = &self.params[s.weight..s.bias];
                    ops::conv2d_backward(want_dinp.then_some(&mut dinp[..]), dw, db, &dout, inp, w, d);
                }
                Layer::Relu if want_dinp => ops::relu_backward(&mut dinp, &dout, inp),
                Layer::MaxPool2d { .. } if want_dinp => {
                    ops::maxpool_backward(&mut dinp, &dout, &self.argmax[i], l.pool_dims(n).unwrap())
                }
                Layer::Flatten if want_dinp => dinp.copy_from_slice(&dout),
                Layer::Linear { .. } => {
                    let d = l.linear_dims(n).unwrap();
                    let s = l.params.unwrap();
                    let (dw, db) = self.grads[s.weight..s.bias + d.outf].split_at_mut(s.bias - s.weight);
                    let w = &self.params[s.weight..s.bias];
                    ops::linear_backward(want_dinp.then_some(&mut dinp[..]), dw, db, &dout, inp, w, d);
                }
                _ => {}
            }
            dout = dinp;
        }
    }
}

impl Executor for CpuExecutor {
    fn describe(&self) -> String {
        "cpu reference".to_string()
    }

    fn model(&self) -> &Model {
        &self.model
    }

    fn optimizer(&self) -> Optimizer {
        self.optimizer
    }

    fn train_step(&mut self, images: &[f32], labels: &[u32]) -> Result<()> {
        let n = batch_len(&self.model, images, Some(labels))?;
        let classes = self.model.classes();
        self.forward(images, n);
        let logits = &self.acts[self.model.layers.len()];
        let mut probs = vec![0f32; n * classes];
        let mut losses = vec![0f32; n];
        ops::softmax_ce_forward(&mut probs, &mut losses, logits, labels, n, classes);
        let pred = ops::argmax_rows(&probs, classes);
        self.stats.loss_sum += losses.iter().map(|&l| l as f64).sum::<f64>();
        self.stats.correct += pred.iter().zip(labels).filter(|(&p, &l)| p == l as usize).count() as u64;
        self.stats.samples += n as u64;
        let mut dlogits = vec![0f32; n * classes];
        ops::softmax_ce_backward(&mut dlogits, &probs, labels, n, classes);
        self.backward(dlogits, n);
        self.step += 1;
        let np = self.model.num_params;
        match self.optimizer {
            Optimizer::Sgd { lr, momentum } => {
                ops::sgd_update(&mut self.params, &self.grads, &mut self.opt_state, lr, momentum)
            }
            Optimizer::Adam { lr, beta1, beta2, eps } => {
                let (m, v) = self.opt_state.split_at_mut(np);
                let (step_size, bc2_sqrt) = Optimizer::adam_factors(lr, beta1, beta2, self.step);
                ops::adam_update(&mut self.params, &self.grads, m, v, beta1, beta2, eps, step_size, bc2_sqrt)
            }
        }
        Ok(())
    }

    fn take_stats(&mut self) -> Result<Stats> {
        Ok(std::mem::take(&mut self.stats))
    }

    fn predict(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        let n = batch_len(&self.model, images, None)?;
        let classes = self.model.classes();
        self.forward(images, n);
        let mut probs = vec![0f32; n * classes];
        let mut losses = vec![0f32; n];
        let labels = vec![0u32; n];
        ops::softmax_ce_forward(&mut probs, &mut losses, &self.acts[self.model.layers.len()], &labels, n, classes);
        Ok(probs)
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        Ok(self.params.clone())
    }

    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        check_len("parameters", params.len(), self.model.num_params)?;
        self.params.copy_from_slice(params);
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

//! The memory plan: which GPU buffers a model needs and which activation
//! positions share them, worked out from the model alone (no device), so the
//! executors only allocate what it lists.
//!
//! Position i is the input of layer i (0 is the network's input, L the logits).
//! Sharing rules:
//! - Flatten is free: its output is its input's buffer, and so is its gradient.
//! - A ReLU right after a convolution runs in the convolution's epilogue, so its
//!   output is the convolution's output buffer.
//! - A 2x2 max-pool after that may run in the epilogue too, on engines that can
//!   (`ConvKernels::pools_in_epilogue`); the executor decides, and the unpooled
//!   buffer is then never written (its pool's backward reads the pooled output),
//!   so the executor gives it a 4-byte placeholder.
//! - A ReLU's backward runs in the epilogue of the next layer's input gradient
//!   when that layer is a convolution, a Linear (past a Flatten) or a max-pool:
//!   it zeroes the gradient where its own input, the ReLU's output, is not
//!   positive, and writes it straight into the ReLU's input gradient, so the
//!   ReLU's output gradient needs no buffer of its own.
//! - A position needs a gradient only if a layer before it has weights, or the
//!   caller asks for the input's gradient (a saliency map): the first layers'
//!   input gradients are never computed otherwise.

use crate::model::{Model, Op};

/// Which gradients a plan provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gradients {
    /// Inference: forward buffers only.
    None,
    /// Training: every gradient the weights need.
    Weights,
    /// Training's, and the input's too.
    WeightsAndInput,
}

/// A buffer of the plan: the layer whose output it holds (or "input") and its
/// size per sample, in elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub per_sample: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Value buffers.
    pub values: Vec<Slot>,
    /// Per position 0..=L, its value buffer.
    pub value_of: Vec<usize>,
    /// Gradient buffers.
    pub grads: Vec<Slot>,
    /// Per position 0..=L, its gradient buffer, where one is needed.
    pub grad_of: Vec<Option<usize>>,
    /// Per layer: a ReLU computed by the preceding convolution's epilogue.
    pub fused_relu: Vec<bool>,
    /// Per layer: a ReLU whose backward the next layer's input gradient does.
    pub relu_backward_fused: Vec<bool>,
    /// Per layer: its input gradient also does the backward of the ReLU before it.
    pub gates_input: Vec<bool>,
    /// Per layer: the argmax buffer of a max-pool layer (elements per sample).
    pub argmax: Vec<Option<usize>>,
}

impl MemoryPlan {
    pub fn new(model: &Model, gradients: Gradients) -> MemoryPlan {
        let layers = &model.layers;
        let fused_relu: Vec<bool> = (0..layers.len()).map(|i| model.relu_follows_conv(i)).collect();

        let mut values = vec![Slot { name: "input".into(), per_sample: model.input.numel() }];
        let mut value_of = vec![0];
        for (i, l) in layers.iter().enumerate() {
            if l.op == Op::Flatten || fused_relu[i] {
                value_of.push(value_of[i]);
            } else {
                values.push(Slot { name: l.name.clone(), per_sample: l.output.numel() });
                value_of.push(values.len() - 1);
            }
        }

        let mut relu_backward_fused = vec![false; layers.len()];
        let mut gates_input = vec![false; layers.len()];
        if gradients != Gradients::None {
            for (r, l) in layers.iter().enumerate() {
                let next = (r + 1..layers.len()).find(|&c| layers[c].op != Op::Flatten);
                if let (Op::Relu(_), Some(c)) = (l.op, next) {
                    if matches!(layers[c].op, Op::Conv2d(..) | Op::Linear(..) | Op::MaxPool2d(_)) {
                        (relu_backward_fused[r], gates_input[c]) = (true, true);
                    }
                }
            }
        }

        let mut grads = Vec::new();
        let mut grad_of = vec![None; layers.len() + 1];
        if gradients != Gradients::None {
            let mut needed = gradients == Gradients::WeightsAndInput;
            if needed {
                grads.push(Slot { name: "d input".into(), per_sample: model.input.numel() });
                grad_of[0] = Some(0);
            }
            for (i, l) in layers.iter().enumerate() {
                needed |= l.op.params().is_some();
                if !needed {
                    continue;
                }
                // The ReLU's output gradient is never written: its consumer writes the input's.
                let aliased = l.op == Op::Flatten || relu_backward_fused[i];
                if aliased && grad_of[i].is_some() {
                    grad_of[i + 1] = grad_of[i];
                } else {
                    grads.push(Slot { name: format!("d {}", l.name), per_sample: l.output.numel() });
                    grad_of[i + 1] = Some(grads.len() - 1);
                }
            }
        }

        let argmax = layers.iter().map(|l| matches!(l.op, Op::MaxPool2d(_)).then(|| l.output.numel())).collect();
        // A ReLU before every weight computes no input gradient: nothing to fuse.
        for (r, fused) in relu_backward_fused.iter_mut().enumerate() {
            if *fused && grad_of[r].is_none() {
                *fused = false;
                let c = (r + 1..layers.len()).find(|&c| layers[c].op != Op::Flatten).expect("the consumer");
                gates_input[c] = false;
            }
        }
        MemoryPlan { values, value_of, grads, grad_of, fused_relu, relu_backward_fused, gates_input, argmax }
    }

    /// Whether the layer after `conv` is a ReLU that `conv`'s epilogue computes.
    pub fn relu_fused_after(&self, conv: usize) -> bool {
        self.fused_relu.get(conv + 1).copied().unwrap_or(false)
    }

    /// The largest batch whose every per-sample buffer holds at most `max_bytes`
    /// (the adapter's binding limit): batches beyond it run as micro-batches.
    /// 0 if not even one sample fits.
    pub fn max_batch_within(&self, max_bytes: u64) -> usize {
        let widest =
            self.values.iter().chain(&self.grads).map(|s| s.per_sample).chain(self.argmax.iter().flatten().copied());
        let widest = widest.max().unwrap_or(1).max(1) as u64;
        (max_bytes / (4 * widest)).min(usize::MAX as u64) as usize
    }

    /// Elements per sample over every buffer the plan lists.
    pub fn elements_per_sample(&self) -> usize {
        let slots = self.values.iter().chain(&self.grads).map(|s| s.per_sample).sum::<usize>();
        slots + self.argmax.iter().flatten().sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;
    use crate::model::Shape;

    fn model(spec: &str) -> Model {
        arch::parse(spec, Shape::image(1, 28, 28)).unwrap()
    }

    #[test]
    fn the_tutorial_model_fuses_every_relu_and_flatten_is_free() {
        let m = Model::tutorial();
        let p = MemoryPlan::new(&m, Gradients::Weights);
        let fused: Vec<&str> =
            m.layers.iter().zip(&p.fused_relu).filter(|(_, &f)| f).map(|(l, _)| l.name.as_str()).collect();
        assert_eq!(fused, ["conv1.1", "conv2.1", "conv2.3", "conv3.1"]);
        // input, conv1.0(+relu), conv1.2, conv2.0(+relu), conv2.2(+relu), conv2.4, conv3.0(+relu, flatten), out
        let names: Vec<&str> = p.values.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["input", "conv1.0", "conv1.2", "conv2.0", "conv2.2", "conv2.4", "conv3.0", "out"]);
        let flatten = m.layers.iter().position(|l| l.op == Op::Flatten).unwrap();
        assert_eq!(p.value_of[flatten + 1], p.value_of[flatten]);
        assert_eq!(p.grad_of[flatten + 1], p.grad_of[flatten]);
        // The input needs no gradient, every other position does.
        assert_eq!(p.grad_of[0], None);
        assert!(p.grad_of[1..].iter().all(Option::is_some));
        assert_eq!(p.argmax.iter().flatten().collect::<Vec<_>>(), [&(16 * 14 * 14), &(32 * 7 * 7)]);
        // Every ReLU's backward runs in the next layer's input gradient (a pool, a conv,
        // the classifier past the Flatten), into the ReLU's input gradient.
        let names = |flags: &[bool]| -> Vec<&str> {
            m.layers.iter().zip(flags).filter(|(_, &f)| f).map(|(l, _)| l.name.as_str()).collect()
        };
        assert_eq!(names(&p.relu_backward_fused), ["conv1.1", "conv2.1", "conv2.3", "conv3.1"]);
        assert_eq!(names(&p.gates_input), ["conv1.2", "conv2.2", "conv2.4", "out"]);
        for (r, l) in m.layers.iter().enumerate().filter(|(r, _)| p.relu_backward_fused[*r]) {
            assert_eq!(p.grad_of[r + 1], p.grad_of[r], "{}: its output gradient is its input's", l.name);
        }
        // No gradient buffer is left for the ReLU outputs: conv1.0, conv1.2, conv2.0, conv2.2, conv2.4, conv3.0, out.
        assert_eq!(p.grads.len(), 7);
    }

    #[test]
    fn the_binding_limit_sets_the_largest_batch() {
        let p = MemoryPlan::new(&Model::tutorial(), Gradients::Weights);
        // conv1's 16x28x28 output (and its gradient) is the widest buffer: 50,176 bytes a sample.
        assert_eq!(p.max_batch_within(128 << 20), (128 << 20) / (4 * 16 * 28 * 28));
        assert_eq!(p.max_batch_within(4 * 16 * 28 * 28 - 1), 0);
    }

    #[test]
    fn inference_plans_no_gradients_and_fewer_elements() {
        let m = Model::tutorial();
        let inf = MemoryPlan::new(&m, Gradients::None);
        let train = MemoryPlan::new(&m, Gradients::Weights);
        assert!(inf.grads.is_empty() && inf.grad_of.iter().all(Option::is_none));
        assert_eq!(inf.values, train.values);
        assert!(inf.elements_per_sample() * 3 < train.elements_per_sample() * 2);
    }

    #[test]
    fn no_gradient_before_the_first_weights() {
        // Logistic regression: flatten first, so no position before the Linear needs a gradient.
        let m = model("flat fc10");
        let p = MemoryPlan::new(&m, Gradients::Weights);
        assert_eq!(p.grad_of, [None, None, Some(0)]);
        // A ReLU in front of the first conv neither fuses nor needs a gradient.
        let m = model("relu c4k3 relu flat fc10");
        let p = MemoryPlan::new(&m, Gradients::Weights);
        assert_eq!(p.fused_relu, [false, false, true, false, false]);
        assert_eq!(p.grad_of[..2], [None, None]);
        assert!(p.grad_of[2..].iter().all(Option::is_some));
        // The first ReLU computes no gradient, so its consumer gates nothing; the second is fused.
        assert_eq!(p.relu_backward_fused, [false, false, true, false, false]);
        assert_eq!(p.gates_input, [false, false, false, false, true]);
    }

    #[test]
    fn saliency_plans_an_input_gradient_and_relu_after_relu_is_not_fused() {
        let m = model("flat fc10");
        let p = MemoryPlan::new(&m, Gradients::WeightsAndInput);
        assert_eq!(p.grad_of, [Some(0), Some(0), Some(1)]);
        let m = model("c4k3 relu relu flat fc10");
        let p = MemoryPlan::new(&m, Gradients::None);
        assert_eq!(p.fused_relu, [false, true, false, false, false]);
        assert_eq!(p.values.len(), 4); // input, conv(+relu), relu, fc
    }
}

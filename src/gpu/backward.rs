//! The backward pass of a model as dispatches, shared by the trainer (weight and
//! bias gradients, and the input gradients that lead to them) and the explainer
//! (input gradients only, down to the network's input: a saliency map).

use crate::executor::Inference;
use crate::gpu::dispatch::Dispatch;
use crate::gpu::inference::GpuInference;
use crate::gpu::ops::pool::PoolOutput;
use crate::gpu::ops::WeightGrads;
use crate::model::Op;

/// Backward at batch `n`, last layer first, from the gradient of the logits:
/// every input gradient `net`'s memory plan lists (in `gradients`), and with
/// `weights` the weight and bias gradients too.
pub(crate) fn dispatches(
    net: &GpuInference,
    gradients: &[wgpu::Buffer],
    weights: Option<WeightGrads>,
    n: usize,
) -> Vec<Dispatch> {
    let (model, k) = (net.model(), &net.gpu().kernels);
    let grad = |pos: usize| net.memory().grad_of[pos].map(|g| &gradients[g]);
    let params = net.params();
    let mut out = Vec::new();
    for (i, l) in model.layers.iter().enumerate().rev() {
        let first = out.len();
        let (x, dx) = (net.value(i), grad(i));
        // A layer whose output needs no gradient is before every weight: nothing to do;
        // nor is there for a ReLU whose backward the next layer did.
        let Some(dy) = grad(i + 1) else { continue };
        if net.memory().relu_backward_fused[i] {
            continue;
        }
        let gate = net.memory().gates_input[i].then_some(x);
        match l.op.at_batch(n) {
            Op::Conv2d(d, at) => {
                if let Some(w) = &weights {
                    out.extend(k.conv.backward_weight_bias(d, at, x, dy, w, net.copies()));
                }
                out.extend(dx.map(|dx| k.conv.backward_input(d, at, dy, params, dx, gate, net.copies())));
            }
            Op::Linear(d, at) => {
                if let Some(w) = &weights {
                    out.extend(k.linear.backward_weight_bias(d, at, x, dy, w));
                }
                out.extend(dx.map(|dx| k.linear.backward_input(d, at, dy, params, dx, gate)));
            }
            Op::Relu(d) => out.extend(dx.map(|dx| k.relu.backward(d, net.value(i + 1), dy, dx))),
            Op::MaxPool2d(d) => {
                let argmax = net.argmax(i).expect("a pool's argmax");
                let pooled = PoolOutput { d, y: net.value(i + 1), argmax };
                out.extend(dx.map(|dx| k.pool.backward(pooled, x, dy, dx, gate.is_some())));
            }
            Op::Flatten => {}
        }
        out[first..].iter_mut().for_each(|d| d.layer = l.name.clone());
    }
    out
}

//! The reference ops in plain Rust: a forward/backward pair per op, side by side,
//! dimensions in the signature, shapes in the comments. Written for clarity; the
//! GPU kernels are checked against these, and these against finite differences.
//!
//! Generic over `f32`/`f64` so the finite-difference tests can run in f64.
//! Every backward *overwrites* its gradient outputs (each gradient buffer has
//! exactly one producer in a sequential model, so there is nothing to accumulate).

use num_traits::Float;

use crate::dims::{ConvDims, LinearDims, PoolDims};

fn cast<T: Float>(x: f64) -> T {
    T::from(x).unwrap()
}

pub fn conv2d_forward<T: Float>(out: &mut [T], inp: &[T], weight: &[T], bias: &[T], d: ConvDims) {
    // inp is (N,C,H,W), weight is (OC,C,K,K), bias is (OC), out is (N,OC,OH,OW)
    let (oh_n, ow_n, k) = (d.oh(), d.ow(), d.k);
    for n in 0..d.n {
        for oc in 0..d.oc {
            let o = &mut out[(n * d.oc + oc) * oh_n * ow_n..][..oh_n * ow_n];
            o.fill(bias[oc]);
            for c in 0..d.c {
                let plane = &inp[(n * d.c + c) * d.h * d.w..][..d.h * d.w];
                for kh in 0..k {
                    for kw in 0..k {
                        let wv = weight[((oc * d.c + c) * k + kh) * k + kw];
                        for oh in 0..oh_n {
                            let ih = (oh * d.stride + kh) as isize - d.pad as isize;
                            if ih < 0 || ih >= d.h as isize {
                                continue;
                            }
                            for ow in 0..ow_n {
                                let iw = (ow * d.stride + kw) as isize - d.pad as isize;
                                if iw >= 0 && iw < d.w as isize {
                                    o[oh * ow_n + ow] = o[oh * ow_n + ow] + wv * plane[ih as usize * d.w + iw as usize];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dinp` is skipped (None) for a network's first layer, whose input needs no gradient.
pub fn conv2d_backward<T: Float>(
    dinp: Option<&mut [T]>,
    dweight: &mut [T],
    dbias: &mut [T],
    dout: &[T],
    inp: &[T],
    weight: &[T],
    d: ConvDims,
) {
    // dout is (N,OC,OH,OW), inp/dinp are (N,C,H,W), weight/dweight are (OC,C,K,K), dbias is (OC)
    let (oh_n, ow_n, k) = (d.oh(), d.ow(), d.k);
    dweight.fill(T::zero());
    dbias.fill(T::zero());
    let mut dinp = dinp;
    if let Some(di) = dinp.as_deref_mut() {
        di.fill(T::zero());
    }
    for n in 0..d.n {
        for oc in 0..d.oc {
            let g = &dout[(n * d.oc + oc) * oh_n * ow_n..][..oh_n * ow_n];
            dbias[oc] = g.iter().fold(dbias[oc], |a, &x| a + x);
            for c in 0..d.c {
                let base = (n * d.c + c) * d.h * d.w;
                for kh in 0..k {
                    for kw in 0..k {
                        let widx = ((oc * d.c + c) * k + kh) * k + kw;
                        let wv = weight[widx];
                        let mut dw = T::zero();
                        for oh in 0..oh_n {
                            let ih = (oh * d.stride + kh) as isize - d.pad as isize;
                            if ih < 0 || ih >= d.h as isize {
                                continue;
                            }
                            for ow in 0..ow_n {
                                let iw = (ow * d.stride + kw) as isize - d.pad as isize;
                                if iw < 0 || iw >= d.w as isize {
                                    continue;
                                }
                                let at = base + ih as usize * d.w + iw as usize;
                                let gv = g[oh * ow_n + ow];
                                dw = dw + gv * inp[at];
                                if let Some(di) = dinp.as_deref_mut() {
                                    di[at] = di[at] + gv * wv;
                                }
                            }
                        }
                        dweight[widx] = dweight[widx] + dw;
                    }
                }
            }
        }
    }
}

pub fn relu_forward<T: Float>(out: &mut [T], inp: &[T]) {
    // inp and out are (N*any)
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = if x > T::zero() { x } else { T::zero() };
    }
}

pub fn relu_backward<T: Float>(dinp: &mut [T], dout: &[T], inp: &[T]) {
    // the subgradient at 0 is 0, as in PyTorch
    for ((di, &g), &x) in dinp.iter_mut().zip(dout).zip(inp) {
        *di = if x > T::zero() { g } else { T::zero() };
    }
}

pub fn maxpool_forward<T: Float>(out: &mut [T], argmax: &mut [u32], inp: &[T], d: PoolDims) {
    // inp is (N,C,H,W); out and argmax are (N,C,OH,OW); argmax holds ih*W+iw within
    // the (n,c) plane. Ties keep the first maximum in row-major order, as PyTorch.
    let (oh_n, ow_n) = (d.oh(), d.ow());
    for nc in 0..d.n * d.c {
        let plane = &inp[nc * d.h * d.w..][..d.h * d.w];
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                let mut best = oh * d.stride * d.w + ow * d.stride;
                for kh in 0..d.k {
                    for kw in 0..d.k {
                        let at = (oh * d.stride + kh) * d.w + ow * d.stride + kw;
                        if plane[at] > plane[best] {
                            best = at;
                        }
                    }
                }
                let o = (nc * oh_n + oh) * ow_n + ow;
                out[o] = plane[best];
                argmax[o] = best as u32;
            }
        }
    }
}

pub fn maxpool_backward<T: Float>(dinp: &mut [T], dout: &[T], argmax: &[u32], d: PoolDims) {
    // dout and argmax are (N,C,OH,OW), dinp is (N,C,H,W)
    let per_out = d.oh() * d.ow();
    dinp.fill(T::zero());
    for nc in 0..d.n * d.c {
        for o in 0..per_out {
            let at = nc * d.h * d.w + argmax[nc * per_out + o] as usize;
            dinp[at] = dinp[at] + dout[nc * per_out + o];
        }
    }
}

pub fn linear_forward<T: Float>(out: &mut [T], inp: &[T], weight: &[T], bias: &[T], d: LinearDims) {
    // inp is (N,IN), weight is (OUT,IN), bias is (OUT), out is (N,OUT)
    for n in 0..d.n {
        let x = &inp[n * d.in_features..][..d.in_features];
        for o in 0..d.out_features {
            let w = &weight[o * d.in_features..][..d.in_features];
            out[n * d.out_features + o] = x.iter().zip(w).fold(bias[o], |a, (&xi, &wi)| a + xi * wi);
        }
    }
}

pub fn linear_backward<T: Float>(
    dinp: Option<&mut [T]>,
    dweight: &mut [T],
    dbias: &mut [T],
    dout: &[T],
    inp: &[T],
    weight: &[T],
    d: LinearDims,
) {
    // dout is (N,OUT), inp/dinp are (N,IN), weight/dweight are (OUT,IN), dbias is (OUT)
    dweight.fill(T::zero());
    dbias.fill(T::zero());
    let mut dinp = dinp;
    if let Some(di) = dinp.as_deref_mut() {
        di.fill(T::zero());
    }
    for n in 0..d.n {
        for o in 0..d.out_features {
            let g = dout[n * d.out_features + o];
            dbias[o] = dbias[o] + g;
            for i in 0..d.in_features {
                dweight[o * d.in_features + i] = dweight[o * d.in_features + i] + g * inp[n * d.in_features + i];
                if let Some(di) = dinp.as_deref_mut() {
                    di[n * d.in_features + i] = di[n * d.in_features + i] + g * weight[o * d.in_features + i];
                }
            }
        }
    }
}

/// log(sum(exp(z))) of one row, with the row's max subtracted so nothing overflows.
fn log_sum_exp<T: Float>(z: &[T]) -> T {
    let max = z.iter().fold(T::neg_infinity(), |m, &x| m.max(x));
    max + z.iter().fold(T::zero(), |s, &x| s + (x - max).exp()).ln()
}

/// Softmax of each row: inference, where there are no labels.
pub fn softmax_forward<T: Float>(probs: &mut [T], logits: &[T], n: usize, classes: usize) {
    // logits and probs are (N,CLASSES)
    for b in 0..n {
        let z = &logits[b * classes..][..classes];
        let lse = log_sum_exp(z);
        for c in 0..classes {
            probs[b * classes + c] = (z[c] - lse).exp();
        }
    }
}

/// Fused, numerically stable softmax + cross-entropy. Returns the mean loss.
pub fn softmax_ce_forward<T: Float>(
    probs: &mut [T],
    losses: &mut [T],
    logits: &[T],
    labels: &[u32],
    n: usize,
    classes: usize,
) -> T {
    // logits and probs are (N,CLASSES), labels and losses are (N)
    softmax_forward(probs, logits, n, classes);
    let mut total = T::zero();
    for b in 0..n {
        let z = &logits[b * classes..][..classes];
        losses[b] = log_sum_exp(z) - z[labels[b] as usize];
        total = total + losses[b];
    }
    total / cast(n as f64)
}

pub fn softmax_ce_backward<T: Float>(dlogits: &mut [T], probs: &[T], labels: &[u32], n: usize, classes: usize) {
    // d(mean loss)/d logits = (softmax - onehot) / N
    let inv_n = T::one() / cast(n as f64);
    for b in 0..n {
        for c in 0..classes {
            let onehot = if labels[b] as usize == c { T::one() } else { T::zero() };
            dlogits[b * classes + c] = (probs[b * classes + c] - onehot) * inv_n;
        }
    }
}

/// Index of the largest value in each row (first on ties): a row of logits gives
/// its prediction.
pub fn argmax_rows<T: Float>(rows: &[T], classes: usize) -> Vec<u32> {
    rows.chunks(classes)
        .map(|row| (0..classes).fold(0, |best, c| if row[c] > row[best] { c } else { best }) as u32)
        .collect()
}

/// PyTorch's SGD with momentum (dampening 0, no Nesterov) and L2 weight decay:
/// g += decay·p; buf = momentum·buf + g; p -= lr·buf. With buf starting at zero,
/// the first step equals PyTorch's `buf = g`.
pub fn sgd_update(params: &mut [f32], grads: &[f32], buf: &mut [f32], lr: f32, momentum: f32, decay: f32) {
    for ((p, &g), b) in params.iter_mut().zip(grads).zip(buf.iter_mut()) {
        *b = momentum * *b + (g + decay * *p);
        *p -= lr * *b;
    }
}

/// One Adam step's hyper-parameters, as the GPU's uniform holds them.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// lr/(1-β1ᵗ) and √(1-β2ᵗ), from `Optimizer::adam_factors`.
    pub step_size: f32,
    pub bc2_sqrt: f32,
    /// lr·weight_decay: the weights shrink by this share first (AdamW).
    pub shrink: f32,
}

/// PyTorch's AdamW (no amsgrad; Adam when `shrink` is 0):
/// p -= shrink·p; p -= lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + eps).
pub fn adam_update(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep) {
    for i in 0..params.len() {
        let g = grads[i];
        m[i] = s.beta1 * m[i] + (1.0 - s.beta1) * g;
        v[i] = s.beta2 * v[i] + (1.0 - s.beta2) * g * g;
        let p = params[i] * (1.0 - s.shrink);
        params[i] = p - s.step_size * m[i] / (v[i].sqrt() / s.bc2_sqrt + s.eps);
    }
}

// Softmax + cross-entropy, fused and numerically stable (log-sum-exp with the
// row max subtracted). The loss is the mean over the batch, so the backward is
// (softmax - onehot) / N. The prediction of a row is its largest logit (the
// first on ties). `accumulate` adds the batch's loss and correct count into a
// small metrics buffer that stays on the GPU until the host asks for it. A batch
// split into micro-batches takes the mean over the whole batch (`mean_over`).
// #include "grid.wgsl"

struct SoftmaxUniform {
    n: u32, classes: u32,
    mean_over: u32, // backward: the batch the loss is the mean over (n, or more for a micro-batch)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> U: SoftmaxUniform;
@group(0) @binding(1) var<storage, read> logits: array<f32>;           // (N,CLASSES)
@group(0) @binding(2) var<storage, read> labels: array<u32>;           // (N)
@group(0) @binding(3) var<storage, read_write> probs: array<f32>;      // (N,CLASSES)
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;     // (N)
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;    // (N,CLASSES)
@group(0) @binding(6) var<storage, read_write> metrics: array<f32>;    // [loss_sum, correct, samples, _]
@group(0) @binding(7) var<storage, read_write> predictions: array<u32>; // (N)

const REDUCE_THREADS: u32 = 256u;
var<workgroup> red_loss: array<f32, REDUCE_THREADS>;
var<workgroup> red_correct: array<f32, REDUCE_THREADS>;

// Writes row b's probabilities and prediction; returns its log-sum-exp.
fn softmax_row(b: u32) -> f32 {
    let base = b * U.classes;
    var m = logits[base];
    var best = 0u;
    for (var c = 1u; c < U.classes; c++) {
        let z = logits[base + c];
        if (z > m) {
            m = z;
            best = c;
        }
    }
    var s = 0.0;
    for (var c = 0u; c < U.classes; c++) {
        s += exp(logits[base + c] - m);
    }
    let lse = m + log(s);
    for (var c = 0u; c < U.classes; c++) {
        probs[base + c] = exp(logits[base + c] - lse);
    }
    predictions[b] = best;
    return lse;
}

// One thread per row: probabilities, prediction and per-sample loss.
@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn forward(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_thread(li, wid, nwg);
    if (b < U.n) {
        let lse = softmax_row(b);
        losses[b] = lse - logits[b * U.classes + labels[b]];
    }
}

// Inference without labels: probabilities and predictions only.
@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn predict(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_thread(li, wid, nwg);
    if (b < U.n) {
        softmax_row(b);
    }
}

@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn backward(@builtin(local_invocation_index) li: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_thread(li, wid, nwg);
    if (i < U.n * U.classes) {
        let b = i / U.classes;
        let onehot = select(0.0, 1.0, labels[b] == i % U.classes);
        dlogits[i] = (probs[i] - onehot) / f32(U.mean_over);
    }
}

// Saliency: the gradient of each row's predicted logit, a one-hot at the prediction.
@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn onehot_prediction(@builtin(local_invocation_index) li: u32,
                     @builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_thread(li, wid, nwg);
    if (i < U.n * U.classes) {
        dlogits[i] = select(0.0, 1.0, predictions[i / U.classes] == i % U.classes);
    }
}

// One workgroup: sums the batch's losses and correct predictions into `metrics`.
@compute @workgroup_size(REDUCE_THREADS)
fn accumulate(@builtin(local_invocation_index) li: u32) {
    var loss = 0.0;
    var correct = 0.0;
    for (var b = li; b < U.n; b += REDUCE_THREADS) {
        loss += losses[b];
        correct += select(0.0, 1.0, predictions[b] == labels[b]);
    }
    red_loss[li] = loss;
    red_correct[li] = correct;
    workgroupBarrier();
    for (var half = REDUCE_THREADS / 2u; half > 0u; half >>= 1u) {
        if (li < half) {
            red_loss[li] += red_loss[li + half];
            red_correct[li] += red_correct[li + half];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        metrics[0] += red_loss[0];
        metrics[1] += red_correct[0];
        metrics[2] += f32(U.n);
    }
}

// Softmax + cross-entropy, fused and numerically stable (log-sum-exp with the
// row max subtracted). The loss is the mean over the batch, so the backward is
// (softmax - onehot) / N. `accumulate` adds the batch's loss and correct count
// into a small metrics buffer that stays on the GPU until the host asks for it.

struct Params {
    n: u32, classes: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;        // (N,CLASSES)
@group(0) @binding(2) var<storage, read> labels: array<u32>;        // (N)
@group(0) @binding(3) var<storage, read_write> probs: array<f32>;   // (N,CLASSES)
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;  // (N)
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>; // (N,CLASSES)
@group(0) @binding(6) var<storage, read_write> metrics: array<f32>; // [loss_sum, correct, samples, _]

var<workgroup> red_loss: array<f32, 256>;
var<workgroup> red_correct: array<f32, 256>;

fn flat_index(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + li;
}

// Writes row b's probabilities and returns its log-sum-exp.
fn softmax_row(b: u32) -> f32 {
    let base = b * P.classes;
    var m = logits[base];
    for (var c = 1u; c < P.classes; c++) {
        m = max(m, logits[base + c]);
    }
    var s = 0.0;
    for (var c = 0u; c < P.classes; c++) {
        s += exp(logits[base + c] - m);
    }
    let lse = m + log(s);
    for (var c = 0u; c < P.classes; c++) {
        probs[base + c] = exp(logits[base + c] - lse);
    }
    return lse;
}

// One thread per row: probabilities and per-sample loss.
@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_index(li, wid, nwg);
    if (b < P.n) {
        let lse = softmax_row(b);
        losses[b] = lse - logits[b * P.classes + labels[b]];
    }
}

// Inference: probabilities only (no labels).
@compute @workgroup_size(256)
fn predict(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_index(li, wid, nwg);
    if (b < P.n) {
        softmax_row(b);
    }
}

@compute @workgroup_size(256)
fn backward(@builtin(local_invocation_index) li: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(li, wid, nwg);
    if (i < P.n * P.classes) {
        let b = i / P.classes;
        let onehot = select(0.0, 1.0, labels[b] == i % P.classes);
        dlogits[i] = (probs[i] - onehot) / f32(P.n);
    }
}

// One workgroup: sums the batch's losses and correct predictions (argmax of the
// probabilities, first on ties) into `metrics`.
@compute @workgroup_size(256)
fn accumulate(@builtin(local_invocation_index) li: u32) {
    var loss = 0.0;
    var correct = 0.0;
    for (var b = li; b < P.n; b += 256u) {
        loss += losses[b];
        var best = 0u;
        for (var c = 1u; c < P.classes; c++) {
            if (probs[b * P.classes + c] > probs[b * P.classes + best]) {
                best = c;
            }
        }
        correct += select(0.0, 1.0, best == labels[b]);
    }
    red_loss[li] = loss;
    red_correct[li] = correct;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if (li < half) {
            red_loss[li] += red_loss[li + half];
            red_correct[li] += red_correct[li + half];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        metrics[0] += red_loss[0];
        metrics[1] += red_correct[0];
        metrics[2] += f32(P.n);
    }
}

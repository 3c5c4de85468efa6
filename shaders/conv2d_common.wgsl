// Conv2d, the part both GEMM engines share: the uniform, the bindings, and the
// split-K reduction (reduce_weight_bias). Included by every engine's module:
// conv2d_tiled.wgsl (the shared-memory tiled engine, for GPUs),
// conv2d_subgroup_io.wgsl (the subgroup-broadcast engine, for 8-lane SIMD such as
// llvmpipe) and conv2d_mixed.wgsl (f16 tiles on cooperative matrices).
// #include "grid.wgsl"
// #include "udiv.wgsl"
//
// The three products, written C[row, col] = sum_r A[row, r] * B[r, col]:
//   forward               out = y (N,OC,OH,OW)             r = (c,kh,kw)   from x and W
//   backward_input        out = dx (N,C,H,W)               r = (oc,kh,kw)  from dy and W
//   backward_weight_bias  out = dW (OC,C,K,K) and db (OC)  r = (n,oh,ow)   from x and dy, split along r
// backward_weight_bias's reduction is N*OH*OW long (50k terms for conv1 at batch 64),
// so it is cut into `splits` chunks that run as separate workgroups and write
// partial sums (splits, C*K*K + 1, OC); reduce_weight_bias adds them up. The bias
// gradient rides along as one more tap whose input is 1 everywhere: db[oc] is
// the sum of dy over (n,oh,ow), exactly that tap's product, so it needs no
// reduction of its own.

struct ConvUniform {
    n: u32, c: u32, h: u32, w: u32,
    oc: u32, oh: u32, ow: u32, k: u32,
    stride: u32, pad: u32, w_off: u32, b_off: u32,
    chunk: u32,   // backward_weight_bias: reduction length per split
    splits: u32,  // backward_weight_bias / reduce_weight_bias: number of splits
    relu: u32,    // forward: 1 = apply ReLU to the output; backward_input: 1 = the input gradient
                  // is zero where `gate` (this conv's input, a ReLU's output) is not positive
    accumulate: u32, // reduce_weight_bias: 1 = add to the gradients (micro-batches after the first)
    flip: u32,    // the kernel-row products (rows): 1 = the input gradient, 0 = the forward
    pool: u32,    // the kernel-row forward: 1 = a 2x2 max-pool of stride 2 in the epilogue
    zero: u32,    // always 0: the index `load_uniform` reads U through
    b_shift: u32, // the kernel-row products: src_b's element i is texel (i & (2^b_shift - 1), i >> b_shift) of `b_copy`
    a_shift: u32, // and src_a's element i that of `a_copy` (conv2d_subgroup_io.wgsl)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Every entry point reads bindings 1 and 2 and writes binding 3, whatever the
// product, so each binds only what it uses:
//   forward               src_a = x (N,C,H,W)      src_b = params (W at w_off, bias at b_off)  out = y (N,OC,OH,OW)
//   backward_input        src_a = dy (N,OC,OH,OW)  src_b = params       out = dx (N,C,H,W)
//   backward_weight_bias  src_a = x                src_b = dy           out = partial sums (splits, C*K*K + 1, OC)
//   reduce_weight_bias    src_a = partial sums                          out = grads (flat, laid out as params)
@group(0) @binding(0) var<uniform> conv_uniform: array<ConvUniform, 1>;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The GEMM products also bind this conv's input here, which backward_input reads to do
// the backward pass of the ReLU before the conv in its epilogue (with U.relu).
@group(0) @binding(4) var<storage, read> gate: array<f32>;
// Every dispatch also binds 5: the pooled kernel-row forward writes its argmax there
// (conv2d_subgroup_io.wgsl); the others bind their output and leave it alone.

// The uniform, as every entry point reads it first (`load_uniform`). lavapipe (Mesa
// 22.3) specialises a pipeline on the uniforms that decide its branches and loop
// exits: at the first dispatch it tries, and either gives up for good or from then
// on compiles a specialised copy at every dispatch and keeps each one. At batch 128
// it did the latter for the conv pipelines: 12-33% of a step and 25 MB a step
// (docs/performance.md, "Batch size on lavapipe, and batch 128"). It only sees
// uniforms read at constant offsets; U read at an index that is itself a uniform
// value hides them from it.
var<private> U: ConvUniform;

fn load_uniform() {
    U = conv_uniform[conv_uniform[0].zero];
}

// Reciprocals for udiv and udiv_small, set by the entry points that divide by these.
var<private> inv_ohw: f32;
var<private> inv_stride: f32;

// dW[oc, kidx] = sum over splits of partial[s, kidx, oc], and db[oc] from the
// extra row kidx = C*K*K; one thread per gradient, `splits` terms each (the long
// reduction already happened in backward_weight_bias).
@compute @workgroup_size(FLAT_WORKGROUP_SIZE)
fn reduce_weight_bias(@builtin(local_invocation_index) li: u32,
                      @builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    load_uniform();
    let ckk = U.c * U.k * U.k;
    let rows = ckk + 1u;
    let idx = flat_thread(li, wid, nwg);
    if (idx >= rows * U.oc) {
        return;
    }
    let oc = idx / rows;
    let kidx = idx % rows;
    var s = 0.0;
    for (var sp = 0u; sp < U.splits; sp++) {
        s += src_a[(sp * rows + kidx) * U.oc + oc];
    }
    var at = U.b_off + oc;
    if (kidx < ckk) {
        at = U.w_off + oc * ckk + kidx;
    }
    out[at] = select(s, out[at] + s, U.accumulate != 0u);
}

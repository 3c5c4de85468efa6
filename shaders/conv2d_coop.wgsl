// Conv2d in mixed precision on tensor cores: conv2d_mixed.wgsl's tile multiply-add
// with cooperative matrices (wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX; on Vulkan,
// VK_KHR_cooperative_matrix): 16x16 f16 fragments of As and Bs, multiplied into
// 16x16 f32 accumulators, one fragment product per instruction.
enable f16;
enable wgpu_cooperative_matrix;
// #include "conv2d_mixed.wgsl"
//
// A BM x BN tile is FRAGS fragments; subgroup `sg` of the workgroup's `nsg` owns
// fragments sg, sg + nsg, ... The host runs this engine only where a workgroup's
// 256 invocations make 4 or 8 subgroups (32- or 64-lane subgroups), so with 8 or 16
// fragments every subgroup owns 1, 2 or 4 of them, the same number for all: the
// cooperative operations then run in uniform control flow, as they must.

var<private> acc0: coop_mat16x16<f32, C>;
var<private> acc1: coop_mat16x16<f32, C>;
var<private> acc2: coop_mat16x16<f32, C>;
var<private> acc3: coop_mat16x16<f32, C>;

fn mma_zero() {
    acc0 = coop_mat16x16<f32, C>();
    acc1 = coop_mat16x16<f32, C>();
    acc2 = coop_mat16x16<f32, C>();
    acc3 = coop_mat16x16<f32, C>();
}

// Fragment f of the tile, plus this step's product of its row of As and column of Bs.
fn fragment_step(f: u32, acc: coop_mat16x16<f32, C>) -> coop_mat16x16<f32, C> {
    let fm = BM / FRAG; // fragment rows of the tile
    let m0 = (f % fm) * FRAG;
    let n0 = (f / fm) * FRAG;
    var c = acc;
    for (var k0 = 0u; k0 < BK; k0 += FRAG) {
        let a = coopLoad<coop_mat16x16<f16, A>>(&As[k0 * BM + m0], BM);
        let b = coopLoadT<coop_mat16x16<f16, B>>(&Bs[k0 * BN + n0], BN);
        c = coopMultiplyAdd(a, b, c);
    }
    return c;
}

fn mma_step(li: u32, sg: u32, nsg: u32) {
    let owned = (BM / FRAG) * (BN / FRAG) / nsg;
    acc0 = fragment_step(sg, acc0);
    if (owned > 1u) {
        acc1 = fragment_step(sg + nsg, acc1);
    }
    if (owned > 2u) {
        acc2 = fragment_step(sg + 2u * nsg, acc2);
        acc3 = fragment_step(sg + 3u * nsg, acc3);
    }
}

fn store_fragment(f: u32, acc: coop_mat16x16<f32, C>) {
    let fm = BM / FRAG;
    coopStore(acc, &Cs[(f / fm) * FRAG * BM + (f % fm) * FRAG], BM);
}

fn mma_store(li: u32, sg: u32, nsg: u32) {
    let owned = (BM / FRAG) * (BN / FRAG) / nsg;
    store_fragment(sg, acc0);
    if (owned > 1u) {
        store_fragment(sg + nsg, acc1);
    }
    if (owned > 2u) {
        store_fragment(sg + 2u * nsg, acc2);
        store_fragment(sg + 3u * nsg, acc3);
    }
}

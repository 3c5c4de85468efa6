// How every entry point finds its place in a dispatch. A dispatch may hold more
// workgroups than one dimension allows (65,535 on most adapters), so the host
// folds the count over x and y (`Grid::fold` in src/gpu/dispatch.rs) and the
// shader rebuilds the flat index; the few workgroups past the real count return
// early. Element-wise entry points run FLAT_WORKGROUP_SIZE threads a workgroup,
// one element each (the host's `Grid::flat` divides by the same number; a test
// reads this constant back with naga).

const FLAT_WORKGROUP_SIZE: u32 = 256u;

// The flat workgroup index of a folded dispatch.
fn folded_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The flat thread index of an element-wise entry point.
fn flat_thread(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return folded_group(wid, nwg) * FLAT_WORKGROUP_SIZE + li;
}

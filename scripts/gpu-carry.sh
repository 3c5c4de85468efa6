#!/usr/bin/env bash
# Packs what scripts/gpu-bench.sh needs on a GPU machine that can build nothing
# (no crates.io, no Rust) into target/gpu-carry/ (git ignores target/): the release
# binary, the binary of BASE_COMMIT as gpu-cnn-base (default e03d1f2, the tree before
# issue #9's work, for the figures and per-op profiles before; `-` skips it), and this
# machine's Vulkan loader. Carry that folder there, then run the command it prints.
# The GPU's own driver (its Vulkan ICD) must be installed on that machine;
# gpu-bench.sh points the loader at NVIDIA's manifest where it is not in the usual
# place. A binary finds the bundled MNIST and weights under the folder it was built
# in: built-in-dirs records those folders, and gpu-bench.sh links them to its own
# checkout where they are missing.
# Usage: scripts/gpu-carry.sh [BASE_COMMIT|-]
set -euo pipefail
cd "$(dirname "$0")/.."
base_commit="${1:-e03d1f2}"
cargo build --release --locked 2>&1 | tail -n 1
out=target/gpu-carry
rm -rf "$out"
mkdir -p "$out"
cp target/release/gpu-cnn "$out/"
run="LD_LIBRARY_PATH=$out GPU_CNN_BIN=$out/gpu-cnn"
pwd -P >"$out/built-in-dirs"
if [ "$base_commit" != "-" ]; then
    src=target/gpu-carry-base-src
    git worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
    git worktree prune
    git worktree add --detach "$src" "$base_commit" >/dev/null
    (cd "$src" && pwd -P) >>"$out/built-in-dirs"
    # A target folder of its own: the base's binary must not replace this one's.
    CARGO_TARGET_DIR=target/gpu-carry-base-build cargo build --release --locked \
        --manifest-path "$src/Cargo.toml" 2>&1 | tail -n 1
    cp target/gpu-carry-base-build/release/gpu-cnn "$out/gpu-cnn-base"
    git worktree remove --force "$src"
    run="$run GPU_CNN_BASE=$out/gpu-cnn-base"
fi
loader=$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ && !found {print $NF; found = 1}')
if [ -z "$loader" ]; then
    echo "no libvulkan.so.1 here: apt-get install libvulkan1" >&2
    exit 1
fi
cp -L "$loader" "$out/libvulkan.so.1"
du -sh "$out"
echo "carry: $out   then: $run GPU_BENCH_TAR=\$OUT/results.tar.gz scripts/gpu-bench.sh"

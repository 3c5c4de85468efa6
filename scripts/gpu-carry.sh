#!/usr/bin/env bash
# Packs what scripts/gpu-bench.sh needs on a GPU machine that can build nothing
# (no crates.io, no Rust): the release binary and this machine's Vulkan loader,
# into target/gpu-carry/ (git ignores target/). Carry that folder there, then run
#   LD_LIBRARY_PATH=target/gpu-carry GPU_CNN_BIN=target/gpu-carry/gpu-cnn scripts/gpu-bench.sh
# The GPU's own driver (its Vulkan ICD) must be installed on that machine; the
# loader finds it through the usual /usr/share/vulkan/icd.d/ manifests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked 2>&1 | tail -n 1
out=target/gpu-carry
rm -rf "$out"
mkdir -p "$out"
cp target/release/gpu-cnn "$out/"
loader=$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ && !found {print $NF; found = 1}')
if [ -z "$loader" ]; then
    echo "no libvulkan.so.1 here: apt-get install libvulkan1" >&2
    exit 1
fi
cp -L "$loader" "$out/libvulkan.so.1"
du -sh "$out"
echo "carry: $out   then: LD_LIBRARY_PATH=$out GPU_CNN_BIN=$out/gpu-cnn scripts/gpu-bench.sh"

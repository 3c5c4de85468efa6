#!/usr/bin/env bash
# Benchmarks gpu-cnn on a fresh Linux machine with a GPU: builds a release, lists the
# adapters, runs `gpu-cnn bench --json` at batch 64 and 1024, one timed training epoch,
# and the time-to-99% recipe for five seeds, and prints the figures. Needs a Rust toolchain and the GPU's Vulkan (or GL) driver. Writes
# bench.json and the epoch's run into a temporary directory it prints, never into
# the repository.
# Usage: scripts/gpu-bench.sh [backend]   (default: vulkan)
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-vulkan}"
export NODEVICE_SELECT=1
cargo build --release --locked 2>&1 | tail -n 1
bin=target/release/gpu-cnn
out=$(mktemp -d)
echo "== results in $out"
$bin devices
echo "== gpu-cnn bench --backend $backend --json"
$bin bench --backend "$backend" --steps 50 --json | tee "$out/bench.json"
echo "== gpu-cnn bench --backend $backend --batch-size 1024 --json"
$bin bench --backend "$backend" --steps 50 --batch-size 1024 --infer-batches 1 --json | tee "$out/bench-1024.json"
echo "== one MNIST epoch (train --epochs 1 --backend $backend)"
start=$(date +%s.%N)
$bin train --epochs 1 --backend "$backend" --log-every 200 --out "$out/run" | tail -n 3
end=$(date +%s.%N)
echo "epoch wall time, process start to end (includes the test-set evaluation and checkpoints): $(echo "$end - $start" | bc) s"
echo "== time to 99% (docs/performance.md): one epoch of OneCycle, five seeds"
for seed in 0 1 2 3 4; do
    $bin train --epochs 1 --schedule onecycle --lr 4e-3 --batch-size 64 --seed "$seed" \
        --backend "$backend" --log-every 1000 --out "$out/to99-$seed" | grep '^epoch 1/1'
done

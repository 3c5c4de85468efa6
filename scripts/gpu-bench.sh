#!/usr/bin/env bash
# Benchmarks gpu-cnn on a fresh Linux machine with a GPU: builds a release, lists the
# adapters, runs `gpu-cnn bench --json` at batch 64 and 1024, one timed training epoch,
# and the time-to-99% recipe for five seeds, and prints the figures; where the adapter
# has tensor cores (`devices` says `--precision mixed: yes`), the same bench in mixed
# precision and two mixed-precision epochs; where python3 has PyTorch with CUDA,
# scripts/pytorch_reference.py on the same GPU at batch 64 and 1024, side by side.
# Needs the GPU's Vulkan (or GL) driver, and
# a Rust toolchain unless GPU_CNN_BIN names a binary built elsewhere (a machine that
# cannot reach crates.io). Writes bench.json and the runs into a temporary directory
# it prints, never into the repository.
# Usage: [GPU_CNN_BIN=path/to/gpu-cnn] scripts/gpu-bench.sh [backend]   (default: vulkan)
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-vulkan}"
export NODEVICE_SELECT=1
bin="${GPU_CNN_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release --locked 2>&1 | tail -n 1
    bin=target/release/gpu-cnn
fi
out=$(mktemp -d)
echo "== results in $out"
$bin devices | tee "$out/devices.txt"
echo "== gpu-cnn bench --backend $backend --json"
$bin bench --backend "$backend" --steps 50 --json | tee "$out/bench.json"
echo "== gpu-cnn bench --backend $backend --batch-size 1024 --json"
$bin bench --backend "$backend" --steps 50 --batch-size 1024 --infer-batches 1 --json | tee "$out/bench-1024.json"
echo "== the largest batch: gpu-cnn bench --backend $backend --batch-size 8192"
$bin bench --backend "$backend" --steps 20 --batch-size 8192 --infer-batches 1 --json | tee "$out/bench-8192.json"
echo "== one MNIST epoch (train --epochs 1 --backend $backend)"
start=$(date +%s.%N)
$bin train --epochs 1 --backend "$backend" --log-every 200 --out "$out/run" | tail -n 3
end=$(date +%s.%N)
echo "epoch wall time, process start to end (includes the test-set evaluation and checkpoints): $(awk "BEGIN { print $end - $start }") s"
echo "== time to 99% (docs/performance.md): one epoch of OneCycle, five seeds"
for seed in 0 1 2 3 4; do
    $bin train --epochs 1 --schedule onecycle --lr 4e-3 --batch-size 64 --seed "$seed" \
        --backend "$backend" --log-every 1000 --out "$out/to99-$seed" | grep '^epoch 1/1'
done
if grep -q -- "--precision mixed: yes" "$out/devices.txt"; then
    for batch in 1024 4096; do
        echo "== gpu-cnn bench --backend $backend --precision mixed --batch-size $batch --json"
        $bin bench --backend "$backend" --precision mixed --steps 50 --batch-size "$batch" --infer-batches 1 --json |
            tee "$out/bench-mixed-$batch.json"
    done
    echo "== two mixed-precision epochs (train --epochs 2 --precision mixed)"
    $bin train --epochs 2 --precision mixed --backend "$backend" --log-every 1000 --out "$out/mixed" | grep '^epoch'
else
    echo "== no tensor cores that wgpu reaches here: mixed precision not run"
fi
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    for batch in 64 1024; do
        echo "== PyTorch on the same GPU: scripts/pytorch_reference.py --device cuda --batch-size $batch"
        python3 scripts/pytorch_reference.py --device cuda --batch-size "$batch" | tee "$out/pytorch-$batch.txt"
    done
else
    echo "== no PyTorch with CUDA here: the side-by-side not run"
fi

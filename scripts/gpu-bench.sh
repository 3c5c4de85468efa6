#!/usr/bin/env bash
# Benchmarks gpu-cnn on a Linux machine with a GPU, every figure of issue #9's table:
# `bench` at batch 64 and 1024 (three runs each, alternated with the binary before
# #9 when GPU_CNN_BASE names one, for the per-op profiles before and after), the
# largest batch, one timed training epoch, the time-to-99% recipe for five seeds;
# where the adapter has tensor cores (`devices` says `--precision mixed: yes`), the
# mixed-precision bench and two mixed-precision epochs; where python3 has PyTorch
# with CUDA, scripts/pytorch_reference.py on the same GPU at batch 64 and 1024.
# Each command's whole output goes to a file of the results folder; the terminal gets
# the lines with the figures, so the output of a remote run stays short.
# Needs the GPU's Vulkan (or GL) driver, and a Rust toolchain unless GPU_CNN_BIN names
# a binary built elsewhere (scripts/gpu-carry.sh packs one, and the binary before #9,
# for a machine that cannot reach crates.io). It refuses to run on a CPU adapter.
# GPU_BENCH_SMOKE=1 rehearses every command with tiny sizes on any adapter, a CPU
# driver too, so a script that would fail is found before a GPU machine is lent.
# Usage: [GPU_CNN_BIN=gpu-cnn] [GPU_CNN_BASE=gpu-cnn-base] [GPU_BENCH_OUT=dir] \
#        [GPU_BENCH_TAR=file.tar.gz] [GPU_BENCH_SMOKE=1] scripts/gpu-bench.sh [backend]
#        (default backend: vulkan)
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-vulkan}"
export NODEVICE_SELECT=1
bin="${GPU_CNN_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release --locked 2>&1 | tail -n 1
    bin=target/release/gpu-cnn
fi
base="${GPU_CNN_BASE:-}"
# A carried binary reads the bundled data under the folder it was built in.
if [ -f "$(dirname "$bin")/built-in-dirs" ]; then
    while read -r dir; do
        if [ ! -e "$dir" ]; then
            mkdir -p "$(dirname "$dir")"
            ln -s "$(pwd -P)" "$dir"
        elif [ ! -e "$dir/assets/mnist" ]; then
            echo "$dir holds no assets/mnist, which a carried binary reads" >&2
            exit 1
        fi
    done <"$(dirname "$bin")/built-in-dirs"
fi
# NVIDIA's Vulkan manifest where the driver is mounted rather than installed.
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
installed=$(ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | grep -i nvidia || true)
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ] && [ -z "$installed" ]; then
    export VK_DRIVER_FILES=$nvidia_icd
fi
out="${GPU_BENCH_OUT:-$(mktemp -d)}"
mkdir -p "$out"
echo "== results in $out"
# GPU_BENCH_TAR=FILE packs the outputs (not the checkpoints) into FILE at the end, or
# when the script is stopped: a remote run brings back few files.
pack() {
    if [ -n "${GPU_BENCH_TAR:-}" ]; then
        tar czf "$GPU_BENCH_TAR" -C "$out" --exclude='*.safetensors' --exclude='*.png' . || true
    fi
}
trap pack EXIT
trap 'exit 143' TERM INT
"$bin" devices | tee "$out/devices.txt"
steps=50 big=1024 huge=8192 mixed_batches="64 1024 4096" epochs=(--epochs 1) seeds="0 1 2 3 4"
if [ -n "${GPU_BENCH_SMOKE:-}" ]; then
    steps=1 big=128 huge=256 mixed_batches=8 epochs=(--epochs 1 --steps 2) seeds=0
    echo "== a rehearsal with tiny sizes: no figure below is a measurement"
elif ! grep -Eiq "^\[[0-9]+\] .*\($backend, (DiscreteGpu|IntegratedGpu|VirtualGpu)\)" "$out/devices.txt"; then
    echo "no $backend GPU adapter here (its driver's ICD missing?): not benchmarking a CPU driver" >&2
    exit 1
fi
# One line of a bench output's figures: training, inference per batch, first step, SGEMM.
figures() {
    awk '/^first step/ { first = $3 }
        /^training/ { train = $2 " samples/s at batch " $6 " (" substr($7, 2) " GFLOP/s)" }
        /^inference/ { infer = infer sprintf(" batch %s %s ms,", $6, substr($7, 2)) }
        /^reference matmul/ { sgemm = $3 }
        END { printf "   training %s; inference%s first step %s s; SGEMM %s GFLOP/s\n", train, infer, first, sgemm }' "$1"
}

# bench NAME BINARY ARGS...: one run, its output to NAME.txt, its figures to the terminal.
bench() {
    local name=$1 exe=$2
    shift 2
    echo "-- $name: $(basename "$exe") bench --backend $backend $*"
    "$exe" bench --backend "$backend" "$@" >"$out/$name.txt" 2>&1 || echo "   (failed: see $name.txt)"
    figures "$out/$name.txt"
}
for batch in 64 $big; do
    echo "== training and inference at batch $batch, three runs each"
    for run in 1 2 3; do
        bench "bench-$batch-$run" "$bin" --steps $steps --batch-size "$batch"
        if [ -n "$base" ]; then
            bench "base-bench-$batch-$run" "$base" --steps $steps --batch-size "$batch"
        fi
    done
done
echo "== the largest batch"
bench "bench-$huge" "$bin" --steps $steps --batch-size $huge --infer-batches 1

echo "== one MNIST epoch (train ${epochs[*]} --backend $backend)"
start=$(date +%s.%N)
"$bin" train "${epochs[@]}" --backend "$backend" --log-every 200 --out "$out/run" >"$out/epoch.txt" 2>&1 ||
    echo "   (failed: see epoch.txt)"
end=$(date +%s.%N)
grep '^epoch 1/1' "$out/epoch.txt" || true
echo "epoch wall time, process start to end (evaluation and checkpoints included): $(awk "BEGIN { print $end - $start }") s"

# Recipes as BATCH:PEAK_LR:EPOCHS of Adam under OneCycle. Batch 64 reached 99.05-99.18%
# in one epoch for five seeds of five on lavapipe; the larger batches take fewer, larger
# steps, which a GPU runs faster, and were tried on lavapipe for seed 0 only (one
# epoch at batch 256 stopped at 98.96%; docs/performance.md, "Time to 99%").
recipes="64:4e-3:1 128:6e-3:1 256:8e-3:2 512:1e-2:2"
echo "== time to 99% (docs/performance.md): five seeds of each recipe; each epoch's line says when its evaluation ended"
for recipe in $recipes; do
    IFS=: read -r batch lr n <<<"$recipe"
    length=(--epochs "$n")
    if [ -n "${GPU_BENCH_SMOKE:-}" ]; then
        length=("${epochs[@]}")
    fi
    for seed in $seeds; do
        name="to99-b$batch-s$seed"
        "$bin" train "${length[@]}" --schedule onecycle --lr "$lr" --batch-size "$batch" --seed "$seed" \
            --backend "$backend" --log-every 1000 --out "$out/$name" >"$out/$name.txt" 2>&1 ||
            echo "   (failed: see $name.txt)"
        { grep '^epoch [0-9]*/' "$out/$name.txt" || tail -n 1 "$out/$name.txt"; } |
            sed "s|^|batch $batch, lr $lr, seed $seed: |"
    done
    if [ -n "${GPU_BENCH_SMOKE:-}" ]; then
        break
    fi
done

mixed=(--precision mixed) mixed_epochs=(--epochs 2)
if ! grep -q -- "--precision mixed: yes" "$out/devices.txt"; then
    mixed=()
    if [ -n "${GPU_BENCH_SMOKE:-}" ]; then
        # The emulation is slow on a CPU: a batch of 8.
        mixed=(--gemm coop-emulated) mixed_epochs=("${epochs[@]}" --batch-size 8)
    fi
fi
if [ ${#mixed[@]} -gt 0 ]; then
    echo "== mixed precision (${mixed[*]})"
    for batch in $mixed_batches; do
        bench "bench-mixed-$batch" "$bin" "${mixed[@]}" --steps $steps --batch-size "$batch" --infer-batches 1
    done
    "$bin" train "${mixed_epochs[@]}" "${mixed[@]}" --backend "$backend" --log-every 1000 --out "$out/mixed" \
        >"$out/mixed.txt" 2>&1 || echo "   (failed: see mixed.txt)"
    grep '^epoch' "$out/mixed.txt" || true
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

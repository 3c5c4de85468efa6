#!/usr/bin/env bash
# Compares two gpu-cnn binaries on a machine whose speed drifts (a shared CI
# machine's does by 2x within the hour): runs `bench --json` alternately, A B A B ...,
# so both see the same stretches of load, then prints for each binary the training
# rate (median and fastest run), the median ratio B/A of adjacent runs, and every
# op's fastest and median time. The fastest time of an op is the figure the load
# disturbs least: sharing the cores only ever makes a kernel slower.
# Usage: scripts/ab-bench.sh RUNS BIN_A BIN_B [bench args]   (default: --backend vulkan)
# Keeps each run's JSON in a temporary directory it prints. Needs python3.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n 2,9p "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
runs=$1 a=$2 b=$3
shift 3
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--backend vulkan)
out=$(mktemp -d)
echo "== $runs alternated runs of: bench ${args[*]} --json; results in $out"
export NODEVICE_SELECT=1
for i in $(seq 1 "$runs"); do
    "$a" bench "${args[@]}" --json > "$out/a.$i.json"
    "$b" bench "${args[@]}" --json > "$out/b.$i.json"
    echo "run $i of $runs done"
done
python3 - "$out" "$runs" "$a" "$b" <<'PY'
import json, statistics, sys
out, runs, names = sys.argv[1], int(sys.argv[2]), {"a": sys.argv[3], "b": sys.argv[4]}
data = {k: [json.load(open(f"{out}/{k}.{i}.json")) for i in range(1, runs + 1)] for k in "ab"}
rate = {k: [r["train_samples_per_s"] for r in v] for k, v in data.items()}
for k in "ab":
    print(f"{k} = {names[k]}: training {statistics.median(rate[k]):.1f} samples/s median, "
          f"{max(rate[k]):.1f} fastest (runs: {', '.join(f'{r:.1f}' for r in rate[k])})")
ratios = [b / a for a, b in zip(rate["a"], rate["b"])]
print(f"b/a of adjacent runs: median {statistics.median(ratios):.3f} "
      f"(b faster in {sum(r > 1 for r in ratios)} of {runs})")

def ops(run):
    seen, keyed = {}, []
    for o in run["ops"]:
        key = (o["layer"], o["op"])
        seen[key] = seen.get(key, 0) + 1
        keyed.append(((*key, seen[key]), o["ms"]))
    return keyed

table = {}
for k in "ab":
    for run in data[k]:
        for key, ms in ops(run):
            table.setdefault(key, {"a": [], "b": []})[k].append(ms)
print(f"\n{'layer':8} {'op':52} {'a fastest':>9} {'median':>7}   {'b fastest':>9} {'median':>7}")
total = {"a": 0.0, "b": 0.0}
for (layer, op, _), t in table.items():
    cells = []
    for k in "ab":
        if t[k]:
            total[k] += min(t[k])
            cells.append(f"{min(t[k]):9.2f} {statistics.median(t[k]):7.2f}")
        else:
            cells.append(f"{'-':>9} {'-':>7}")
    print(f"{layer:8} {op[:52]:52} {cells[0]}   {cells[1]}")
print(f"{'':8} {'sum of the fastest times (ms)':52} {total['a']:9.1f} {'':7}   {total['b']:9.1f}")
PY

#!/usr/bin/env bash
# Times a `gpu-cnn serve` start: from launch to its `listening` line, then POSTs of
# one shipped picture: a prediction, an explanation (what the page asks for), and a
# second prediction (a first answer pays for any kernel not yet compiled). With CACHE_DIR empty or absent it starts from an empty Mesa shader cache.
# Usage: scripts/serve-start.sh BIN [PORT] [CACHE_DIR]   (lavapipe: --backend vulkan)
# Needs curl and bc.
set -euo pipefail
if [ $# -lt 1 ]; then
    sed -n 2,6p "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
bin=$1 port=${2:-18090} cache=${3:-$(mktemp -d)}
log=$(mktemp)
picture=tests/images/8_mnist_test_61.png
now() { date +%s.%N; }
t0=$(now)
MESA_SHADER_CACHE_DIR=$cache NODEVICE_SELECT=1 "$bin" serve --backend vulkan --addr "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until grep -q listening "$log"; do
    kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.02
done
t1=$(now)
post() { curl -sf -o /dev/null -X POST --data-binary @"$picture" "http://127.0.0.1:$port/api/predict$1"; }
post ""
t2=$(now)
post "?explain=1"
t3=$(now)
post ""
t4=$(now)
printf 'listening %.2f s after launch; then a first prediction %.3f s, a first explanation %.3f s, a second prediction %.3f s\n' \
    "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" "$(echo "$t4 - $t3" | bc)"

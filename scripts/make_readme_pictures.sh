#!/usr/bin/env bash
# Regenerates the pictures in docs/ by running gpu-cnn itself:
#   docs/curves.png     the training curves of a short run (what `train` writes)
#   docs/compare.png    `gpu-cnn plot` of that run and one of a smaller model
#   docs/confusion.png  `gpu-cnn eval --plot` of the shipped weights
#   docs/walkthrough-compare.png  docs/walkthrough.md: `gpu-cnn plot` of the tutorial
#                       model (seeds 0 and 1) and the one with another 3x3 convolution
#   docs/explain-sheet.png  `gpu-cnn explain` of a shipped picture with the shipped weights
# The curves runs train for three epochs on a slice of the bundled MNIST, so that epochs
# end and the test set is measured in minutes even on a software GPU; the walkthrough's
# train an epoch each on all of it, as its text says (about 9 minutes on lavapipe with
# two idle cores). Everything but the pictures goes to a temporary directory.
#
# Usage: scripts/make_readme_pictures.sh   (BACKEND=cpu|vulkan|gl|... to choose; auto by default)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
backend="${BACKEND:-auto}"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/gpu-cnn"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# An IDX file of the first $3 records of a bundled one: a new header, then the records.
be32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }
slice() { # kind (images|labels) split count
    local kind=$1 split=$2 n=$3 src dst
    src="$root/assets/mnist/$split-$kind-idx$([ "$kind" = images ] && echo 3 || echo 1)-ubyte.gz"
    dst="$work/data/$(basename "$src" .gz)"
    # Unpacked first: a reader that stops early would kill gzip with SIGPIPE.
    gzip -dc "$src" >"$work/full"
    if [ "$kind" = images ]; then
        { printf "\\x00\\x00\\x08\\x03$(be32 "$n")$(be32 28)$(be32 28)"; head -c $((16 + n * 784)) "$work/full" | tail -c +17; } >"$dst"
    else
        { printf "\\x00\\x00\\x08\\x01$(be32 "$n")"; head -c $((8 + n)) "$work/full" | tail -c +9; } >"$dst"
    fi
    rm "$work/full"
}
mkdir -p "$work/data"
slice images train 4000
slice labels train 4000
slice images t10k 1000
slice labels t10k 1000

# Relative run paths: they name the runs in the comparison's legend.
cd "$work"
common=(--data data --epochs 3 --batch-size 32 --log-every 10 --backend "$backend")
"$bin" train "${common[@]}" --out runs/seed-cnn
"$bin" train "${common[@]}" --arch "c8k3 relu pool2 flat fc10" --out runs/small-cnn
mkdir -p "$root/docs"
cp runs/seed-cnn/curves.png "$root/docs/curves.png"
"$bin" plot runs/seed-cnn runs/small-cnn -o "$root/docs/compare.png"
"$bin" eval --backend "$backend" --plot "$root/docs/confusion.png" >/dev/null

# docs/walkthrough.md: the same commands as the text, with the defaults it states.
"$bin" train --backend "$backend" --out runs/tutorial
"$bin" train --backend "$backend" --out runs/plus-conv \
    --arch "c16k5 relu pool2 c32k5 relu c32k5 relu c32k3 relu pool2 c64k5 relu flat fc10"
"$bin" train --backend "$backend" --out runs/tutorial-seed1 --seed 1
"$bin" plot runs/tutorial runs/tutorial-seed1 runs/plus-conv -o "$root/docs/walkthrough-compare.png"

# docs/explain.md. Run from the checkout so that the sheet names the picture by its
# path there, not by this machine's; the sheet itself goes to the temporary directory.
(cd "$root" && "$bin" explain tests/images/3_mnist_test_18.png --backend "$backend" --out "$work/explain")
cp "$work/explain/3_mnist_test_18.explain.png" "$root/docs/explain-sheet.png"
echo "wrote $root/docs/curves.png, compare.png, confusion.png, walkthrough-compare.png and explain-sheet.png"

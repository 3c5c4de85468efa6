#!/usr/bin/env python3
"""Checks that gpu-cnn checkpoints and PyTorch state_dicts interoperate (needs torch
and safetensors; not run in CI):

1. gpu-cnn's default weights load into the tutorial's PyTorch module with
   load_state_dict(strict=True) and give, in PyTorch, the accuracy and loss that
   `gpu-cnn eval` reports for them;
2. a state_dict saved by PyTorch (safetensors.torch.save_file) loads into
   `gpu-cnn eval --weights` and gives the accuracy and loss PyTorch computes.

    cargo build --release && python3 scripts/pytorch_interop.py
"""
import os, re, subprocess, sys, tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
sys.path.insert(0, here)
from pytorch_reference import CNN, idx  # noqa: E402

GPU_CNN = os.path.join(root, "target", "release", "gpu-cnn")
mnist = os.path.join(root, "assets", "mnist")
tx = idx(os.path.join(mnist, "t10k-images-idx3-ubyte.gz")).float().div(255).unsqueeze(1)
ty = idx(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz")).long()


def torch_eval(model):
    with torch.no_grad():
        logits = model(tx)
    return (logits.argmax(1) == ty).float().mean().item(), F.cross_entropy(logits, ty).item()


def gpu_cnn_eval(weights):
    out = subprocess.run([GPU_CNN, "eval", "--weights", weights], capture_output=True, text=True, check=True).stdout
    m = re.search(r"accuracy ([\d.]+)%\s+loss ([\d.]+)", out)
    return float(m.group(1)) / 100, float(m.group(2))


def check(what, ours, theirs):
    ok = abs(ours[0] - theirs[0]) < 1e-4 and abs(ours[1] - theirs[1]) < 1e-3
    print(f"{'ok  ' if ok else 'FAIL'} {what}: gpu-cnn {ours[0]:.4%} / {ours[1]:.4f}, PyTorch {theirs[0]:.4%} / {theirs[1]:.4f}")
    return ok


good = True
# 1. gpu-cnn -> PyTorch (the checkpoint's optimizer keys are filtered as the README shows).
weights = os.path.join(root, "assets", "weights", "mnist-cnn.safetensors")
model = CNN()
sd = {k: v for k, v in load_file(weights).items() if not k.startswith("optim.")}
model.load_state_dict(sd, strict=True)
good &= check("gpu-cnn weights in PyTorch", gpu_cnn_eval(weights), torch_eval(model))

# 2. PyTorch -> gpu-cnn, with weights PyTorch trained a little (so predictions are not uniform).
torch.manual_seed(0)
model = CNN()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
xs = idx(os.path.join(mnist, "train-images-idx3-ubyte.gz"))[:3200].float().div(255).unsqueeze(1)
ys = idx(os.path.join(mnist, "train-labels-idx1-ubyte.gz"))[:3200].long()
for i in range(0, 3200, 64):
    opt.zero_grad()
    F.cross_entropy(model(xs[i:i + 64]), ys[i:i + 64]).backward()
    opt.step()
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "torch.safetensors")
    save_file(model.state_dict(), path)
    good &= check("PyTorch weights in gpu-cnn", gpu_cnn_eval(path), torch_eval(model))
sys.exit(0 if good else 1)

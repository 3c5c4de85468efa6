#!/usr/bin/env python3
"""The seed CNN and gpu-cnn's default recipe in PyTorch, timed the same way as
`gpu-cnn bench`: training samples/s at batch 64 (Adam, lr 1e-3) and inference
images/s at batch 1, 64 and 1000. Optional; not run in CI.

    pip install torch
    python3 scripts/pytorch_reference.py [--threads 2] [--device cuda] [--batch-size 1024] [--epoch]

--device cuda runs it on the GPU (scripts/gpu-bench.sh does where PyTorch has CUDA),
waiting for the GPU before each clock read. --batch-size sets the training batch, as
in `gpu-cnn bench --batch-size`. --epoch also trains one shuffled epoch on MNIST (read
from assets/mnist) at that batch and reports test accuracy, for the side-by-side
with `gpu-cnn train`.
"""
import argparse, gzip, os, time

import torch
import torch.nn as nn


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(16, 32, 5, 1, 2), nn.ReLU(), nn.Conv2d(32, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2))
        self.conv3 = nn.Sequential(nn.Conv2d(32, 64, 5, 1, 2), nn.ReLU())
        self.out = nn.Linear(64 * 7 * 7, 10)

    def forward(self, x):
        x = self.conv3(self.conv2(self.conv1(x)))
        return self.out(x.flatten(1))


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = int.from_bytes(data[3:4], "big")
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def clock(device):
    """perf_counter once the device has finished what was queued: CUDA runs asynchronously."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def rate(fn, n, device, budget=2.0):
    fn()
    t = clock(device); fn(); once = clock(device) - t
    reps = max(2, int(budget / max(once, 1e-6)))
    t = clock(device)
    for _ in range(reps):
        fn()
    return n * reps / (clock(device) - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epoch", action="store_true")
    a = ap.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {a.device}: this PyTorch has no CUDA device")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    here = os.path.join(os.path.dirname(__file__), "..", "assets", "mnist")
    xs = idx(os.path.join(here, "train-images-idx3-ubyte.gz")).float().div(255).unsqueeze(1).to(device)
    ys = idx(os.path.join(here, "train-labels-idx1-ubyte.gz")).long().to(device)
    model = CNN().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    b = a.batch_size
    x, y = xs[:b], ys[:b]

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{a.threads} threads"
    print(f"torch {torch.__version__}, {device.type}: {name}")
    print(f"training   {rate(step, b, device):.0f} samples/s at batch {b}")
    with torch.no_grad():
        for n in (1, 64, 1000):
            xb = xs[:n]
            print(f"inference  {rate(lambda: model(xb), n, device):.0f} images/s at batch {n}")
    if a.epoch:
        tx = idx(os.path.join(here, "t10k-images-idx3-ubyte.gz")).float().div(255).unsqueeze(1).to(device)
        ty = idx(os.path.join(here, "t10k-labels-idx1-ubyte.gz")).long().to(device)
        t = clock(device)
        for idxs in torch.randperm(len(xs), device=device).split(b):
            opt.zero_grad()
            loss_fn(model(xs[idxs]), ys[idxs]).backward()
            opt.step()
        with torch.no_grad():
            acc = (model(tx).argmax(1) == ty).float().mean().item()
        print(f"one epoch  {clock(device) - t:.1f} s at batch {b}, test accuracy {100 * acc:.2f}%")


if __name__ == "__main__":
    main()

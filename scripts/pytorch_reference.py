#!/usr/bin/env python3
"""The seed CNN and gpu-cnn's default recipe in PyTorch, timed the same way as
`gpu-cnn bench`: training samples/s at batch 64 (Adam, lr 1e-3) and inference
images/s at batch 1, 64 and 1000. Optional; not run in CI.

    pip install torch
    python3 scripts/pytorch_reference.py [--threads 2] [--epoch]

--epoch also trains one shuffled epoch on MNIST (read from assets/mnist) and reports
test accuracy, for the side-by-side with `gpu-cnn train`.
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


def rate(fn, n, budget=2.0):
    fn()
    t = time.perf_counter(); fn(); once = time.perf_counter() - t
    reps = max(2, int(budget / max(once, 1e-6)))
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return n * reps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--epoch", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    here = os.path.join(os.path.dirname(__file__), "..", "assets", "mnist")
    xs = idx(os.path.join(here, "train-images-idx3-ubyte.gz")).float().div(255).unsqueeze(1)
    ys = idx(os.path.join(here, "train-labels-idx1-ubyte.gz")).long()
    model = CNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x, y = xs[:64], ys[:64]

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    print(f"torch {torch.__version__}, {a.threads} threads")
    print(f"training   {rate(step, 64):.0f} samples/s at batch 64")
    with torch.no_grad():
        for n in (1, 64, 1000):
            xb = xs[:n]
            print(f"inference  {rate(lambda: model(xb), n):.0f} images/s at batch {n}")
    if a.epoch:
        tx = idx(os.path.join(here, "t10k-images-idx3-ubyte.gz")).float().div(255).unsqueeze(1)
        ty = idx(os.path.join(here, "t10k-labels-idx1-ubyte.gz")).long()
        t = time.perf_counter()
        for idxs in torch.randperm(len(xs)).split(64):
            opt.zero_grad()
            loss_fn(model(xs[idxs]), ys[idxs]).backward()
            opt.step()
        with torch.no_grad():
            acc = (model(tx).argmax(1) == ty).float().mean().item()
        print(f"one epoch  {time.perf_counter() - t:.1f} s, test accuracy {100 * acc:.2f}%")


if __name__ == "__main__":
    main()

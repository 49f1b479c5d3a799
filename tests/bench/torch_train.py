"""PyTorch side of the training/inference benchmark (run-train-bench.sh):
the same conv AE, data and batch size as bench_train.c."""
import sys
import time

import numpy as np
import torch
from torch import nn


def model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(16, 32, 3, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(1568, 32), nn.Linear(32, 1568), nn.LeakyReLU(0.2),
        nn.Unflatten(1, (32, 7, 7)),
        nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(16, 1, 4, 2, 1), nn.Sigmoid())


def main():
    path, count, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    epochs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    raw = np.fromfile(path, dtype=np.uint8, count=count * 784)
    x = torch.from_numpy(raw.astype(np.float32).reshape(count, 1, 28, 28) / 255.0)
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(count)
        for i in range(0, count, 64):
            b = x[perm[i:i + 64]]
            opt.zero_grad()
            loss = loss_fn(net(b), b)
            loss.backward()
            opt.step()
    t = time.perf_counter() - t0
    print(f"train_samples_per_s {count * epochs / t:.0f}")
    print(f"final_train_loss {loss.item():.5f}")
    net.eval()
    reps = 3000
    with torch.no_grad():
        for i in range(100):
            net(x[i:i + 1])
        t0 = time.perf_counter()
        for i in range(reps):
            net(x[i % count:i % count + 1])
    print(f"infer_b1_samples_per_s {reps / (time.perf_counter() - t0):.0f}")


if __name__ == "__main__":
    main()

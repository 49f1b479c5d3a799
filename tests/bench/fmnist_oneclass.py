#!/usr/bin/python3
"""Fashion-MNIST one-class anomaly benchmark (issue 5, benchmark 1).

For each class c: train on the 6,000 training images of c with ae-train
(--pipeline over raw GRAY8 frames), push all 10,000 test images through
`filesrc ! rawvideoparse ! aeanomaly events-location=...` with gst-launch-1.0
as a user would, read the element's per-frame scores back from its JSON Lines
and compute the AUROC of class c (normal) against the other nine. Methods are
ae-train architectures; a plain PyTorch conv AE is the in-run anchor.
Usage: fmnist_oneclass.py BUILD [--classes 0,1,...] [--methods conv,pca,conv-combined,...]
(by default those without +norm, +rot, +move, -shift or -L)
       [--epochs N] [--torch-epochs N] [--no-torch]
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"
NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Boot"]
PUBLISHED = [("GEOM", 93.5), ("RAW-OC-SVM", 92.8), ("CAE-OC-SVM", 91.7), ("Deep SVDD", 89.2)]
# ae-train arguments per method (the conv preset: conv+BN+leaky ReLU encoder,
# latent 32, transposed-conv decoder; PCA: the closed-form linear AE). The
# -mahalanobis and -combined variants train the same model (same seed) and
# score frames by the latent's Mahalanobis distance to the Gaussian of the
# training latents, alone or added to the reconstruction error, each
# standardised on the held-out normal frames (ae-train --score). The vae
# preset is the conv one with a sample layer (latent 32, KL weight 1);
# vae-elbo scores the same model by its negative ELBO (the error averaged
# over 8 posterior samples plus the KL term, ae-train --score elbo).
METHODS = {"conv": ["--arch", "conv", "--latent", "32"],
           "pca": ["--arch", "pca", "--latent", "32"]}
for _base in ("conv", "pca"):
    for _score in ("mahalanobis", "combined"):
        METHODS[f"{_base}-{_score}"] = METHODS[_base] + ["--score", _score]
METHODS["vae"] = ["--arch", "vae", "--latent", "32"]
METHODS["vae-elbo"] = METHODS["vae"] + ["--score", "elbo"]
DEFAULT_METHODS = list(METHODS)
# METHOD-shift (of a -mahalanobis or -combined method): the Gaussian
# describes how far the latent moves when the frame is replaced by its
# reconstruction, z(x) - z(x^), instead of the latent itself
# (ae-train --latent-vector shift). Run only when named.
for _base in ("conv", "pca"):
    for _score in ("mahalanobis", "combined"):
        METHODS[f"{_base}-{_score}-shift"] = (METHODS[f"{_base}-{_score}"]
                                              + ["--latent-vector", "shift"])
# METHOD+norm: the same with the map divided by its per-pixel mean on the
# held-out normal frames (ae-train --pixel-norm); vae-elbo-L1 / -L32: the
# elbo with 1 or 32 posterior samples instead of 8. Run only when named.
for _m in list(METHODS):
    METHODS[f"{_m}+norm"] = METHODS[_m] + ["--pixel-norm"]
# METHOD+rot (and METHOD+norm+rot): trained on inputs turned by a random
# multiple of 90 degrees with upright targets (ae-train --rotate-inputs);
# not for pca, which is fitted in closed form.
for _m in [m for m in METHODS if not m.startswith("pca")]:
    METHODS[f"{_m}+rot"] = METHODS[_m] + ["--rotate-inputs"]
# METHOD+rot+move: also moved by up to 2 pixels each way, targets in place
# (ae-train --translate-inputs 2).
for _m in [m for m in METHODS if m.endswith("+rot")]:
    METHODS[f"{_m}+move"] = METHODS[_m] + ["--translate-inputs", "2"]
for _l in (1, 32):
    METHODS[f"vae-elbo-L{_l}"] = METHODS["vae-elbo"] + ["--elbo-samples", str(_l)]


def idx(name, header):
    with gzip.open(os.path.join(DATA, name)) as f:
        return np.frombuffer(f.read()[header:], np.uint8)


def auroc(scores, positive):
    """P(score of an anomaly > score of a normal sample), ties counting half."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    s = np.asarray(scores)[order]
    i = 0
    while i < len(s):  # average ranks of ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        if j > i:
            ranks[order[i:j + 1]] = (i + j + 2) / 2.0
        i = j + 1
    pos = np.asarray(positive, bool)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def raw_source(path):
    return (f"filesrc location={path} ! rawvideoparse format=gray8 width=28 height=28 "
            "framerate=30/1")


def element_scores(build, model, test_raw, work, count):
    """aeanomaly's scores of the test frames, and the pipeline's wall time."""
    events = os.path.join(work, "events.jsonl")
    cmd = (f"gst-launch-1.0 -q {raw_source(test_raw)} ! aeanomaly model={model} "
           f"events-location={events} ! fakesink")
    t0 = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True,
                   env=dict(os.environ, GST_PLUGIN_PATH=os.path.join(build, "plugins")))
    seconds = time.perf_counter() - t0
    scores = [json.loads(line)["score"] for line in open(events)
              if '"score"' in line and '"frame"' in line]
    if len(scores) != count:
        sys.exit(f"fmnist_oneclass: {count} frames in, {len(scores)} scores out of aeanomaly")
    return np.array(scores), seconds


def torch_auroc(train, test, labels, c, epochs):
    """A plain PyTorch conv AE (MSE), 2 threads: the in-run anchor."""
    import torch
    from torch import nn
    torch.set_num_threads(2)
    torch.manual_seed(c)
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 3, 2, 1),
        nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(64 * 49, 32), nn.Linear(32, 64 * 49),
        nn.LeakyReLU(0.2), nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1),
        nn.LeakyReLU(0.2), nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid())
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.from_numpy(train.astype(np.float32) / 255).view(-1, 1, 28, 28)
    for _ in range(epochs):
        for i in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            loss = ((net(x[i]) - x[i]) ** 2).mean()
            loss.backward()
            opt.step()
    with torch.no_grad():
        t = torch.from_numpy(test.astype(np.float32) / 255).view(-1, 1, 28, 28)
        err = ((net(t) - t) ** 2).mean(dim=(1, 2, 3)).numpy()
    return auroc(err, labels != c)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--torch-epochs", type=int, default=10)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    classes = [int(c) for c in a.classes.split(",")]
    methods = a.methods.split(",")
    for m in methods:
        if m not in METHODS:
            sys.exit(f"fmnist_oneclass: unknown method '{m}' ({', '.join(METHODS)})")
    train_x = idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    train_y = idx("train-labels-idx1-ubyte.gz", 8)
    test_x = idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    test_y = idx("t10k-labels-idx1-ubyte.gz", 8)
    cols = methods + ([] if a.no_torch else ["pytorch-ae"])
    results = {m: [] for m in cols}
    seconds = {m: 0.0 for m in methods}
    start = time.time()
    with tempfile.TemporaryDirectory() as work:
        test_raw = os.path.join(work, "test.gray8")
        test_x.tofile(test_raw)
        print(f"# Fashion-MNIST one-class AUROC (%), ae-train --epochs {a.epochs}"
              + ("" if a.no_torch else f", PyTorch {a.torch_epochs} epochs"))
        col = max(len(m) for m in cols)  # column width: the longest name shown
        print("class          " + " ".join(f"{m:>{col}}" for m in cols), flush=True)
        for c in classes:
            train_raw = os.path.join(work, f"train{c}.gray8")
            train_x[train_y == c].tofile(train_raw)
            row = []
            for m in methods:
                model = os.path.join(work, f"{m}{c}.aem")
                subprocess.run([os.path.join(build, "tools", "ae-train"), "--task", "anomaly",
                                "--output", model, "--pipeline", raw_source(train_raw),
                                "--epochs", str(a.epochs), "--seed", "1", "--quiet"]
                               + METHODS[m], check=True, stdout=subprocess.DEVNULL)
                scores, took = element_scores(build, model, test_raw, work, len(test_x))
                seconds[m] += took
                results[m].append(100 * auroc(scores, test_y != c))
                row.append(results[m][-1])
            if not a.no_torch:
                results["pytorch-ae"].append(
                    100 * torch_auroc(train_x[train_y == c], test_x, test_y, c, a.torch_epochs))
                row.append(results["pytorch-ae"][-1])
            print(f"{c} {NAMES[c]:<12} " + " ".join(f"{v:{col}.1f}" for v in row), flush=True)
    # two decimals: a mean printed 94.0 may lie either side of the target
    print("mean           " + " ".join(f"{np.mean(results[m]):{col}.2f}" for m in cols))
    print("# published means (all 10 classes): "
          + ", ".join(f"{n} {v}" for n, v in PUBLISHED) + "; target 94.0")
    frames = len(test_x) * len(classes)
    print("# aeanomaly frames/s (28x28 GRAY8, whole gst-launch runs incl. start-up and the "
          "events file): " + ", ".join(f"{m} {frames / seconds[m]:.0f}" for m in methods))
    print(f"# total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()

"""The network of a libae model (aem.Model) rebuilt in PyTorch, with
libae's inference semantics (lib/layers.c): zero-padded convolutions,
PyTorch weight layouts, batch norm from running statistics, leaky ReLU with
the spec's slope, `sample` passing mu, `shuffle` as pixel_shuffle,
`residual` adding the network's input, `noise` adding gain * sigma + bias
per channel (sigma: the noise level given to Net.set_noise)."""
import numpy as np
import torch
from torch import nn

from aem import ModelError, out_shape

BN_EPS = 1e-5  # AE_BN_EPS in lib/nn.h


class Mu(nn.Module):
    """libae's sample layer at inference: the first half of the channels (mu)."""

    def forward(self, x):
        return x[:, :x.shape[1] // 2]


class Residual(nn.Module):
    """Adds the network's input (handed over by Net)."""

    def forward(self, x, net_in):
        return x + net_in


class NoiseBias(nn.Module):
    """libae's noise layer: adds gain * sigma + bias to each channel."""

    def __init__(self, gain, bias):
        super().__init__()
        self.gain, self.bias, self.sigma = gain, bias, 0.0

    def forward(self, x):
        return x + (self.gain * self.sigma + self.bias)[None, :, None, None]


class Net(nn.Module):
    def __init__(self, mods):
        super().__init__()
        self.mods = nn.ModuleList(mods)

    def set_noise(self, sigma):
        """The input's noise level (input units) for the noise layers."""
        for m in self.mods:
            if isinstance(m, NoiseBias):
                m.sigma = float(sigma)

    def forward(self, x):
        y = x
        for m in self.mods:
            y = m(y, x) if isinstance(m, Residual) else m(y)
        return y


def _act(name, alpha):
    return {"linear": None, "relu": nn.ReLU(), "lrelu": nn.LeakyReLU(alpha),
            "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh()}[name]


def _tensor(model, name, shape):
    t = model.tensors.get(name)
    if t is None or tuple(t.shape) != tuple(shape):
        raise ModelError(f"{model.path}: tensor '{name}' missing or not of shape {tuple(shape)}")
    return torch.from_numpy(t.copy())


def _layer(model, i, layer, shape):
    """One libae layer as a torch module, weights copied in (PyTorch layouts)."""
    kind, c, name = layer["kind"], shape[0], f"layer{i}."
    if kind in ("conv", "deconv"):
        cls = nn.Conv2d if kind == "conv" else nn.ConvTranspose2d
        mod = cls(c, layer["out"], layer["k"], layer["s"], layer["p"])
        mod.weight.data = _tensor(model, name + "weight", mod.weight.shape)
        mod.bias.data = _tensor(model, name + "bias", (layer["out"],))
        return mod
    if kind == "dense":
        lin = nn.Linear(int(np.prod(shape)), layer["out"])
        lin.weight.data = _tensor(model, name + "weight", lin.weight.shape)
        lin.bias.data = _tensor(model, name + "bias", (layer["out"],))
        return nn.Sequential(nn.Flatten(), lin, nn.Unflatten(1, layer["shape"]))
    if kind == "bn":
        bn = nn.BatchNorm2d(c, eps=BN_EPS)
        bn.weight.data = _tensor(model, name + "gamma", (c,))
        bn.bias.data = _tensor(model, name + "beta", (c,))
        bn.running_mean = _tensor(model, name + "running_mean", (c,))
        bn.running_var = _tensor(model, name + "running_var", (c,))
        return bn
    if kind == "noise":
        return NoiseBias(_tensor(model, name + "gain", (c,)), _tensor(model, name + "bias", (c,)))
    return {"sample": Mu, "residual": Residual,
            "shuffle": lambda: nn.PixelShuffle(layer["s"]), "act": lambda: None}[kind]()


TENSORS = {"conv": ("weight", "bias"), "deconv": ("weight", "bias"), "dense": ("weight", "bias"),
           "bn": ("gamma", "beta", "running_mean", "running_var"), "noise": ("gain", "bias")}


def to_torch(model):
    """The model as an eval-mode torch module on N x C x H x W input."""
    mods, shape = [], (model.channels, model.meta["arch.height"], model.meta["arch.width"])
    for i, layer in enumerate(model.layers):
        mod = _layer(model, i, layer, shape)
        act = _act(layer["act"], layer["alpha"])
        mods += [m for m in (mod, act) if m is not None]
        shape = out_shape(layer, shape)
    expected = {f"layer{i}.{t}" for i, layer in enumerate(model.layers)
                for t in TENSORS.get(layer["kind"], ())}
    # The latent Gaussian of a latent-score anomaly model is not part of the network.
    if set(model.tensors) - {"latent.mean", "latent.whiten"} != expected:
        raise ModelError(f"{model.path}: tensors {sorted(set(model.tensors) ^ expected)} "
                         "do not match the architecture")
    return Net(mods).eval()

"""Reads a libae model file (.aem, docs/model-format.md): metadata, tensors,
layer specification, shapes and FLOPs. aem_torch.py builds the same network
in PyTorch from it, for benchmarks that compare libae with PyTorch.

Independent of libae's code on purpose: it follows the documents
(docs/model-format.md, docs/architecture.md) and lib/layers.c's semantics,
so a mismatch between its output and libae's is a finding, not a tautology.
Anything it does not know (a layer kind, an `arch.*` key, a file version)
is an error that names it, never a guess."""
import struct
import zlib

import numpy as np

KNOWN_ARCH_KEYS = {"arch.spec", "arch.channels", "arch.height", "arch.width"}
ACTIVATIONS = {"linear", "relu", "lrelu", "sigmoid", "tanh"}


class ModelError(Exception):
    pass


class _Reader:
    """Bounds-checked little-endian reads from a bytes object."""

    def __init__(self, data, pos, end):
        self.data, self.pos, self.end = data, pos, end

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > self.end:
            raise ModelError(f"field at offset {self.pos} runs past its section")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def raw(self, n):
        if self.pos + n > self.end:
            raise ModelError(f"{n} bytes at offset {self.pos} run past their section")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b


def _read_meta(data, off, length, count):
    r, meta = _Reader(data, off, off + length), {}
    for _ in range(count):
        key = r.raw(r.take("<H")).decode("ascii")
        kind = r.take("<B")
        if kind == 1:
            meta[key] = r.take("<q")
        elif kind == 2:
            meta[key] = r.take("<d")
        elif kind == 3:
            meta[key] = r.raw(r.take("<I")).decode("utf-8")
        else:
            raise ModelError(f"metadata '{key}' has unknown type {kind}")
    if r.pos != r.end:
        raise ModelError("stray bytes after the last metadata entry")
    return meta


def _read_tensors(data, off, length, count):
    r, tensors = _Reader(data, off, off + length), {}
    for _ in range(count):
        name = r.raw(r.take("<B")).decode("ascii")
        dtype, rank = r.take("<BB")
        if dtype != 1 or not 1 <= rank <= 4:
            raise ModelError(f"tensor '{name}': data type {dtype}, rank {rank} unsupported")
        shape = [r.take("<q") for _ in range(rank)]
        data_off, nbytes = r.take("<QQ")
        if nbytes != 4 * int(np.prod(shape)) or data_off + nbytes > len(data) - 4:
            raise ModelError(f"tensor '{name}' has a bad size or extends past end of file")
        tensors[name] = np.frombuffer(data, "<f4", int(np.prod(shape)), data_off).reshape(shape)
    return tensors


def read_aem(path):
    """Returns (metadata dict, {tensor name: float32 array}) of a .aem file."""
    try:
        with open(path, "rb") as f:
            return _parse(path, f.read())
    except (OSError, UnicodeDecodeError, ValueError, struct.error) as e:
        raise ModelError(f"{path}: {e}") from None


def _parse(path, data):
    if len(data) < 68 or data[:4] != b"AEMF":
        raise ModelError(f"{path}: not a .aem model file")
    version, flags, header, length, meta_off, meta_len, table_off, table_len, nmeta, ntens = \
        struct.unpack_from("<IIIQQQQQII", data, 4)
    if version != 1 or flags != 0 or header != 64:
        raise ModelError(f"{path}: format version {version} / flags {flags} not supported")
    if length != len(data):
        raise ModelError(f"{path}: model file truncated: {len(data)} of {length} bytes")
    stored = struct.unpack_from("<I", data, length - 4)[0]
    if zlib.crc32(data[:length - 4]) != stored:
        raise ModelError(f"{path}: model file CRC mismatch")
    if meta_off != 64 or table_off != meta_off + meta_len or table_off + table_len > length - 4:
        raise ModelError(f"{path}: sections out of place")
    return (_read_meta(data, meta_off, meta_len, nmeta),
            _read_tensors(data, table_off, table_len, ntens))


def _parse_act(text):
    if text.startswith("lrelu="):
        return "lrelu", float(text[6:])
    if text not in ACTIVATIONS:
        raise ModelError(f"unknown activation '{text}'")
    return text, 0.2


def parse_spec(spec):
    """The layer specification (docs/architecture.md) as a list of dicts."""
    layers = []
    for token in spec.split(","):
        f = token.split(":")
        kind = f[0]
        layer = {"kind": kind, "act": "linear", "alpha": 0.2}
        if kind in ("conv", "deconv"):
            if len(f) not in (5, 6):
                raise ModelError(f"bad layer '{token}'")
            layer.update(out=int(f[1]), k=int(f[2]), s=int(f[3]), p=int(f[4]))
            rest = f[5:]
        elif kind == "dense":
            layer["out"] = int(f[1])
            layer["shape"] = (layer["out"], 1, 1)
            rest = []
            for x in f[2:]:
                if "x" in x and "=" not in x:
                    layer["shape"] = tuple(int(v) for v in x.split("x"))
                else:
                    rest.append(x)
        elif kind == "shuffle":  # depth to space by FACTOR, as PyTorch's pixel_shuffle
            if len(f) not in (2, 3):
                raise ModelError(f"bad layer '{token}'")
            layer["s"] = int(f[1])
            rest = f[2:]
        elif kind in ("bn", "act", "sample", "residual", "noise"):
            rest = f[1:]
        else:
            raise ModelError(f"layer kind '{kind}' unknown to tests/bench/aem.py: teach it first")
        if rest:
            layer["act"], layer["alpha"] = _parse_act(rest[0])
        layers.append(layer)
    return layers


def check_arch_keys(meta):
    unknown = sorted(k for k in meta if k.startswith("arch.") and k not in KNOWN_ARCH_KEYS)
    if unknown:
        raise ModelError(f"architecture keys unknown to tests/bench/aem.py: {', '.join(unknown)}"
                         " (a newer libae feature: teach the reader before comparing)")
    for k in KNOWN_ARCH_KEYS:
        if k not in meta:
            raise ModelError(f"model lacks '{k}'")


def out_shape(layer, shape):
    """Output C, H, W of a layer (docs/architecture.md formulas)."""
    c, h, w = shape
    kind = layer["kind"]
    if kind == "conv":
        k, s, p = layer["k"], layer["s"], layer["p"]
        return layer["out"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    if kind == "deconv":
        k, s, p = layer["k"], layer["s"], layer["p"]
        return layer["out"], (h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k
    if kind == "dense":
        return layer["shape"]
    if kind == "sample":
        return c // 2, h, w
    if kind == "shuffle":
        r = layer["s"]
        return c // (r * r), h * r, w * r
    return shape


def layer_flops(layer, shape_in, shape_out):
    """Multiply-adds x 2 of a weighted layer (bias, BN, activations ignored)."""
    kind = layer["kind"]
    if kind == "conv":
        return 2 * np.prod(shape_out) * shape_in[0] * layer["k"] ** 2
    if kind == "deconv":
        return 2 * np.prod(shape_in) * shape_out[0] * layer["k"] ** 2
    if kind == "dense":
        return 2 * np.prod(shape_in) * np.prod(shape_out)
    return 0


def size_multiple(layers):
    m = 1
    for layer in layers:
        if layer["kind"] == "conv":
            m *= layer["s"]
    return m


class Model:
    """A .aem file as layers + tensors, and its FLOPs at a given frame size."""

    def __init__(self, path):
        self.path = path
        self.meta, self.tensors = read_aem(path)
        check_arch_keys(self.meta)
        self.layers = parse_spec(self.meta["arch.spec"])
        self.channels = self.meta["arch.channels"]

    def flops(self, height, width):
        shape, total = (self.channels, height, width), 0
        for layer in self.layers:
            nxt = out_shape(layer, shape)
            total += layer_flops(layer, shape, nxt)
            shape = nxt
        return float(total)

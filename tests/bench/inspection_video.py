#!/usr/bin/python3
"""Conveyor-style inspection video with known defects, for aeanomaly.

A textured surface slides past a fixed GRAY8 camera (one strip of surface per
footage, moving a few pixels per frame), lit by a slowly drifting light, seen
through sensor noise. Training footage is defect-free; in test footage some
frames carry a defect (scratch, spot, stain, crack or missing texture) whose
footprint is written as a per-pixel mask. Everything follows from the seed.

Per surface, OUTDIR/SURFACE/ holds raw GRAY8 frames (read them with
`filesrc ! rawvideoparse format=gray8 width=W height=H`):

  train.gray8            defect-free frames
  test.gray8             frames, some with a defect
  test-masks.gray8       one mask per test frame: 255 on the defect, else 0
  test-labels.csv        frame,label,defect (label 1: the frame has a defect)
  defects.gray8          frames that all carry a defect (labelled footage
                         for threshold calibration, other parts of the line)
  info.txt               width height and frame counts, one KEY=VALUE a line

Usage: inspection_video.py OUTDIR [--surfaces metal,fabric,wood,pcb]
       [--size 256x256] [--train 400] [--test 240] [--defects 60]
       [--defect-rate 0.4] [--seed 1]
       inspection_video.py --self-test
"""
import argparse
import os
import sys
import tempfile

import numpy as np

SURFACES = ("metal", "fabric", "wood", "pcb")
DEFECTS = ("scratch", "spot", "stain", "crack", "missing")
SPEED = 4            # pixels the surface moves per frame
NOISE_SIGMA = 2.5 / 255
DRIFT_GAIN = 0.08    # +-8 % light level
DRIFT_SLOPE = 0.06   # +-3 % left-to-right shading
DRIFT_PERIOD = 180   # frames
MASK_ALPHA = 0.5     # a pixel belongs to the defect where it is at least half applied


# ---- Textures ------------------------------------------------------------------

def blur(img, sy, sx):
    """Gaussian blur (periodic) with separate sigmas along y and x, via FFT."""
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.rfftfreq(img.shape[1])[None, :]
    gain = np.exp(-2 * np.pi ** 2 * ((sy * fy) ** 2 + (sx * fx) ** 2))
    return np.fft.irfft2(np.fft.rfft2(img) * gain, s=img.shape)


def unit(img):
    """Zero mean, unit standard deviation."""
    return (img - img.mean()) / (img.std() + 1e-12)


def metal(rng, h, w):
    """Brushed metal: long horizontal streaks over a fine grain."""
    streaks = unit(blur(rng.standard_normal((h, w)), 0.8, 30))
    grain = unit(blur(rng.standard_normal((h, w)), 0.7, 0.7))
    sheen = unit(blur(rng.standard_normal((h, w)), 40, 120))
    return 0.55 + 0.05 * streaks + 0.02 * grain + 0.03 * sheen


def fabric(rng, h, w):
    """Plain weave: threads over and under in a checkerboard of 8-px cells."""
    p = 8
    y, x = np.mgrid[0:h, 0:w]
    over_h = ((y // p) + (x // p)) % 2 == 0
    # Each thread has its own shade; a thread is a rounded ridge across its cell.
    row_shade = rng.normal(0, 0.03, h // p + 1)[y // p]
    col_shade = rng.normal(0, 0.03, w // p + 1)[x // p]
    across_h = np.cos(np.pi * ((y % p) + 0.5 - p / 2) / p)
    across_v = np.cos(np.pi * ((x % p) + 0.5 - p / 2) / p)
    weave = np.where(over_h, 0.45 + 0.2 * across_h + row_shade, 0.40 + 0.2 * across_v + col_shade)
    fuzz = unit(blur(rng.standard_normal((h, w)), 0.8, 0.8))
    return weave + 0.02 * fuzz


def wood(rng, h, w):
    """Wood grain: wavy growth lines along the board, warped by low-frequency noise."""
    y, x = np.mgrid[0:h, 0:w].astype(float)
    warp = unit(blur(rng.standard_normal((h, w)), 25, 60))
    lines = np.sin(2 * np.pi * (y + 9 * warp) / 13.0)
    pores = unit(blur(rng.standard_normal((h, w)), 0.6, 6))
    tone = unit(blur(rng.standard_normal((h, w)), 60, 150))
    return 0.50 + 0.09 * lines ** 3 + 0.03 * pores + 0.03 * tone


def pcb(rng, h, w):
    """Circuit board: a regular grid of traces with pads at the crossings."""
    y, x = np.mgrid[0:h, 0:w]
    period, half_trace, half_pad = 32, 1, 5
    dy = np.abs((y % period) - period // 2)
    dx = np.abs((x % period) - period // 2)
    img = 0.28 + 0.02 * unit(blur(rng.standard_normal((h, w)), 1.5, 1.5))
    img = np.where((dy <= half_trace) | (dx <= half_trace), 0.62, img)
    img = np.where((dy <= half_pad) & (dx <= half_pad), 0.78, img)
    drill = (dy ** 2 + dx ** 2) <= 4
    return np.where(drill, 0.15, img)


TEXTURES = {"metal": metal, "fabric": fabric, "wood": wood, "pcb": pcb}


# ---- Defects -------------------------------------------------------------------

def segment_distance(y, x, y0, x0, y1, x1):
    """Distance of every pixel to the segment (y0,x0)-(y1,x1)."""
    vy, vx = y1 - y0, x1 - x0
    t = np.clip(((y - y0) * vy + (x - x0) * vx) / max(vy * vy + vx * vx, 1e-9), 0, 1)
    return np.hypot(y - (y0 + t * vy), x - (x0 + t * vx))


def stroke(h, w, points, width):
    """Anti-aliased coverage (0..1) of a polyline of the given width."""
    y, x = np.mgrid[0:h, 0:w].astype(float)
    d = np.full((h, w), np.inf)
    for (y0, x0), (y1, x1) in zip(points[:-1], points[1:]):
        d = np.minimum(d, segment_distance(y, x, y0, x0, y1, x1))
    return np.clip(width / 2 + 0.5 - d, 0, 1)


def scratch(rng, img):
    h, w = img.shape
    length, angle = rng.uniform(30, 80), rng.uniform(0, np.pi)
    cy, cx = rng.uniform(length / 2 + 4, h - length / 2 - 4), rng.uniform(length / 2 + 4, w - length / 2 - 4)
    dy, dx = np.sin(angle) * length / 2, np.cos(angle) * length / 2
    alpha = stroke(h, w, [(cy - dy, cx - dx), (cy + dy, cx + dx)], rng.uniform(1.0, 2.0))
    return alpha, img + rng.choice([-1, 1]) * rng.uniform(0.20, 0.30)


def spot(rng, img):
    h, w = img.shape
    r = rng.uniform(3, 7)
    cy, cx = rng.uniform(r + 4, h - r - 4), rng.uniform(r + 4, w - r - 4)
    y, x = np.mgrid[0:h, 0:w]
    alpha = np.clip(r + 0.5 - np.hypot(y - cy, x - cx), 0, 1)
    return alpha, img - rng.uniform(0.22, 0.32)


def stain(rng, img):
    """A large, soft, low-contrast blot with an irregular outline."""
    h, w = img.shape
    r = rng.uniform(12, 24)
    cy, cx = rng.uniform(r + 6, h - r - 6), rng.uniform(r + 6, w - r - 6)
    y, x = np.mgrid[0:h, 0:w]
    angle = np.arctan2(y - cy, x - cx)
    k = np.arange(1, 4)[:, None, None]
    wobble = (rng.uniform(0, 0.12, (3, 1, 1)) * np.cos(k * angle + rng.uniform(0, 6.3, (3, 1, 1)))).sum(0)
    rel = np.hypot(y - cy, x - cx) / (r * (1 + wobble))
    alpha = np.clip((1.25 - rel) / 0.5, 0, 1)
    return alpha, img - rng.uniform(0.12, 0.18)


def crack(rng, img):
    """A dark random walk that keeps roughly one heading."""
    h, w = img.shape
    steps, heading = int(rng.integers(25, 45)), rng.uniform(0, 2 * np.pi)
    p = np.array([rng.uniform(50, h - 50), rng.uniform(50, w - 50)]) if min(h, w) > 120 \
        else np.array([h / 2, w / 2])
    points = [tuple(p)]
    for _ in range(steps):
        heading += rng.normal(0, 0.35)
        p = np.clip(p + 1.8 * np.array([np.sin(heading), np.cos(heading)]), 4, [h - 5, w - 5])
        points.append(tuple(p))
    alpha = stroke(h, w, points, rng.uniform(1.0, 1.8))
    return alpha, img - rng.uniform(0.25, 0.35)


def missing(rng, img):
    """A patch where the texture is worn away to its mean tone."""
    h, w = img.shape
    ry, rx = rng.uniform(8, 16), rng.uniform(8, 16)
    cy, cx = rng.uniform(ry + 4, h - ry - 4), rng.uniform(rx + 4, w - rx - 4)
    y, x = np.mgrid[0:h, 0:w]
    rel = np.hypot((y - cy) / ry, (x - cx) / rx)
    alpha = np.clip((1.0 - rel) * max(ry, rx) + 0.5, 0, 1)
    return alpha, np.full_like(img, img.mean()) + 0.3 * blur(img - img.mean(), 6, 6)


DEFECT_MAKERS = {"scratch": scratch, "spot": spot, "stain": stain, "crack": crack,
                 "missing": missing}


def add_defect(rng, img, kind):
    """The frame with a defect of that kind blended in, and its mask."""
    alpha, damaged = DEFECT_MAKERS[kind](rng, img)
    return img + alpha * (damaged - img), alpha >= MASK_ALPHA


# ---- Footage -------------------------------------------------------------------

def light(frame_index, phase, h, w):
    """Gain field of the slowly drifting illumination for one frame."""
    t = 2 * np.pi * frame_index / DRIFT_PERIOD + phase
    ramp = np.linspace(-0.5, 0.5, w)[None, :]
    return (1 + DRIFT_GAIN * np.sin(t)) * (1 + DRIFT_SLOPE * np.cos(0.7 * t) * ramp) * np.ones((h, 1))


def to_gray8(img):
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def footage(rng, surface, h, w, count, defect_rate):
    """Frames (uint8), masks (bool) and defect names ('' for none)."""
    strip = TEXTURES[surface](rng, h, w + SPEED * count)
    phase = rng.uniform(0, 2 * np.pi)
    frames = np.empty((count, h, w), np.uint8)
    masks = np.zeros((count, h, w), bool)
    kinds = []
    for i in range(count):
        surf = strip[:, SPEED * i:SPEED * i + w]
        kind = DEFECTS[rng.integers(len(DEFECTS))] if rng.random() < defect_rate else ""
        if kind:
            surf, masks[i] = add_defect(rng, surf, kind)
        lit = surf * light(i, phase, h, w)
        frames[i] = to_gray8(lit + rng.normal(0, NOISE_SIGMA, (h, w)))
        kinds.append(kind)
    return frames, masks, kinds


def write_surface(outdir, surface, index, args):
    d = os.path.join(outdir, surface)
    os.makedirs(d, exist_ok=True)
    h, w = args.height, args.width
    # One stream per surface and footage, so adding a surface changes no other.
    seeds = np.random.SeedSequence([args.seed, index]).spawn(3)
    train, _, _ = footage(np.random.default_rng(seeds[0]), surface, h, w, args.train, 0.0)
    test, masks, kinds = footage(np.random.default_rng(seeds[1]), surface, h, w, args.test,
                                 args.defect_rate)
    bad, _, _ = footage(np.random.default_rng(seeds[2]), surface, h, w, args.defects, 1.0)
    train.tofile(os.path.join(d, "train.gray8"))
    test.tofile(os.path.join(d, "test.gray8"))
    (masks.astype(np.uint8) * 255).tofile(os.path.join(d, "test-masks.gray8"))
    bad.tofile(os.path.join(d, "defects.gray8"))
    with open(os.path.join(d, "test-labels.csv"), "w") as f:
        f.write("frame,label,defect\n")
        for i, k in enumerate(kinds):
            f.write(f"{i},{int(bool(k))},{k or 'none'}\n")
    with open(os.path.join(d, "info.txt"), "w") as f:
        f.write(f"width={w}\nheight={h}\ntrain={args.train}\ntest={args.test}\n"
                f"defects={args.defects}\nseed={args.seed}\n")
    return kinds


# ---- Self-test -----------------------------------------------------------------

def check(cond, what):
    if not cond:
        raise AssertionError(what)


def self_test():
    """Small footage: files, labels against masks, defects where the masks say,
    determinism. Raises on the first failure."""
    for surface in SURFACES:
        img = TEXTURES[surface](np.random.default_rng(3), 96, 128)
        check(img.shape == (96, 128) and 0.05 < img.mean() < 0.95 and img.std() > 0.02,
              f"{surface}: texture out of range (mean {img.mean():.3f}, std {img.std():.3f})")
        for kind in DEFECTS:
            damaged, mask = add_defect(np.random.default_rng(5), img, kind)
            change = np.abs(damaged - img)
            check(mask.sum() >= 10, f"{surface}/{kind}: mask of {mask.sum()} pixels")
            check(change[mask].mean() > 0.04, f"{surface}/{kind}: defect invisible in its mask")
            # Soft edges (stains) fade out within a few pixels of the mask.
            far = ~grow(mask, 8)
            check(change[far].max() < 1e-6, f"{surface}/{kind}: change far outside the mask")
    with tempfile.TemporaryDirectory() as tmp:
        args = argparse.Namespace(width=64, height=48, train=6, test=12, defects=3,
                                  defect_rate=0.5, seed=7)
        for run in ("a", "b"):
            kinds = write_surface(os.path.join(tmp, run), "wood", 2, args)
        d = os.path.join(tmp, "a", "wood")
        frames = np.fromfile(os.path.join(d, "test.gray8"), np.uint8)
        masks = np.fromfile(os.path.join(d, "test-masks.gray8"), np.uint8).reshape(12, 48, 64)
        check(frames.size == 12 * 48 * 64, "test.gray8 has the wrong size")
        check(os.path.getsize(os.path.join(d, "train.gray8")) == 6 * 48 * 64, "train.gray8 size")
        check(os.path.getsize(os.path.join(d, "defects.gray8")) == 3 * 48 * 64, "defects.gray8 size")
        check(set(np.unique(masks)) <= {0, 255}, "masks are not 0/255")
        rows = open(os.path.join(d, "test-labels.csv")).read().split("\n")[1:-1]
        check(len(rows) == 12, "one label per test frame")
        for i, row in enumerate(rows):
            idx, label, kind = row.split(",")
            check(int(idx) == i and int(label) == int(masks[i].any()),
                  f"frame {i}: label {label} but mask has {int(masks[i].sum() / 255)} pixels")
            check((kind == "none") == (label == "0") and (kind == "none" or kind in DEFECTS),
                  f"frame {i}: defect '{kind}' with label {label}")
        check(0 < sum(map(bool, kinds)) < 12, "the defect rate gave all or nothing")
        for name in ("train.gray8", "test.gray8", "test-masks.gray8", "defects.gray8",
                     "test-labels.csv"):
            a = open(os.path.join(tmp, "a", "wood", name), "rb").read()
            b = open(os.path.join(tmp, "b", "wood", name), "rb").read()
            check(a == b, f"{name} differs between two runs with the same seed")
    print("inspection_video self-test: ok")


def grow(mask, r):
    """The mask grown by r pixels (a square neighbourhood)."""
    grown = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            grown |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return grown


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--surfaces", default=",".join(SURFACES))
    ap.add_argument("--size", default="256x256")
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--test", type=int, default=240)
    ap.add_argument("--defects", type=int, default=60)
    ap.add_argument("--defect-rate", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return 0
    if not args.outdir:
        ap.error("OUTDIR is required")
    try:
        args.width, args.height = (int(v) for v in args.size.split("x"))
    except ValueError:
        ap.error(f"bad --size '{args.size}': expected WxH")
    if min(args.width, args.height) < 64 or min(args.train, args.test, args.defects) < 1:
        ap.error("frames must be at least 64x64 and every footage at least 1 frame long")
    if not 0 <= args.defect_rate <= 1:
        ap.error("--defect-rate must be in [0, 1]")
    for s in args.surfaces.split(","):
        if s not in SURFACES:
            ap.error(f"unknown surface '{s}' ({', '.join(SURFACES)})")
    for s in args.surfaces.split(","):
        kinds = write_surface(args.outdir, s, SURFACES.index(s), args)
        print(f"{s}: {args.train} training, {args.test} test ({sum(map(bool, kinds))} with "
              f"defects), {args.defects} defect frames of {args.width}x{args.height}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

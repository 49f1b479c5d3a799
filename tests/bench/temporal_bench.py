"""Temporal denoising benchmark: a synthetic static-camera sequence with
moving content, through real GStreamer pipelines (filesrc ! rawvideoparse !
aedenoise temporal=X ! filesink), scored on static areas, moving areas,
the background a moving object has just uncovered (where trails would
show) and the whole frame; then frames/s of temporal off and on, measured
alternately in the same run. Run through tests/bench/run-temporal-bench.sh,
which finds the plugin.

The scene: skimage's brick photo scaled to fill the frame (the static
background), a panning window (moon texture scrolling 4 px/frame), a fast
disc (moon crater texture, ~16 px/frame) and a slow square (gravel texture,
2 px/frame, the hard case: small frame-to-frame differences). Noise:
Gaussian on the luma, fixed seed; chroma is flat 128 (aedenoise passes
chroma through)."""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import ndimage
from skimage import data, transform

SEED = 2026


def fail(msg):
    print(f"temporal_bench: {msg}", file=sys.stderr)
    sys.exit(1)


# ---- The sequence -------------------------------------------------------------------

def to_u8(a):
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def resized(img, h, w):
    return transform.resize(img.astype(np.float64), (h, w), order=3, mode="reflect",
                            preserve_range=True, anti_aliasing=True)


class Scene:
    """Clean frames and, per frame, the masks of moving content."""

    def __init__(self, w, h):
        self.w, self.h = w, h
        side = max(w, h)
        bg = resized(data.brick(), side, side)
        y0 = (side - h) // 2
        self.background = bg[y0:y0 + h, :w]
        s = h / 720.0  # everything scales with the frame
        self.pan_box = (int(420 * s), int(700 * s), int(w - 520 * s), int(w - 40 * s))
        y_a, y_b, x_a, x_b = self.pan_box
        self.pan_texture = resized(data.moon(), y_b - y_a, 2 * (x_b - x_a))
        self.disc_r = int(80 * s)
        d = 2 * self.disc_r
        self.disc = resized(data.moon()[100:300, 200:400], d, d) * 0.8 + 40
        yy, xx = np.mgrid[:d, :d]
        self.disc_mask = (yy - self.disc_r + 0.5) ** 2 + (xx - self.disc_r + 0.5) ** 2 < self.disc_r ** 2
        self.square_side = int(100 * s)
        self.square = resized(data.gravel()[:200, :200], self.square_side, self.square_side)
        self.s = s

    def objects(self, t):
        """[(y, x, texture, mask)] of the moving objects at frame t."""
        s = self.s
        disc_x = int((60 + 16 * t) * s) % max(1, self.w - 2 * self.disc_r)
        disc_y = int((140 + 60 * np.sin(t / 8.0)) * s)
        sq_x = int(200 * s)
        sq_y = int((300 + 2 * t) * s) % max(1, self.h - self.square_side)
        square_mask = np.ones(self.square.shape, bool)
        return [(disc_y, disc_x, self.disc, self.disc_mask),
                (sq_y, sq_x, self.square, square_mask)]

    def object_mask(self, t):
        m = np.zeros((self.h, self.w), bool)
        for y, x, _, mask in self.objects(t):
            m[y:y + mask.shape[0], x:x + mask.shape[1]] |= mask
        return m

    def frame(self, t):
        f = self.background.copy()
        y_a, y_b, x_a, x_b = self.pan_box
        shift = (4 * t) % (self.pan_texture.shape[1] - (x_b - x_a))
        f[y_a:y_b, x_a:x_b] = self.pan_texture[:, shift:shift + x_b - x_a]
        for y, x, tex, mask in self.objects(t):
            region = f[y:y + tex.shape[0], x:x + tex.shape[1]]
            region[mask] = tex[mask]
        return to_u8(f)

    def masks(self, t):
        """(moving, uncovered): moving is everything that changed since the
        previous frame (objects then and now, the panning window), grown by
        4 px for the filters' reach; uncovered is background an object covered
        in the previous frame and no longer does (trails show there)."""
        now = self.object_mask(t)
        before = self.object_mask(t - 1) if t > 0 else np.zeros_like(now)
        pan = np.zeros_like(now)
        y_a, y_b, x_a, x_b = self.pan_box
        pan[y_a:y_b, x_a:x_b] = True
        moving = ndimage.binary_dilation(now | before | pan, iterations=4)
        uncovered = before & ~now & ~pan
        return moving, uncovered


# ---- GStreamer ------------------------------------------------------------------------

def launch(args):
    r = subprocess.run(["gst-launch-1.0", "-e", *args], capture_output=True, text=True)
    if r.returncode != 0 or "ERROR" in r.stdout + r.stderr or "WARNING" in r.stderr:
        fail("pipeline failed: gst-launch-1.0 " + " ".join(args) + "\n" + r.stdout + r.stderr)
    m = re.search(r"Execution ended after (\d+):(\d+):(\d+\.\d+)", r.stdout)
    if not m:
        fail("gst-launch-1.0 printed no execution time:\n" + r.stdout)
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])


def source(path, w, h):
    return ["filesrc", f"location={path}", "!", "rawvideoparse", "format=i420", f"width={w}",
            f"height={h}", "framerate=30/1"]


def aedenoise(temporal, extra):
    return ["aedenoise", f"temporal={temporal:g}", *extra]


def write_i420(path, lumas):
    h, w = lumas[0].shape
    chroma = np.full(((h + 1) // 2) * ((w + 1) // 2) * 2, 128, np.uint8).tobytes()
    with open(path, "wb") as out:
        for y in lumas:
            out.write(y.tobytes())
            out.write(chroma)


def read_lumas(path, w, h, count):
    frame = w * h + ((h + 1) // 2) * ((w + 1) // 2) * 2
    raw = np.fromfile(path, np.uint8)
    if raw.size != frame * count:
        fail(f"{path}: {raw.size} bytes, expected {frame * count}")
    return [raw[i * frame:i * frame + w * h].reshape(h, w) for i in range(count)]


# ---- Scores ----------------------------------------------------------------------------

def psnr(se, n):
    return 99.0 if se == 0 else 10 * np.log10(255.0 ** 2 * n / se)


def score(outs, cleans, masks):
    """PSNR over all frames (from the summed squared error) on static,
    moving, uncovered and all pixels."""
    acc = {k: [0.0, 0] for k in ("static", "moving", "uncovered", "overall")}
    for out, clean, (moving, uncovered) in zip(outs, cleans, masks):
        err = (out.astype(np.float64) - clean) ** 2
        for k, m in (("static", ~moving), ("moving", moving), ("uncovered", uncovered),
                     ("overall", None)):
            e = err if m is None else err[m]
            acc[k][0] += e.sum()
            acc[k][1] += e.size
    return {k: psnr(se, n) for k, (se, n) in acc.items()}


# ---- Main --------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--size", default="1280x720", help="WxH (default 1280x720)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--sigmas", default="15,25", help="noise sigmas, levels of 255")
    ap.add_argument("--temporal", default="0.5,0.8", help="temporal values compared with 0")
    ap.add_argument("--speed-runs", type=int, default=3,
                    help="alternating off/on speed runs (best of each is kept)")
    ap.add_argument("--aedenoise-opts", default="", help="more aedenoise properties")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    sigmas = [float(v) for v in args.sigmas.split(",")]
    temporals = [0.0] + [float(v) for v in args.temporal.split(",")]
    extra = args.aedenoise_opts.split()
    t_start = time.perf_counter()

    scene = Scene(w, h)
    cleans = [scene.frame(t) for t in range(args.frames)]
    masks = [scene.masks(t) for t in range(args.frames)]
    moving_share = np.mean([m.mean() for m, _ in masks])
    print(f"# {args.frames} frames {w}x{h} I420; background skimage brick, panning window, "
          f"fast disc, slow square; moving area {100 * moving_share:.1f} % of pixels; "
          f"aedenoise {' '.join(extra) or '(defaults)'}")

    with tempfile.TemporaryDirectory(prefix="temporal-bench-") as work:
        src, dst = os.path.join(work, "in.yuv"), os.path.join(work, "out.yuv")
        print("\n| sigma | method | static PSNR | moving PSNR | uncovered PSNR | overall PSNR |")
        print("|---|---|---|---|---|---|")
        for sigma in sigmas:
            rng = np.random.default_rng(SEED + int(sigma))
            noisy = [to_u8(c + rng.normal(0.0, sigma, c.shape)) for c in cleans]
            write_i420(src, noisy)
            rows = [("noisy input", score(noisy, cleans, masks))]
            for k in temporals:
                launch(source(src, w, h) + ["!", *aedenoise(k, extra), "!", "filesink",
                                            f"location={dst}"])
                name = "temporal=0 (spatial only)" if k == 0 else f"temporal={k:g}"
                rows.append((name, score(read_lumas(dst, w, h, args.frames), cleans, masks)))
            for name, r in rows:
                print(f"| {sigma:g} | {name} | {r['static']:.2f} | {r['moving']:.2f} | "
                      f"{r['uncovered']:.2f} | {r['overall']:.2f} |")

        # Speed: the last sigma's frames, off and on alternately, best of each.
        best = {k: 0.0 for k in temporals}
        for _ in range(args.speed_runs):
            for k in temporals:
                secs = launch(source(src, w, h) + ["!", *aedenoise(k, extra), "!", "fakesink"])
                best[k] = max(best[k], args.frames / secs)
        anchor = args.frames / min(launch(source(src, w, h) + ["!", "fakesink"])
                                   for _ in range(args.speed_runs))
        print(f"\nSpeed, same run ({args.frames} frames {w}x{h} I420, filesrc ! rawvideoparse ! "
              f"... ! fakesink, best of {args.speed_runs} alternating runs):\n")
        print("| pipeline | frames/s |")
        print("|---|---|")
        print(f"| source only | {anchor:.0f} |")
        for k in temporals:
            name = "aedenoise temporal=0" if k == 0 else f"aedenoise temporal={k:g}"
            print(f"| {name} | {best[k]:.1f} |")
        off = best[0.0]
        for k in temporals[1:]:
            print(f"\ntemporal={k:g} / temporal=0 speed: {best[k] / off:.3f}")
    print(f"\n# total {time.perf_counter() - t_start:.0f} s; load average at the end "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

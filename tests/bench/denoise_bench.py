"""Denoising benchmark: aedenoise (through real GStreamer pipelines) against
ffmpeg hqdn3d / nlmeans / bm3d and OpenCV fastNlMeansDenoising, on the same
noisy frames, in one run; speed at 720p and 1080p; the same network in
PyTorch. Run through tests/bench/run-denoise-bench.sh, which finds the plugin.

Every figure is measured here; ratios are taken against anchors measured in
the same run. The models are inputs (the embedded default and any
--model FILE): nothing here depends on aedenoise's internals; the PyTorch
check follows the element's documented computation (docs/elements.md)."""
import argparse
import io as io_bytes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import cv2
import numpy as np
from skimage import io
from skimage.metrics import structural_similarity

import aem

SKDATA = "/usr/lib/python3/dist-packages/skimage/data"
SIGMAS = (15, 25, 50)
SEED = 2026
BT601 = np.array([0.299, 0.587, 0.114])
THREADS = 2  # the machine's cores: every method gets the same two

# Classical filters' settings per noise sigma (pixel units), chosen with
# --calibrate on photos that are NOT test images (skimage chelsea and rocket):
# each filter runs at its best measured setting. ffmpeg's bm3d thresholds
# unnormalised DCT coefficients, so its `sigma` is far from the noise sigma
# (and below a threshold it leaves the noise in); nlmeans' `s` stops at 30.
BM3D_SCALE = {15: 29, 25: 40, 50: 64}


def bm3d_filter(sigma, factor=1.0):
    """Two-step BM3D: basic estimate, then the final (Wiener) estimate that
    uses it as reference; 16x16 blocks, groups of up to 16 matched blocks."""
    s = BM3D_SCALE[sigma] * factor * sigma
    return (f"split[a][b];[a]bm3d=sigma={s:g}:block=4:group=16:estim=basic[r];"
            f"[b][r]bm3d=sigma={s:g}:block=4:group=16:estim=final:ref=1")


# filter: (factors tried by --calibrate, the chosen one first; graph for (sigma, factor))
CALIBRATION = {
    "hqdn3d": ([3, 1, 2, 4, 8], lambda s, f: f"hqdn3d=luma_spatial={f * s:g}"),
    "nlmeans": ([0.7, 0.5, 0.6, 0.8, 1.0], lambda s, f: f"nlmeans=s={min(30.0, f * s):g}"),
    "bm3d": ([1, 0.8, 0.9, 1.2, 1.5], bm3d_filter),
}


def ffmpeg_filter(name, sigma, factor=None):
    grid, build = CALIBRATION[name]
    return build(sigma, grid[0] if factor is None else factor)


def fail(msg):
    print(f"denoise_bench: {msg}", file=sys.stderr)
    sys.exit(1)


# ---- Images and noise -----------------------------------------------------------

def load_image(name, size=None):
    """RGB or gray uint8, cropped to sides that are multiples of 8 (so raw
    GStreamer strides equal the widths) or to `size` (h, w, y0, x0)."""
    a = io.imread(f"{SKDATA}/{name}.png")
    a = a[..., :3] if a.ndim == 3 else a
    if size:
        h, w, y0, x0 = size
        return np.ascontiguousarray(a[y0:y0 + h, x0:x0 + w])
    return np.ascontiguousarray(a[:a.shape[0] // 8 * 8, :a.shape[1] // 8 * 8])


def luma(rgb):
    return rgb.astype(np.float64) @ BT601


def to_u8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gray_of(img):
    return img if img.ndim == 2 else to_u8(luma(img))


def add_noise(img, sigma, tag):
    """Additive Gaussian noise, clipped to 8 bits; the same frames for a given
    (tag, sigma) in every run, whatever else runs."""
    if sigma == 0:
        return img.copy()
    rng = np.random.default_rng([SEED, zlib.crc32(tag.encode()), sigma])
    return to_u8(img + rng.normal(0.0, sigma, img.shape))


def psnr(ref, x):
    """PSNR in dB for 8-bit data; inf for identical frames (no warning)."""
    mse = np.mean((ref.astype(np.float64) - x.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def ssim(ref, x):
    return structural_similarity(ref, x, data_range=255, channel_axis=2 if ref.ndim == 3 else None)


def i420_of(rgb):
    """Full-range BT.601 Y, Cb, Cr planes, chroma averaged over 2x2."""
    f = rgb.astype(np.float64)
    y = f @ BT601
    u = 128 + (f[..., 2] - y) * 0.564
    v = 128 + (f[..., 0] - y) * 0.713
    sub = lambda p: p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2).mean(axis=(1, 3))
    return to_u8(y), to_u8(sub(u)), to_u8(sub(v))


# ---- aedenoise through GStreamer -------------------------------------------------

class Gst:
    """Runs gst-launch-1.0 pipelines; aedenoise properties come from the model
    entry and --aedenoise-opts."""

    def __init__(self, work, extra_opts):
        self.work, self.extra = work, extra_opts.split()

    def launch(self, args):
        r = subprocess.run(["gst-launch-1.0", "-e", *args], capture_output=True, text=True)
        if r.returncode != 0 or "ERROR" in r.stdout + r.stderr:
            fail("pipeline failed: gst-launch-1.0 " + " ".join(args) + "\n" + r.stdout + r.stderr)
        m = re.search(r"Execution ended after (\d+):(\d+):(\d+\.\d+)", r.stdout)
        if not m:
            fail("gst-launch-1.0 printed no execution time:\n" + r.stdout)
        return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])

    def element(self, model, props=()):
        return ["aedenoise", *([f"model={model}"] if model else []), *self.extra, *props]

    def has_property(self, name):
        r = subprocess.run(["gst-inspect-1.0", "aedenoise"], capture_output=True, text=True)
        return re.search(rf"^\s+{re.escape(name)}\s", r.stdout, re.M) is not None

    def denoise(self, frames, fmt, model, props=()):
        """frames: equal-shaped uint8 arrays (GRAY8, RGB) or (Y, U, V) tuples
        (I420); returns the element's output frames in the same form."""
        first = frames[0]
        h, w = (first[0] if fmt == "i420" else first).shape[:2]
        src, dst = os.path.join(self.work, "in.raw"), os.path.join(self.work, "out.raw")
        planes = lambda f: f if fmt == "i420" else (f,)
        with open(src, "wb") as out:
            for f in frames:
                for p in planes(f):
                    out.write(np.ascontiguousarray(p).tobytes())
        self.launch(["filesrc", f"location={src}", "!", "rawvideoparse", f"format={fmt}",
                     f"width={w}", f"height={h}", "framerate=25/1", "!", *self.element(model, props),
                     "!", "filesink", f"location={dst}"])
        data = np.fromfile(dst, np.uint8)
        if data.size != os.path.getsize(src):
            fail(f"aedenoise wrote {data.size} bytes for {os.path.getsize(src)} in")
        result, pos = [], 0
        for f in frames:
            out_planes = []
            for p in planes(f):
                out_planes.append(data[pos:pos + p.size].reshape(p.shape))
                pos += p.size
            result.append(tuple(out_planes) if fmt == "i420" else out_planes[0])
        return result


# ---- Classical filters -------------------------------------------------------------

def ffmpeg_gray(img, vf):
    """One gray frame through an ffmpeg filter graph; (output, seconds)."""
    h, w = img.shape
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-threads", str(THREADS),
           "-filter_threads", str(THREADS), "-f", "rawvideo", "-pix_fmt", "gray",
           "-s", f"{w}x{h}", "-i", "-", "-vf", vf, "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, input=img.tobytes(), capture_output=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0 or len(r.stdout) != img.size:
        fail(f"ffmpeg -vf {vf} failed: {r.stderr.decode(errors='replace')}")
    return np.frombuffer(r.stdout, np.uint8).reshape(h, w), seconds


def opencv_nlm(img, sigma):
    t0 = time.perf_counter()
    if img.ndim == 2:
        out = cv2.fastNlMeansDenoising(img, None, h=float(sigma), templateWindowSize=7,
                                       searchWindowSize=21)
    else:  # OpenCV's colour variant works on BGR (it filters in L*a*b*)
        bgr = np.ascontiguousarray(img[..., ::-1])
        out = cv2.fastNlMeansDenoisingColored(bgr, None, float(sigma), float(sigma), 7, 21)
        out = np.ascontiguousarray(out[..., ::-1])
    return out, time.perf_counter() - t0


# ---- Quality on gray frames ---------------------------------------------------------

class Results(dict):
    """(image, sigma, method) -> dict(psnr, ssim, out, seconds)."""

    def add(self, key, clean, out, seconds=None):
        self[key] = {"psnr": psnr(clean, out), "ssim": ssim(clean, out), "out": out,
                     "seconds": seconds}


def bm3d_sigmas(images, sigmas, budget, seconds_512):
    """ffmpeg bm3d is slow: from one timed 512x512 frame, run every sigma only
    if the projected time fits the budget, else sigma 25 alone."""
    pixels = sum(gray_of(img).size for _, img in images) * len(sigmas)
    projected = seconds_512 * pixels / (512 * 512)
    if projected <= budget:
        return list(sigmas)
    print(f"# bm3d: {seconds_512:.1f} s per 512x512 frame, {projected:.0f} s projected "
          f"> budget {budget:.0f} s: sigma 25 only")
    return [25]


def aedenoise_quality(res, gst, m, name, clean, noisy, network_alone):
    """One model on one image: sigma 0 (the clean frame) and every noisy frame
    in one pipeline; with adaptive strength off too on the clean frame."""
    sigmas = list(noisy)
    outs = gst.denoise([clean] + [noisy[s] for s in sigmas], "gray8", m["prop"])
    for s, out in zip([0, *sigmas], outs):
        res.add((name, s, m["label"]), clean, out)
    if network_alone:
        out = gst.denoise([clean], "gray8", m["prop"], ["adaptive=false"])[0]
        res.add((name, 0, m["label"] + " adaptive=false"), clean, out)


def ffmpeg_quality(res, args, images, name, clean, noisy, methods, bm3d_plan):
    """The ffmpeg filters on one image; returns the sigmas bm3d may run,
    fixed from the time of its first run."""
    for f in (f for f in CALIBRATION if f in methods):
        sigmas = args.sigmas
        if f == "bm3d":
            if bm3d_plan is None:
                first = ffmpeg_gray(noisy[25], ffmpeg_filter(f, 25))
                res.add((name, 25, f), clean, *first)
                bm3d_plan = bm3d_sigmas(images, args.sigmas, args.bm3d_budget,
                                        first[1] * 512 * 512 / clean.size)
            sigmas = [s for s in bm3d_plan if (name, s, f) not in res]
        for s in sigmas:
            res.add((name, s, f), clean, *ffmpeg_gray(noisy[s], ffmpeg_filter(f, s)))
    return bm3d_plan


def gray_quality(args, gst, models, images, methods):
    res, bm3d_plan = Results(), None
    network_alone = gst.has_property("adaptive")
    for name, img in images:
        clean = gray_of(img)
        noisy = {s: add_noise(clean, s, name + "/gray") for s in args.sigmas}
        for s in args.sigmas:
            res.add((name, s, "noisy"), clean, noisy[s])
        for m in models:
            aedenoise_quality(res, gst, m, name, clean, noisy, network_alone)
        if "opencv-nlm" in methods:
            for s in args.sigmas:
                res.add((name, s, "opencv-nlm"), clean, *opencv_nlm(noisy[s], s))
        bm3d_plan = ffmpeg_quality(res, args, images, name, clean, noisy, methods, bm3d_plan)
    return res


def print_gray_table(res, images, sigmas, methods):
    print("\n## Quality, gray (luma), PSNR dB / SSIM; noise sigma in 8-bit levels, seed", SEED)
    print(f"{'image':10} {'sigma':>5}" + "".join(f" {m:>14}" for m in methods))
    rows = [(n, s) for s in sigmas for n, _ in images] + [("mean", s) for s in sigmas]
    for name, s in rows:
        cells = []
        for m in methods:
            keys = [(n, s, m) for n, _ in images] if name == "mean" else [(name, s, m)]
            if all(k in res for k in keys):
                p = np.mean([res[k]["psnr"] for k in keys])
                q = np.mean([res[k]["ssim"] for k in keys])
                cells.append(f"{p:8.2f}/{q:5.3f}")
            else:
                cells.append("-")
        print(f"{name:10} {s:>5}" + "".join(f" {c:>14}" for c in cells))


def print_gray_targets(res, images, models):
    print("\n## Targets on gray frames")
    for m in models:
        lab = m["label"]
        for variant in (lab, lab + " adaptive=false"):
            if (images[0][0], 0, variant) not in res:
                continue
            clean = [f"{n} {res[(n, 0, variant)]['psnr']:.2f}" for n, _ in images]
            worst = min(res[(n, 0, variant)]["psnr"] for n, _ in images)
            print(f"{variant}: clean input (sigma 0), PSNR output vs clean: {', '.join(clean)} "
                  f"dB; target >= 40: {'met' if worst >= 40 else 'NOT met'}")
        if all((n, 25, "opencv-nlm") in res for n, _ in images):
            d = {n: res[(n, 25, lab)]["psnr"] - res[(n, 25, "opencv-nlm")]["psnr"] for n, _ in images}
            cells = ", ".join(f"{n} {v:+.2f}" for n, v in d.items())
            print(f"{lab}: sigma 25, PSNR minus OpenCV NLM's: {cells} dB; beats it on every "
                  f"image: {'yes' if min(d.values()) > 0 else 'NO'}")


# ---- Colour: RGB and I420 input ---------------------------------------------------------

def channel_shift(clean_planes, planes):
    return [float(np.mean(p.astype(np.float64)) - np.mean(c.astype(np.float64)))
            for c, p in zip(clean_planes, planes)]


def rgb_planes(rgb):
    return [rgb[..., i] for i in range(3)]


def colour_rows(name, img, sigmas, gst, m, gray_res):
    """Luma PSNR and mean per-channel shift of a method on RGB and I420 frames
    of one colour image, next to the same method on its gray version."""
    y_clean, yuv_clean = luma(img), i420_of(img)
    noisy_rgb = [add_noise(img, s, name + "/rgb") for s in sigmas]
    noisy_yuv = [tuple(add_noise(p, s, f"{name}/i420/{i}") for i, p in enumerate(yuv_clean))
                 for s in sigmas]
    out_rgb = gst.denoise(noisy_rgb, "rgb", m["prop"]) if m else \
        [opencv_nlm(f, s)[0] for f, s in zip(noisy_rgb, sigmas)]
    out_yuv = gst.denoise(noisy_yuv, "i420", m["prop"]) if m else []
    label = m["label"] if m else "opencv-nlm"
    rows = []
    for i, s in enumerate(sigmas):
        gray = gray_res[(name, s, label)]["psnr"]
        common = {"image": name, "sigma": s, "gray_out": gray,
                  "gray_gain": gray - gray_res[(name, s, "noisy")]["psnr"]}
        rows.append({**common, "input": "RGB", "luma_sigma": s * np.linalg.norm(BT601),
                     "noisy": psnr(y_clean, luma(noisy_rgb[i])), "out": psnr(y_clean, luma(out_rgb[i])),
                     "shift": channel_shift(rgb_planes(img), rgb_planes(out_rgb[i])),
                     "shift_noisy": channel_shift(rgb_planes(img), rgb_planes(noisy_rgb[i]))})
        if out_yuv:
            rows.append({**common, "input": "I420", "luma_sigma": s,
                         "noisy": psnr(yuv_clean[0], noisy_yuv[i][0]),
                         "out": psnr(yuv_clean[0], out_yuv[i][0]),
                         "shift": channel_shift(yuv_clean, out_yuv[i]),
                         "shift_noisy": channel_shift(yuv_clean, noisy_yuv[i])})
    return rows


def colour_verdict(label, rows):
    """I420 carries the gray frames' luma noise: its gain must reach the gray
    gain (0.1 dB tolerance: the noise draws differ). RGB noise of sigma per
    channel is 0.67 sigma on the luma, so there the output must reach the
    gray output's PSNR instead."""
    yuv = [r["out"] - r["noisy"] >= r["gray_gain"] - 0.1 for r in rows if r["input"] == "I420"]
    rgb = [r["out"] >= r["gray_out"] - 0.1 for r in rows if r["input"] == "RGB"]
    print(f"{label}: I420 luma gain >= gray gain (-0.1 dB) in {sum(yuv)} of {len(yuv)} cases; "
          f"RGB luma PSNR >= gray PSNR (-0.1 dB) in {sum(rgb)} of {len(rgb)} cases")


def colour_quality(args, gst, models, images, gray_res, with_opencv):
    colour = [(n, img) for n, img in images if img.ndim == 3]
    print("\n## Colour input: noise sigma on every channel; luma (BT.601) noise sigma, PSNR "
          "before/after and gain, the same method on the gray version (PSNR, gain), and colour "
          "shift = mean(output - clean) per channel (R,G,B or Y,U,V; 8-bit levels) next to "
          "the noisy input's")
    print(f"{'method':12} {'image':10} {'sigma':>5} {'input':5} {'lumaσ':>6} {'noisy':>6} "
          f"{'out':>6} {'gain':>6} {'gray':>6} {'g-gain':>6}  {'shift out':>20}  "
          f"{'shift noisy':>20}")
    fmt_shift = lambda v: ",".join(f"{x:+.2f}" for x in v)
    for m in [*models, *([None] if with_opencv else [])]:
        label = m["label"] if m else "opencv-nlm*"
        rows = [r for name, img in colour for r in colour_rows(name, img, args.sigmas, gst, m, gray_res)]
        for r in rows:
            print(f"{label:12} {r['image']:10} {r['sigma']:>5} {r['input']:5} {r['luma_sigma']:6.1f} "
                  f"{r['noisy']:6.2f} {r['out']:6.2f} {r['out'] - r['noisy']:6.2f} "
                  f"{r['gray_out']:6.2f} {r['gray_gain']:6.2f}  {fmt_shift(r['shift']):>20}  "
                  f"{fmt_shift(r['shift_noisy']):>20}")
        if m:
            colour_verdict(label, rows)
    if with_opencv:
        print("(* opencv-nlm on RGB is fastNlMeansDenoisingColored, h = hColor = sigma; "
              "its gray columns are fastNlMeansDenoising's)")


# ---- Speed ------------------------------------------------------------------------------

def measure_rates(tasks, seconds, rounds=3):
    """Frames/s of each task, name -> (run(n) -> elapsed s, probe frames). A
    probe run sizes each task's runs to about `seconds`; then the tasks run
    in turn, `rounds` times, and each keeps its best rate: other jobs on a
    shared machine only slow a run down, and taking turns exposes every
    method to the same load, so the ratios hold better than the rates."""
    sizes = {}
    for name, (run, probe) in tasks.items():
        sizes[name] = int(min(3000, max(probe, probe / run(probe) * seconds)))
    rates = dict.fromkeys(tasks, 0.0)
    for _ in range(rounds):
        for name, (run, _) in tasks.items():
            rates[name] = max(rates[name], sizes[name] / run(sizes[name]))
    return rates


def speed_frames(work, w, h, count):
    """`count` distinct noisy I420 frames (sigma 25) of a photo scaled to w x h,
    as f0.yuv... for multifilesrc, all.yuv for ffmpeg and all.gray (luma only)."""
    photo = cv2.resize(load_image("chelsea"), (w, h), interpolation=cv2.INTER_CUBIC)
    frames = []
    with open(os.path.join(work, "all.yuv"), "wb") as all_out, \
            open(os.path.join(work, "all.gray"), "wb") as luma_out:
        for i in range(count):
            planes = tuple(add_noise(p, 25, f"speed/{w}/{i}/{k}")
                           for k, p in enumerate(i420_of(photo)))
            data = b"".join(p.tobytes() for p in planes)
            with open(os.path.join(work, f"f{i}.yuv"), "wb") as f:
                f.write(data)
            all_out.write(data)
            luma_out.write(planes[0].tobytes())
            frames.append(planes)
    return frames


def ffmpeg_rate(work, w, h, vf, n, luma_only=False):
    pix_fmt, name = ("gray", "all.gray") if luma_only else ("yuv420p", "all.yuv")
    cmd = ["ffmpeg", "-hide_banner", "-nostats", "-benchmark", "-threads", str(THREADS),
           "-filter_threads", str(THREADS), "-stream_loop", "-1", "-f", "rawvideo",
           "-pix_fmt", pix_fmt, "-s", f"{w}x{h}", "-r", "30", "-i", os.path.join(work, name),
           "-vf", vf, "-frames:v", str(n), "-f", "null", "-"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"rtime=([0-9.]+)s", r.stderr)
    if r.returncode != 0 or not m:
        fail(f"ffmpeg -vf {vf} failed: {r.stderr[-2000:]}")
    return float(m[1])


def gst_source(work, w, h, count, n):
    return ["multifilesrc", f"location={work}/f%d.yuv", "index=0", f"stop-index={count - 1}",
            "loop=true", f"num-buffers={n}", "!", "rawvideoparse", "format=i420", f"width={w}",
            f"height={h}", "framerate=30/1"]


def opencv_run(luma_frame, sigma):
    """OpenCV NLM on the luma plane: run(n) for measure_rates."""
    return lambda n: sum(opencv_nlm(luma_frame, sigma)[1] for _ in range(n))


def torch_run(net, luma_frame):
    """The network in PyTorch at batch 1 on the luma plane: run(n)."""
    import torch
    x = torch.from_numpy(luma_frame.astype(np.float32)[None, None] / 255.0)
    net.set_noise(25 / 255)  # the speed frames' noise; only noise layers read it

    def run(n):
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(n):
                net(x)
            return time.perf_counter() - t0
    run(1)  # first call: oneDNN picks and prepares its kernels
    return run


def speed_one_size(args, gst, models, torch_nets, w, h, work):
    """Frames/s of every method on the same w x h I420 frames; at 720p also
    the PyTorch rebuilds of the models ("pytorch LABEL")."""
    count = 4
    frames = speed_frames(work, w, h, count)
    gst_run = lambda tail: (lambda n: gst.launch(gst_source(work, w, h, count, n) + tail))
    ff_run = lambda vf, luma_only=False: (lambda n: ffmpeg_rate(work, w, h, vf, n, luma_only))
    tasks = {"gst source only": (gst_run(["!", "fakesink"]), 30)}
    for m in models:
        tasks[m["label"]] = (gst_run(["!", *gst.element(m["prop"]), "!", "fakesink"]), 10)
    tasks["ffmpeg source only"] = (ff_run("null"), 30)
    tasks["hqdn3d"] = (ff_run(ffmpeg_filter("hqdn3d", 25)), 10)
    tasks["nlmeans"] = (ff_run(ffmpeg_filter("nlmeans", 25)), 2)
    # ffmpeg filters the chroma planes too; on the luma alone it does less work
    tasks["nlmeans luma only"] = (ff_run(ffmpeg_filter("nlmeans", 25), luma_only=True), 2)
    tasks["opencv-nlm"] = (opencv_run(frames[0][0], 25), 1)
    if (w, h) == (1280, 720):
        for label, t in torch_nets.items():
            tasks["pytorch " + label] = (torch_run(t["net"], frames[0][0]), 2)
    return measure_rates(tasks, args.speed_seconds)


def print_speed(size, rates, models, extra):
    w, h = size
    mpix = w * h / 1e6
    print(f"\n## Speed, {w}x{h} I420 (noise sigma 25), {THREADS} threads; filters at sigma 25 "
          "settings; frames/s and Mpixel/s of luma")
    for k, v in {**rates, **extra}.items():
        print(f"{k:34} {v:9.2f} fps {v * mpix:9.2f} Mpixel/s")
    for m in models:
        a = rates[m["label"]]
        cells = [f"/ {k} = {a / rates[k]:.2f}x"
                 for k in ("nlmeans", "nlmeans luma only", "hqdn3d", "opencv-nlm")]
        print(f"ratio {m['label']} " + ", ".join(cells))


# ---- The same network in PyTorch, and achieved GFLOP/s ----------------------------------

def measured_noise(plane):
    """lib/noise.c's ae_noise_sigma on a float plane (what aedenoise tells a
    noise-conditioned model): the median of |Immerkaer residual| / 6 on every
    eighth row and second column, from a 2048-bin histogram of [0, 0.25),
    interpolated within its bin, over 0.6745."""
    h, w = plane.shape
    ys, xs = (8 if h >= 64 else 1), (2 if w >= 64 else 1)
    p = plane.astype(np.float32)
    a, b, c = p[0:h - 2:ys], p[1:h - 1:ys], p[2:h:ys]
    r = ((a[:, :-2] + a[:, 2:] + c[:, :-2] + c[:, 2:])
         - np.float32(2) * (a[:, 1:-1] + c[:, 1:-1] + b[:, :-2] + b[:, 2:])
         + np.float32(4) * b[:, 1:-1])[:, ::xs]
    v = np.abs(r) / np.float32(6)
    bins, top = 2048, np.float32(0.25)
    idx = np.where(v >= top, bins - 1, (v * np.float32(bins / 0.25)).astype(np.int64))
    hist = np.bincount(idx.ravel(), minlength=bins)
    half = (idx.size + 1) // 2
    cum = np.cumsum(hist)
    k = int(np.searchsorted(cum, half))  # first bin where the running count reaches half
    seen = int(cum[k - 1]) if k else 0
    within = (half - seen) / hist[k] if hist[k] else 0.5
    return (k + within) * (0.25 / bins) / 0.6745


def torch_denoise(net, gray, multiple):
    """aedenoise's computation on a GRAY8 frame, in PyTorch: edge-replicated
    padding to the size multiple, then Y + 255 (net(Y) - Y) rounded; a
    noise-conditioned network is told the measured noise."""
    import torch
    net.set_noise(measured_noise(gray.astype(np.float32) * np.float32(1 / 255)))
    h, w = gray.shape
    padded = np.pad(gray, ((0, -h % multiple), (0, -w % multiple)), mode="edge")
    x = padded.astype(np.float32) * np.float32(1 / 255)
    with torch.no_grad():
        y = net(torch.from_numpy(x[None, None])).numpy()[0, 0, :h, :w]
    v = gray.astype(np.float32) + np.float32(255) * (y - x[:h, :w])
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


def torch_check(gst, m):
    """Rebuilds m's network in PyTorch from its file and requires the same
    output as aedenoise on one noisy frame, before any figure is taken."""
    import torch
    torch.set_num_threads(THREADS)
    try:
        import aem_torch
        model = aem.Model(m["file"])
        net = aem_torch.to_torch(model)
    except aem.ModelError as e:
        fail(f"cannot rebuild {m['label']} in PyTorch: {e}")
    if model.channels != 1:
        fail(f"{m['file']}: aedenoise models take 1 channel, this one {model.channels}")
    noisy = add_noise(gray_of(load_image("camera")), 25, "camera/gray")
    ref = gst.denoise([noisy], "gray8", m["prop"])[0]
    diff = int(np.max(np.abs(ref.astype(int) - torch_denoise(net, noisy, aem.size_multiple(model.layers)))))
    if diff > 1:
        fail(f"PyTorch rebuild of {m['label']} ({m['file']}) differs from aedenoise by {diff} "
             "levels on camera sigma 25: wrong file for the embedded model "
             "(--default-model-file) or a layer semantics tests/bench/aem.py gets wrong")
    print(f"# {m['label']}: PyTorch rebuild of {m['file']} matches aedenoise on camera "
          f"sigma 25 (max abs diff {diff} level)")
    return {"model": model, "net": net}


def sgemm_peak(build, runs=3):
    """cblas_sgemm 1024^3 GFLOP/s with THREADS threads (bench_train), best of
    `runs`: one run takes a fraction of a second, easily hit by other jobs."""
    exe = os.path.join(build, "tests", "bench", "bench_train")
    best = 0.0
    for _ in range(runs):
        r = subprocess.run([exe, "--sgemm-peak", str(THREADS)], capture_output=True, text=True)
        m = re.search(r"sgemm_1024_gflops ([0-9.]+)", r.stdout)
        if r.returncode != 0 or not m:
            fail(f"{exe} --sgemm-peak failed: {r.stderr}")
        best = max(best, float(m[1]))
    return best


def print_torch_and_gflops(models, torch_nets, rates720, peak):
    print(f"\n## Same network in PyTorch {__import__('torch').__version__} "
          f"(set_num_threads({THREADS}), batch 1, 1280x720 luma, float32), and achieved GFLOP/s; "
          f"cblas_sgemm 1024^3 peak in this run: {peak:.1f} GFLOP/s")
    for m in models:
        t = torch_nets.get(m["label"])
        if not t:
            print(f"{m['label']}: no model file, PyTorch and GFLOP/s not measured")
            continue
        mult = aem.size_multiple(t["model"].layers)
        gflop = t["model"].flops(-(-720 // mult) * mult, -(-1280 // mult) * mult) / 1e9
        fps_ae, fps_pt = rates720[m["label"]], rates720["pytorch " + m["label"]]
        print(f"{m['label']}: {gflop:.2f} GFLOP per 720p frame; aedenoise pipeline {fps_ae:.2f} fps "
              f"= {gflop * fps_ae:.1f} effective GFLOP/s ({100 * gflop * fps_ae / peak:.0f}% of sgemm "
              f"peak; direct-sum count, Winograd layers multiply less); "
              f"PyTorch {fps_pt:.2f} fps = {gflop * fps_pt:.1f} GFLOP/s; "
              f"ratio aedenoise / PyTorch = {fps_ae / fps_pt:.2f}x")


def print_speed_targets(models, rates720):
    """Issue 4's speed targets for the default model, for every model measured."""
    print("\n## Speed targets (1280x720 I420)")
    met = lambda ok: "met" if ok else "NOT met"
    for m in models:
        fps = rates720[m["label"]]
        nlm = fps / rates720["nlmeans"]
        line = (f"{m['label']}: {fps:.1f} fps >= 30: {met(fps >= 30)}; "
                f"{nlm:.1f}x ffmpeg nlmeans >= 15x: {met(nlm >= 15)}")
        if "pytorch " + m["label"] in rates720:
            pt = fps / rates720["pytorch " + m["label"]]
            line += f"; {pt:.2f}x PyTorch >= 3x: {met(pt >= 3)}"
        print(line)


# ---- Pictures ---------------------------------------------------------------------------

DISPLAY_NAMES = {"hqdn3d": "ffmpeg hqdn3d", "nlmeans": "ffmpeg nlmeans", "bm3d": "ffmpeg bm3d",
                 "opencv-nlm": "OpenCV NLM", "noisy": "noisy", "clean": "clean"}


def pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, path, gray=False):
    """Renders fig and replaces path with it in one rename (no half-written
    picture). gray: an 8-bit gray PNG, a quarter of matplotlib's RGBA."""
    buf = io_bytes.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    data = buf.getvalue()
    if gray:
        ok, enc = cv2.imencode(".png", cv2.imdecode(np.frombuffer(data, np.uint8),
                                                    cv2.IMREAD_GRAYSCALE))
        data = enc.tobytes() if ok else fail(f"cannot encode {path}")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def plot_psnr_speed(path, res, images, points):
    """Mean gray PSNR at sigma 25 against 720p throughput, one point per method."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    noisy = np.mean([res[(n, 25, "noisy")]["psnr"] for n, _ in images])
    ax.axhline(noisy, color="gray", linestyle="--", linewidth=1)
    ax.text(0.02, noisy + 0.1, "noisy input", color="gray", transform=ax.get_yaxis_transform())
    for label, mpix in points.items():
        p = np.mean([res[(n, 25, label)]["psnr"] for n, _ in images])
        colour = "tab:red" if label.startswith("ae") else "tab:blue"
        ax.scatter(mpix, p, color=colour, s=40, zorder=3)
        shown = label if label.startswith("ae") else DISPLAY_NAMES[label]
        ax.annotate(shown, (mpix, p), textcoords="offset points", xytext=(6, -3), fontsize=9)
    ax.axvline(1280 * 720 * 30 / 1e6, color="tab:green", linestyle=":", linewidth=1)
    ax.text(1280 * 720 * 30 / 1e6, noisy + 0.6, " 720p30", color="tab:green")
    ax.set_xscale("log")
    ax.set_xlim(min(points.values()) / 2, max(points.values()) * 8)  # room for the labels
    ax.set_xlabel("throughput on this 2-core machine, Mpixel/s (log)")
    ax.set_ylabel("PSNR at sigma 25, mean of " + "/".join(n for n, _ in images) + " (dB)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def crops(path, res, images, labels, box=(64, 192, 160)):
    """Before/after crops at sigma 25, one row per image, one column per method."""
    plt = pyplot()
    y0, x0, side = box
    cols = ["noisy", *labels, "clean"]
    fig, axes = plt.subplots(len(images), len(cols), figsize=(2.2 * len(cols), 2.7 * len(images)),
                             squeeze=False)
    for r, (name, img) in enumerate(images):
        clean = gray_of(img)
        for c, label in enumerate(cols):
            frame = clean if label == "clean" else res[(name, 25, label)]["out"]
            ax = axes[r][c]
            ax.imshow(frame[y0:y0 + side, x0:x0 + side], cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
            shown = DISPLAY_NAMES.get(label, label)
            title = shown if label == "clean" else f"{shown}\n{res[(name, 25, label)]['psnr']:.2f} dB"
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    save_png(fig, path, gray=True)
    plt.close(fig)


# ---- Main -------------------------------------------------------------------------------

def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", required=True, help="meson build directory")
    p.add_argument("--model", action="append", default=[], metavar="FILE",
                   help="also benchmark aedenoise model=FILE (repeatable)")
    p.add_argument("--default-model-file", default="plugins/models/denoise-default.aem",
                   help="the file the embedded default model was built from, for the PyTorch "
                        "rebuild and FLOP counts (checked against aedenoise's output)")
    p.add_argument("--aedenoise-opts", default="", help="extra aedenoise properties, e.g. threads=2")
    p.add_argument("--pictures", metavar="DIR", help="write the plot and the crops (PNG) here")
    p.add_argument("--speed-seconds", type=float, default=3.0,
                   help="length of each timed run (the best of 3 rounds counts)")
    p.add_argument("--bm3d-budget", type=float, default=300.0,
                   help="seconds ffmpeg bm3d may take over all images and sigmas")
    p.add_argument("--calibrate", action="store_true",
                   help="only sweep the ffmpeg filters' settings on non-test photos")
    p.add_argument("--self-test", action="store_true",
                   help="tiny image, sigma 25, aedenoise and OpenCV only; checks the figures")
    a = p.parse_args()
    a.sigmas = [25] if a.self_test else list(SIGMAS)
    return a


def check_tools():
    missing = [t for t in ("ffmpeg",) if not shutil.which(t)]
    for module in ("torch", "matplotlib"):
        try:
            __import__(module)
        except ImportError:
            missing.append("python3-" + module)
    if missing:
        fail(f"missing {', '.join(missing)}: run tools/setup.sh --bench")


def model_entries(args):
    for f in [args.default_model_file, *args.model]:
        if f and not os.path.isfile(f):
            fail(f"no such model file: {f}")
    entries = [{"label": "aedenoise", "prop": None, "file": args.default_model_file}]
    for f in args.model:
        stem = os.path.splitext(os.path.basename(f))[0].replace("denoise-", "")
        entries.append({"label": "ae-" + stem[:11], "prop": os.path.abspath(f),
                        "file": os.path.abspath(f)})
    if len({e["label"] for e in entries}) != len(entries):
        fail("two models would share a label: give the files different names")
    return entries


def self_test(args, gst):
    images = [("camera", load_image("camera", size=(48, 64, 100, 200)))]
    models = [{"label": "aedenoise", "prop": None, "file": None}]
    methods = ["noisy", "aedenoise", "opencv-nlm"]
    res = gray_quality(args, gst, models, images, methods)
    print_gray_table(res, images, args.sigmas, methods)
    for key, r in res.items():
        if not (np.isfinite(r["psnr"]) and np.isfinite(r["ssim"])) or r["out"].shape != (48, 64):
            fail(f"self-test: {key} gave {r['psnr']} dB, SSIM {r['ssim']}, shape {r['out'].shape}")
    for m in ("aedenoise", "opencv-nlm"):
        if res[("camera", 25, m)]["psnr"] <= res[("camera", 25, "noisy")]["psnr"]:
            fail(f"self-test: {m} did not raise the PSNR of a noisy frame")
    print("self-test passed")


def calibrate(args):
    """PSNR of each classical filter over its factor grid on photos that are
    not test images: the evidence for the settings in CALIBRATION."""
    photos = [("chelsea", gray_of(load_image("chelsea"))),
              ("rocket", gray_of(np.ascontiguousarray(io.imread(f"{SKDATA}/rocket.jpg")[:424, :632])))]
    print("## Calibration of the ffmpeg filters (PSNR dB; * = the setting the benchmark uses)")
    for f, (grid, _) in CALIBRATION.items():
        print(f"{f:8} {'photo':8} {'sigma':>5} {'noisy':>6}" + "".join(f" {g:>7g}" for g in grid))
        for name, clean in photos:
            for s in args.sigmas:
                noisy = add_noise(clean, s, "calibrate/" + name)
                cells = [psnr(clean, ffmpeg_gray(noisy, ffmpeg_filter(f, s, g))[0]) for g in grid]
                best = int(np.argmax(cells))
                print(f"{f:8} {name:8} {s:>5} {psnr(clean, noisy):6.2f}" +
                      "".join(f" {c:6.2f}{'*' if i == 0 else ' '}" for i, c in enumerate(cells)) +
                      f"  best {grid[best]:g}", flush=True)


def bm3d_mpix(res):
    runs = [r for (n, s, m), r in res.items() if m == "bm3d"]
    return sum(r["out"].size for r in runs) / sum(r["seconds"] for r in runs) / 1e6


def write_pictures(folder, res, images, models, rates720, bm3d):
    os.makedirs(folder, exist_ok=True)
    mpix = 1280 * 720 / 1e6
    points = {k: rates720[k] * mpix for k in ("hqdn3d", "nlmeans", "opencv-nlm")}
    points.update({m["label"]: rates720[m["label"]] * mpix for m in models})
    points["bm3d"] = bm3d
    plot = os.path.join(folder, "denoise-psnr-speed.png")
    plot_psnr_speed(plot, res, images, points)
    crop = os.path.join(folder, "denoise-crops.png")
    crops(crop, res, images[:2], ["opencv-nlm", "bm3d", *(m["label"] for m in models)])
    print(f"\n# pictures: {plot}, {crop}")


def full_run(args, gst, work):
    models = model_entries(args)
    torch_nets = {m["label"]: torch_check(gst, m) for m in models}
    peak = sgemm_peak(args.build)
    images = [(n, load_image(n)) for n in ("camera", "astronaut", "coffee")]
    methods = ["noisy", *(m["label"] for m in models), "hqdn3d", "nlmeans", "bm3d", "opencv-nlm"]
    res = gray_quality(args, gst, models, images, methods)
    print_gray_table(res, images, args.sigmas, methods)
    print_gray_targets(res, images, models)
    colour_quality(args, gst, models, images, res, with_opencv=True)
    bm3d = bm3d_mpix(res)
    rates = {size: speed_one_size(args, gst, models, torch_nets, *size, work)
             for size in ((1280, 720), (1920, 1080))}
    for size, r in rates.items():
        print_speed(size, r, models,
                    {"bm3d (gray stills, see quality runs)": bm3d / (size[0] * size[1] / 1e6)})
    rates720 = rates[(1280, 720)]
    print_torch_and_gflops(models, torch_nets, rates720, peak)
    print_speed_targets(models, rates720)
    if args.pictures:
        write_pictures(args.pictures, res, images, models, rates720, bm3d)


def main():
    args = parse_args()
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    cv2.setNumThreads(THREADS)
    with tempfile.TemporaryDirectory(prefix="denoise-bench-") as work:
        gst = Gst(work, args.aedenoise_opts)
        if args.self_test:
            return self_test(args, gst)
        check_tools()
        if args.calibrate:
            return calibrate(args)
        full_run(args, gst, work)
    print(f"\n# total {time.perf_counter() - t_start:.0f} s; load average at the end "
          f"{os.getloadavg()[0]:.2f} (at the start {load_start:.2f}) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Makes docs/pictures/overlay-defect.png: gravel (python3-skimage) sliding past
# the camera with sensor noise; ae-train learns 300 good frames; aeanomaly
# output=overlay on a test frame with a scratch. Left: input, right: overlay.
#   docs/pictures/make-overlay-defect.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
/usr/bin/python3 - <<'PY'
import numpy as np
from skimage import data
g = data.gravel().astype(np.float32)
H = W = 128
def frames(start, n, seed, scratch_at=None):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        y0 = ((start + i) * 3) % (g.shape[0] - H)
        f = g[y0:y0 + H, 40:40 + W] + rng.normal(0, 4, (H, W))
        if i == scratch_at:
            for t in range(60):
                f[30 + t:33 + t, 20 + int(t * 1.2):23 + int(t * 1.2)] = 250
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(out)
frames(0, 300, 1).tofile('good.gray8')
frames(1000, 10, 2, scratch_at=5).tofile('test.gray8')
PY
raw="rawvideoparse format=gray8 width=128 height=128 framerate=10/1"
"$build/tools/ae-train" --task anomaly --arch fconv --latent 8 --crop 64x64 --repeat 4 \
  --epochs 15 --quiet --pipeline "filesrc location=good.gray8 ! $raw" --output parts.aem
GST_PLUGIN_PATH=$build/plugins gst-launch-1.0 -q filesrc location=test.gray8 ! $raw ! \
  videoconvert ! video/x-raw,format=RGB ! aeanomaly model=parts.aem output=overlay ! \
  pngenc ! multifilesink location=ov%02d.png
/usr/bin/python3 - "$here/overlay-defect.png" <<'PY'
import sys
import numpy as np
from skimage import io
a = io.imread('ov05.png')[..., :3]
b = np.fromfile('test.gray8', dtype=np.uint8).reshape(10, 128, 128)[5]
c = np.concatenate([np.stack([b] * 3, -1), np.full((128, 4, 3), 255, np.uint8), a], 1)
io.imsave(sys.argv[1], np.repeat(np.repeat(c, 3, 0), 3, 1))
PY

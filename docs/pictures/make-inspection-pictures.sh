#!/usr/bin/env bash
# Makes docs/pictures/inspection-SURFACE.png for docs/inspection.md: real
# detections on the benchmark's generated footage (tests/bench/inspection_video.py,
# seed 1), with the benchmark's recipe (tests/bench/run-inspection-bench.sh).
# Each picture: three test frames with defects, one per column; rows: the frame,
# aeanomaly output=overlay (map in white, regions boxed), output=heatmap
# (mid-gray = pixel threshold), the generator's true mask.
#   docs/pictures/make-inspection-pictures.sh [BUILD_DIR] [SURFACES]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
surfaces=${2:-metal,pcb}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GST_PLUGIN_PATH=$build/plugins
raw="rawvideoparse format=gray8 width=256 height=256 framerate=25/1"
/usr/bin/python3 "$here/../../tests/bench/inspection_video.py" "$work" --surfaces "$surfaces" >/dev/null
IFS=, read -ra list <<<"$surfaces"
for s in "${list[@]}"; do
  d=$work/$s
  "$build/tools/ae-train" --task anomaly --quiet --output "$d/model.aem" \
    --pipeline "filesrc location=$d/train.gray8 ! $raw" \
    --defect-pipeline "filesrc location=$d/defects.gray8 ! $raw" \
    --arch fconv --latent 16 --crop 64x64 --repeat 4 --epochs 25 --synthetic-defects 0.5 \
    --aggregate max --smooth 4 --border 8 --map mix --lost-contrast 4
  for out in overlay heatmap; do
    gst-launch-1.0 -q filesrc location="$d/test.gray8" ! $raw ! \
      aeanomaly model="$d/model.aem" output=$out ! filesink location="$d/$out.gray8"
  done
  # The first scratch/spot/crack frame and the first stain: what works and what does not.
  /usr/bin/python3 - "$d" <<'PY'
import sys
import numpy as np
d = sys.argv[1]
read = lambda name: np.fromfile(f"{d}/{name}", np.uint8).reshape(-1, 256, 256)
kinds = [r.split(",")[2] for r in open(f"{d}/test-labels.csv").read().split("\n")[1:] if r]
pick = [kinds.index(k) for k in ("scratch", "crack", "stain") if k in kinds][:3]
rows = [read(n)[pick] for n in ("test.gray8", "overlay.gray8", "heatmap.gray8", "test-masks.gray8")]
gap = np.full((256, 4), 255, np.uint8)
lines = [np.hstack([x for f in r for x in (f, gap)][:-1]) for r in rows]
sep = np.full((4, lines[0].shape[1]), 255, np.uint8)
img = np.vstack([x for l in lines for x in (l, sep)][:-1])[::2, ::2]
img.tofile(f"{d}/picture.gray8")
open(f"{d}/picture.size", "w").write(f"{img.shape[1]} {img.shape[0]}\n")
PY
  read -r w h <"$d/picture.size"
  gst-launch-1.0 -q filesrc location="$d/picture.gray8" ! \
    rawvideoparse format=gray8 width="$w" height="$h" framerate=1/1 ! \
    videoconvert ! pngenc ! filesink location="$here/inspection-$s.png"
  echo "wrote $here/inspection-$s.png"
done

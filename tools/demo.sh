#!/usr/bin/env bash
# The main job on packaged data: build, train a small anomaly model on 600
# Fashion-MNIST images fed through a GStreamer pipeline, show its metadata.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# head closes the pipe early on purpose; the size check below is what counts.
(gzip -dc /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
  | tail -c +17 | head -c $((600 * 784)) >"$work/frames.gray8") || true
[ "$(stat -c %s "$work/frames.gray8")" -eq $((600 * 784)) ] || { echo "cannot read Fashion-MNIST" >&2; exit 1; }
build/tools/ae-train --task anomaly --arch conv --latent 16 --epochs 10 \
  --pipeline "filesrc location=$work/frames.gray8 ! rawvideoparse format=gray8 width=28 height=28 framerate=30/1" \
  --output "$work/demo.aem"
build/tools/ae-info "$work/demo.aem"

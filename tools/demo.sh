#!/usr/bin/env bash
# The main job on packaged data: build, train a small anomaly model on 600
# Fashion-MNIST training images fed through a GStreamer pipeline, show its
# provenance, then inspect 200 test images with aeanomaly and summarise its
# events (one JSON line per frame).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=/usr/share/datasets/fashion-mnist
# head closes the pipe early on purpose; the size checks are what count.
(gzip -dc $data/train-images-idx3-ubyte.gz | tail -c +17 | head -c $((600 * 784)) >"$work/train.gray8") || true
(gzip -dc $data/t10k-images-idx3-ubyte.gz | tail -c +17 | head -c $((200 * 784)) >"$work/test.gray8") || true
[ "$(stat -c %s "$work/train.gray8")" -eq $((600 * 784)) ] || { echo "cannot read Fashion-MNIST" >&2; exit 1; }
raw="rawvideoparse format=gray8 width=28 height=28 framerate=30/1"
build/tools/ae-train --task anomaly --arch conv --latent 16 --epochs 10 \
  --pipeline "filesrc location=$work/train.gray8 ! $raw" --output "$work/demo.aem"
build/tools/ae-info "$work/demo.aem"
GST_PLUGIN_PATH=build/plugins gst-launch-1.0 -q filesrc location="$work/test.gray8" ! $raw ! \
  aeanomaly model="$work/demo.aem" events-location="$work/events.jsonl" ! fakesink
echo "aeanomaly on 200 Fashion-MNIST test images (all classes; the model saw 600 mixed images):"
head -n 3 "$work/events.jsonl"
echo "... $(grep -c '"anomalous":true' "$work/events.jsonl") of $(wc -l <"$work/events.jsonl") frames above the calibrated threshold"
echo "aedenoise (embedded default) on 60 frames of 640x480 I420:"
start=$(date +%s.%N)
GST_PLUGIN_PATH=build/plugins gst-launch-1.0 -q videotestsrc num-buffers=60 pattern=snow ! \
  video/x-raw,format=I420,width=640,height=480 ! aedenoise ! fakesink
awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "  %.1f frames/s (whole pipeline)\n", 60 / (e - s) }'
echo "aeencode (embedded default) latents of 5 frames:"
GST_PLUGIN_PATH=build/plugins gst-launch-1.0 -q videotestsrc num-buffers=5 ! aeencode ! \
  filesink location="$work/latents.f32"
echo "  $(stat -c %s "$work/latents.f32") bytes = 5 frames x 32 float32"

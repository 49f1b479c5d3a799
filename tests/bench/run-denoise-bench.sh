#!/usr/bin/env bash
# Denoising benchmark (issue 4): aedenoise through real GStreamer pipelines
# against ffmpeg hqdn3d / nlmeans / bm3d and OpenCV non-local means on the
# same noisy frames; speed at 720p and 1080p; the same network in PyTorch.
# Usage: tests/bench/run-denoise-bench.sh [BUILD_DIR] [--model FILE]... [--pictures DIR]
#        [--aedenoise-opts 'PROPS'] [--self-test] (all options: --help)
# Needs: tools/setup.sh --bench, and a build (meson setup build). About 10-15 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
script=run-denoise-bench.sh
build=build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  build=$1
  shift
fi
build=$(cd "$build" && pwd) || { echo "$script: no build directory" >&2; exit 2; }
ninja -C "$build" plugins/libgstautoencoder.so tests/bench/bench_train >/dev/null
# The self-test needs these; a full run also ffmpeg, torch and matplotlib (checked there).
/usr/bin/python3 -c 'import numpy, skimage, cv2' 2>/dev/null \
  || { echo "$script: numpy, skimage or cv2 missing: run tools/setup.sh --bench" >&2; exit 2; }
export AE_BUILD_DIR=$build
# shellcheck source=../../pipelines/common.sh
. "$root/pipelines/common.sh"
setup_gst aedenoise
cd "$root"
exec /usr/bin/python3 "$here/denoise_bench.py" --build "$build" "$@"

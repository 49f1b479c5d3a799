#!/usr/bin/env bash
# Temporal denoising benchmark (issue 4, stretch): a synthetic static-camera
# sequence with moving content through aedenoise temporal=0 and temporal>0 in
# real GStreamer pipelines; PSNR on static, moving and just-uncovered areas
# and overall, and frames/s of off and on from the same run.
# Usage: tests/bench/run-temporal-bench.sh [BUILD_DIR] [--size WxH] [--frames N]
#        [--sigmas 15,25] [--temporal 0.5,0.8] [--aedenoise-opts 'PROPS'] (all: --help)
# Needs: python3-numpy, python3-scipy, python3-skimage and a build. About 2 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
script=run-temporal-bench.sh
build=build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  build=$1
  shift
fi
build=$(cd "$build" && pwd) || { echo "$script: no build directory" >&2; exit 2; }
ninja -C "$build" plugins/libgstautoencoder.so >/dev/null
/usr/bin/python3 -c 'import numpy, scipy, skimage' 2>/dev/null \
  || { echo "$script: numpy, scipy or skimage missing: run tools/setup.sh --bench" >&2; exit 2; }
export AE_BUILD_DIR=$build
# shellcheck source=../../pipelines/common.sh
. "$root/pipelines/common.sh"
setup_gst aedenoise
cd "$root"
exec /usr/bin/python3 "$here/temporal_bench.py" --build "$build" "$@"

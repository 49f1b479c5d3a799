#!/usr/bin/env bash
# Shows a video next to its denoised version: the source on the left,
# aedenoise's output on the right (compositor). Denoising runs at the source's
# resolution; both halves are then scaled to the same display width.
#
#   pipelines/denoise-side-by-side.sh SOURCE
#   pipelines/denoise-side-by-side.sh --self-test
#
# SOURCE  a video or image file, a URI (file://, rtsp://, ...), a camera
#         /dev/videoN, or a gst-launch description starting with videotestsrc.
#
# Environment:
#   AE_DENOISE_OPTS  aedenoise properties, e.g. "model=photos.aem strength=0.7"
#   AE_WIDTH         width of each half on screen (default 640)
#   AE_SINK          video sink (default: autovideosink)
#   AE_BUILD_DIR     build tree to take the plugin from (default: ../build)
#
# Exit status: 0 when the pipeline ran to its end (or was interrupted), 1 on
# a pipeline error, 2 on bad usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

script=denoise-side-by-side.sh
# shellcheck source=pipelines/common.sh
. "$here/common.sh"

# Fills the array `lbl` with a caption, when textoverlay (gst-plugins-base's
# pango) is installed.
label_args () {
  lbl=()
  if gst-inspect-1.0 textoverlay >/dev/null 2>&1; then
    lbl=('!' textoverlay "text=$1" valignment=top halignment=left "font-desc=Sans 14")
  fi
}

# run_side_by_side SOURCE WIDTH SINK...
run_side_by_side () {
  local src opts lbl left right width=$2
  source_args "$1"
  shift 2
  read -ra opts <<<"${AE_DENOISE_OPTS:-}"
  local scale=(videoscale '!' "video/x-raw,width=$width,pixel-aspect-ratio=1/1")
  label_args noisy
  left=("${scale[@]}" "${lbl[@]}")
  label_args denoised
  right=("${scale[@]}" "${lbl[@]}")
  # One format for both branches, so the left half is the source as it is.
  gst-launch-1.0 -e "${src[@]}" '!' videoconvert '!' video/x-raw,format=I420 '!' tee name=t \
    t. '!' queue '!' "${left[@]}" '!' comp.sink_0 \
    t. '!' queue '!' aedenoise "${opts[@]}" '!' "${right[@]}" '!' comp.sink_1 \
    compositor name=comp background=black sink_0::xpos=0 "sink_1::xpos=$width" '!' \
    videoconvert '!' "$@"
}

# Ten 160x120 frames: the composited frame must be 320 wide, its left half
# the source and its right half changed by the denoiser.
self_test () {
  local frames=10 w=160 h=120
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  run_side_by_side "videotestsrc num-buffers=$frames pattern=snow ! video/x-raw,width=$w,height=$h" \
    "$w" video/x-raw,format=GRAY8 '!' filesink "location=$work/out.gray" >"$work/log" 2>&1 \
    || { cat "$work/log"; exit 1; }
  /usr/bin/python3 - "$work/out.gray" "$frames" "$w" "$h" <<'PY'
import sys
path, frames, w, h = sys.argv[1], *map(int, sys.argv[2:])
data = open(path, "rb").read()
assert len(data) == frames * 2 * w * h, f"{len(data)} bytes for {frames} frames of {2 * w}x{h}"
left = right = 0.0
for f in range(frames):
    frame = data[f * 2 * w * h:(f + 1) * 2 * w * h]
    rows = [frame[y * 2 * w:(y + 1) * 2 * w] for y in range(h)]
    # Noise varies from pixel to pixel; the denoised half much less.
    left += sum(abs(r[x] - r[x + 1]) for r in rows for x in range(w - 1))
    right += sum(abs(r[w + x] - r[w + x + 1]) for r in rows for x in range(w - 1))
assert right < 0.8 * left, f"right half not smoother: {right} vs {left}"
print(f"denoise-side-by-side.sh self-test: {frames} frames of {2 * w}x{h}, "
      f"neighbour differences {left / frames / h / (w - 1):.1f} noisy, "
      f"{right / frames / h / (w - 1):.1f} denoised")
PY
}

main () {
  case ${1:-} in
    --self-test) setup_gst aedenoise; self_test; return ;;
    ''|-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ]; return ;;
  esac
  [ $# -eq 1 ] || die "usage: denoise-side-by-side.sh SOURCE"
  setup_gst aedenoise
  local sink
  read -ra sink <<<"${AE_SINK:-autovideosink}"
  run_side_by_side "$1" "${AE_WIDTH:-640}" "${sink[@]}" || exit 1
}

main "$@"

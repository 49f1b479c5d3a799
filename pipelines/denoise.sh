#!/usr/bin/env bash
# Denoises video with aedenoise and shows it, or writes it to a Matroska file.
#
#   pipelines/denoise.sh SOURCE [OUTPUT.mkv]
#   pipelines/denoise.sh --self-test
#
# SOURCE  a video or image file, a URI (file://, rtsp://, ...), a camera
#         /dev/videoN, or a gst-launch description starting with videotestsrc.
# OUTPUT  write the denoised video here (VP8 in Matroska, or H.264 when x264enc
#         is installed) instead of showing it.
#
# Environment:
#   AE_DENOISE_OPTS  aedenoise properties, e.g. "model=photos.aem strength=0.7 threads=2"
#                    (default: the embedded model at full strength)
#   AE_SINK          video sink when showing (default: autovideosink)
#   AE_BUILD_DIR     build tree to take the plugin from (default: ../build)
#
# Exit status: 0 when the pipeline ran to its end (or was interrupted), 1 on
# a pipeline error, 2 on bad usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

script=denoise.sh
# shellcheck source=pipelines/common.sh
. "$here/common.sh"

# Fills the array `enc` with an encoder that is installed.
encoder_args () {
  if gst-inspect-1.0 x264enc >/dev/null 2>&1; then
    enc=(x264enc '!' h264parse)
  else
    enc=(vp8enc deadline=1)
  fi
}

# run_denoise SOURCE SINK...
run_denoise () {
  local src opts
  source_args "$1"
  shift
  read -ra opts <<<"${AE_DENOISE_OPTS:-}"
  gst-launch-1.0 -e "${src[@]}" '!' aedenoise "${opts[@]}" '!' videoconvert '!' "$@"
}

# run_to_file SOURCE OUTPUT
run_to_file () {
  local enc
  encoder_args
  run_denoise "$1" "${enc[@]}" '!' matroskamux '!' filesink "location=$2"
}

# Ten frames to the screen sink (fakesink here) and ten to a file, which must
# decode back to ten frames of the right size.
self_test () {
  local frames=10 w=160 h=120 bytes
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  local source="videotestsrc num-buffers=$frames pattern=ball ! video/x-raw,width=$w,height=$h"
  run_denoise "$source" fakesink >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  run_to_file "$source" "$work/out.mkv" >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  gst-launch-1.0 -q filesrc "location=$work/out.mkv" '!' matroskademux '!' decodebin '!' \
    videoconvert '!' video/x-raw,format=GRAY8 '!' filesink "location=$work/out.gray" \
    >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  bytes=$(stat -c %s "$work/out.gray")
  if [ "$bytes" -ne $((frames * w * h)) ]; then
    echo "denoise.sh self-test: $bytes bytes decoded, expected $frames frames of ${w}x$h"
    exit 1
  fi
  echo "denoise.sh self-test: fakesink and $frames frames of ${w}x$h through Matroska: ok"
}

main () {
  case ${1:-} in
    --self-test) setup_gst aedenoise; self_test; return ;;
    ''|-h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ]; return ;;
  esac
  [ $# -le 2 ] || die "usage: denoise.sh SOURCE [OUTPUT.mkv]"
  setup_gst aedenoise
  if [ -n "${2:-}" ]; then
    run_to_file "$1" "$2" || exit 1
    echo "wrote $2"
    return
  fi
  local sink
  read -ra sink <<<"${AE_SINK:-autovideosink}"
  run_denoise "$1" "${sink[@]}" || exit 1
}

main "$@"

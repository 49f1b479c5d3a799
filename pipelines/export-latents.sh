#!/usr/bin/env bash
# Writes one latent vector per frame (aeencode) to a raw float32 file and
# prints its layout.
#
#   pipelines/export-latents.sh SOURCE OUT.f32
#   pipelines/export-latents.sh --self-test
#
# SOURCE   a video or image file, a URI (file://, rtsp://, ...), a camera
#          /dev/videoN, or a gst-launch description starting with videotestsrc.
# OUT.f32  frames x D little-endian float32 values, frame after frame; e.g. in
#          Python: numpy.fromfile("OUT.f32", "<f4").reshape(-1, D).
#
# Environment:
#   AE_ENCODE_OPTS  aeencode properties, e.g. "model=parts.aem roi=0,0,320,240"
#                   (default: the embedded Fashion-MNIST model, D = 32)
#   AE_BUILD_DIR    build tree to take the plugin from (default: ../build)
#
# Prints "D=<values per frame> frames=<count> file=<OUT.f32>". Exit status: 0
# on success, 1 on a pipeline error, 2 on bad usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

script=export-latents.sh
# shellcheck source=pipelines/common.sh
. "$here/common.sh"

# export_latents SOURCE OUT LOG: runs the pipeline, then prints D and the
# frame count (D from the caps aeencode negotiated, frames from the size).
export_latents () {
  local src opts out=$2 log=$3 dims d bytes
  source_args "$1"
  read -ra opts <<<"${AE_ENCODE_OPTS:-}"
  gst-launch-1.0 -v -e "${src[@]}" '!' aeencode name=encoder "${opts[@]}" '!' \
    filesink "location=$out" >"$log" 2>&1 || { cat "$log" >&2; return 1; }
  dims=$(grep -o 'encoder.GstPad:src: caps = .*dimensions=(string)[0-9:]*' "$log" | tail -1 \
         | sed 's/.*dimensions=(string)//')
  d=${dims%%:*}
  [ -n "$d" ] || { echo "export-latents.sh: no tensor caps were negotiated" >&2; return 1; }
  [ "$(grep -c 'encoder.GstPad:src: caps' "$log")" -le 1 ] \
    || echo "export-latents.sh: warning: D changed during the stream; the file mixes sizes" >&2
  bytes=$(stat -c %s "$out")
  echo "D=$d frames=$((bytes / (4 * d))) file=$out"
}

# Ten frames with the default model: D = 32, 10 frames, 1280 bytes, and
# distinct frames give distinct vectors.
self_test () {
  local line
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  line=$(export_latents "videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=64,height=48" \
         "$work/out.f32" "$work/log") || exit 1
  echo "$line"
  [ "$line" = "D=32 frames=10 file=$work/out.f32" ] || { echo "unexpected: $line"; exit 1; }
  /usr/bin/python3 - "$work/out.f32" <<'PY'
import struct, sys, math
data = open(sys.argv[1], "rb").read()
v = struct.unpack("<%df" % (len(data) // 4), data)
frames = [v[i:i + 32] for i in range(0, len(v), 32)]
assert len(frames) == 10 and all(math.isfinite(x) for x in v), "10 finite vectors"
assert len({f for f in frames}) > 1, "the moving ball gives different vectors"
print("export-latents.sh self-test: 10 vectors of 32 float32, finite, not all equal")
PY
}

main () {
  case ${1:-} in
    --self-test) setup_gst aeencode; self_test; return ;;
    ''|-h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ]; return ;;
  esac
  [ $# -eq 2 ] || die "usage: export-latents.sh SOURCE OUT.f32"
  setup_gst aeencode
  local log
  log=$(mktemp "${TMPDIR:-/tmp}/export-latents-XXXXXX.log")
  export_latents "$1" "$2" "$log" || { rm -f "$log"; exit 1; }
  rm -f "$log"
}

main "$@"

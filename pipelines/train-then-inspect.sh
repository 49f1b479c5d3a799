#!/usr/bin/env bash
# Trains an anomaly model on footage of good parts, then inspects other
# footage with it (pipelines/inspect.sh: overlay + JSON Lines events).
#
#   pipelines/train-then-inspect.sh GOOD_SOURCE TEST_SOURCE
#   pipelines/train-then-inspect.sh --self-test
#
# GOOD_SOURCE  what ae-train --input takes (a video or image file, a directory,
#              a glob or a URI), a camera /dev/videoN, or a gst-launch
#              description starting with videotestsrc.
# TEST_SOURCE  what inspect.sh takes.
#
# Environment:
#   AE_MODEL       where to write the model (default: a new file under $TMPDIR)
#   AE_TRAIN_OPTS  ae-train options (default: "--arch conv --size 64x64 --epochs 20")
#   AE_FRAMES      frames to read from a camera (default 500)
#   AE_EVENTS, AE_SINK, AE_ANOMALY_OPTS, AE_BUILD_DIR: as for inspect.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${AE_BUILD_DIR:-$here/../build}

die () { echo "train-then-inspect.sh: $*" >&2; exit 2; }

find_ae_train () {
  for t in "${AE_TEST_TOOLS:-}/ae-train" "$build/tools/ae-train" "$(command -v ae-train || true)"; do
    [ -x "$t" ] && { echo "$t"; return; }
  done
  return 1
}

# A sanitised build's tools need its runtime first (see inspect.sh).
setup_env () {
  if [ "${GST_PLUGIN_SYSTEM_PATH_1_0+set}" = set ] && [ -z "$GST_PLUGIN_SYSTEM_PATH_1_0" ]; then
    unset GST_PLUGIN_SYSTEM_PATH_1_0
  fi
  if [ -x "$build/tools/ae-train" ] && [[ $(ldd "$build/tools/ae-train" 2>/dev/null) == *libasan* ]]; then
    export ASAN_OPTIONS=detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
  fi
}

# train GOOD_SOURCE MODEL
train () {
  local good=$1 model=$2 ae_train
  ae_train=$(find_ae_train) || die "ae-train not found (build the project or install it)"
  read -ra opts <<<"${AE_TRAIN_OPTS:---arch conv --size 64x64 --epochs 20}"
  case $good in
    /dev/video*)
      set -- --pipeline "v4l2src device=$good num-buffers=${AE_FRAMES:-500}" ;;
    videotestsrc*) set -- --pipeline "$good" ;;
    *) set -- --input "$good" ;;
  esac
  echo "training $model on $good"
  "$ae_train" --task anomaly --output "$model" "${opts[@]}" "$@"
}

# Learns a test pattern, then inspects it and pure noise: every noise frame
# must be anomalous, and the pattern must score lower than the noise.
self_test () {
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  find_ae_train >/dev/null || { echo "SKIP: ae-train not found"; exit 77; }
  export AE_TRAIN_OPTS="-q --arch conv --size 32x32 --epochs 30 --batch 16"
  local good="videotestsrc num-buffers=64 pattern=smpte ! video/x-raw,width=64,height=48"
  train "$good" "$work/m.aem"
  for what in smpte snow; do
    AE_EVENTS=$work/$what.jsonl AE_SINK=fakesink "$here/inspect.sh" \
      "videotestsrc num-buffers=20 pattern=$what ! video/x-raw,width=64,height=48" "$work/m.aem" \
      >"$work/$what.log" 2>&1 || { cat "$work/$what.log"; exit 1; }
  done
  /usr/bin/python3 - "$work/smpte.jsonl" "$work/snow.jsonl" <<'PY'
import json, sys
good, noise = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert len(good) == 20 and len(noise) == 20, (len(good), len(noise))
assert all(r["anomalous"] for r in noise), "noise frames not all anomalous"
assert max(r["score"] for r in good) < min(r["score"] for r in noise), "pattern scores >= noise"
print("train-then-inspect.sh self-test: pattern %.3g, noise %.3g, threshold %.3g"
      % (max(r["score"] for r in good), min(r["score"] for r in noise), noise[0]["threshold"]))
PY
}

main () {
  case ${1:-} in
    --self-test) setup_env; self_test; return ;;
    ''|-h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ]; return ;;
  esac
  [ $# -eq 2 ] || die "usage: train-then-inspect.sh GOOD_SOURCE TEST_SOURCE"
  setup_env
  local model=${AE_MODEL:-$(mktemp "${TMPDIR:-/tmp}/aeanomaly-XXXXXX.aem")}
  train "$1" "$model"
  exec "$here/inspect.sh" "$2" "$model"
}

main "$@"

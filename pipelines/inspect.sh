#!/usr/bin/env bash
# Inspects video for anomalies: aeanomaly draws the anomaly map and boxes
# over the picture and logs every analysed frame as JSON Lines.
#
#   pipelines/inspect.sh SOURCE [MODEL]
#   pipelines/inspect.sh --self-test
#
# SOURCE  a video or image file, a URI (file://, rtsp://, ...), a camera
#         /dev/videoN, or a gst-launch description starting with videotestsrc.
# MODEL   an anomaly model (ae-train --task anomaly). Without one, aeanomaly
#         learns online from the first 100 frames and then starts detecting.
#
# Environment:
#   AE_EVENTS        events file (default: a new file under $TMPDIR)
#   AE_SINK          video sink (default: autovideosink)
#   AE_ANOMALY_OPTS  extra aeanomaly properties, e.g. "roi=0,0,320,240 interval=2"
#   AE_BUILD_DIR     build tree to take the plugin from (default: ../build)
#
# Prints the events file's path first. Exit status: 0 when the pipeline ran
# to its end (or was interrupted), 1 on a pipeline error, 2 on bad usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

script=inspect.sh
# shellcheck source=pipelines/common.sh
. "$here/common.sh"

# run_inspect SOURCE MODEL EVENTS SINK...
run_inspect () {
  local source=$1 model=$2 events=$3
  shift 3
  local src opts=()
  source_args "$source"
  [ -n "$model" ] && opts+=("model=$model")
  read -ra extra <<<"${AE_ANOMALY_OPTS:-}"
  gst-launch-1.0 -e "${src[@]}" '!' aeanomaly output=overlay "events-location=$events" \
    "${opts[@]}" "${extra[@]}" '!' videoconvert '!' "$@"
}

find_ae_train () {
  local build=${AE_BUILD_DIR:-$here/../build}
  for t in "${AE_TEST_TOOLS:-}/ae-train" "$build/tools/ae-train" "$(command -v ae-train || true)"; do
    [ -x "$t" ] && { echo "$t"; return; }
  done
  return 1
}

# Trains a tiny model on a test pattern, inspects 30 frames of it and
# checks that every frame has a well-formed JSON record.
self_test () {
  local train
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  train=$(find_ae_train) || { echo "SKIP: ae-train not found"; exit 77; }
  "$train" -q --task anomaly --arch conv --size 32x32 --epochs 3 --output "$work/m.aem" \
    --pipeline "videotestsrc num-buffers=48 pattern=ball ! video/x-raw,width=64,height=48"
  local events=$work/events.jsonl
  echo "events: $events"
  run_inspect "videotestsrc num-buffers=30 pattern=ball ! video/x-raw,width=64,height=48" \
    "$work/m.aem" "$events" fakesink >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  /usr/bin/python3 - "$events" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
keys = ["frame", "pts", "score", "threshold", "anomalous", "regions"]
assert len(rows) == 30, f"{len(rows)} records for 30 frames"
assert all(list(r) == keys for r in rows), "record fields"
assert [r["frame"] for r in rows] == list(range(30)), "frame numbers"
print("inspect.sh self-test: 30 records, scores %.3g..%.3g, threshold %.3g"
      % (min(r["score"] for r in rows), max(r["score"] for r in rows), rows[0]["threshold"]))
PY
}

main () {
  case ${1:-} in
    --self-test) setup_gst aeanomaly; self_test; return ;;
    ''|-h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ]; return ;;
  esac
  [ $# -le 2 ] || die "usage: inspect.sh SOURCE [MODEL]"
  [ -z "${2:-}" ] || [ -f "$2" ] || die "no such model: $2"
  setup_gst aeanomaly
  local events=${AE_EVENTS:-$(mktemp "${TMPDIR:-/tmp}/aeanomaly-events-XXXXXX.jsonl")}
  echo "events: $events"
  read -ra sink <<<"${AE_SINK:-autovideosink}"
  run_inspect "$1" "${2:-}" "$events" "${sink[@]}" || exit 1
}

main "$@"

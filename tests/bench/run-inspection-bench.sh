#!/usr/bin/env bash
# Inspection-video benchmark for aeanomaly (docs/benchmarks.md, docs/inspection.md).
#
# Per surface of tests/bench/inspection_video.py's conveyor footage: trains
# with ae-train --task anomaly through --pipeline (F1-calibrated on labelled
# defect footage), runs the test footage through gst-launch-1.0 ... ! aeanomaly
# as a user would, and scores the element's own JSON Lines and float maps
# (tests/bench/inspection_metrics.py). Then the online-learning mode on the
# same footage, and the speed figures next to anchors measured in this run.
#
# Usage: tests/bench/run-inspection-bench.sh [BUILD_DIR] [SURFACES] [LOSS [OPTION...]]
# LOSS (mse, l1 or ssim; default mse) is the training loss; the anomaly map is
# the mixed one (--map mix), for ssim 1 - SSIM, with --lost-contrast 4; OPTIONs are added
# to the recipe's ae-train options
# (e.g. --synthetic-defects 0.5). A LOSS given explicitly skips the speed
# figures; online learning runs with learn-loss=LOSS and the same map unless
# the loss is l1 or OPTIONs are given (they have no element property).
# Needs: python3-numpy, a build (meson setup build && ninja -C build).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=$(cd "${1:-build}" && pwd)
surfaces=${2:-metal,fabric,wood,pcb}
loss=${3:-mse}
extra=("${@:4}")
case $loss in mse | l1 | ssim) ;; *) echo "unknown loss '$loss' (mse, l1 or ssim)" >&2; exit 2 ;; esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GST_PLUGIN_PATH=$build/plugins
py=/usr/bin/python3
size=256
online_passes=${AE_ONLINE_PASSES:-40} # 40 x 2.4 s of test footage while the element trains (~60 s)
# The recipe docs/inspection.md recommends: the mixed map (aeanomaly's
# learn-map default), or 1 - SSIM with the SSIM loss, plus the lost-contrast
# term (learn-contrast's default); OPTIONs come last, so a --map or
# --lost-contrast among them wins.
map=mix
[ "$loss" != ssim ] || map=ssim
train_opts=(--arch fconv --latent 16 --crop 64x64 --repeat 4 --epochs 25
            --synthetic-defects 0.5 --aggregate max --smooth 4 --border 8 --lost-contrast 4
            --loss "$loss" --map "$map" "${extra[@]}")

raw () { # FILE [WIDTH HEIGHT [FPS]]: a gst-launch source of raw GRAY8 frames
  echo "filesrc location=$1 ! rawvideoparse format=gray8 width=${2:-$size}" \
       "height=${3:-$size} framerate=${4:-25}/1"
}

echo "# generating footage (${size}x$size, seed 1)"
"$py" tests/bench/inspection_video.py "$work/data" --surfaces "$surfaces" --size "${size}x$size"

# inspect SURFACE_DIR TAG ELEMENT_PROPS...: the test footage through aeanomaly.
inspect () {
  local dir=$1 tag=$2
  shift 2
  # shellcheck disable=SC2046 # the source description is meant to split into words
  gst-launch-1.0 -q $(raw "$dir/test.gray8") ! aeanomaly "$@" \
    events-location="$work/$tag.jsonl" map-location="$work/$tag.f32" ! fakesink
  "$py" tests/bench/inspection_metrics.py "$dir" "$work/$tag.jsonl" "$work/$tag.f32" "$tag"
}

echo "# quality per surface, loss $loss (offline model, then online learning of the first 400 frames)"
IFS=, read -ra list <<<"$surfaces"
for s in "${list[@]}"; do
  dir=$work/data/$s
  start=$(date +%s.%N)
  "$build/tools/ae-train" --task anomaly --quiet --output "$work/$s.aem" \
    --pipeline "$(raw "$dir/train.gray8")" --defect-pipeline "$(raw "$dir/defects.gray8")" \
    "${train_opts[@]}"
  end=$(date +%s.%N)
  echo "$s: train_seconds=$(echo "$end - $start" | bc)"
  # The map in force, and with --map auto what chose it:
  "$build/tools/ae-info" --json "$work/$s.aem" | "$py" -c 'import json,sys
m = json.load(sys.stdin)["metadata"]
print(sys.argv[1] + ": map=" + m["anomaly.score"], m.get("anomaly.map_choice", ""))' "$s"
  inspect "$dir" "$s" model="$work/$s.aem"
  # The percentile threshold (no labelled defects) on the same model:
  pct=$("$build/tools/ae-info" --json "$work/$s.aem" | "$py" -c \
        'import json,sys; print(json.load(sys.stdin)["metadata"]["anomaly.percentile_threshold"])')
  inspect "$dir" "$s-percentile" model="$work/$s.aem" threshold="$pct"
  # Online learning has the recipe's options as properties (learn-loss,
  # learn-map, learn-contrast); not L1 or extra OPTIONs.
  [ "$loss" != l1 ] && [ ${#extra[@]} -eq 0 ] || continue
  # Online: one stream of the 400 training frames, then the test footage over
  # and over at 100 frames/s while the element trains in the background; the
  # last pass is scored (the learned model has long arrived by then).
  cat "$dir/train.gray8" >"$work/online.gray8"
  for _ in $(seq "$online_passes"); do cat "$dir/test.gray8" >>"$work/online.gray8"; done
  # shellcheck disable=SC2046
  gst-launch-1.0 -q $(raw "$work/online.gray8" "$size" "$size" 100) ! clocksync ! \
    aeanomaly learn-frames=400 learn-loss="$loss" learn-map="$map" \
    events-location="$work/$s-online.jsonl" \
    map-location="$work/$s-online.f32" ! fakesink
  "$py" tests/bench/inspection_metrics.py "$dir" "$work/$s-online.jsonl" "$work/$s-online.f32" \
    "$s-online"
done

[ -z "${3:-}" ] || exit 0
echo "# speed (frames/s; anchors: the same pipeline without aeanomaly, in this run)"
"$py" tests/bench/inspection_video.py "$work/vga" --surfaces metal --size 640x480 \
  --train 64 --test 300 --defects 1 >/dev/null
vga=$work/vga/metal
rate () { # LABEL PIPELINE-TAIL...: frames per second of the VGA test footage
  local label=$1 t0 t1
  shift
  t0=$(date +%s.%N)
  # shellcheck disable=SC2046
  gst-launch-1.0 -q $(raw "$vga/test.gray8" 640 480) ! "$@" ! fakesink
  t1=$(date +%s.%N)
  echo "$label: $(echo "300 / ($t1 - $t0)" | bc -l | xargs printf '%.1f') frames/s"
}
"$build/tools/ae-train" --task anomaly --quiet --output "$work/vga-conv.aem" \
  --pipeline "$(raw "$vga/train.gray8" 640 480)" --size 64x64 --epochs 2
"$build/tools/ae-train" --task anomaly --quiet --output "$work/vga-fconv.aem" \
  --pipeline "$(raw "$vga/train.gray8" 640 480)" --epochs 1 --max-frames 16 \
  "${train_opts[@]}"
rate "anchor: source only (640x480 GRAY8)" identity
rate "aeanomaly, default arch (conv, 64x64 model)" aeanomaly model="$work/vga-conv.aem"
rate "aeanomaly, fconv recipe at 640x480, 2 threads" aeanomaly model="$work/vga-fconv.aem" threads=2
rate "aeanomaly, fconv recipe at 640x480, 1 thread" aeanomaly model="$work/vga-fconv.aem" threads=1
rate "aeanomaly, fconv recipe, output=overlay" aeanomaly model="$work/vga-fconv.aem" output=overlay

echo "# training speed: 400 frames of ${size}x$size (metal), default arch and the recipe"
for opts in "" "${train_opts[*]}"; do
  start=$(date +%s.%N)
  # shellcheck disable=SC2086 # options split on purpose
  "$build/tools/ae-train" --task anomaly --quiet --output "$work/speed.aem" \
    --pipeline "$(raw "$work/data/${list[0]}/train.gray8")" $opts
  end=$(date +%s.%N)
  echo "ae-train ${opts:-(defaults: conv, 20 epochs)}: $(echo "$end - $start" | bc) s"
done

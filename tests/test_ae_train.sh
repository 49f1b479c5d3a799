#!/usr/bin/env bash
# End-to-end test of ae-train and ae-info on 300 Fashion-MNIST images fed
# through a GStreamer pipeline, plus the failure modes users hit first.
#
#   test_ae_train.sh AE_TRAIN AE_INFO WORK_DIR
#
# Prints TAP-like "ok - ..." / "not ok - ..." lines; exits 1 if any failed,
# 77 (skip) without the dataset.
set -eu

if [ $# -ne 3 ]; then
  echo "usage: $0 AE_TRAIN AE_INFO WORK_DIR" >&2
  exit 2
fi
AE_TRAIN=$1
AE_INFO=$2
DATA=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
IMAGES=$DATA/train-images-idx3-ubyte.gz
FRAMES=300

if [ ! -r "$IMAGES" ]; then
  echo "SKIP: $IMAGES not found (install dataset-fashion-mnist)"
  exit 77
fi

mkdir -p "$3"
T=$(mktemp -d "$3/run.XXXXXX")
trap 'rm -rf "$T"' EXIT

failures=0
pass () { echo "ok - $1"; }
fail () {
  echo "not ok - $1"
  failures=$((failures + 1))
}
check () { # description, command...
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

# Runs a command, keeping its status in $rc and output in $T/out, $T/err.
run () {
  set +e
  "$@" >"$T/out" 2>"$T/err"
  rc=$?
  set -e
}

show_output () {
  sed 's/^/#   /' "$T/out" "$T/err"
}

stderr_lines () { wc -l <"$T/err" | tr -d ' '; }

# A failed run must report one "ae-train: ..." line, exit with the wanted
# status (any non-zero if "nonzero"), and leave no model or temporary file.
expect_failure () { # description, wanted status, output path, command...
  local what=$1 want=$2 out=$3
  shift 3
  run "$@"
  local ok=1
  if [ "$want" = nonzero ]; then [ "$rc" -ne 0 ] || ok=0; else [ "$rc" -eq "$want" ] || ok=0; fi
  [ "$(stderr_lines)" -eq 1 ] || ok=0
  grep -q '^ae-[a-z]*: ' "$T/err" || ok=0
  [ ! -e "$out" ] || ok=0
  ! ls "$out".tmp.* >/dev/null 2>&1 || ok=0
  if [ "$ok" -eq 1 ]; then
    pass "$what (exit $rc: $(head -n 1 "$T/err"))"
  else
    fail "$what (exit $rc, wanted $want)"
    show_output
  fi
}

# ---- Data: the first 300 images, 16-byte idx header dropped ---------------------
RAW=$T/fm$FRAMES.raw
gzip -dc "$IMAGES" | tail -c +17 | head -c $((FRAMES * 28 * 28)) >"$RAW" || true
check "extract $FRAMES Fashion-MNIST frames" [ "$(wc -c <"$RAW")" -eq $((FRAMES * 28 * 28)) ]
PIPELINE="filesrc location=$RAW ! rawvideoparse format=gray8 width=28 height=28 framerate=30/1"

# ---- Training ---------------------------------------------------------------------
MODEL=$T/fm.aem
run env SOURCE_DATE_EPOCH=86400 "$AE_TRAIN" --task anomaly --arch conv --epochs 3 --latent 16 \
  --lr-schedule cosine --output "$MODEL" --pipeline "$PIPELINE"
if [ "$rc" -eq 0 ] && [ -s "$MODEL" ]; then
  pass "ae-train anomaly/conv on the pipeline"
else
  fail "ae-train anomaly/conv on the pipeline (exit $rc)"
  show_output
fi
check "no temporary file left next to the model" bash -c "! ls '$MODEL'.tmp.* 2>/dev/null"
check "summary names the output" grep -q "wrote $MODEL" "$T/out"

run "$AE_INFO" "$MODEL"
check "ae-info exits 0" [ "$rc" -eq 0 ]
for key in task anomaly.threshold train.data; do
  check "ae-info shows $key" grep -q "^  $key " "$T/out"
done
check "ae-info: task is anomaly" grep -Eq '^  task +anomaly$' "$T/out"
check "ae-info: train.frames is $FRAMES" grep -Eq "^  train.frames +$FRAMES\$" "$T/out"
check "ae-info: train.epochs is 3" grep -Eq '^  train.epochs +3$' "$T/out"
check "ae-info: train.lr_schedule is cosine" grep -Eq '^  train.lr_schedule +cosine$' "$T/out"
check "ae-info: train.data describes the pipeline" \
  grep -Eq "^  train.data +pipeline 'filesrc .*' \\($FRAMES frames, 28x28 gray\\)\$" "$T/out"
check "ae-info: train.date from SOURCE_DATE_EPOCH" \
  grep -Eq '^  train.date +1970-01-02T00:00:00Z$' "$T/out"
check "ae-info marks the latent layer" grep -q '<- latent' "$T/out"

# A file name that is not UTF-8 (Latin-1 "é") still trains and is shown in train.data.
ODD=$T/caf$(printf '\351').png
if gst-launch-1.0 -q filesrc location="$RAW" ! \
     rawvideoparse format=gray8 width=28 height=28 framerate=30/1 ! videoconvert ! \
     pngenc snapshot=true ! filesink location="$T/plain.png" >/dev/null 2>&1 &&
   mv "$T/plain.png" "$ODD"; then
  run "$AE_TRAIN" --task encode --arch dense --latent 2 --epochs 1 --val-split 0 \
    --output "$T/odd.aem" --input "$ODD"
  check "ae-train on a non-UTF-8 file name" [ "$rc" -eq 0 ]
  run "$AE_INFO" "$T/odd.aem"
  check "ae-info shows the non-UTF-8 name readably" grep -q "train.data .*caf" "$T/out"
else
  fail "could not write a PNG with gst-launch-1.0 pngenc"
fi

run "$AE_INFO" --json "$MODEL"
check "ae-info --json exits 0" [ "$rc" -eq 0 ]
for key in '"task": "anomaly"' '"anomaly.threshold": ' '"train.data": ' '"spec": ' '"layers": '; do
  check "ae-info --json has $key" grep -qF "$key" "$T/out"
done
if command -v python3 >/dev/null 2>&1; then
  check "ae-info --json is valid JSON" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["metadata"]["task"] == "anomaly"
assert d["metadata"]["anomaly.threshold"] > 0
assert sum(1 for l in d["layers"] if l["latent"]) == 1
' "$T/out"
fi

# --quiet prints nothing at all on success (closed-form PCA keeps it fast).
run "$AE_TRAIN" --task encode --arch pca --latent 8 --quiet --output "$T/pca.aem" \
  --pipeline "$PIPELINE"
check "ae-train --quiet --arch pca succeeds silently" \
  [ "$rc" -eq 0 -a -s "$T/pca.aem" -a ! -s "$T/out" -a ! -s "$T/err" ]

# Labelled defects (white frames) move the threshold to the F1-optimal cut:
# between the highest held-out normal score and the lowest defect score.
WHITE="videotestsrc pattern=white num-buffers=20 ! video/x-raw,format=GRAY8,width=28,height=28"
run "$AE_TRAIN" --task anomaly --arch pca --latent 8 --aggregate max --smooth 1 --border 2 \
  --output "$T/f1.aem" --pipeline "$PIPELINE" --defect-pipeline "$WHITE"
check "ae-train --defect-pipeline succeeds" [ "$rc" -eq 0 -a -s "$T/f1.aem" ]
check "ae-train reports the F1 threshold" grep -q "best F1 1.0000 between those frames and 20 defect frames" "$T/out"
run "$AE_INFO" --json "$T/f1.aem"
if command -v python3 >/dev/null 2>&1; then
  check "F1 threshold lies between the normal and the defect scores" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["metadata"]
assert m["anomaly.threshold_method"] == "f1" and m["anomaly.aggregate"] == "max"
assert m["anomaly.smooth_radius"] == 1 and m["anomaly.defect_count"] == 20
assert m["anomaly.border"] == 2
assert m["anomaly.val_score_max"] < m["anomaly.threshold"] < m["anomaly.defect_score_min"]
assert m["anomaly.percentile_threshold"] <= m["anomaly.val_score_max"]
' "$T/out"
fi

# --map-mix: the mixed map, its two scales fitted on the held-out frames.
run "$AE_TRAIN" --task anomaly --arch pca --latent 8 --map-mix --output "$T/mix.aem" \
  --pipeline "$PIPELINE"
check "ae-train --map-mix succeeds" [ "$rc" -eq 0 -a -s "$T/mix.aem" ]
run "$AE_INFO" --json "$T/mix.aem"
if command -v python3 >/dev/null 2>&1; then
  check "--map-mix stores the map kind and two positive scales" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["metadata"]
assert m["anomaly.score"] == "mix-mse-ssim" and m["anomaly.ssim_window"] > 0
assert m["anomaly.mix_scale_mse"] > 0 and m["anomaly.mix_scale_ssim"] > 0
' "$T/out"
fi

# --map auto: of the three maps, the one that best separates the labelled
# defect frames. Here a faint checkerboard (24 levels on alternate pixels)
# over the images' black background: under this PCA the squared-error map
# ranks those frames no better than chance (AUROC 0.49), 1 - SSIM does
# (0.57), so choosing the squared error would be wrong.
if command -v python3 >/dev/null 2>&1; then
  python3 -c '
import sys
out = bytearray(open(sys.argv[1], "rb").read()[: 20 * 784])
for i in range(len(out)):
    p = i % 784
    if (p // 28 + p % 28) % 2 and out[i] == 0:
        out[i] = 24
open(sys.argv[2], "wb").write(bytes(out))
' "$RAW" "$T/checker.raw"
  CHECKER="filesrc location=$T/checker.raw ! rawvideoparse format=gray8 width=28 height=28 framerate=30/1"
  run "$AE_TRAIN" --task anomaly --arch pca --latent 8 --aggregate mean --smooth 1 --border 2 \
    --map auto --output "$T/auto.aem" --pipeline "$PIPELINE" --defect-pipeline "$CHECKER"
  check "ae-train --map auto succeeds" [ "$rc" -eq 0 -a -s "$T/auto.aem" ]
  check "ae-train --map auto reports the comparison" grep -q "^anomaly map auto: frame AUROC" "$T/out"
  run "$AE_INFO" --json "$T/auto.aem"
  check "--map auto keeps the map with the best AUROC, not the squared error, and stores why" \
    python3 -c '
import json, re, sys
m = json.load(open(sys.argv[1]))["metadata"]
found = dict((k, (float(a), float(f))) for k, a, f in
             re.findall(r"(mse|ssim|mix) ([0-9.]+) / ([0-9.]+)", m["anomaly.map_choice"]))
best = max(found, key=lambda k: found[k])
assert sorted(found) == ["mix", "mse", "ssim"], found
assert m["anomaly.map_choice"].endswith("chose " + best), (best, m["anomaly.map_choice"])
assert best != "mse" and found[best][0] > found["mse"][0] + 0.05, found
assert m["anomaly.score"] == {"mse": "mean-mse", "ssim": "mean-ssim", "mix": "mix-mse-ssim"}[best]
assert (best == "mix") == ("anomaly.mix_scale_mse" in m)
' "$T/out"
fi
# --lost-contrast: on random noise frames a PCA rebuilds the mean, so a
# patch flattened to 0.5 has less squared error than the noise around it;
# only the lost-contrast term sees it (labelled: F1 1 with it, below without).
if command -v python3 >/dev/null 2>&1; then
  python3 -c '
import random, sys
rng = random.Random(5)
good = bytes(rng.randrange(256) for _ in range(40 * 1024))
bad = bytearray(rng.randrange(256) for _ in range(20 * 1024))
for f in range(20):
    for y in range(10, 22):
        for x in range(8 + f % 4, 20 + f % 4):
            bad[f * 1024 + y * 32 + x] = 128
open(sys.argv[1], "wb").write(good)
open(sys.argv[2], "wb").write(bytes(bad))
' "$T/noise.raw" "$T/flat.raw"
  NOISE="filesrc location=$T/noise.raw ! rawvideoparse format=gray8 width=32 height=32 framerate=30/1"
  FLAT="filesrc location=$T/flat.raw ! rawvideoparse format=gray8 width=32 height=32 framerate=30/1"
  for w in 0 4; do
    run "$AE_TRAIN" --task anomaly --arch pca --latent 8 --aggregate max --smooth 2 --border 2 \
      --lost-contrast $w --val-split 0.5 --output "$T/contrast$w.aem" --pipeline "$NOISE" \
      --defect-pipeline "$FLAT"
    cp "$T/out" "$T/contrast$w.out"
  done
  check "ae-train --lost-contrast reports its floor" \
    grep -q "^lost contrast: 4 x the map's mean [0-9.e-]* = [0-9.e-]* per halving" "$T/contrast4.out"
  check "a flat patch on noise: F1 1 with --lost-contrast, below without" \
    grep -q "best F1 1.0000" "$T/contrast4.out"
  check "(without: the squared error alone misses it)" \
    grep -Eq "best F1 0\.[0-9]+ between" "$T/contrast0.out"
  run "$AE_INFO" --json "$T/contrast4.aem"
  check "--lost-contrast stores its weight, floor and window" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["metadata"]
unit = m["anomaly.contrast_map_mean"]  # the squared error of noise about its mean: ~1/12
assert 0.05 < unit < 0.12 and abs(m["anomaly.contrast_weight"] - 4 * unit) < 1e-6 * unit, m
assert m["anomaly.contrast_window"] == 7
assert 0.2 < m["anomaly.contrast_floor"] < 0.3, m["anomaly.contrast_floor"]  # uniform noise: 0.29
' "$T/out"
  run "$AE_INFO" --json "$T/contrast0.aem"
  check "--lost-contrast 0 stores no term" python3 -c '
import json, sys
assert "anomaly.contrast_weight" not in json.load(open(sys.argv[1]))["metadata"]
' "$T/out"
fi
run "$AE_TRAIN" --task anomaly --arch pca --latent 8 --map ssim --output "$T/ssimmap.aem" \
  --pipeline "$PIPELINE"
check "--map ssim on an MSE-trained model" [ "$rc" -eq 0 -a -s "$T/ssimmap.aem" ]
run "$AE_INFO" "$T/ssimmap.aem"
check "--map ssim stores the 1 - SSIM map" grep -Eq "^  anomaly.score +mean-ssim$" "$T/out"

# Latent scores: a Gaussian of the training frames' latents, the combined
# score standardised on the held-out frames (so their scores average 0).
run "$AE_TRAIN" --task anomaly --arch conv --epochs 1 --latent 8 --score combined \
  --output "$T/combined.aem" --pipeline "$PIPELINE"
check "ae-train --score combined succeeds" [ "$rc" -eq 0 -a -s "$T/combined.aem" ]
check "ae-train reports the latent Gaussian" \
  grep -q "latent Gaussian of the code (8 values, shrinkage 0.01) fitted on 270 frames; frame score combined" \
  "$T/out"
run "$AE_INFO" "$T/combined.aem"
check "ae-info shows the stored Gaussian" grep -q "latent:     8 values (Gaussian" "$T/out"
run "$AE_INFO" --json "$T/combined.aem"
if command -v python3 >/dev/null 2>&1; then
  check "combined score metadata is consistent" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
m = d["metadata"]
assert d["latent_gaussian"] == 8
assert m["anomaly.frame_score"] == "combined" and m["anomaly.latent_shrinkage"] == 0.01
assert m["anomaly.latent_vector"] == "code"
assert m["anomaly.combined.recon_std"] > 0 and m["anomaly.combined.mahalanobis_std"] > 0
assert 0 < m["anomaly.combined.recon_mean"] < 1 and m["anomaly.combined.mahalanobis_mean"] > 0
assert abs(m["anomaly.val_score_mean"]) < 1e-4, m["anomaly.val_score_mean"]
assert m["anomaly.val_count"] == 30 and m["anomaly.threshold"] > 0
assert 0 < m["anomaly.map_threshold"] < 1
' "$T/out"
fi
run "$AE_TRAIN" --task anomaly --arch pca --latent 8 --score mahalanobis --latent-shrinkage 0.1 \
  --quiet --output "$T/mahal.aem" --pipeline "$PIPELINE"
run "$AE_INFO" --json "$T/mahal.aem"
if command -v python3 >/dev/null 2>&1; then
  check "mahalanobis score: held-out frames score near the latent size" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["metadata"]
assert m["anomaly.frame_score"] == "mahalanobis" and m["anomaly.latent_shrinkage"] == 0.1
assert "anomaly.combined.recon_mean" not in m
assert 4 < m["anomaly.val_score_mean"] < 40, m["anomaly.val_score_mean"]
' "$T/out"
fi

# The Gaussian of the latent's shift: the combined score of the distance
# the latent moves when a frame is replaced by its reconstruction.
run "$AE_TRAIN" --task anomaly --arch conv --epochs 1 --latent 8 --score combined \
  --latent-vector shift --output "$T/shift.aem" --pipeline "$PIPELINE"
check "ae-train --latent-vector shift succeeds" [ "$rc" -eq 0 -a -s "$T/shift.aem" ]
check "ae-train reports the Gaussian of the shift" \
  grep -q "latent Gaussian of the shift (8 values, shrinkage 0.01) fitted on 270 frames" "$T/out"
run "$AE_INFO" --json "$T/shift.aem"
if command -v python3 >/dev/null 2>&1; then
  check "shift score metadata: the vector, standardised held-out scores" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
m = d["metadata"]
assert d["latent_gaussian"] == 8 and m["anomaly.latent_vector"] == "shift"
assert m["anomaly.frame_score"] == "combined" and m["anomaly.combined.mahalanobis_std"] > 0
assert abs(m["anomaly.val_score_mean"]) < 1e-4, m["anomaly.val_score_mean"]
' "$T/out"
fi
expect_failure "--latent-vector without a latent score" 2 "$T/noshift.aem" \
  "$AE_TRAIN" --task anomaly --arch pca --latent 8 --latent-vector shift --output "$T/noshift.aem" \
  --pipeline "$PIPELINE"
expect_failure "--latent-vector shift with --arch pca (its shift is 0)" 2 "$T/noshift.aem" \
  "$AE_TRAIN" --task anomaly --arch pca --latent 8 --score combined --latent-vector shift \
  --output "$T/noshift.aem" --pipeline "$PIPELINE"
expect_failure "--latent-vector foo" 2 "$T/noshift.aem" \
  "$AE_TRAIN" --task anomaly --arch pca --latent 8 --score mahalanobis --latent-vector foo \
  --output "$T/noshift.aem" --pipeline "$PIPELINE"

# The VAE's negative ELBO: the map averaged over posterior samples plus the
# KL term, which is never negative, so every frame scores at least its map.
run "$AE_TRAIN" --task anomaly --arch vae --epochs 1 --latent 8 --score elbo --elbo-samples 4 \
  --output "$T/elbo.aem" --pipeline "$PIPELINE"
check "ae-train --arch vae --score elbo succeeds" [ "$rc" -eq 0 -a -s "$T/elbo.aem" ]
check "ae-train reports the elbo score" grep -q \
  "frame score elbo: the error map averaged over 4 posterior samples (seed 1) + 1 KL / 784" "$T/out"
run "$AE_INFO" "$T/elbo.aem"
check "ae-info shows the elbo settings" grep -q \
  "frame score: elbo (error map averaged over 4 posterior samples, seed 1, + 0.00127551 x KL, beta 1)" \
  "$T/out"
run "$AE_INFO" --json "$T/elbo.aem"
if command -v python3 >/dev/null 2>&1; then
  check "elbo score metadata is consistent" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
m = d["metadata"]
assert d["latent_gaussian"] == 0 and "anomaly.latent_shrinkage" not in m
assert m["anomaly.frame_score"] == "elbo" and m["anomaly.elbo.samples"] == 4
assert m["anomaly.elbo.seed"] == 1 and m["anomaly.elbo.beta"] == 1
assert 0 < m["anomaly.map_threshold"] < m["anomaly.threshold"], m
assert m["anomaly.val_count"] == 30 and m["anomaly.val_score_mean"] > 0
' "$T/out"
fi

# --pixel-norm: the map divided by its per-pixel mean on the held-out frames,
# which are also the calibration frames, so their mean-aggregated scores
# average 1, less what the floor takes from pixels PCA never gets wrong (the
# images' black corners count their error against 1e-3 of the mean pixel's).
run "$AE_TRAIN" --task anomaly --arch pca --latent 8 --pixel-norm --output "$T/norm.aem" \
  --pipeline "$PIPELINE"
check "ae-train --pixel-norm succeeds" [ "$rc" -eq 0 -a -s "$T/norm.aem" ]
check "ae-train reports the mean map" \
  grep -q "anomaly map divided by its per-pixel mean on the 30 calibration frames" "$T/out"
run "$AE_INFO" "$T/norm.aem"
check "ae-info shows the mean map" grep -q "anomaly map: divided by the mean map" "$T/out"
run "$AE_INFO" --json "$T/norm.aem"
if command -v python3 >/dev/null 2>&1; then
  check "pixel-normalised held-out scores average 1" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["metadata"]
assert 0.95 < m["anomaly.val_score_mean"] < 1 + 1e-3, m["anomaly.val_score_mean"]
assert m["anomaly.threshold"] > 1
' "$T/out"
fi
run "$AE_TRAIN" --task anomaly --arch conv --epochs 1 --latent 8 --score combined --pixel-norm \
  --quiet --output "$T/norm-combined.aem" --pipeline "$PIPELINE"
run "$AE_INFO" --json "$T/norm-combined.aem"
if command -v python3 >/dev/null 2>&1; then
  check "--pixel-norm with --score combined: the map part in normalised units" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["metadata"]
assert abs(m["anomaly.combined.recon_mean"] - 1) < 2e-3, m["anomaly.combined.recon_mean"]
assert abs(m["anomaly.val_score_mean"]) < 1e-4 and m["anomaly.map_threshold"] > 1
' "$T/out"
fi

run "$AE_TRAIN" --task anomaly --arch conv --epochs 1 --latent 8 --rotate-inputs --quiet \
  --output "$T/rotated.aem" --pipeline "$PIPELINE"
check "--rotate-inputs trains (exit $rc)" [ "$rc" -eq 0 ]
run "$AE_INFO" "$T/rotated.aem"
check "--rotate-inputs is in the model's provenance" grep -Eq '^ *train.rotate_inputs +1$' "$T/out"
run "$AE_TRAIN" --task anomaly --arch conv --epochs 1 --latent 8 --translate-inputs 2 --quiet \
  --output "$T/moved.aem" --pipeline "$PIPELINE"
check "--translate-inputs trains (exit $rc)" [ "$rc" -eq 0 ]
run "$AE_INFO" "$T/moved.aem"
check "--translate-inputs is in the model's provenance" \
  grep -Eq '^ *train.translate_inputs +2$' "$T/out"

# ---- Failures ---------------------------------------------------------------------
OUT=$T/never.aem
expect_failure "nonexistent --input" nonzero "$OUT" \
  "$AE_TRAIN" --task anomaly --output "$OUT" --input "$T/does-not-exist.png"
expect_failure "--epochs 0" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --output "$OUT" --pipeline "$PIPELINE" --epochs 0
expect_failure "--size 0x5" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --output "$OUT" --pipeline "$PIPELINE" --size 0x5
expect_failure "--loss foo" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --output "$OUT" --pipeline "$PIPELINE" --loss foo
expect_failure "--aggregate top:0" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --aggregate top:0 --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--aggregate with --task denoise" 2 "$OUT" \
  "$AE_TRAIN" --task denoise --aggregate max --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--map-mix with --score combined" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --map-mix --score combined --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--map auto without labelled defects" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --map auto --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--map with an unknown kind" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --map l2 --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--map-mix with --map ssim" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --map-mix --map ssim --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--border 257" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --border 257 --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--lost-contrast -1" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --lost-contrast -1 --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--lost-contrast with --task denoise" 2 "$OUT" \
  "$AE_TRAIN" --task denoise --lost-contrast 4 --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--border with --task encode" 2 "$OUT" \
  "$AE_TRAIN" --task encode --border 2 --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--score knn" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --score knn --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--score with --task encode" 2 "$OUT" \
  "$AE_TRAIN" --task encode --score combined --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--latent-shrinkage 2" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --score mahalanobis --latent-shrinkage 2 --output "$OUT" \
  --pipeline "$PIPELINE"
expect_failure "--score mahalanobis on a fully convolutional model's large latent" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --arch fconv --size 128x128 --epochs 1 --score mahalanobis \
  --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--score combined with --crop" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --arch fconv --crop 16x16 --epochs 1 --score combined \
  --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--score elbo on a model without a sample layer" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --arch conv --epochs 1 --score elbo --output "$OUT" \
  --pipeline "$PIPELINE"
expect_failure "--score elbo with --arch pca" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --arch pca --score elbo --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--elbo-samples 0" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --arch vae --score elbo --elbo-samples 0 --output "$OUT" \
  --pipeline "$PIPELINE"
expect_failure "--elbo-samples without --score elbo" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --arch vae --elbo-samples 4 --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--pixel-norm with --crop" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --arch fconv --crop 16x16 --epochs 1 --pixel-norm --output "$OUT" \
  --pipeline "$PIPELINE"
expect_failure "--pixel-norm with --task denoise" 2 "$OUT" \
  "$AE_TRAIN" --task denoise --pixel-norm --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--rotate-inputs with a non-square --crop" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --arch fconv --crop 16x8 --rotate-inputs --output "$OUT" \
  --pipeline "$PIPELINE"
expect_failure "--rotate-inputs with a non-square --size" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --size 32x16 --rotate-inputs --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--rotate-inputs on non-square frames" nonzero "$OUT" \
  "$AE_TRAIN" --task anomaly --epochs 1 --rotate-inputs --output "$OUT" \
  --pipeline "filesrc location=$RAW ! rawvideoparse format=gray8 width=28 height=12 framerate=30/1"
expect_failure "--rotate-inputs with --arch pca" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --arch pca --rotate-inputs --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--translate-inputs with --arch pca" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --arch pca --translate-inputs 2 --output "$OUT" \
  --pipeline "$PIPELINE"
expect_failure "--translate-inputs -1" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --translate-inputs -1 --output "$OUT" --pipeline "$PIPELINE"
expect_failure "--translate-inputs 8 with --size 16x16" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --size 16x16 --translate-inputs 8 --output "$OUT" \
  --pipeline "$PIPELINE"
expect_failure "--translate-inputs 2147483647 with --size 16x16" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --size 16x16 --translate-inputs 2147483647 --output "$OUT" \
  --pipeline "$PIPELINE"
expect_failure "--translate-inputs 14 on 28x28 frames" nonzero "$OUT" \
  "$AE_TRAIN" --task anomaly --epochs 1 --translate-inputs 14 --output "$OUT" \
  --pipeline "$PIPELINE"
expect_failure "--rotate-inputs with --task denoise" 2 "$OUT" \
  "$AE_TRAIN" --task denoise --rotate-inputs --output "$OUT" --pipeline "$PIPELINE"
expect_failure "unreadable --defect-input" 1 "$OUT" \
  "$AE_TRAIN" --task anomaly --output "$OUT" --pipeline "$PIPELINE" --defect-input "$T/nope.png"
expect_failure "--lr-schedule steep" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --output "$OUT" --pipeline "$PIPELINE" --lr-schedule steep
expect_failure "--synthetic-defects 1.5" 2 "$OUT" \
  "$AE_TRAIN" --task anomaly --output "$OUT" --pipeline "$PIPELINE" --synthetic-defects 1.5
expect_failure "missing --task" 2 "$OUT" \
  "$AE_TRAIN" --output "$OUT" --pipeline "$PIPELINE"
expect_failure "bad pipeline syntax" 1 "$OUT" \
  "$AE_TRAIN" --task anomaly --output "$OUT" --pipeline "videotestsrc ! ! nosuchelement"
expect_failure "output directory does not exist" 1 "$T/no/such/dir/m.aem" \
  "$AE_TRAIN" --task anomaly --output "$T/no/such/dir/m.aem" --pipeline "$PIPELINE"
touch "$T/plain-file"
expect_failure "output directory is a file" 1 "$T/plain-file/m.aem" \
  "$AE_TRAIN" --task anomaly --output "$T/plain-file/m.aem" --pipeline "$PIPELINE"
if [ "$(id -u)" -ne 0 ]; then
  # root writes anywhere, so a read-only directory only tests ordinary users.
  mkdir "$T/readonly" && chmod 555 "$T/readonly"
  expect_failure "read-only output directory" 1 "$T/readonly/m.aem" \
    "$AE_TRAIN" --task anomaly --output "$T/readonly/m.aem" --pipeline "$PIPELINE"
  chmod 755 "$T/readonly"
fi

if [ -s "$MODEL" ]; then
  head -c $(($(wc -c <"$MODEL") / 2)) "$MODEL" >"$T/truncated.aem"
  expect_failure "ae-info on a truncated model" 1 "$T/never" "$AE_INFO" "$T/truncated.aem"
  head -c 100 "$MODEL" >"$T/short.aem"
  expect_failure "ae-info on a 100-byte model" 1 "$T/never" "$AE_INFO" --json "$T/short.aem"
fi
expect_failure "ae-info on a missing model" 1 "$T/never" "$AE_INFO" "$T/missing.aem"

if [ "$failures" -ne 0 ]; then
  echo "# $failures check(s) failed"
  exit 1
fi
echo "# all checks passed"

#!/usr/bin/env bash
# Training and batch-1 inference speed of libae against PyTorch (Debian's
# python3-torch), same network, data, batch and thread count, one run.
# Usage: tests/bench/run-train-bench.sh [BUILD_DIR] [FRAMES] [THREADS]
# Needs: tools/setup.sh --bench, and a build (meson setup build).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
count=${2:-6400}
threads=${3:-2}
frames=$(mktemp)
trap 'rm -f "$frames"' EXIT
# head closes the pipe early on purpose; the size check below is what counts.
(gzip -dc /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
  | tail -c +17 | head -c $((count * 784)) >"$frames") || true
[ "$(stat -c %s "$frames")" -eq $((count * 784)) ] || { echo "cannot read Fashion-MNIST" >&2; exit 1; }

ninja -C "$build" tests/bench/bench_train >/dev/null
echo "# libae (OpenBLAS threads: $threads)"
"$build/tests/bench/bench_train" "$frames" "$count" "$threads" | tee /tmp/ae-bench-libae.txt
echo "# PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') (threads: $threads)"
/usr/bin/python3 tests/bench/torch_train.py "$frames" "$count" "$threads" | tee /tmp/ae-bench-torch.txt

ratio () { # key
  awk -v k="$1" 'FNR == NR && $1 == k { a = $2 } FNR != NR && $1 == k { b = $2 }
                 END { printf "%s: libae %.0f / PyTorch %.0f = %.2fx\n", k, a, b, a / b }' \
      /tmp/ae-bench-libae.txt /tmp/ae-bench-torch.txt
}
echo "# ratios (higher is better for libae)"
ratio train_samples_per_s
ratio infer_b1_samples_per_s
awk 'FNR == NR && $1 == "infer_b1_1thread_samples_per_s" { a = $2 }
     FNR != NR && $1 == "infer_b1_samples_per_s" { b = $2 }
     END { printf "infer_b1 libae 1 thread %.0f / PyTorch 2 threads %.0f = %.2fx\n", a, b, a / b }' \
  /tmp/ae-bench-libae.txt /tmp/ae-bench-torch.txt
awk '$1 ~ /_gflops$/ && $1 != "sgemm_1024_gflops" { l[$1] = $2 }
     $1 == "sgemm_1024_gflops" { peak = $2 }
     END { for (k in l) printf "%s: %.1f GFLOP/s = %.0f%% of sgemm peak %.1f\n", k, l[k], 100 * l[k] / peak, peak }' \
  /tmp/ae-bench-libae.txt | sort

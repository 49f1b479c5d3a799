#!/usr/bin/env bash
# Fashion-MNIST one-class anomaly benchmark through ae-train and aeanomaly
# (docs/benchmarks.md). Usage:
#   tests/bench/run-fmnist-oneclass.sh [BUILD_DIR] [--classes 0,1] [--methods conv,pca,...]
#                                      [--epochs N] [--torch-epochs N] [--no-torch]
# Methods: conv, pca, and each with -mahalanobis or -combined (ae-train --score);
# vae, and vae-elbo (--score elbo); run only when named: any of them with
# +norm (--pixel-norm), vae-elbo-L1 / vae-elbo-L32 (--elbo-samples), and any
# but pca's with +rot last (--rotate-inputs), e.g. conv+norm+rot; -mahalanobis
# and -combined with -shift (--latent-vector shift), e.g. conv-combined-shift+norm+rot;
# any +rot method with +move (--translate-inputs 2), e.g. conv-combined-shift+norm+rot+move.
# Needs: dataset-fashion-mnist, python3-numpy (tools/setup.sh), python3-torch
# for the PyTorch anchor (tools/setup.sh --bench), and a build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  build=$1
  shift
fi
build=$(cd "$build" && pwd)
ninja -C "$build" >/dev/null
exec /usr/bin/python3 "$here/fmnist_oneclass.py" "$build" "$@"

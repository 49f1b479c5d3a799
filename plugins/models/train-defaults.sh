#!/usr/bin/env bash
# Trains the embedded default models from Debian-packaged data, with fixed
# seeds, thread count and date, so the committed files can be reproduced:
#   plugins/models/train-defaults.sh [BUILD_DIR] [denoise|encode|all]
# Writes into this folder, or into $AE_MODELS_OUT (to compare with the
# committed files: cmp reports no difference).
# Needs: tools/setup.sh --bench (python3-skimage) and a build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
which=${2:-all}
out=${AE_MODELS_OUT:-$here}
train=$build/tools/ae-train
export SOURCE_DATE_EPOCH=1767225600 # 2026-01-01, so the files' train.date is fixed
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# denoise-default.aem: a small fully convolutional denoiser that works at half
# resolution inside; blind over sigma 0-50 (pixel units). Trained on random
# 64x64 crops (with flips and fresh noise each pass) of scikit-image's photos
# and textures, never on the benchmark images camera, astronaut and coffee.
if [ "$which" = all ] || [ "$which" = denoise ]; then
  skdata=/usr/lib/python3/dist-packages/skimage/data
  mkdir "$work/photos"
  for f in brick grass gravel chelsea coins moon rocket motorcycle_left motorcycle_right \
           hubble_deep_field retina ihc page text clock_motion cell microaneurysms horse; do
    cp "$skdata/$f".* "$work/photos/"
  done
  # A relative --input keeps the temporary path out of train.data.
  (cd "$work" && "$train" --task denoise --input photos --size 384x384 --crop 64x64 --flip \
    --arch "conv:16:3:2:1:lrelu,conv:16:3:1:1:lrelu,conv:16:3:1:1:lrelu,deconv:1:4:2:1:sigmoid" \
    --repeat 200 --batch 32 --epochs 30 --noise 0:50 --seed 1 --threads 1 \
    --meta "train.recipe=plugins/models/train-defaults.sh (gst-autoencoder)" \
    --meta "train.source=Debian python3-skimage data: $(ls "$work/photos" | tr '\n' ' ')" \
    --output "$out/denoise-default.aem")
fi

# encode-default.aem: conv AE with a 32-value latent on the 60,000 Fashion-MNIST
# training images (dataset-fashion-mnist); aeencode scales frames to 28x28 gray.
if [ "$which" = all ] || [ "$which" = encode ]; then
  gzip -dc /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz | tail -c +17 >"$work/fm.gray8"
  (cd "$work" && "$train" --task encode --arch conv --latent 32 --epochs 8 --seed 1 --threads 1 \
    --pipeline "filesrc location=fm.gray8 ! rawvideoparse format=gray8 width=28 height=28 framerate=30/1" \
    --meta "train.recipe=plugins/models/train-defaults.sh (gst-autoencoder)" \
    --meta "train.source=Debian dataset-fashion-mnist: train-images-idx3-ubyte.gz, all 60000 images" \
    --output "$out/encode-default.aem")
fi

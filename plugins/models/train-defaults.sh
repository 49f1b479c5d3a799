#!/usr/bin/env bash
# Trains the embedded default models from Debian-packaged data, with fixed
# seeds, thread count and date, so the committed files can be reproduced:
#   plugins/models/train-defaults.sh [BUILD_DIR] [denoise|denoise-quality|encode|all]
# Writes into this folder, or into $AE_MODELS_OUT (to compare with the
# committed files: cmp reports no difference).
# Needs: tools/setup.sh --bench (python3-skimage, mate-backgrounds) and a build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
which=${2:-all}
out=${AE_MODELS_OUT:-$here}
train=$build/tools/ae-train
export SOURCE_DATE_EPOCH=1767225600 # 2026-01-01, so the files' train.date is fixed
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The denoisers: fully convolutional, working at half resolution inside
# (a strided conv in, sub-pixel shuffle out), over sigma 0-50 (pixel units),
# noise-conditioned: a `noise` layer after the first convolution is told
# the input's noise level (the injected sigma here, the measured one in
# aedenoise), which measured 0.3-0.5 dB better at sigma 25 than the same
# network left to guess it. Trained on random 64x64 crops, with flips and fresh noise each
# pass, of natural photographs from Debian packages, all scaled to 512x512:
# scikit-image's photos (not its microscopy, astronomy, text or
# silhouettes: with them the fast model measured 0.2-0.4 dB worse on natural
# images) and the MATE desktop's nature photos (mate-backgrounds). Never on
# the benchmark images camera, astronaut and coffee.
denoise_photos () {
  local skdata=/usr/lib/python3/dist-packages/skimage/data mate=/usr/share/backgrounds/mate
  mkdir "$work/photos"
  for f in brick grass gravel chelsea coins moon rocket motorcycle_left motorcycle_right; do
    cp "$skdata/$f".* "$work/photos/"
  done
  cp "$mate"/nature/*.jpg "$mate/abstract/Elephants.jpg" "$work/photos/"
}

# train_denoiser OUTPUT ARCH EPOCHS [AE-TRAIN OPTIONS...]. No validation split: judged on three
# 64x64 centre crops, early stopping picked noisy, undertrained epochs; the
# benchmark images (tests/bench) are the real test.
train_denoiser () {
  # A relative --input keeps the temporary path out of train.data.
  (cd "$work" && "$train" --task denoise --input photos --size 512x512 --crop 64x64 --flip \
    --arch "$2" --repeat 140 --batch 32 --epochs "$3" --noise 0:50 \
    --val-split 0 --seed 1 --threads 2 "${@:4}" \
    --meta "train.recipe=plugins/models/train-defaults.sh (gst-autoencoder)" \
    --meta "train.source=Debian python3-skimage and mate-backgrounds photos: $(ls "$work/photos" | tr '\n' ' ')" \
    --output "$out/$1")
}

if [ "$which" = all ] || [ "$which" = denoise ] || [ "$which" = denoise-quality ]; then
  denoise_photos
fi
# denoise-default.aem (preset=fast): 16 channels, real time at 720p on two cores.
if [ "$which" = all ] || [ "$which" = denoise ]; then
  train_denoiser denoise-default.aem \
    "conv:16:4:2:1,noise:lrelu,conv:16:3:1:1:lrelu,conv:16:3:1:1:lrelu,conv:4:3:1:1:sigmoid,shuffle:2" 700
fi
# denoise-quality.aem (preset=quality): 32 channels, twice as deep, ~7x the work.
if [ "$which" = all ] || [ "$which" = denoise-quality ]; then
  train_denoiser denoise-quality.aem \
    "conv:32:4:2:1,noise:lrelu,conv:32:3:1:1:lrelu,conv:32:3:1:1:lrelu,conv:32:3:1:1:lrelu,conv:32:3:1:1:lrelu,conv:4:3:1:1:sigmoid,shuffle:2" 60
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

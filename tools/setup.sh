#!/usr/bin/env bash
# Installs what building and testing gst-autoencoder needs on Debian 12.
# Idempotent: installs only missing packages. Run as root (or with sudo).
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config
  libopenblas-dev liblapacke-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  dataset-fashion-mnist python3 python3-gi gir1.2-gstreamer-1.0 python3-numpy valgrind
)
# Extra packages for the benchmarks (tests/bench), on request.
if [ "${1:-}" = "--bench" ]; then
  packages+=(python3-torch python3-skimage python3-scipy python3-opencv python3-matplotlib ffmpeg
            mate-backgrounds)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all packages present"

# Shared by the pipeline scripts (sourced, not run). The sourcing script sets
# `here` (its folder) and `script` (its name, for messages).

die () { echo "$script: $*" >&2; exit 2; }

# setup_gst ELEMENT: finds the plugin, installed or in the build tree next to
# these scripts. Under meson the system plugin path may be set empty (unit
# tests); sources and sinks live there, so it is restored.
setup_gst () {
  if [ "${GST_PLUGIN_SYSTEM_PATH_1_0+set}" = set ] && [ -z "$GST_PLUGIN_SYSTEM_PATH_1_0" ]; then
    unset GST_PLUGIN_SYSTEM_PATH_1_0
  fi
  # AE_BUILD_DIR wins; the build tree next to the scripts only serves when
  # nothing else says where the plugin is.
  local build=${AE_BUILD_DIR:-}
  [ -n "$build" ] || [ -n "${GST_PLUGIN_PATH:-}" ] || build=$here/../build
  if [ -n "$build" ] && [ -d "$build/plugins" ]; then
    export GST_PLUGIN_PATH=$build/plugins${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
  fi
  # A sanitised build only loads into a process that starts with its runtime.
  local so="" dir dirs
  IFS=: read -ra dirs <<<"${GST_PLUGIN_PATH:-}"
  for dir in "${dirs[@]}"; do
    if [ -z "$so" ] && [ -f "$dir/libgstautoencoder.so" ]; then
      so=$dir/libgstautoencoder.so
    fi
  done
  if [ -n "$so" ] && [[ $(ldd "$so" 2>/dev/null) == *libasan* ]]; then
    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
    export LD_PRELOAD
    export ASAN_OPTIONS=detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
  fi
  gst-inspect-1.0 "$1" >/dev/null 2>&1 \
    || die "the $1 element is not available (build the project or set GST_PLUGIN_PATH)"
}

# Fills the array `src` with the source part of the pipeline.
source_args () {
  case $1 in
    /dev/video*) src=(v4l2src "device=$1" '!' videoconvert) ;;
    videotestsrc*) read -ra src <<<"$1" ;;
    *://*) src=(uridecodebin "uri=$1" '!' videoconvert) ;;
    *)
      [ -e "$1" ] || die "no such file: $1"
      src=(filesrc "location=$1" '!' decodebin '!' videoconvert) ;;
  esac
}

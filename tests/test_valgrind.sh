#!/usr/bin/env bash
# Runs a short pipeline through each element under valgrind: no invalid
# access and 0 bytes definitely lost (GStreamer's own start-up leaves only
# "still reachable" blocks, so no suppressions are needed on Debian 12).
#   test_valgrind.sh PLUGIN_DIR WORK_DIR
set -u
plugin_dir=$1
work=$2
mkdir -p "$work"
export GST_PLUGIN_PATH=$plugin_dir GST_REGISTRY_1_0=$work/registry.bin GST_DEBUG=0
export OPENBLAS_NUM_THREADS=1
if ! command -v valgrind >/dev/null; then
  echo "SKIP: valgrind not installed"
  exit 77
fi
failures=0
run () { # description, pipeline...
  local what=$1 log=$work/valgrind-$RANDOM.log
  shift
  if valgrind --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
       --error-exitcode=9 --log-file="$log" gst-launch-1.0 -q "$@" >/dev/null 2>&1; then
    echo "ok - $what: $(grep -o 'definitely lost: [0-9,]* bytes' "$log" || echo 'no leaks')"
  else
    echo "not ok - $what"
    sed 's/^/#   /' "$log" | tail -40
    failures=$((failures + 1))
  fi
}
run aedenoise videotestsrc num-buffers=3 ! video/x-raw,format=I420,width=64,height=48 ! aedenoise ! fakesink
# wide enough for the Winograd kernel (64+ columns at the network's half size), on 2 stripes
run "aedenoise (Winograd layers)" videotestsrc num-buffers=2 pattern=snow ! video/x-raw,format=GRAY8,width=160,height=96 ! aedenoise threads=2 ! fakesink
run aeanomaly videotestsrc num-buffers=8 pattern=ball ! video/x-raw,format=GRAY8,width=32,height=32 ! aeanomaly learn-frames=4 ! fakesink
run aeencode videotestsrc num-buffers=3 ! video/x-raw,width=40,height=30 ! aeencode ! fakesink
[ "$failures" -eq 0 ]

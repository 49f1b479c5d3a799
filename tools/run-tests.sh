#!/usr/bin/env bash
# Builds gst-autoencoder twice (optimised, and with AddressSanitizer +
# UBSan), runs the whole meson test suite in both, and ends with the line
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

configure () { # dir, extra meson options...
  local dir=$1; shift
  if [ -d "$dir" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

passed=0 failed=0
run_suite () { # dir, label
  local dir=$1 label=$2
  if ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
    cat "$dir.build.log"
    echo "$label: build failed"
    failed=$((failed + 1))
    return
  fi
  meson test -C "$dir" --print-errorlogs --num-processes 2 || true
  local counts
  counts=$(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        ok += 1
    elif r != "SKIP":
        bad += 1
print(ok, bad)
PY
)
  read -r ok bad <<<"$counts"
  echo "$label: $ok passed, $bad failed"
  passed=$((passed + ok))
  failed=$((failed + bad))
}

configure build
run_suite build "optimised build"
configure build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
  -Dc_args=-fno-sanitize-recover=all
run_suite build-asan "sanitizer build"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

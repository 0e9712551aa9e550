#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) on a copy of its seed corpus, so the
# checked-in corpus stays small. Crashes land in fuzz/artifacts/<target>/ and stop the run.
# Usage: fuzz/run-all.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
work=$(mktemp -d /tmp/packvault-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
cargo +nightly fuzz build >/dev/null
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  [ -d "corpus/$t" ] && cp -r "corpus/$t/." "$work/$t/"
  echo "== $t (${secs}s)"
  cargo +nightly fuzz run "$t" "$work/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY|Test unit written)" || true
  if compgen -G "artifacts/$t/*" >/dev/null; then
    echo "!! $t: crash artifacts in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "all ${#targets[@]} targets ran ${secs}s each without a crash"

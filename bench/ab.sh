#!/usr/bin/env bash
# Before/after A/B of two packtool builds on one tree, alternating the builds each round so
# machine noise hits both alike: init, backup, restore (verified with diff -r), timed with
# /usr/bin/time (elapsed seconds, max RSS). Prints CSV rows.
#   bench/ab.sh OLD_PACKTOOL NEW_PACKTOOL DATA_DIR [ROUNDS] > rows.csv
# e.g. DATA_DIR from `cargo run --release --example gen_history -- --out /tmp/abh --days 1 --scale 64`.
set -euo pipefail
old=$1 new=$2 data=$3 rounds=${4:-5}
work=$(mktemp -d /tmp/packvault-ab.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "round,tool,op,seconds,max_rss_kb"
for round in $(seq "$rounds"); do
  for tool in old new; do
    bin=$old; [ "$tool" = new ] && bin=$new
    w=$work/$tool; rm -rf "$w"; mkdir -p "$w"
    export PACKTOOL_REPO=$w/repo PACKTOOL_CACHE_DIR=$w/cache PACKTOOL_STATE_DIR=$w/state
    export PACKTOOL_PASSPHRASE=ab-benchmark-passphrase
    "$bin" init --kdf-memory 8 >/dev/null 2>&1
    sync
    /usr/bin/time -f "%e %M" -o "$w/t" "$bin" backup "$data" >/dev/null 2>&1
    echo "$round,$tool,backup,$(cut -d' ' -f1 "$w/t"),$(cut -d' ' -f2 "$w/t")"
    sync
    /usr/bin/time -f "%e %M" -o "$w/t" "$bin" restore latest --target "$w/restored" >/dev/null 2>&1
    echo "$round,$tool,restore,$(cut -d' ' -f1 "$w/t"),$(cut -d' ' -f2 "$w/t")"
    diff -rq "$data" "$w/restored" >/dev/null
  done
done

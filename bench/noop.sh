#!/usr/bin/env bash
# The nightly no-op, before/after: for trees of N small files (generated, 100 per folder,
# 200–4,000 bytes of random bytes each), two packtool builds alternating each round: a first
# backup (discarded), then an unchanged re-backup timed with /usr/bin/time. Prints CSV rows
# with µs per unchanged file.
#   bench/noop.sh OLD_PACKTOOL NEW_PACKTOOL [ROUNDS] [SIZES...] > rows.csv
# A real folder instead of generated trees: TREE=/usr/share bench/noop.sh OLD NEW 3
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
sizes=${*:-10000 40000 160000}
work=$(mktemp -d /tmp/packvault-noop.XXXXXX)
trap 'rm -rf "$work"' EXIT
gen() { # gen DIR N
  python3 - "$1" "$2" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(n)
for i in range(n):
    d = os.path.join(root, f"d{i // 10000:03}", f"e{(i // 100) % 100:02}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:07}.bin"), "wb") as f:
        f.write(rng.randbytes(rng.randint(200, 4000)))
PY
  # Times in the past and ctimes out of the files cache's racy second.
  sleep 1.2
}
echo "tree,files,round,tool,op,seconds,max_rss_kb,us_per_file"
if [ -n "${TREE:-}" ]; then trees=$TREE; else trees=$sizes; fi
for t in $trees; do
  if [ -n "${TREE:-}" ]; then data=$t; else data=$work/data-$t; gen "$data" "$t"; fi
  files=$(find "$data" -type f 2>/dev/null | wc -l)
  for round in $(seq "$rounds"); do
    for tool in old new; do
      bin=$old; [ "$tool" = new ] && bin=$new
      w=$work/$tool; rm -rf "$w"; mkdir -p "$w"
      export PACKTOOL_REPO=$w/repo PACKTOOL_CACHE_DIR=$w/cache PACKTOOL_STATE_DIR=$w/state
      export PACKTOOL_PASSPHRASE=noop-benchmark-passphrase
      "$bin" init --kdf-memory 8 >/dev/null 2>&1
      "$bin" backup "$data" >/dev/null 2>&1 || true
      sync
      /usr/bin/time -f "%e %M" -o "$w/t" "$bin" backup "$data" >/dev/null 2>&1 || true
      s=$(cut -d' ' -f1 "$w/t")
      echo "$(basename "$t"),$files,$round,$tool,noop,$s,$(cut -d' ' -f2 "$w/t"),$(python3 -c "print(round($s*1e6/$files,1))")"
    done
  done
  [ -n "${TREE:-}" ] || rm -rf "$data"
done

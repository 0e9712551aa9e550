#!/usr/bin/env bash
# Where does packvault's daily repository growth come from? The project's equivalent of
# ../shared/bench/breakdown.sh: backs up each component of a generated chat dataset
# (databases/, export/, media/) into its own repository, day1..dayN, the way a phone would
# (a live folder synced to each day's state, so unchanged files keep their mtime and the files
# cache applies), and prints the stored bytes each day adds per component (du delta of the
# repository), in breakdown.sh's TSV columns so the rows sit next to the peers'.
#
#   bench/growth.sh DATASET_DIR [OUT_TSV]
#   env: PACKTOOL=path/to/packtool (default: target/release/packtool, built here)
#        CONFIG=label for the rows (default packvault), COMPONENTS="databases export media",
#        WORK=scratch dir (default /tmp/packvault-growth.XXXXXX)
# e.g. bench/growth.sh /tmp/peerbench/data-1g bench/results/growth-$(date +%Y%m%d).tsv
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(realpath "${1:?usage: bench/growth.sh DATASET_DIR [OUT_TSV]}")
out=${2:-bench/results/growth-$(date +%Y%m%d).tsv}
config=${CONFIG:-packvault}
components=${COMPONENTS:-"databases export media"}
if [ -z "${PACKTOOL:-}" ]; then
  cargo build --release --quiet --bin packtool
  PACKTOOL=${CARGO_TARGET_DIR:-target}/release/packtool
fi
work=${WORK:-$(mktemp -d /tmp/packvault-growth.XXXXXX)}
trap 'rm -rf "$work"' EXIT
mapfile -t days < <(cd "$data" && ls -d day* | sort -V)
mkdir -p "$(dirname "$out")"
[ -s "$out" ] || printf 'config\tcomponent\tday\tinput_bytes\tadded_stored_bytes\trepo_bytes\twall_s\tcpu_s\n' >"$out"
tb() { find "$1" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f\n", s}'; }
export PACKTOOL_PASSPHRASE=growth-benchmark-passphrase
for comp in $components; do
  rm -rf "$work/repo" "$work/live" "$work/cache" "$work/state"
  mkdir -p "$work/live/$comp"
  export PACKTOOL_REPO=$work/repo PACKTOOL_CACHE_DIR=$work/cache PACKTOOL_STATE_DIR=$work/state
  "$PACKTOOL" init --kdf-memory 8 >/dev/null 2>&1
  for d in "${days[@]}"; do
    rsync -a --delete "$data/$d/$comp/" "$work/live/$comp/"
    sync
    before=$(du -sb "$work/repo" | cut -f1)
    /usr/bin/time -f '%e %U %S' -o "$work/t" "$PACKTOOL" backup "$work/live/$comp" >/dev/null 2>&1
    read -r w u s < <(tail -n1 "$work/t")
    after=$(du -sb "$work/repo" | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$comp" "$d" "$(tb "$work/live/$comp")" \
      $((after - before)) "$after" "$w" "$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u+s}')" | tee -a "$out"
  done
done

#!/usr/bin/env bash
# Real-tree benchmark (issue 16): back up, re-back up unchanged, and restore a system folder of
# this machine's own files (tens of thousands of small files nobody here generated), beside
# restic, rustic and `cp -a`, several rounds, tools alternating.
#
#   bench/realtree.sh [SRC] [OUT_TSV]
#
# SRC defaults to /usr/share (about 43,000 files, 3,900 symlinks, 3,200 folders, 566 MB here).
# OUT_TSV defaults to bench/results/realtree-<date>.tsv; a summary (median per tool and step,
# ratios against `cp -a` and the fastest peer) is printed and written beside it as .md.
#
# Environment: ROUNDS (default 3), TOOLS (default "packvault restic rustic cp"), WORK (scratch,
# default /tmp/realtree; wiped), PACKTOOL (default: release build in $CARGO_TARGET_DIR or
# target/, built when missing), VERIFY (default 1: `diff -r` of every restore in round 1).
#
# Method, the same for every tool:
#   * each round, the tools run in a rotated order (round r starts with tool r mod n), so no
#     tool always follows the same neighbour;
#   * per tool and round: fresh repository (init untimed), first backup, unchanged re-backup
#     (the nightly no-op: same path, nothing changed), restore into an empty folder;
#   * `sync` before each timed step; caches stay warm (the source is read by every tool);
#   * each step under /usr/bin/time: wall, user+sys CPU, peak RSS; repository size by `du -sb`;
#   * encryption on everywhere; packvault opens the repository with a device key (recovery-code
#     keyslot in a 0600 file) as an app would, so backups and restores do not pay the
#     passphrase KDF (restic and rustic derive their key with scrypt at each run).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
SRC=$(realpath "${1:-/usr/share}")
OUT=${2:-$root/bench/results/realtree-$(date +%Y%m%d-%H%M).tsv}
ROUNDS=${ROUNDS:-3}
TOOLS=(${TOOLS:-packvault restic rustic cp})
WORK=${WORK:-/tmp/realtree}
VERIFY=${VERIFY:-1}
PW=bench-password
export PATH="$PATH:/tmp/peerbench/cargo-root/bin:$HOME/.cargo/bin"
[ -x /usr/bin/time ] || { echo "realtree.sh: needs GNU time (/usr/bin/time)" >&2; exit 1; }

pt=${PACKTOOL:-${CARGO_TARGET_DIR:-$root/target}/release/packtool}
if [ -z "${PACKTOOL:-}" ]; then cargo build --release --quiet --bin packtool || exit 1; fi
[ -x "$pt" ] || { echo "realtree.sh: no packtool at $pt" >&2; exit 1; }

rm -rf "$WORK"; mkdir -p "$WORK/logs" "$(dirname "$OUT")"
files=$(find "$SRC" -xdev -type f | wc -l)
links=$(find "$SRC" -xdev -type l | wc -l)
dirs=$(find "$SRC" -xdev -type d | wc -l)
bytes=$(find "$SRC" -xdev -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s}')
small=$(find "$SRC" -xdev -type f -size -16k | wc -l)
tree="src=$SRC files=$files symlinks=$links folders=$dirs bytes=$bytes files_under_16k=$small"
echo "# $tree rounds=$ROUNDS cores=$(nproc) $(date -u +%FT%TZ)" | tee "${OUT%.tsv}.tree"
HDR=$'round\ttool\tversion\tstep\twall_s\tcpu_s\tpeak_rss_mb\trepo_bytes\tinput_bytes\tnote'
[ -s "$OUT" ] || echo "$HDR" > "$OUT"
echo "$HDR"

row() { # round tool version step wall cpu rss repo note
  local line
  line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s load=%s' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" \
    "$bytes" "$9" "$(cut -d' ' -f1 /proc/loadavg)")
  echo "$line"; echo "$line" >> "$OUT"
}

# measure LOG cmd... ; sets M_WALL M_CPU M_RSS M_RC
measure() {
  local log=$1; shift
  sync
  local tf; tf=$(mktemp)
  echo "+ $*" >> "$log"
  /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >> "$log" 2>&1
  M_RC=$?
  local w u s m
  read -r w u s m < <(tail -n 1 "$tf")
  rm -f "$tf"
  M_WALL=$w
  M_CPU=$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u+s}')
  M_RSS=$(awk -v m="$m" 'BEGIN{printf "%.1f", m/1024}')
}
repo_bytes() { if [ -e "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi; }

# Adapters: <t>_bin (empty when missing), <t>_version, <t>_init REPO, <t>_backup REPO,
# <t>_restore REPO DST, <t>_root DST (where the restored tree lands).
packvault_bin() { echo "$pt"; }
packvault_version() { echo "$("$pt" --version | awk '{print $2}')-$(git rev-parse --short HEAD)"; }
packvault_open() { echo "$pt -r $1 --recovery-code-file $1.key --cache-dir $1.cache --state-dir $1.state"; }
packvault_init() {
  local g="-r $1 --cache-dir $1.cache --state-dir $1.state"
  PACKTOOL_PASSPHRASE=$PW $pt $g init -q >> "$LOG" 2>&1 &&
    (umask 077 && PACKTOOL_PASSPHRASE=$PW $pt $g key add --recovery-code --label device --json |
      sed -n 's/.*"recovery_code": "\(.*\)".*/\1/p' > "$1.key")
}
packvault_backup() { measure "$LOG" $(packvault_open "$1") backup "$SRC" -q; }
packvault_restore() { measure "$LOG" $(packvault_open "$1") restore latest --target "$2" -q; }
packvault_root() { echo "$1"; }
packvault_size() { repo_bytes "$1"; }

restic_bin() { command -v restic; }
restic_version() { restic version | awk '{print $2}'; }
restic_env() { export RESTIC_REPOSITORY=$1 RESTIC_PASSWORD=$PW RESTIC_CACHE_DIR=$WORK/cache-restic; }
restic_init() { restic_env "$1"; restic init --repository-version 2 >> "$LOG" 2>&1; }
restic_backup() { restic_env "$1"; measure "$LOG" restic backup --host bench "$SRC"; }
restic_restore() { restic_env "$1"; measure "$LOG" restic restore latest --host bench --target "$2"; }
restic_root() { echo "$1$SRC"; }
restic_size() { repo_bytes "$1"; }

rustic_bin() { command -v rustic; }
rustic_version() { rustic --version | awk '{print $2}'; }
rustic_env() { export RUSTIC_REPOSITORY=$1 RUSTIC_PASSWORD=$PW RUSTIC_CACHE_DIR=$WORK/cache-rustic RUSTIC_NO_PROGRESS=true; }
rustic_init() { rustic_env "$1"; rustic init >> "$LOG" 2>&1; }
rustic_backup() { rustic_env "$1"; measure "$LOG" rustic backup --host bench "$SRC"; }
rustic_restore() { rustic_env "$1"; measure "$LOG" rustic restore "latest:$SRC" "$2"; }
rustic_root() { echo "$1"; }
rustic_size() { repo_bytes "$1"; }

# `cp -a`: the restore's write ceiling (no backup steps).
cp_bin() { command -v cp; }
cp_version() { cp --version | head -1 | awk '{print $NF}'; }
cp_restore() { rmdir "$2"; measure "$LOG" cp -a "$SRC" "$2"; }
cp_root() { echo "$1"; }

run_tool() { # round tool
  local r=$1 t=$2 LOG=$WORK/logs/$2.log
  if [ -z "$("${t}_bin" 2>/dev/null)" ]; then
    row "$r" "$t" - all - - - 0 "not installed (skipped)"
    return
  fi
  local v repo=$WORK/repo-$t dst=$WORK/restore-$t
  v=$("${t}_version" 2>/dev/null | tr '\t' ' ')
  rm -rf "$repo" "$repo".* "$dst" "$WORK/cache-$t"; mkdir -p "$dst"
  if [ "$t" != cp ]; then
    "${t}_init" "$repo" || { row "$r" "$t" "$v" init - - - 0 "init failed (see $LOG)"; return; }
    "${t}_backup" "$repo"
    row "$r" "$t" "$v" backup "$M_WALL" "$M_CPU" "$M_RSS" "$("${t}_size" "$repo")" "rc=$M_RC"
    "${t}_backup" "$repo"
    row "$r" "$t" "$v" rebackup "$M_WALL" "$M_CPU" "$M_RSS" "$("${t}_size" "$repo")" "rc=$M_RC unchanged"
  fi
  "${t}_restore" "$repo" "$dst"
  local note="rc=$M_RC"
  if [ "$VERIFY" = 1 ] && [ "$r" = 1 ]; then
    if diff -rq --no-dereference "$SRC" "$("${t}_root" "$dst")" > "$WORK/logs/$t.diff" 2>&1; then
      note="$note verify=OK"
    else
      note="$note verify=FAIL($(wc -l < "$WORK/logs/$t.diff") lines, see $WORK/logs/$t.diff)"
    fi
  fi
  row "$r" "$t" "$v" restore "$M_WALL" "$M_CPU" "$M_RSS" "$([ "$t" = cp ] && echo 0 || "${t}_size" "$repo")" "$note"
  rm -rf "$repo" "$repo".* "$dst"
}

n=${#TOOLS[@]}
for r in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    run_tool "$r" "${TOOLS[$(((r - 1 + k) % n))]}"
  done
done
rm -rf "$WORK/cache-restic" "$WORK/cache-rustic"

python3 - "$OUT" "$(cat "${OUT%.tsv}.tree")" <<'PY' | tee "${OUT%.tsv}.md"
import csv, statistics, sys
# Rows of failed steps (rc != 0: a full disk, say) are left out of the medians.
rows = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t")
        if r["wall_s"] not in ("-", "") and r["note"].startswith("rc=0")]
med = {}
for step in ("backup", "rebackup", "restore"):
    for tool in sorted({r["tool"] for r in rows}):
        xs = [float(r["wall_s"]) for r in rows if r["tool"] == tool and r["step"] == step]
        if xs:
            cpu = statistics.median(float(r["cpu_s"]) for r in rows if r["tool"] == tool and r["step"] == step)
            rss = max(float(r["peak_rss_mb"]) for r in rows if r["tool"] == tool and r["step"] == step)
            repo = max(int(r["repo_bytes"]) for r in rows if r["tool"] == tool and r["step"] == step)
            med[tool, step] = (statistics.median(xs), min(xs), max(xs), len(xs), cpu, rss, repo)
print(f"Tree: {sys.argv[2]}\n")
print("| step | tool | median wall s (min–max, n) | CPU s | peak RSS MB | repo MB | × cp -a | × fastest peer |")
print("|---|---|---|---|---|---|---|---|")
peers = ("restic", "rustic")
for step in ("backup", "rebackup", "restore"):
    peer = [med[p, step][0] for p in peers if (p, step) in med]
    fastest = min(peer) if peer else None
    cp = med.get(("cp", "restore"), (None,))[0] if step == "restore" else None
    for (tool, s), (m, lo, hi, k, cpu, rss, repo) in sorted(med.items()):
        if s != step:
            continue
        vs_cp = f"{m / cp:.2f}" if cp else ""
        vs_peer = f"{m / fastest:.2f}" if fastest and tool not in ("cp",) else ""
        print(f"| {step} | {tool} | {m:.2f} ({lo:.2f}–{hi:.2f}, {k}) | {cpu:.2f} | {rss:.0f} | {repo / 1e6:.1f} | {vs_cp} | {vs_peer} |")
PY
echo "results: $OUT"

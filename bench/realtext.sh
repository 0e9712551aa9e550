#!/usr/bin/env bash
# Repository size on real chat text nobody here generated: the public IRC logs of the Fluid
# project (github.com/fluid-project/fluid-irc-logs, 2008-2020, about 54 MB of text), as 8
# daily snapshots of append-only per-channel histories (bench/realtext.py), backed up side by
# side with restic (and the other peers that are installed) through bench/compare.sh.
#
#   bench/realtext.sh [LOGS_CHECKOUT] [OUT_TSV]
#
# LOGS_CHECKOUT defaults to /tmp/peerbench/fluid-irc-logs, cloned from GitHub when missing.
# TOOLS defaults to "restic rustic borg project".
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-/tmp/peerbench/fluid-irc-logs}
out=${2:-$PWD/bench/results/realtext-$(date +%Y%m%d-%H%M).tsv}
if [ ! -d "$src" ]; then
  git clone -q https://github.com/fluid-project/fluid-irc-logs "$src"
fi
data=/tmp/peerbench/data-realtext
python3 bench/realtext.py "$src" "$data"
TOOLS=${TOOLS:-restic rustic borg project} bash bench/compare.sh "$data" "$out"

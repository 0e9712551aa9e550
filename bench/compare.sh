#!/usr/bin/env bash
# Side-by-side comparison with restic, rustic, borg and bupstash on the same day-by-day chat
# history, through ../shared/bench/peers.sh (time, CPU, peak memory, repository size per step).
#
#   bench/compare.sh [DATASET_DIR] [OUT_TSV]
#
# DATASET_DIR defaults to /tmp/peerbench/data-1g (1 GiB on day 1, 5 days), generated with
# ../shared/bench/gen_history.py when missing. Peers are installed by
# ../shared/bench/install-peers.sh where missing (apt, and cargo for rustic and bupstash).
# Extra environment: TOOLS (default "ref restic rustic borg bupstash project"), DROP_CACHES=1
# for cold-cache numbers, DAY1_MIB and DAYS for the generated dataset, INSTALL_PEERS=0 to use
# only the peers already installed.
#
# packvault is set up as an app would run it: `init` with the passphrase (Argon2id, 256 MiB,
# 3 passes), then a device key (a recovery-code slot, kept in a 0600 file the way a phone
# keeps it in its keystore) opens the repository for the daily backups and the restore, so
# they do not pay the passphrase KDF. The index and files caches live beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
shared=
for d in ../shared /work/shared; do [ -f "$d/bench/peers.sh" ] && { shared=$(cd "$d/bench" && pwd); break; }; done
[ -n "$shared" ] || { echo "compare.sh: ../shared/bench/peers.sh not found" >&2; exit 1; }
data=${1:-/tmp/peerbench/data-1g}
out=${2:-$root/bench/results/compare-$(date +%Y%m%d-%H%M).tsv}
mkdir -p "$(dirname "$out")"
if [ ! -d "$data/day1" ]; then
  python3 "$shared/gen_history.py" --out "$data" --day1-mib "${DAY1_MIB:-1024}" --days "${DAYS:-5}" --force
fi
[ "${INSTALL_PEERS:-1}" = 0 ] || bash "$shared/install-peers.sh"
cargo build --release --quiet --bin packtool
pt=${CARGO_TARGET_DIR:-$root/target}/release/packtool

# {repo} is the repository folder the harness gives; the key file and caches sit beside it.
open="$pt -r {repo} --recovery-code-file {repo}.key --cache-dir {repo}.cache --state-dir {repo}.state"
export PROJECT_NAME=packvault
export PROJECT_VERSION="$($pt --version | awk '{print $2}')-$(git rev-parse --short HEAD)"
export PROJECT_CMD_INIT="rm -rf {repo}.key {repo}.cache {repo}.state && export PACKTOOL_PASSPHRASE=\"\$PROJECT_PASSWORD\" && $pt -r {repo} --cache-dir {repo}.cache --state-dir {repo}.state init -q && (umask 077 && $pt -r {repo} --cache-dir {repo}.cache --state-dir {repo}.state key add --recovery-code --label device --json | sed -n 's/.*\"recovery_code\": \"\\(.*\\)\".*/\\1/p' > {repo}.key)"
export PROJECT_CMD_BACKUP="$open backup {src} --tag {snap} -q"
export PROJECT_CMD_RESTORE="$open restore latest --target {dst} -q"
export TOOLS=${TOOLS:-ref restic rustic borg bupstash project}
"$shared/peers.sh" "$data" "$out"
echo "results: $out"
python3 "$shared/summarize.py" "$out" --markdown

#!/usr/bin/env bash
# End-to-end demo: generate two days of a sample chat history, back both days up into a new
# local repository, restore the latest snapshot, compare it with the source and verify every
# byte of the repository. Usage: bash examples/demo.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/packvault-demo.XXXXXX)}
mkdir -p "$work"
echo "== building packtool (release)"
cargo build --release --quiet --bin packtool --example gen_history
pt=$PWD/target/release/packtool
export PACKTOOL_REPO=$work/repo PACKTOOL_CACHE_DIR=$work/cache PACKTOOL_STATE_DIR=$work/state
export PACKTOOL_PASSPHRASE=demo-passphrase
rm -rf "$work/history" "$work/repo" "$work/cache" "$work/state" "$work/restored"

echo "== generating a sample chat history in $work/history"
target/release/examples/gen_history --out "$work/history" --days 2 --scale 2

echo "== packtool init (Argon2id at 64 MiB to keep the demo quick; the default is 256 MiB)"
"$pt" init --kdf-memory 64
echo "== packtool key add --device (this device opens the repository without the passphrase from now on)"
"$pt" key add --device
for day in day1 day2; do
  echo "== packtool backup $day (no passphrase given: the device key opens)"
  env -u PACKTOOL_PASSPHRASE "$pt" backup "$work/history/$day" --tag "$day"
done
echo "== packtool trust (the fingerprint a new device can check with --expect-fingerprint)"
"$pt" trust
echo "== packtool snapshots"
"$pt" snapshots
echo "== packtool restore latest"
"$pt" restore latest --target "$work/restored"
diff -r "$work/history/day2" "$work/restored"
echo "restored tree is identical to day 2"
echo "== packtool check --read-data"
"$pt" check --read-data
echo "== sizes: input of both days vs repository"
du -sh "$work/history/day1" "$work/history/day2" "$work/repo"
echo "demo finished in $work"

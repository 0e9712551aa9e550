#!/usr/bin/env bash
# The new-phone story, through packtool only: init with a passphrase, add a recovery code,
# back up; on a new device (empty cache and state) restore with the recovery code alone;
# remove the passphrase slot; the old passphrase is refused. Run by tests/shell.rs with
# PACKTOOL set to the binary.
set -euo pipefail
pt=${PACKTOOL:?set PACKTOOL to the packtool binary}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
unset PACKTOOL_PASSPHRASE PACKTOOL_RECOVERY_CODE PACKTOOL_PIN XDG_CACHE_HOME XDG_STATE_HOME
export PACKTOOL_REPO=$w/repo
fail() { echo "new_device.sh: $*" >&2; exit 1; }

mkdir -p "$w/src/chats/ana" "$w/src/media"
for i in $(seq 1 2000); do echo "{\"id\":$i,\"from\":\"ana\",\"text\":\"message number $i\"}"; done > "$w/src/chats/ana/messages.json"
head -c 300000 /dev/urandom > "$w/src/media/IMG-0001.jpg"

# Old phone.
phone1() { PACKTOOL_CACHE_DIR=$w/phone1/cache PACKTOOL_STATE_DIR=$w/phone1/state PACKTOOL_PASSPHRASE='first phone passphrase' "$pt" "$@"; }
phone1 init --kdf-memory 8 --kdf-iterations 1 >/dev/null
code=$(phone1 key add --recovery-code --label paper --json | sed -n 's/.*"recovery_code": "\(.*\)".*/\1/p')
[ ${#code} -eq 69 ] || fail "expected a 69-character recovery code, got '$code'"
phone1 backup "$w/src" --tag before-loss >/dev/null

# New phone: nothing local, only the recovery code written on paper.
phone2() { PACKTOOL_CACHE_DIR=$w/phone2/cache PACKTOOL_STATE_DIR=$w/phone2/state PACKTOOL_RECOVERY_CODE="$code" "$pt" "$@"; }
phone2 restore latest --target "$w/restored" >/dev/null
diff -r "$w/src" "$w/restored" || fail "restored tree differs"
phone2 key list | grep -q '^\* .*recovery-code' || fail "key list does not mark the recovery-code slot in use"

# Typing the code with a typo is reported as a typo.
typo=$(echo "$code" | sed 's/^\(.\)\(.\)/\2\1/')
if [ "${code:0:1}" != "${code:1:1}" ]; then
  out=$(PACKTOOL_RECOVERY_CODE="$typo" PACKTOOL_CACHE_DIR=$w/phone2/cache "$pt" snapshots 2>&1) && fail "a swapped pair was accepted"
  echo "$out" | grep -q "checksum mismatch" || fail "typo not reported as a checksum mismatch: $out"
fi

# The new phone gets its own passphrase and drops the old phone's.
PACKTOOL_NEW_PASSPHRASE='second phone passphrase' phone2 key add --passphrase --label phone2 --kdf-memory 8 --kdf-iterations 1 >/dev/null
old_slot=$(phone2 key list | awk '/ passphrase / && !/phone2/ { print ($1 == "*") ? $2 : $1 }')
[ -n "$old_slot" ] || fail "old passphrase slot not listed"
phone2 key remove "$old_slot" >/dev/null
if out=$(phone1 snapshots 2>&1); then fail "the removed passphrase still opens the repository"; fi
echo "$out" | grep -q "wrong passphrase" || fail "unexpected error for the old passphrase: $out"
PACKTOOL_PASSPHRASE='second phone passphrase' PACKTOOL_CACHE_DIR=$w/phone2/cache "$pt" snapshots | grep -q before-loss \
  || fail "the new passphrase does not open the repository"
echo "new_device.sh: ok"

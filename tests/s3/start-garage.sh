#!/usr/bin/env bash
# Starts a single-node Garage (S3-compatible object store) for packvault's S3 tests, in DIR
# (default: a new temporary folder), and prints `export` lines for `eval`:
#
#   eval "$(tests/s3/start-garage.sh /tmp/garage)"
#   cargo test --release --test s3
#   kill "$(cat "$GARAGE_PIDFILE")"
#
# One node, SQLite metadata, replication factor 1, every API on 127.0.0.1 at free ports, a
# fresh RPC secret; a layout is applied, a bucket made and a key allowed on it. The garage
# binary: $GARAGE_BIN, else `garage` on PATH, else the CI cache
# (~/.cache/packvault-ci/garage-2.5.0/bin/garage, which .ci/run installs).
# Restarting the same node later: "$GARAGE_BIN" -c "$GARAGE_CONFIG" server (same data).
set -euo pipefail

dir=${1:-$(mktemp -d /tmp/packvault-garage.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -e "$dir/garage.toml" ]; then
  echo "start-garage.sh: $dir already holds a garage.toml; give an empty folder" >&2
  exit 2
fi

bin=${GARAGE_BIN:-}
if [ -z "$bin" ]; then
  if command -v garage >/dev/null; then bin=$(command -v garage)
  else bin=$HOME/.cache/packvault-ci/garage-2.5.0/bin/garage; fi
fi
[ -x "$bin" ] || { echo "start-garage.sh: no garage binary at $bin (cargo install garage --version 2.5.0 --locked)" >&2; exit 2; }

# A TCP port on 127.0.0.1 that nothing listens on.
taken=" "
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 40000 ))
    case "$taken" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then taken="$taken$p "; echo "$p"; return; fi
  done
  echo "start-garage.sh: no free port found" >&2; exit 1
}
hex() { od -An -tx1 -N "$1" /dev/urandom | tr -d ' \n'; }

s3_port=$(free_port); rpc_port=$(free_port); admin_port=$(free_port)
metrics_token=$(hex 16)
umask 077
cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$(hex 16)"
metrics_token = "$metrics_token"
TOML

g() { "$bin" -c "$dir/garage.toml" "$@"; }
RUST_LOG=${RUST_LOG:-garage=warn} "$bin" -c "$dir/garage.toml" server </dev/null >>"$dir/garage.log" 2>&1 &
pid=$!
echo "$pid" > "$dir/garage.pid"
fail() { echo "start-garage.sh: $*; log in $dir/garage.log" >&2; kill "$pid" 2>/dev/null || true; exit 1; }

for i in $(seq 1 100); do
  g status >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || fail "garage exited at start"
  [ "$i" = 100 ] && fail "garage did not answer within 20 s"
  sleep 0.2
done
node=$(g node id -q 2>/dev/null | cut -d@ -f1)
[ -n "$node" ] || fail "no node id"
g layout assign -z dc1 -c 1G "$node" >/dev/null || fail "layout assign failed"
g layout apply --version 1 >/dev/null || fail "layout apply failed"
bucket=packvault-test
g bucket create "$bucket" >/dev/null || fail "bucket create failed"
keyinfo=$(g key create packvault-test-key) || fail "key create failed"
key_id=$(printf '%s\n' "$keyinfo" | sed -n 's/^ *Key ID: *//p' | head -n1)
secret=$(printf '%s\n' "$keyinfo" | sed -n 's/^ *Secret key: *//p' | head -n1)
[ -n "$key_id" ] && [ -n "$secret" ] || fail "cannot read the new key"
g bucket allow --read --write --owner "$bucket" --key packvault-test-key >/dev/null || fail "bucket allow failed"

# The S3 API answers (any HTTP status) once the layout is live.
for i in $(seq 1 100); do
  if exec 3<>"/dev/tcp/127.0.0.1/$s3_port" 2>/dev/null; then
    printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    line=$(head -n1 <&3 || true)
    exec 3<&- 3>&-
    case "$line" in HTTP/*) break ;; esac
  fi
  [ "$i" = 100 ] && fail "the S3 API did not answer within 20 s"
  sleep 0.2
done

cat <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port
export AWS_REGION=garage
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$secret
export S3_BUCKET=$bucket
export GARAGE_PID=$pid
export GARAGE_PIDFILE=$dir/garage.pid
export GARAGE_BIN=$bin
export GARAGE_CONFIG=$dir/garage.toml
export GARAGE_DIR=$dir
export GARAGE_METRICS=http://127.0.0.1:$admin_port/metrics
export GARAGE_METRICS_TOKEN=$metrics_token
ENV

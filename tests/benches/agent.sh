#!/usr/bin/env bash
# Agent figures for the README (a benchmark, not a test: it asserts nothing
# about speed, it prints what it measured; it does fail when the hash cache
# is not warm after an update, since the no-op figure would then be a lie).
#
#   bash tests/benches/agent.sh [SIZE_MIB] [ROUNDS]      (defaults 256, 5)
#
# 1. the static musl binary (the `agent` profile build-static.sh ships):
#    stripped size, static or not, and its SHA-256 speed (a cold hash of a
#    SIZE_MIB file by `binproxy status --offline`, beside coreutils'
#    sha256sum, interleaved);
# 2. updating a SIZE_MIB binary from manager-lite on loopback, against
#    `curl -o F && sync -f F` of the same artifact from the same manager:
#    ROUNDS interleaved rounds (the order alternates each round), manager
#    pinned to one core and the client (curl or binproxy) to another with
#    taskset; min/median/max of each and the ratio of the medians; the
#    agent's peak RSS (/usr/bin/time);
# 3. the no-op cycle right after each update (the hash cache must be warm:
#    state.json holds the new hash for the live inode), and 20 more no-op
#    cycles: requests per
#    cycle, opens of the managed binary (needs strace), wall time.
# Everything runs on 127.0.0.1 in a temp dir, which is removed at the end.
# SERVER_CPU and CLIENT_CPU (default 0 and 1) choose the cores; AGENT, the
# agent binary to measure (default: the static build made here).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${1:-256}
ROUNDS=${2:-5}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=38899
TOKEN=bench-token-0123456789abcdef
WORK=$(mktemp -d)
MPID=
trap '[ -n "$MPID" ] && kill "$MPID" 2>/dev/null; rm -rf "$WORK"' EXIT

rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true
cargo build --profile agent --quiet --target x86_64-unknown-linux-musl -p binproxy
cargo build --release --quiet -p manager-lite
# AGENT=/path/to/binproxy compares another build (e.g. an older commit's).
AGENT=${AGENT:-target/x86_64-unknown-linux-musl/agent/binproxy}
MANAGER=target/release/manager-lite
# This shell and what it starts (curl, binproxy) run on CLIENT_CPU; the
# manager is started on SERVER_CPU. No wrapper process sits in a timing.
taskset -cp "$CLIENT_CPU" $$ >/dev/null

echo "== static binary"
echo "binproxy: $(stat -c %s "$AGENT") bytes; $(file -b "$AGENT" 2>/dev/null | cut -d, -f1-5 || echo 'file(1) missing')"

MANAGER_ADMIN_TOKEN=$TOKEN RUST_LOG=debug taskset -c "$SERVER_CPU" "$MANAGER" serve --listen 127.0.0.1:$PORT --data "$WORK/m" 2>"$WORK/manager.log" &
MPID=$!
for _ in $(seq 50); do grep -q "listening on" "$WORK/manager.log" && break; sleep 0.1; done
export MANAGER_URL=http://127.0.0.1:$PORT MANAGER_ADMIN_TOKEN=$TOKEN

mkdir -p "$WORK/bin" "$WORK/state"
cat >"$WORK/agent.json" <<EOF
{"manager_url": "http://127.0.0.1:$PORT", "node_id": "bench-node", "state_dir": "$WORK/state",
 "splay": "0s", "bins": [{"name": "big", "path": "$WORK/bin/big"}]}
EOF
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/artifact"
SHA=$(sha256sum "$WORK/artifact" | cut -c1-64)
"$MANAGER" publish big 1 "$WORK/artifact" --release >/dev/null

export LC_ALL=C  # a dot in $EPOCHREALTIME
ms() { echo "($2 - $1) * 1000" | bc -l; }
# min / median / max of the numbers on stdin (milliseconds)
stats() { sort -n | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2;
  printf "min %.0f / median %.0f / max %.0f ms", v[1], m, v[NR]}'; }
median() { sort -n | awk '{v[NR]=$1} END {print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }

run_curl() {
  rm -f "$WORK/curl.out"; sync
  local t0 t1
  t0=$EPOCHREALTIME
  sh -c 'curl -s -o "$1" "$2" && sync -f "$1"' - "$WORK/curl.out" "$MANAGER_URL/api/v1/download/$SHA"
  t1=$EPOCHREALTIME
  ms "$t0" "$t1" >>"$WORK/curl.ms"
}
run_agent() {
  rm -rf "$WORK/bin/big" "$WORK/state"/*; sync
  local t0 t1
  t0=$EPOCHREALTIME
  /usr/bin/time -f "%M" -o "$WORK/rss.out" "$AGENT" run --config "$WORK/agent.json" --now 2>/dev/null
  t1=$EPOCHREALTIME
  ms "$t0" "$t1" >>"$WORK/agent.ms"
  cat "$WORK/rss.out" >>"$WORK/rss.kib"
  # The cycle right after the update is timed; first, the hash cache must
  # be warm: state.json holds the new hash for the live file's inode.
  if ! grep -q "\"ino\": $(stat -c %i "$WORK/bin/big")," "$WORK/state/state.json" ||
     ! grep -q "\"sha256\": \"$SHA\"" "$WORK/state/state.json"; then
    echo "the hash cache is cold after the update: the next cycle would re-hash the live file" >&2
    cat "$WORK/state/state.json" >&2
    exit 1
  fi
  t0=$EPOCHREALTIME
  "$AGENT" run --config "$WORK/agent.json" --now 2>/dev/null
  t1=$EPOCHREALTIME
  ms "$t0" "$t1" >>"$WORK/first-noop.ms"
}

echo "== SHA-256 of a $SIZE_MIB MiB file, cold ($ROUNDS interleaved rounds, cpu $CLIENT_CPU)"
mkdir -p "$WORK/hash/state"
cp "$WORK/artifact" "$WORK/hash/big"
cat >"$WORK/hash/agent.json" <<EOF
{"manager_url": "http://127.0.0.1:9", "node_id": "hash-bench", "state_dir": "$WORK/hash/state",
 "bins": [{"name": "big", "path": "$WORK/hash/big"}]}
EOF
: >"$WORK/hash-agent.ms"; : >"$WORK/hash-coreutils.ms"
for _ in $(seq "$ROUNDS"); do
  rm -rf "$WORK/hash/state"/*
  t0=$EPOCHREALTIME; "$AGENT" status --offline --config "$WORK/hash/agent.json" >"$WORK/hash/out"; t1=$EPOCHREALTIME
  ms "$t0" "$t1" >>"$WORK/hash-agent.ms"
  t0=$EPOCHREALTIME; sha256sum "$WORK/hash/big" >/dev/null; t1=$EPOCHREALTIME
  ms "$t0" "$t1" >>"$WORK/hash-coreutils.ms"
done
grep -q "${SHA:0:12}" "$WORK/hash/out" || { echo "status --offline did not hash the file" >&2; exit 1; }
echo "binproxy (status --offline): $(stats <"$WORK/hash-agent.ms")"
echo "sha256sum:                   $(stats <"$WORK/hash-coreutils.ms")"
rm -rf "$WORK/hash"

echo "== updating a $SIZE_MIB MiB binary ($ROUNDS interleaved rounds; manager on cpu $SERVER_CPU, client on cpu $CLIENT_CPU)"
: >"$WORK/curl.ms"; : >"$WORK/agent.ms"; : >"$WORK/rss.kib"; : >"$WORK/first-noop.ms"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then run_curl; run_agent; else run_agent; run_curl; fi
  printf 'round %s: curl -o + sync -f %.0f ms | binproxy run %.0f ms\n' "$round" \
    "$(tail -1 "$WORK/curl.ms")" "$(tail -1 "$WORK/agent.ms")"
done
[ "$(sha256sum "$WORK/bin/big" | cut -c1-64)" = "$SHA" ] || { echo "installed file does not match"; exit 1; }
echo "curl -o F && sync -f F:  $(stats <"$WORK/curl.ms")"
echo "binproxy run:            $(stats <"$WORK/agent.ms") (download, verify, fsync, keep, swap, report)"
printf 'ratio of the medians:    %.2f\n' "$(echo "$(median <"$WORK/agent.ms") / $(median <"$WORK/curl.ms")" | bc -l)"
echo "binproxy peak RSS:       $(sort -n "$WORK/rss.kib" | head -1)-$(sort -n "$WORK/rss.kib" | tail -1) KiB"
echo "no-op cycle right after each update (hash cache warm): $(stats <"$WORK/first-noop.ms")"

echo "== a cycle with nothing to do (20 runs)"
before=$(grep -c "manager_lite::api::routes" "$WORK/manager.log" || true)
: >"$WORK/noop.ms"
for _ in $(seq 20); do
  t0=$EPOCHREALTIME; "$AGENT" run --config "$WORK/agent.json" --now 2>/dev/null; t1=$EPOCHREALTIME
  ms "$t0" "$t1" >>"$WORK/noop.ms"
done
after=$(grep -c "manager_lite::api::routes" "$WORK/manager.log" || true)
echo "requests per no-op cycle: $(( (after - before) / 20 )); wall time per cycle: $(stats <"$WORK/noop.ms")"
if command -v strace >/dev/null; then
  opens=$(strace -f -e trace=open,openat "$AGENT" run --config "$WORK/agent.json" --now 2>&1 | grep -c "$WORK/bin/big\"" || true)
  echo "opens of the managed binary in a no-op cycle: $opens"
else
  echo "(install strace to count opens of the managed binary)"
fi

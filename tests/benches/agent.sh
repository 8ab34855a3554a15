#!/usr/bin/env bash
# Agent figures for the README (a benchmark, not a test: it asserts nothing
# about speed, it prints what it measured).
#
#   bash tests/benches/agent.sh [SIZE_MIB]      (default 256)
#
# 1. the static musl binary: stripped size, static or not;
# 2. a cycle with nothing to do: requests it sends, managed files it opens
#    (needs strace), wall time;
# 3. updating a SIZE_MIB binary from manager-lite on loopback, against
#    `curl -o` + fsync of the same file; the agent's peak RSS (/usr/bin/time).
# Everything runs on 127.0.0.1 in a temp dir, which is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${1:-256}
PORT=38899
TOKEN=bench-token-0123456789abcdef
WORK=$(mktemp -d)
trap 'kill "$MPID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true
cargo build --release --quiet --target x86_64-unknown-linux-musl -p binproxy
cargo build --release --quiet -p manager-lite
AGENT=target/x86_64-unknown-linux-musl/release/binproxy
MANAGER=target/release/manager-lite

echo "== static binary"
echo "binproxy: $(stat -c %s "$AGENT") bytes; $(file -b "$AGENT" 2>/dev/null | cut -d, -f1-5 || echo 'file(1) missing')"

MANAGER_ADMIN_TOKEN=$TOKEN RUST_LOG=debug "$MANAGER" serve --listen 127.0.0.1:$PORT --data "$WORK/m" 2>"$WORK/manager.log" &
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

now() { date +%s.%N; }
echo "== updating a $SIZE_MIB MiB binary (3 rounds)"
for round in 1 2 3; do
  rm -f "$WORK/curl.out"; sync
  t0=$(now); curl -s -o "$WORK/curl.out" "$MANAGER_URL/api/v1/download/$SHA"; sync -f "$WORK/curl.out"; t1=$(now)
  rm -rf "$WORK/bin/big" "$WORK/state"/*; sync
  /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$AGENT" run --config "$WORK/agent.json" --now 2>/dev/null
  read -r secs rss <"$WORK/time.out"
  printf 'round %s: curl -o + fsync %.2f s | binproxy run (download, verify, fsync, swap, report) %.2f s, peak RSS %s KiB\n' \
    "$round" "$(echo "$t1 - $t0" | bc)" "$secs" "$rss"
done
[ "$(sha256sum "$WORK/bin/big" | cut -c1-64)" = "$SHA" ] || { echo "installed file does not match"; exit 1; }

echo "== a cycle with nothing to do (20 runs)"
before=$(grep -c "manager_lite::routes" "$WORK/manager.log" || true)
t0=$(now)
for _ in $(seq 20); do "$AGENT" run --config "$WORK/agent.json" --now 2>/dev/null; done
t1=$(now)
after=$(grep -c "manager_lite::routes" "$WORK/manager.log" || true)
printf 'requests per no-op cycle: %s; wall time per cycle: %.1f ms\n' \
  "$(( (after - before) / 20 ))" "$(echo "($t1 - $t0) * 1000 / 20" | bc -l)"
if command -v strace >/dev/null; then
  opens=$(strace -f -e trace=open,openat "$AGENT" run --config "$WORK/agent.json" --now 2>&1 | grep -c "$WORK/bin/big\"" || true)
  echo "opens of the managed binary in a no-op cycle: $opens"
else
  echo "(install strace to count opens of the managed binary)"
fi

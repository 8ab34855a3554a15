#!/usr/bin/env bash
# manager-lite's HTTP server against nginx serving the same bytes (a
# benchmark, not a test: it asserts nothing about speed, it prints what it
# measured).
#
#   bash tests/benches/manager.sh [ROUNDS] [SECONDS]     (defaults 3 and 10)
#
# 1. manifest polls: `GET /api/v1/bins/{bin}?node_id=` with 1000 registered
#    nodes, against nginx serving the same body as a static file;
#    wrk -t1 -c64, req/s and p99, ROUNDS interleaved rounds;
# 2. artifact serving: a 64 MiB artifact, 50 concurrent downloads (wrk -t1
#    -c50): GB/s and the server's CPU seconds per GB (/proc/PID/stat);
# 3. idle connections: 10,000 idle TCP connections (nothing sent) from
#    127.0.0.2-41, at most 250 per address (the manager caps one client IP
#    at 256); the server's RSS before and after, and /health p99 under
#    wrk -t1 -c16 while they are held. Both servers get a header timeout
#    longer than the hold, so that these stay open while wrk measures.
# The servers are pinned to CPU 0 (both run, only the one under load is
# busy), wrk and the idle-connection holder to CPU 1. nginx: one worker,
# sendfile, no access log, its own prefix and config in the temp dir.
# GB = 10^9 bytes (wrk's KB/MB/GB are binary units; they are converted).
# Everything runs on 127.0.0.0/8 in a temp dir, which is removed at the end
# with every process the script started.
set -euo pipefail
CMDLINE="bash $0${*:+ $*}"
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-10} # not SECONDS: bash's own SECONDS counts up by itself
case "$ROUNDS$SECS" in *[!0-9]*) echo "usage: bash tests/benches/manager.sh [ROUNDS] [SECONDS] (whole numbers)" >&2; exit 2 ;; esac
if [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 50 ] || [ "$SECS" -lt 1 ] || [ "$SECS" -gt 300 ]; then
  echo "ROUNDS must be 1-50 and SECONDS 1-300" >&2
  exit 2
fi
MPORT=38901 # manager-lite
NPORT=38902 # nginx
TOKEN=bench-token-0123456789abcdef
NODES=1000
ARTIFACT_MIB=64
IDLE=10000
IDLE_ADDRS=40 # 127.0.0.2 ... 127.0.0.41: 250 each, under the manager's 256 per IP
MAXCONN=16384
WORK=$(mktemp -d)
PIDS=()

alive() { # running and not a zombie
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [ "${s%% *}" != Z ]
}
cleanup() {
  local pid any
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    any=0
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do alive "$pid" && any=1; done
    [ "$any" = 0 ] && break
    sleep 0.1
  done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
  echo "manager.sh: $*" >&2
  local f
  for f in "$WORK/manager.log" "$WORK/nginx/error.log"; do
    [ -s "$f" ] && { echo "--- last lines of ${f#"$WORK"/}:" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}

# ---------------------------------------------------------------- tools
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  [ "$(id -u)" = 0 ] || die "nginx and wrk are needed: apt-get install nginx wrk (as root)"
  echo "== installing nginx and wrk"
  # Debian starts a package's service unless policy-rc.d forbids it: no
  # system nginx on port 80 for this.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk; } >"$WORK/apt.log" 2>&1; then
    tail -n 20 "$WORK/apt.log" >&2
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
    die "apt-get install nginx wrk failed"
  fi
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
for tool in nginx wrk python3 curl taskset getconf pgrep sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH"
done

cargo build --release --quiet -p manager-lite
MANAGER=${CARGO_TARGET_DIR:-target}/release/manager-lite
[ -x "$MANAGER" ] || die "$MANAGER was not built"

NPROC=$(nproc)
CPU_SERVER=0
CPU_CLIENT=1
if [ "$NPROC" -lt 2 ]; then
  CPU_CLIENT=0
  echo "note: one CPU only: wrk shares it with the server"
fi
CLK_TCK=$(getconf CLK_TCK)
# 10,000 idle sockets on the server, as many again in the holder.
ulimit -n 30000 2>/dev/null || ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((IDLE + 1000)) ]; then
  echo "note: open files limit $NOFILE, below $((IDLE + 1000)): the idle-connection figures will hit it"
fi

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
rss_kib() { # VmRSS of the given pids, summed
  local total=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
cpu_ticks() { # utime + stime of the given pids, summed (every thread)
  local total=0 pid s
  local -a f
  for pid in "$@"; do
    s=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    s=${s##*) }
    read -r -a f <<<"$s"
    total=$((total + f[11] + f[12])) # fields 14 and 15 of stat(5)
  done
  echo "$total"
}
http_code() { curl -s -o /dev/null --max-time "${2:-10}" -w '%{http_code}' "$1" || true; }
wait_200() { # URL WHAT: bounded wait for a 200
  local code=000
  for _ in $(seq 80); do
    code=$(http_code "$1" 5)
    [ "$code" = 200 ] && return 0
    sleep 0.25
  done
  die "$2: $1 answers HTTP $code, not 200"
}
# wrk output -> numbers
wrk_rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
wrk_p99_ms() { # "99%  1.23ms" -> 1.23
  awk '$1 == "99%" {
    v = $2; n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    m = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
    if (m < 0) print "nan"; else printf "%.3f\n", n * m
  }' "$1"
}
wrk_bytes_secs() { # "123 requests in 2.00s, 7.88GB read" -> "BYTES SECONDS"
  awk '/ requests in .* read$/ {
    t = $4; sub(/,$/, "", t); tn = t + 0; tu = t; sub(/^[0-9.]+/, "", tu)
    ts = (tu == "us") ? tn / 1e6 : (tu == "ms") ? tn / 1e3 : (tu == "m") ? tn * 60 : (tu == "h") ? tn * 3600 : tn
    b = $5; bn = b + 0; bu = b; sub(/^[0-9.]+/, "", bu)
    k = (bu == "B") ? 1 : (bu == "KB") ? 1024 : (bu == "MB") ? 1024^2 : (bu == "GB") ? 1024^3 : (bu == "TB") ? 1024^4 : (bu == "PB") ? 1024^5 : 0
    printf "%.0f %.3f\n", bn * k, ts
  }' "$1"
}
wrk_errors() { # "non-2xx N; socket errors: ..." or nothing
  awk '/^  Non-2xx or 3xx responses:/ {e = e (e ? "; " : "") "non-2xx " $5}
       /^  Socket errors:/ {sub(/^  Socket errors: /, ""); e = e (e ? "; " : "") "socket errors: " $0}
       END {print e}' "$1"
}
NOTES=()
note_errors() { # WHAT FILE: keep wrk's errors for the summary, print them
  local e
  e=$(wrk_errors "$2")
  [ -z "$e" ] || { NOTES+=("$1: $e"); printf '  [%s]' "$e"; }
  return 0
}
run_wrk() { # OUT ARGS...: wrk on the client CPU, bounded
  local out=$1
  shift
  timeout $((SECS + 60)) taskset -c "$CPU_CLIENT" wrk "$@" >"$out" 2>&1 ||
    die "wrk $* failed: $(tail -n 3 "$out" | tr '\n' ' ')"
  [ -n "$(wrk_rps "$out")" ] || die "cannot read wrk's output: $(tr '\n' ' ' <"$out")"
}
stats() { # values -> "min median max" (n/a when none)
  printf '%s\n' "$@" | { grep -E '^[0-9.]+$' || true; } | sort -g | awk '
    {a[NR] = $1}
    END {
      if (NR == 0) { print "n/a n/a n/a"; exit }
      med = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
      print a[1], med, a[NR]
    }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'; }
fmt3() { # "min med max" with a printf format -> "min / med / max"
  local fmt=$1 a b c
  read -r a b c <<<"$2"
  # shellcheck disable=SC2059 # the format is the caller's, on purpose
  if [ "$a" = n/a ]; then echo "n/a"; else printf "$fmt / $fmt / $fmt" "$a" "$b" "$c"; fi
}

# ---------------------------------------------------------------- manager
# The idle connections of part 3 send nothing: both servers get a header
# timeout longer than the holder lives (manager default 10 s, nginx 60 s), so
# that they are still open while wrk measures.
HOLD=$((SECS + 110)) # the holder's lifetime, s
[ "$HOLD" -ge 120 ] || HOLD=120
HEADER_TIMEOUT=$((HOLD + 60))
MANAGER_NOTE=""
MANAGER_FLAGS=""
MURL=http://127.0.0.1:$MPORT
start_manager() { # each set of flags in turn until one comes up (with a note)
  local attempt rc code why
  local -a extra
  for attempt in "--max-connections $MAXCONN --header-timeout ${HEADER_TIMEOUT}s" \
    "--header-timeout ${HEADER_TIMEOUT}s" ""; do
    read -r -a extra <<<"$attempt"
    MANAGER_FLAGS=$attempt
    : >"$WORK/manager.log"
    MANAGER_ADMIN_TOKEN=$TOKEN taskset -c "$CPU_SERVER" "$MANAGER" serve --listen "127.0.0.1:$MPORT" \
      --data "$WORK/m" "${extra[@]}" >>"$WORK/manager.log" 2>&1 &
    MPID=$!
    PIDS+=("$MPID")
    for _ in $(seq 200); do
      grep -q "listening on" "$WORK/manager.log" && break
      alive "$MPID" || break
      sleep 0.1
    done
    code=000
    if grep -q "listening on" "$WORK/manager.log"; then
      for _ in $(seq 80); do
        alive "$MPID" || break
        code=$(http_code "$MURL/health" 5)
        if [ "$code" = 200 ]; then
          sleep 3 # still there once settled? (a thread per connection may not be)
          alive "$MPID" && code=$(http_code "$MURL/health" 5) && [ "$code" = 200 ] && return 0
          break
        fi
        sleep 0.25
      done
    fi
    rc=0
    kill "$MPID" 2>/dev/null || true
    wait "$MPID" 2>/dev/null || rc=$?
    why=$(grep -v "INFO" "$WORK/manager.log" | tail -n 1 | sed 's/^\[[^]]*\] *//')
    if [ -n "$attempt" ]; then
      MANAGER_NOTE="${MANAGER_NOTE}serve $attempt did not come up (exit $rc, /health $code: ${why:-no error logged}); "
      echo "note: serve $attempt did not come up (exit $rc, /health $code: ${why:-no error logged}); trying with fewer flags"
      continue
    fi
    die "manager-lite serve did not come up (exit $rc, /health $code)"
  done
}
start_manager
export MANAGER_URL=$MURL MANAGER_ADMIN_TOKEN=$TOKEN

# ---------------------------------------------------------------- data
echo "== setup: a small bin and a $ARTIFACT_MIB MiB one, released; $NODES nodes"
head -c 4096 /dev/urandom >"$WORK/small"
head -c $((ARTIFACT_MIB << 20)) /dev/urandom >"$WORK/artifact"
SHA=$(sha256sum "$WORK/artifact" | cut -c1-64)
"$MANAGER" publish bench 1.0.0 "$WORK/small" --release >"$WORK/publish.log" 2>&1 ||
  die "publish bench failed: $(tr '\n' ' ' <"$WORK/publish.log")"
"$MANAGER" publish big 1.0.0 "$WORK/artifact" --release >"$WORK/publish.log" 2>&1 ||
  die "publish big failed: $(tr '\n' ' ' <"$WORK/publish.log")"

cat >"$WORK/register.py" <<'PY'
# Registers nodes node-1..node-N by keepalive, on one kept-alive connection.
import http.client, json, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 240
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for i in range(1, n + 1):
    body = json.dumps({"node_id": f"node-{i}", "cpu_arch": "x86_64", "os": "linux",
                       "os_release": "bench", "node_name": f"name-node-{i}",
                       "bin_proxy_version": "0.1.0", "bins": {"bench": ""}})
    for attempt in range(5):
        if time.monotonic() > deadline:
            sys.exit(f"registering: out of time at node {i}")
        try:
            conn.request("POST", "/api/v1/keepalive", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            time.sleep(0.2)
            continue
        if resp.status == 200:
            break
        if resp.status == 503:
            time.sleep(0.2)
            continue
        sys.exit(f"keepalive of node-{i}: HTTP {resp.status} {answer[:200]!r}")
    else:
        sys.exit(f"keepalive of node-{i}: no 200 after 5 tries")
print(f"{n} nodes registered")
PY
t0=$(now)
timeout 300 python3 "$WORK/register.py" "$MPORT" "$NODES" || die "registering $NODES nodes failed"
awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "(%.1f s)\n", b - a }'

MANIFEST_PATH="/api/v1/bins/bench?node_id=node-1"
DOWNLOAD_PATH="/api/v1/download/$SHA"
mkdir -p "$WORK/nginx/root" "$WORK/nginx/tmp"
code=$(curl -s --max-time 10 -o "$WORK/nginx/root/manifest" -w '%{http_code}' "$MURL$MANIFEST_PATH" || true)
[ "$code" = 200 ] || die "manager manifest: HTTP $code: $(head -c 300 "$WORK/nginx/root/manifest" 2>/dev/null)"
grep -q "$(sha256sum "$WORK/small" | cut -c1-64)" "$WORK/nginx/root/manifest" || die "the manifest does not name the small bin: $(cat "$WORK/nginx/root/manifest")"
code=$(curl -s --max-time 10 -o "$WORK/nginx/root/health" -w '%{http_code}' "$MURL/health" || true)
[ "$code" = 200 ] || die "manager /health: HTTP $code"
cp "$WORK/artifact" "$WORK/nginx/root/artifact.bin"
got=$(curl -s --max-time 60 "$MURL$DOWNLOAD_PATH" | sha256sum | cut -c1-64)
[ "$got" = "$SHA" ] || die "manager download: sha256 $got, expected $SHA"

# ---------------------------------------------------------------- nginx
NDIR=$WORK/nginx
{
  [ "$(id -u)" = 0 ] && echo "user root;" # the temp dir is 0700
  cat <<EOF
worker_processes 1;
worker_rlimit_nofile 30000;
pid $NDIR/nginx.pid;
error_log $NDIR/error.log warn;
events { worker_connections 20000; }
http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    keepalive_requests 100000;   # the manager serves 100,000 per connection
    client_header_timeout ${HEADER_TIMEOUT}s;   # as the manager's --header-timeout
    types { application/octet-stream bin; }
    default_type application/json;
    client_body_temp_path $NDIR/tmp/body;
    proxy_temp_path $NDIR/tmp/proxy;
    fastcgi_temp_path $NDIR/tmp/fastcgi;
    uwsgi_temp_path $NDIR/tmp/uwsgi;
    scgi_temp_path $NDIR/tmp/scgi;
    server {
        listen 127.0.0.1:$NPORT;
        root $NDIR/root;
    }
}
EOF
} >"$NDIR/nginx.conf"
NGINX_E=()
nginx -h 2>&1 | grep -q -- '-e filename' && NGINX_E=(-e "$NDIR/error.log")
nginx -t -q -p "$NDIR/" -c "$NDIR/nginx.conf" "${NGINX_E[@]}" >"$WORK/nginx-t.log" 2>&1 ||
  die "nginx -t: $(tr '\n' ' ' <"$WORK/nginx-t.log")"
taskset -c "$CPU_SERVER" nginx -p "$NDIR/" -c "$NDIR/nginx.conf" "${NGINX_E[@]}" -g 'daemon off;' \
  >"$WORK/nginx.out" 2>&1 &
NPID=$!
PIDS+=("$NPID")
NURL=http://127.0.0.1:$NPORT
NWORKERS=""
for _ in $(seq 100); do
  alive "$NPID" || die "nginx exited: $(tr '\n' ' ' <"$WORK/nginx.out")"
  NWORKERS=$(pgrep -P "$NPID" 2>/dev/null | tr '\n' ' ' || true)
  [ -n "$NWORKERS" ] && break
  sleep 0.1
done
[ -n "$NWORKERS" ] || die "nginx started no worker"
read -r -a NWORKER_PIDS <<<"$NWORKERS"
PIDS+=("${NWORKER_PIDS[@]}")
NGINX_PIDS=("$NPID" "${NWORKER_PIDS[@]}")
wait_200 "$NURL/health" "nginx /health"
wait_200 "$NURL/manifest" "nginx /manifest"
cmp -s <(curl -s --max-time 10 "$NURL/manifest") "$NDIR/root/manifest" || die "nginx serves other manifest bytes"
got=$(curl -s --max-time 60 "$NURL/artifact.bin" | sha256sum | cut -c1-64)
[ "$got" = "$SHA" ] || die "nginx download: sha256 $got, expected $SHA"

NGINX_VERSION=$(nginx -v 2>&1 | sed 's/^nginx version: //')
WRK_VERSION=$({ wrk -v 2>&1 || true; } | head -n 1 | sed 's/ Copyright.*//')
MANAGER_VERSION=$(sed -n 's/.*"version":"\([^"]*\)".*/\1/p' "$NDIR/root/health")
if GIT_REV=$(git rev-parse --short HEAD 2>/dev/null); then
  git diff --quiet HEAD -- 2>/dev/null || GIT_REV="$GIT_REV + uncommitted changes"
else
  GIT_REV="not a git checkout"
fi
echo "manager-lite $MANAGER_VERSION ($GIT_REV), pid $MPID, serve flags: ${MANAGER_FLAGS:-none}: $(grep -m1 -o 'listening on.*' "$WORK/manager.log")"
echo "nginx: $NGINX_VERSION, master $NPID, worker ${NWORKER_PIDS[*]}; wrk: $WRK_VERSION"
echo "servers on CPU $CPU_SERVER, wrk on CPU $CPU_CLIENT; open files limit $NOFILE"

# ---------------------------------------------------------------- 1. manifests
echo
echo "== 1. manifest polls: wrk -t1 -c64 -d${SECS}s --latency, $ROUNDS interleaved rounds"
echo "manager: GET $MANIFEST_PATH; nginx: GET /manifest ($(stat -c %s "$NDIR/root/manifest") bytes, the same body)"
M_RPS=() M_P99=() N_RPS=() N_P99=()
for r in $(seq "$ROUNDS"); do
  for who in manager nginx; do
    if [ "$who" = manager ]; then url=$MURL$MANIFEST_PATH; else url=$NURL/manifest; fi
    out=$WORK/wrk-manifest-$who-$r.txt
    run_wrk "$out" -t1 -c64 -d"${SECS}s" --latency "$url"
    rps=$(wrk_rps "$out")
    p99=$(wrk_p99_ms "$out")
    if [ "$who" = manager ]; then M_RPS+=("$rps") M_P99+=("$p99"); else N_RPS+=("$rps") N_P99+=("$p99"); fi
    printf 'round %s %-7s %10.0f req/s  p99 %8.3f ms' "$r" "$who" "$rps" "$p99"
    note_errors "manifest round $r $who" "$out"
    echo
    sleep 1
  done
done
M_RPS_S=$(stats "${M_RPS[@]}") N_RPS_S=$(stats "${N_RPS[@]}")
M_P99_S=$(stats "${M_P99[@]}") N_P99_S=$(stats "${N_P99[@]}")
echo "manager req/s min/median/max: $(fmt3 %.0f "$M_RPS_S"); p99 ms: $(fmt3 %.3f "$M_P99_S")"
echo "nginx   req/s min/median/max: $(fmt3 %.0f "$N_RPS_S"); p99 ms: $(fmt3 %.3f "$N_P99_S")"
R_RPS=$(ratio "$(echo "$M_RPS_S" | cut -d' ' -f2)" "$(echo "$N_RPS_S" | cut -d' ' -f2)")
R_P99=$(ratio "$(echo "$M_P99_S" | cut -d' ' -f2)" "$(echo "$N_P99_S" | cut -d' ' -f2)")
echo "manager/nginx (medians): req/s $R_RPS, p99 $R_P99"

# ---------------------------------------------------------------- 2. artifacts
echo
echo "== 2. artifact serving: $ARTIFACT_MIB MiB, wrk -t1 -c50 -d${SECS}s, $ROUNDS interleaved rounds"
echo "manager: GET $DOWNLOAD_PATH; nginx: GET /artifact.bin (sendfile)"
M_GBS=() M_CPG=() N_GBS=() N_CPG=()
for r in $(seq "$ROUNDS"); do
  for who in manager nginx; do
    if [ "$who" = manager ]; then url=$MURL$DOWNLOAD_PATH pids=("$MPID"); else url=$NURL/artifact.bin pids=("${NGINX_PIDS[@]}"); fi
    out=$WORK/wrk-artifact-$who-$r.txt
    c0=$(cpu_ticks "${pids[@]}")
    # --timeout: a 64 MiB answer may take longer than wrk's default 2 s.
    run_wrk "$out" -t1 -c50 -d"${SECS}s" --timeout 60s "$url"
    c1=$(cpu_ticks "${pids[@]}")
    read -r bytes secs <<<"$(wrk_bytes_secs "$out")"
    cpu=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN { printf "%.3f\n", (b - a) / t }')
    gbs=$(awk -v b="${bytes:-0}" -v s="${secs:-0}" 'BEGIN { if (s > 0) printf "%.3f\n", b / s / 1e9; else print "n/a" }')
    cpg=$(awk -v b="${bytes:-0}" -v c="$cpu" 'BEGIN { if (b > 0) printf "%.3f\n", c / (b / 1e9); else print "n/a" }')
    if [ "$who" = manager ]; then M_GBS+=("$gbs") M_CPG+=("$cpg"); else N_GBS+=("$gbs") N_CPG+=("$cpg"); fi
    printf 'round %s %-7s %7s GB/s  %6s CPU s (%s GB in %s s)  %s CPU s/GB' "$r" "$who" "$gbs" "$cpu" \
      "$(awk -v b="${bytes:-0}" 'BEGIN { printf "%.2f", b / 1e9 }')" "${secs:-?}" "$cpg"
    note_errors "artifact round $r $who" "$out"
    echo
    sleep 1
  done
done
M_GBS_S=$(stats "${M_GBS[@]}") N_GBS_S=$(stats "${N_GBS[@]}")
M_CPG_S=$(stats "${M_CPG[@]}") N_CPG_S=$(stats "${N_CPG[@]}")
echo "manager GB/s min/median/max: $(fmt3 %.3f "$M_GBS_S"); CPU s/GB: $(fmt3 %.3f "$M_CPG_S")"
echo "nginx   GB/s min/median/max: $(fmt3 %.3f "$N_GBS_S"); CPU s/GB: $(fmt3 %.3f "$N_CPG_S")"
R_GBS=$(ratio "$(echo "$M_GBS_S" | cut -d' ' -f2)" "$(echo "$N_GBS_S" | cut -d' ' -f2)")
R_CPG=$(ratio "$(echo "$M_CPG_S" | cut -d' ' -f2)" "$(echo "$N_CPG_S" | cut -d' ' -f2)")
echo "manager/nginx (medians): GB/s $R_GBS, CPU s/GB $R_CPG"

# ---------------------------------------------------------------- 3. idle connections
cat >"$WORK/hold.py" <<'PY'
# Opens N idle TCP connections (nothing sent) to HOST:PORT from 127.0.0.2..,
# round robin over NADDR source addresses; prints how many connected, then
# holds them. When the file PROBE appears it writes PROBE.out: how many are
# still open, closed by the server, or answered (first line of the answer).
# Exits by itself after HOLD seconds, or on SIGTERM.
import collections, os, resource, select, signal, socket, sys, time
host, port, n, naddr, hold, probe = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                     int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
start = time.monotonic()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
want = n + 256
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft != resource.RLIM_INFINITY and soft < want:
    try:
        if hard == resource.RLIM_INFINITY or hard >= want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks, errors = [], collections.Counter()
deadline = start + min(60.0, hold / 2)
for i in range(n):
    if time.monotonic() > deadline:
        errors["out of time"] += n - i
        break
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.bind((f"127.0.0.{2 + i % naddr}", 0))
        s.connect((host, port))
    except OSError as e:
        errors[e.strerror or type(e).__name__] += 1
        s.close()
        continue
    socks.append(s)
took = time.monotonic() - start
detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
print(f"connected {len(socks)} of {n} in {took:.1f} s" + (f" (failed: {detail})" if detail else ""), flush=True)

def status():
    poll = select.poll()
    for s in socks:
        poll.register(s.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    ready = dict(poll.poll(0))
    still, closed, answered = 0, 0, collections.Counter()
    for s in socks:
        if not ready.get(s.fileno()):
            still += 1
            continue
        try:
            b = s.recv(256, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            still += 1
            continue
        except OSError:
            closed += 1
            continue
        if b:
            answered[b.split(b"\r\n", 1)[0][:60].decode("latin-1")] += 1
        else:
            closed += 1
    text = f"open {still}, closed by the server {closed}, answered {sum(answered.values())}"
    if answered:
        text += " (" + "; ".join(f"{v} x {k!r}" for k, v in answered.most_common(3)) + ")"
    return text

while time.monotonic() - start < hold:
    if os.path.exists(probe):
        with open(probe + ".tmp", "w") as f:
            f.write(status() + "\n")
        os.rename(probe + ".tmp", probe + ".out")
        os.unlink(probe)
    time.sleep(0.05)
print(f"holder: done after {time.monotonic() - start:.0f} s", flush=True)
PY

probe() { # what the holder sees of its connections now
  rm -f "$WORK/probe.out"
  touch "$WORK/probe"
  for _ in $(seq 100); do
    [ -s "$WORK/probe.out" ] && { cat "$WORK/probe.out"; return 0; }
    alive "$HPID" || break
    sleep 0.1
  done
  echo "(no answer from the holder)"
}

echo
echo "== 3. idle connections: $IDLE idle TCP connections from $IDLE_ADDRS addresses (127.0.0.2-$((1 + IDLE_ADDRS))), then wrk -t1 -c16 -d${SECS}s --latency /health"
declare -A I_CONN I_RSS0 I_RSS1 I_OPEN0 I_OPEN1 I_P99 I_RPS I_ERR I_HEALTH
for who in manager nginx; do
  if [ "$who" = manager ]; then port=$MPORT pids=("$MPID"); else port=$NPORT pids=("${NGINX_PIDS[@]}"); fi
  url=http://127.0.0.1:$port/health
  I_RSS0[$who]=$(rss_kib "${pids[@]}")
  : >"$WORK/hold.out"
  taskset -c "$CPU_CLIENT" python3 "$WORK/hold.py" 127.0.0.1 "$port" "$IDLE" "$IDLE_ADDRS" "$HOLD" "$WORK/probe" \
    >"$WORK/hold.out" 2>&1 &
  HPID=$!
  PIDS+=("$HPID")
  for _ in $(seq 900); do
    grep -q '^connected' "$WORK/hold.out" && break
    alive "$HPID" || break
    sleep 0.1
  done
  grep -q '^connected' "$WORK/hold.out" || die "the idle-connection holder did not report: $(tr '\n' ' ' <"$WORK/hold.out")"
  I_CONN[$who]=$(grep -m1 '^connected' "$WORK/hold.out")
  sleep 1
  I_RSS1[$who]=$(rss_kib "${pids[@]}")
  I_OPEN0[$who]=$(probe)
  I_HEALTH[$who]=$(http_code "$url" 5)
  echo "$who: ${I_CONN[$who]}; /health answers HTTP ${I_HEALTH[$who]}; $(echo "${I_OPEN0[$who]}" | tr -d '\n')"
  out=$WORK/wrk-idle-$who.txt
  if timeout $((SECS + 60)) taskset -c "$CPU_CLIENT" wrk -t1 -c16 -d"${SECS}s" --latency "$url" >"$out" 2>&1 &&
    [ -n "$(wrk_rps "$out")" ]; then
    I_P99[$who]=$(wrk_p99_ms "$out")
    I_RPS[$who]=$(wrk_rps "$out")
    I_ERR[$who]=$(wrk_errors "$out")
    [ -z "${I_ERR[$who]}" ] || NOTES+=("idle $who /health: ${I_ERR[$who]}")
  else
    I_P99[$who]=n/a I_RPS[$who]=n/a I_ERR[$who]="wrk failed: $(tail -n 2 "$out" | tr '\n' ' ')"
    NOTES+=("idle $who /health: ${I_ERR[$who]}")
  fi
  I_OPEN1[$who]=$(probe)
  kill "$HPID" 2>/dev/null || true
  wait "$HPID" 2>/dev/null || true
  alive "$MPID" || die "the manager died during the idle-connection run"
  printf '%s: RSS %s -> %s MiB%s; /health p99 %s ms, %s req/s%s; after wrk: %s\n' "$who" \
    "$(mib "${I_RSS0[$who]}")" "$(mib "${I_RSS1[$who]}")" \
    "$([ "$who" = nginx ] && echo ' (master + worker)')" "${I_P99[$who]}" "${I_RPS[$who]}" \
    "${I_ERR[$who]:+ [${I_ERR[$who]}]}" "$(echo "${I_OPEN1[$who]}" | tr -d '\n')"
  sleep 2 # let the server drop the closed connections
done
[ "$(http_code "$MURL/health")" = 200 ] || echo "note: the manager's /health is not 200 after the idle-connection run"

# ---------------------------------------------------------------- summary
opened() { sed -n 's/^connected \([0-9]*\) of.*/\1/p' <<<"$1"; }
still_open() { sed -n 's/^open \([0-9]*\),.*/\1/p' <<<"$1"; }
med() { echo "$1" | cut -d' ' -f2; }
row() { printf '%-34s %-30s %-30s %s\n' "$@"; }
echo
echo "== summary"
echo "command: $CMDLINE"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); nproc: $NPROC; $(uname -sr)"
echo "manager-lite $MANAGER_VERSION ($GIT_REV): serve --listen 127.0.0.1:$MPORT --data DIR ${MANAGER_FLAGS:-(no other flags)}: $(grep -m1 -o 'listening on.*' "$WORK/manager.log")"
[ -z "$MANAGER_NOTE" ] || echo "note: ${MANAGER_NOTE%; }"
echo "nginx: $NGINX_VERSION (1 worker, sendfile, client_header_timeout ${HEADER_TIMEOUT}s); wrk: $WRK_VERSION"
echo "$ROUNDS rounds x $SECS s; figures are min / median / max over the rounds; ratios of the medians"
row "" "manager" "nginx" "manager/nginx"
row "manifest req/s (-c64)" "$(fmt3 %.0f "$M_RPS_S")" "$(fmt3 %.0f "$N_RPS_S")" "$R_RPS"
row "manifest p99 ms" "$(fmt3 %.3f "$M_P99_S")" "$(fmt3 %.3f "$N_P99_S")" "$R_P99"
row "64 MiB artifact GB/s (-c50)" "$(fmt3 %.2f "$M_GBS_S")" "$(fmt3 %.2f "$N_GBS_S")" "$R_GBS"
row "artifact CPU s per GB" "$(fmt3 %.3f "$M_CPG_S")" "$(fmt3 %.3f "$N_CPG_S")" "$R_CPG"
row "idle: connected of $IDLE" "$(opened "${I_CONN[manager]}")" "$(opened "${I_CONN[nginx]}")" ""
row "idle: still open before/after wrk" "$(still_open "${I_OPEN0[manager]}") / $(still_open "${I_OPEN1[manager]}")" \
  "$(still_open "${I_OPEN0[nginx]}") / $(still_open "${I_OPEN1[nginx]}")" ""
row "idle: RSS MiB before -> after" "$(mib "${I_RSS0[manager]}") -> $(mib "${I_RSS1[manager]}")" \
  "$(mib "${I_RSS0[nginx]}") -> $(mib "${I_RSS1[nginx]}")" ""
row "idle: /health p99 ms (-c16)" "${I_P99[manager]}" "${I_P99[nginx]}" "$(ratio "${I_P99[manager]}" "${I_P99[nginx]}")"
row "idle: /health req/s (-c16)" "${I_RPS[manager]%.*}" "${I_RPS[nginx]%.*}" "$(ratio "${I_RPS[manager]}" "${I_RPS[nginx]}")"
for n in ${NOTES[@]+"${NOTES[@]}"}; do echo "wrk errors, $n"; done
if grep -qE '\[(warn|error|crit|alert|emerg)\]' "$NDIR/error.log" 2>/dev/null; then
  echo "nginx error.log:"
  grep -E '\[(warn|error|crit|alert|emerg)\]' "$NDIR/error.log" | sed 's/^[0-9/: ]*//' | sort | uniq -c | head -n 5
fi
if grep -qE ' (WARN|ERROR) ' "$WORK/manager.log"; then
  echo "manager log:"
  grep -E ' (WARN|ERROR) ' "$WORK/manager.log" | sed 's/^\[[^]]*\] *//' | sort | uniq -c | head -n 5
fi

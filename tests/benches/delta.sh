#!/usr/bin/env bash
# Binary deltas between real consecutive builds of this project's own
# programs (a benchmark, not a test: it asserts nothing about size or speed,
# it prints what it measured; it does fail when an applied delta does not
# give back the new binary byte for byte).
#
#   bash tests/benches/delta.sh [ROUNDS]                 (default 3)
#
# 1. builds each pair's old and new binary at commits of this repo, once:
#    a `git worktree add --detach` per commit under $DELTA_PAIRS (default
#    target/delta-pairs; removed again once built), one shared
#    CARGO_TARGET_DIR there, nice -n 19, CARGO_INCREMENTAL=0. A binary already in $DELTA_PAIRS/bin is not built
#    again; each pair is kept as $DELTA_PAIRS/<pair>/old, new and commits.
#      manager-small  manager-lite (release: LTO, 1 CGU, stripped), a small
#                     fix to one function: 0539dd3^ -> 0539dd3
#      manager-large  manager-lite, mirror sync added (~1,150 lines of code,
#                     ~430 of tests, and fs2 as a dependency; 3e66333^ builds):
#                     3e66333^ -> 0539dd3
#      agent-small    binproxy (agent profile, static musl), one refactor:
#                     b3f066f^ -> b3f066f
#      agent-large    binproxy, the agent's mirrors (9062bc3) and the back-off
#                     fix (98acf1e): ~1,150 lines of code, ~800 of tests:
#                     98acf1e~3 (b602e09, first parent) -> b3f066f
# 2. for each pair and method, the bytes on the wire (and % of the new
#    binary), time and peak RSS to make and to apply the delta:
#      plain          the new file as it is
#      zstd-19        zstd -19 of the new file; apply: zstd -d
#      zstd-19-patch  zstd -19 --long=27 --patch-from=old; apply: the same
#                     with -d
#      bsdiff         Debian's bsdiff / bspatch
#      ours           bpdelta diff / apply (the binproxy-delta crate's
#                     example); skipped, with a note, when binproxy/delta is
#                     not there or does not build
#    ROUNDS rounds, each runs every pair and method once (the method order
#    rotates each round); times are min/median/max in ms, taken with
#    $EPOCHREALTIME around the tool (/usr/bin/time's %e has 10 ms steps and
#    many applies take less), peak RSS is /usr/bin/time's %M, the highest
#    of the rounds. Every tool runs pinned to CPU (default 1) with taskset.
#    Every applied file is compared with the new binary (cmp).
# Root installs what is missing (zstd, bsdiff, time, bc) with apt-get.
set -euo pipefail
CMDLINE="bash $0${*:+ $*}"
cd "$(dirname "$0")/../.."
REPO=$PWD
ROUNDS=${1:-3}
CPU=${CPU:-1}
DP=${DELTA_PAIRS:-$REPO/target/delta-pairs}
case "$ROUNDS$CPU" in *[!0-9]*) echo "usage: bash tests/benches/delta.sh [ROUNDS] (a whole number)" >&2; exit 2 ;; esac
if [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 20 ]; then
  echo "ROUNDS must be 1-20" >&2
  exit 2
fi
mkdir -p "$DP/bin"
DP=$(cd "$DP" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
die() { echo "delta.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
missing=()
command -v zstd >/dev/null || missing+=(zstd)
command -v bsdiff >/dev/null && command -v bspatch >/dev/null || missing+=(bsdiff)
[ -x /usr/bin/time ] || missing+=(time)
command -v taskset >/dev/null || missing+=(util-linux)
command -v cmp >/dev/null || missing+=(diffutils)
command -v bc >/dev/null || missing+=(bc)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing tools: apt-get install -y ${missing[*]} (as root)"
  echo "== apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true

# ---------------------------------------------------------------- builds
# name | package | old commit | new commit
PAIRS=(
  "manager-small|manager-lite|0539dd3^|0539dd3"
  "manager-large|manager-lite|3e66333^|0539dd3"
  "agent-small|binproxy|b3f066f^|b3f066f"
  "agent-large|binproxy|98acf1e~3|b3f066f"
)
# BUILT=the cached binary of package $1 at commit $2, built when missing.
build() {
  local pkg=$1 sha wt built args
  sha=$(git rev-parse --short=12 "$2^{commit}")
  BUILT="$DP/bin/$pkg-$sha"
  [ -s "$BUILT" ] && return 0
  wt="$DP/src/$sha"
  [ -e "$wt/.git" ] || git worktree add --detach --quiet "$wt" "$sha"
  case $pkg in
    manager-lite) args=(--release -p manager-lite); built=release/manager-lite ;;
    binproxy) args=(--profile agent -p binproxy --target x86_64-unknown-linux-musl)
      built=x86_64-unknown-linux-musl/agent/binproxy ;;
  esac
  echo "== building $pkg at $sha ($2; a few minutes)"
  local t0=$SECONDS
  (cd "$wt" && CARGO_TARGET_DIR="$DP/target" CARGO_INCREMENTAL=0 \
    nice -n 19 cargo build --quiet --locked "${args[@]}") || die "$pkg does not build at $sha"
  cp "$DP/target/$built" "$BUILT.tmp" && mv "$BUILT.tmp" "$BUILT"
  git worktree remove --force "$wt"
  echo "   $((SECONDS - t0)) s, $(stat -c %s "$BUILT") bytes"
}
for p in "${PAIRS[@]}"; do
  IFS='|' read -r name pkg old new <<<"$p"
  mkdir -p "$DP/$name"
  build "$pkg" "$old"; cp "$BUILT" "$DP/$name/old"
  build "$pkg" "$new"; cp "$BUILT" "$DP/$name/new"
  printf '%s %s (%s) -> %s (%s)\n' "$pkg" "$(git rev-parse --short=12 "$old")" "$old" \
    "$(git rev-parse --short=12 "$new")" "$new" >"$DP/$name/commits"
done

# ---------------------------------------------------------------- methods
METHODS=(plain zstd-19 zstd-19-patch bsdiff ours)
BPDELTA=$WORK/bpdelta # a copy: a rebuild in the tree cannot swap it mid-run
if [ ! -f binproxy/delta/Cargo.toml ]; then
  NOTE="ours: skipped, binproxy/delta/Cargo.toml is not there"
elif ! cargo build --release --quiet -p binproxy-delta --features build --example bpdelta 2>"$WORK/bpdelta.log"; then
  NOTE="ours: skipped, bpdelta does not build ($(grep -m1 -E '^error' "$WORK/bpdelta.log" || tail -n1 "$WORK/bpdelta.log"))"
else
  NOTE= && cp target/release/examples/bpdelta "$BPDELTA"
fi
[ -z "$NOTE" ] || METHODS=(plain zstd-19 zstd-19-patch bsdiff)

# CMD=(how method $1 makes ($2=make: OLD NEW PATCH) or applies ($2=apply:
# OLD PATCH OUT) a delta); /usr/bin/time runs the tool itself, no shell.
cmd() {
  local o=$3 a=$4 b=$5
  case $1.$2 in
    plain.*) CMD=(cp "$a" "$b") ;;
    zstd-19.make) CMD=(zstd -19 -q -f "$a" -o "$b") ;;
    zstd-19.apply) CMD=(zstd -d -q -f "$a" -o "$b") ;;
    zstd-19-patch.make) CMD=(zstd -19 -q -f --long=27 "--patch-from=$o" "$a" -o "$b") ;;
    zstd-19-patch.apply) CMD=(zstd -d -q -f --long=27 "--patch-from=$o" "$a" -o "$b") ;;
    bsdiff.make) CMD=(bsdiff "$o" "$a" "$b") ;;
    bsdiff.apply) CMD=(bspatch "$o" "$b" "$a") ;;
    ours.make) CMD=("$BPDELTA" diff "$o" "$a" "$b") ;;
    ours.apply) CMD=("$BPDELTA" apply "$o" "$a" "$b") ;;
  esac
}

export LC_ALL=C # a dot in $EPOCHREALTIME
# timed KEY: runs CMD, its wall ms to $WORK/KEY.ms, its peak RSS to KEY.kib
timed() {
  local t0 t1
  t0=$EPOCHREALTIME
  # (stderr kept aside: zstd -19 --patch-from prints tuning advice)
  /usr/bin/time -f '%e %M' -o "$WORK/time.out" "${CMD[@]}" >/dev/null 2>"$WORK/stderr" ||
    { cat "$WORK/stderr" >&2; die "${CMD[*]} failed"; }
  t1=$EPOCHREALTIME
  echo "($t1 - $t0) * 1000" | bc -l >>"$WORK/$1.ms"
  tail -n1 "$WORK/time.out" | cut -d' ' -f2 >>"$WORK/$1.kib"
}
stats() { sort -n | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2;
  printf "%.0f/%.0f/%.0f", v[1], m, v[NR]}'; }

# Everything measured runs on $CPU (the builds above are not pinned).
taskset -cp "$CPU" $$ >/dev/null
echo "== $ROUNDS rounds (pairs and methods interleaved, pinned to cpu $CPU)"
n=${#METHODS[@]}
for round in $(seq "$ROUNDS"); do
  for p in "${PAIRS[@]}"; do
    name=${p%%|*}
    old=$DP/$name/old new=$DP/$name/new
    for i in $(seq 0 $((n - 1))); do
      m=${METHODS[$(((i + round - 1) % n))]}
      patch=$WORK/$name.$m.patch out=$WORK/$name.$m.out
      rm -f "$patch" "$out"
      cmd "$m" make "$old" "$new" "$patch"; timed "$name.$m.make"
      cmd "$m" apply "$old" "$patch" "$out"; timed "$name.$m.apply"
      cmp -s "$out" "$new" || die "$m: applying the $name delta does not give the new binary"
      size=$(stat -c %s "$patch")
      [ ! -e "$WORK/$name.$m.size" ] || [ "$(cat "$WORK/$name.$m.size")" = "$size" ] ||
        echo "note: $name $m gave $size bytes this round, $(cat "$WORK/$name.$m.size") before"
      echo "$size" >"$WORK/$name.$m.size"
      rm -f "$patch" "$out"
    done
  done
  echo "round $round done"
done

# ---------------------------------------------------------------- table
echo "== binaries"
for p in "${PAIRS[@]}"; do
  name=${p%%|*}
  printf '%-14s old %9s bytes, new %9s bytes: %s\n' "$name" "$(stat -c %s "$DP/$name/old")" \
    "$(stat -c %s "$DP/$name/new")" "$(cat "$DP/$name/commits")"
done
echo "== deltas (ms: min/median/max of $ROUNDS; RSS: the highest, KiB)"
printf '%-14s %-14s %10s %7s %17s %15s %10s %10s\n' pair method bytes '% new' 'make ms' 'apply ms' \
  'make RSS' 'apply RSS'
for p in "${PAIRS[@]}"; do
  name=${p%%|*}
  newsize=$(stat -c %s "$DP/$name/new")
  for m in plain zstd-19 zstd-19-patch bsdiff ours; do
    [ -e "$WORK/$name.$m.size" ] || continue
    k=$WORK/$name.$m size=$(cat "$k.size")
    printf '%-14s %-14s %10s %6.2f%% %17s %15s %10s %10s\n' "$name" "$m" "$size" \
      "$(echo "100 * $size / $newsize" | bc -l)" "$(stats <"$k.make.ms")" "$(stats <"$k.apply.ms")" \
      "$(sort -n "$k.make.kib" | tail -n1)" "$(sort -n "$k.apply.kib" | tail -n1)"
  done
done
[ -z "$NOTE" ] || echo "$NOTE"
echo "== to run it again (builds are cached in $DP): DELTA_PAIRS=$DP CPU=$CPU $CMDLINE"

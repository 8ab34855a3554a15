#!/usr/bin/env bash
# Builds the release binaries of binproxy and manager-lite as stripped, static
# x86_64-unknown-linux-musl executables and copies them into one directory
# (default target/dist), with their sizes and a SHA256SUMS file.
#
# Fails when either binary is not statically linked: a PT_INTERP header
# ("Requesting program interpreter") or a NEEDED shared library means the
# binary would not run on a host without that libc. ring's bit of C is built by
# the host gcc (.cargo/config.toml sets CC for the musl target).
#
# The agent is built with the `agent` profile (Cargo.toml: small, with
# SHA-256 and TLS at full speed) and must stay within its budget of 3 MiB;
# the manager with `release`.
#
# Usage: packaging/build-static.sh [OUT_DIR]
set -euo pipefail

usage() {
  echo "usage: $0 [OUT_DIR]   (default: target/dist)" >&2
  exit 2
}
case "${1:-}" in
  -h | --help) usage ;;
  -*) echo "$0: unknown option $1" >&2; usage ;;
esac
[ $# -le 1 ] || usage

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/dist}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
triple=x86_64-unknown-linux-musl
bins=(binproxy manager-lite)
# The agent goes on every host of a fleet: its size is a budget, not a figure.
agent_budget=$((3 * 1024 * 1024))
cd "$root"

if ! command -v readelf >/dev/null; then
  echo "$0: readelf not found; install binutils (apt-get install binutils)" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx "$triple"; then
  echo "== rustup target add $triple"
  rustup target add "$triple"
fi

echo "== cargo build --profile agent --target $triple -p binproxy"
cargo build --profile agent --locked --target "$triple" -p binproxy
echo "== cargo build --release --target $triple -p manager-lite"
cargo build --release --locked --target "$triple" -p manager-lite

target_dir=${CARGO_TARGET_DIR:-$root/target}
mkdir -p "$out"

# Static: no program interpreter and no NEEDED library (a static-pie binary
# still has a dynamic section, but it names no library).
check_static() {
  local f=$1
  if readelf -lW "$f" | grep -q "Requesting program interpreter"; then
    echo "$f: not statically linked (it has a program interpreter)" >&2
    return 1
  fi
  if readelf -dW "$f" | grep -q "(NEEDED)"; then
    echo "$f: not statically linked (it needs shared libraries)" >&2
    return 1
  fi
  if readelf -SW "$f" | grep -q " \.symtab "; then
    echo "$f: not stripped (.symtab present)" >&2
    return 1
  fi
}

for bin in "${bins[@]}"; do
  profile=release
  [ "$bin" = binproxy ] && profile=agent
  src=$target_dir/$triple/$profile/$bin
  check_static "$src"
  # Copy beside, then rename: a reader of OUT_DIR never sees half a binary.
  cp "$src" "$out/.$bin.tmp"
  chmod 0755 "$out/.$bin.tmp"
  mv -f "$out/.$bin.tmp" "$out/$bin"
done

"$out/binproxy" --version
size=$(stat -c %s "$out/binproxy")
if [ "$size" -gt "$agent_budget" ]; then
  echo "$out/binproxy: $size bytes, over the agent's budget of $agent_budget (3 MiB)" >&2
  exit 1
fi
(cd "$out" && sha256sum "${bins[@]}" >.SHA256SUMS.tmp && mv -f .SHA256SUMS.tmp SHA256SUMS)
echo "== $out"
for bin in "${bins[@]}"; do
  printf '%-14s %9s bytes  static, stripped\n' "$bin" "$(stat -c %s "$out/$bin")"
done
cat "$out/SHA256SUMS"

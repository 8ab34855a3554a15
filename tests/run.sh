#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is missing,
# then runs every test (`cargo test --workspace`, arguments passed on).
#
# Needs beyond the Rust toolchain: the real minisign CLI (signature tests),
# systemd-analyze, dpkg-deb and readelf (packaging tests), Chromium and
# ChromeDriver (the admin page test), util-linux's setpriv and script (tests
# that run as another user or on a terminal), mount and fallocate (the
# full-disk test, on a tmpfs it mounts), openssl (certificates made the
# way operators make them), nginx (a real cache in front of the manager),
# Python 3 with prometheus_client (the /metrics test) and a C compiler (ring). As root it installs what is missing with
# apt-get and pip; as anyone else it lists the exact commands and exits 2
# without running a test, because a test that cannot find its tool fails.
#
# Usage: tests/run.sh [--check] [CARGO TEST ARGS...]
#   --check   only check (and as root install); do not run the tests
set -euo pipefail
cd "$(dirname "$0")/.."

check_only=false
if [ "${1:-}" = "--check" ]; then
  check_only=true
  shift
fi

# Each need: how to tell it is there | the Debian package that brings it.
needs=(
  "command -v cc|gcc"
  "command -v minisign|minisign"
  "command -v systemd-analyze|systemd"
  "command -v dpkg-deb|dpkg"
  "command -v readelf|binutils"
  "command -v setpriv|util-linux"
  "command -v fallocate|util-linux"
  "command -v mount|mount"
  "command -v script|bsdutils"
  "command -v openssl|openssl"
  "command -v nginx|nginx"
  "test -x /usr/bin/chromium|chromium"
  "test -x /usr/bin/chromedriver|chromium-driver"
  "command -v python3|python3"
)

missing_debs=()
for need in "${needs[@]}"; do
  probe=${need%%|*}
  deb=${need##*|}
  if ! eval "$probe" >/dev/null 2>&1; then
    missing_debs+=("$deb")
  fi
done

missing_pip=()
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  missing_pip+=(prometheus_client)
fi

if [ ${#missing_debs[@]} -gt 0 ] || [ ${#missing_pip[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: the tests need tools this machine does not have. Install them as root:" >&2
    if [ ${#missing_debs[@]} -gt 0 ]; then
      echo "    apt-get update && apt-get install -y ${missing_debs[*]}" >&2
    fi
    if [ ${#missing_pip[@]} -gt 0 ]; then
      echo "    python3 -m pip install ${missing_pip[*]}" >&2
    fi
    echo "or run this script as root, which installs them." >&2
    exit 2
  fi
  if [ ${#missing_debs[@]} -gt 0 ]; then
    echo "== apt-get install ${missing_debs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Debian starts a package's service unless policy-rc.d forbids it: the
    # tests start their own nginx on loopback ports, no system one on :80.
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq "${missing_debs[@]}" >/dev/null
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  fi
  if [ ${#missing_pip[@]} -gt 0 ]; then
    echo "== pip install ${missing_pip[*]}"
    python3 -m pip --version >/dev/null 2>&1 || {
      apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
    }
    # A distribution's own python3 refuses pip (PEP 668): take its package.
    python3 -m pip install -q "${missing_pip[@]}" 2>/dev/null ||
      apt-get install -y -qq python3-prometheus-client >/dev/null
  fi
fi
echo "== test needs: all present"

if $check_only; then
  exit 0
fi
echo "== cargo test --workspace $*"
exec cargo test --workspace "$@"

#!/usr/bin/env bash
# Builds binproxy_VERSION_amd64.deb and manager-lite_VERSION_amd64.deb with
# plain `dpkg-deb --build` from already-built binaries (normally the static
# ones of packaging/build-static.sh). No cargo-deb, no debhelper: the layout is
# spelled out here.
#
#   binproxy:     /usr/bin/binproxy, units in /lib/systemd/system (ExecStart
#                 rewritten to /usr/bin), conffile /etc/binproxy/agent.json,
#                 the cron file as an example under /usr/share/doc/binproxy
#   manager-lite: /usr/bin/manager-lite, its unit, conffile /etc/default/manager-lite
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: build-deb.sh [--binproxy PATH] [--manager-lite PATH] [--version V]
                    [--out DIR] [--compress xz|gzip|none] [--allow-dynamic]
  --binproxy PATH      build the binproxy package from this binary
  --manager-lite PATH  build the manager-lite package from this binary
                       (with neither: both, from target/dist/ of build-static.sh)
  --version V          package version (default: the workspace version)
  --out DIR            where the .deb files go (default: target/dist)
  --compress TYPE      dpkg-deb compression (default xz; none is fast, for tests)
  --allow-dynamic      accept a dynamically linked binary (adds Depends: libc6)
USAGE
  exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
pkg_root=$(cd "$here/.." && pwd)
repo=$(cd "$pkg_root/.." && pwd)
binproxy="" manager="" version="" out="$repo/target/dist" allow_dynamic=0 compress=xz
while [ $# -gt 0 ]; do
  case "$1" in
    --binproxy | --manager-lite | --version | --out | --compress)
      [ $# -ge 2 ] || { echo "build-deb.sh: $1 needs a value" >&2; usage; }
      case "$1" in
        --binproxy) binproxy=$2 ;;
        --manager-lite) manager=$2 ;;
        --version) version=$2 ;;
        --out) out=$2 ;;
        --compress) compress=$2 ;;
      esac
      shift 2
      ;;
    --allow-dynamic) allow_dynamic=1; shift ;;
    -h | --help) usage ;;
    *) echo "build-deb.sh: unknown argument: $1" >&2; usage ;;
  esac
done
case "$compress" in
  xz | gzip | none) ;;
  *) echo "build-deb.sh: --compress must be xz, gzip or none" >&2; usage ;;
esac
if [ -z "$binproxy$manager" ]; then
  binproxy=$repo/target/dist/binproxy
  manager=$repo/target/dist/manager-lite
fi
if [ -z "$version" ]; then
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
fi
printf '%s' "$version" | grep -Eqx '[0-9][A-Za-z0-9.+~-]*' || {
  echo "build-deb.sh: version '$version' is not a Debian version" >&2
  exit 2
}
for tool in dpkg-deb readelf; do
  command -v "$tool" >/dev/null || {
    echo "build-deb.sh: $tool not found; install it (apt-get install dpkg binutils)" >&2
    exit 1
  }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

# check_binary PATH: an x86-64 ELF; static unless --allow-dynamic. Prints the
# extra Depends line a dynamic binary needs.
check_binary() {
  [ -f "$1" ] || { echo "build-deb.sh: $1: no such file" >&2; exit 1; }
  readelf -hW "$1" 2>/dev/null | grep -q 'Machine:.*X86-64' || {
    echo "build-deb.sh: $1 is not an x86-64 ELF binary" >&2
    exit 1
  }
  if readelf -lW "$1" | grep -q "Requesting program interpreter"; then
    if [ "$allow_dynamic" = 0 ]; then
      echo "build-deb.sh: $1 is dynamically linked; use the static build (packaging/build-static.sh) or --allow-dynamic" >&2
      exit 1
    fi
    echo "Depends: libc6"
  fi
}

# control NAME DEPENDS DESCRIPTION... > control file
control() {
  local name=$1 depends=$2 size
  shift 2
  size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
  cat <<CONTROL
Package: $name
Version: $version
Architecture: amd64
Maintainer: binproxy maintainers <binproxy@localhost>
Section: admin
Priority: optional
Installed-Size: $size
${depends:+$depends
}Description: $1
CONTROL
  shift
  for line in "$@"; do echo " $line"; done
}

# unit SRC DST: the unit with /usr/local/bin rewritten to /usr/bin.
unit() {
  sed 's#/usr/local/bin/#/usr/bin/#g' "$1" >"$2"
  chmod 0644 "$2"
}

new_stage() {
  stage=$(mktemp -d "$out/.deb-stage.XXXXXX")
  chmod 0755 "$stage"
  install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
    "$stage/usr/share/doc/$1"
  install -m 0644 "$pkg_root/README.md" "$stage/usr/share/doc/$1/README.md"
  printf 'binproxy and manager-lite\nLicense: Apache-2.0\n' >"$stage/usr/share/doc/$1/copyright"
  chmod 0644 "$stage/usr/share/doc/$1/copyright"
  for script in postinst prerm postrm; do
    install -m 0755 "$here/$1/$script" "$stage/DEBIAN/$script"
  done
}

# finish NAME: build the .deb (root-owned files without fakeroot), then drop
# the stage; the .deb appears under its final name only when complete.
finish() {
  local deb=$out/${1}_${version}_amd64.deb
  dpkg-deb --root-owner-group "-Z$compress" --build "$stage" "$deb.tmp" >/dev/null
  mv -f "$deb.tmp" "$deb"
  rm -rf "$stage"
  echo "$deb: $(stat -c %s "$deb") bytes"
}

build_binproxy() {
  local depends
  depends=$(check_binary "$binproxy")
  new_stage binproxy
  install -m 0755 "$binproxy" "$stage/usr/bin/binproxy"
  for u in binproxy.service binproxy.timer binproxy-daemon.service; do
    unit "$pkg_root/systemd/$u" "$stage/lib/systemd/system/$u"
  done
  install -d -m 0755 "$stage/etc/binproxy" "$stage/usr/share/doc/binproxy/examples"
  install -m 0644 "$pkg_root/agent.json" "$stage/etc/binproxy/agent.json"
  sed 's#/usr/local/bin/#/usr/bin/#g' "$pkg_root/cron.d/binproxy" \
    >"$stage/usr/share/doc/binproxy/examples/cron.d-binproxy"
  chmod 0644 "$stage/usr/share/doc/binproxy/examples/cron.d-binproxy"
  echo /etc/binproxy/agent.json >"$stage/DEBIAN/conffiles"
  control binproxy "$depends" \
    "keeps managed binaries at the version manager-lite targets" \
    "The binproxy agent: downloads, verifies, swaps in atomically, health-checks" \
    "and rolls back the binaries listed in /etc/binproxy/agent.json." \
    "Nothing is enabled on install: choose binproxy.timer or binproxy-daemon.service." \
    >"$stage/DEBIAN/control"
  finish binproxy
}

build_manager() {
  local depends
  depends=$(check_binary "$manager")
  new_stage manager-lite
  install -m 0755 "$manager" "$stage/usr/bin/manager-lite"
  unit "$pkg_root/systemd/manager-lite.service" "$stage/lib/systemd/system/manager-lite.service"
  install -d -m 0755 "$stage/etc/default"
  install -m 0644 "$pkg_root/manager-lite.default" "$stage/etc/default/manager-lite"
  echo /etc/default/manager-lite >"$stage/DEBIAN/conffiles"
  control manager-lite "$depends" \
    "control plane of the binproxy updater" \
    "Stores artifacts, records what every node reports and drives releases;" \
    "listens on 127.0.0.1:38012 with node authentication on (see /etc/default/manager-lite)." \
    >"$stage/DEBIAN/control"
  finish manager-lite
}

trap '[ -z "${stage:-}" ] || rm -rf "$stage"' EXIT
[ -z "$binproxy" ] || build_binproxy
[ -z "$manager" ] || build_manager

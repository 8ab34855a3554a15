#!/usr/bin/env bash
# Installs (or removes) the binproxy agent on this host: the binary, one way of
# running it every minute (systemd timer, daemon unit or cron file), a config
# skeleton when there is no config yet, and the state directory. Running it
# twice gives the same files; an operator's config is never overwritten.
# Run it from an unpacked source tree or release tarball: it takes the units,
# cron file and config skeleton from the directory it sits in.
set -eu

usage() {
  cat >&2 <<'USAGE'
usage: install.sh --mode timer|daemon|cron [--binary PATH] [--manager URL]
                  [--enroll-token FILE] [--root DIR]
       install.sh --uninstall [--purge] [--root DIR]

  --mode MODE          timer: binproxy.timer starts binproxy.service every minute
                       daemon: binproxy-daemon.service runs `binproxy daemon`
                       cron: /etc/cron.d/binproxy runs `binproxy run` every minute
                       (installing one mode removes the other two)
  --binary PATH        the binproxy to install as /usr/local/bin/binproxy
                       (optional when one is installed already)
  --manager URL        manager_url of the config skeleton, written only when
                       /etc/binproxy/agent.json does not exist
  --enroll-token FILE  copied to /etc/binproxy/enroll.token (0600) unless one exists
  --root DIR           install under DIR instead of /; systemctl is not called
  --uninstall          remove the binary, units and cron file; keep the config
                       and the state
  --purge              with --uninstall: also remove /etc/binproxy and /var/lib/binproxy
USAGE
  exit 2
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

bad_usage() {
  echo "install.sh: $*" >&2
  usage
}

here=$(cd "$(dirname "$0")" && pwd)
mode="" binary="" manager="" token="" root="" uninstall=0 purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --mode | --binary | --manager | --enroll-token | --root)
      [ $# -ge 2 ] || bad_usage "$1 needs a value"
      case "$1" in
        --mode) mode=$2 ;;
        --binary) binary=$2 ;;
        --manager) manager=$2 ;;
        --enroll-token) token=$2 ;;
        --root) root=$2 ;;
      esac
      shift 2
      ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h | --help) usage ;;
    *) bad_usage "unknown argument: $1" ;;
  esac
done

if [ "$uninstall" = 1 ]; then
  [ -z "$mode$binary$manager$token" ] || bad_usage "--uninstall takes only --purge and --root"
else
  [ "$purge" = 0 ] || bad_usage "--purge goes with --uninstall"
  case "$mode" in
    timer | daemon | cron) ;;
    "") bad_usage "--mode is required" ;;
    *) bad_usage "--mode must be timer, daemon or cron, not '$mode'" ;;
  esac
fi
if [ -n "$manager" ]; then
  # It goes into JSON as is: no quotes, backslashes, spaces or control bytes.
  printf '%s' "$manager" | grep -Eqx 'https?://[A-Za-z0-9._~:/@%+-]+|https?://\[[0-9A-Fa-f:.]+\](:[0-9]+)?(/[A-Za-z0-9._~:/@%+-]*)?' ||
    bad_usage "--manager '$manager' is not an http:// or https:// URL"
fi
if [ -n "$root" ]; then
  [ -d "$root" ] || die "--root $root: not a directory"
  root=$(cd "$root" && pwd)
  [ "$root" != / ] || root=""
fi

bin_dst=$root/usr/local/bin/binproxy
unit_dir=$root/etc/systemd/system
cron_file=$root/etc/cron.d/binproxy
conf_dir=$root/etc/binproxy
state_dir=$root/var/lib/binproxy
units="binproxy.service binproxy.timer binproxy-daemon.service"

systemctl_() {
  [ -z "$root" ] || return 0
  command -v systemctl >/dev/null || return 0
  [ -d /run/systemd/system ] || return 0 # not booted with systemd
  systemctl "$@"
}

# put SRC DST MODE: copy unless DST already has the same bytes and mode;
# through a temp file in DST's directory, synced, then renamed.
put() {
  if [ -f "$2" ] && cmp -s "$1" "$2" && [ "$(stat -c %a "$2")" = "$(printf '%o' "0$3")" ]; then
    return 0
  fi
  tmp=$(dirname "$2")/.$(basename "$2").install-tmp
  cp "$1" "$tmp"
  chmod "$3" "$tmp"
  sync "$tmp" 2>/dev/null || true
  mv -f "$tmp" "$2"
  echo "installed $2"
}

remove() {
  for f in "$@"; do
    if [ -e "$f" ] || [ -L "$f" ]; then
      rm -f "$f"
      echo "removed $f"
    fi
  done
}

stop_units() {
  for u in "$@"; do
    if [ -e "$unit_dir/$u" ]; then
      systemctl_ disable --now "$u" >/dev/null 2>&1 || true
    fi
  done
}

if [ "$uninstall" = 1 ]; then
  stop_units binproxy.timer binproxy.service binproxy-daemon.service
  for u in $units; do remove "$unit_dir/$u"; done
  remove "$cron_file" "$bin_dst"
  systemctl_ daemon-reload
  if [ "$purge" = 1 ]; then
    for d in "$conf_dir" "$state_dir"; do
      if [ -e "$d" ]; then rm -rf "$d" && echo "removed $d"; fi
    done
  else
    echo "kept $conf_dir and $state_dir (--purge removes them)"
  fi
  exit 0
fi

# The binary: the one given, else the one installed already.
if [ -n "$binary" ]; then
  [ -f "$binary" ] || die "--binary $binary: no such file"
  case "$binary" in */*) ;; *) binary=./$binary ;; esac # not looked up in PATH
  version=$("$binary" --version 2>/dev/null) || die "--binary $binary: \`--version\` failed; not a binproxy for this host?"
  case "$version" in
    "binproxy "*) ;;
    *) die "--binary $binary: not binproxy (--version says '$version')" ;;
  esac
elif [ ! -x "$bin_dst" ]; then
  bad_usage "--binary PATH is required: $bin_dst is not installed yet"
fi

for f in systemd/binproxy.service systemd/binproxy.timer systemd/binproxy-daemon.service \
  cron.d/binproxy agent.json; do
  [ -f "$here/$f" ] || die "$here/$f is missing; run install.sh from the packaging directory"
done

mkdir -p "$root/usr/local/bin" "$unit_dir" "$root/etc/cron.d"
install -d -m 0755 "$conf_dir"
install -d -m 0700 "$state_dir"
[ -z "$binary" ] || put "$binary" "$bin_dst" 0755

# The config: an operator's file is never replaced.
if [ -e "$conf_dir/agent.json" ]; then
  [ -z "$manager" ] || echo "kept $conf_dir/agent.json (--manager not applied)"
else
  skeleton=$conf_dir/.agent.json.skeleton
  sed "s#\"manager_url\": \"[^\"]*\"#\"manager_url\": \"${manager:-http://127.0.0.1:38012}\"#" \
    "$here/agent.json" >"$skeleton"
  put "$skeleton" "$conf_dir/agent.json" 0644
  rm -f "$skeleton"
  echo "edit $conf_dir/agent.json: list the bins this host runs"
fi
if [ -n "$token" ]; then
  [ -f "$token" ] || die "--enroll-token $token: no such file"
  if [ -e "$conf_dir/enroll.token" ]; then
    echo "kept $conf_dir/enroll.token"
  else
    put "$token" "$conf_dir/enroll.token" 0600
  fi
fi

# One way of running it: the other two are removed.
case "$mode" in
  timer)
    stop_units binproxy-daemon.service
    remove "$unit_dir/binproxy-daemon.service" "$cron_file"
    put "$here/systemd/binproxy.service" "$unit_dir/binproxy.service" 0644
    put "$here/systemd/binproxy.timer" "$unit_dir/binproxy.timer" 0644
    systemctl_ daemon-reload
    systemctl_ enable --now binproxy.timer
    ;;
  daemon)
    stop_units binproxy.timer binproxy.service
    remove "$unit_dir/binproxy.service" "$unit_dir/binproxy.timer" "$cron_file"
    put "$here/systemd/binproxy-daemon.service" "$unit_dir/binproxy-daemon.service" 0644
    systemctl_ daemon-reload
    systemctl_ enable binproxy-daemon.service
    systemctl_ restart binproxy-daemon.service
    ;;
  cron)
    stop_units binproxy.timer binproxy.service binproxy-daemon.service
    remove "$unit_dir/binproxy.service" "$unit_dir/binproxy.timer" "$unit_dir/binproxy-daemon.service"
    put "$here/cron.d/binproxy" "$cron_file" 0644
    systemctl_ daemon-reload
    ;;
esac
echo "binproxy installed ($mode)${root:+ under $root}"

#!/usr/bin/env bash
# Installs the test bed this project runs against, into a cache folder, without
# touching the system's apt configuration or libc:
#   - MySQL 9.7 server + client from Debian sid, unpacked into a private prefix
#     and run through sid's own dynamic loader (see ../shared/TESTBED.md);
#   - sysbench from the system's Debian release (plain apt-get).
# Idempotent: a second run with everything in place returns in well under a second.
# Prints the prefix on its last line.
set -euo pipefail

CACHE="${INNOXIDE_CACHE:-$HOME/.cache/innoxide}"
PREFIX="$CACHE/mysql-9.7"
STAMP="$PREFIX/.installed"

log() { printf 'testbed: %s\n' "$*" >&2; }

install_sysbench() {
  if ! command -v sysbench >/dev/null 2>&1; then
    log "installing sysbench (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq sysbench >/dev/null
  fi
}

write_wrappers() {
  local lib="$PREFIX/root/usr/lib/x86_64-linux-gnu"
  mkdir -p "$PREFIX/bin"
  for tool in mysqld:usr/sbin/mysqld mysql:usr/bin/mysql mysqladmin:usr/bin/mysqladmin \
              mysqlbinlog:usr/bin/mysqlbinlog mysqldump:usr/bin/mysqldump mysqlpump:usr/bin/mysqlpump; do
    local name="${tool%%:*}" path="$PREFIX/root/${tool#*:}"
    [ -x "$path" ] || continue
    cat >"$PREFIX/bin/$name" <<WRAP
#!/bin/sh
# Runs sid's $name with sid's own loader and libraries (the host glibc is older).
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$path" "\$@"
WRAP
    chmod +x "$PREFIX/bin/$name"
  done
}

install_mysql() {
  if [ -f "$STAMP" ] && [ -x "$PREFIX/bin/mysqld" ]; then
    return
  fi
  log "installing MySQL 9.7 from Debian sid into $PREFIX (about 30 s, 430 MB)"
  local apt="$CACHE/sid-apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$PREFIX/root"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" >"$apt/sources.list"
  : >"$apt/status"
  local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=-"
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
              -o "Dir::State::status=$apt/status" -o "APT::Get::List-Cleanup=0"
              -o "Debug::NoLocking=1")
  apt-get "${opts[@]}" -qq update
  # The runtime closure of the server and client, without maintainer-script tooling.
  local pkgs
  pkgs=$(apt-cache "${opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
           --no-breaks --no-replaces --no-enhances mysql-server-core mysql-client-core \
         | grep -v '^ ' | grep -v '^<' | sort -u \
         | grep -Ev '^(perl|perl-base|perl-modules.*|debconf.*|dpkg|dpkg-dev|debianutils|init-system-helpers|lsb-base|adduser|passwd|mysql-common|libpam.*|libaudit.*|libsemanage.*|libselinux1-dev|sensible-utils|ucf|tzdata|base-files|bash|coreutils|login|util-linux.*|libdebconfclient0|procps|psmisc)$')
  (
    cd "$apt/debs"
    # shellcheck disable=SC2086
    if ! apt-get "${opts[@]}" -qq download $pkgs; then
      log "download failed (stale sid index?): refreshing once"
      apt-get "${opts[@]}" -qq update
      # shellcheck disable=SC2086
      apt-get "${opts[@]}" -qq download $pkgs
    fi
  )
  for deb in "$apt/debs"/*.deb; do
    dpkg -x "$deb" "$PREFIX/root"
  done
  write_wrappers
  "$PREFIX/bin/mysqld" --version >&2
  touch "$STAMP"
}

# The peers `make bench` measures against (bookworm packages): MariaDB 10.11 +
# mariadb-backup, mydumper/myloader, and a TrueType font for the charts.
# Installing mariadb-server must not leave Debian's own instance running or
# enabled: the bench starts a private instance on its own port/socket/datadir.
# Note: this puts MariaDB's `mysql`/`mysqldump` first on PATH; the 9.7 tools
# are always called by their full path in the prefix.
install_bench_peers() {
  local want=(mariadb-server mariadb-backup mydumper fonts-dejavu-core)
  local missing=()
  for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing bench peers: ${missing[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    # A policy-rc.d that says "101: not allowed" keeps the package scripts
    # from starting mariadb; only remove it afterwards if we created it.
    local policy=/usr/sbin/policy-rc.d ours=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=1
    fi
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$ours" = 1 ] && rm -f "$policy"
  fi
  # Never auto-started at boot, whatever the init system.
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable mariadb >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/mariadb ]; then
    update-rc.d mariadb disable >/dev/null 2>&1 || true
  fi
  # If a package script started Debian's instance anyway, stop exactly that one.
  local pidfile=/run/mysqld/mysqld.pid
  if [ -s "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = /usr/sbin/mariadbd ]; then
      log "stopping Debian's mariadbd (pid $pid) started by the package"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
    fi
  fi
}

case "${1:-all}" in
  all) install_sysbench; install_mysql ;;
  mysql) install_mysql ;;
  sysbench) install_sysbench ;;
  bench-peers) install_bench_peers ;;
  *) echo "usage: $0 [all|mysql|sysbench|bench-peers]" >&2; exit 2 ;;
esac
echo "$PREFIX"

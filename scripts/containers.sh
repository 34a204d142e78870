#!/usr/bin/env bash
# Installs the container tools `make images` and the real-pod test use: Debian's
# podman, buildah and runc (bookworm), and writes the project's own
# containers.conf into the cache folder instead of editing /etc. Export
# CONTAINERS_CONF=<the folder printed on the last line>/containers.conf before calling podman or
# buildah (the Makefile and the testkit do).
# Why these settings (see ../shared/TESTBED.md): this machine's cgroups are
# hybrid v1/v2 and root lacks CAP_SYS_RESOURCE, so crun and podman's default
# rlimits fail; runc with the cgroupfs manager and small ulimits works.
# Idempotent: a second run with everything in place returns at once.
set -euo pipefail

CACHE="${INNOXIDE_CACHE:-$HOME/.cache/innoxide}"
CONF_DIR="$CACHE/containers"
CONF="$CONF_DIR/containers.conf"

log() { printf 'containers: %s\n' "$*" >&2; }

missing=()
for pkg in podman buildah runc ca-certificates; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$CONF_DIR"
want='[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$want" ]; then
  printf '%s\n' "$want" >"$CONF"
fi
echo "$CONF_DIR"

#!/usr/bin/env bash
# Installs a real Kubernetes API server for custom resources into a cache
# folder, without touching the system's apt configuration:
#   - the standalone `apiextensions-apiserver`, built from the Go sources Debian
#     sid ships (golang-k8s-apiextensions-apiserver-dev and its golang-*-dev
#     closure) with sid's Go toolchain, all unpacked into a private prefix;
#   - `etcd` from sid's etcd-server (it needs glibc >= 2.34, which the host has;
#     when it does not, it runs through sid's own loader like mysqld does).
# See ../shared/TESTBED.md, "Kubernetes API for tests". The Go build takes about
# 8.5 min on 2 cores and runs once: a second run with everything in place
# returns in well under a second, and concurrent runs wait for each other.
# After the build only the two binaries and the .debs (~410 MB) are kept: the
# Go sources, toolchain and build cache (~3.7 GB) are deleted.
# It also keeps client-go's applyconfigurations/internal/internal.go (the
# structured-merge-diff schemas of every built-in kind, from the kept .deb) as
# PREFIX/share/client-go-internal.go: the test kit serves core kinds as mirror
# CRDs with those schemas, for real apply semantics (e2e/testkit/src/mirror.rs).
# Prints the prefix on its last line:
#   PREFIX/bin/apiextensions-apiserver, PREFIX/bin/etcd.
set -euo pipefail

CACHE="${INNOXIDE_CACHE:-$HOME/.cache/innoxide}"
PREFIX="$CACHE/kube-api"
ROOT="$PREFIX/root"
APT="$PREFIX/apt"
STAMP="$PREFIX/.installed"
GO_VERSION=1.27

log() { printf 'kube-apiserver: %s\n' "$*" >&2; }

SMD_SCHEMA="$PREFIX/share/client-go-internal.go"
SMD_SCHEMA_IN_DEB=./usr/share/gocode/src/k8s.io/client-go/applyconfigurations/internal/internal.go

installed() { [ -f "$STAMP" ] && [ -x "$PREFIX/bin/apiextensions-apiserver" ] && [ -x "$PREFIX/bin/etcd" ] && [ -f "$SMD_SCHEMA" ]; }
if installed; then
  echo "$PREFIX"
  exit 0
fi
mkdir -p "$PREFIX"
exec 9>"$PREFIX/.lock"
flock 9
if installed; then
  echo "$PREFIX"
  exit 0
fi

APT_OPTS=(-o "Dir::Etc::sourcelist=$APT/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
          -o "Dir::State::status=$APT/status" -o "APT::Get::List-Cleanup=0"
          -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")

apt_setup() {
  mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/debs" "$ROOT" "$PREFIX/bin"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" >"$APT/sources.list"
  : >"$APT/status"
  apt-get "${APT_OPTS[@]}" -qq update
}

# The Go toolchain, every golang-* package the apiextensions-apiserver sources
# need (Go sources under /usr/share/gocode), and etcd-server. Non-Go packages of
# the closure (libc, protobuf, systemd, ...) are runtime or C bits nobody needs
# for a CGO_ENABLED=0 build; golang-golang-x-tools is binaries (its sources are
# the -dev package).
package_list() {
  {
    apt-cache "${APT_OPTS[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances \
        golang-k8s-apiextensions-apiserver-dev "golang-$GO_VERSION-go" \
      | grep -v '^ ' | grep -v '^<' | grep '^golang-' | grep -v '^golang-golang-x-tools$'
    echo etcd-server
  } | sort -u
}

download() {
  local pkgs
  pkgs=$(package_list)
  log "downloading $(wc -w <<<"$pkgs") packages from Debian sid into $APT/debs"
  (
    cd "$APT/debs"
    # shellcheck disable=SC2086
    if ! apt-get "${APT_OPTS[@]}" -qq download $pkgs; then
      log "download failed (stale sid index?): refreshing once"
      apt-get "${APT_OPTS[@]}" -qq update
      # shellcheck disable=SC2086
      apt-get "${APT_OPTS[@]}" -qq download $pkgs
    fi
  )
}

unpack() {
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  for deb in "$APT/debs"/*.deb; do
    dpkg -x "$deb" "$ROOT"
  done
  # Absolute symlinks (/usr/share/...) would point at the host: re-aim them
  # into the prefix.
  find "$ROOT" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
    ln -sfn "$ROOT$(readlink "$link")" "$link"
  done
}

build_apiserver() {
  local goroot="$ROOT/usr/lib/go-$GO_VERSION"
  [ -x "$goroot/bin/go" ] || { log "no Go toolchain at $goroot"; exit 1; }
  log "building apiextensions-apiserver with $("$goroot/bin/go" version) (about 8.5 min on 2 cores)"
  local started=$SECONDS
  env -i PATH="$goroot/bin:/usr/bin:/bin" HOME="$PREFIX" \
      GOROOT="$goroot" GOPATH="$ROOT/usr/share/gocode" GOCACHE="$PREFIX/go-build-cache" \
      GO111MODULE=off CGO_ENABLED=0 GOPROXY=off GOTOOLCHAIN=local GOFLAGS= \
      "$goroot/bin/go" build -ldflags='-s -w' -o "$PREFIX/bin/apiextensions-apiserver.tmp" \
      k8s.io/apiextensions-apiserver
  mv "$PREFIX/bin/apiextensions-apiserver.tmp" "$PREFIX/bin/apiextensions-apiserver"
  log "built in $((SECONDS - started)) s"
}

# etcd itself when the host's glibc is new enough (sid's build needs >= 2.34),
# else a wrapper that runs it through sid's loader and libraries.
install_etcd() {
  local etcd="$ROOT/usr/bin/etcd"
  [ -x "$etcd" ] || dpkg -x "$APT"/debs/etcd-server_*.deb "$ROOT"
  if "$etcd" --version >/dev/null 2>&1; then
    cp "$etcd" "$PREFIX/bin/etcd.tmp"
    mv "$PREFIX/bin/etcd.tmp" "$PREFIX/bin/etcd"
  else
    log "etcd does not run with the host's libc: using sid's libc6"
    (cd "$APT/debs" && apt-get "${APT_OPTS[@]}" -qq download libc6)
    dpkg -x "$APT"/debs/libc6_*.deb "$ROOT"
    local lib="$ROOT/usr/lib/x86_64-linux-gnu"
    printf '#!/bin/sh\nexec "%s" --library-path "%s" "%s" "$@"\n' \
      "$lib/ld-linux-x86-64.so.2" "$lib" "$etcd" >"$PREFIX/bin/etcd"
    chmod +x "$PREFIX/bin/etcd"
  fi
  # Not `| head -1`: with pipefail, etcd dying of SIGPIPE would end the script.
  local version
  version=$("$PREFIX/bin/etcd" --version)
  printf '%s\n' "${version%%$'\n'*}" >&2
}

# The schemas, straight from client-go's .deb (a prefix installed before this
# step existed gets them without a rebuild).
keep_smd_schema() {
  [ -f "$SMD_SCHEMA" ] && return 0
  local deb
  deb=$(ls "$APT"/debs/golang-k8s-client-go-dev_*.deb 2>/dev/null | head -1)
  if [ -z "$deb" ]; then
    (cd "$APT/debs" && apt-get "${APT_OPTS[@]}" -qq download golang-k8s-client-go-dev)
    deb=$(ls "$APT"/debs/golang-k8s-client-go-dev_*.deb | head -1)
  fi
  mkdir -p "$PREFIX/share"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "$SMD_SCHEMA_IN_DEB" >"$SMD_SCHEMA.tmp"
  mv "$SMD_SCHEMA.tmp" "$SMD_SCHEMA"
}

# Only the binaries are needed from here on; the .debs stay for a rebuild.
prune() {
  rm -rf "$PREFIX/go-build-cache" "$PREFIX/.config" "$PREFIX/.unpacked"
  # A wrapper script (sid's loader) still needs the prefix's libraries.
  if [ "$(head -c 2 "$PREFIX/bin/etcd")" != '#!' ]; then
    rm -rf "$ROOT"
  else
    rm -rf "$ROOT/usr/share/gocode" "$ROOT/usr/lib/go-$GO_VERSION" "$ROOT/usr/share/go-$GO_VERSION"
  fi
}

started=$SECONDS
if [ ! -x "$PREFIX/bin/apiextensions-apiserver" ]; then
  if [ ! -f "$PREFIX/.unpacked" ]; then
    apt_setup
    download
    log "downloaded $(du -sh "$APT/debs" | cut -f1) in $((SECONDS - started)) s; unpacking"
    unpack
    touch "$PREFIX/.unpacked"
  fi
  build_apiserver
fi
install_etcd
keep_smd_schema
prune
touch "$STAMP"
log "ready in $((SECONDS - started)) s ($(du -sh "$PREFIX" | cut -f1) in $PREFIX)"
echo "$PREFIX"

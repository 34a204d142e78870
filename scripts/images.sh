#!/usr/bin/env bash
# Builds the project's OCI images with Debian's podman/buildah (no registry is
# reachable, so every image starts FROM scratch):
#   agent     <registry>/innoxide-agent:<version>     static innoxide-agent
#   operator  <registry>/innoxide-operator:<version>  static innoxide-operator
#   mysql     localhost/innoxide-test-mysql:<mysql>   the test bed's MySQL 9.7, uid 999 (tests only)
# Both binaries are linked statically against glibc (crt-static), so the agent
# runs inside any MySQL image, musl-based ones included; one cargo invocation
# builds both with the `image` profile into target/static, apart from the dev
# build. Usage: images.sh [agent|operator|mysql|all]... (default: all).
# Env: IMAGE_REGISTRY (default ghcr.io/innoxide, where releases are pushed:
# see docs/releasing.md), IMAGE_TAG (default: the workspace version),
# IMAGE_TARGET (see below).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${INNOXIDE_CACHE:-$HOME/.cache/innoxide}"
REGISTRY="${IMAGE_REGISTRY:-ghcr.io/innoxide}"
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
TAG="${IMAGE_TAG:-$VERSION}"
SOURCE="$(sed -n '/^\[workspace.package\]/,/^\[/s/^repository = "\(.*\)"/\1/p' Cargo.toml)"
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD 2>/dev/null; then REVISION="$REVISION-dirty"; fi
# IMAGE_TARGET: the Rust target to build for (default: this machine's); a
# cross build needs that target installed and its linker configured.
TARGET="${IMAGE_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}"
case "$TARGET" in
  x86_64-*) ARCH=amd64 ;;
  aarch64-*) ARCH=arm64 ;;
  *) echo "images: unsupported target $TARGET" >&2; exit 2 ;;
esac
TARGET_DIR="$ROOT/target/static"
STAGE="$TARGET_DIR/images"

log() { printf 'images: %s\n' "$*" >&2; }

CONTAINERS_CONF="$(bash scripts/containers.sh | tail -n1)/containers.conf"
export CONTAINERS_CONF

# IMAGE_PROFILE picks the build (default: dev):
#   dev    the workspace's dev build, each binary linked statically by
#          `cargo rustc` (crt-static and strip for the final link only): it
#          reuses the test build's compiled crates, so in `make test` the
#          images cost little more than two links. Debug assertions on.
#   image  the release build for published images (docs/releasing.md):
#          optimised, stripped, its own target dir (target/static), ~8 min
#          more on 2 cores.
PROFILE="${IMAGE_PROFILE:-dev}"

# Builds the named binaries (innoxide-agent, innoxide-operator) statically.
build_binaries() {
  local bin bins=("$@")
  case "$PROFILE" in
    dev)
      [ -z "${IMAGE_TARGET:-}" ] || { log "IMAGE_TARGET needs IMAGE_PROFILE=image"; exit 2; }
      log "linking static ${bins[*]} from the dev build"
      BIN_DIR="$ROOT/target/debug"
      for bin in "${bins[@]}"; do
        "${CARGO:-cargo}" rustc --locked -p "$bin" --bin "$bin" -- \
          -C target-feature=+crt-static -C strip=symbols
        # Cargo links the dynamic binary again at its next build: keep this one.
        mkdir -p "$TARGET_DIR/dev"
        cp "$BIN_DIR/$bin" "$TARGET_DIR/dev/$bin"
      done
      BIN_DIR="$TARGET_DIR/dev"
      ;;
    image)
      log "building static ${bins[*]} (profile image, $TARGET_DIR)"
      local args=()
      for bin in "${bins[@]}"; do args+=(-p "$bin" --bin "$bin"); done
      # One cargo invocation for both: their shared crates build once.
      RUSTFLAGS="-C target-feature=+crt-static" "${CARGO:-cargo}" build --locked --profile image \
        --target "$TARGET" --target-dir "$TARGET_DIR" "${args[@]}"
      BIN_DIR="$TARGET_DIR/$TARGET/image"
      ;;
    *) log "unknown IMAGE_PROFILE $PROFILE (dev, image)"; exit 2 ;;
  esac
  for bin in "${bins[@]}"; do
    # No program interpreter = no dynamic loader = static (ldd: "statically linked").
    if readelf -l "$BIN_DIR/$bin" | grep -q INTERP; then
      log "$bin is dynamically linked; refusing to put it in an image"; exit 1
    fi
  done
}

# A minimal root file system for one static binary: the binary, a non-root
# user (65532, as distroless images use), the CA bundle for TLS to object
# stores, and a writable /tmp.
stage_binary_rootfs() {
  local name="$1" rootfs="$STAGE/$1/rootfs"
  rm -rf "$rootfs"
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  install -m 0755 "$BIN_DIR/$name" "$rootfs/usr/local/bin/$name"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  cp "images/Containerfile.${name#innoxide-}" "$STAGE/$name/Containerfile"
}

# The label that records what an image was built from: an image whose
# inputs are unchanged is not built again (a second `make images`, or the
# one in `make test` after a manual one, costs seconds).
INPUTS_LABEL=dev.innoxide.inputs

# Whether `ref` exists and was built from `inputs` (a digest).
up_to_date() {
  local ref="$1" inputs="$2"
  [ "$(podman image inspect --format "{{index .Labels \"$INPUTS_LABEL\"}}" "$ref" 2>/dev/null)" = "$inputs" ]
}

describe_image() {
  local ref="$1"
  log "$ref: $(podman image inspect --format '{{.Size}}' "$ref" | numfmt --to=iec) ($(podman image inspect --format '{{.Id}}' "$ref" | cut -c1-12))$2"
}

build_image() {
  local context="$1" ref="$2" inputs="$3"; shift 3
  podman build --quiet --layers=false --arch "$ARCH" --file "$context/Containerfile" --tag "$ref" \
    --label "$INPUTS_LABEL=$inputs" "$@" "$context" >/dev/null
  describe_image "$ref" ""
}

build_binary_image() {
  local name="$1" ref="$REGISTRY/$1:$TAG" inputs
  stage_binary_rootfs "$name"
  inputs="$( (cd "$STAGE/$name" && find . -type f -print0 | sort -z | xargs -0 sha256sum
             sha256sum "$ROOT/scripts/images.sh"; echo "$VERSION $REVISION $SOURCE $PROFILE") | sha256sum | cut -c1-64)"
  if up_to_date "$ref" "$inputs"; then describe_image "$ref" ", up to date"; return; fi
  build_image "$STAGE/$name" "$ref" "$inputs" \
    --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "SOURCE=$SOURCE"
}

# The test bed's MySQL prefix as a root file system: sid's own libc and
# loader at their usual paths, mysqld's user 999, its data and socket folders.
build_mysql_image() {
  local prefix
  prefix="$(bash scripts/testbed.sh mysql | tail -n1)"
  local mysqld_version
  mysqld_version="$("$prefix/bin/mysqld" --version | sed -n 's/.* Ver \([0-9.]*\).*/\1/p')"
  local context="$STAGE/mysql" rootfs="$STAGE/mysql/rootfs" ref="localhost/innoxide-test-mysql:$mysqld_version"
  # Its inputs: the prefix's files (names, sizes, times), this script and
  # the Containerfile; hashing them is much cheaper than staging 370 MB.
  local inputs
  inputs="$( (cd "$prefix/root" && find . -printf '%P %s %T@ %m\n' | sort
             sha256sum "$ROOT/scripts/images.sh" "$ROOT/images/Containerfile.mysql" /etc/ssl/certs/ca-certificates.crt) \
             | sha256sum | cut -c1-64)"
  if up_to_date "$ref" "$inputs"; then
    describe_image "$ref" ", up to date"
    podman tag "$ref" localhost/innoxide-test-mysql:latest
    return
  fi
  rm -rf "$context"
  mkdir -p "$rootfs"
  cp -a "$prefix/root/." "$rootfs/"
  # Debian's merged /usr: the loader is found at /lib64, tools at /bin, /sbin.
  for link in bin sbin lib lib64; do
    [ -e "$rootfs/usr/$link" ] && [ ! -e "$rootfs/$link" ] && ln -s "usr/$link" "$rootfs/$link"
  done
  mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/var/lib/mysql" "$rootfs/var/run/mysqld" "$rootfs/var/lib/mysql-files"
  chmod 1777 "$rootfs/tmp" "$rootfs/var/run/mysqld"
  chown 999:999 "$rootfs/var/lib/mysql" "$rootfs/var/lib/mysql-files"
  chmod 0750 "$rootfs/var/lib/mysql-files"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nmysql:x:999:999:MySQL Server:/var/lib/mysql:/sbin/nologin\n' >"$rootfs/etc/passwd"
  # Real MySQL images carry a CA bundle (Oracle Linux's, Debian's), and the
  # agent's HTTP client refuses to start without one, even for http://.
  mkdir -p "$rootfs/etc/ssl/certs"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:\nmysql:x:999:\n' >"$rootfs/etc/group"
  # Perl tools and docs are not needed to run mysqld.
  rm -rf "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/lib/x86_64-linux-gnu/perl"* \
         "$rootfs/usr/share/perl"* "$rootfs/usr/bin/perl"* "$rootfs/usr/bin/cpan"*
  cp images/Containerfile.mysql "$context/Containerfile"
  build_image "$context" "$ref" "$inputs" --build-arg "VERSION=$mysqld_version"
  podman tag "$ref" localhost/innoxide-test-mysql:latest
  rm -rf "$rootfs"
}

what=("$@")
[ "${#what[@]}" -eq 0 ] && what=(all)
for w in "${what[@]}"; do
  case "$w" in
    agent|operator|mysql|all) ;;
    *) log "unknown image $w (agent, operator, mysql, all)"; exit 2 ;;
  esac
done
wants() { for w in "${what[@]}"; do [ "$w" = "$1" ] || [ "$w" = all ] && return 0; done; return 1; }
bins=()
if wants agent; then bins+=(innoxide-agent); fi
if wants operator; then bins+=(innoxide-operator); fi
if [ "${#bins[@]}" -gt 0 ]; then build_binaries "${bins[@]}"; fi
if wants agent; then build_binary_image innoxide-agent; fi
if wants operator; then build_binary_image innoxide-operator; fi
if wants mysql; then
  [ "$ARCH" = amd64 ] || { log "the test MySQL image is amd64 only (the test bed's packages)"; exit 2; }
  build_mysql_image
fi

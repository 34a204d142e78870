#!/usr/bin/env bash
# Installs Azurite, Microsoft's Azure Storage emulator (a Node.js program,
# from the npm registry with the machine's node and npm), into the test bed's
# cache folder. The repository tests run the agent's az:// code against it:
# real Blob REST calls with Shared Key signatures that Azurite checks.
# Idempotent: a second run with everything in place returns at once.
# Prints the prefix on its last line.
set -euo pipefail

CACHE="${INNOXIDE_CACHE:-$HOME/.cache/innoxide}"
PREFIX="$CACHE/azurite"
VERSION="3.35.0"
STAMP="$PREFIX/.installed-$VERSION"

if [ ! -f "$STAMP" ] || [ ! -x "$PREFIX/node_modules/.bin/azurite-blob" ]; then
  command -v npm >/dev/null || { echo "azurite: npm is needed (Node.js 18+)" >&2; exit 1; }
  printf 'testbed: installing Azurite %s (npm)\n' "$VERSION" >&2
  rm -rf "$PREFIX.partial"
  mkdir -p "$PREFIX.partial"
  (cd "$PREFIX.partial" && npm install --no-audit --no-fund --silent --prefix . "azurite@$VERSION" >/dev/null)
  rm -rf "$PREFIX"
  mv "$PREFIX.partial" "$PREFIX"
  touch "$STAMP"
fi
echo "$PREFIX"

#!/usr/bin/env bash
# Installs the chart checker's tools into a Python venv in the test bed's
# cache folder, from PyPI with the machine's python3 and pip:
#   - helm-python-sdk: a ctypes binding of Helm v4's own Go SDK (render, lint),
#     so `make test` checks the chart with Helm's code, with no helm binary;
#   - kubernetes-validate: the Kubernetes OpenAPI schemas, to validate every
#     rendered object strictly (unknown fields are errors).
# Idempotent: a second run with everything in place returns at once.
# Prints the venv's python on its last line.
set -euo pipefail

CACHE="${INNOXIDE_CACHE:-$HOME/.cache/innoxide}"
HELM_SDK="0.2.2"
VALIDATE="1.33.1"
PREFIX="$CACHE/helm-venv"
STAMP="$PREFIX/.installed-$HELM_SDK-$VALIDATE"

if [ ! -f "$STAMP" ] || [ ! -x "$PREFIX/bin/python" ]; then
  command -v python3 >/dev/null || { echo "helm: python3 (3.9+) with venv is needed" >&2; exit 1; }
  printf 'testbed: installing helm-python-sdk %s and kubernetes-validate %s (PyPI)\n' "$HELM_SDK" "$VALIDATE" >&2
  rm -rf "$PREFIX.partial"
  python3 -m venv "$PREFIX.partial"
  "$PREFIX.partial/bin/python" -m pip install --quiet --disable-pip-version-check \
    "helm-python-sdk==$HELM_SDK" "kubernetes-validate==$VALIDATE" >&2
  # Only `python -m` is used, so the venv works from its final folder.
  rm -rf "$PREFIX"
  mv "$PREFIX.partial" "$PREFIX"
  touch "$STAMP"
fi
echo "$PREFIX/bin/python"

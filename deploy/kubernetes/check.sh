#!/usr/bin/env bash
# Validates every manifest in this folder against the Kubernetes API schemas with
# kubernetes-validate (PyPI; it bundles the OpenAPI schemas of each Kubernetes
# release, so nothing is fetched at run time), in strict mode: a misspelt or
# misplaced field is an error, as are wrong types. It is installed into a venv under
# the target dir. Versions: the oldest release these manifests need (1.30: the
# preStop sleep action is on by default from there) and the newest the package
# knows; KUBE_VERSIONS overrides. What a schema cannot say (enum values, the
# manifests agreeing with each other and with wsgate.toml) tests/deploy_kubernetes.rs
# checks. Prints SKIP and succeeds when the package cannot be installed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PKG="kubernetes-validate==1.37.0"
VERSIONS="${KUBE_VERSIONS:-1.30.0 1.37.0}"
VENV="${CARGO_TARGET_DIR:-$ROOT/target}/kubernetes-validate"
KV="$VENV/bin/kubernetes-validate"
if [ ! -x "$KV" ]; then
  echo "== installing $PKG into $VENV"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    echo "SKIP kubernetes manifests: cannot create a Python venv (python3 -m venv)"; exit 0
  fi
  if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check "$PKG" >/dev/null 2>&1; then
    rm -rf "$VENV"
    echo "SKIP kubernetes manifests: cannot install $PKG with pip"; exit 0
  fi
fi
"$KV" --version
cd "$HERE"
for v in $VERSIONS; do
  "$KV" --strict --kubernetes-version "$v" ./*.yaml
done

#!/usr/bin/env bash
# Checks the alerting rules: `promtool check rules` (syntax, PromQL) and
# `promtool test rules` (each alert fires on the trouble it names, not otherwise).
# promtool comes from Debian's `prometheus` package, unpacked (not installed: no
# daemon, no service, no postinst) into target/promtool/ when not on PATH.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PROMTOOL="$(command -v promtool || true)"
if [ -z "$PROMTOOL" ]; then
  DEST="${CARGO_TARGET_DIR:-$ROOT/target}/promtool"
  PROMTOOL="$DEST/usr/bin/promtool"
  if [ ! -x "$PROMTOOL" ]; then
    echo "== unpacking promtool from Debian's prometheus package into $DEST"
    rm -rf "$DEST" && mkdir -p "$DEST/deb"
    (cd "$DEST/deb" && apt-get download prometheus >/dev/null 2>&1) \
      || { apt-get update -qq >/dev/null 2>&1 && (cd "$DEST/deb" && apt-get download prometheus >/dev/null 2>&1); } \
      || { echo "SKIP alert rules: cannot download Debian's prometheus package (apt-get download prometheus)"; exit 0; }
    dpkg-deb -x "$DEST"/deb/prometheus_*.deb "$DEST"
  fi
fi
"$PROMTOOL" --version | head -1
cd "$HERE"
"$PROMTOOL" check rules wsgate-alerts.yml
"$PROMTOOL" test rules wsgate-alerts.test.yml

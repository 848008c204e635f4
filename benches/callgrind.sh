#!/usr/bin/env bash
# Instructions wsgate executes per message and per handshake, counted by valgrind's
# callgrind: unlike wall-clock or CPU time, the count does not depend on what else
# this shared machine is doing, so two builds can be compared exactly.
#
#   benches/callgrind.sh                          # the current tree (release build)
#   WSGATE_BIN=/path/to/other/wsgate benches/callgrind.sh   # another build, same load
#
# Each figure is the difference of two runs that differ only in the amount of work
# (so start-up, TLS handshakes and shutdown cancel out):
#   per message:   C connections x M1 vs x M2 binary echo round trips of SIZE bytes;
#   per handshake: H1 vs H2 new TLS 1.3 connections with an upgrade and an echo.
# LIMITS_EXTRA adds lines to [limits] (e.g. "validate_utf8 = false"), LISTENER_EXTRA to
# the [[listener]] (e.g. "session_tickets = false").
# KIND=text echoes text messages (mixed ASCII and multi-byte UTF-8) instead of
# binary; HANDSHAKES=0 skips the handshake pair; HS_ARGS="--resume" counts resumed
# handshakes (session tickets) instead of full ones; ECHO=0 skips the echo pair. NO_BUILD=1 uses the binaries already in
# target/release (no cargo, so no waiting on the cargo lock); KEEP_DIR=/some/dir keeps
# the callgrind outputs there, for `callgrind_annotate --inclusive=yes DIR/echo2.callgrind`.
# PORT and BACKEND_PORT (default 19643, 19601) move it off ports in use; it refuses
# to start when either is taken.
# A message is one round trip through the proxy (client -> backend -> client).
# Needs valgrind (installed with apt-get when missing). Loopback only; bounded.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BIN="${WSGATE_BIN:-$ROOT/target/release/wsgate}"
C="${C:-10}" M1="${M1:-500}" M2="${M2:-1500}" SIZE="${SIZE:-64}" WINDOW="${WINDOW:-1}"
H1="${H1:-20}" H2="${H2:-60}"
HOST=127.0.0.1 BACKEND_PORT="${BACKEND_PORT:-19601}" PORT="${PORT:-19643}"
# A listener already there (another run of this script) would answer instead of the
# wsgate under measurement, and the counts would be of a process that did nothing.
for p in "$BACKEND_PORT" "$PORT"; do
  if [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
    echo "port $p is already in use (another benchmark?); set PORT / BACKEND_PORT" >&2; exit 1
  fi
done

if ! command -v valgrind >/dev/null; then
  apt-get install -y -qq valgrind >/dev/null || { echo "valgrind is not installed and cannot be" >&2; exit 1; }
fi
if [ "${NO_BUILD:-0}" = 1 ]; then
  :
elif [ -z "${WSGATE_BIN:-}" ]; then
  cargo build --release --locked --quiet --bin wsgate --example wsbench --example bench_echo
else
  cargo build --release --locked --quiet --example wsbench --example bench_echo
fi
WSBENCH="$ROOT/target/release/examples/wsbench"
WORK="$(mktemp -d /tmp/wsgate-callgrind.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP_DIR:-}" ] && mkdir -p "$KEEP_DIR" && cp "$WORK"/*.callgrind "$KEEP_DIR"/ 2>/dev/null; rm -rf "$WORK"' EXIT

"$ROOT/target/release/examples/bench_echo" "$HOST:$BACKEND_PORT" >/dev/null 2>&1 &
. "$ROOT/benches/bench-config.sh"
bench_wsgate_config "$PORT" "$BACKEND_PORT" "${LIMITS_EXTRA:-}" "${LISTENER_EXTRA:-}" > "$WORK/wsgate.toml"

wait_port() {
  local i
  for i in $(seq 1 600); do
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; return 1
}
wait_port "$BACKEND_PORT"

# instructions NAME WSBENCH-ARGS...: runs wsgate under callgrind for one load; prints Ir.
instructions() {
  local name="$1"; shift
  local out="$WORK/$name.callgrind"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" run -c "$WORK/wsgate.toml" \
    > "$WORK/$name.log" 2>&1 &
  local pid=$!
  wait_port "$PORT"
  "$WSBENCH" "$@" --addr "$HOST:$PORT" --timeout 600 > "$WORK/$name.bench" 2>&1 \
    || { cat "$WORK/$name.bench" >&2; exit 1; }
  kill -TERM "$pid"; wait "$pid" || true
  grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}'
}

KIND="${KIND:-binary}"
if [ "${ECHO:-1}" = 1 ]; then
  e1=$(instructions echo1 echo --conns "$C" --messages "$M1" --size "$SIZE" --window "$WINDOW" --kind "$KIND")
  e2=$(instructions echo2 echo --conns "$C" --messages "$M2" --size "$SIZE" --window "$WINDOW" --kind "$KIND")
else
  e1=0 e2=0
fi
if [ "${HANDSHAKES:-1}" = 1 ]; then
  # shellcheck disable=SC2086 # HS_ARGS is a list of flags
  h1=$(instructions hs1 handshake --count "$H1" --concurrency 4 ${HS_ARGS:-})
  # shellcheck disable=SC2086
  h2=$(instructions hs2 handshake --count "$H2" --concurrency 4 ${HS_ARGS:-})
else
  h1=0 h2=0
fi
per_msg=$(( (e2 - e1) / (C * (M2 - M1)) ))
per_hs=$(( (h2 - h1) / (H2 - H1) ))
echo "binary: $BIN"
echo "echo ${SIZE} B $KIND x $C conns, $M1 vs $M2 messages each: $e1 vs $e2 instructions"
echo "handshakes, $H1 vs $H2: $h1 vs $h2 instructions"
echo "RESULT instructions_per_message=$per_msg instructions_per_handshake=$per_hs"

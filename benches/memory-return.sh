#!/usr/bin/env bash
# Does memory come back after a spike? RSS of one wsgate process before 2,000 idle
# TLS WebSocket sessions open, while it holds them, and 1 s and 5 s after they close
# (issue 11: 5 s after, within 1.25x of before). Before = after a warm-up (50
# handshakes and 2,000 echoes), as compare.sh's idle scenario (d) measures it.
#
#   benches/memory-return.sh                      # this tree's release build, 3 runs
#   WSGATE_BIN=/tmp/wsgate-glibc RUNS=1 benches/memory-return.sh   # another build
#   MALLOC_CONF=tcache:false benches/memory-return.sh              # jemalloc options
#
# Loopback only (127.0.0.1:19701 backend, :19743 proxy); bounded.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNS="${RUNS:-3}" CONNS="${CONNS:-2000}"
BIN="${WSGATE_BIN:-$ROOT/target/release/wsgate}"
EX="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"
(cd "$ROOT" && cargo build --release --locked --quiet --example wsbench --example bench_echo)
[ -n "${WSGATE_BIN:-}" ] || (cd "$ROOT" && cargo build --release --locked --quiet --bin wsgate)
WORK="$(mktemp -d /tmp/wsgate-mem.XXXXXX)"
trap 'kill $E $W 2>/dev/null || true; rm -rf "$WORK"' EXIT
. "$ROOT/benches/bench-config.sh"
bench_wsgate_config 19743 19701 > "$WORK/w.toml"
"$EX/bench_echo" 127.0.0.1:19701 >/dev/null 2>&1 & E=$!
W=""
echo "binary: $BIN${MALLOC_CONF:+ MALLOC_CONF=$MALLOC_CONF}; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$RUNS"); do
  "$BIN" run -c "$WORK/w.toml" 2>"$WORK/w.err" & W=$!
  for _ in $(seq 1 100); do ss -Hltn "sport = :19743" | grep -q . && break; sleep 0.1; done
  "$EX/wsbench" handshake --addr 127.0.0.1:19743 --count 50 --concurrency 4 >/dev/null
  "$EX/wsbench" echo --addr 127.0.0.1:19743 --conns 4 --messages 500 --size 1024 --window 8 >/dev/null
  line="$("$EX/wsbench" idle --addr 127.0.0.1:19743 --conns "$CONNS" --hold 3 --pids "$W" | grep '^RESULT')"
  kill "$W"; wait "$W" 2>/dev/null || true; W=""
  echo "$line" | awk '{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
    printf "run: before %d KiB, holding %d KiB (%.2f KiB/session), 1 s after %d KiB, 5 s after %d KiB: %.2fx\n",
      v["rss_before_kib"], v["rss_held_kib"], v["kib_per_session"], v["rss_after_close_kib"], v["rss_after_5s_kib"],
      v["rss_after_5s_kib"] / v["rss_before_kib"]}'
done

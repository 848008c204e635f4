#!/usr/bin/env bash
# Syscalls per round trip of wsgate (1 tokio worker) under strace -c -f, for four loads
# (ping-pong, pipelined, open loop at 5,000 msgs/s, 16 KiB). Needs strace and a release
# build (cargo build --release --bin wsgate --example wsbench --example bench_echo).
# WSGATE_BIN=/other/wsgate counts another build. Loopback only (ports 19701, 19743).
# CPU per message under strace is inflated by ptrace: read only the syscall counts.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"; R=$ROOT/target/release; W=$R/examples/wsbench
BIN="${WSGATE_BIN:-$R/wsgate}"
D="$(mktemp -d /tmp/wsgate-syscalls.XXXXXX)"
. "$ROOT/benches/bench-config.sh"
bench_wsgate_config 19743 19701 > "$D/w.toml"
$R/examples/bench_echo 127.0.0.1:19701 >/dev/null 2>&1 & EP=$!
for i in $(seq 100); do ss -Hltn "sport = :19701" | grep -q . && break; sleep 0.1; done
TOKIO_WORKER_THREADS=1 $BIN run -c $D/w.toml > $D/wsgate.log 2>&1 & WP=$!
trap 'kill $EP $WP 2>/dev/null; rm -rf "$D"' EXIT
for i in $(seq 100); do ss -Hltn "sport = :19743" | grep -q . && break; sleep 0.1; done
run() { # name msgs wsbench-args
  local name=$1 msgs=$2; shift 2
  $W echo --addr 127.0.0.1:19743 --conns 10 --messages 50 --size 64 --window 1 >/dev/null  # warm
  strace -c -f -p $WP -o $D/$name.strace & SP=$!
  sleep 1
  $W "$@" --addr 127.0.0.1:19743 --pids $WP > $D/$name.bench
  kill -INT $SP; wait $SP || true
  echo "== $name ($msgs round trips): $(grep '^RESULT' $D/$name.bench | grep -o 'cpu_us_per_msg=[0-9.]*')"
  awk -v n=$msgs 'NR>2 && $NF!="total" && $4 ~ /^[0-9]+$/ {printf "  %-16s %8d calls  %.2f/msg\n", $NF, $4, $4/n} $NF=="total" {printf "  %-16s %8d calls  %.2f/msg\n", "TOTAL", $4, $4/n}' $D/$name.strace | sort -k2 -n -r | head -9
}
run pipelined64 20000 echo --conns 10 --messages 2000 --size 64 --window 32
run pingpong64 5000 echo --conns 10 --messages 500 --size 64 --window 1
run rate64 10000 rate --conns 50 --rate 5000 --duration 2 --size 64
run sat16k 4000 echo --conns 10 --messages 400 --size 16384 --window 8

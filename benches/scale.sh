#!/usr/bin/env bash
# 100,000 concurrent TLS WebSocket sessions on this machine, through several wsgate
# processes sharing one TLS port with SO_REUSEPORT (the per-process open-file limit
# is 20,000 here: one process holds at most about 9,990 proxied sessions).
#
#   benches/scale.sh                    # 100,000 sessions held 60 s; appends to benches/RESULTS.md
#   benches/scale.sh --quick            # 3,000 sessions held 5 s; prints only
#   benches/scale.sh --sessions 50000 --hold 30 --wsgate 6 --out /tmp/scale.md
#
# What it does:
#   1. builds wsgate, examples/scale_client and examples/scale_backend (release);
#   2. starts BACKENDS echo backends (plain ws://, one port each, 127.0.0.1:19810+),
#      then WSGATE wsgate processes on 127.0.0.1:19800 (reuse_port, one tokio worker
#      each, the same config; max_connections derived from the open-file limit),
#      waiting for each to listen;
#   3. starts CLIENTS client processes; client i opens its share of the sessions from
#      the source addresses 127.(20+i).0.0/16 (no ephemeral-port limit, no per-IP limit
#      relaxed: the default per-IP limits stay on), each session TCP + TLS 1.3 + upgrade;
#   4. once every client reports its sessions open, reads every process's RSS and the
#      backends' open session count (the sessions are concurrent: no client goes on
#      before SIGUSR1), holds them HOLD seconds, reads RSS again;
#   5. SIGUSR1: every session echoes one message (checked byte for byte) and closes
#      with 1000 both ways; collects failures (must be 0);
#   6. prints a markdown report (RSS of every process, per session, connect latency
#      percentiles, failures) and appends it to --out.
# Loopback only; every wait is bounded. Needs about 6 GiB of memory at 100,000.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CMDLINE="benches/scale.sh${*:+ $*}"
SESSIONS=100000 HOLD=60 WSGATE=12 BACKENDS=7 CLIENTS=6 CONC=128 OUT="$ROOT/benches/RESULTS.md"
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; SESSIONS=3000; HOLD=5; WSGATE=2; BACKENDS=2; CLIENTS=2; OUT="" ;;
    --sessions) SESSIONS="$2"; shift ;;
    --hold) HOLD="$2"; shift ;;
    --wsgate) WSGATE="$2"; shift ;;
    --backends) BACKENDS="$2"; shift ;;
    --clients) CLIENTS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 64 ;;
  esac
  shift
done

PORT=19800 BACKEND_PORT=19810
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Each process needs up to 20,000 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
[ "$NOFILE" -ge 4096 ] || die "open-file limit $NOFILE is too low"
PER_CLIENT=$(( (SESSIONS + CLIENTS - 1) / CLIENTS ))
[ "$PER_CLIENT" -lt $(( NOFILE - 100 )) ] || die "$PER_CLIENT sessions per client over the open-file limit $NOFILE: more --clients"
[ $(( SESSIONS / BACKENDS )) -lt $(( NOFILE - 100 )) ] || die "too many sessions per backend: more --backends"
[ $(( SESSIONS / WSGATE )) -lt $(( NOFILE / 2 - 600 )) ] || die "too many sessions per wsgate: more --wsgate"

log "building (release)"
(cd "$ROOT" && cargo build --release --locked --quiet --bin wsgate --example scale_client --example scale_backend)

WORK="$(mktemp -d /tmp/wsgate-scale.XXXXXX)"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
wait_line() { # file pattern seconds
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ------------------------------------------------------------------ backends
BACKEND_PIDS=()
POOL=""
for i in $(seq 0 $(( BACKENDS - 1 ))); do
  port=$(( BACKEND_PORT + i ))
  "$BIN/examples/scale_backend" "127.0.0.1:$port" >"$WORK/backend-$i.log" 2>&1 &
  BACKEND_PIDS+=($!); PIDS+=($!)
  POOL+="
[[pool.backend]]
address = \"127.0.0.1:$port\""
done
for i in $(seq 0 $(( BACKENDS - 1 ))); do
  wait_line "$WORK/backend-$i.log" "listening on" 10 || die "backend $i did not start"
done

# ------------------------------------------------------------------ wsgate
cat > "$WORK/wsgate.toml" <<EOF
[server]
workers = 1
log_level = "info,access=off"
drain_spread = "0s"

[admin]
address = ""

[limits]
# The sessions are held silent for the hold: no keepalive Ping during it.
ping_interval = "10m"
idle_timeout = "20m"

[[listener]]
address = "127.0.0.1:$PORT"
reuse_port = true
cert = "$ROOT/certs-example/fullchain.pem"
key = "$ROOT/certs-example/key.pem"

[[pool]]
name = "echo"
balance = "least_conn"
$POOL

[[route]]
path_prefix = "/"
pool = "echo"
EOF
"$BIN/wsgate" check -c "$WORK/wsgate.toml" >/dev/null || die "the generated config does not pass wsgate check"
WSGATE_PIDS=()
for i in $(seq 0 $(( WSGATE - 1 ))); do
  "$BIN/wsgate" run -c "$WORK/wsgate.toml" >"$WORK/wsgate-$i.log" 2>&1 &
  WSGATE_PIDS+=($!); PIDS+=($!)
  wait_line "$WORK/wsgate-$i.log" "listening on" 20 || die "wsgate $i did not start: $(tail -3 "$WORK/wsgate-$i.log")"
done
LIMIT_LINE="$(grep -o 'max_connections = [0-9]* ([^)]*)' "$WORK/wsgate-0.log" | head -1 || true)"
log "$BACKENDS backends, $WSGATE wsgate processes ($LIMIT_LINE); $CLIENTS clients x $PER_CLIENT sessions"
sum_rss() { local t=0 p; for p in "$@"; do t=$(( t + $(rss_kib "$p") )); done; echo "$t"; }
RSS_W0=$(sum_rss "${WSGATE_PIDS[@]}")

# ------------------------------------------------------------------ clients
CLIENT_PIDS=()
T0=$(date +%s.%N)
left=$SESSIONS
for i in $(seq 0 $(( CLIENTS - 1 ))); do
  n=$(( left < PER_CLIENT ? left : PER_CLIENT )); left=$(( left - n ))
  "$BIN/examples/scale_client" --target "127.0.0.1:$PORT" --ca "$ROOT/certs-example/ca.pem" \
    --sessions "$n" --sources "127.$(( 20 + i )).0.0/16" --concurrency "$CONC" --id "$i" \
    --timeout 600 >"$WORK/client-$i.log" 2>&1 &
  CLIENT_PIDS+=($!); PIDS+=($!)
done
for i in $(seq 0 $(( CLIENTS - 1 ))); do
  wait_line "$WORK/client-$i.log" "^OPEN" 900 || die "client $i never reported its sessions open: $(tail -3 "$WORK/client-$i.log")"
done
OPEN_S=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
log "all sessions opened or failed in ${OPEN_S} s"
for p in "${BACKEND_PIDS[@]}"; do kill -USR2 "$p"; done
for i in $(seq 0 $(( BACKENDS - 1 ))); do wait_line "$WORK/backend-$i.log" "^sessions=" 5 || true; done
AT_BACKENDS=$(awk -F= '/^sessions=/ {s += $2} END {print s+0}' "$WORK"/backend-*.log)
OPENED=$(cat "$WORK"/client-*.log | sed -n 's/^OPEN .* opened=\([0-9]*\) .*/\1/p' | awk '{s += $1} END {print s+0}')
OPEN_FAILED=$(cat "$WORK"/client-*.log | sed -n 's/^OPEN .* failed=\([0-9]*\) .*/\1/p' | awk '{s += $1} END {print s+0}')

snapshot() { # label
  local i
  for i in "${!WSGATE_PIDS[@]}"; do echo "$1 wsgate-$i $(rss_kib "${WSGATE_PIDS[$i]}") $(ls "/proc/${WSGATE_PIDS[$i]}/fd" | wc -l)"; done
  for i in "${!BACKEND_PIDS[@]}"; do echo "$1 backend-$i $(rss_kib "${BACKEND_PIDS[$i]}") $(ls "/proc/${BACKEND_PIDS[$i]}/fd" | wc -l)"; done
  for i in "${!CLIENT_PIDS[@]}"; do echo "$1 client-$i $(rss_kib "${CLIENT_PIDS[$i]}") $(ls "/proc/${CLIENT_PIDS[$i]}/fd" | wc -l)"; done
}
snapshot open >"$WORK/rss.txt"
log "$OPENED open ($AT_BACKENDS at the backends, $OPEN_FAILED failed); holding $HOLD s"
sleep "$HOLD" # the hold itself (what is measured is that every session survives it)
snapshot held >>"$WORK/rss.txt"
for p in "${BACKEND_PIDS[@]}"; do kill -USR2 "$p"; done
sleep 0.5
HELD_AT_BACKENDS=$(awk -F= '/^sessions=/ {last[FILENAME]=$2} END {for (f in last) s += last[f]; print s+0}' "$WORK"/backend-*.log)

log "echo and close"
T1=$(date +%s.%N)
for p in "${CLIENT_PIDS[@]}"; do kill -USR1 "$p"; done
CLIENT_FAIL=0
for p in "${CLIENT_PIDS[@]}"; do wait "$p" || CLIENT_FAIL=$(( CLIENT_FAIL + 1 )); done
ECHO_S=$(awk -v a="$T1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
ECHOED=$(cat "$WORK"/client-*.log | sed -n 's/^DONE .* echoed_and_closed=\([0-9]*\) .*/\1/p' | awk '{s += $1} END {print s+0}')
FAILED=$(cat "$WORK"/client-*.log | sed -n 's/^DONE .* failed=\([0-9]*\) .*/\1/p' | awk '{s += $1} END {print s+0}')
FAILED=${FAILED:-$SESSIONS}
sleep 5 # memory 5 s after the sessions closed
snapshot closed >>"$WORK/rss.txt"
WARNINGS=$(cat "$WORK"/wsgate-*.log | grep -c -E ' (WARN|ERROR) ' || true)

# ------------------------------------------------------------------ report
total() { awk -v l="$1" -v k="$2" '$1 == l && $2 ~ "^"k {s += $3} END {print s+0}' "$WORK/rss.txt"; }
per() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
LAT=$(cat "$WORK"/client-*.log | sed -n 's/^OPEN .*connect_ms_\(p50=[^ ]*\) \(p90=[^ ]*\) \(p99=[^ ]*\) \(p999=[^ ]*\) \(max=[^ ]*\).*/\1 \2 \3 \4 \5/p')
report() {
  echo
  echo "## Scale: $SESSIONS concurrent sessions ($(date -u +%Y-%m-%d), commit $(git -C "$ROOT" rev-parse --short HEAD))"
  echo
  echo "\`$CMDLINE\` on $(nproc) cores, load average before: $LOAD0, after: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "$WSGATE wsgate processes on one SO_REUSEPORT port (1 worker each; $LIMIT_LINE), $BACKENDS backends, $CLIENTS client processes from 127.20-$(( 19 + CLIENTS )).0.0/16."
  echo
  echo "| figure | value |"
  echo "|---|---|"
  echo "| sessions opened / asked | $OPENED / $SESSIONS (open failures: $OPEN_FAILED) |"
  echo "| open at the backends at once | $AT_BACKENDS (after the ${HOLD} s hold: $HELD_AT_BACKENDS) |"
  echo "| time to open them all | ${OPEN_S} s |"
  echo "| echoed byte for byte and closed with 1000 | $ECHOED (failures: $FAILED; client processes failing: $CLIENT_FAIL) in ${ECHO_S} s |"
  echo "| wsgate RSS before / holding / 5 s after close | $(( RSS_W0 / 1024 )) / $(( $(total held wsgate) / 1024 )) / $(( $(total closed wsgate) / 1024 )) MiB |"
  echo "| wsgate RSS per session (holding - before) | $(per "$(( $(total held wsgate) - RSS_W0 ))" "$OPENED") KiB |"
  echo "| backends' RSS holding, per session | $(( $(total held backend) / 1024 )) MiB, $(per "$(total held backend)" "$OPENED") KiB |"
  echo "| clients' RSS holding, per session | $(( $(total held client) / 1024 )) MiB, $(per "$(total held client)" "$OPENED") KiB |"
  echo "| wsgate warnings or errors logged | $WARNINGS |"
  echo
  echo "Connect latency (TCP + TLS 1.3 full handshake + upgrade through to the backend, ms, $CONC in flight per client), per client process:"
  echo
  echo '```'
  echo "$LAT"
  echo '```'
  echo
  echo "RSS (KiB) and open descriptors of every process:"
  echo
  echo '```'
  awk '{printf "%-7s %-11s %9s KiB %6s fds\n", $1, $2, $3, $4}' "$WORK/rss.txt"
  echo '```'
}
R="$(report)"
echo "$R"
if [ -n "$OUT" ]; then echo "$R" >>"$OUT"; log "appended to $OUT"; fi
[ "$FAILED" = 0 ] && [ "$OPEN_FAILED" = 0 ] && [ "$CLIENT_FAIL" = 0 ] && [ "$ECHOED" = "$SESSIONS" ]

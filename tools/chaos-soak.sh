#!/usr/bin/env bash
# Chaos soak (not part of the default CI run): --clients clients (default 1,000)
# exchange sequence-numbered messages through the real wsgate binary with three
# backends for --secs seconds (default 600), while backends are killed (SIGKILL)
# and restarted, the config is reloaded (SIGHUP), and some clients drop their
# connections without a Close. Loopback only; bounded by --secs (+ 2 minutes).
#
#   tools/chaos-soak.sh [--secs 600] [--clients 1000] [--out FILE]
#
# Pass: no message lost or out of order on a session the client ended itself;
# every session the server ended got Close 1014, on a backend that was killed;
# no new connection failed (two backends are always up); wsgate's open file
# descriptors and RSS back to their baseline (taken after a warm-up with the same
# clients) once the clients are gone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS=600; CLIENTS=1000; OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --secs) SECS="$2"; shift ;;
    --clients) CLIENTS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
  esac
  shift
done
WORK="$(mktemp -d /tmp/wsgate-soak.XXXXXX)"
PORT=19853
BPORTS=(19861 19862 19863)
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
ulimit -n 20000 2>/dev/null || true

(cd "$ROOT" && cargo build --release --locked --quiet --bin wsgate --example soak --example interop_backend)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"

declare -A BPID=()
start_backend() { # index
  "$BIN/examples/interop_backend" --port "${BPORTS[$1]}" --name "b$1" --plain-echo >>"$WORK/b$1.log" 2>&1 &
  BPID[$1]=$!
}
cleanup() {
  # The backends' current pids (the fault loop restarts them and records them).
  if [ -s "$WORK/bpids" ]; then read -r -a LAST <"$WORK/bpids"; for i in 0 1 2; do BPID[$i]="${LAST[$i]}"; done; fi
  for i in 0 1 2; do kill "${BPID[$i]:-}" 2>/dev/null || true; done
  [ -n "${GATE:-}" ] && kill "$GATE" 2>/dev/null || true
  [ -n "${FAULTS:-}" ] && kill "$FAULTS" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

write_config() { # generation
  cat >"$WORK/wsgate.toml" <<CONF
# generation $1
[server]
close_timeout = "5s"

[limits]
exempt = ["127.0.0.0/8"]
max_connections = 10000
ping_interval = "0s"
idle_timeout = "0s"

[[listener]]
address = "127.0.0.1:$PORT"
cert = "$ROOT/certs-example/fullchain.pem"
key = "$ROOT/certs-example/key.pem"

[[pool]]
name = "p"
retries = 2
max_fails = 1
fail_timeout = "3s"
[pool.health]
kind = "tcp"
interval = "1s"
timeout = "500ms"
rise = 1
fall = 1
$(for i in 0 1 2; do printf '[[pool.backend]]\naddress = "127.0.0.1:%s"\nweight = %s\n' "${BPORTS[$i]}" "$(( ($1 + i) % 3 + 1 ))"; done)

[[route]]
pool = "p"
CONF
}

for i in 0 1 2; do start_backend "$i"; done
write_config 0
"$BIN/wsgate" run -c "$WORK/wsgate.toml" >"$WORK/wsgate.log" 2>&1 &
GATE=$!
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/wsgate.log" && break; sleep 0.1; done
grep -q "listening on" "$WORK/wsgate.log" || { log "wsgate did not start"; cat "$WORK/wsgate.log"; exit 1; }

fds() { ls "/proc/$GATE/fd" | wc -l; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$GATE/status"; }
settle() { # wait (bounded) until wsgate holds no client connection: fds stop falling
  local prev=-1 n
  for _ in $(seq 1 60); do n=$(fds); [ "$n" = "$prev" ] && break; prev=$n; sleep 1; done
}

log "warm-up: $CLIENTS clients for 20 s (work dir $WORK)"
"$BIN/examples/soak" --addr "127.0.0.1:$PORT" --clients "$CLIENTS" --secs 20 --abrupt 0 >"$WORK/warmup.out" 2>&1
settle
FD0=$(fds); RSS0=$(rss)
log "baseline: $FD0 fds, $RSS0 KiB RSS; soak: $CLIENTS clients for $SECS s"

# The faults, for the whole soak: every 20 s a backend is killed (and restarted
# 5 s later); every 45 s the config is rewritten (weights rotate) and reloaded.
(
  t0=$(date +%s); kills=0; reloads=0; gen=0
  while [ $(( $(date +%s) - t0 )) -lt $(( SECS - 15 )) ]; do
    sleep 20
    i=$(( RANDOM % 3 ))
    echo "$(date +%s) kill b$i (pid ${BPID[$i]})" >>"$WORK/faults.log"
    kill -KILL "${BPID[$i]}" 2>/dev/null || true
    wait "${BPID[$i]}" 2>/dev/null || true
    kills=$((kills + 1))
    sleep 5
    start_backend "$i"
    echo "${BPID[0]} ${BPID[1]} ${BPID[2]}" >"$WORK/bpids"
    if [ $(( ( $(date +%s) - t0 ) / 45 )) -gt "$reloads" ]; then
      gen=$((gen + 1)); reloads=$((reloads + 1))
      write_config "$gen"
      kill -HUP "$GATE"
      echo "$(date +%s) reload $gen" >>"$WORK/faults.log"
    fi
  done
  echo "kills=$kills reloads=$reloads" >"$WORK/faults.sum"
) &
FAULTS=$!

timeout $((SECS + 120)) "$BIN/examples/soak" --addr "127.0.0.1:$PORT" --clients "$CLIENTS" --secs "$SECS" --abrupt 0.1 >"$WORK/soak.out" 2>&1 || true
wait "$FAULTS" 2>/dev/null || true
FAULTS=""
settle
FD1=$(fds); RSS1=$(rss)
RESULT="$(grep '^RESULT' "$WORK/soak.out" | tail -1)"
KILLS="$(cat "$WORK/faults.sum" 2>/dev/null || echo 'kills=? reloads=?')"
RELOADED="$(grep -c 'configuration reloaded\|reload' "$WORK/wsgate.log" || true)"
log "$RESULT"
log "faults: $KILLS; fds $FD0 -> $FD1; RSS $RSS0 -> $RSS1 KiB"
grep '^soak:' "$WORK/soak.out" | head -10 >&2 || true

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$RESULT"; }
fail=0
[ -n "$RESULT" ] || { log "FAIL: no result from the clients"; fail=1; }
[ "$(get losses)" = 0 ] || { log "FAIL: lost messages"; fail=1; }
[ "$(get order_errors)" = 0 ] || { log "FAIL: echoes out of order or duplicated"; fail=1; }
[ "$(get connect_failures)" = 0 ] || { log "FAIL: new connections failed"; fail=1; }
ended="$(get ended_by)"
if [ "$ended" != none ]; then
  for part in ${ended//,/ }; do
    codes="${part#*:}"
    for c in ${codes//+/ }; do
      [ "${c%%x*}" = 1014 ] || { log "FAIL: a server-ended session got ${c%%x*} (not 1014) on ${part%%:*}"; fail=1; }
    done
  done
fi
[ "$FD1" -le $((FD0 + 2)) ] || { log "FAIL: fds did not return to the baseline ($FD0 -> $FD1)"; fail=1; }
[ "$RSS1" -le $((RSS0 + 32768)) ] || { log "FAIL: RSS did not return near the baseline ($RSS0 -> $RSS1 KiB)"; fail=1; }
SUMMARY="- $(date -u '+%Y-%m-%d %H:%M UTC'), \`tools/chaos-soak.sh --secs $SECS --clients $CLIENTS\`, load average at end $(cut -d' ' -f1-3 /proc/loadavg): ${RESULT#RESULT }; faults: $KILLS (backend SIGKILLs, each restarted 5 s later; SIGHUP reloads); wsgate fds $FD0 -> $FD1, RSS $RSS0 -> $RSS1 KiB; $([ $fail = 0 ] && echo PASS || echo FAIL)"
echo "$SUMMARY"
[ -n "$OUT" ] && echo "$SUMMARY" >>"$OUT"
exit $fail

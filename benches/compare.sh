#!/usr/bin/env bash
# Compare wsgate with nginx and HAProxy in the same run, on this machine, over loopback.
#
#   benches/compare.sh                 # full run: 5 repetitions, writes benches/RESULTS.md
#   benches/compare.sh --quick         # short smoke run: 1 repetition, small counts
#   benches/compare.sh --reps 3 --proxies "wsgate nginx" --out /tmp/r.md --no-install --keep
#   benches/compare.sh --workers 1 --scenarios "l e r"   # a subset: 1 worker, 3 scenarios
#   benches/compare.sh --proxies "wsgate wsgate-b nginx haproxy" --scenarios "h" \
#     --wsgate-b-limits $'validate_utf8 = false\nbackend_validate_utf8 = false'
#   (--wsgate-limits LINES adds lines to wsgate's [limits]; the proxy wsgate-b is the
#   same binary on its own port with --wsgate-b-limits LINES instead (and
#   --wsgate-b-listener LINES in its [[listener]]; --wsgate-b-bin PATH runs another
#   build as wsgate-b, e.g. the one before a change), so two settings or builds
#   are measured in one run, rotated with the others; "\n" in LINES is a line break)
#   (--keep leaves the work directory in /tmp: configs, logs, raw results.tsv)
#   On a shared machine: flock /tmp/bench.lock benches/compare.sh ... (one benchmark at a time)
#
# What it does (benches/README.md explains the numbers):
#   1. installs nginx and haproxy with apt-get if missing (needs root or sudo),
#   2. builds wsgate, examples/wsbench and examples/bench_echo in release,
#   3. starts one echo backend (bench_echo) on 127.0.0.1,
#   4. for each worker count (--workers, default "1 2": nginx worker_processes, HAProxy
#      nbthread, wsgate [server] workers / TOKIO_WORKER_THREADS), for each repetition,
#      for each proxy (order rotated every repetition): starts the proxy fresh on its own
#      loopback port (TLS 1.3, certs-example/, WebSocket upgrades to the same backend),
#      warms it up, then runs the scenarios (--scenarios, default all): (d) idle sessions /
#      memory, (a) pipelined 64 B, (b) ping-pong 4 KiB, (c) 1 MiB messages, (k) saturated
#      16 KiB, (l) open-loop 64 B at a fixed 5,000 msgs/s (latency from the scheduled send
#      time), (e) full handshakes, (f) handshakes with the client also offering
#      post-quantum hybrid key exchange, (r) resumed handshakes (session tickets),
#      (g)-(i) as (a)-(c) with text messages (mixed ASCII and multi-byte UTF-8); then
#      stops it,
#   5. prints and writes a table of medians per worker count with wsgate/nginx and
#      wsgate/haproxy ratios.
# Only loopback addresses are used; every loop is bounded in count and time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CMDLINE="benches/compare.sh${*:+ $*}"

QUICK=0
REPS=5
PROXIES="wsgate nginx haproxy"
OUT=""
INSTALL=1
KEEP=0

WORKERS="1 2"
SCENARIOS="d a b c k l e f r g h i"
WSGATE_LIMITS=""
WSGATE_B_LIMITS=""
WSGATE_B_LISTENER=""
WSGATE_B_BIN=""
usage() { sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --reps) REPS="$2"; shift ;;
    --proxies) PROXIES="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --no-install) INSTALL=0 ;;
    --keep) KEEP=1 ;;  # keep the work directory (configs, logs, raw results)
    --workers) WORKERS="$2"; shift ;;
    --scenarios) SCENARIOS="$2"; shift ;;
    --wsgate-limits) WSGATE_LIMITS="$(printf '%b' "$2")"; shift ;;
    --wsgate-b-limits) WSGATE_B_LIMITS="$(printf '%b' "$2")"; shift ;;
    --wsgate-b-listener) WSGATE_B_LISTENER="$(printf '%b' "$2")"; shift ;;
    --wsgate-b-bin) WSGATE_B_BIN="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 64 ;;
  esac
  shift
done

# ------------------------------------------------------------------ parameters
HOST=127.0.0.1
BACKEND_PORT=19001
declare -A PORT=([wsgate]=19443 [nginx]=19444 [haproxy]=19445 [wsgate-b]=19446)
HS_CONC=16          # concurrent handshakes in (e)
TIMEOUT=240         # wsbench's own bound on one measurement, seconds
QUIET_MAX=8         # longest wait for other work on the machine to calm down, per measurement
if [ "$QUICK" = 1 ]; then
  [ "$REPS" = 5 ] && REPS=1
  A_MSGS=2000; B_MSGS=50;  C_MSGS=5;  D_CONNS=500;  D_HOLD=1; E_COUNT=300;  L_SECS=2; K_MSGS=200
else
  A_MSGS=10000; B_MSGS=250; C_MSGS=25; D_CONNS=2000; D_HOLD=3; E_COUNT=2000; L_SECS=10; K_MSGS=1000
fi
for w in $WORKERS; do [[ "$w" =~ ^[1-9][0-9]?$ ]] || { echo "--workers: '$w' is not a worker count" >&2; exit 64; }; done
for s in $SCENARIOS; do [[ "$s" =~ ^[a-ilkr]$ ]] || { echo "--scenarios: unknown scenario '$s' (a-i, k, l, r)" >&2; exit 64; }; done
has_scen() { [[ " $SCENARIOS " == *" $1 "* ]]; }
A_CONNS=50;  A_SIZE=64;      A_WIN=32
B_CONNS=200; B_SIZE=4096;    B_WIN=1
C_CONNS=20;  C_SIZE=1048576; C_WIN=1
L_CONNS=50;  L_SIZE=64;      L_RATE=5000
K_CONNS=20;  K_SIZE=16384;   K_WIN=8
if [ -z "$OUT" ]; then
  if [ "$QUICK" = 1 ]; then OUT=""; else OUT="$ROOT/benches/RESULTS.md"; fi
fi

CERT="$ROOT/certs-example/fullchain.pem"
KEY="$ROOT/certs-example/key.pem"
CA="$ROOT/certs-example/ca.pem"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WSBENCH="$BIN/examples/wsbench"
CLK_TCK="$(getconf CLK_TCK)"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ prerequisites
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need_install=0
for p in $PROXIES; do
  case "$p" in
    wsgate|wsgate-b) ;;
    nginx) command -v nginx >/dev/null || PATH="$PATH:/usr/sbin"; command -v nginx >/dev/null || need_install=1 ;;
    haproxy) command -v haproxy >/dev/null || PATH="$PATH:/usr/sbin"; command -v haproxy >/dev/null || need_install=1 ;;
    *) die "unknown proxy '$p' (wsgate, wsgate-b, nginx, haproxy)" ;;
  esac
done
if [ "$need_install" = 1 ]; then
  [ "$INSTALL" = 1 ] || die "nginx/haproxy missing and --no-install given"
  log "installing nginx and haproxy (apt-get)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light haproxy \
    || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy
fi

# 2,000 idle sessions hold 2 sockets each in the proxy; stay within the open-file limit.
NOFILE="$(ulimit -n)"
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((2 * D_CONNS + 512)) ]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  NOFILE="$(ulimit -n)"
  [ "$NOFILE" = unlimited ] || [ "$NOFILE" -ge $((2 * D_CONNS + 512)) ] \
    || die "open-file limit $NOFILE is too low for $D_CONNS idle sessions"
fi
# Per-proxy connection caps: a session is 2 sockets; keep well under the limit.
MAXCONN=8000
if [ "$NOFILE" != unlimited ] && [ $((2 * MAXCONN + 1000)) -gt "$NOFILE" ]; then
  MAXCONN=$(( (NOFILE - 1000) / 2 ))
fi
NGINX_NOFILE=$(( 2 * MAXCONN + 1000 ))

for port in "$BACKEND_PORT" "${PORT[wsgate]}" "${PORT[nginx]}" "${PORT[haproxy]}" "${PORT[wsgate-b]}"; do
  if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
    die "port $port is already in use on this machine"
  fi
done

log "building wsgate, wsbench, bench_echo (release; may wait for the cargo lock)"
(cd "$ROOT" && cargo build --release --locked --quiet --bin wsgate --example wsbench --example bench_echo)

WORK="$(mktemp -d /tmp/wsgate-bench.XXXXXX)"
mkdir -p "$WORK/log" "$WORK/nginx/tmp" "$WORK/haproxy"
RAW="$WORK/results.tsv"
: > "$RAW"
log "work directory: $WORK"

# ------------------------------------------------------------------ process control
BACKEND_PID=""
PROXY_PID=""
PROXY_NAME=""

stop_pid() { # pid: SIGTERM, wait up to 15 s, then SIGKILL (only processes this script started)
  local pid="$1" i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  log "pid $pid did not stop after SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$PROXY_PID"
  stop_pid "$BACKEND_PID"
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port: until something listens there (at most 10 s)
  local i
  for i in $(seq 1 100); do
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  return 1
}

wsgate_config() { # workers port extra-limits-lines [extra-listener-lines]
  cat <<EOF
# wsgate, as benchmarked: TLS 1.3 terminated here, one backend, limits out of the way,
# $1 tokio worker thread(s).
[server]
log_level = "warn"
$([ "$WSGATE_WORKERS_KEY" = 1 ] && echo "workers = $1")
[limits]
max_connections = $MAXCONN
exempt = ["127.0.0.0/8"]
message_rate = 0
idle_timeout = "1h"
$3
[[listener]]
address = "$HOST:$2"
cert = "$CERT"
key = "$KEY"
min_version = "1.3"
${4:-}
[[pool]]
name = "echo"
[[pool.backend]]
address = "$HOST:$BACKEND_PORT"
[[route]]
path_prefix = "/"
pool = "echo"
EOF
}

write_configs() { # workers
  local w="$1"
  wsgate_config "$w" "${PORT[wsgate]}" "$WSGATE_LIMITS" > "$WORK/wsgate.toml"
  wsgate_config "$w" "${PORT[wsgate-b]}" "$WSGATE_B_LIMITS" "$WSGATE_B_LISTENER" > "$WORK/wsgate-b.toml"

  cat > "$WORK/nginx/nginx.conf" <<EOF
# nginx, as benchmarked: $w worker(s), TLS 1.3, session tickets on (its default).
worker_processes $w;
worker_rlimit_nofile $NGINX_NOFILE;
daemon off;
master_process on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/log/nginx-error.log warn;
events { worker_connections $MAXCONN; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  upstream echo { server $HOST:$BACKEND_PORT; }
  server {
    listen $HOST:${PORT[nginx]} ssl;
    server_name localhost;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.3;
    ssl_session_tickets on;
    location / {
      proxy_pass http://echo;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host \$host;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
EOF

  cat "$CERT" "$KEY" > "$WORK/haproxy/cert.pem"
  cat > "$WORK/haproxy/haproxy.cfg" <<EOF
# HAProxy, as benchmarked: $w thread(s), TLS 1.3, session tickets on (its default).
global
  nbthread $w
  maxconn $MAXCONN
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout http-request 10s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
  timeout client-fin 5s
frontend fe
  bind $HOST:${PORT[haproxy]} ssl crt $WORK/haproxy/cert.pem alpn http/1.1
  default_backend be
backend be
  server echo $HOST:$BACKEND_PORT maxconn $MAXCONN
EOF
}

start_proxy() { # name: start it fresh, set PROXY_PID and PROXY_PIDS (all its processes)
  local name="$1" i
  PROXY_NAME="$name"
  case "$name" in
    wsgate|wsgate-b)
      local exe="$BIN/wsgate"
      [ "$name" = wsgate-b ] && [ -n "$WSGATE_B_BIN" ] && exe="$WSGATE_B_BIN"
      TOKIO_WORKER_THREADS="$CUR_WORKERS" "$exe" run -c "$WORK/$name.toml" >>"$WORK/log/$name.log" 2>&1 &
      PROXY_PID=$! ;;
    nginx)
      nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/log/nginx-error.log" \
        >>"$WORK/log/nginx.log" 2>&1 &
      PROXY_PID=$! ;;
    haproxy)
      haproxy -db -f "$WORK/haproxy/haproxy.cfg" >>"$WORK/log/haproxy.log" 2>&1 &
      PROXY_PID=$! ;;
  esac
  wait_port "${PORT[$name]}" || die "$name did not start; see $WORK/log/"
  PROXY_PIDS="$PROXY_PID"
  if [ "$name" = nginx ]; then
    local workers=""
    for i in $(seq 1 50); do
      workers="$(ps -o pid= --ppid "$PROXY_PID" | tr -d ' ' | paste -sd, -)"
      [ "$(echo "$workers" | tr ',' '\n' | grep -c .)" -ge "$CUR_WORKERS" ] && break
      sleep 0.1
    done
    PROXY_PIDS="$PROXY_PID,$workers"
  fi
}

stop_proxy() { stop_pid "$PROXY_PID"; PROXY_PID=""; }

# ------------------------------------------------------------------ measuring
busy_cores() { # CPU busy on the whole machine over 0.5 s, in cores
  local a b
  a="$(head -1 /proc/stat)"; sleep 0.5; b="$(head -1 /proc/stat)"
  awk -v a="$a" -v b="$b" -v hz="$CLK_TCK" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    busy = (y[2]+y[3]+y[4]+y[7]+y[8]+y[9]) - (x[2]+x[3]+x[4]+x[7]+x[8]+x[9])
    printf "%.2f", busy / hz / 0.5 }'
}

wait_quiet() { # wait (at most QUIET_MAX s) until other work on the machine uses < 0.25 core
  local t0 busy
  t0=$(date +%s)
  while :; do
    busy="$(busy_cores)"
    awk -v b="$busy" 'BEGIN { exit !(b < 0.25) }' && return 0
    if [ $(( $(date +%s) - t0 )) -ge "$QUIET_MAX" ]; then
      log "  machine still busy (${busy} cores used by other work); measuring anyway"
      return 0
    fi
    sleep 0.5
  done
}

bench() { # proxy scenario rep -- wsbench args...: run one measurement, record its RESULT
  local proxy="$1" scen="$2@$CUR_WORKERS" rep="$3"; shift 4
  local out="$WORK/log/$proxy-$scen-$rep.out" rc=0
  wait_quiet
  timeout $((TIMEOUT + 60)) "$WSBENCH" "$@" --addr "$HOST:${PORT[$proxy]}" --ca "$CA" \
    --pids "$PROXY_PIDS" --also-pids "$BACKEND_PID" --clk-tck "$CLK_TCK" --timeout "$TIMEOUT" \
    >"$out" 2>&1 || rc=$?
  local line
  line="$(grep '^RESULT ' "$out" | tail -1 || true)"
  if [ "$rc" != 0 ] || [ -z "$line" ]; then
    log "  $proxy $scen rep $rep: FAILED (exit $rc): $(grep -v '^RESULT' "$out" | tail -3 | tr '\n' ' ')"
    printf '%s\t%s\t%s\tfailed\t1\n' "$proxy" "$scen" "$rep" >>"$RAW"
  fi
  if [ -n "$line" ]; then
    local kv
    for kv in ${line#RESULT }; do
      printf '%s\t%s\t%s\t%s\t%s\n' "$proxy" "$scen" "$rep" "${kv%%=*}" "${kv#*=}" >>"$RAW"
    done
    log "  $proxy $scen rep $rep: $(grep -E '^(echo|idle|handshake|rate):' "$out" | sed 's/^[a-z]*: //' | cut -c1-200)"
  fi
  grep '^tls: ' "$out" | head -1 | sed "s/^tls: /${scen%@*}\t$proxy\t/" >>"$WORK/tls.txt" || true
}

warm_up() { # proxy: a few connections and messages, not recorded
  "$WSBENCH" handshake --addr "$HOST:${PORT[$1]}" --ca "$CA" --count 50 --concurrency 8 --timeout 60 >/dev/null 2>&1 || true
  "$WSBENCH" echo --addr "$HOST:${PORT[$1]}" --ca "$CA" --conns 10 --messages 200 --size 1024 --window 4 --timeout 60 >/dev/null 2>&1 || true
}

run_rep() { # proxy rep
  local p="$1" r="$2"
  start_proxy "$p"
  log "workers $CUR_WORKERS, rep $r/$REPS: $p (pids $PROXY_PIDS)"
  warm_up "$p"
  local s
  for s in $SCENARIOS; do
    case "$s" in
      d) bench "$p" d "$r" -- idle --conns "$D_CONNS" --hold "$D_HOLD" --concurrency 64 ;;
      a) bench "$p" a "$r" -- echo --conns "$A_CONNS" --messages "$A_MSGS" --size "$A_SIZE" --window "$A_WIN" ;;
      b) bench "$p" b "$r" -- echo --conns "$B_CONNS" --messages "$B_MSGS" --size "$B_SIZE" --window "$B_WIN" ;;
      c) bench "$p" c "$r" -- echo --conns "$C_CONNS" --messages "$C_MSGS" --size "$C_SIZE" --window "$C_WIN" ;;
      k) bench "$p" k "$r" -- echo --conns "$K_CONNS" --messages "$K_MSGS" --size "$K_SIZE" --window "$K_WIN" ;;
      l) bench "$p" l "$r" -- rate --conns "$L_CONNS" --rate "$L_RATE" --duration "$L_SECS" --size "$L_SIZE" ;;
      g) bench "$p" g "$r" -- echo --conns "$A_CONNS" --messages "$A_MSGS" --size "$A_SIZE" --window "$A_WIN" --kind text ;;
      h) bench "$p" h "$r" -- echo --conns "$B_CONNS" --messages "$B_MSGS" --size "$B_SIZE" --window "$B_WIN" --kind text ;;
      i) bench "$p" i "$r" -- echo --conns "$C_CONNS" --messages "$C_MSGS" --size "$C_SIZE" --window "$C_WIN" --kind text ;;
      e) bench "$p" e "$r" -- handshake --count "$E_COUNT" --concurrency "$HS_CONC" ;;
      f) bench "$p" f "$r" -- handshake --count "$E_COUNT" --concurrency "$HS_CONC" --kx default ;;
      r) bench "$p" r "$r" -- handshake --count "$E_COUNT" --concurrency "$HS_CONC" --resume ;;
    esac
  done
  stop_proxy
}

# ------------------------------------------------------------------ machine info
machine_info() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- command: \`$CMDLINE\` (repetitions: $REPS$([ "$QUICK" = 1 ] && echo ', QUICK run: small counts, not representative'))"
  echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "- load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this shared machine adds noise); open-file limit: $NOFILE"
  echo "- wsgate $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') ($(rustc -V 2>/dev/null | cut -d' ' -f1-2)), $(nginx -v 2>&1 | sed 's/.*version: //'), $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3)"
  [ -z "$WSGATE_LIMITS" ] || echo "- wsgate [limits] extra lines: \`$(printf '%s' "$WSGATE_LIMITS" | paste -sd';' -)\`"
  [[ " $PROXIES " != *" wsgate-b "* ]] || echo "- wsgate-b: ${WSGATE_B_BIN:-the same wsgate binary}, [limits] extra lines: \`$(printf '%s' "$WSGATE_B_LIMITS" | paste -sd';' -)\`, [[listener]] extra lines: \`$(printf '%s' "$WSGATE_B_LISTENER" | paste -sd';' -)\`"
  echo "- OpenSSL (nginx, haproxy): $(haproxy -vv 2>/dev/null | sed -n 's/^Running on OpenSSL version : //p')"
  if [ -s "$WORK/tls.txt" ]; then
    echo "- negotiated TLS, all but (f) (client offers X25519 only): $(awk -F'\t' '$1!="f" {print $2 "\t" $3}' "$WORK/tls.txt" | sort -u | awk -F'\t' '{printf "%s%s %s", sep, $1, $2; sep="; "}')"
    echo "- negotiated TLS, (f) (client offers rustls' default X25519MLKEM768 + X25519 key shares): $(awk -F'\t' '$1=="f" {print $2 "\t" $3}' "$WORK/tls.txt" | sort -u | awk -F'\t' '{printf "%s%s %s", sep, $1, $2; sep="; "}')"
  fi
}

# ------------------------------------------------------------------ report
# Metric rows: scenario|key|label|scale|better (scale multiplies the raw value).
METRICS="
a|msgs_per_s|msgs/s|1|higher
a|cpu_us_per_msg|proxy CPU us/msg|1|lower
a|cpu_ms_per_mb|proxy CPU ms/MB|1|lower
a|sys_us_per_msg|of which kernel (stime) us/msg|1|lower
a|ctxsw_per_msg|proxy context switches/msg|1|lower
a|p50_us|p50 RTT ms|0.001|lower
a|p99_us|p99 RTT ms|0.001|lower
b|msgs_per_s|msgs/s|1|higher
b|cpu_us_per_msg|proxy CPU us/msg|1|lower
b|p50_us|p50 RTT ms|0.001|lower
b|p99_us|p99 RTT ms|0.001|lower
c|mb_per_s|MB/s each way|1|higher
c|msgs_per_s|msgs/s|1|higher
c|cpu_us_per_msg|proxy CPU us/msg|1|lower
c|cpu_ms_per_mb|proxy CPU ms/MB|1|lower
c|p50_us|p50 RTT ms|0.001|lower
c|p99_us|p99 RTT ms|0.001|lower
k|mb_per_s|MB/s each way|1|higher
k|cpu_ms_per_mb|proxy CPU ms/MB|1|lower
k|cpu_us_per_msg|proxy CPU us/msg|1|lower
k|p50_us|p50 RTT ms|0.001|lower
k|p99_us|p99 RTT ms|0.001|lower
l|msgs_per_s|msgs/s achieved|1|higher
l|cpu_us_per_msg|proxy CPU us/msg|1|lower
l|sys_us_per_msg|of which kernel (stime) us/msg|1|lower
l|ctxsw_per_msg|proxy context switches/msg|1|lower
l|p50_us|p50 RTT us (from scheduled send)|1|lower
l|p99_us|p99 RTT us|1|lower
l|p999_us|p99.9 RTT us|1|lower
l|lag_p99_us|client pacer lag p99 us|1|lower
l|runq_us_per_msg|proxy waiting for a CPU (run queue) us/msg|1|lower
d|kib_per_session|KiB/session|1|lower
d|rss_before_kib|RSS before, MiB|0.0009765625|lower
d|rss_held_kib|RSS holding, MiB|0.0009765625|lower
d|rss_after_close_kib|RSS 1 s after close, MiB|0.0009765625|lower
d|rss_after_5s_kib|RSS 5 s after close, MiB|0.0009765625|lower
e|conns_per_s|conns/s|1|higher
e|cpu_us_per_conn|proxy CPU us/conn|1|lower
e|sys_us_per_conn|of which kernel (stime) us/conn|1|lower
e|ctxsw_per_conn|proxy context switches/conn|1|lower
e|p50_us|p50 setup ms|0.001|lower
e|p99_us|p99 setup ms|0.001|lower
f|conns_per_s|conns/s|1|higher
f|cpu_us_per_conn|proxy CPU us/conn|1|lower
f|p50_us|p50 setup ms|0.001|lower
r|conns_per_s|conns/s|1|higher
r|cpu_us_per_conn|proxy CPU us/conn|1|lower
r|p50_us|p50 setup ms|0.001|lower
r|resumed|handshakes resumed|1|higher
g|msgs_per_s|msgs/s|1|higher
g|cpu_us_per_msg|proxy CPU us/msg|1|lower
g|p50_us|p50 RTT ms|0.001|lower
h|msgs_per_s|msgs/s|1|higher
h|cpu_us_per_msg|proxy CPU us/msg|1|lower
h|p50_us|p50 RTT ms|0.001|lower
i|mb_per_s|MB/s each way|1|higher
i|cpu_us_per_msg|proxy CPU us/msg|1|lower
i|p50_us|p50 RTT ms|0.001|lower
"

scenario_name() {
  case "$1" in
    a) echo "(a) $A_CONNS conns x $A_MSGS msgs x ${A_SIZE} B, $A_WIN in flight" ;;
    b) echo "(b) $B_CONNS conns x $B_MSGS msgs x 4 KiB, ping-pong" ;;
    c) echo "(c) $C_CONNS conns x $C_MSGS msgs x 1 MiB, ping-pong" ;;
    d) echo "(d) $D_CONNS idle sessions held ${D_HOLD} s" ;;
    e) echo "(e) $E_COUNT new TLS+upgrade conns, $HS_CONC at a time" ;;
    f) echo "(f) as (e), client offering post-quantum hybrid key exchange" ;;
    l) echo "(l) open loop: $L_CONNS conns, $L_RATE msgs/s x ${L_SIZE} B for ${L_SECS} s" ;;
    k) echo "(k) $K_CONNS conns x $K_MSGS msgs x 16 KiB, $K_WIN in flight" ;;
    g) echo "(g) as (a), text messages" ;;
    h) echo "(h) as (b), text messages" ;;
    i) echo "(i) as (c), text messages" ;;
    r) echo "(r) as (e), resuming with session tickets" ;;
  esac
}

# Values of one (proxy, scenario, key) over the repetitions, one per line.
values() { awk -F'\t' -v p="$1" -v s="$2" -v k="$3" '$1==p && $2==s && $4==k {print $5}' "$RAW"; }
# Median of the values, skipping repetitions that failed.
median() {
  awk -F'\t' -v p="$1" -v s="$2" -v k="$3" '
    $1==p && $2==s && $4=="failed" {bad[$3]=1}
    $1==p && $2==s && $4==k {v[$3]=$5}
    END {n=0; for (r in v) if (!(r in bad)) a[++n]=v[r]+0
         if (n==0) {print "NA"; exit}
         for (i=2;i<=n;i++) {x=a[i]; j=i-1; while (j>0 && a[j]>x) {a[j+1]=a[j]; j--} a[j+1]=x}
         print (n%2 ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2)}' "$RAW"
}
fmt() { awk -v v="$1" -v s="${2:-1}" 'BEGIN {
  if (v=="NA") {print "n/a"; exit}
  x=v*s; a=(x<0?-x:x)
  if (a>=100) printf "%.0f", x; else if (a>=10) printf "%.1f", x; else if (a>=1) printf "%.2f", x; else printf "%.3f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a=="NA"||b=="NA"||b+0==0) print "n/a"; else printf "%.2f", a/b }'; }

# The part of each proxy's CPU that its own code does not spend: kernel time (stime:
# syscalls, TCP over loopback, wakeups), set against nginx's whole CPU. wsgate's
# kernel time alone is the lowest wsgate/nginx CPU ratio any user-space change can
# reach for that scenario.
kernel_floor() {
  local w s k kk p
  echo "## Kernel floor: each proxy's kernel CPU (stime) against nginx's total CPU, medians"
  echo
  echo "stime is sampled at the kernel's tick, so read it over many repetitions; the ratio is the lowest"
  echo "proxy/nginx CPU ratio that proxy could reach with zero user-space CPU."
  echo
  printf '| scenario@workers | metric |'; for p in $PROXIES; do printf ' %s kernel / nginx total |' "$p"; done; echo
  printf '|---|---|'; for p in $PROXIES; do printf -- '---:|'; done; echo
  for w in $WORKERS; do
    for s in a l e; do
      has_scen "$s" || continue
      if [ "$s" = e ]; then k=cpu_us_per_conn kk=sys_us_per_conn; else k=cpu_us_per_msg kk=sys_us_per_msg; fi
      printf '| %s | %s |' "$s@$w" "$kk"
      for p in $PROXIES; do printf ' %s |' "$(ratio "$(median "$p" "$s@$w" "$kk")" "$(median nginx "$s@$w" "$k")")"; done
      echo
    done
  done
  echo
}

report() {
  local has_n=0 has_h=0 has_b=0 p w
  for p in $PROXIES; do [ "$p" = nginx ] && has_n=1; [ "$p" = haproxy ] && has_h=1; [ "$p" = wsgate-b ] && has_b=1; done
  echo "# wsgate vs nginx vs HAProxy: WebSocket proxy benchmark"
  echo
  machine_info
  echo "- total run time: $(( ($(date +%s) - T_START) / 60 )) min $(( ($(date +%s) - T_START) % 60 )) s"
  echo
  echo "Medians of $REPS repetition(s). A message is one round trip (client -> proxy -> backend -> proxy -> client)."
  echo "Ratios are wsgate / other: for rows marked 'higher' above 1 means wsgate is better, for rows marked 'lower' below 1 means wsgate is better."
  echo "Proxy CPU is utime+stime of all the proxy's processes (nginx: master + workers) over the measured phase, divided by messages (or connections);"
  echo "CPU per MB is per 10^6 bytes of payload carried each way."
  echo "What each number means, the caveats and the findings: benches/README.md."
  for w in $WORKERS; do
  echo
  echo "## $w worker(s) each (nginx worker_processes $w, HAProxy nbthread $w, wsgate $w tokio worker thread(s))"
  echo
  printf '| scenario | metric | better |'
  for p in $PROXIES; do printf ' %s |' "$p"; done
  [ $has_n = 1 ] && printf ' wsgate/nginx |'
  [ $has_h = 1 ] && printf ' wsgate/haproxy |'
  [ $has_b = 1 ] && printf ' wsgate-b/wsgate |'
  [ $has_b = 1 ] && [ $has_n = 1 ] && printf ' wsgate-b/nginx |'
  [ $has_b = 1 ] && [ $has_h = 1 ] && printf ' wsgate-b/haproxy |'
  echo
  printf '|---|---|---|'
  for p in $PROXIES; do printf -- '---:|'; done
  [ $has_n = 1 ] && printf -- '---:|'
  [ $has_h = 1 ] && printf -- '---:|'
  [ $has_b = 1 ] && printf -- '---:|'
  [ $has_b = 1 ] && [ $has_n = 1 ] && printf -- '---:|'
  [ $has_b = 1 ] && [ $has_h = 1 ] && printf -- '---:|'
  echo
  local prev="" line s k label scale better
  while IFS='|' read -r s k label scale better; do
    [ -n "$s" ] || continue
    has_scen "$s" || continue
    local sname=""
    [ "$s" != "$prev" ] && sname="$(scenario_name "$s")"
    prev="$s"
    printf '| %s | %s | %s |' "$sname" "$label" "$better"
    declare -A med=()
    for p in $PROXIES; do med[$p]="$(median "$p" "$s@$w" "$k")"; printf ' %s |' "$(fmt "${med[$p]}" "$scale")"; done
    local wm="${med[wsgate]:-NA}"
    [ $has_n = 1 ] && printf ' %s |' "$(ratio "$wm" "${med[nginx]}")"
    [ $has_h = 1 ] && printf ' %s |' "$(ratio "$wm" "${med[haproxy]}")"
    local bm="${med[wsgate-b]:-NA}"
    [ $has_b = 1 ] && printf ' %s |' "$(ratio "$bm" "$wm")"
    [ $has_b = 1 ] && [ $has_n = 1 ] && printf ' %s |' "$(ratio "$bm" "${med[nginx]}")"
    [ $has_b = 1 ] && [ $has_h = 1 ] && printf ' %s |' "$(ratio "$bm" "${med[haproxy]}")"
    echo
    unset med
  done <<<"$METRICS"
  done
  echo
  [ $has_n = 1 ] && kernel_floor
  echo "## Every repetition (headline metric), to judge the noise"
  echo
  echo "| scenario@workers | metric | proxy | values by repetition | spread (max-min)/median |"
  echo "|---|---|---|---|---:|"
  local pair
  for w in $WORKERS; do
  for pair in "a|msgs_per_s" "a|cpu_us_per_msg" "b|msgs_per_s" "b|cpu_us_per_msg" "c|mb_per_s" "c|cpu_us_per_msg" "k|cpu_ms_per_mb" "l|cpu_us_per_msg" "l|p50_us" "l|p99_us" "d|kib_per_session" "e|conns_per_s" "e|cpu_us_per_conn" "f|conns_per_s" "r|cpu_us_per_conn" "g|msgs_per_s" "g|cpu_us_per_msg" "h|cpu_us_per_msg" "i|mb_per_s" "i|cpu_us_per_msg"; do
    s="${pair%%|*}"; k="${pair#*|}"
    has_scen "$s" || continue
    s="$s@$w"
    for p in $PROXIES; do
      local vals m
      vals="$(awk -F'\t' -v p="$p" -v s="$s" -v k="$k" '$1==p && $2==s && $4==k {printf "%s%s", sep, $5; sep=", "}' "$RAW")"
      m="$(median "$p" "$s" "$k")"
      local spread
      spread="$(values "$p" "$s" "$k" | awk -v m="$m" 'NR==1 {lo=$1; hi=$1} {if ($1<lo) lo=$1; if ($1>hi) hi=$1} END {if (NR==0 || m=="NA" || m+0==0) print "n/a"; else printf "%.0f%%", 100*(hi-lo)/m}')"
      echo "| $s | $k | $p | ${vals:-none} | $spread |"
    done
  done
  done
  echo
  local fails
  fails="$(awk -F'\t' '$4=="failed" {printf "%s%s %s rep %s", sep, $1, $2, $3; sep="; "}' "$RAW")"
  local errs
  errs="$(awk -F'\t' '$4=="errors" && $5+0>0 {printf "%s%s %s rep %s: %s", sep, $1, $2, $3, $5; sep="; "}' "$RAW")"
  echo "Failed measurements (excluded from medians): ${fails:-none}. Connections with errors: ${errs:-none}."
  echo
  echo "## Who else used the CPU (medians per measurement)"
  echo
  echo "Client: wsbench's own CPU seconds (it shares the 2 cores with the proxy). Other load: CPU used on the machine by"
  echo "anything but the proxy, wsbench and the backend during the measurement, in cores (other work on this shared machine: noise)."
  echo
  printf '| scenario@workers |'; for p in $PROXIES; do printf ' %s client s | %s other load |' "$p" "$p"; done; echo
  printf '|---|'; for p in $PROXIES; do printf -- '---:|---:|'; done; echo
  for w in $WORKERS; do
  for s in a b c k l e f r g h i; do
    has_scen "$s" || continue
    printf '| %s |' "$s@$w"
    for p in $PROXIES; do printf ' %s | %s |' "$(fmt "$(median "$p" "$s@$w" client_cpu_s)")" "$(fmt "$(median "$p" "$s@$w" foreign_cores)")"; done
    echo
  done
  done
}

# ------------------------------------------------------------------ main
T_START=$(date +%s)
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
# wsgate's worker count: the [server] workers key where this build has it, and always
# TOKIO_WORKER_THREADS (tokio's runtime honours it when the key is not set).
WSGATE_WORKERS_KEY=0
CUR_WORKERS=1
write_configs 1
sed -i 's/^log_level = "warn"$/log_level = "warn"\nworkers = 1/' "$WORK/wsgate.toml"
"$BIN/wsgate" check -c "$WORK/wsgate.toml" >/dev/null 2>&1 && WSGATE_WORKERS_KEY=1
log "wsgate [server] workers key: $([ $WSGATE_WORKERS_KEY = 1 ] && echo supported || echo 'not in this build; TOKIO_WORKER_THREADS only')"
write_configs 1
nginx -t -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/log/nginx-error.log" >/dev/null 2>&1 \
  || [[ " $PROXIES " != *" nginx "* ]] || die "nginx rejects its config: $(nginx -t -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e /dev/stderr 2>&1 | tail -2)"
haproxy -c -q -f "$WORK/haproxy/haproxy.cfg" >/dev/null 2>&1 \
  || [[ " $PROXIES " != *" haproxy "* ]] || die "haproxy rejects its config: $(haproxy -c -f "$WORK/haproxy/haproxy.cfg" 2>&1 | tail -2)"
"$BIN/wsgate" check -c "$WORK/wsgate.toml" >/dev/null || die "wsgate rejects its config"
[[ " $PROXIES " != *" wsgate-b "* ]] || "${WSGATE_B_BIN:-$BIN/wsgate}" check -c "$WORK/wsgate-b.toml" >/dev/null \
  || die "wsgate rejects the wsgate-b config (--wsgate-b-limits)"

"$BIN/examples/bench_echo" "$HOST:$BACKEND_PORT" >"$WORK/log/backend.log" 2>&1 &
BACKEND_PID=$!
wait_port "$BACKEND_PORT" || die "the echo backend did not start"
log "echo backend on $HOST:$BACKEND_PORT (pid $BACKEND_PID); $REPS repetition(s) of: $PROXIES"

read -r -a PLIST <<<"$PROXIES"
for CUR_WORKERS in $WORKERS; do
  write_configs "$CUR_WORKERS"
  for r in $(seq 1 "$REPS"); do
    n=${#PLIST[@]}
    for i in $(seq 0 $((n - 1))); do
      run_rep "${PLIST[$(( (i + r - 1) % n ))]}" "$r"
    done
  done
done

stop_pid "$BACKEND_PID"; BACKEND_PID=""
for f in "$WORK"/log/*.log; do
  if grep -qiE 'error|panic|warn|alert|emerg' "$f" 2>/dev/null; then
    log "$(basename "$f") has warnings/errors (first 3):"
    grep -iE 'error|panic|warn|alert|emerg' "$f" | head -3 >&2
  fi
done

REPORT="$(report)"
echo
echo "$REPORT"
if [ -n "$OUT" ]; then
  printf '%s\n' "$REPORT" >"$OUT"
  log "wrote $OUT"
else
  printf '%s\n' "$REPORT" >"$WORK/RESULTS.md"
  KEEP=1
  log "quick run: results in $WORK/RESULTS.md (benches/RESULTS.md untouched; use --out to choose)"
fi

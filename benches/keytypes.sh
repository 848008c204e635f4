#!/usr/bin/env bash
# Full and resumed TLS handshakes with an ECDSA P-256 certificate against an RSA-2048
# one, wsgate and nginx in the same run (issue 13: "report ECDSA P-256 against
# RSA-2048"). Both leaves are signed by one throwaway ECDSA P-256 CA made here with
# the openssl command-line tool, so the chains differ only in the leaf's key.
#
#   benches/keytypes.sh [--reps 3] [--count 2000] [--out FILE]
#
# Needs nginx (apt-get install nginx-light), openssl and a release build
# (cargo build --release --bin wsgate --example wsbench --example bench_echo).
# 1 worker each (nginx worker_processes 1, wsgate 1 tokio worker), TLS 1.3, the
# client's default key exchange (X25519), 16 handshakes at a time. Order rotated each
# repetition; medians. Loopback only (ports 19901-19903); every loop is bounded.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"; R=$ROOT/target/release
. "$ROOT/benches/bench-config.sh"
REPS=3; COUNT=2000; OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift ;;
    --count) COUNT="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    *) echo "unknown option: $1" >&2; exit 64 ;;
  esac
  shift
done
for t in nginx openssl; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }; done
D="$(mktemp -d /tmp/wsgate-keytypes.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.1; done; return 1; }

# ------------------------------------------------------------ certificates
cd "$D"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -days 2 -subj "/CN=keytypes bench CA" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign 2>/dev/null
leaf() { # name openssl-newkey-args...
  local n=$1; shift
  openssl req -newkey "$@" -nodes -keyout $n.key -out $n.csr -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > $n.ext
  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out $n.crt -extfile $n.ext 2>/dev/null
  cat $n.crt > $n.chain.pem
}
leaf ec ec -pkeyopt ec_paramgen_curve:P-256
leaf rsa rsa:2048
cd - >/dev/null

# ------------------------------------------------------------ processes
$R/examples/bench_echo 127.0.0.1:19901 >/dev/null 2>&1 & PIDS+=($!)
wait_port 19901
start() { # proxy key -> sets PID (the process whose CPU counts)
  case $1 in
    wsgate)
      BENCH_CERT=$D/$2.chain.pem BENCH_KEY=$D/$2.key bench_wsgate_config 19902 19901 > $D/w-$2.toml
      TOKIO_WORKER_THREADS=1 $R/wsgate run -c $D/w-$2.toml >$D/wsgate.log 2>&1 & PID=$!; PORT=19902 ;;
    nginx)
      mkdir -p $D/ng/tmp
      cat > $D/ng-$2.conf <<EOF
daemon off; master_process off; worker_processes 1;
pid $D/ng/nginx.pid; error_log $D/ng/error.log warn;
events { worker_connections 10000; }
http { access_log off; client_body_temp_path $D/ng/tmp/b; proxy_temp_path $D/ng/tmp/p;
  fastcgi_temp_path $D/ng/tmp/f; uwsgi_temp_path $D/ng/tmp/u; scgi_temp_path $D/ng/tmp/s;
  upstream echo { server 127.0.0.1:19901; }
  server { listen 127.0.0.1:19903 ssl; server_name localhost;
    ssl_certificate $D/$2.chain.pem; ssl_certificate_key $D/$2.key;
    ssl_protocols TLSv1.3; ssl_session_tickets on;
    location / { proxy_pass http://echo; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection "upgrade";
      proxy_set_header Host \$host; proxy_read_timeout 1h; } } }
EOF
      nginx -c $D/ng-$2.conf -p $D/ng >/dev/null 2>&1 & PID=$!; PORT=19903 ;;
  esac
  wait_port $PORT
}

RAW=${KEEP_RAW:-$D/raw.tsv}; : > $RAW
proxies=(wsgate nginx); keys=(ec rsa)
for rep in $(seq $REPS); do
  for i in 0 1; do
    p=${proxies[$(( (i + rep) % 2 ))]}
    for k in "${keys[@]}"; do
      start $p $k
      $R/examples/wsbench handshake --addr 127.0.0.1:$PORT --ca $D/ca.pem --count 50 --concurrency 8 >/dev/null 2>&1 || true
      for mode in full resumed; do
        extra=(); [ $mode = resumed ] && extra=(--resume)
        line=$($R/examples/wsbench handshake --addr 127.0.0.1:$PORT --ca $D/ca.pem --count $COUNT \
          --concurrency 16 --pids $PID "${extra[@]}" | grep '^RESULT' || true)
        cpu=$(grep -o 'cpu_us_per_conn=[0-9.]*' <<<"$line" | cut -d= -f2)
        rate=$(grep -o 'conns_per_s=[0-9.]*' <<<"$line" | cut -d= -f2)
        printf '%s\t%s\t%s\t%s\t%s\n' $p $k $mode "${cpu:-NA}" "${rate:-NA}" >> $RAW
        echo "rep $rep $p $k $mode: ${cpu:-FAILED} us/conn, ${rate:-?} conns/s" >&2
      done
      kill $PID; wait $PID 2>/dev/null || true
    done
  done
done

med() { awk -F'\t' -v p=$1 -v k=$2 -v m=$3 -v c=$4 '$1==p && $2==k && $3==m && $c!="NA" {print $c}' $RAW |
  sort -n | awk '{a[++n]=$1} END {if (!n) print "NA"; else print (n%2 ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2)}'; }
ratio() { awk -v a=$1 -v b=$2 'BEGIN {if (a=="NA"||b=="NA"||b==0) print "n/a"; else printf "%.2f", a/b}'; }
{
  echo "## ECDSA P-256 vs RSA-2048 certificates: handshake CPU, same run ($(date -u +%F), commit $(git -C $ROOT rev-parse --short HEAD))"
  echo
  echo "\`benches/keytypes.sh --reps $REPS --count $COUNT\`; 1 worker each, TLS 1.3, X25519, $COUNT handshakes (TCP + TLS + upgrade + one echo), 16 at a time; medians of $REPS; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| handshake | key | wsgate CPU us/conn | nginx CPU us/conn | wsgate/nginx | wsgate conns/s | nginx conns/s |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  for m in full resumed; do for k in ec rsa; do
    w=$(med wsgate $k $m 4); n=$(med nginx $k $m 4)
    echo "| $m | $([ $k = ec ] && echo 'ECDSA P-256' || echo RSA-2048) | $w | $n | $(ratio $w $n) | $(med wsgate $k $m 5) | $(med nginx $k $m 5) |"
  done; done
} | tee ${OUT:-/dev/null}

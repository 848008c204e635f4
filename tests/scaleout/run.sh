#!/usr/bin/env bash
# Scale-out behind an L4 load balancer, for real on loopback (issue 11):
# HAProxy (Debian's, mode tcp, send-proxy-v2, deploy/haproxy-l4.cfg with its ports
# substituted) in front of 3 wsgate instances (one config template; each instance
# differs only by its instance number, which picks its listen and admin ports),
# HAProxy checking each instance's /readyz, and 3 echo backends. scaleout.py then
# shows: (1) every client's real 127.x address reaches the backend in
# X-Forwarded-For; (2) with ip_hash a client lands on the same backend through any
# instance (200 clients x 3 connections); (3) SIGTERM drains one instance: /readyz
# 503, HAProxy takes it out, 1001s spread over drain_spread, reconnects onto the
# others and the same backends, no connection attempt failing; (4) SIGKILL one:
# its clients reconnect to the others within their retry budget.
#
# Usage: tests/scaleout/run.sh            (builds target/debug/wsgate if needed)
#        WSGATE_BIN=path/to/wsgate tests/scaleout/run.sh
# Exits 0 with "SKIP: <reason>" when HAProxy or Python's websockets cannot be had.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

skip() { echo "SKIP: $*"; exit 0; }

if ! command -v haproxy >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing haproxy (apt-get)"
        (apt-get install -y haproxy >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y haproxy >/dev/null 2>&1; }) \
            || skip "haproxy is not installed and apt-get could not install it"
    else
        skip "haproxy is not installed (and this is not a root Debian shell to install it)"
    fi
fi
if ! python3 -c 'import websockets.asyncio.client' >/dev/null 2>&1; then
    echo "installing Python websockets (pip)"
    python3 -m pip install --quiet 'websockets>=13' >/dev/null 2>&1 \
        || skip "Python websockets (>= 13) is not installed and pip could not install it"
fi

bin="${WSGATE_BIN:-}"
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --quiet --bin wsgate)
    bin="$root/target/debug/wsgate"
fi

work="$(mktemp -d /tmp/wsgate-scaleout.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${keep:-0}" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Free ports: 1 for HAProxy, 3 listeners, 3 admin, 3 backends.
mapfile -t ports < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(10):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
for s in socks: print(s.getsockname()[1])
EOF
)
lb=${ports[0]}; listen=("${ports[@]:1:3}"); admin=("${ports[@]:4:3}"); back=("${ports[@]:7:3}")

grace=3; spread=3
python3 "$here/scaleout.py" backends "${back[@]}" >"$work/backends.log" 2>&1 &
pids+=($!)

wsgate_pids=()
for n in 1 2 3; do
    sed -e "s|@LISTEN@|127.0.0.1:${listen[$((n-1))]}|" -e "s|@ADMIN@|127.0.0.1:${admin[$((n-1))]}|" \
        -e "s|@CERTS@|$root/certs-example|" \
        -e "s|@B1@|127.0.0.1:${back[0]}|" -e "s|@B2@|127.0.0.1:${back[1]}|" -e "s|@B3@|127.0.0.1:${back[2]}|" \
        -e "s|@GRACE@|${grace}s|" -e "s|@SPREAD@|${spread}s|" \
        "$here/wsgate.toml.in" >"$work/wsgate$n.toml"
    "$bin" check -c "$work/wsgate$n.toml" >/dev/null
    RUST_LOG="info" "$bin" run -c "$work/wsgate$n.toml" >"$work/wsgate$n.log" 2>&1 &
    wsgate_pids+=($!); pids+=($!)
done

# deploy/haproxy-l4.cfg, its addresses substituted.
sed -e "s|127.0.0.1:8443|127.0.0.1:$lb|" \
    -e "s|127.0.0.1:8444 check port 9091|127.0.0.1:${listen[0]} check port ${admin[0]}|" \
    -e "s|127.0.0.1:8445 check port 9092|127.0.0.1:${listen[1]} check port ${admin[1]}|" \
    -e "s|127.0.0.1:8446 check port 9093|127.0.0.1:${listen[2]} check port ${admin[2]}|" \
    -e "s|/run/haproxy-wsgate.sock|$work/haproxy.sock|" \
    "$root/deploy/haproxy-l4.cfg" >"$work/haproxy.cfg"
for n in 0 1 2; do
    grep -q "127.0.0.1:${listen[$n]} check port ${admin[$n]}" "$work/haproxy.cfg" \
        || { echo "FAIL: deploy/haproxy-l4.cfg no longer has the server lines run.sh substitutes"; exit 1; }
done
haproxy -c -q -f "$work/haproxy.cfg"
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)

# Everything up: backends, /readyz of each instance, HAProxy seeing all 3 UP.
deadline=$((SECONDS + 30))
until python3 - "$work/haproxy.sock" "${admin[@]}" <<'EOF' 2>/dev/null
import socket, sys, urllib.request
for p in sys.argv[2:]:
    urllib.request.urlopen(f"http://127.0.0.1:{p}/readyz", timeout=1)
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show stat\n")
out = b""
while (b := s.recv(65536)):
    out += b
up = [l for l in out.decode().splitlines() if l.startswith("wsgate,wsgate") and ",UP," in l]
sys.exit(0 if len(up) == 3 else 1)
EOF
do
    if [ $SECONDS -ge $deadline ]; then
        keep=1; echo "FAIL: the setup did not come up within 30 s"; tail -n 5 "$work"/*.log; exit 1
    fi
    sleep 0.2
done
echo "setup: HAProxy :$lb -> wsgate :${listen[*]} (admin :${admin[*]}) -> backends :${back[*]}"

t0=$SECONDS
if ! python3 "$here/scaleout.py" drive lb_port="$lb" \
        admin_ports="$(IFS=,; echo "${admin[*]}")" pids="$(IFS=,; echo "${wsgate_pids[*]}")" \
        logs="$work/wsgate1.log,$work/wsgate2.log,$work/wsgate3.log" \
        stats_socket="$work/haproxy.sock" ca="$root/certs-example/ca.pem" \
        clients=200 sessions=60 grace="$grace" spread="$spread"; then
    keep=1
    echo "--- last lines of each log"; for f in "$work"/*.log; do echo "== $f"; tail -n 5 "$f"; done
    exit 1
fi
echo "scale-out scenarios passed in $((SECONDS - t0)) s"

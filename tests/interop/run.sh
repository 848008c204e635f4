#!/usr/bin/env bash
# Interop matrix: WebSocket clients and backends we did not write, with wsgate
# (TLS, certs-example/) in between. See tests/interop/README.md.
#
#   bash tests/interop/run.sh
#
# Environment:
#   INTEROP_CLIENTS   clients to run   (default: chromium python node rust)
#   INTEROP_BACKENDS  backends to run  (default: python node go rust echo)
#   INTEROP_EXTRAS    1 (default) runs the browser-only reconnect and chat checks
#   INTEROP_PROFILE   release (default) or debug: the cargo profile of wsgate and the
#                     Rust peers (debug reuses what `cargo test` just built)
#   INTEROP_WRITE_RESULTS=1  also writes tests/interop/RESULTS.md
#
# Installs what is missing (Debian packages, pip into tests/interop/.venv, npm into
# tests/interop/node_modules), builds wsgate and the Rust/Go peers, runs every
# client against every backend, prints the table, and exits 1 if any check FAILed
# (NA and SKIP don't fail). A stack that cannot be installed is SKIPped, saying why.
# Everything listens and connects on 127.0.0.1 only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$HERE/.work"    # configs, logs and results of the latest run
BUILD="$HERE/.build"  # the Go backend and its build cache
CA="$ROOT/certs-example/ca.pem"
FULLCHAIN="$ROOT/certs-example/fullchain.pem"
KEY="$ROOT/certs-example/key.pem"
read -r -a CLIENTS <<<"${INTEROP_CLIENTS:-chromium python node rust}"
read -r -a BACKENDS <<<"${INTEROP_BACKENDS:-python node go rust echo}"
EXTRAS="${INTEROP_EXTRAS:-1}"
PROFILE="${INTEROP_PROFILE:-release}"
case $PROFILE in
  release) CARGO_PROFILE=(--release) ;;
  debug) CARGO_PROFILE=() ;;
  *) echo "INTEROP_PROFILE must be release or debug" >&2; exit 2 ;;
esac
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
CLIENT_TIMEOUT=180 # seconds, a backstop: every client bounds its own waits
T0=$SECONDS

rm -rf "$WORK"
mkdir -p "$WORK/logs" "$BUILD"
: >"$WORK/results.tsv"
: >"$WORK/expected.tsv"
: >"$WORK/versions.tsv"
: >"$WORK/meta.tsv"

say() { printf '== %s\n' "$*"; }
declare -A UNAVAILABLE=() # stack -> why it cannot run here

unavailable() {
  UNAVAILABLE[$1]="$2"
  echo "SKIP $1: $2"
}
wanted() { # wanted STACK: is it a selected client or backend?
  local x
  for x in "${CLIENTS[@]}" "${BACKENDS[@]}"; do [ "$x" = "$1" ] && return 0; done
  return 1
}

# ---------------------------------------------------------------- installs
APT_UPDATED=0
apt_ensure() { # apt_ensure PKG...: installs those missing; non-zero if that fails
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || return 1
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  say "apt-get install ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then
    "${sudo[@]}" apt-get update -qq >>"$WORK/logs/install.log" 2>&1 || return 1
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" \
    >>"$WORK/logs/install.log" 2>&1
}

command -v python3 >/dev/null || apt_ensure python3 python3-venv ||
  { echo "python3 is needed for the summary and cannot be installed" >&2; exit 1; }

PY="$HERE/.venv/bin/python"
if wanted python; then
  if [ ! -x "$PY" ] && ! python3 -m venv "$HERE/.venv" >>"$WORK/logs/install.log" 2>&1; then
    rm -rf "$HERE/.venv"
    if apt_ensure python3-venv; then
      python3 -m venv "$HERE/.venv" >>"$WORK/logs/install.log" 2>&1 || rm -rf "$HERE/.venv"
    fi
  fi
  if [ ! -x "$PY" ]; then
    unavailable python "cannot create a venv (python3 -m venv; see .work/logs/install.log)"
  elif ! "$PY" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt" \
    >>"$WORK/logs/install.log" 2>&1; then
    unavailable python "pip install -r tests/interop/requirements.txt failed (see .work/logs/install.log)"
  fi
fi

if wanted node || wanted chromium; then
  command -v node >/dev/null || apt_ensure nodejs npm || true
  if ! command -v node >/dev/null; then
    unavailable node "node cannot be installed"
  elif ! (cd "$HERE" && node -e "require('ws'); require('playwright-core')" 2>/dev/null); then
    say "npm ci (tests/interop)"
    (cd "$HERE" && npm ci --no-audit --no-fund --silent >>"$WORK/logs/install.log" 2>&1) ||
      unavailable node "npm ci in tests/interop failed (see .work/logs/install.log)"
  fi
  [ -n "${UNAVAILABLE[node]:-}" ] && UNAVAILABLE[chromium]="needs node: ${UNAVAILABLE[node]}"
fi

if wanted chromium && [ -z "${UNAVAILABLE[chromium]:-}" ]; then
  apt_ensure chromium || true
  [ -x /usr/bin/chromium ] || unavailable chromium "Debian package chromium cannot be installed"
fi

if wanted go || { [ "$EXTRAS" = 1 ] && wanted chromium; }; then
  if ! apt_ensure golang-go golang-github-gorilla-websocket-dev; then
    unavailable go "Debian packages golang-go/golang-github-gorilla-websocket-dev cannot be installed"
  else
    say "go build backends/go_hub (GOPATH mode, Debian's gorilla/websocket)"
    (cd "$HERE/backends/go_hub" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS="" \
      GOCACHE="$BUILD/gocache" go build -o "$BUILD/go_hub" .) >>"$WORK/logs/install.log" 2>&1 ||
      unavailable go "go build failed (see .work/logs/install.log)"
  fi
fi

T_INSTALL=$((SECONDS - T0))
say "cargo build ($PROFILE: wsgate, examples interop_backend and interop_client)"
(cd "$ROOT" && cargo build "${CARGO_PROFILE[@]}" --locked --quiet --bin wsgate \
  --example interop_backend --example interop_client)
T_BUILD=$((SECONDS - T0 - T_INSTALL))
WSGATE="$TARGET/wsgate"
RUST_BACKEND="$TARGET/examples/interop_backend"

# ---------------------------------------------------------------- versions
version() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/versions.tsv"; }
dpkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
lock_version() { awk -v n="$1" '$0=="name = \""n"\"" {getline; gsub(/version = |"/, ""); print; exit}' "$ROOT/Cargo.lock"; }
npm_version() { (cd "$HERE" && node -p "require('$1/package.json').version" 2>/dev/null) || echo '?'; }
version wsgate "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') ($PROFILE build, rustls $(lock_version rustls))"
[ -z "${UNAVAILABLE[chromium]:-}" ] && wanted chromium &&
  version chromium "$(dpkg_version chromium) (Debian), playwright-core $(npm_version playwright-core)"
[ -z "${UNAVAILABLE[python]:-}" ] && wanted python &&
  version python "websockets $("$PY" -c 'import websockets; print(websockets.__version__)'), $("$PY" -V)"
[ -z "${UNAVAILABLE[node]:-}" ] && { wanted node || wanted chromium; } &&
  version node "ws $(npm_version ws), node $(node -v)"
[ -z "${UNAVAILABLE[go]:-}" ] && [ -x "$BUILD/go_hub" ] &&
  version go "gorilla/websocket $(dpkg_version golang-github-gorilla-websocket-dev) (Debian), $(go version | cut -d' ' -f3)"
version rust "tokio-tungstenite $(lock_version tokio-tungstenite), tungstenite $(lock_version tungstenite)"

# ---------------------------------------------------------------- processes
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

start_bg() { # start_bg LOG CMD...: sets LAST_PID
  "${@:2}" >"$1" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
stop_pid() { # stop_pid PID: ends it, reaps it, and forgets it (a reaped PID may be reused)
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
wait_port() { # wait_port PORT PID: until PORT accepts (bounded), or PID died
  local _
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
free_ports() { # free_ports N: N ports the kernel just handed out on 127.0.0.1
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

write_config() { # write_config FILE LISTEN_PORT BALANCE BACKEND_PORT...
  local file=$1 port=$2 balance=$3 b
  shift 3
  {
    printf '[server]\nlog_level = "info"\n\n'
    printf '[limits]\nexempt = ["127.0.0.0/8"]\n\n'
    printf '[[listener]]\naddress = "127.0.0.1:%s"\ncert = "%s"\nkey = "%s"\n\n' "$port" "$FULLCHAIN" "$KEY"
    printf '[[pool]]\nname = "interop"\nbalance = "%s"\n' "$balance"
    for b in "$@"; do printf '[[pool.backend]]\naddress = "127.0.0.1:%s"\n' "$b"; done
    printf '\n[[route]]\npath_prefix = "/"\npool = "interop"\n'
    printf '%s' "${EXTRA_CONFIG:-}"
  } >"$file"
}

backend_cmd() { # backend_cmd KIND PORT NAME: sets CMD
  case $1 in
    python) CMD=("$PY" "$HERE/backends/py_backend.py" --port "$2" --name "$3") ;;
    node) CMD=(node "$HERE/backends/node_backend.js" --port "$2" --name "$3") ;;
    go) CMD=("$BUILD/go_hub" --port "$2" --name "$3") ;;
    rust) CMD=("$RUST_BACKEND" --port "$2" --name "$3") ;;
    echo) CMD=("$RUST_BACKEND" --port "$2" --name "$3" --plain-echo) ;;
    *) echo "unknown backend $1" >&2; exit 2 ;;
  esac
}
stack_of() { case $1 in echo) echo rust ;; *) echo "$1" ;; esac; }

client_cmd() { # client_cmd KIND PORT: sets CMD
  case $1 in
    chromium) CMD=(node "$HERE/clients/browser_driver.js" matrix --port "$2" --fullchain "$FULLCHAIN") ;;
    python) CMD=("$PY" "$HERE/clients/py_client.py" --port "$2" --ca "$CA") ;;
    node) CMD=(node "$HERE/clients/node_client.js" --port "$2" --ca "$CA") ;;
    rust) CMD=("$TARGET/examples/interop_client" --port "$2" --ca "$CA") ;;
    *) echo "unknown client $1" >&2; exit 2 ;;
  esac
}

record() { # record CLIENT BACKEND CHECK STATUS REASON
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/results.tsv"
}

run_client() { # run_client CLIENT BACKEND CMD...: its CHECK lines go to results.tsv
  local c=$1 b=$2 log="$WORK/logs/$1-$2" t=$SECONDS rc=0
  shift 2
  timeout -k 5 "$CLIENT_TIMEOUT" "$@" >"$log.out" 2>"$log.err" || rc=$?
  local name status reason
  while read -r _ name status reason; do
    record "$c" "$b" "$name" "$status" "$reason"
  done < <(grep '^CHECK ' "$log.out" || true)
  printf '   %-8s -> %-6s %3ss%s\n' "$c" "$b" $((SECONDS - t)) "$([ $rc = 0 ] || echo " (exit $rc)")"
}

# Starts backend(s) and a wsgate in front. Sets GW_PORT, BACKEND_PIDS, GW_PID; non-zero on failure.
start_stack() { # start_stack LABEL BALANCE KIND:NAME...
  local label=$1 balance=$2 spec kind name port i=0
  shift 2
  read -r -a ports <<<"$(free_ports $(($# + 1)))"
  GW_PORT=${ports[0]}
  BACKEND_PIDS=()
  BACKEND_PIDMAP=""
  for spec in "$@"; do
    i=$((i + 1))
    kind=${spec%%:*} name=${spec#*:} port=${ports[$i]}
    backend_cmd "$kind" "$port" "$name"
    start_bg "$WORK/logs/backend-$name.log" "${CMD[@]}"
    BACKEND_PIDS+=("$LAST_PID")
    BACKEND_PIDMAP+="${BACKEND_PIDMAP:+,}$name=$LAST_PID"
    wait_port "$port" "$LAST_PID" || { STACK_ERR="backend $name did not start (see .work/logs/backend-$name.log)"; return 1; }
  done
  write_config "$WORK/$label.toml" "$GW_PORT" "$balance" "${ports[@]:1}"
  start_bg "$WORK/logs/wsgate-$label.log" "$WSGATE" run -c "$WORK/$label.toml"
  GW_PID=$LAST_PID
  wait_port "$GW_PORT" "$GW_PID" || { STACK_ERR="wsgate did not start (see .work/logs/wsgate-$label.log)"; return 1; }
}
stop_stack() {
  local p
  for p in "${GW_PID:-}" "${BACKEND_PIDS[@]}"; do [ -n "$p" ] && stop_pid "$p"; done
  GW_PID=""
}

# ---------------------------------------------------------------- the matrix
for b in "${BACKENDS[@]}"; do
  bstack=$(stack_of "$b")
  for c in "${CLIENTS[@]}"; do printf 'cell\t%s\t%s\t\n' "$c" "$b" >>"$WORK/expected.tsv"; done
  if [ -n "${UNAVAILABLE[$bstack]:-}" ]; then
    for c in "${CLIENTS[@]}"; do record "$c" "$b" '*' SKIP "backend $b: ${UNAVAILABLE[$bstack]}"; done
    continue
  fi
  say "backend $b"
  if ! start_stack "$b" round_robin "$b:$b-1"; then
    for c in "${CLIENTS[@]}"; do record "$c" "$b" '*' FAIL "$STACK_ERR"; done
    stop_stack
    continue
  fi
  for c in "${CLIENTS[@]}"; do
    if [ -n "${UNAVAILABLE[$c]:-}" ]; then
      record "$c" "$b" '*' SKIP "client $c: ${UNAVAILABLE[$c]}"
      continue
    fi
    client_cmd "$c" "$GW_PORT"
    run_client "$c" "$b" "${CMD[@]}"
  done
  stop_stack
done

# ---------------------------------------------------------------- browser extras
if [ "$EXTRAS" = 1 ] && wanted chromium; then
  printf 'extra\tchromium\treconnect\treconnect_1014\n' >>"$WORK/expected.tsv"
  printf 'extra\tchromium\tchat\tchat_ip_hash\n' >>"$WORK/expected.tsv"
  printf 'extra\tchromium\tstatus\tstatus_backends,status_down\n' >>"$WORK/expected.tsv"
  if [ -n "${UNAVAILABLE[chromium]:-}" ]; then
    record chromium reconnect '*' SKIP "client chromium: ${UNAVAILABLE[chromium]}"
    record chromium chat '*' SKIP "client chromium: ${UNAVAILABLE[chromium]}"
    record chromium status '*' SKIP "client chromium: ${UNAVAILABLE[chromium]}"
  else
    say "browser: reconnect after its backend is killed (two node backends, round_robin; the driver SIGKILLs one)"
    if start_stack reconnect round_robin node:node-a node:node-b; then
      run_client chromium reconnect node "$HERE/clients/browser_driver.js" reconnect \
        --port "$GW_PORT" --fullchain "$FULLCHAIN" --kill "$BACKEND_PIDMAP"
    else
      record chromium reconnect reconnect_1014 FAIL "$STACK_ERR"
    fi
    stop_stack
    say "browser: two pages chat through the Go hub (two hubs, ip_hash)"
    if [ -n "${UNAVAILABLE[go]:-}" ]; then
      record chromium chat '*' SKIP "backend go: ${UNAVAILABLE[go]}"
    elif start_stack chat ip_hash go:hub-a go:hub-b; then
      run_client chromium chat node "$HERE/clients/browser_driver.js" chat \
        --port "$GW_PORT" --fullchain "$FULLCHAIN"
    else
      record chromium chat chat_ip_hash FAIL "$STACK_ERR"
    fi
    stop_stack
    say "browser: the admin status page shows the backends, and one killed as down within its refresh"
    ADMIN_PORT=$(free_ports 1)
    EXTRA_CONFIG=$(printf '\n[pool.health]\nkind = "tcp"\ninterval = "500ms"\ntimeout = "250ms"\nrise = 1\nfall = 1\n\n[admin]\naddress = "127.0.0.1:%s"\n' "$ADMIN_PORT")
    if start_stack status round_robin echo:echo-a echo:echo-b; then
      SHOT="${CARGO_TARGET_DIR:-$ROOT/target}/test-output/status-page.png"
      run_client chromium status node "$HERE/clients/status_page.js" --admin "$ADMIN_PORT" \
        --kill "127.0.0.1:${ports[1]}=${BACKEND_PIDS[0]}" \
        --backends "127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}" --shot "$SHOT"
    else
      record chromium status '*' FAIL "$STACK_ERR"
    fi
    EXTRA_CONFIG=""
    stop_stack
  fi
fi

# ---------------------------------------------------------------- the table
printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" >>"$WORK/meta.tsv"
printf 'machine\t%s cores, %s\n' "$(nproc)" "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")" >>"$WORK/meta.tsv"
printf 'selection\tclients: %s; backends: %s; extras: %s\n' "${CLIENTS[*]}" "${BACKENDS[*]}" "$EXTRAS" >>"$WORK/meta.tsv"
printf 'time\t%ss in all: installs and Go build %ss, cargo build %ss, matrix and extras %ss\n' \
  $((SECONDS - T0)) "$T_INSTALL" "$T_BUILD" $((SECONDS - T0 - T_INSTALL - T_BUILD)) >>"$WORK/meta.tsv"
echo
md=()
[ "${INTEROP_WRITE_RESULTS:-0}" = 1 ] && md=(--markdown "$WORK/RESULTS.table.md")
rc=0
python3 "$HERE/table.py" "$WORK" "${md[@]}" || rc=$?
if [ ${#md[@]} -gt 0 ]; then
  { printf '# Interop results (latest run)\n\nWritten by `INTEROP_WRITE_RESULTS=1 bash tests/interop/run.sh`. '
    printf 'Cells: ok = PASS, n/a = the library cannot do it (reason below), skip = stack not installable. '
    printf 'The time below is for this run; README.md gives the cost of a cold one.\n\n'
    cat "$WORK/RESULTS.table.md"; } >"$HERE/RESULTS.md"
fi
exit "$rc"

# Sourced by the single-proxy benchmark scripts (callgrind.sh, syscalls.sh,
# memory-return.sh): the wsgate config they all run, one TLS 1.3 listener in front
# of one echo backend, limits out of the way, no admin listener.
#
#   bench_wsgate_config PORT BACKEND_PORT [EXTRA_LIMITS_LINES [EXTRA_LISTENER_LINES]] > wsgate.toml
# Needs ROOT (the repository) set by the caller; BENCH_CERT and BENCH_KEY replace
# certs-example's full chain and key.
bench_wsgate_config() {
  cat <<CONF
[server]
log_level = "warn"
[admin]
address = ""
[limits]
exempt = ["127.0.0.0/8"]
message_rate = 0
idle_timeout = "1h"
${3:-}
[[listener]]
address = "127.0.0.1:$1"
cert = "${BENCH_CERT:-$ROOT/certs-example/fullchain.pem}"
key = "${BENCH_KEY:-$ROOT/certs-example/key.pem}"
min_version = "1.3"
${4:-}
[[pool]]
name = "echo"
[[pool.backend]]
address = "127.0.0.1:$2"
[[route]]
pool = "echo"
CONF
}

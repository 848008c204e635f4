#!/usr/bin/env bash
# TLS audit: runs testssl.sh against wsgate started with the example chain
# (certs-example/fullchain.pem + key.pem) and the default TLS policy (no
# min_version or cipher_suites in the config), on loopback, and fails on:
#   - any protocol below TLS 1.2 offered;
#   - any cipher suite offered without AEAD or without forward secrecy;
#   - any finding testssl rates above LOW (MEDIUM, HIGH, CRITICAL), except the
#     properties of the throwaway example certificate itself (cert_validityPeriod:
#     it is valid for 10 years; cert_revocation: it names no CRL or OCSP URI),
#     which a real certificate fixes and which say nothing of wsgate; they are
#     listed in the summary;
#   - a chain of trust that does not verify to certs-example/ca.pem (incomplete chain).
#
#   tools/tls-audit.sh                 # builds wsgate (debug, --locked) unless WSGATE_BIN is set
#   WSGATE_BIN=target/release/wsgate tools/tls-audit.sh
#
# Installs Debian's testssl.sh when it is missing (root or sudo). Prints a summary
# table (README.md shows the last one); the raw JSON stays in $WORK (printed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${TLS_AUDIT_PORT:-19843}"
WORK="$(mktemp -d /tmp/wsgate-tls-audit.XXXXXX)"
log() { printf '[tls-audit] %s\n' "$*" >&2; }

if ! command -v testssl >/dev/null && ! command -v testssl.sh >/dev/null; then
  log "installing testssl.sh from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q testssl.sh >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q testssl.sh >/dev/null; }
fi
TESTSSL="$(command -v testssl || command -v testssl.sh)"

if [ -z "${WSGATE_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --locked --quiet --bin wsgate)
  WSGATE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/wsgate"
fi

cat >"$WORK/wsgate.toml" <<CONF
# The default TLS policy: no min_version, no cipher_suites.
[[listener]]
address = "127.0.0.1:$PORT"
cert = "$ROOT/certs-example/fullchain.pem"
key = "$ROOT/certs-example/key.pem"

[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:9"

[[route]]
pool = "p"
CONF

"$WSGATE_BIN" run -c "$WORK/wsgate.toml" >"$WORK/wsgate.log" 2>&1 &
WSGATE_PID=$!
trap 'kill $WSGATE_PID 2>/dev/null || true; wait $WSGATE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$WORK/wsgate.log" && break
  kill -0 $WSGATE_PID 2>/dev/null || { cat "$WORK/wsgate.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "listening on" "$WORK/wsgate.log" || { log "wsgate did not start"; cat "$WORK/wsgate.log" >&2; exit 1; }

log "testssl $("$TESTSSL" --version 2>/dev/null | grep -o 'testssl[^ ]* *[0-9][0-9.a-z-]*' | head -1) against localhost:$PORT (raw output: $WORK)"
T0=$(date +%s)
# -p protocols, -E every cipher per protocol, -f forward secrecy, -S server
# defaults (certificate, chain of trust), -U vulnerabilities.
timeout 900 "$TESTSSL" --quiet --color 0 --warnings off --add-ca "$ROOT/certs-example/ca.pem" \
  --ip 127.0.0.1 -p -E -f -S -U --jsonfile "$WORK/testssl.json" "localhost:$PORT" >"$WORK/testssl.txt" 2>&1 || true
T1=$(date +%s)
[ -s "$WORK/testssl.json" ] || { log "testssl produced no JSON"; tail -20 "$WORK/testssl.txt" >&2; exit 1; }

python3 - "$WORK/testssl.json" "$((T1 - T0))" <<'PY'
import json, re, sys
findings = json.load(open(sys.argv[1]))
secs = sys.argv[2]
fail = []
by_id = {f["id"]: f for f in findings}

def get(i):
    return by_id.get(i, {}).get("finding", "(missing)")

# Protocols below TLS 1.2.
protos = {}
for p in ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"]:
    f = get(p)
    protos[p] = f
    if p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1") and "not offered" not in f:
        fail.append(f"{p} is offered: {f}")

# Every cipher suite offered: AEAD and forward secrecy.
suites = []
for f in findings:
    if f["id"].startswith("cipher-tls") or f["id"].startswith("cipher_x"):
        text = f["finding"]
        if "not offered" in text.lower():
            continue
        suites.append(text)
        name = text.split()[-1] if text.split() else text
        tls13 = name.startswith("TLS_") or "TLS_AES" in text or "TLS_CHACHA20" in text
        aead = re.search(r"GCM|CHACHA20|CCM", text) is not None
        fs = tls13 or re.search(r"ECDHE|DHE|X25519|ECDH ", text) is not None
        if not aead:
            fail.append(f"suite without AEAD: {text}")
        if not fs:
            fail.append(f"suite without forward secrecy: {text}")
if not suites:
    fail.append("no cipher suite listed (testssl -E found none)")

# Anything rated above LOW.
CERT_ONLY = ("cert_validityPeriod", "cert_revocation")
rated = [f for f in findings if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")]
above = [f for f in rated if f["id"] not in CERT_ONLY]
cert_notes = [f for f in rated if f["id"] in CERT_ONLY]
for f in above:
    fail.append(f"{f['severity']}: {f['id']}: {f['finding']}")

# Chain of trust (an incomplete chain does not verify to the example CA).
chain = next((f for f in findings if f["id"].startswith("cert_chain_of_trust")), None)
if chain is None or "passed" not in chain["finding"].lower():
    fail.append(f"chain of trust: {chain['finding'] if chain else '(missing)'}")

vulns = [f for f in findings if f.get("severity") in ("OK", "LOW", "INFO") and f["id"] in (
    "heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego",
    "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN",
    "LOGJAM", "BEAST", "LUCKY13", "RC4")]
sev = {}
for f in findings:
    sev[f.get("severity", "?")] = sev.get(f.get("severity", "?"), 0) + 1

print("| check | result |")
print("|---|---|")
print(f"| protocols | SSLv2, SSLv3, TLS 1.0, TLS 1.1: {', '.join(protos[p] for p in ['SSLv2','SSLv3','TLS1','TLS1_1'])}; TLS 1.2: {protos['TLS1_2']}; TLS 1.3: {protos['TLS1_3']} |")
print(f"| cipher suites offered ({len(suites)}) | {'; '.join(' '.join(s.split()) for s in suites)} |")
print(f"| forward secrecy | {get('PFS')}; curves {get('PFS_ECDHE_curves')} |")
print(f"| chain of trust (to certs-example/ca.pem) | {chain['finding'] if chain else '(missing)'} |")
print(f"| vulnerabilities checked | {len(vulns)} ({', '.join(sorted(f['id'] for f in vulns))}), none above LOW |" if not above else f"| vulnerabilities | {len(above)} above LOW |")
print(f"| example certificate (not the TLS policy) | {'; '.join(f['severity'] + ' ' + f['id'] + ': ' + f['finding'] for f in cert_notes) or 'nothing above LOW'} |")
print(f"| findings by rating | {', '.join(f'{k} {v}' for k, v in sorted(sev.items()))} |")
print(f"| testssl run time | {secs} s |")
if fail:
    print("\nFAILED:", file=sys.stderr)
    for f in fail:
        print("  " + f, file=sys.stderr)
    sys.exit(1)
print("\ntls-audit: passed", file=sys.stderr)
PY

"""A foreign client through wsgate: Python `websockets` (>= 13, asyncio API).

Usage: python3 py_client.py PORT [CA_FILE]

Connects to wss://localhost:PORT/ trusting only CA_FILE (default: certs-example/ca.pem),
offers subprotocol "chat", checks echoes of a text and a 70000-byte binary message,
a ping/pong, and a close handshake with code 4000 "bye". Exits 0 only if all held.
"""

import asyncio
import os
import socket
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.protocol import State

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CA = os.path.join(HERE, "..", "..", "certs-example", "ca.pem")
TIMEOUT = 15


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


async def run(port, ca):
    # cafile given: the context trusts that CA only, not the system store.
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    check(ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED,
          "TLS verifies the chain and the host name, trusting only " + os.path.basename(ca))
    async with connect(
        f"wss://localhost:{port}/",
        ssl=ctx,
        server_hostname="localhost",
        family=socket.AF_INET,  # the proxy listens on 127.0.0.1 only
        subprotocols=["chat"],
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
    ) as ws:
        check(ws.subprotocol == "chat", f"subprotocol negotiated: {ws.subprotocol!r}")

        await ws.send("hello")
        m = await asyncio.wait_for(ws.recv(), TIMEOUT)
        check(isinstance(m, str) and m == "hello", "text 'hello' echoed exactly")

        blob = os.urandom(70000)
        await ws.send(blob)
        m = await asyncio.wait_for(ws.recv(), TIMEOUT)
        check(isinstance(m, bytes) and m == blob, "70000-byte binary message echoed exactly")

        pong = await ws.ping(b"py-ping")
        latency = await asyncio.wait_for(pong, TIMEOUT)
        check(True, f"ping answered by a pong ({latency * 1000:.1f} ms)")

        await ws.close(code=4000, reason="bye")
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        sent, rcvd = ws.protocol.close_sent, ws.protocol.close_rcvd
        check(ws.state is State.CLOSED, "connection CLOSED after the close handshake")
        check(sent is not None and (sent.code, sent.reason) == (4000, "bye"),
              f"sent Close {sent}")
        check(rcvd is not None and (rcvd.code, rcvd.reason) == (4000, "bye"),
              f"received Close {rcvd} (echoed through the proxy)")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    port = int(sys.argv[1])
    ca = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_CA
    try:
        asyncio.run(asyncio.wait_for(run(port, ca), 4 * TIMEOUT))
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    print("python websockets client: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

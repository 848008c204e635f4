"""Interop client: Python `websockets` (asyncio API) through wsgate.

Usage: python3 py_client.py --port PORT --ca CA_PEM

Runs the checks of tests/interop/README.md against wss://127.0.0.1:PORT/, trusting
only CA_PEM, one connection per check, offering subprotocol "chat" and
permessage-deflate, and prints `CHECK name PASS|FAIL|NA reason` per check.
"""

import argparse
import asyncio
import os
import ssl

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 10
FRAGMENTS = ["frag1:" + "x" * 9994, "frag2:" + "x" * 9994, "frag3:" + "x" * 994]
PLAIN_ECHO = "backend has no command protocol (wsgate's own src/echo.rs)"


class NA(Exception):
    """The check cannot be done with this pair; the message says why."""


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def ask(ws, cmd):
    await ws.send(cmd)
    return await recv(ws)


async def require_protocol(ws):
    """Raises NA when the backend echoes cmd:who (no command protocol)."""
    who = await ask(ws, "cmd:who")
    if who == "cmd:who":
        raise NA(PLAIN_ECHO)
    if not (isinstance(who, str) and who.startswith("who:")):
        raise AssertionError(f"unexpected answer to cmd:who: {who!r}")


async def closed_with(ws):
    """Waits for the close handshake; returns (code, reason) of the Close received."""
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        raise AssertionError("no Close frame received")
    return rcvd.code, rcvd.reason


async def check_text(ws):
    s = "héllo wsgate ✓"
    m = await ask(ws, s)
    assert m == s, f"got {m!r}"
    return "non-ASCII text echoed"


async def check_binary(ws):
    b = bytes(range(256))
    m = await ask(ws, b)
    assert m == b, f"got {m!r}"
    return "256 bytes echoed"


async def check_big_1mib(ws):
    b = os.urandom(1 << 20)
    m = await ask(ws, b)
    assert isinstance(m, bytes) and m == b, f"got {len(m)} bytes"
    return "1048576 random bytes echoed"


async def check_frag_c2b(ws):
    parts = ["c2b-one|", "c2b-two|", "c2b-three"]
    await ws.send(parts)  # an iterable: one message, one frame per item
    m = await recv(ws)
    assert m == "".join(parts), f"got {m!r}"
    return "3 frames sent, echoed whole"


async def check_frag_b2c(ws):
    await require_protocol(ws)
    await ws.send("cmd:fragment")
    frames = []

    async def collect():
        async for f in ws.recv_streaming():  # yields each frame as it arrives
            frames.append(f)

    await asyncio.wait_for(collect(), TIMEOUT)
    if len(frames) == 1 and frames[0].startswith("fragment-unsupported:"):
        raise NA(frames[0].split(":", 1)[1])
    sizes = [len(f) for f in frames]
    assert "".join(frames) == "".join(FRAGMENTS), f"got {sum(sizes)} chars"
    # websockets' own send(iterable) ends a message with an empty final frame.
    extra = " + the empty final frame websockets sends" if sizes[-1:] == [0] else ""
    if extra:
        sizes.pop()
    assert sizes == [len(f) for f in FRAGMENTS], \
        f"frame sizes {sizes}, sent {[len(f) for f in FRAGMENTS]}"
    return f"frames of {'/'.join(map(str, sizes))} chars arrived as sent{extra}"


async def check_ping_c2b(ws):
    waiter = await ws.ping(b"ping-c2b")  # resolves on a Pong with this payload
    await asyncio.wait_for(waiter, TIMEOUT)
    return "pong with payload ping-c2b"


async def check_ping_b2c(ws):
    await require_protocol(ws)
    m = await ask(ws, "cmd:ping")
    assert m == "pong-ok", f"got {m!r}"
    return "backend got our pong"


async def check_subprotocol(ws):
    assert ws.subprotocol == "chat", f"selected {ws.subprotocol!r}"
    return "chat selected"


async def check_deflate(ws):
    mine = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    who = await ask(ws, "cmd:who")
    theirs = "ext-unsupported:src/echo.rs runs on tungstenite 0.30, which has no permessage-deflate" \
        if who == "cmd:who" else await ask(ws, "cmd:ext")
    if theirs.startswith("ext-unsupported:"):
        # Offered but not negotiated is right; negotiated would be made up on the way.
        assert "permessage-deflate" not in mine, f"client negotiated {mine!r} with a backend that cannot"
        raise NA("backend: " + theirs.split(":", 1)[1] + " (offered, correctly not negotiated)")
    assert "permessage-deflate" in mine, f"client negotiated {mine!r}"
    assert "permessage-deflate" in theirs, f"backend says {theirs!r}"
    big = "compressible " * 10000
    assert await ask(ws, big) == big, "compressible text not echoed"
    return f"client: {mine}; backend: {theirs[4:]}"


async def check_close_c2b(ws):
    await ws.close(4001, "client-bye")
    code, reason = await closed_with(ws)
    assert code == 4001, f"got Close {code} {reason!r}"
    return f"Close 4001 {reason!r} came back"


async def check_close_b2c(ws):
    await require_protocol(ws)
    await ws.send("cmd:close:4002:server-bye")
    try:
        m = await recv(ws)
        raise AssertionError(f"got a message {m!r}, not a Close")
    except ConnectionClosed:
        pass
    code, reason = await closed_with(ws)
    assert (code, reason) == (4002, "server-bye"), f"got Close {code} {reason!r}"
    return "Close 4002 'server-bye'"


CHECKS = [
    ("text", check_text), ("binary", check_binary), ("big_1mib", check_big_1mib),
    ("frag_c2b", check_frag_c2b), ("frag_b2c", check_frag_b2c),
    ("ping_c2b", check_ping_c2b), ("ping_b2c", check_ping_b2c),
    ("subprotocol", check_subprotocol), ("deflate", check_deflate),
    ("close_c2b", check_close_c2b), ("close_b2c", check_close_b2c),
]


async def run_one(url, ctx, fn):
    async with connect(url, ssl=ctx, subprotocols=["chat"], compression="deflate",
                       max_size=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                       ping_interval=None) as ws:
        try:
            return "PASS", await fn(ws)
        except NA as e:  # inside the block, so the connection still closes with 1000
            return "NA", str(e)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    a = p.parse_args()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)  # this CA only
    url = f"wss://127.0.0.1:{a.port}/"
    for name, fn in CHECKS:
        try:
            status, why = await asyncio.wait_for(run_one(url, ctx, fn), 3 * TIMEOUT)
            print(f"CHECK {name} {status} {why}", flush=True)
        except Exception as e:  # noqa: BLE001 - any other failure fails the check
            why = str(e).replace("\n", " ") or type(e).__name__
            print(f"CHECK {name} FAIL {type(e).__name__}: {why}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

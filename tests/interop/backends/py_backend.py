"""Interop backend: Python `websockets` (asyncio server), plain ws on 127.0.0.1.

Usage: python3 py_backend.py --port PORT --name NAME

Speaks the command protocol of tests/interop/README.md: echoes text and binary,
answers cmd:who, cmd:ext, cmd:fragment, cmd:ping and cmd:close:CODE:REASON, selects
subprotocol "chat" when offered, negotiates permessage-deflate (websockets' default).
"""

import argparse
import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

FRAGMENTS = ["frag1:" + "x" * 9994, "frag2:" + "x" * 9994, "frag3:" + "x" * 994]
PING_PAYLOAD = b"ping-b2c"
TIMEOUT = 10


def make_handler(name):
    async def handler(ws):
        try:
            async for msg in ws:
                if not (isinstance(msg, str) and msg.startswith("cmd:")):
                    await ws.send(msg)
                elif msg == "cmd:who":
                    await ws.send(f"who:{name}")
                elif msg == "cmd:ext":
                    await ws.send("ext:" + ws.response.headers.get("Sec-WebSocket-Extensions", ""))
                elif msg == "cmd:fragment":
                    # An iterable is sent as one message, one frame per item.
                    await ws.send(iter(FRAGMENTS))
                elif msg == "cmd:ping":
                    # The waiter resolves when a Pong with this payload arrives.
                    waiter = await ws.ping(PING_PAYLOAD)
                    await asyncio.wait_for(waiter, TIMEOUT)
                    await ws.send("pong-ok")
                elif msg.startswith("cmd:close:"):
                    code, _, reason = msg[len("cmd:close:"):].partition(":")
                    await ws.close(int(code), reason)
                else:
                    await ws.send(msg)
        except ConnectionClosed:
            pass

    return handler


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    a = p.parse_args()
    async with serve(
        make_handler(a.name),
        "127.0.0.1",
        a.port,
        subprotocols=["chat"],
        compression="deflate",
        max_size=64 * 2**20,
        ping_interval=None,
    ) as server:
        print(f"py_backend {a.name} on 127.0.0.1:{a.port}", file=sys.stderr, flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

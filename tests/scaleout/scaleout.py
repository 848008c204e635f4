#!/usr/bin/env python3
"""The two halves of tests/scaleout/run.sh that are not process management.

  scaleout.py backends PORT...   WebSocket echo backends b1, b2, ... on 127.0.0.1:PORT;
                                 each answers its 101 with x-backend (its name) and
                                 x-seen-xff (the X-Forwarded-For it received).
  scaleout.py drive ...          the clients: see main_drive and run.sh.

Clients bind distinct 127.x addresses (never 127.0.0.1, HAProxy's own address).
Every wait has a deadline; every load loop is bounded.
"""
import asyncio
import json
import os
import signal
import socket
import ssl
import sys
import time
import urllib.request

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve


# ---------------------------------------------------------------- backends
async def backends(ports):
    async def handler(ws):
        async for msg in ws:
            await ws.send(msg)

    def process_response(name):
        def f(conn, request, response):
            response.headers["x-backend"] = name
            response.headers["x-seen-xff"] = request.headers.get("x-forwarded-for", "")
            return response
        return f

    servers = []
    for i, port in enumerate(ports):
        servers.append(await serve(handler, "127.0.0.1", port,
                                   process_response=process_response(f"b{i + 1}"),
                                   ping_interval=None))
    print("backends ready", flush=True)
    await asyncio.Event().wait()


# ---------------------------------------------------------------- helpers
def client_ip(i):
    return f"127.1.{i // 200}.{i % 200 + 1}"


class Env:
    def __init__(self, a):
        self.lb = ("127.0.0.1", int(a["lb_port"]))
        self.admins = [int(p) for p in a["admin_ports"].split(",")]
        self.pids = [int(p) for p in a["pids"].split(",")]
        self.logs = a["logs"].split(",")
        self.stats = a["stats_socket"]
        self.ctx = ssl.create_default_context(cafile=a["ca"])
        self.failures = []  # every failed connection attempt (must stay empty outside SIGKILL)

    async def open(self, i, timeout=5.0):
        """One WebSocket through HAProxy from client i's address."""
        ws = await asyncio.wait_for(connect(
            f"wss://localhost:{self.lb[1]}/", ssl=self.ctx,
            host="127.0.0.1", port=self.lb[1],
            local_addr=(client_ip(i), 0), ping_interval=None, open_timeout=timeout,
            close_timeout=5), timeout + 1)
        h = ws.response.headers
        return ws, h.get("x-backend"), h.get("x-seen-xff")

    def haproxy(self, cmd):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.stats)
        s.sendall((cmd + "\n").encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        s.close()
        return out.decode()

    def servers(self):
        """{server name: {'status':..., 'stot': int, 'scur': int}} from `show stat`."""
        lines = self.haproxy("show stat").splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for l in lines[1:]:
            row = dict(zip(head, l.split(",")))
            if row.get("pxname") == "wsgate" and row.get("svname", "").startswith("wsgate"):
                out[row["svname"]] = {"status": row["status"], "stot": int(row["stot"] or 0),
                                      "scur": int(row["scur"] or 0)}
        return out

    def readyz(self, n):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admins[n]}/readyz", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def sessions_by_instance(self):
        """{client 'ip:port': instance index} from each instance's access log."""
        seen = {}
        for n, path in enumerate(self.logs):
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    c = rec.get("client")
                    if c and rec.get("backend") is not None:
                        seen[c] = n
        return seen


async def until(what, pred, deadline):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"FAIL: timed out after {deadline}s waiting for {what}")


def check(cond, msg):
    if not cond:
        raise SystemExit(f"FAIL: {msg}")
    print(f"ok: {msg}", flush=True)


# ---------------------------------------------------------------- (1) and (2)
async def xff_and_hash(env, clients, rounds):
    landed = {}  # client -> set of backends
    conns = []   # (client, "ip:port")
    for r in range(rounds):
        for i in range(clients):
            try:
                ws, backend, xff = await env.open(i)
            except Exception as e:  # noqa: BLE001 - any failure is a test failure
                env.failures.append(f"round {r} client {i}: {e!r}")
                continue
            if xff != client_ip(i):
                raise SystemExit(f"FAIL: client {client_ip(i)} reached the backend as X-Forwarded-For {xff!r}")
            await ws.send(f"hello {i}")
            if await asyncio.wait_for(ws.recv(), 5) != f"hello {i}":
                raise SystemExit("FAIL: echo mismatch")
            local = ws.local_address
            conns.append((i, f"{local[0]}:{local[1]}"))
            landed.setdefault(i, set()).add(backend)
            await ws.close()
    check(not env.failures, f"{clients * rounds} connections through HAProxy, none failed")
    check(len(landed) == clients, f"all {clients} clients' real addresses reached the backends in X-Forwarded-For")
    # The access logs say which instance served which connection.
    await until("access log lines of every session",
                lambda: all(c in env.sessions_by_instance() for _, c in conns), 10)
    where = env.sessions_by_instance()
    instances = {}
    for i, c in conns:
        instances.setdefault(i, set()).add(where[c])
    multi = sum(1 for s in instances.values() if len(s) >= 2)
    all3 = sum(1 for s in instances.values() if len(s) == 3)
    used = set().union(*instances.values())
    check(used == {0, 1, 2}, "HAProxy spread the connections over all 3 instances")
    check(multi == clients, f"every client went through at least 2 instances ({all3} through all 3)")
    split = [i for i, b in landed.items() if len(b) != 1]
    check(not split, "ip_hash: each client landed on the same backend whichever instance served it")
    per_backend = {}
    for i, b in landed.items():
        per_backend[next(iter(b))] = per_backend.get(next(iter(b)), 0) + 1
    check(len(per_backend) == 3, f"the clients spread over the 3 backends {sorted(per_backend.items())}")
    return {i: next(iter(b)) for i, b in landed.items()}


# ---------------------------------------------------------------- sessions that reconnect
class Session:
    """A client that stays connected, echoes a message every 200 ms and reconnects
    (through HAProxy) whenever its session ends; every connection it makes is recorded."""

    def __init__(self, env, i, expect_backend, retry_budget):
        self.env, self.i, self.expect, self.budget = env, i, expect_backend, retry_budget
        self.closes = []     # (monotonic time, close code or None)
        self.backends = []   # backend of each connection
        self.attempt_failures = []
        self.reconnect_times = []
        self.stop = False
        self.connected = asyncio.Event()

    async def run(self):
        while not self.stop:
            t0 = time.monotonic()
            ws = None
            while ws is None:
                try:
                    ws, backend, xff = await self.env.open(self.i)
                except Exception as e:  # noqa: BLE001
                    self.attempt_failures.append((time.monotonic(), repr(e)))
                    if time.monotonic() - t0 > self.budget:
                        raise SystemExit(f"FAIL: client {self.i} could not reconnect within {self.budget}s: {e!r}")
                    await asyncio.sleep(0.1)
            if self.closes:
                self.reconnect_times.append(time.monotonic() - self.closes[-1][0])
            self.backends.append(backend)
            self.connected.set()
            try:
                n = 0
                while not self.stop:
                    n += 1
                    await ws.send(f"{self.i}:{n}")
                    got = await asyncio.wait_for(ws.recv(), 5)
                    if got != f"{self.i}:{n}":
                        raise SystemExit(f"FAIL: client {self.i} echo mismatch")
                    await asyncio.sleep(0.2)
                await ws.close()
                return
            except websockets.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
                self.closes.append((time.monotonic(), code))
                self.connected.clear()
            except (asyncio.TimeoutError, OSError) as e:
                self.closes.append((time.monotonic(), None))
                self.connected.clear()


async def drain_and_kill(env, expected, n_sessions, grace, spread):
    sessions = [Session(env, i, expected[i], retry_budget=5.0) for i in range(n_sessions)]
    tasks = [asyncio.create_task(s.run()) for s in sessions]

    async def all_connected():
        await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in sessions)), 30)
    await all_connected()
    check(all(s.backends[0] == s.expect for s in sessions),
          f"{n_sessions} long sessions open, each on its ip_hash backend")
    before = env.servers()
    on1 = before["wsgate1"]["scur"]
    check(on1 > 0, f"instance 1 holds {on1} sessions before SIGTERM")

    # ---- (3) SIGTERM instance 1
    t_term = time.monotonic()
    os.kill(env.pids[0], signal.SIGTERM)
    await until("instance 1 /readyz to fail", lambda: env.readyz(0) == 503, 5)
    check(True, "instance 1 /readyz answers 503 after SIGTERM")
    await until("HAProxy to mark instance 1 DOWN",
                lambda: env.servers()["wsgate1"]["status"].startswith("DOWN"), grace)
    t_down = time.monotonic() - t_term
    check(t_down < grace, f"HAProxy took instance 1 out after {t_down:.2f}s, within shutdown_grace {grace}s")
    stot1 = env.servers()["wsgate1"]["stot"]
    fresh = []
    for k in range(30):
        i = 400 + k
        ws, b, xff = await env.open(i)
        fresh.append(ws)
    check(env.servers()["wsgate1"]["stot"] == stot1,
          "30 new clients during the grace period: none sent to instance 1")
    for ws in fresh:
        await ws.close()
    # The drain: 1001 for instance 1's sessions, spread over drain_spread.
    await until("instance 1's sessions to be closed with 1001",
                lambda: sum(1 for s in sessions for _, c in s.closes if c == 1001) >= on1,
                grace + spread + 10)
    codes = [(t, c) for s in sessions for t, c in s.closes]
    check(all(c == 1001 for _, c in codes), f"the {len(codes)} drained sessions got 1001, nothing else")
    times = sorted(t for t, _ in codes)
    span = times[-1] - times[0]
    check(len(codes) == on1, f"exactly instance 1's {on1} sessions were closed")
    check(span >= spread * 0.4 or on1 < 4,
          f"the 1001s were spread over {span:.2f}s of the {spread}s drain window")
    await until("the drained clients to reconnect",
                lambda: all(s.connected.is_set() for s in sessions), 10)
    drained = [s for s in sessions if s.closes]
    check(all(s.backends[-1] == s.expect for s in drained),
          "they reconnected through HAProxy to the same backends")
    failures = [f for s in sessions for f in s.attempt_failures]
    check(not failures and not env.failures, "no connection attempt failed during the drain")
    after = env.servers()
    check(after["wsgate1"]["scur"] == 0, "instance 1 holds no session any more")

    # ---- (4) SIGKILL instance 2
    on2 = after["wsgate2"]["scur"]
    check(on2 > 0, f"instance 2 holds {on2} sessions before SIGKILL")
    closes_before = {id(s): len(s.closes) for s in sessions}
    os.kill(env.pids[1], signal.SIGKILL)
    await until("instance 2's clients to notice", lambda: sum(
        1 for s in sessions if len(s.closes) > closes_before[id(s)]) >= on2, 15)
    await until("every client to reconnect", lambda: all(s.connected.is_set() for s in sessions), 10)
    killed = [s for s in sessions if len(s.closes) > closes_before[id(s)]]
    worst = max(s.reconnect_times[-1] for s in killed)
    check(len(killed) == on2, f"instance 2's {on2} clients lost their sessions")
    check(worst < 5.0, f"they reconnected to the others within {worst:.2f}s (retry budget 5s)")
    check(all(s.backends[-1] == s.expect for s in killed), "to the same backends")
    check(env.servers()["wsgate3"]["scur"] >= n_sessions, "instance 3 now holds every session")
    for s in sessions:
        s.stop = True
    await asyncio.wait_for(asyncio.gather(*tasks), 15)


async def main_drive(a):
    env = Env(a)
    expected = await xff_and_hash(env, int(a["clients"]), 3)
    await drain_and_kill(env, expected, int(a["sessions"]), float(a["grace"]), float(a["spread"]))
    print("PASS", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "backends":
        asyncio.run(backends([int(p) for p in sys.argv[2:]]))
    elif sys.argv[1] == "drive":
        args = dict(kv.split("=", 1) for kv in sys.argv[2:])
        asyncio.run(main_drive(args))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]}")

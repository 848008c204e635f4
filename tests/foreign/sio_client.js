// Socket.IO clients (npm `socket.io-client`, default transports: long-polling first,
// then the upgrade to WebSocket) through wsgate with balance = "cookie".
//
// Usage: node sio_client.js PORT CA_FILE N
//
// Driven by tests/foreign_http.rs over stdin/stdout, one step per line:
//  1. connects N clients (all from 127.0.0.1, each with its own cookie jar:
//     withCredentials makes engine.io-client keep cookies in Node), waits until each
//     has upgraded to WebSocket, sends 5 echo events each, checks every ack came from
//     one backend, prints `STEP1 {"a":4,"b":4}` (clients per backend);
//  2. on the line `KILLED`: waits until every client has reconnected by itself and
//     upgraded again, echoes again, prints `STEP2 {...}`;
//  3. on the line `NEW M`: connects M more clients, prints `STEP3 {...}`;
//  4. on `DONE`: closes everything and exits 0 if no client ever saw an error
//     mentioning "Session ID unknown" and every check held.
'use strict';

const fs = require('fs');
const readline = require('readline');
const { io } = require('socket.io-client');

const TIMEOUT_MS = 20000;
const port = Number(process.argv[2]);
const ca = fs.readFileSync(process.argv[3]);
const n = Number(process.argv[4]);
const url = `https://localhost:${port}`;
const problems = [];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

function within(ms, what, p) {
  let t;
  return Promise.race([
    p,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

function client() {
  const s = io(url, {
    ca,
    withCredentials: true,
    forceNew: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    timeout: TIMEOUT_MS,
  });
  s.on('connect_error', (e) => {
    const msg = `${e && e.message} ${e && e.description ? JSON.stringify(e.description.message || e.description) : ''}`;
    if (/Session ID unknown/i.test(msg)) problems.push(`connect_error: ${msg}`);
  });
  return s;
}

// Resolves once `s` is connected over WebSocket (after polling, then the upgrade).
function upgraded(s) {
  return within(TIMEOUT_MS, 'connect and upgrade', new Promise((resolve) => {
    const poll = () => {
      if (s.connected && s.io.engine && s.io.engine.transport.name === 'websocket') resolve();
      else setTimeout(poll, 20);
    };
    poll();
  }));
}

async function echoes(s, k) {
  const froms = new Set();
  for (let i = 0; i < k; i++) {
    const ack = await within(TIMEOUT_MS, 'echo ack', s.emitWithAck('echo', `m${i}`));
    check(ack.data === `m${i}`, `ack carries the data: ${JSON.stringify(ack)}`);
    froms.add(ack.from);
  }
  check(froms.size === 1, `one backend per session, got ${[...froms]}`);
  return [...froms][0];
}

async function round(clients) {
  await Promise.all(clients.map(upgraded));
  const backends = await Promise.all(clients.map((s) => echoes(s, 5)));
  const count = {};
  for (const b of backends) count[b] = (count[b] || 0) + 1;
  return count;
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  const next = () => new Promise((resolve) => lines.once('line', resolve));
  const clients = Array.from({ length: n }, client);
  console.log(`STEP1 ${JSON.stringify(await round(clients))}`);
  const cmd = await next();
  check(cmd === 'KILLED', `expected KILLED, got ${cmd}`);
  // The killed backend's clients see their WebSocket close and reconnect by themselves.
  await new Promise((r) => setTimeout(r, 300));
  console.log(`STEP2 ${JSON.stringify(await round(clients))}`);
  const more = (await next()).match(/^NEW (\d+)$/);
  check(more, 'expected NEW M');
  const fresh = Array.from({ length: Number(more[1]) }, client);
  console.log(`STEP3 ${JSON.stringify(await round(fresh))}`);
  const done = await next();
  check(done === 'DONE', `expected DONE, got ${done}`);
  for (const s of clients.concat(fresh)) s.close();
  check(problems.length === 0, `errors seen: ${problems.join('; ')}`);
}

main().then(
  () => {
    console.log('socket.io clients: all checks passed');
    process.exit(0);
  },
  (e) => {
    console.log(`FAIL: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);

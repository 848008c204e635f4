// A foreign client through wsgate: Node's `ws` package.
//
// Usage: node node_client.js PORT [CA_FILE]
//
// Connects to wss://localhost:PORT/ trusting only CA_FILE (default: certs-example/ca.pem),
// offers subprotocol "chat", checks echoes of a text and a 70000-byte binary message,
// a ping/pong, and a close handshake with code 4000 "bye". Exits 0 only if all held.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const WebSocket = require('ws');

const TIMEOUT_MS = 15000;
const port = Number(process.argv[2]);
const caFile = process.argv[3] || path.join(__dirname, '..', '..', 'certs-example', 'ca.pem');

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

// Resolves with the next `event` emitted by `ws` (its arguments), rejects on error/close/timeout.
function next(ws, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(reject, new Error(`timed out waiting for ${event}`)), TIMEOUT_MS);
    const on = (...args) => done(resolve, args);
    const onError = (e) => done(reject, e);
    const onClose = (code, reason) => done(reject, new Error(`closed (${code} ${reason}) while waiting for ${event}`));
    function done(f, v) {
      clearTimeout(timer);
      ws.off(event, on);
      ws.off('error', onError);
      if (event !== 'close') ws.off('close', onClose);
      f(v);
    }
    ws.on(event, on);
    ws.on('error', onError);
    if (event !== 'close') ws.on('close', onClose);
  });
}

async function run() {
  // `ca` replaces Node's root store: only this CA is trusted; rejectUnauthorized is the default.
  const ws = new WebSocket(`wss://localhost:${port}/`, ['chat'], {
    ca: fs.readFileSync(caFile),
    servername: 'localhost',
    family: 4, // the proxy listens on 127.0.0.1 only
    rejectUnauthorized: true,
    handshakeTimeout: TIMEOUT_MS,
  });
  await next(ws, 'open');
  check(true, `TLS verified against ${path.basename(caFile)} only, host name localhost`);
  check(ws.protocol === 'chat', `subprotocol negotiated: '${ws.protocol}'`);

  ws.send('hello');
  let [data, isBinary] = await next(ws, 'message');
  check(!isBinary && data.toString('utf8') === 'hello', "text 'hello' echoed exactly");

  const blob = crypto.randomBytes(70000);
  ws.send(blob);
  [data, isBinary] = await next(ws, 'message');
  check(isBinary && Buffer.isBuffer(data) && data.equals(blob), '70000-byte binary message echoed exactly');

  const payload = Buffer.from('node-ping');
  ws.ping(payload);
  const [pong] = await next(ws, 'pong');
  check(pong.equals(payload), `ping answered by a pong with the same payload ('${pong}')`);

  ws.close(4000, 'bye');
  const [code, reason] = await next(ws, 'close');
  check(ws.readyState === WebSocket.CLOSED, 'connection CLOSED after the close handshake');
  check(code === 4000 && reason.toString('utf8') === 'bye', `received Close ${code} '${reason}' (echoed through the proxy)`);
}

if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node node_client.js PORT [CA_FILE]');
  process.exit(2);
}
run().then(
  () => {
    console.log('node ws client: all checks passed');
    process.exit(0);
  },
  (e) => {
    console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);

// The SockJS client (npm `sockjs-client`) in Node through wsgate, once per transport:
// its default choice (after GET /echo/info, the WebSocket transport), then the
// HTTP-only `xhr-streaming` (a response that streams for the whole session) and
// `xhr-polling`.
//
// Usage: NODE_EXTRA_CA_CERTS=CA_FILE node sockjs_client.js PORT
// (sockjs-client has no TLS options; Node adds NODE_EXTRA_CA_CERTS to its roots.)
'use strict';

const SockJS = require('sockjs-client');

const TIMEOUT_MS = 15000;
const port = Number(process.argv[2]);

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

function session(transports) {
  return new Promise((resolve, reject) => {
    const opts = transports ? { transports } : {};
    const sock = new SockJS(`https://localhost:${port}/echo`, null, opts);
    const timer = setTimeout(() => reject(new Error(`timed out (${transports || 'default'})`)), TIMEOUT_MS);
    const want = ['one', 'two', 'x'.repeat(20000)];
    const got = [];
    sock.onopen = () => {
      for (const m of want) sock.send(m);
    };
    sock.onmessage = (e) => {
      got.push(e.data);
      if (got.length === want.length) {
        const transport = sock.transport;
        sock.close();
        clearTimeout(timer);
        resolve({ transport, same: got.every((m, i) => m === want[i]) });
      }
    };
    sock.onclose = (e) => {
      if (got.length < want.length) {
        clearTimeout(timer);
        reject(new Error(`closed early (${transports || 'default'}): ${e.code} ${e.reason}`));
      }
    };
  });
}

async function main() {
  let r = await session(null);
  check(r.transport === 'websocket', `default transport after /info is '${r.transport}'`);
  check(r.same, 'three messages (one of 20,000 bytes) echoed in order over it');
  for (const t of ['xhr-streaming', 'xhr-polling']) {
    r = await session([t]);
    check(r.transport === t, `transport ${t}`);
    check(r.same, `three messages echoed in order over ${t}`);
  }
}

if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node sockjs_client.js PORT');
  process.exit(2);
}
main().then(
  () => {
    console.log('sockjs client: all checks passed');
    process.exit(0);
  },
  (e) => {
    console.log(`FAIL: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);

// Interop client: Node `ws` through wsgate.
//
// Usage: node node_client.js --port PORT --ca CA_PEM
//
// Runs the checks of tests/interop/README.md against wss://127.0.0.1:PORT/, trusting
// only CA_PEM, one connection per check, offering subprotocol "chat" and
// permessage-deflate, and prints `CHECK name PASS|FAIL|NA reason` per check.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const WebSocket = require('ws');

const TIMEOUT_MS = 10000;
const FRAGMENTS = ['frag1:' + 'x'.repeat(9994), 'frag2:' + 'x'.repeat(9994), 'frag3:' + 'x'.repeat(994)];
const PLAIN_ECHO = "backend has no command protocol (wsgate's own src/echo.rs)";

class NA extends Error {}

function arg(name) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

// A connection whose events are queued, so checks can await them in order.
class Conn {
  static open(url, ca) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, ['chat'], {
        ca, rejectUnauthorized: true, perMessageDeflate: true,
        maxPayload: 64 * 1024 * 1024, handshakeTimeout: TIMEOUT_MS,
      });
      const c = new Conn(ws);
      ws.once('upgrade', (res) => { c.ext = res.headers['sec-websocket-extensions'] || ''; });
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
    });
  }
  constructor(ws) {
    this.ws = ws;
    this.events = [];
    this.waiter = null;
    const push = (e) => { this.events.push(e); if (this.waiter) this.waiter(); };
    ws.on('message', (data, isBinary) => push({ type: 'message', data, isBinary }));
    ws.on('pong', (data) => push({ type: 'pong', data }));
    ws.on('close', (code, reason) => push({ type: 'close', code, reason: reason.toString('utf8') }));
    ws.on('error', (err) => push({ type: 'error', err }));
  }
  // The next event of `type` (others before it are dropped); rejects on timeout/close.
  next(type) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiter = null; reject(new Error(`timed out waiting for ${type}`)); }, TIMEOUT_MS);
      const look = () => {
        while (this.events.length) {
          const e = this.events.shift();
          if (e.type === type) { clearTimeout(timer); this.waiter = null; return resolve(e); }
          if (e.type === 'close' || e.type === 'error') {
            clearTimeout(timer); this.waiter = null;
            return reject(new Error(`${e.type} (${e.code || e.err} ${e.reason || ''}) while waiting for ${type}`));
          }
        }
      };
      this.waiter = look;
      look();
    });
  }
  async ask(msg) {
    this.ws.send(msg);
    const e = await this.next('message');
    return e.isBinary ? e.data : e.data.toString('utf8');
  }
  // A clean close (bounded), then the socket is dropped either way.
  async shutdown() {
    if (this.ws.readyState === WebSocket.OPEN) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 2000);
        this.ws.once('close', () => { clearTimeout(timer); resolve(); });
        this.ws.close(1000, 'done');
      });
    }
    this.ws.terminate();
  }
  async requireProtocol() {
    const who = await this.ask('cmd:who');
    if (who === 'cmd:who') throw new NA(PLAIN_ECHO);
    if (typeof who !== 'string' || !who.startsWith('who:')) throw new Error(`unexpected answer to cmd:who: ${who}`);
  }
}

function assert(cond, what) { if (!cond) throw new Error(what); }

const CHECKS = {
  async text(c) {
    const s = 'héllo wsgate ✓';
    const m = await c.ask(s);
    assert(m === s, `got ${m}`);
    return 'non-ASCII text echoed';
  },
  async binary(c) {
    const b = Buffer.from([...Array(256).keys()]);
    const m = await c.ask(b);
    assert(Buffer.isBuffer(m) && m.equals(b), 'binary differs');
    return '256 bytes echoed';
  },
  async big_1mib(c) {
    const b = crypto.randomBytes(1 << 20);
    const m = await c.ask(b);
    assert(Buffer.isBuffer(m) && m.equals(b), `got ${m.length} bytes`);
    return '1048576 random bytes echoed';
  },
  async frag_c2b(c) {
    const parts = ['c2b-one|', 'c2b-two|', 'c2b-three'];
    c.ws.send(parts[0], { fin: false });
    c.ws.send(parts[1], { fin: false });
    c.ws.send(parts[2], { fin: true });
    const e = await c.next('message');
    assert(!e.isBinary && e.data.toString('utf8') === parts.join(''), `got ${e.data}`);
    return '3 frames sent (fin:false), echoed whole';
  },
  async frag_b2c(c) {
    await c.requireProtocol();
    const m = await c.ask('cmd:fragment');
    if (typeof m === 'string' && m.startsWith('fragment-unsupported:')) throw new NA(m.slice(21));
    assert(m === FRAGMENTS.join(''), `got ${m.length} chars`);
    return 'reassembled text exact (ws hides frames)';
  },
  async ping_c2b(c) {
    c.ws.ping('ping-c2b');
    const e = await c.next('pong');
    assert(e.data.toString('utf8') === 'ping-c2b', `pong payload '${e.data}'`);
    return 'pong with payload ping-c2b';
  },
  async ping_b2c(c) {
    await c.requireProtocol();
    const m = await c.ask('cmd:ping');
    assert(m === 'pong-ok', `got ${m}`);
    return 'backend got our pong';
  },
  async subprotocol(c) {
    assert(c.ws.protocol === 'chat', `selected '${c.ws.protocol}'`);
    return 'chat selected';
  },
  async deflate(c) {
    const who = await c.ask('cmd:who');
    const theirs = who === 'cmd:who'
      ? 'ext-unsupported:src/echo.rs runs on tungstenite 0.30, which has no permessage-deflate'
      : await c.ask('cmd:ext');
    if (theirs.startsWith('ext-unsupported:')) {
      // Offered but not negotiated is right; negotiated would be made up on the way.
      assert(!c.ext.includes('permessage-deflate'), `client negotiated '${c.ext}' with a backend that cannot`);
      throw new NA(`backend: ${theirs.slice(16)} (offered, correctly not negotiated)`);
    }
    assert(c.ext.includes('permessage-deflate'), `client negotiated '${c.ext}'`);
    assert(theirs.includes('permessage-deflate'), `backend says '${theirs}'`);
    const big = 'compressible '.repeat(10000);
    assert((await c.ask(big)) === big, 'compressible text not echoed');
    return `client: ${c.ext}; backend: ${theirs.slice(4)}`;
  },
  async close_c2b(c) {
    c.ws.close(4001, 'client-bye');
    const e = await c.next('close');
    assert(e.code === 4001, `got Close ${e.code} '${e.reason}'`);
    return `Close 4001 '${e.reason}' came back`;
  },
  async close_b2c(c) {
    await c.requireProtocol();
    c.ws.send('cmd:close:4002:server-bye');
    const e = await c.next('close');
    assert(e.code === 4002 && e.reason === 'server-bye', `got Close ${e.code} '${e.reason}'`);
    return "Close 4002 'server-bye'";
  },
};

async function main() {
  const port = Number(arg('--port'));
  const caFile = arg('--ca');
  if (!Number.isInteger(port) || !caFile) {
    console.error('usage: node node_client.js --port PORT --ca CA_PEM');
    process.exit(2);
  }
  const ca = fs.readFileSync(caFile);
  for (const [name, fn] of Object.entries(CHECKS)) {
    let c = null;
    try {
      c = await Conn.open(`wss://127.0.0.1:${port}/`, ca);
      console.log(`CHECK ${name} PASS ${await fn(c)}`);
    } catch (e) {
      const why = String(e && e.message ? e.message : e).replace(/\n/g, ' ');
      console.log(`CHECK ${name} ${e instanceof NA ? 'NA' : 'FAIL'} ${why}`);
    } finally {
      if (c) await c.shutdown();
    }
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });

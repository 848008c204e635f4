// Interop client: headless Chromium (Debian's /usr/bin/chromium) driven by
// playwright-core. The page (page.html, served from a loopback HTTP server) does
// all WebSocket work with the browser's own API; this script only drives it.
//
// Usage:
//   node browser_driver.js matrix    --port PORT --fullchain PEM
//   node browser_driver.js reconnect --port PORT --fullchain PEM --kill NAME=PID,NAME=PID
//   node browser_driver.js chat      --port PORT --fullchain PEM
//
// Chromium trusts wsgate's leaf by its pinned SPKI (--ignore-certificate-errors-spki-list,
// honoured with a fresh --user-data-dir), not by turning certificate checks off.
// Prints `CHECK name PASS|FAIL|NA reason` lines.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const CHECKS = ['text', 'binary', 'big_1mib', 'frag_c2b', 'frag_b2c', 'ping_c2b', 'ping_b2c',
  'subprotocol', 'deflate', 'close_c2b', 'close_b2c'];
const WAIT_MS = 20000;

function arg(name) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

// base64(sha256(SubjectPublicKeyInfo)) of the first certificate in the PEM file.
function leafSpki(pemFile) {
  const leaf = new crypto.X509Certificate(fs.readFileSync(pemFile));
  const der = leaf.publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('base64');
}

function servePage() {
  const html = fs.readFileSync(path.join(__dirname, 'page.html'));
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(html);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function check(name, status, reason) {
  console.log(`CHECK ${name} ${status} ${String(reason).replace(/\n/g, ' ')}`);
}

async function openPage(ctx, pageUrl) {
  const page = await ctx.newPage();
  page.on('console', (m) => console.error(`[page] ${m.text()}`));
  page.on('pageerror', (e) => console.error(`[page error] ${e}`));
  await page.goto(pageUrl);
  return page;
}

async function matrix(ctx, pageUrl, wsUrl) {
  const page = await openPage(ctx, pageUrl);
  const results = await page.evaluate((url) => runMatrix(url), wsUrl);
  for (const r of results) check(r.name, r.status, r.reason);
}

// Two backends in one pool: land, kill that backend, expect 1014, land on the other.
async function reconnect(ctx, pageUrl, wsUrl, pids) {
  const page = await openPage(ctx, pageUrl);
  await page.evaluate((url) => { rcConnect(url); }, wsUrl);
  await page.waitForFunction(() => rc.landed.length >= 1 || rc.attempts >= 10, null, { timeout: WAIT_MS });
  const first = await page.evaluate(() => rc.landed[0]);
  if (!first || !pids[first]) {
    const errors = await page.evaluate(() => rc.errors.join('; '));
    return check('reconnect_1014', 'FAIL', `first connection landed on '${first}' (${errors})`);
  }
  process.kill(pids[first], 'SIGKILL');
  console.error(`killed backend ${first} (pid ${pids[first]})`);
  try {
    await page.waitForFunction(() => rc.landed.length >= 2, null, { timeout: WAIT_MS });
  } catch (e) {
    const st = await page.evaluate(() => JSON.stringify(rc));
    return check('reconnect_1014', 'FAIL', `no second landing after the kill: ${st}`);
  }
  const st = await page.evaluate(() => rc);
  const close = st.closes[0];
  const second = st.landed[1];
  const others = Object.keys(pids).filter((n) => n !== first);
  if (close.code !== 1014) {
    check('reconnect_1014', 'FAIL', `saw Close ${close.code} '${close.reason}', not 1014`);
  } else if (!others.includes(second)) {
    check('reconnect_1014', 'FAIL', `after 1014 landed on '${second}', not on ${others}`);
  } else {
    // Round robin would pick the dead backend for every other new connection:
    // wsgate must move those to the live one too.
    const later = await page.evaluate((url) => rcProbe(url, 4), wsUrl);
    const stray = later.filter((n) => n !== second);
    const tries = st.attempts - 1;
    check('reconnect_1014', stray.length ? 'FAIL' : 'PASS',
      `on ${first}, killed: Close 1014 '${close.reason}'; reconnected to ${second} in ${tries} attempt(s)` +
      (st.errors.length ? ` (errors: ${st.errors.join('; ')})` : '') +
      `; 4 new connections then landed on: ${later.join(', ')}`);
  }
}

// Two pages on /chat through an ip_hash pool of two Go hubs: same hub, both hear each other.
async function chat(ctx, pageUrl, wsUrl) {
  const [a, b] = [await openPage(ctx, pageUrl), await openPage(ctx, pageUrl)];
  for (const p of [a, b]) await p.evaluate((url) => chatJoin(url), wsUrl);
  const welcome = (p) => p.waitForFunction(() => chat.msgs.find((m) => m.startsWith('welcome:')), null, { timeout: WAIT_MS })
    .then((h) => h.jsonValue());
  const [hubA, hubB] = [await welcome(a), await welcome(b)];
  if (hubA !== hubB) return check('chat_ip_hash', 'FAIL', `pages on different hubs: ${hubA} / ${hubB}`);
  const hear = async (from, to, text) => {
    await from.evaluate((t) => chat.conn.ws.send(t), text);
    await to.waitForFunction((t) => chat.msgs.includes(t), text, { timeout: WAIT_MS });
  };
  try {
    await hear(a, b, 'chat:A:hello from page A');
    await hear(b, a, 'chat:B:hello from page B');
  } catch (e) {
    return check('chat_ip_hash', 'FAIL', `a message was not delivered: ${e.message.split('\n')[0]}`);
  }
  check('chat_ip_hash', 'PASS', `both pages on ${hubA.slice(8)}; A->B and B->A delivered through the hub`);
}

async function main() {
  const mode = process.argv[2];
  const port = Number(arg('--port'));
  const fullchain = arg('--fullchain');
  if (!['matrix', 'reconnect', 'chat'].includes(mode) || !Number.isInteger(port) || !fullchain) {
    console.error('usage: node browser_driver.js matrix|reconnect|chat --port PORT --fullchain PEM [--kill NAME=PID,...]');
    process.exit(2);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  const server = await servePage();
  const pageUrl = `http://127.0.0.1:${server.address().port}/page.html`;
  let ctx = null;
  try {
    // launchPersistentContext passes --user-data-dir=<userDataDir> (fresh) itself.
    ctx = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        `--ignore-certificate-errors-spki-list=${leafSpki(fullchain)}`],
    });
    console.error(`chromium ${ctx.browser() ? ctx.browser().version() : '(persistent context)'}`);
    if (mode === 'matrix') await matrix(ctx, pageUrl, `wss://127.0.0.1:${port}/`);
    if (mode === 'chat') await chat(ctx, pageUrl, `wss://127.0.0.1:${port}/chat`);
    if (mode === 'reconnect') {
      const pids = Object.fromEntries((arg('--kill') || '').split(',').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]));
      await reconnect(ctx, pageUrl, `wss://127.0.0.1:${port}/`, pids);
    }
  } catch (e) {
    const what = { matrix: CHECKS, chat: ['chat_ip_hash'], reconnect: ['reconnect_1014'] }[mode];
    for (const name of what) check(name, 'FAIL', `browser: ${e.message.split('\n')[0]}`);
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    server.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });

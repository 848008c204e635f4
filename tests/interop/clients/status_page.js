// The admin status page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): it shows every backend, and when one is killed the page shows
// it down within its refresh interval of wsgate knowing it (no page reload), and it
// loads nothing from anywhere but the admin listener. Saves a screenshot.
//
// Usage:
//   node status_page.js --admin PORT --kill NAME=PID --backends ADDR,ADDR --shot FILE.png
//
// Prints `CHECK name PASS|FAIL reason` lines: status_backends, status_down.
'use strict';

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const WAIT_MS = 20000;

function arg(name) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

function check(name, status, reason) {
  console.log(`CHECK ${name} ${status} ${String(reason).replace(/\n/g, ' ')}`);
}

function getJson(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        try { resolve(JSON.parse(body)); } catch (e) { reject(e); }
      });
    }).on('error', reject);
  });
}

// Resolves with the time wsgate itself reports `addr` down in /backends.
async function serverSaysDown(admin, addr, deadline) {
  while (Date.now() < deadline) {
    const v = await getJson(`http://127.0.0.1:${admin}/backends`);
    const b = v.pools.flatMap((p) => p.backends).find((x) => x.address === addr);
    if (b && b.state === 'down') return Date.now();
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`/backends never said ${addr} is down`);
}

async function run(ctx, admin, backends, victim, pid, shot) {
  const page = await ctx.newPage();
  const foreign = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(`http://127.0.0.1:${admin}/`)) foreign.push(r.url());
  });
  page.on('pageerror', (e) => console.error(`[page error] ${e}`));
  await page.goto(`http://127.0.0.1:${admin}/`);
  const stateOf = (addr) => page.evaluate(
    (a) => { const r = document.querySelector(`tr[data-backend="${a}"]`); return r ? r.dataset.state : null; },
    addr);
  try {
    await page.waitForFunction(
      (list) => list.every((a) => {
        const r = document.querySelector(`tr[data-backend="${a}"]`);
        return r && r.dataset.state === 'up';
      }), backends, { timeout: WAIT_MS });
  } catch (e) {
    const html = await page.evaluate(() => document.querySelector('#backends').outerHTML);
    return check('status_backends', 'FAIL', `not every backend shown up: ${html.slice(0, 300)}`);
  }
  const refresh = Number(await page.evaluate(() => document.getElementById('refresh').textContent));
  const shown = await page.evaluate(() => document.querySelectorAll('#backends tbody tr').length);
  const listeners = await page.evaluate(() => document.querySelectorAll('#listeners tbody tr').length);
  const routes = await page.evaluate(() => document.querySelectorAll('#routes tbody tr').length);
  check('status_backends', listeners > 0 && routes > 0 ? 'PASS' : 'FAIL',
    `${shown} backends shown up, ${listeners} listener(s), ${routes} route(s), refresh every ${refresh} s`);

  // Marks this document: a page reload would lose the mark.
  await page.evaluate(() => { window.__sameDocument = true; });
  const updatesBefore = Number(await page.evaluate(() => document.body.dataset.updates));
  process.kill(pid, 'SIGKILL');
  const killed = Date.now();
  console.error(`killed ${victim} (pid ${pid})`);
  const serverDown = serverSaysDown(admin, victim, killed + WAIT_MS);
  try {
    await page.waitForFunction(
      (a) => { const r = document.querySelector(`tr[data-backend="${a}"]`); return r && r.dataset.state === 'down'; },
      victim, { timeout: WAIT_MS, polling: 20 });
  } catch (e) {
    return check('status_down', 'FAIL', `the page never showed ${victim} down (state: ${await stateOf(victim)})`);
  }
  const pageDown = Date.now();
  const known = await serverDown;
  const same = await page.evaluate(() => window.__sameDocument === true);
  const updates = Number(await page.evaluate(() => document.body.dataset.updates)) - updatesBefore;
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  const lag = (pageDown - known) / 1000;
  const ok = lag <= refresh + 0.5 && same && foreign.length === 0;
  check('status_down', ok ? 'PASS' : 'FAIL',
    `page showed ${victim} down ${((pageDown - killed) / 1000).toFixed(2)} s after the kill, ` +
    `${lag.toFixed(2)} s after /backends did (refresh ${refresh} s); ${updates} in-place update(s)` +
    `${same ? '' : ', BUT the page was reloaded'}` +
    `${foreign.length ? `, BUT it fetched ${foreign.join(' ')}` : ', nothing fetched from elsewhere'}; screenshot ${shot}`);
}

async function main() {
  const admin = Number(arg('--admin'));
  const [victim, pidText] = (arg('--kill') || '').split('=');
  const backends = (arg('--backends') || '').split(',').filter(Boolean);
  const shot = arg('--shot');
  const pid = Number(pidText);
  if (!Number.isInteger(admin) || !victim || !Number.isInteger(pid) || !backends.length || !shot) {
    console.error('usage: node status_page.js --admin PORT --kill ADDR=PID --backends ADDR,ADDR --shot FILE.png');
    process.exit(2);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  let ctx = null;
  try {
    ctx = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      viewport: { width: 1200, height: 900 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    await run(ctx, admin, backends, victim, pid, shot);
  } catch (e) {
    for (const name of ['status_backends', 'status_down']) check(name, 'FAIL', `browser: ${e.message.split('\n')[0]}`);
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });

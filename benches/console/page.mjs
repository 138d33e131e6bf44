#!/usr/bin/env node
// Browser side of benches/console/bench.py: how soon the console
// (framebus-mjpeg's `/`) is usable, against the server-rendered index
// (`/mjpeg`) on the same server, same run. Each run is a fresh browser
// context (cold HTTP cache, new connections), the two pages alternating.
//
//   node benches/console/page.mjs --url http://HOST:PORT/ [--runs N] [--chromium PATH]
//
// Prints one JSON line: {console: [{loaded, ready, tiles, latency, bytes}],
// index: [{loaded, images, bytes}]}, times in ms from navigation start:
//   loaded   the document's load event (scripts and styles in);
//   ready    the console's first status document rendered (framebusConsole.ready);
//   tiles / images   every camera's first picture decoded (every <img>
//            of the index: it shows every profile of every bus);
//   latency  every tile shows a time-code latency;
//   bytes    bytes of every response but the MJPEG streams.

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { QUIET_ARGS } from '../../publishers/tests/browser/chromium.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(HERE, '../../publishers/tests/browser/package.json'));
const { chromium } = require('playwright-core');

const { values: o } = parseArgs({
  options: {
    url: { type: 'string' },
    runs: { type: 'string', default: '10' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});
if (!o.url) {
  console.error('usage: node page.mjs --url http://HOST:PORT/ [--runs N]');
  process.exit(64);
}
const base = o.url.replace(/\/?$/, '/');
const browser = await chromium.launch({ executablePath: o.chromium, args: QUIET_ARGS });

async function measure(path, probe) {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await ctx.newPage();
  await page.goto(base + path, { waitUntil: 'load' });
  const out = await page.evaluate(probe);
  // Resource Timing: the bodies of the document and every response but
  // the MJPEG streams (same origin, so the sizes are exposed).
  out.bytes = await page.evaluate(() => [
    ...performance.getEntriesByType('navigation'),
    ...performance.getEntriesByType('resource'),
  ].filter(e => !e.name.endsWith('.mjpg')).reduce((n, e) => n + e.decodedBodySize, 0));
  await ctx.close();
  return out;
}

// In the page: poll every 5 ms until each milestone, 20 s at most.
const consoleProbe = () => new Promise(done => {
  const nav = performance.getEntriesByType('navigation')[0];
  const r = { loaded: nav.loadEventStart, ready: null, tiles: null, latency: null };
  const t0 = performance.now();
  const tick = () => {
    const C = window.framebusConsole;
    const now = performance.now();
    if (C && C.ready && r.ready === null) r.ready = now;
    const tiles = C ? Object.values(C.tiles) : [];
    const cams = C && C.doc ? C.doc.cameras.length : 0;
    if (r.tiles === null && cams && tiles.length === cams && tiles.every(t => t.img.naturalWidth > 0)) r.tiles = now;
    if (r.latency === null && cams && tiles.length === cams && tiles.every(t => t.latencyKind === 'timecode')) r.latency = now;
    if ((r.latency !== null && r.tiles !== null) || now - t0 > 20000) done(r);
    else setTimeout(tick, 5);
  };
  tick();
});

const indexProbe = () => new Promise(done => {
  const nav = performance.getEntriesByType('navigation')[0];
  const r = { loaded: nav.loadEventStart, images: null };
  const t0 = performance.now();
  const tick = () => {
    const imgs = [...document.querySelectorAll('img')];
    const now = performance.now();
    if (imgs.length && imgs.every(i => i.naturalWidth > 0)) { r.images = now; done(r); }
    else if (now - t0 > 20000) done(r);
    else setTimeout(tick, 5);
  };
  tick();
});

const result = { console: [], index: [] };
// One warm-up of each (the MJPEG encoders start on the first viewer and
// stop a grace time after the last: the runs measure a warm server).
await measure('', consoleProbe);
await measure('mjpeg', indexProbe);
for (let i = 0; i < Number(o.runs); i++) {
  result.console.push(await measure('', consoleProbe));
  result.index.push(await measure('mjpeg', indexProbe));
}
await browser.close();
console.log(JSON.stringify(result));

#!/usr/bin/env node
// Headless Chromium driver for framebus-recorder's page (GET /): opens it,
// waits for the stream's row, sets the duration and pre-roll, clicks
// Record, follows the new recording in the list until it ends, clicks Play
// and watches the page's <video> load and play. Prints ONE JSON report on
// stdout; logs go to stderr. Exit codes as whep.mjs (chromium.mjs). See
// README.md for the report's fields.

import { parseArgs } from 'node:util';
import { QUIET_ARGS, runDriver, watchPage } from './chromium.mjs';

const USAGE = `usage:
  node recpage.mjs --url http://HOST:PORT/ --stream CAM/PROFILE
                   [--duration S] [--preroll S] [--snapshot] [--basic USER:PASS]
                   [--seconds BOUND]`;

const log = (...a) => console.error('[recpage.mjs]', ...a);

function usage(why) {
  console.error(`${why}\n${USAGE}`);
  process.exit(64);
}

const OPTIONS = {
  url: { type: 'string' },
  stream: { type: 'string' },
  duration: { type: 'string', default: '2' },
  preroll: { type: 'string', default: '1' },
  snapshot: { type: 'boolean', default: false },
  basic: { type: 'string' },
  seconds: { type: 'string', default: '30' },
  chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  help: { type: 'boolean', short: 'h', default: false },
};

function parseOptions(argv) {
  let v;
  try {
    ({ values: v } = parseArgs({ args: argv, options: OPTIONS }));
  } catch (e) {
    usage(e.message);
  }
  if (v.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const o = { ...v, seconds: Number(v.seconds) };
  if (!v.url || !/^https?:\/\//.test(v.url)) usage('--url: the recorder\'s http:// URL');
  // Used inside a CSS attribute selector: stream names need no escaping.
  if (!v.stream || !/^[a-z0-9._/-]+$/.test(v.stream)) usage('--stream: CAM/PROFILE');
  if (!(o.seconds > 0)) usage('--seconds: a positive number');
  if (v.basic !== undefined && !v.basic.includes(':')) usage('--basic: USER:PASS');
  return o;
}

const o = parseOptions(process.argv.slice(2));
const report = { ok: false, browser: null, console_errors: [], page_errors: [] };

// What the page's <video> does after Play, observed inside the page every
// 50 ms until it has played `want` seconds, ended, failed, or `timeout` ms.
function watchVideo({ timeout, want }) {
  return new Promise((resolve) => {
    const v = document.querySelector('#player video');
    const t0 = performance.now();
    const r = { src: v.currentSrc || v.src, loadedmetadata: false, metadata_ms: null, duration_s: null,
      width: null, height: null, time_at_metadata_s: null, current_time_s: null, advanced: false,
      ended: false, paused: null, error: null, waited_ms: 0 };
    let iv = null, to = null;
    const done = () => {
      clearInterval(iv);
      clearTimeout(to);
      Object.assign(r, { current_time_s: v.currentTime, ended: v.ended, paused: v.paused,
        waited_ms: Math.round(performance.now() - t0) });
      r.advanced = r.loadedmetadata && v.currentTime > r.time_at_metadata_s;
      resolve(r);
    };
    const check = () => {
      if (v.error) {
        r.error = { code: v.error.code, message: v.error.message || null };
        return done();
      }
      if (!r.loadedmetadata && v.readyState >= 1) {
        Object.assign(r, { loadedmetadata: true, metadata_ms: Math.round(performance.now() - t0),
          duration_s: v.duration, width: v.videoWidth, height: v.videoHeight, time_at_metadata_s: v.currentTime });
      }
      if (r.loadedmetadata && (v.ended || v.currentTime >= r.time_at_metadata_s + Math.min(want, v.duration / 2))) done();
    };
    v.addEventListener('loadedmetadata', check);
    iv = setInterval(check, 50);
    to = setTimeout(done, timeout);
    check();
  });
}

runDriver({ o, args: QUIET_ARGS, report, log }, async (browser) => {
  const out = { http_status: null, title: null, heading: null, stream_row: null, record_error: null,
    recording: null, video: null, message: null, message_class: null };
  const deadline = Date.now() + o.seconds * 1000;
  const left = () => Math.max(1000, deadline - Date.now());
  // httpCredentials answer a 401 as the user would answer the Basic prompt.
  const [username, ...rest] = (o.basic ?? '').split(':');
  const context = await browser.newContext(o.basic ? { httpCredentials: { username, password: rest.join(':') } } : {});
  const page = await context.newPage();
  watchPage(page, report);
  page.on('dialog', (d) => d.accept());
  const message = async () => {
    out.message = await page.locator('#msg').textContent();
    out.message_class = await page.locator('#msg').getAttribute('class');
  };

  const resp = await page.goto(o.url, { timeout: left() });
  out.http_status = resp ? resp.status() : null;
  out.title = await page.title();
  out.heading = await page.locator('header h1').textContent();
  const row = page.locator(`#streams tr[data-stream="${o.stream}"]`);
  await row.waitFor({ timeout: left() });
  out.stream_row = (await row.locator('td').allTextContents()).slice(0, 6);
  log('stream row:', out.stream_row.join(' | '));

  const before = await page.locator('#recs tr[data-id]').evaluateAll((trs) => trs.map((t) => t.dataset.id));
  await row.locator('input[name=duration]').fill(o.duration);
  await row.locator('input[name=preroll]').fill(o.preroll);
  if (o.snapshot) await row.locator('input[name=snapshot]').check();
  await row.locator('button.record').click();
  // The new row in the list, or the error the page shows.
  const first = await (await page.waitForFunction((before) => {
    const tr = [...document.querySelectorAll('#recs tr[data-id]')].find((t) => !before.includes(t.dataset.id));
    const msg = document.querySelector('#msg');
    if (tr) return { id: tr.dataset.id };
    return msg.classList.contains('err') && !msg.hidden ? { error: msg.textContent } : null;
  }, before, { timeout: left(), polling: 100 })).jsonValue();
  if (first.error) {
    out.record_error = first.error;
    await message();
    return out;
  }
  const id = first.id;
  const tr = page.locator(`#recs tr[data-id="${id}"]`);
  log('recording', id);

  // Its state as the list shows it, every change, until it ends.
  const rec = { id, states: [] };
  out.recording = rec;
  while (Date.now() < deadline) {
    const s = await tr.locator('td.state').textContent();
    if (rec.states[rec.states.length - 1] !== s) rec.states.push(s);
    if (['done', 'failed', 'interrupted'].includes(s)) break;
    await page.waitForTimeout(100);
  }
  rec.state = rec.states[rec.states.length - 1];
  rec.cells = await tr.evaluate((t) => Object.fromEntries([...t.cells].slice(0, 9).map((c) => [c.className.split(' ')[0], c.textContent])));
  rec.actions = await tr.locator('td.acts > *').evaluateAll((es) => es.map((e) => e.className));
  const dl = tr.locator('a.download');
  if (await dl.count()) rec.download = { href: await dl.evaluate((a) => a.href), name: await dl.getAttribute('download') };
  log('list:', JSON.stringify(rec.cells));

  if (await tr.locator('button.play').count()) {
    await tr.locator('button.play').click();
    out.video = await page.evaluate(watchVideo, { timeout: Math.max(1000, left() - 3000), want: 1 });
    log('video:', JSON.stringify(out.video));
    // A failed load: the page asks the API why and says so.
    if (out.video.error) await page.locator('#msg.err').waitFor({ timeout: 3000 }).catch(() => {});
  }
  await message();
  return out;
});

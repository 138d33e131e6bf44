#!/usr/bin/env node
// Headless Chromium driver for the recording tests: a plain <video> element
// plays one MP4 URL (a recording's `file.mp4`), and the driver reports what
// the element saw. Input is ONE JSON object (the first argument, or stdin);
// output is ONE JSON report on stdout; logs go to stderr. Exit codes as
// whep.mjs (chromium.mjs). See README.md.
//
// The page lives on the file's own origin (playwright request interception
// on one path, ended once the page has loaded): the <video> loads the file
// same-origin, as the recorder's own page does, with Chromium's own media
// stack (range requests, no MSE).

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QUIET_ARGS, runDriver, watchPage } from './chromium.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
// The time-code decoder shared with whep.mjs and hls.mjs.
const TIMECODE_JS = join(HERE, '../../src/console/timecode.js');

const USAGE = `usage:
  node video.mjs '{"url": "http://HOST:PORT/api/v1/recordings/ID/file.mp4", "seconds": 1}'
  echo '{"url": ...}' | node video.mjs
Input keys (defaults): url (required: an MP4 file), seconds (1: how long it
  plays), loadTimeoutMs (15000: bound on loadedmetadata, playing, seeked),
  seek (true: then seek to the middle and wait for seeked).`;

const KEYS = ['url', 'seconds', 'loadTimeoutMs', 'seek'];

// One path of our own under the file's origin.
const PAGE_PATH = '/__framebus_video__/';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>framebus video test</title></head>
<body><video id="v" muted playsinline preload="auto" width="640"></video></body></html>`;

const log = (...a) => console.error('[video.mjs]', ...a);

function usage(why) {
  console.error(`${why}\n${USAGE}`);
  process.exit(64);
}

function readInput(argv) {
  if (argv.includes('-h') || argv.includes('--help')) {
    console.log(USAGE);
    process.exit(0);
  }
  if (argv.length > 1) usage('one argument: the JSON input (or none: stdin)');
  let text;
  try {
    text = argv.length === 1 && argv[0] !== '-' ? argv[0] : readFileSync(0, 'utf8');
  } catch (e) {
    usage(`cannot read the input: ${e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    usage(`the input is not JSON: ${e.message}`);
  }
}

function parseInput(inp) {
  if (typeof inp !== 'object' || inp === null || Array.isArray(inp)) usage('the input must be a JSON object');
  const unknown = Object.keys(inp).filter((k) => !KEYS.includes(k));
  if (unknown.length) usage(`unknown keys: ${unknown.join(', ')}`);
  const o = {
    url: inp.url,
    seconds: inp.seconds ?? 1,
    loadTimeoutMs: inp.loadTimeoutMs ?? 15000,
    seek: inp.seek ?? true,
    chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  };
  let url;
  try {
    url = new URL(o.url);
  } catch {
    usage('url: an absolute http(s) URL');
  }
  const bad =
    !['http:', 'https:'].includes(url.protocol) ||
    !(typeof o.seconds === 'number' && o.seconds > 0) ||
    !(Number.isInteger(o.loadTimeoutMs) && o.loadTimeoutMs > 0) ||
    typeof o.seek !== 'boolean';
  if (bad) usage(`bad input: ${JSON.stringify(inp)}`);
  o.origin = url.origin;
  // The driver's own bound (chromium.mjs: seconds + 60 s) must cover the
  // waits below: three load timeouts and the play time.
  o.bound = o.seconds + (3 * o.loadTimeoutMs) / 1000;
  return o;
}

// Runs inside the page (serialised by playwright: closes over nothing).
// Loads `a.url` into the page's <video>, waits for its metadata, decodes
// the time code of the first frame, plays for `a.seconds`, optionally
// seeks to the middle; returns what the element reported at each step.
async function playInPage(a) {
  const v = document.getElementById('v');
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const r = {
    loadedmetadata_ms: null,
    duration: null,
    video_width: null,
    video_height: null,
    first_frame_timecode: null,
    playing_ms: null,
    play_error: null,
    current_time: null,
    frames_presented: 0,
    seeked: null,
    seek_target: null,
    current_time_after_seek: null,
    seekable: null,
    ready_state: null,
    network_state: null,
    error: null,
    events: [],
  };
  for (const e of ['loadstart', 'loadedmetadata', 'loadeddata', 'canplay', 'playing', 'waiting', 'stalled',
                   'seeking', 'seeked', 'ended', 'error', 'abort', 'emptied'])
    v.addEventListener(e, () => r.events.length < 200 && r.events.push(`${ms()} ${e}`));
  // Resolves with the first of `events` (its name), or 'timeout'.
  const once = (events, limit) =>
    new Promise((resolve) => {
      const done = (what) => {
        clearTimeout(t);
        for (const e of events) v.removeEventListener(e, handlers[e]);
        resolve(what);
      };
      const handlers = {};
      for (const e of events) {
        handlers[e] = () => done(e);
        v.addEventListener(e, handlers[e]);
      }
      const t = setTimeout(() => done('timeout'), limit);
    });
  const finish = () => {
    r.seekable = Array.from({ length: v.seekable.length }, (_, i) => [v.seekable.start(i), v.seekable.end(i)]);
    r.ready_state = v.readyState;
    r.network_state = v.networkState;
    r.error = v.error ? { code: v.error.code, message: v.error.message || null } : null;
    return r;
  };
  const frame = (limit) =>
    new Promise((resolve) => {
      const t = setTimeout(() => resolve(null), limit);
      v.requestVideoFrameCallback((now, md) => {
        clearTimeout(t);
        resolve(md);
      });
    });

  const meta = once(['loadedmetadata', 'error'], a.loadTimeoutMs);
  v.src = a.url;
  if ((await meta) !== 'loadedmetadata') return finish();
  r.loadedmetadata_ms = ms();
  r.duration = Number.isFinite(v.duration) ? v.duration : String(v.duration);
  r.video_width = v.videoWidth;
  r.video_height = v.videoHeight;
  // The first frame: wait until it can be drawn (loadeddata), then read
  // its time code from the picture.
  if (v.readyState < 2 && (await once(['loadeddata', 'error'], a.loadTimeoutMs)) !== 'loadeddata') return finish();
  const code = framebusTimecode.makeDecoder()(v, v.videoWidth, v.videoHeight);
  if (code) r.first_frame_timecode = { realtime_us: code.us.toString(), counter: code.counter };

  let presented = 0;
  let counting = true;
  const count = () => {
    if (!counting) return;
    presented++;
    v.requestVideoFrameCallback(count);
  };
  v.requestVideoFrameCallback(count);
  const playing = once(['playing', 'error'], a.loadTimeoutMs);
  try {
    await v.play();
  } catch (e) {
    r.play_error = String(e);
  }
  if ((await playing) === 'playing') r.playing_ms = ms();
  await new Promise((resolve) => setTimeout(resolve, a.seconds * 1000));
  r.current_time = v.currentTime;
  counting = false;
  r.frames_presented = presented;

  if (a.seek && typeof r.duration === 'number' && r.duration > 0) {
    v.pause();
    r.seek_target = r.duration / 2;
    const seeked = once(['seeked', 'error'], a.loadTimeoutMs);
    v.currentTime = r.seek_target;
    r.seeked = (await seeked) === 'seeked';
    // The picture at the new position is presented too.
    if (r.seeked) await frame(2000);
    r.current_time_after_seek = v.currentTime;
  }
  return finish();
}

async function run(browser, o, report) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    watchPage(page, report);
    const base = o.origin + PAGE_PATH;
    await context.route(`${base}**`, (route) =>
      route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: PAGE }),
    );
    await page.goto(base, { timeout: 15000 });
    // From here on the <video>'s requests go to the network untouched
    // (playwright disables the HTTP cache while it intercepts).
    await context.unrouteAll({ behavior: 'ignoreErrors' });
    await page.addScriptTag({ path: TIMECODE_JS });
    log(`playing ${o.url}`);
    return await page.evaluate(playInPage, { url: o.url, seconds: o.seconds, loadTimeoutMs: o.loadTimeoutMs, seek: o.seek });
  } finally {
    await context.close().catch((e) => log('close:', String(e)));
  }
}

const o = parseInput(readInput(process.argv.slice(2)));
const report = {
  mode: 'video',
  ok: false,
  url: o.url,
  seconds: o.seconds,
  browser: null,
  console_errors: [],
  page_errors: [],
};
runDriver({ o: { ...o, seconds: o.bound }, args: [...QUIET_ARGS], report, log }, (browser) => run(browser, o, report));

#!/usr/bin/env node
// Headless Chromium driver for tests through a Janus WebRTC server: N
// viewers watch one mountpoint of Janus's Streaming plugin with Janus's own
// JavaScript library (janus.js, the npm package `janus-gateway`, pinned by
// package-lock.json) and the driver prints ONE JSON report on stdout, in
// whep.mjs's shape (viewers[], timecode of viewer 0). Logs go to stderr.
// Exit codes as whep.mjs (chromium.mjs). See README.md.
//
// The page is served by this driver itself, through playwright's request
// interception on the Janus server's own origin (no CORS, no network, no
// server of ours); interception ends once the page has loaded, so the
// Janus API calls go out untouched.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { QUIET_ARGS, WEBRTC_ARGS, runDriver, watchPage } from './chromium.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
// The page-side time-code decoder and frame follower (whep.mjs, hls.mjs)
// and inbound stats (whep.mjs).
const TIMECODE_JS = join(HERE, '../../src/console/timecode.js');
const RTCSTATS_JS = join(HERE, 'rtcstats.js');
// janus.js is an ES module that expects webrtc-adapter's global `adapter`.
const JANUS_JS = join(HERE, 'node_modules/janus-gateway/npm/dist/janus.es.js');
const ADAPTER_JS = join(HERE, 'node_modules/webrtc-adapter/out/adapter.js');

const USAGE = `usage:
  node janus.mjs --url http://HOST:PORT/janus --mountpoint ID --seconds S
                 [--ws ws://HOST:PORT] [--viewers N] [--timecode] [--raw] [--janus-debug]
  --ws: janus.js talks to Janus over this WebSocket instead of HTTP long polls
  (Chromium opens at most 6 HTTP connections per host in a page: one long
  poll per viewer caps a page at 5 viewers); the page still lives on --url.`;

const CHROMIUM_ARGS = [...QUIET_ARGS, ...WEBRTC_ARGS];

// Where the page lives on the Janus server's origin: one path of our own.
const PAGE_PATH = '/__framebus_janus__/';

const log = (...a) => console.error('[janus.mjs]', ...a);

function usage(why) {
  console.error(`${why}\n${USAGE}`);
  process.exit(64);
}

const OPTIONS = {
  url: { type: 'string' },
  ws: { type: 'string' },
  mountpoint: { type: 'string', default: '1' },
  seconds: { type: 'string', default: '5' },
  viewers: { type: 'string', default: '1' },
  timecode: { type: 'boolean', default: false },
  raw: { type: 'boolean', default: false },
  'janus-debug': { type: 'boolean', default: false },
  chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  help: { type: 'boolean', short: 'h', default: false },
};

function parseOptions(argv) {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: OPTIONS }));
  } catch (e) {
    usage(e.message);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const seconds = Number(values.seconds);
  const viewers = Number(values.viewers);
  const mountpoint = Number(values.mountpoint);
  let url = null;
  try {
    url = new URL(values.url ?? '');
  } catch (e) {
    usage(`--url: ${e.message}`);
  }
  let ws = null;
  if (values.ws !== undefined) {
    try {
      ws = new URL(values.ws);
    } catch (e) {
      usage(`--ws: ${e.message}`);
    }
    if (!['ws:', 'wss:'].includes(ws.protocol)) usage('--ws: not a ws:// URL');
  }
  const bad =
    !['http:', 'https:'].includes(url.protocol) ||
    !(seconds > 0) ||
    !Number.isInteger(viewers) ||
    viewers < 1 ||
    !Number.isSafeInteger(mountpoint) ||
    mountpoint < 0;
  if (bad) usage('bad arguments');
  return {
    mode: 'janus',
    url: url.href.replace(/\/$/, ''),
    server: ws ? ws.href.replace(/\/$/, '') : url.href.replace(/\/$/, ''),
    mountpoint,
    seconds,
    viewers,
    timecode: values.timecode,
    raw: values.raw,
    janusDebug: values['janus-debug'],
    chromium: values.chromium,
  };
}

const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>framebus janus.js viewer</title>
<link rel="icon" href="data:,">
<script src="adapter.js"></script>
<script src="timecode.js"></script>
<script src="rtcstats.js"></script>
<script type="module">import Janus from './janus.es.js'; window.Janus = Janus;</script>
</head><body></body></html>`;

// The page and its scripts, by path under PAGE_PATH.
function pageFile(path) {
  const file = {
    '': null,
    'adapter.js': ADAPTER_JS,
    'janus.es.js': JANUS_JS,
    'timecode.js': TIMECODE_JS,
    'rtcstats.js': RTCSTATS_JS,
  }[path];
  if (file === undefined) return { status: 404, type: 'text/plain', body: 'not here' };
  if (file === null) return { status: 200, type: 'text/html', body: PAGE_HTML };
  return { status: 200, type: 'text/javascript', body: readFileSync(file) };
}

// Everything below runs inside the page (playwright serialises the function
// source, so it must not close over anything of this module). It defines
// window.__fbJanus.
function installHarness() {
  if (window.__fbJanus) return;
  const { watchVideo } = window.framebusTimecode;
  const { inboundStats } = window.framebusRtcStats;
  const Janus = window.Janus;

  // janus.js's callbacks as promises.
  const initJanus = (debug) =>
    new Promise((resolve) =>
      Janus.init({ debug: debug ? 'all' : false, dependencies: Janus.useDefaultDependencies(), callback: resolve }),
    );

  function newVideo() {
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.width = 160;
    document.body.append(video);
    return video;
  }

  // One viewer: its own Janus session and Streaming handle; `watch`, the
  // plugin's offer answered (recvonly: janus.js accepts offered media it
  // was not asked to capture as receive-only), `start`.
  async function startViewer(index, { url, mountpoint, timecode }) {
    const v = {
      index,
      post_status: null,
      post_error: null,
      answer_ms: null,
      answer_error: null,
      play_error: null,
      janus: { statuses: [], webrtc_up: false, media: [], ice_states: [], hangup: null, slow_links: 0, offer_candidates: [] },
    };
    const video = newVideo();
    const priv = { session: null, handle: null, video, watch: null, t0: null };
    const fail = (what) => (e) => {
      const msg = `${what}: ${typeof e === 'string' ? e : e && e.message ? e.message : JSON.stringify(e)}`;
      if (v.post_error === null) v.post_error = msg;
    };
    await new Promise((resolve) => {
      priv.session = new Janus({
        server: url,
        // janus.js defaults to Google's STUN server: none here (loopback).
        iceServers: [],
        success: resolve,
        error: (e) => {
          fail('session')(e);
          resolve();
        },
      });
    });
    if (v.post_error !== null) return { v, priv };
    await new Promise((resolve) => {
      priv.session.attach({
        plugin: 'janus.plugin.streaming',
        opaqueId: `framebus-${index}`,
        success: (h) => {
          priv.handle = h;
          resolve();
        },
        error: (e) => {
          fail('attach')(e);
          resolve();
        },
        onmessage: (msg, jsep) => {
          const result = msg.result;
          if (result && result.status) v.janus.statuses.push(result.status);
          if (msg.error) fail(`plugin error ${msg.error_code ?? ''}`.trim())(msg.error);
          if (!jsep) return;
          if (v.answer_ms === null) v.answer_ms = performance.now() - priv.t0;
          v.janus.offer_candidates = jsep.sdp
            .split(/\r?\n/)
            .filter((l) => l.startsWith('a=candidate:'))
            .map((l) => l.slice(2));
          priv.handle.createAnswer({
            jsep,
            tracks: [],
            success: (answer) => priv.handle.send({ message: { request: 'start' }, jsep: answer }),
            error: (e) => {
              v.answer_error = typeof e === 'string' ? e : String(e && e.message ? e.message : e);
            },
          });
        },
        onremotetrack: (track, mid, on) => {
          if (!on || track.kind !== 'video') return;
          // janus.js may announce the same track more than once.
          if (video.srcObject && video.srcObject.getVideoTracks().includes(track)) return;
          video.srcObject = new MediaStream([track]);
          video.play().catch((err) => {
            v.play_error = String(err);
          });
        },
        webrtcState: (on, reason) => {
          if (on) v.janus.webrtc_up = true;
          else v.janus.hangup = reason ?? 'hangup';
        },
        iceState: (state) => v.janus.ice_states.push(state),
        mediaState: (medium, on, mid) => v.janus.media.push(`${medium}${mid === undefined ? '' : `:${mid}`}:${on ? 'on' : 'off'}`),
        slowLink: () => {
          v.janus.slow_links++;
        },
      });
    });
    if (v.post_error !== null) return { v, priv };
    priv.t0 = performance.now();
    priv.watch = watchVideo(video, priv.t0, timecode);
    priv.handle.send({
      message: { request: 'watch', id: mountpoint },
      error: fail('watch'),
    });
    return { v, priv };
  }

  // The viewers of the last `run`, for `teardown`.
  let started = [];

  // Starts the viewers, waits `seconds`, then reads each viewer's stats.
  async function run({ url, mountpoint, viewers, seconds, timecode, raw, janusDebug }) {
    await initJanus(janusDebug);
    if (!Janus.isWebrtcSupported()) throw new Error('janus.js: WebRTC not supported in this browser');
    started = await Promise.all(
      Array.from({ length: viewers }, (_, i) => startViewer(i, { url, mountpoint, timecode: timecode && i === 0 })),
    );
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const out = [];
    let tc = null;
    for (const { v, priv } of started) {
      const pc = priv.handle && priv.handle.webrtcStuff ? priv.handle.webrtcStuff.pc : null;
      if (pc) Object.assign(v, await inboundStats(pc));
      else Object.assign(v, { inbound: null, rtt_ms: null, local_candidate: null, remote_candidate: null });
      v.connection_state = pc ? pc.connectionState : 'none';
      v.ice_state = pc ? pc.iceConnectionState : 'none';
      v.first_frame_ms = priv.watch ? priv.watch.first_frame_ms : null;
      v.frames_presented = priv.watch ? priv.watch.frames : 0;
      v.delete_status = null;
      if (priv.watch) {
        if (v.index === 0) tc = priv.watch.timecodeReport(raw);
        priv.watch.stop();
      }
      out.push(v);
    }
    return { viewers: out, timecode: tc };
  }

  // Janus's end of each viewer: `stop`, then its session destroyed (which
  // detaches the handle and closes the peer connection). A long poll of
  // the session still pending then gets a 404 (a console error).
  async function teardown() {
    for (const { priv } of started) {
      if (priv.handle) priv.handle.send({ message: { request: 'stop' } });
      if (priv.session)
        await new Promise((resolve) => {
          const t = setTimeout(resolve, 3000);
          const done = () => {
            clearTimeout(t);
            resolve();
          };
          priv.session.destroy({ success: done, error: done });
        });
      priv.video.srcObject = null;
      priv.video.remove();
    }
    started = [];
  }

  window.__fbJanus = { run, teardown };
}

async function run(page, o) {
  const origin = new URL(o.url).origin;
  const base = origin + PAGE_PATH;
  await page.route(`${base}**`, (route) => {
    const f = pageFile(new URL(route.request().url()).pathname.slice(PAGE_PATH.length));
    return route.fulfill({ status: f.status, contentType: f.type, body: f.body });
  });
  const resp = await page.goto(base, { timeout: 15000 });
  log(`opened ${base}: ${resp ? resp.status() : 'no response'}`);
  await page.waitForFunction(() => window.Janus && window.framebusTimecode && window.framebusRtcStats, null, {
    timeout: 15000,
  });
  await page.unrouteAll({ behavior: 'ignoreErrors' });
  await page.evaluate(installHarness);
  const out = await page.evaluate((a) => window.__fbJanus.run(a), {
    url: o.server,
    mountpoint: o.mountpoint,
    viewers: o.viewers,
    seconds: o.seconds,
    timecode: o.timecode,
    raw: o.raw,
    janusDebug: o.janusDebug,
  });
  // What the page logs while it hangs up is the hang-up's, not the viewing's.
  const before = report.console_errors.length;
  await page.evaluate(() => window.__fbJanus.teardown());
  // The pending long polls fail once their sessions are gone: let them.
  await page.waitForTimeout(500);
  out.teardown_errors = report.console_errors.splice(before);
  return out;
}

// The Janus server's `GET /info` (name and version), for the report.
async function serverInfo(url) {
  try {
    const r = await fetch(`${url}/info`, { signal: AbortSignal.timeout(5000) });
    const i = await r.json();
    return { name: i.name ?? null, version: i.version_string ?? null, local_ip: i['local-ip'] ?? null };
  } catch (e) {
    log(`GET ${url}/info: ${e}`);
    return null;
  }
}

const o = parseOptions(process.argv.slice(2));
const report = {
  mode: 'janus',
  ok: false,
  url: o.url,
  mountpoint: o.mountpoint,
  seconds: o.seconds,
  browser: null,
  console_errors: [],
  page_errors: [],
};
runDriver({ o, args: CHROMIUM_ARGS, report, log }, async (browser) => {
  report.janus_js = JSON.parse(readFileSync(join(HERE, 'node_modules/janus-gateway/package.json'), 'utf8')).version;
  report.server = await serverInfo(o.url);
  const page = await browser.newPage();
  watchPage(page, report);
  return run(page, o);
});

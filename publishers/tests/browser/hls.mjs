#!/usr/bin/env node
// Headless Chromium driver for the framebus HLS / LL-HLS tests: N clients,
// each an hls.js player in its own page (its own browser context: own
// connections and cache, like N viewers), play a multivariant or media
// playlist and each reports what it played. Input is ONE JSON object (the
// first argument, or stdin); output is ONE JSON report on stdout; logs go to
// stderr. Exit codes as whep.mjs (chromium.mjs). See README.md.
//
// The player page is served by this driver itself, through playwright's
// request interception on a made-up origin (http://player.test by default):
// no network, no server of ours, and a page on another origin than the
// stream, so every request of hls.js is a CORS request.

import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QUIET_ARGS, runDriver, watchPage } from './chromium.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
// The time-code decoder and frame follower shared with whep.mjs.
const TIMECODE_JS = join(HERE, '../../src/console/timecode.js');
const HLS_JS = join(HERE, 'node_modules/hls.js/dist/hls.min.js');

const USAGE = `usage:
  node hls.mjs '{"url": "http://HOST:PORT/CAM/index.m3u8", "seconds": 5, ...}'
  echo '{"url": ...}' | node hls.mjs
Input keys (defaults): url (required: multivariant or media playlist),
  seconds (5), clients (1), lowLatency (true), startLevel (hls.js: auto),
  capLevelToPlayerSize (false), headers ({}), token | basic ("user:pass"),
  pageOrigin ("cross": our server on the stream's host, another port |
  "same": the playlist's origin | an origin "http://h:p" of its own),
  timecode (true), sampleMs (250), raw (false),
  stopFile (null), until (null: {"framesDecoded": N, "height": H}, either
  optional: end once every client decoded N frames and showed a picture H
  high), hlsConfig ({}: more hls.js config, merged last).`;

const CHROMIUM_ARGS = [...QUIET_ARGS];

// Where the page lives, under whatever origin: one path of our own.
const PLAYER_PATH = '/__framebus_hls__/';

const log = (...a) => console.error('[hls.mjs]', ...a);

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

const KEYS = [
  'url', 'seconds', 'clients', 'lowLatency', 'startLevel', 'capLevelToPlayerSize', 'headers', 'token',
  'basic', 'pageOrigin', 'timecode', 'sampleMs', 'raw', 'stopFile', 'until', 'hlsConfig',
];

function parseInput(inp) {
  if (typeof inp !== 'object' || inp === null || Array.isArray(inp)) usage('the input must be a JSON object');
  const unknown = Object.keys(inp).filter((k) => !KEYS.includes(k));
  if (unknown.length) usage(`unknown keys: ${unknown.join(', ')}`);
  const o = {
    url: inp.url,
    seconds: inp.seconds ?? 5,
    clients: inp.clients ?? 1,
    lowLatency: inp.lowLatency ?? true,
    startLevel: inp.startLevel ?? null,
    capLevelToPlayerSize: inp.capLevelToPlayerSize ?? false,
    headers: { ...(inp.headers ?? {}) },
    timecode: inp.timecode ?? true,
    sampleMs: inp.sampleMs ?? 250,
    raw: inp.raw ?? false,
    stopFile: inp.stopFile ?? null,
    until: inp.until ?? null,
    hlsConfig: inp.hlsConfig ?? {},
    chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  };
  let url;
  try {
    url = new URL(o.url);
  } catch {
    usage('url: an absolute http(s) URL');
  }
  const po = inp.pageOrigin ?? 'cross';
  // null: our own server (servePage).
  o.pageOrigin = po === 'cross' ? null : po === 'same' ? url.origin : po;
  const bad =
    !['http:', 'https:'].includes(url.protocol) ||
    !(typeof o.seconds === 'number' && o.seconds > 0) ||
    !(Number.isInteger(o.clients) && o.clients >= 1) ||
    typeof o.lowLatency !== 'boolean' ||
    typeof o.capLevelToPlayerSize !== 'boolean' ||
    typeof o.timecode !== 'boolean' ||
    typeof o.raw !== 'boolean' ||
    (o.startLevel !== null && !Number.isInteger(o.startLevel)) ||
    !(Number.isInteger(o.sampleMs) && o.sampleMs >= 50) ||
    (inp.headers !== undefined && (typeof inp.headers !== 'object' || Array.isArray(inp.headers))) ||
    Object.values(o.headers).some((v) => typeof v !== 'string') ||
    (inp.token !== undefined && inp.basic !== undefined) ||
    (inp.basic !== undefined && !String(inp.basic).includes(':')) ||
    typeof o.hlsConfig !== 'object' ||
    (o.until !== null && !validUntil(o.until)) ||
    (o.pageOrigin !== null && !/^https?:\/\/[^/]+$/.test(o.pageOrigin));
  if (bad) usage(`bad input: ${JSON.stringify(inp)}`);
  if (inp.token !== undefined) o.headers.Authorization = `Bearer ${inp.token}`;
  if (inp.basic !== undefined) o.headers.Authorization = `Basic ${Buffer.from(inp.basic).toString('base64')}`;
  return o;
}

// `until`: an object of optional non-negative integers, nothing else.
function validUntil(u) {
  if (typeof u !== 'object' || Array.isArray(u)) return false;
  const keys = Object.keys(u);
  return (
    keys.every((k) => ['framesDecoded', 'height'].includes(k)) &&
    keys.every((k) => Number.isInteger(u[k]) && u[k] >= 0)
  );
}

// Everything below runs inside the page (playwright serialises the function
// source, so it must not close over anything of this module). It defines
// window.__fbHls: start() one player, report() what it did.
function installHarness() {
  if (window.__fbHls) return;
  const { summary, watchVideo } = window.framebusTimecode;
  const Hls = window.Hls;
  // The first few URLs of each kind of request: enough to see what the
  // player asks for (query parameters, delivery directives).
  const URL_SAMPLES = 4;
  const MAX_ERRORS = 100;
  const KINDS = ['manifest', 'playlist', 'playlist_blocking', 'init', 'segment', 'part'];

  let p = null;

  function start({ url, lowLatency, startLevel, capLevelToPlayerSize, headers, timecode, sampleMs, hlsConfig }) {
    const t0 = performance.now();
    const ms = () => Math.round((performance.now() - t0) * 1000) / 1000;
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.width = 320;
    document.body.append(video);
    const names = Object.keys(headers);
    const config = {
      lowLatencyMode: lowLatency,
      capLevelToPlayerSize,
      ...(startLevel === null ? {} : { startLevel }),
      // Every request hls.js makes, by XHR (its default loader) or fetch.
      ...(names.length === 0
        ? {}
        : {
            xhrSetup: (xhr, u) => {
              xhr.open('GET', u, true);
              for (const n of names) xhr.setRequestHeader(n, headers[n]);
            },
            fetchSetup: (context, init) => {
              for (const n of names) init.headers.set(n, headers[n]);
              return new Request(context.url, init);
            },
          }),
      ...hlsConfig,
    };
    p = {
      t0,
      video,
      hls: null,
      supported: Hls.isSupported(),
      config: { lowLatencyMode: lowLatency, capLevelToPlayerSize, startLevel },
      playing: false,
      first_playing_ms: null,
      play_error: null,
      levels: [],
      level_switches: [],
      sizes: [],
      playlist: null,
      stalls: { count: 0, total_ms: 0, buffer_stalled_errors: 0, since: null },
      errors: [],
      errors_total: 0,
      fatal: null,
      requests: Object.fromEntries(KINDS.map((k) => [k, 0])),
      urls: Object.fromEntries(KINDS.map((k) => [k, []])),
      load_ms: Object.fromEntries(KINDS.map((k) => [k, []])),
      latency: [],
      samples: [],
      last: {},
      watch: watchVideo(video, t0, timecode),
    };
    if (!p.supported) return;
    const note = (kind, u) => {
      p.requests[kind]++;
      if (p.urls[kind].length < URL_SAMPLES) p.urls[kind].push(u);
    };
    const took = (kind, stats) => {
      if (stats && stats.loading && stats.loading.end > 0) p.load_ms[kind].push(stats.loading.end - stats.loading.start);
    };
    const fragKind = (frag, part) => (part ? 'part' : frag.sn === 'initSegment' ? 'init' : 'segment');
    const hls = new Hls(config);
    p.hls = hls;
    const E = Hls.Events;
    hls.on(E.MANIFEST_LOADING, (_, d) => note('manifest', d.url));
    hls.on(E.MANIFEST_LOADED, (_, d) => took('manifest', d.stats));
    hls.on(E.MANIFEST_PARSED, (_, d) => {
      p.levels = d.levels.map((l, index) => ({
        index,
        width: l.width || null,
        height: l.height || null,
        bitrate: l.bitrate || null,
        name: l.name ?? null,
        url: l.uri ?? (Array.isArray(l.url) ? l.url[0] : l.url) ?? null,
        codecs: l.videoCodec ?? l.codecSet ?? null,
      }));
      video.play().catch((e) => {
        p.play_error = String(e);
      });
    });
    // LEVEL_LOADING's url carries the delivery directives (_HLS_msn, ...).
    const blocking = (d) => !!(d.deliveryDirectives && d.deliveryDirectives.msn !== undefined);
    hls.on(E.LEVEL_LOADING, (_, d) => note(blocking(d) ? 'playlist_blocking' : 'playlist', d.url));
    hls.on(E.LEVEL_LOADED, (_, d) => {
      took(blocking(d) ? 'playlist_blocking' : 'playlist', d.stats);
      const x = d.details;
      if (p.playlist === null)
        p.playlist = {
          live: x.live,
          target_duration_s: x.targetduration,
          part_target_s: x.partTarget || null,
          can_block_reload: x.canBlockReload,
          can_skip_until_s: x.canSkipUntil || null,
          part_hold_back_s: x.partHoldBack || null,
          hold_back_s: x.holdBack || null,
          preload_hint: x.preloadHint ? x.preloadHint.URI ?? null : null,
          parts: x.partList ? x.partList.length : 0,
          segments: x.fragments.length,
        };
    });
    hls.on(E.FRAG_LOADING, (_, d) => note(fragKind(d.frag, d.part), (d.part ?? d.frag).url));
    hls.on(E.FRAG_LOADED, (_, d) => took(fragKind(d.frag, d.part), (d.part ?? d.frag).stats));
    hls.on(E.LEVEL_SWITCHED, (_, d) => {
      const l = hls.levels[d.level] ?? {};
      p.level_switches.push({ t_ms: ms(), level: d.level, width: l.width || null, height: l.height || null, bitrate: l.bitrate || null });
    });
    hls.on(E.ERROR, (_, d) => {
      p.errors_total++;
      if (d.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) p.stalls.buffer_stalled_errors++;
      const e = {
        t_ms: ms(),
        type: d.type,
        details: d.details,
        fatal: !!d.fatal,
        reason: d.reason ?? (d.error ? String(d.error.message ?? d.error) : null),
        response_code: d.response && d.response.code !== undefined ? d.response.code : null,
        url: d.url ?? (d.part ?? d.frag ?? d.context ?? {}).url ?? null,
      };
      if (p.errors.length < MAX_ERRORS) p.errors.push(e);
      // No recovery: a fatal error ends this player (the report says so).
      if (d.fatal && p.fatal === null) p.fatal = e;
    });
    video.addEventListener('playing', () => {
      if (!p.playing) {
        p.playing = true;
        p.first_playing_ms = ms();
      }
      if (p.stalls.since !== null) {
        p.stalls.total_ms += performance.now() - p.stalls.since;
        p.stalls.since = null;
      }
    });
    // A stall: `waiting` after playback began, until `playing` again.
    video.addEventListener('waiting', () => {
      if (!p.playing || p.stalls.since !== null) return;
      p.stalls.count++;
      p.stalls.since = performance.now();
    });
    video.addEventListener('resize', () => {
      p.sizes.push({ t_ms: ms(), width: video.videoWidth, height: video.videoHeight });
    });
    p.sampler = setInterval(() => {
      const s = {
        t_ms: ms(),
        level: hls.currentLevel,
        width: video.videoWidth,
        height: video.videoHeight,
        current_time_s: video.currentTime,
        buffer_ahead_s: bufferAhead(video),
        latency_s: finite(hls.latency),
        target_latency_s: finite(hls.targetLatency),
        live_sync_position_s: finite(hls.liveSyncPosition),
        max_latency_s: finite(hls.maxLatency),
        drift: finite(hls.drift),
        playback_rate: video.playbackRate,
      };
      p.last = s;
      if (p.playing && s.latency_s !== null) p.latency.push(s.latency_s * 1000);
      p.samples.push(s);
    }, sampleMs);
    hls.attachMedia(video);
    hls.loadSource(url);
  }

  function finite(x) {
    return typeof x === 'number' && Number.isFinite(x) ? x : null;
  }

  function bufferAhead(video) {
    const b = video.buffered;
    for (let i = 0; i < b.length; i++)
      if (b.start(i) <= video.currentTime + 0.05 && video.currentTime < b.end(i)) return b.end(i) - video.currentTime;
    return 0;
  }

  // What `until` looks at, cheaply (report() ends the measurement).
  function progress() {
    if (!p) return { frames_decoded: 0, heights: [] };
    return {
      frames_decoded: p.video.getVideoPlaybackQuality().totalVideoFrames,
      heights: p.sizes.map((s) => s.height),
    };
  }

  function report(raw) {
    if (!p) return { started: false };
    p.watch.stop();
    if (p.sampler) clearInterval(p.sampler);
    if (p.stalls.since !== null) p.stalls.total_ms += performance.now() - p.stalls.since;
    const q = p.video.getVideoPlaybackQuality();
    const last = p.last;
    const r = {
      supported: p.supported,
      config: p.config,
      playing: p.playing,
      play_error: p.play_error,
      first_playing_ms: p.first_playing_ms,
      time_to_first_frame_ms: p.watch.first_frame_ms,
      frames_presented: p.watch.frames,
      frames_decoded: q.totalVideoFrames,
      dropped_frames: q.droppedVideoFrames,
      // Chromium's count of audio bytes its decoder took in (compressed;
      // null elsewhere): a stream's sound was decoded, muted or not.
      audio_decoded_bytes: p.video.webkitAudioDecodedByteCount ?? null,
      levels: p.levels,
      level_switches: p.level_switches,
      sizes: p.sizes,
      final_level: p.hls ? p.hls.currentLevel : null,
      video_width: p.video.videoWidth,
      video_height: p.video.videoHeight,
      playlist: p.playlist,
      stalls: { count: p.stalls.count, total_ms: Math.round(p.stalls.total_ms), buffer_stalled_errors: p.stalls.buffer_stalled_errors },
      errors: p.errors,
      errors_total: p.errors_total,
      fatal_error: p.fatal,
      requests: p.requests,
      urls: p.urls,
      load_ms: Object.fromEntries(Object.entries(p.load_ms).map(([k, v]) => [k, summary(v)])),
      hls_latency_ms: summary(p.latency),
      target_latency_s: last.target_latency_s ?? null,
      live_sync_position_s: last.live_sync_position_s ?? null,
      max_latency_s: last.max_latency_s ?? null,
      drift: last.drift ?? null,
      playback_rate: last.playback_rate ?? null,
      current_time_s: last.current_time_s ?? null,
      buffer_ahead_s: last.buffer_ahead_s ?? null,
      timecode: p.watch.timecodeReport(raw),
    };
    if (raw) r.samples = p.samples;
    if (p.hls) p.hls.destroy();
    p.video.remove();
    return r;
  }

  window.__fbHls = { start, progress, report };
}

const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>framebus hls.js player</title>
<link rel="icon" href="data:,">
<script src="hls.min.js"></script>
<script src="timecode.js"></script>
</head><body></body></html>`;

// The page and its two scripts, by path under PLAYER_PATH.
function pageFile(path) {
  const file = { '': null, 'hls.min.js': HLS_JS, 'timecode.js': TIMECODE_JS }[path];
  if (file === undefined) return { status: 404, type: 'text/plain', body: 'not here' };
  if (file === null) return { status: 200, type: 'text/html', body: PAGE_HTML };
  return { status: 200, type: 'text/javascript', body: readFileSync(file) };
}

// "cross": a plain HTTP server of ours on the stream's host, another port:
// another origin (CORS), same address space (no Local Network Access
// refusal), reachable wherever the stream is (also from a namespace).
async function servePage(streamUrl) {
  const host = new URL(streamUrl).hostname.replace(/^\[(.*)\]$/, '$1');
  const srv = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const f = path.startsWith(PLAYER_PATH) ? pageFile(path.slice(PLAYER_PATH.length)) : pageFile('?');
    res.writeHead(f.status, { 'Content-Type': f.type, 'Cache-Control': 'no-store' });
    res.end(f.body);
  });
  const listen = (h) =>
    new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(0, h, () => {
        srv.off('error', reject);
        resolve();
      });
    });
  try {
    await listen(host);
  } catch (e) {
    // Not an address of this machine (a remote server): loopback, which
    // may reach any address space.
    log(`cannot listen on ${host} (${e.code}): serving the page on 127.0.0.1`);
    await listen('127.0.0.1');
  }
  srv.unref();
  const a = srv.address();
  const origin = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  return { srv, origin };
}

// One client: its own browser context (connections, cache), the page on
// `origin`, hls.js ready. `intercept`: the page comes from playwright's
// request interception instead of a server (any made-up origin, or the
// stream's own); it ends once the page has loaded, so that the player's
// requests go to the network untouched (playwright disables the HTTP
// cache while it intercepts).
async function openClient(browser, index, o, report, origin, intercept) {
  const context = await browser.newContext();
  const page = await context.newPage();
  watchPage(page, report, o.clients > 1 ? `[client ${index}] ` : '');
  const base = origin + PLAYER_PATH;
  if (intercept)
    await context.route(`${base}**`, (route) => {
      const f = pageFile(new URL(route.request().url()).pathname.slice(PLAYER_PATH.length));
      return route.fulfill({ status: f.status, contentType: f.type, body: f.body });
    });
  await page.goto(base, { timeout: 15000 });
  if (intercept) await context.unrouteAll({ behavior: 'ignoreErrors' });
  await page.evaluate(installHarness);
  return { index, context, page };
}

// stopFile: once it exists, the measurement ends (before `seconds`).
// reached: an async () => bool (`until`), asked every 250 ms, one call at a
// time; once true, the measurement ends too. `seconds` stays the bound.
function waitOrStop(seconds, stopFile, reached) {
  return new Promise((resolve) => {
    let over = false;
    const t = setTimeout(done, seconds * 1000);
    const poll = stopFile
      ? setInterval(() => {
          if (existsSync(stopFile)) {
            log(`${stopFile} exists: stopping`);
            done();
          }
        }, 200)
      : null;
    const ask = async () => {
      if (over) return;
      let yes = false;
      try {
        yes = await reached();
      } catch (e) {
        log('until:', String(e));
      }
      if (yes) {
        log('until: reached, stopping');
        done();
      } else if (!over) setTimeout(ask, 250);
    };
    if (reached) setTimeout(ask, 250);
    function done() {
      over = true;
      clearTimeout(t);
      if (poll) clearInterval(poll);
      resolve();
    }
  });
}

// `until` over every client: each decoded `framesDecoded` frames and
// showed a picture `height` pixels high.
function untilReached(clients, until) {
  return async () => {
    const ps = await Promise.all(clients.map((c) => c.page.evaluate(() => window.__fbHls.progress())));
    return ps.every(
      (q) =>
        (until.framesDecoded === undefined || q.frames_decoded >= until.framesDecoded) &&
        (until.height === undefined || q.heights.includes(until.height)),
    );
  };
}

async function run(browser, o, report) {
  if (!existsSync(HLS_JS)) throw new Error(`${HLS_JS} is missing: run \`make node-deps\` (npm ci)`);
  const served = o.pageOrigin === null ? await servePage(o.url) : null;
  try {
    return await play(browser, o, report, served ? served.origin : o.pageOrigin, !served);
  } finally {
    if (served) served.srv.close();
  }
}

async function play(browser, o, report, origin, intercept) {
  report.page_origin = origin;
  const clients = await Promise.all(
    Array.from({ length: o.clients }, (_, i) => openClient(browser, i, o, report, origin, intercept)),
  );
  log(`${clients.length} client(s) on ${origin}${PLAYER_PATH} playing ${o.url}`);
  const args = {
    url: o.url,
    lowLatency: o.lowLatency,
    startLevel: o.startLevel,
    capLevelToPlayerSize: o.capLevelToPlayerSize,
    headers: o.headers,
    timecode: o.timecode,
    sampleMs: o.sampleMs,
    hlsConfig: o.hlsConfig,
  };
  await Promise.all(clients.map((c) => c.page.evaluate((a) => window.__fbHls.start(a), args)));
  await waitOrStop(o.seconds, o.stopFile, o.until ? untilReached(clients, o.until) : null);
  const out = await Promise.all(
    clients.map(async (c) => ({ index: c.index, ...(await c.page.evaluate((raw) => window.__fbHls.report(raw), o.raw)) })),
  );
  const version = await clients[0].page.evaluate(() => window.Hls.version);
  await Promise.all(clients.map((c) => c.context.close().catch((e) => log('close:', String(e)))));
  return { hls_js: version, clients: out };
}

const o = parseInput(readInput(process.argv.slice(2)));
const report = {
  mode: 'hls',
  ok: false,
  url: o.url,
  seconds: o.seconds,
  page_origin: null,
  low_latency: o.lowLatency,
  browser: null,
  hls_js: null,
  console_errors: [],
  page_errors: [],
};
runDriver({ o, args: CHROMIUM_ARGS, report, log }, (browser) => run(browser, o, report));

#!/usr/bin/env node
// Browser side of benches/webrtc/bench.py: N WHEP viewers in one headless
// Chromium page, kept playing until told to stop, with every frame of
// viewer 0 reported as it is presented (time code, abs-capture-time in
// both places Chromium may show it, receive time).
//
//   node benches/webrtc/viewer.mjs --url http://HOST:PORT/BUS/PROFILE/whep?adapt=0 \
//        [--viewers N] [--max-seconds S] [--flush-ms MS] [--chromium PATH]
//
// Protocol: JSON lines on stdout, logs on stderr.
//   {"event":"ready", browser, viewers:[{index, post_status, post_error, connection_state}], ...}
//     once every viewer presented a frame (or 20 s passed);
//   {"event":"samples", "s":[[...], ...], "clock":{...}} every --flush-ms:
//     viewer 0's frames since the last flush (fields in SAMPLE_FIELDS);
//   {"event":"mark", t, viewers:[{frames_decoded, frames_dropped, ...}]}
//     after each "mark" line on stdin (per-viewer decode counters);
//   {"event":"end", ...} after "stop" on stdin (or --max-seconds, or a
//     signal); the browser is closed when it is written.
// The same Chromium flags as publishers/tests/browser/whep.mjs (see its
// README): that harness measures one fixed window; this one needs a
// continuous session for the drift and CPU points.

import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { QUIET_ARGS } from '../../publishers/tests/browser/chromium.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
// playwright-core is installed once, for the browser tests (make node-deps).
const require = createRequire(join(HERE, '../../publishers/tests/browser/package.json'));
const { chromium } = require('playwright-core');

// The test drivers' flags (publishers/tests/browser/chromium.mjs), and
// what WebRTC on loopback with 20 videos in a page needs besides.
const CHROMIUM_ARGS = [
  ...QUIET_ARGS,
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  // 20 videos in one page: keep the hidden ones decoding and presenting.
  '--disable-background-media-suspend',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

// One sample per presented frame of viewer 0, as arrays (18,000 frames in
// ten minutes). Times are ms since the Unix epoch on the page's clock
// (performance.timeOrigin + the metadata's DOMHighResTimeStamp), or null.
export const SAMPLE_FIELDS = [
  'present', // presentationTime
  'timecode', // the time code's capture time (docs/timecode.md)
  'counter', // the time code's frame counter
  'rvfc_capture', // rVFC metadata.captureTime
  'receive', // rVFC metadata.receiveTime
  'rtp', // rVFC metadata.rtpTimestamp
  // getSynchronizationSources() of the same rtpTimestamp: captureTimestamp
  // (Chromium 156: ms since the NTP epoch, whole ms, from abs-capture-time),
  // senderCaptureTimeOffset, and timestamp (ms since the Unix epoch).
  'ssrc_capture',
  'ssrc_offset',
  'ssrc_timestamp',
];

const log = (...a) => console.error('[viewer.mjs]', ...a);
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    url: { type: 'string' },
    viewers: { type: 'string', default: '1' },
    'max-seconds': { type: 'string', default: '900' },
    'flush-ms': { type: 'string', default: '2000' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});
const o = {
  url: values.url,
  viewers: Number(values.viewers),
  maxSeconds: Number(values['max-seconds']),
  flushMs: Number(values['flush-ms']),
  chromium: values.chromium,
};
if (!o.url || !(o.viewers >= 1) || !(o.maxSeconds > 0) || !(o.flushMs > 0)) {
  console.error('usage: node viewer.mjs --url WHEP_URL [--viewers N] [--max-seconds S] [--flush-ms MS]');
  process.exit(64);
}

// Runs in the page (serialised by playwright: no closures over this module).
function installBench() {
  const ABS = 'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time';

  // The time code of docs/timecode.md, by the decoder the tests use
  // (publishers/src/console/timecode.js, loaded into the page first).
  const readTimecode = window.framebusTimecode.makeDecoder();
  function decode(video, w, h) {
    const c = readTimecode(video, w, h);
    return c === null ? null : { ms: Number(c.us) / 1000, counter: c.counter };
  }

  const viewers = [];
  let samples = [];
  const origin = performance.timeOrigin;
  const wall = (t) => (t === undefined || t === null ? null : origin + t);

  // getSynchronizationSources() describes the newest frame delivered to
  // the track: polled often, remembered by rtpTimestamp, matched to the
  // presented frame's rtpTimestamp.
  const sources = new Map();
  function pollSources(receiver) {
    for (const s of receiver.getSynchronizationSources()) {
      if (!sources.has(s.rtpTimestamp)) {
        sources.set(s.rtpTimestamp, {
          capture: s.captureTimestamp ?? null,
          offset: s.senderCaptureTimeOffset ?? null,
          timestamp: s.timestamp ?? null,
        });
        if (sources.size > 600) sources.delete(sources.keys().next().value);
      }
    }
  }

  function watch(v) {
    const onFrame = (now, md) => {
      if (v.stopped) return;
      v.presented++;
      if (v.index === 0) {
        pollSources(v.pc.getReceivers()[0]);
        const shown = md.presentationTime ?? now;
        const code = decode(v.video, md.width, md.height);
        const src = md.rtpTimestamp === undefined ? undefined : sources.get(md.rtpTimestamp);
        samples.push([
          wall(shown),
          code ? code.ms : null,
          code ? code.counter : null,
          wall(md.captureTime),
          wall(md.receiveTime),
          md.rtpTimestamp ?? null,
          src ? src.capture : null,
          src ? src.offset : null,
          src ? src.timestamp : null,
        ]);
      }
      v.video.requestVideoFrameCallback(onFrame);
    };
    v.video.requestVideoFrameCallback(onFrame);
  }

  async function start(url, n) {
    await Promise.all(
      Array.from({ length: n }, async (_, index) => {
        const v = { index, post_status: null, post_error: null, location: null, presented: 0, stopped: false };
        viewers.push(v);
        const pc = new RTCPeerConnection();
        v.pc = pc;
        const tr = pc.addTransceiver('video', { direction: 'recvonly' });
        if (index === 0 && tr.setHeaderExtensionsToNegotiate) {
          tr.setHeaderExtensionsToNegotiate(
            tr.getHeaderExtensionsToNegotiate().map((e) => (e.uri === ABS ? { ...e, direction: 'recvonly' } : e)),
          );
        }
        const video = document.createElement('video');
        video.muted = true;
        video.autoplay = true;
        video.playsInline = true;
        video.width = 96;
        document.body.append(video);
        v.video = video;
        pc.ontrack = (e) => {
          video.srcObject = e.streams[0] ?? new MediaStream([e.track]);
          video.play().catch((err) => (v.play_error = String(err)));
        };
        await pc.setLocalDescription(await pc.createOffer());
        await new Promise((r) => {
          if (pc.iceGatheringState === 'complete') return r();
          pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
          setTimeout(r, 1000);
        });
        watch(v);
        try {
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'Content-Type': 'application/sdp' },
            body: pc.localDescription.sdp,
          });
          v.post_status = res.status;
          const body = await res.text();
          if (!res.ok) {
            v.post_error = body.slice(0, 500);
            return;
          }
          const loc = res.headers.get('Location');
          v.location = loc === null ? null : new URL(loc, url).href;
          v.answer_has_abs = body.includes(ABS);
          await pc.setRemoteDescription({ type: 'answer', sdp: body });
        } catch (e) {
          v.post_error = String(e);
        }
      }),
    );
  }

  const brief = (v) => ({
    index: v.index,
    post_status: v.post_status,
    post_error: v.post_error,
    play_error: v.play_error ?? null,
    answer_has_abs: v.answer_has_abs ?? null,
    connection_state: v.pc.connectionState,
    presented: v.presented,
  });

  async function counters(only0) {
    const out = [];
    for (const v of only0 ? viewers.slice(0, 1) : viewers) {
      const r = brief(v);
      const st = await v.pc.getStats();
      st.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          // When these counters were read (ms since the Unix epoch): a
          // page busy decoding 20 streams reads 20 reports slowly.
          r.stats_timestamp = s.timestamp ?? null;
          r.frames_decoded = s.framesDecoded ?? null;
          r.frames_dropped = s.framesDropped ?? null;
          r.frames_received = s.framesReceived ?? null;
          r.freeze_count = s.freezeCount ?? null;
          r.packets_lost = s.packetsLost ?? null;
          r.nack_count = s.nackCount ?? null;
          r.pli_count = s.pliCount ?? null;
          r.frame_width = s.frameWidth ?? null;
          r.frame_height = s.frameHeight ?? null;
          r.jitter_buffer_ms = s.jitterBufferEmittedCount
            ? (s.jitterBufferDelay / s.jitterBufferEmittedCount) * 1000
            : null;
          r.decoder = s.decoderImplementation ?? null;
          // Set once Chromium maps RTP time to the sender's NTP clock
          // (RTCP sender reports): what rVFC captureTime would need.
          r.estimated_playout_timestamp = s.estimatedPlayoutTimestamp ?? null;
        }
        if (s.type === 'remote-outbound-rtp' && s.kind === 'video') {
          r.sender_reports = s.reportsSent ?? null;
          r.sender_report_remote_timestamp = s.remoteTimestamp ?? null;
        }
      });
      out.push(r);
    }
    return out;
  }

  // The page clock (origin + performance.now) against Date.now (the
  // wall clock the time code is on), ms: Date.now is whole milliseconds,
  // so the largest difference over 2 ms of readings is the offset.
  function clock() {
    let best = -Infinity;
    const t0 = performance.now();
    while (performance.now() - t0 < 2) best = Math.max(best, Date.now() - (origin + performance.now()));
    return { page_minus_wall_ms: -best, at: origin + performance.now() };
  }

  function drain() {
    const s = samples;
    samples = [];
    return { s, clock: clock() };
  }

  // Viewer 0's counters, then every viewer stops decoding at once, then
  // the WHEP resources go (in parallel: a page that was decoding 20
  // streams is slow, and the server ends a closed session by itself).
  async function stop() {
    const out = await counters(true);
    for (const v of viewers) {
      v.stopped = true;
      v.pc.close();
      v.video.srcObject = null;
    }
    await Promise.all(
      viewers.map(async (v) => {
        if (!v.location) return;
        try {
          v.delete_status = (await fetch(v.location, { method: 'DELETE' })).status;
        } catch (e) {
          v.delete_status = String(e);
        }
      }),
    );
    out.forEach((r) => (r.delete_status = viewers[r.index].delete_status ?? null));
    return out;
  }

  const ready = () => viewers.length > 0 && viewers.every((v) => v.presented > 0 || v.post_error !== null);
  const status = () => viewers.map(brief);
  window.__bench = { start, ready, status, counters, drain, stop };
}

const live = { browser: null, scratch: null, closing: null };
function close() {
  live.closing ??= (async () => {
    if (live.browser) await live.browser.close().catch((e) => log('close:', String(e)));
    if (live.scratch) rmSync(live.scratch, { recursive: true, force: true });
  })();
  return live.closing;
}

async function main() {
  live.scratch = mkdtempSync(join(tmpdir(), 'framebus-wbench-'));
  const home = live.scratch;
  let ended = false;
  let page;
  const finish = async (why) => {
    if (ended) return;
    ended = true;
    let viewers = null;
    let tail = null;
    try {
      tail = await page.evaluate(() => window.__bench.drain());
      viewers = await page.evaluate(() => window.__bench.stop());
    } catch (e) {
      log('stop:', String(e));
    }
    if (tail) emit({ event: 'samples', ...tail });
    await close();
    emit({ event: 'end', why, viewers });
    process.exit(0);
  };
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.once(sig, () => {
      log(`${sig}: closing the browser`);
      close().finally(() => process.exit(code));
    });
  }
  setTimeout(() => finish('max-seconds'), o.maxSeconds * 1000).unref();

  live.browser = await chromium.launch({
    executablePath: o.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    env: { ...process.env, HOME: home, XDG_CONFIG_HOME: home, XDG_CACHE_HOME: home },
    timeout: 30000,
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  page = await live.browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.on('pageerror', (e) => log('page error:', String(e)));
  const origin = new URL(o.url).origin;
  await page.goto(origin + '/healthz', { timeout: 15000 });
  await page.addScriptTag({ path: join(HERE, '../../publishers/src/console/timecode.js') });
  await page.evaluate(installBench);
  await page.evaluate(({ url, n }) => window.__bench.start(url, n), { url: o.url, n: o.viewers });
  const t0 = Date.now();
  while (!(await page.evaluate(() => window.__bench.ready())) && Date.now() - t0 < 20000) {
    await new Promise((r) => setTimeout(r, 100));
  }
  emit({
    event: 'ready',
    browser: live.browser.version(),
    node_pid: process.pid,
    waited_ms: Date.now() - t0,
    fields: SAMPLE_FIELDS,
    viewers: await page.evaluate(() => window.__bench.status()),
  });

  const flusher = setInterval(async () => {
    if (ended) return;
    try {
      const d = await page.evaluate(() => window.__bench.drain());
      if (!ended) emit({ event: 'samples', ...d });
    } catch (e) {
      log('drain:', String(e));
    }
  }, o.flushMs);
  const rl = createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    const cmd = line.trim();
    if (cmd === 'mark') {
      try {
        emit({ event: 'mark', t: Date.now(), viewers: await page.evaluate(() => window.__bench.counters()) });
      } catch (e) {
        emit({ event: 'mark', t: Date.now(), viewers: null, error: String(e) });
      }
    } else if (cmd === 'stop') {
      clearInterval(flusher);
      await finish('stop');
    }
  });
  rl.on('close', () => {
    clearInterval(flusher);
    finish('stdin closed');
  });
}

main().catch(async (e) => {
  log('failure:', String(e && e.stack ? e.stack : e));
  emit({ event: 'error', error: String(e) });
  await close();
  process.exit(2);
});

#!/usr/bin/env node
// Headless Chromium driver for the browser console (framebus-mjpeg's `/`,
// publishers/src/console/): one browser, one page, every feature in turn,
// as a person uses it, read through what the page exposes
// (window.framebusConsole) and its DOM. Prints ONE JSON report on stdout;
// logs go to stderr. Exit codes as the other drivers (chromium.mjs). See
// README.md for the steps and the report's fields.
//
// Each step records what it saw (and its own `error` when a wait ran out)
// and the next step still runs: the test reads the whole report and says
// which feature broke. Every wait is bounded by what is left of
// `--seconds`.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { QUIET_ARGS, runDriver } from './chromium.mjs';

const USAGE = `usage:
  node console.mjs --url http://HOST:PORT/ --cams CAM0,CAM1 --profile ENC
                   --stream CAM/ENC [--kill-rtsp]
                   [--auth-url http://HOST:PORT/ --basic USER:PASS --auth-cam CAM]
                   [--audio CAM] [--only STEP,STEP…]
                   [--screenshots DIR] [--seconds BOUND]
  --audio CAM: the camera with a microphone (the audio step: its level
               meter, and none on the other --cams)
  --only:      run just these steps (load,mosaic,audio,sound,player,fallback,
               recording,rtsp_kill,auth); --stream is needed only by
               recording`;

// WebRTC to a server on 127.0.0.1, as whep.mjs (README: Chromium flags).
const CHROMIUM_ARGS = [
  ...QUIET_ARGS,
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

const log = (...a) => console.error('[console.mjs]', ...a);

function usage(why) {
  console.error(`${why}\n${USAGE}`);
  process.exit(64);
}

const OPTIONS = {
  url: { type: 'string' },
  cams: { type: 'string' },
  profile: { type: 'string', default: 'low' },
  stream: { type: 'string' },
  'kill-rtsp': { type: 'boolean', default: false },
  'auth-url': { type: 'string' },
  basic: { type: 'string' },
  'auth-cam': { type: 'string' },
  audio: { type: 'string' },
  only: { type: 'string' },
  screenshots: { type: 'string' },
  seconds: { type: 'string', default: '90' },
  chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  help: { type: 'boolean', short: 'h', default: false },
};

// Every step, in the order they run.
const STEPS = ['load', 'mosaic', 'audio', 'sound', 'player', 'fallback', 'recording', 'rtsp_kill', 'auth'];

// Bus and stream names go into CSS attribute selectors: no escaping needed.
const NAME = /^[a-z0-9][a-z0-9._-]*$/;

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
  const o = { ...v, seconds: Number(v.seconds), cams: (v.cams || '').split(',').filter(Boolean) };
  const only = v.only ? v.only.split(',') : null;
  const unknown = (only || []).filter((x) => !STEPS.includes(x));
  if (unknown.length) usage(`--only: unknown steps ${unknown.join(',')}`);
  o.runs = (name) => !only || only.includes(name);
  if (!v.url || !/^https?:\/\//.test(v.url)) usage('--url: the console\'s http:// URL');
  if (!o.cams.length || !o.cams.every((c) => NAME.test(c))) usage('--cams: bus names, comma-separated');
  if (!NAME.test(o.profile)) usage('--profile: an encoder name');
  if (o.runs('recording') && (!v.stream || !/^[a-z0-9._-]+\/[a-z0-9._-]+$/.test(v.stream))) usage('--stream: CAM/ENC');
  if (v.audio !== undefined && !o.cams.includes(v.audio)) usage('--audio: one of --cams');
  if (!(o.seconds > 0)) usage('--seconds: a positive number');
  if (v['auth-url'] !== undefined) {
    if (!/^https?:\/\//.test(v['auth-url'])) usage('--auth-url: an http:// URL');
    if (!v.basic || !v.basic.includes(':')) usage('--basic: USER:PASS (with --auth-url)');
    if (!v['auth-cam'] || !NAME.test(v['auth-cam'])) usage('--auth-cam: its camera (with --auth-url)');
  }
  return o;
}

const o = parseOptions(process.argv.slice(2));
const report = { ok: false, browser: null, console_errors: [], page_errors: [] };

// The player's state as the test reads it (no DOM nodes, no functions).
const playerState = () => {
  const P = window.framebusConsole.player;
  if (!P) return null;
  return {
    bus: P.bus, profile: P.profile, mode: P.mode, trying: P.trying, frames: P.frames,
    latency_ms: P.latencyMs, latency_kind: P.latencyKind, fallbacks: P.fallbacks, error: P.error,
    said: document.getElementById('player-state').textContent,
  };
};

runDriver({ o, args: CHROMIUM_ARGS, report, log }, async (browser) => {
  const out = { steps: {} };
  const started = Date.now();
  const deadline = started + o.seconds * 1000;
  const left = () => Math.max(1000, deadline - Date.now());
  const shots = o.screenshots ?? null;
  if (shots) mkdirSync(shots, { recursive: true });
  out.screenshots = [];

  // Console errors and uncaught exceptions, tagged with the step that was
  // running (the fallback step provokes 503s on purpose).
  let phase = 'load';
  const watch = (page, prefix) => {
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const at = m.location().url;
      report.console_errors.push(`[${prefix}${phase}] ${m.text()}${at ? ` (${at})` : ''}`);
    });
    page.on('pageerror', (e) => report.page_errors.push(`[${prefix}${phase}] ${String(e)}`));
  };

  // Runs one step (unless --only leaves it out); a failed wait becomes
  // the step's `error`, the rest of its record stays.
  const step = async (name, body) => {
    if (!o.runs(name)) return null;
    phase = name;
    const rec = { elapsed_ms: null };
    out.steps[name] = rec;
    const t0 = Date.now();
    log('step', name);
    try {
      await body(rec);
    } catch (e) {
      rec.error = String(e && e.message ? e.message : e).split('\n')[0];
      log(name, 'failed:', rec.error);
    }
    rec.elapsed_ms = Date.now() - t0;
    return rec;
  };
  const waitFor = (page, fn, arg, ms) =>
    page.waitForFunction(fn, arg, { timeout: Math.min(ms ?? left(), left()), polling: 50 });

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  // Clicks, fills and screenshots without a timeout of their own: a
  // missing element fails its step, not the whole run.
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  watch(page, '');

  // 1. The page loads and renders its first status.
  await step('load', async (rec) => {
    const t0 = Date.now();
    const resp = await page.goto(o.url, { timeout: left() });
    rec.http_status = resp ? resp.status() : null;
    rec.title = await page.title();
    await waitFor(page, () => window.framebusConsole && window.framebusConsole.ready);
    rec.ready_ms = Date.now() - t0;
    rec.cameras = await page.evaluate(() => window.framebusConsole.doc.cameras.map((c) => c.bus));
    rec.health = await page.evaluate(() => window.framebusConsole.doc.health);
  });

  // 2. Mosaic: a tile per camera, moving, with the time code's latency.
  await step('mosaic', async (rec) => {
    rec.tiles = {};
    const tileState = (bus) => {
      const t = window.framebusConsole.tiles[bus];
      const fig = document.querySelector(`figure.tile[data-bus="${bus}"]`);
      return {
        figure: !!fig, has_tile: !!t, natural_width: t ? t.img.naturalWidth : 0,
        natural_height: t ? t.img.naturalHeight : 0, codes: t ? t.codes : 0,
        latency_ms: t ? t.latencyMs : null, latency_kind: t ? t.latencyKind : null,
      };
    };
    const img = (bus) => page.locator(`figure.tile[data-bus="${bus}"] img`);
    // Every tile shows a picture, then two element screenshots a second
    // apart (the picture, not the caption's changing figures).
    await waitFor(page, (cams) => cams.every((b) => {
      const t = window.framebusConsole.tiles[b];
      return t && t.img.naturalWidth > 0 && document.querySelector(`figure.tile[data-bus="${b}"]`);
    }), o.cams, 20000).catch((e) => { rec.error = `no picture in every tile: ${e.message.split('\n')[0]}`; });
    const first = {};
    for (const b of o.cams) first[b] = await img(b).screenshot({ timeout: 5000 }).catch(() => null);
    await page.waitForTimeout(1000);
    for (const b of o.cams) {
      const second = await img(b).screenshot({ timeout: 5000 }).catch(() => null);
      rec.tiles[b] = { screenshots_differ: !!(first[b] && second && !first[b].equals(second)) };
    }
    // The time code read at least twice with different counters.
    await waitFor(page, (cams) => cams.every((b) => {
      const t = window.framebusConsole.tiles[b];
      return t && t.codes >= 2 && t.latencyKind === 'timecode';
    }), o.cams, 20000).catch((e) => { rec.error ??= `time codes: ${e.message.split('\n')[0]}`; });
    for (const b of o.cams) Object.assign(rec.tiles[b], await page.evaluate(tileState, b));
    if (shots) {
      const f = join(shots, 'console-mosaic.png');
      await page.screenshot({ path: f, fullPage: true });
      out.screenshots.push(f);
    }
  });

  // 2b. The microphone: a level meter on its camera's tile only, whose
  // level moves (the tone beeps 100 ms every second; the page polls the
  // levels ten times a second).
  if (o.audio) {
    await step('audio', async (rec) => {
      await waitFor(page, (b) => !!document.querySelector(`figure.tile[data-bus="${b}"] .meter`), o.audio, 10000);
      rec.with_meter = await page.evaluate(() => [...document.querySelectorAll('figure.tile')]
        .filter((f) => f.querySelector('.meter')).map((f) => f.dataset.bus));
      rec.tiles = await page.evaluate(() => [...document.querySelectorAll('figure.tile')].map((f) => f.dataset.bus));
      // The meter's measured peak (data-peak) every 50 ms for 2 s.
      const polls0 = await page.evaluate(() => window.framebusConsole.levelPolls);
      rec.peaks = await page.evaluate((b) => new Promise((done) => {
        const seen = [];
        const take = () => {
          const m = document.querySelector(`figure.tile[data-bus="${b}"] .meter`);
          seen.push(m && m.dataset.peak !== undefined ? Number(m.dataset.peak) : null);
        };
        take();
        const timer = setInterval(take, 50);
        setTimeout(() => { clearInterval(timer); take(); done(seen); }, 2000);
      }), o.audio);
      rec.level_polls = (await page.evaluate(() => window.framebusConsole.levelPolls)) - polls0;
      const nums = rec.peaks.filter((x) => typeof x === 'number' && Number.isFinite(x));
      rec.distinct_peaks = [...new Set(nums)].length;
      rec.max_peak = nums.length ? Math.max(...nums) : null;
      rec.min_peak = nums.length ? Math.min(...nums) : null;
      rec.peaks = [...new Set(nums)];
      rec.row = await page.evaluate((b) => {
        const r = document.querySelector(`figure.tile[data-bus="${b}"] .audio`);
        return r ? { mic: r.querySelector('.mic').textContent, db: r.querySelector('.db').textContent,
          xruns: r.querySelector('.xruns').textContent, opus: r.querySelector('.opus').textContent } : null;
      }, o.audio);
      log('audio:', JSON.stringify(rec));
      if (shots) {
        const f = join(shots, 'console-audio.png');
        await page.locator(`figure.tile[data-bus="${o.audio}"]`).screenshot({ path: f }).catch(() => {});
        out.screenshots.push(f);
      }
    });
  }

  // Waits until the player shows `want` with frames and a latency, or
  // gives up on it (fell back, failed); the player's state then.
  const settle = async (want, ms) => {
    await waitFor(page, (want) => {
      const P = window.framebusConsole.player;
      if (!P) return true;
      if (P.mode === want) return P.frames > 0 && P.latencyMs != null;
      return P.mode === 'failed' || (P.mode !== 'connecting' && P.mode !== want);
    }, want, ms).catch(() => {});
    // A picture without a latency yet: a little longer for the latency.
    await waitFor(page, (want) => {
      const P = window.framebusConsole.player;
      return !P || P.mode !== want || P.latencyMs != null;
    }, want, 3000).catch(() => {});
    return page.evaluate(playerState);
  };
  const cam0 = o.cams[0];

  // 2c. The player's sound button (with --audio): off at first; on, the
  // player starts WebRTC again with an audio track, unmuted.
  if (o.audio) {
    await step('sound', async (rec) => {
      const sound = () => page.evaluate(async () => {
        const P = window.framebusConsole.player;
        const out = {
          button: document.getElementById('player-sound').textContent, mode: P && P.mode,
          frames: P && P.frames, muted: P && P.media ? P.media.muted : null, audio_packets: 0,
        };
        if (P && P.pc) {
          for (const s of (await P.pc.getStats()).values()) {
            if (s.type === 'inbound-rtp' && s.kind === 'audio') {
              out.audio_packets = s.packetsReceived;
              out.audio_level = s.audioLevel;
              out.total_audio_energy = s.totalAudioEnergy;
            }
          }
        }
        return out;
      });
      if (o.cams.some((c) => c !== o.audio)) {
        const quiet = o.cams.find((c) => c !== o.audio);
        await page.evaluate(([b, p]) => window.framebusConsole.open(b, p, 'webrtc'), [quiet, o.profile]);
        rec.quiet_button_hidden = await page.evaluate(() => document.getElementById('player-sound').hidden);
        await page.evaluate(() => window.framebusConsole.close());
      }
      await page.evaluate(([b, p]) => window.framebusConsole.open(b, p, 'webrtc'), [o.audio, o.profile]);
      await settle('webrtc', 20000);
      rec.button = await page.evaluate(() => document.getElementById('player-sound').textContent);
      rec.before = await sound();
      await page.click('#player-sound', { timeout: 5000 });
      await settle('webrtc', 20000);
      // Two seconds of sound: two beeps.
      await page.waitForTimeout(2000);
      rec.after = await sound();
      log('sound:', JSON.stringify(rec));
      await page.evaluate(() => window.framebusConsole.close());
    });
  }

  // 3. The player: WebRTC, then LL-HLS and MJPEG by their buttons.
  await step('player', async (rec) => {
    let t0 = Date.now();
    rec.opened = await page.evaluate(([b, p]) => window.framebusConsole.open(b, p, 'webrtc'), [cam0, o.profile]);
    rec.webrtc = { ...(await settle('webrtc', 20000)), waited_ms: Date.now() - t0 };
    log('webrtc:', JSON.stringify(rec.webrtc));
    if (shots) {
      const f = join(shots, 'console-player.png');
      await page.screenshot({ path: f });
      out.screenshots.push(f);
    }
    t0 = Date.now();
    await page.click('#player .modes button[data-mode=hls]', { timeout: 5000 });
    rec.hls = { ...(await settle('hls', 25000)), waited_ms: Date.now() - t0 };
    log('hls:', JSON.stringify(rec.hls));
    t0 = Date.now();
    await page.click('#player .modes button[data-mode=mjpeg]', { timeout: 5000 });
    rec.mjpeg = { ...(await settle('mjpeg', 15000)), waited_ms: Date.now() - t0 };
    log('mjpeg:', JSON.stringify(rec.mjpeg));
    await page.evaluate(() => window.framebusConsole.close());
  });

  // 4. Fallback: WHEP refused → LL-HLS; the playlists refused too → MJPEG.
  await step('fallback', async (rec) => {
    const open = () => page.evaluate(([b, p]) => window.framebusConsole.open(b, p, 'webrtc'), [cam0, o.profile]);
    const refuse = (r) => r.fulfill({ status: 503, contentType: 'text/plain', body: 'refused' });
    const whep = '**/whep';
    // The playlists with or without hls.js's query (`?_HLS_msn=`).
    const playlists = (u) => u.pathname.endsWith('.m3u8');
    try {
      await page.route(whep, refuse);
      let t0 = Date.now();
      await open();
      rec.whep_refused = { ...(await settle('hls', 30000)), waited_ms: Date.now() - t0 };
      log('whep refused:', JSON.stringify(rec.whep_refused));
      await page.evaluate(() => window.framebusConsole.close());
      await page.route(playlists, refuse);
      t0 = Date.now();
      await open();
      rec.all_refused = { ...(await settle('mjpeg', 40000)), waited_ms: Date.now() - t0 };
      log('all refused:', JSON.stringify(rec.all_refused));
      await page.evaluate(() => window.framebusConsole.close());
    } finally {
      await page.unroute(whep);
      await page.unroute(playlists);
    }
  });

  // 5. A recording from the form: done, then played in #rec-video.
  await step('recording', async (rec) => {
    await waitFor(page, (s) => [...document.querySelectorAll('#rec-stream option')].some((x) => x.value === s),
      o.stream, 10000);
    const before = await page.evaluate(() => window.framebusConsole.recordings.map((r) => r.id));
    await page.selectOption('#rec-stream', o.stream);
    await page.fill('#rec-preroll', '1s');
    await page.fill('#rec-duration', '2s');
    await page.check('#rec-snapshot');
    await page.click('#rec-form button[type=submit]');
    const first = await (await waitFor(page, (before) => {
      const tr = [...document.querySelectorAll('#recordings tr[data-id]')].find((t) => !before.includes(t.dataset.id));
      if (tr) return { id: tr.dataset.id };
      const msg = document.getElementById('rec-msg').textContent;
      return msg && !msg.startsWith('recording ') ? { error: msg } : null;
    }, before, 15000)).jsonValue();
    if (first.error) throw new Error(`the form said: ${first.error}`);
    rec.id = first.id;
    rec.states = [];
    const tr = page.locator(`#recordings tr[data-id="${first.id}"]`);
    const end = Date.now() + Math.min(left(), 30000);
    while (Date.now() < end) {
      const s = await tr.getAttribute('data-state', { timeout: 5000 });
      if (rec.states[rec.states.length - 1] !== s) rec.states.push(s);
      if (s === 'done' || s === 'failed') break;
      await page.waitForTimeout(100);
    }
    rec.recording = await page.evaluate((id) => window.framebusConsole.recordings.find((r) => r.id === id) || null, first.id);
    if (rec.states[rec.states.length - 1] !== 'done') throw new Error(`state ${rec.states.join(' → ')}`);
    await tr.locator('button.play').click({ timeout: 5000 });
    // readyState ≥ 2 with currentTime moving on, or played to the end.
    const h = await waitFor(page, () => {
      const v = document.getElementById('rec-video');
      window.__recVideo ??= { t0: null };
      if (v.error) return { error: v.error.code + ' ' + (v.error.message || '') };
      if (v.ended) return { ended: true };
      if (v.readyState >= 2) {
        if (window.__recVideo.t0 === null) window.__recVideo.t0 = v.currentTime;
        else if (v.currentTime > window.__recVideo.t0) return { advanced: true };
      }
      return null;
    }, undefined, 20000);
    rec.video = await h.jsonValue();
    Object.assign(rec.video, await page.evaluate(() => {
      const v = document.getElementById('rec-video');
      return { src: v.currentSrc, ready_state: v.readyState, current_time_s: v.currentTime,
        duration_s: Number.isFinite(v.duration) ? v.duration : null, width: v.videoWidth, height: v.videoHeight,
        hidden: v.hidden };
    }));
    log('recording:', JSON.stringify(rec));
  });

  // 6. The RTSP publisher killed: its row leaves `running`, then is back.
  if (o['kill-rtsp'] && o.runs('rtsp_kill')) {
    await step('rtsp_kill', async (rec) => {
      const row = () => {
        const tr = document.querySelector('#publishers tr[data-kind=rtsp]');
        return tr ? { state: tr.dataset.state, restarts: Number(tr.querySelector('.restarts').textContent) } : null;
      };
      await waitFor(page, () => (window.framebusConsole.doc.publishers.find((p) => p.kind === 'rtsp') || {}).state === 'running'
        && document.querySelector('#publishers tr[data-kind=rtsp][data-state=running]'), undefined, 30000);
      const p = await page.evaluate(() => window.framebusConsole.doc.publishers.find((p) => p.kind === 'rtsp'));
      const r0 = await page.evaluate(row);
      rec.pid_before = p.pid;
      rec.restarts_before = r0.restarts;
      rec.states = [r0.state];
      process.kill(p.pid, 'SIGKILL');
      log('killed rtsp pid', p.pid);
      // The row every 50 ms: every state it shows, until it is running again
      // with one more restart.
      const end = Date.now() + Math.min(left(), 40000);
      let r = r0;
      while (Date.now() < end) {
        r = (await page.evaluate(row)) || r;
        if (rec.states[rec.states.length - 1] !== r.state) rec.states.push(r.state);
        if (r.state === 'running' && r.restarts > r0.restarts) break;
        await page.waitForTimeout(50);
      }
      rec.restarts_after = r.restarts;
      rec.state_after = r.state;
      const q = await page.evaluate(() => window.framebusConsole.doc.publishers.find((p) => p.kind === 'rtsp'));
      rec.pid_after = q ? q.pid : null;
      rec.last_reason = q ? q.last_reason : null;
      log('rtsp:', JSON.stringify(rec));
    });
  }

  out.c_errors = await page.evaluate(() => window.framebusConsole.errors).catch((e) => [`cannot read: ${e}`]);
  await context.close();

  // 7. Behind Basic auth: the browser answers the prompt; the page and its
  // tiles work with those credentials.
  if (o['auth-url']) {
    await step('auth', async (rec) => {
      const [username, ...rest] = o.basic.split(':');
      const ctx = await browser.newContext({ httpCredentials: { username, password: rest.join(':') } });
      ctx.setDefaultTimeout(10000);
      try {
        const p = await ctx.newPage();
        watch(p, 'auth:');
        const resp = await p.goto(o['auth-url'], { timeout: left() });
        rec.http_status = resp ? resp.status() : null;
        await waitFor(p, () => window.framebusConsole && window.framebusConsole.ready, undefined, 20000);
        rec.ready = true;
        rec.auth = await p.evaluate(() => window.framebusConsole.doc.outputs.auth);
        await waitFor(p, (b) => {
          const t = window.framebusConsole.tiles[b];
          return t && t.img.naturalWidth > 0 && t.codes >= 2;
        }, o['auth-cam'], 20000).catch((e) => { rec.error = `tile: ${e.message.split('\n')[0]}`; });
        rec.tile = await p.evaluate((b) => {
          const t = window.framebusConsole.tiles[b];
          return t ? { natural_width: t.img.naturalWidth, natural_height: t.img.naturalHeight, codes: t.codes,
            latency_kind: t.latencyKind, src: t.img.src } : null;
        }, o['auth-cam']);
        rec.c_errors = await p.evaluate(() => window.framebusConsole.errors);
      } finally {
        await ctx.close();
      }
    });
  }
  out.driver_ms = Date.now() - started;
  return out;
});

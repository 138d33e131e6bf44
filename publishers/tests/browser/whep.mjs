#!/usr/bin/env node
// Headless Chromium driver for the framebus WebRTC (WHEP) tests and
// benchmarks: plays a WHEP endpoint (or a player page, or a loopback
// self-test) in a real browser and prints ONE JSON report on stdout.
// Logs go to stderr. Exit 0 when the measurement ran (even if nothing
// played: the report says so), 2 on a harness failure, 3 on its own
// timeout, 64 on bad usage, 128+N on signal N (the browser closed first).
// See README.md for the report's fields.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { QUIET_ARGS, WEBRTC_ARGS, runDriver, watchPage } from './chromium.mjs';

// The page-side time-code decoder and frame follower, shared with hls.mjs
// and benches/webrtc/viewer.mjs.
const TIMECODE_JS = join(dirname(fileURLToPath(import.meta.url)), '../../src/console/timecode.js');
// The page-side inbound stats of a peer connection, shared with janus.mjs.
const RTCSTATS_JS = join(dirname(fileURLToPath(import.meta.url)), 'rtcstats.js');

const USAGE = `usage:
  node whep.mjs --url http://HOST:PORT/BUS/PROFILE/whep --seconds S [--viewers N]
                [--token T | --basic USER:PASS] [--timecode] [--raw] [--audio] [--av-sync]
                [--sample-ms MS] [--stop-file PATH]
                [--ice-server URL]... [--ice-username U --ice-credential C] [--relay-only]
  node whep.mjs --page URL --seconds S [--timecode] [--raw]
  node whep.mjs --self-test --seconds S [--viewers N] [--codec h264|vp8|any] [--raw]`;

// The quiet set of chromium.mjs, and its WebRTC flags (loopback, no mDNS).
const CHROMIUM_ARGS = [...QUIET_ARGS, ...WEBRTC_ARGS];

const log = (...a) => console.error('[whep.mjs]', ...a);

function usage(why) {
  console.error(`${why}\n${USAGE}`);
  process.exit(64);
}

const OPTIONS = {
  url: { type: 'string' },
  page: { type: 'string' },
  'self-test': { type: 'boolean', default: false },
  seconds: { type: 'string', default: '5' },
  viewers: { type: 'string', default: '1' },
  token: { type: 'string' },
  basic: { type: 'string' },
  timecode: { type: 'boolean', default: false },
  raw: { type: 'boolean', default: false },
  audio: { type: 'boolean', default: false },
  'av-sync': { type: 'boolean', default: false },
  codec: { type: 'string', default: 'h264' },
  'sample-ms': { type: 'string' },
  'stop-file': { type: 'string' },
  'ice-server': { type: 'string', multiple: true, default: [] },
  'ice-username': { type: 'string' },
  'ice-credential': { type: 'string' },
  'relay-only': { type: 'boolean', default: false },
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
  const modes = [values.url, values.page, values['self-test'] || undefined].filter((m) => m !== undefined);
  const seconds = Number(values.seconds);
  const viewers = Number(values.viewers);
  const sampleMs = values['sample-ms'] === undefined ? null : Number(values['sample-ms']);
  const iceServers = values['ice-server'];
  const bad =
    modes.length !== 1 ||
    !(seconds > 0) ||
    !Number.isInteger(viewers) ||
    viewers < 1 ||
    (values.token !== undefined && values.basic !== undefined) ||
    (values.basic !== undefined && !values.basic.includes(':')) ||
    !['h264', 'vp8', 'any'].includes(values.codec) ||
    (sampleMs !== null && !(Number.isInteger(sampleMs) && sampleMs >= 50)) ||
    (values['relay-only'] && iceServers.length === 0) ||
    ((values['ice-username'] !== undefined || values['ice-credential'] !== undefined) && iceServers.length === 0) ||
    (!values.url &&
      (sampleMs !== null || values['stop-file'] !== undefined || iceServers.length > 0 || values.audio || values['av-sync']));
  if (bad) usage('bad arguments');
  // WHEP only: the RTCPeerConnection's configuration (TURN/STUN servers,
  // relay-only), as a player would build it from the answer's Link headers.
  const rtcConfig = {};
  if (iceServers.length > 0) {
    rtcConfig.iceServers = iceServers.map((urls) => {
      const s = { urls };
      if (values['ice-username'] !== undefined) s.username = values['ice-username'];
      if (values['ice-credential'] !== undefined) s.credential = values['ice-credential'];
      return s;
    });
  }
  if (values['relay-only']) rtcConfig.iceTransportPolicy = 'relay';
  const headers = {};
  if (values.token !== undefined) headers.Authorization = `Bearer ${values.token}`;
  if (values.basic !== undefined) headers.Authorization = `Basic ${Buffer.from(values.basic).toString('base64')}`;
  return {
    mode: values.url ? 'whep' : values.page ? 'page' : 'self_test',
    url: values.url ?? values.page ?? null,
    seconds,
    viewers,
    headers,
    // The self-test exists to prove the time-code path: always on there.
    timecode: values.timecode || values['self-test'],
    raw: values.raw,
    // WHEP only: each viewer also offers recvonly audio.
    audio: values.audio || values['av-sync'],
    // WHEP only: viewer 0 measures lip sync (implies audio).
    avSync: values['av-sync'],
    codec: values.codec,
    chromium: values.chromium,
    sampleMs,
    stopFile: values['stop-file'] ?? null,
    rtcConfig,
  };
}

// Everything below runs inside the page (playwright serialises the function
// source, so it must not close over anything of this module). It defines
// window.__fb: viewers, stats and the time-code watcher.
function installHarness() {
  if (window.__fb) return;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // Time-code layout of docs/timecode.md and the per-frame follower
  // (timecode.js, loaded into the page first; hls.mjs uses the same).
  const { BANDS, TIME_CELLS, COUNTER_CELLS, makeDecoder, summary, watchVideo } = window.framebusTimecode;

  // Inbound video stats of a peer connection (rtcstats.js, loaded into the
  // page first; janus.mjs uses the same).
  const { inboundStats } = window.framebusRtcStats;

  // The receiving side of `pc`'s audio as getStats() reports it; null
  // before any audio RTP arrived.
  async function audioStats(pc) {
    const report = await pc.getStats();
    const all = [...report.values()];
    const inb = all.find((s) => s.type === 'inbound-rtp' && s.kind === 'audio');
    if (!inb) return null;
    const codec = inb.codecId ? report.get(inb.codecId) : undefined;
    const n = (x) => (x === undefined ? null : x);
    return {
      packets_received: n(inb.packetsReceived),
      packets_lost: n(inb.packetsLost),
      total_samples_received: n(inb.totalSamplesReceived),
      concealed_samples: n(inb.concealedSamples),
      silent_concealed_samples: n(inb.silentConcealedSamples),
      concealment_events: n(inb.concealmentEvents),
      audio_level: n(inb.audioLevel),
      total_audio_energy: n(inb.totalAudioEnergy),
      total_samples_duration_s: n(inb.totalSamplesDuration),
      jitter_buffer_ms: inb.jitterBufferEmittedCount
        ? (inb.jitterBufferDelay / inb.jitterBufferEmittedCount) * 1000
        : null,
      codec: codec ? codec.mimeType : null,
      clock_rate: codec ? n(codec.clockRate) : null,
      channels: codec ? n(codec.channels) : null,
      sdp_fmtp_line: codec ? n(codec.sdpFmtpLine) : null,
    };
  }

  // Every 100 ms: the largest `audioLevel` of the inbound audio (a level
  // is of the last few tens of ms: a short beep shows only when sampled
  // while it plays).
  function followAudioLevel(pc) {
    const f = { max: null, samples: 0, timer: null, busy: false };
    f.timer = setInterval(async () => {
      if (f.busy) return;
      f.busy = true;
      try {
        const a = await audioStats(pc);
        if (a && a.audio_level !== null) {
          f.samples += 1;
          f.max = Math.max(f.max ?? 0, a.audio_level);
        }
      } catch (e) {
        // A closed pc: the last value stands.
      } finally {
        f.busy = false;
      }
    }, 100);
    f.stop = () => clearInterval(f.timer);
    return f;
  }

  // The answer's audio media line: null when it has none; else its port
  // (0: refused), direction and codecs (`opus/48000/2`).
  function answerAudio(sdp) {
    const section = sdp.split(/\r?\nm=/).slice(1).find((m) => m.startsWith('audio '));
    if (section === undefined) return null;
    const lines = section.split(/\r?\n/);
    const dirs = ['sendrecv', 'sendonly', 'recvonly', 'inactive'];
    return {
      port: Number(section.split(' ')[1]),
      direction: dirs.find((d) => lines.includes(`a=${d}`)) ?? null,
      codecs: lines.filter((l) => l.startsWith('a=rtpmap:')).map((l) => l.split(' ')[1]),
    };
  }

  function iceGathered(pc, limitMs) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === 'complete') resolve();
      };
      pc.addEventListener('icegatheringstatechange', done);
      setTimeout(resolve, limitMs);
    });
  }

  // The RTP abs-capture-time header extension is how Chromium learns a
  // frame's capture instant (`captureTime` in rVFC metadata); it is not
  // offered unless asked for (Chromium 114+ API; older ones skip it).
  function askAbsCaptureTime(tr, direction) {
    if (!tr.setHeaderExtensionsToNegotiate) return;
    const uri = 'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time';
    tr.setHeaderExtensionsToNegotiate(
      tr.getHeaderExtensionsToNegotiate().map((e) => (e.uri === uri ? { ...e, direction } : e)),
    );
  }

  function newVideo() {
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.width = 160;
    document.body.append(video);
    return video;
  }

  // Every `ms`: the inbound video's size and counters (`--sample-ms`), to
  // follow a session over time (profile switches, loss and recovery).
  function sampleStats(pc, t0, ms) {
    const s = { samples: [], timer: null, busy: false };
    s.timer = setInterval(async () => {
      if (s.busy) return;
      s.busy = true;
      try {
        const st = await inboundStats(pc);
        const i = st.inbound ?? {};
        s.samples.push({
          t_ms: Math.round(performance.now() - t0),
          wall_ms: Date.now(),
          frame_width: i.frame_width ?? null,
          frame_height: i.frame_height ?? null,
          frames_decoded: i.frames_decoded ?? null,
          frames_per_second: i.frames_per_second ?? null,
          freeze_count: i.freeze_count ?? null,
          packets_lost: i.packets_lost ?? null,
          packets_received: i.packets_received ?? null,
          nack_count: i.nack_count ?? null,
          pli_count: i.pli_count ?? null,
          connection_state: pc.connectionState,
        });
      } catch (e) {
        // A closed pc: the last sample stands.
      } finally {
        s.busy = false;
      }
    }, ms);
    s.stop = () => clearInterval(s.timer);
    return s;
  }

  // Lip sync (--av-sync), both media on the page's clock (performance.now()):
  // - video: every frame `video` presents (requestVideoFrameCallback) is
  //   drawn and its time code read, the capture time W_v (wall clock);
  //   its presentation P_v is `presentationTime` (handed to the
  //   compositor: the time timecode.js measures latency with) and, reported
  //   beside, `expectedDisplayTime` (the compositor's guess of when it is
  //   on screen: 5 to 40 ms later in headless Chromium, varying by run);
  // - audio: the received track goes into an AudioContext
  //   (createMediaStreamSource) and an AudioWorklet that finds each beep
  //   onset to the sample (loud after ONSET.quietS of quiet); its context
  //   time goes onto the page's clock through getOutputTimestamp(), P_a;
  //   the tone starts a beep at every whole second of the wall clock: W_a.
  // Offset per beep = (P_a - W_a) - (P_v - W_v), the video term being the
  // median over the frames captured within 1 s of that beep: > 0 when the
  // sound comes after its picture.
  //
  // getOutputTimestamp() pairs `performanceTime` with `contextTime`, the
  // sample the output device plays then: it already lags `currentTime`
  // (what the graph renders) by baseLatency + outputLatency (reported per
  // beep as `render_ahead_ms`), so outputLatency is not added again.
  const ONSETS_WORKLET = `
    class Onsets extends AudioWorkletProcessor {
      constructor(o) {
        super();
        const p = o.processorOptions;
        this.loud = p.loud;
        this.quiet = p.quiet;
        this.need = Math.round(p.quietS * sampleRate);
        this.run = 0;
        this.armed = false;
        this.peak = 0;
        this.port.onmessage = () => this.port.postMessage({ type: 'end', peak: this.peak });
      }
      process(inputs) {
        const chans = inputs[0];
        if (chans && chans.length) {
          for (let i = 0; i < chans[0].length; i++) {
            let x = 0;
            for (const c of chans) x = Math.max(x, Math.abs(c[i]));
            if (x > this.peak) this.peak = x;
            // Armed by a long enough quiet; the beep's first rise passes
            // between QUIET and LOUD without disarming it.
            if (this.run >= this.need) this.armed = true;
            if (this.armed && x >= this.loud) {
              this.port.postMessage({ type: 'onset', frame: currentFrame + i });
              this.armed = false;
            }
            this.run = x < this.quiet ? this.run + 1 : 0;
          }
        }
        return true;
      }
    }
    registerProcessor('framebus-onsets', Onsets);`;
  // The tone's beep peaks at 0.5 (-6 dBFS) and decodes from Opus rising
  // within a sample or two: its onset is the first sample above LOUD after
  // QUIET_S under QUIET (Opus's faint pre-echo stays under LOUD).
  const ONSET = { loud: 0.1, quiet: 0.02, quietS: 0.3 };

  function followAvSync(video, pc) {
    const s = { frames: 0, refused: 0, samples: [], onsets: [], streams: [], ctx: null, node: null, error: null, stopped: false };
    const decode = makeDecoder();
    const onFrame = (now, md) => {
      if (s.stopped) return;
      s.frames++;
      const code = decode(video, md.width, md.height);
      const w = code === null ? null : Number(code.us) / 1000;
      // Same machine: a code a minute off the page's clock is no code.
      if (w === null || Math.abs(performance.timeOrigin + md.presentationTime - w) > 60000) s.refused++;
      else s.samples.push({ w, p: md.presentationTime, e: md.expectedDisplayTime });
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);

    // The received audio track (from ontrack; the <audio> element playing
    // it stays: Chromium feeds WebAudio from a remote track only while a
    // media element plays it).
    s.audio = async (track) => {
      try {
        const ctx = new AudioContext({ latencyHint: 'interactive' });
        s.ctx = ctx;
        const url = URL.createObjectURL(new Blob([ONSETS_WORKLET], { type: 'text/javascript' }));
        await ctx.audioWorklet.addModule(url);
        URL.revokeObjectURL(url);
        const node = new AudioWorkletNode(ctx, 'framebus-onsets', { processorOptions: ONSET });
        node.port.onmessage = (m) => {
          if (m.data.type !== 'onset') return;
          // The context clock runs at the device's rate, so the output
          // timestamp read now maps the onset of a few ms ago as well.
          const ts = ctx.getOutputTimestamp();
          const t = m.data.frame / ctx.sampleRate;
          s.onsets.push({
            p: ts.performanceTime + (t - ts.contextTime) * 1000,
            context_s: t,
            render_ahead_ms: (ctx.currentTime - ts.contextTime) * 1000,
            valid: ts.performanceTime > 0,
          });
        };
        s.node = node;
        ctx.createMediaStreamSource(new MediaStream([track])).connect(node);
        // Pulled by the destination (its output is silence).
        node.connect(ctx.destination);
        await ctx.resume();
      } catch (e) {
        s.error = String(e);
      }
    };

    const median = (xs) => {
      const m = summary(xs);
      return m === null ? null : m.p50;
    };
    const r3 = (x) => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);

    // What the receiver did to the audio (the stats, once at the end): its
    // jitter buffer, the samples NetEQ cut or stretched, the audio
    // device's mean playout delay, and whether RTCP sender reports came
    // (without them libwebrtc cannot put a track on the sender's clock).
    async function receiverStats() {
      const all = [...(await pc.getStats()).values()];
      const a = all.find((x) => x.type === 'inbound-rtp' && x.kind === 'audio') ?? {};
      const rate = 48;
      const mp = all.find((x) => x.type === 'media-playout');
      const reports = (kind) => {
        const r = all.find((x) => x.type === 'remote-outbound-rtp' && x.kind === kind);
        return r ? r.reportsSent : 0;
      };
      return {
        jitter_buffer_ms: a.jitterBufferEmittedCount ? r3((a.jitterBufferDelay / a.jitterBufferEmittedCount) * 1000) : null,
        jitter_buffer_target_ms: a.jitterBufferEmittedCount
          ? r3((a.jitterBufferTargetDelay / a.jitterBufferEmittedCount) * 1000)
          : null,
        accelerated_ms: r3((a.removedSamplesForAcceleration ?? 0) / rate),
        decelerated_ms: r3((a.insertedSamplesForDeceleration ?? 0) / rate),
        device_playout_ms: mp && mp.totalSamplesCount ? r3((mp.totalPlayoutDelay / mp.totalSamplesCount) * 1000) : null,
        sender_reports: { audio: reports('audio'), video: reports('video') },
      };
    }

    s.report = async () => {
      s.stopped = true;
      const receiver = await receiverStats().catch((e) => ({ error: String(e) }));
      let end = null;
      if (s.node) {
        end = await new Promise((resolve) => {
          s.node.port.onmessage = (m) => {
            if (m.data.type === 'end') resolve(m.data);
          };
          s.node.port.postMessage('end');
          setTimeout(() => resolve(null), 1000);
        });
      }
      const ctx = s.ctx;
      const audio = ctx
        ? {
            state: ctx.state,
            sample_rate: ctx.sampleRate,
            base_latency_ms: r3(ctx.baseLatency * 1000),
            output_latency_ms: r3(ctx.outputLatency * 1000),
            peak: end ? r3(end.peak) : null,
          }
        : null;
      if (ctx) await ctx.close().catch(() => {});
      // P - W of the picture, ms: presented, and expected on screen.
      const wall = (t) => performance.timeOrigin + t;
      const presented = (fs) => median(fs.map((f) => wall(f.p) - f.w));
      const display = (fs) => median(fs.map((f) => wall(f.e) - f.w));
      const video = presented(s.samples);
      const beeps = [];
      for (const o of s.onsets) {
        if (!o.valid || video === null) continue;
        const a = wall(o.p);
        // The whole second this beep started at: the nearest one once the
        // picture's latency is taken off (right while |offset| < 500 ms).
        const W = Math.round((a - video) / 1000) * 1000;
        const near = s.samples.filter((f) => Math.abs(f.w - W) <= 1000);
        const fs = near.length >= 10 ? near : s.samples;
        const vp = presented(fs);
        const vd = display(fs);
        beeps.push({
          second: W / 1000,
          context_s: r3(o.context_s),
          audio_ms: r3(a - W),
          video_ms: r3(vp),
          video_display_ms: r3(vd),
          offset_ms: r3(a - W - vp),
          offset_display_ms: r3(a - W - vd),
          frames: near.length,
          render_ahead_ms: r3(o.render_ahead_ms),
        });
      }
      return {
        frames: s.frames,
        decoded: s.samples.length,
        refused: s.refused,
        video_ms: r3(video),
        video_display_ms: r3(display(s.samples)),
        display_after_presented_ms: summary(s.samples.map((f) => f.e - f.p)),
        onsets: s.onsets.length,
        audio,
        receiver,
        streams: s.streams,
        error: s.error,
        beeps,
        offsets_ms: beeps.map((b) => b.offset_ms),
      };
    };
    return s;
  }

  // One receiving peer: offer recvonly video, hand the offer to `signal`
  // (the WHEP POST, or the self-test's local answerer), apply the answer.
  // `prefer` (a mimeType) puts that codec first in the offer: libwebrtc's
  // answerer sends with the offerer's first common codec.
  async function startViewer(index, signal, timecode, prefer, opts = {}) {
    const v = {
      index,
      post_status: null,
      post_error: null,
      retry_after: null,
      content_type: null,
      location: null,
      answer_ms: null,
      answer_error: null,
      play_error: null,
    };
    const pc = new RTCPeerConnection(opts.rtcConfig ?? {});
    const tr = pc.addTransceiver('video', { direction: 'recvonly' });
    // After the video, so the video keeps the first mid.
    if (opts.audio) {
      pc.addTransceiver('audio', { direction: 'recvonly' });
      v.track_kinds = [];
      v.audio_play_error = null;
    }
    if (prefer) {
      const caps = RTCRtpReceiver.getCapabilities('video').codecs;
      if (!caps.some((c) => c.mimeType === prefer)) throw new Error(`${prefer} is not in this Chromium`);
      tr.setCodecPreferences([...caps.filter((c) => c.mimeType === prefer), ...caps.filter((c) => c.mimeType !== prefer)]);
    }
    if (timecode) askAbsCaptureTime(tr, 'recvonly');
    const video = newVideo();
    const sync = opts.avSync ? followAvSync(video, pc) : null;
    pc.ontrack = (e) => {
      if (sync) sync.streams.push(`${e.track.kind}:${e.streams.map((m) => m.id).join(',')}`);
      if (opts.audio) v.track_kinds.push(e.track.kind);
      if (e.track.kind === 'audio') {
        // Chromium decodes remote audio only while something plays it:
        // an <audio> element of its own (the fake output device of a
        // headless host pulls it in real time).
        // (`priv` is set by then: tracks come with the answer.)
        const el = document.createElement('audio');
        el.autoplay = true;
        document.body.append(el);
        el.srcObject = new MediaStream([e.track]);
        el.play().catch((err) => {
          v.audio_play_error = String(err);
        });
        priv.audio = el;
        if (sync) sync.audio(e.track);
        return;
      }
      video.srcObject = e.streams[0] ?? new MediaStream([e.track]);
      video.play().catch((err) => {
        v.play_error = String(err);
      });
    };
    await pc.setLocalDescription(await pc.createOffer());
    // Relay candidates take a TURN allocation: give them longer.
    await iceGathered(pc, opts.rtcConfig && opts.rtcConfig.iceServers ? 5000 : 1000);
    const t0 = performance.now();
    const watch = watchVideo(video, t0, timecode);
    const priv = { pc, video, watch, sampler: null, audio: null, level: null, sync };
    if (opts.sampleMs) priv.sampler = sampleStats(pc, t0, opts.sampleMs);
    if (opts.audio) priv.level = followAudioLevel(pc);
    let res;
    try {
      res = await signal(pc.localDescription.sdp);
    } catch (e) {
      v.post_error = String(e);
      return { v, priv };
    }
    v.answer_ms = performance.now() - t0;
    v.post_status = res.status;
    v.content_type = res.contentType;
    if (res.link !== undefined) v.link = res.link;
    if (res.candidates !== undefined) v.answer_candidates = res.candidates;
    if (res.status < 200 || res.status > 299) {
      v.post_error = res.body.slice(0, 1000);
      v.retry_after = res.retryAfter;
      return { v, priv };
    }
    v.location = res.location;
    if (opts.audio) v.answer_audio = answerAudio(res.body);
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: res.body });
    } catch (e) {
      v.answer_error = String(e);
    }
    return { v, priv };
  }

  // Waits `seconds`, then fills each viewer's report from its stats and
  // closes it (`hangup` ends the session on the other side).
  async function measure(started, seconds, raw, hangup) {
    // `window.__fbStop()` (the driver's --stop-file) ends the wait early.
    await new Promise((resolve) => {
      const t = setTimeout(resolve, seconds * 1000);
      window.__fbStop = () => {
        clearTimeout(t);
        resolve();
      };
      if (window.__fbStopRequested) window.__fbStop();
    });
    const viewers = [];
    let timecode = null;
    let avSync = null;
    for (const { v, priv } of started) {
      Object.assign(v, await inboundStats(priv.pc));
      if (priv.level) {
        priv.level.stop();
        v.audio = await audioStats(priv.pc);
        if (v.audio) {
          v.audio.audio_level_max = priv.level.max;
          v.audio.audio_level_samples = priv.level.samples;
        }
      }
      v.connection_state = priv.pc.connectionState;
      v.ice_state = priv.pc.iceConnectionState;
      v.first_frame_ms = priv.watch.first_frame_ms;
      v.frames_presented = priv.watch.frames;
      priv.watch.stop();
      if (priv.sampler) {
        priv.sampler.stop();
        v.samples = priv.sampler.samples;
      }
      if (v.index === 0) timecode = priv.watch.timecodeReport(raw);
      if (priv.sync) avSync = await priv.sync.report();
      v.delete_status = await hangup(v);
      priv.pc.close();
      priv.video.srcObject = null;
      priv.video.remove();
      if (priv.audio) {
        priv.audio.srcObject = null;
        priv.audio.remove();
      }
      viewers.push(v);
    }
    return avSync ? { viewers, timecode, av_sync: avSync } : { viewers, timecode };
  }

  async function whep({ url, viewers, seconds, headers, timecode, raw, sampleMs, rtcConfig, audio, avSync }) {
    const signal = async (sdp) => {
      const r = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', ...headers },
        body: sdp,
      });
      const loc = r.headers.get('Location');
      const body = await r.text();
      return {
        status: r.status,
        body,
        // The server's candidates (`candidate:...`) as its answer lists them.
        candidates: body
          .split(/\r?\n/)
          .filter((l) => l.startsWith('a=candidate:'))
          .map((l) => l.slice(2)),
        contentType: r.headers.get('Content-Type'),
        retryAfter: r.headers.get('Retry-After'),
        location: loc === null ? null : new URL(loc, url).href,
        // Every Link header, comma-joined (same origin: readable).
        link: r.headers.get('Link'),
      };
    };
    const hangup = async (v) => {
      if (!v.location) return null;
      try {
        return (await fetch(v.location, { method: 'DELETE', headers })).status;
      } catch (e) {
        v.delete_error = String(e);
        return null;
      }
    };
    const started = await Promise.all(
      Array.from({ length: viewers }, (_, i) =>
        startViewer(i, signal, timecode && i === 0, null, { rtcConfig, sampleMs, audio, avSync: avSync && i === 0 }),
      ),
    );
    return measure(started, seconds, raw, hangup);
  }

  // Loopback proof of the whole receive path without a server: a canvas
  // painted with the time code (docs/timecode.md) and the current time is
  // sent by a second RTCPeerConnection in this page, which answers the
  // viewers' offers like a WHEP server would.
  async function selfTest({ viewers, seconds, raw, codec }) {
    const prefer = { h264: 'video/H264', vp8: 'video/VP8', any: null }[codec];
    const W = 640;
    const H = 480;
    const canvas = document.createElement('canvas');
    canvas.width = W;
    canvas.height = H;
    const ctx = canvas.getContext('2d');
    let counter = 0;
    const paint = () => {
      // Something moving below the bands, so the encoder has work to do.
      ctx.fillStyle = `hsl(${(counter * 3) % 360} 60% 50%)`;
      ctx.fillRect(0, 0, W, H);
      ctx.fillStyle = '#fff';
      ctx.fillRect((counter * 4) % W, H / 2, 40, 40);
      const bh = Math.floor(H / BANDS);
      const cells = (band, n, value) => {
        for (let i = 0; i < n; i++) {
          const x0 = Math.floor((i * W) / n);
          const x1 = Math.floor(((i + 1) * W) / n);
          const bit = (value >> BigInt(n - 1 - i)) & 1n;
          ctx.fillStyle = bit ? '#fff' : '#000';
          ctx.fillRect(x0, band * bh, x1 - x0, bh);
        }
      };
      const us = BigInt(Math.floor((performance.timeOrigin + performance.now()) * 1000));
      cells(0, TIME_CELLS, us);
      cells(1, COUNTER_CELLS, BigInt(counter >>> 0));
      counter++;
    };
    paint();
    const painter = setInterval(paint, 1000 / 30);
    const stream = canvas.captureStream();
    const [track] = stream.getVideoTracks();
    // 'detail' makes the encoder keep the resolution under CPU load (it
    // drops frames instead), so the receiver's size is the canvas's.
    track.contentHint = 'detail';
    const senders = [];
    const signal = async (offer) => {
      const pc = new RTCPeerConnection();
      senders.push(pc);
      await pc.setRemoteDescription({ type: 'offer', sdp: offer });
      const [tr] = pc.getTransceivers();
      tr.direction = 'sendonly';
      askAbsCaptureTime(tr, 'sendonly');
      await tr.sender.replaceTrack(track);
      await pc.setLocalDescription(await pc.createAnswer());
      await iceGathered(pc, 1000);
      return { status: 201, body: pc.localDescription.sdp, contentType: 'application/sdp', retryAfter: null, location: null };
    };
    const started = await Promise.all(
      Array.from({ length: viewers }, (_, i) => startViewer(i, signal, i === 0, prefer)),
    );
    const out = await measure(started, seconds, raw, async () => null);
    // What the sending side used: the asked codec, or libwebrtc's fallback.
    const st = senders.length ? [...(await senders[0].getStats()).values()] : [];
    const sentRtp = st.find((x) => x.type === 'outbound-rtp');
    const sentCodec = sentRtp && st.find((x) => x.id === sentRtp.codecId);
    out.sender = { codec: sentCodec ? sentCodec.mimeType : null };
    clearInterval(painter);
    track.stop();
    for (const pc of senders) pc.close();
    out.frames_painted = counter;
    return out;
  }

  // Page mode: the page's own player (window.framebusPlayer). Its video
  // element appears some time after load: poll for it to follow its frames.
  function followPlayer(t0, timecode) {
    const f = { watch: null };
    const poll = setInterval(() => {
      const p = window.framebusPlayer;
      if (p && p.video && !f.watch) {
        f.watch = watchVideo(p.video, t0, timecode);
        clearInterval(poll);
      }
    }, 20);
    f.stopPolling = () => clearInterval(poll);
    window.__fbFollow = f;
  }

  async function playerReport(raw) {
    const f = window.__fbFollow;
    f.stopPolling();
    const p = window.framebusPlayer;
    // Any page: how many of its <img> show a picture (MJPEG streams).
    const imgs = [...document.images];
    const images = { total: imgs.length, loaded: imgs.filter((i) => i.naturalWidth > 0).length };
    if (!p) return { has_player: false, mode: null, images };
    const r = { has_player: true, mode: p.mode ?? null, images };
    if (p.pc) {
      Object.assign(r, await inboundStats(p.pc));
      r.connection_state = p.pc.connectionState;
    }
    if (f.watch) {
      r.first_frame_ms = f.watch.first_frame_ms;
      r.frames_presented = f.watch.frames;
      r.timecode = f.watch.timecodeReport(raw);
      f.watch.stop();
    }
    if (p.img) {
      r.img_loaded = p.img.naturalWidth > 0;
      r.img_width = p.img.naturalWidth;
      r.img_height = p.img.naturalHeight;
    }
    return r;
  }

  window.__fb = { whep, selfTest, followPlayer, playerReport };
}

// --stop-file: once PATH exists, the measurement ends (before --seconds).
function watchStopFile(page, path) {
  let sent = false;
  return setInterval(() => {
    if (sent || !existsSync(path)) return;
    sent = true;
    log(`${path} exists: stopping`);
    page.evaluate(() => {
      window.__fbStopRequested = true;
      if (window.__fbStop) window.__fbStop();
    }).catch(() => {
      sent = false;
    });
  }, 200);
}

async function run(page, o) {
  if (o.mode === 'whep') {
    // Same origin as the endpoint, so fetch() needs no CORS.
    const health = new URL(o.url).origin + '/healthz';
    const resp = await page.goto(health, { timeout: 15000 });
    log(`opened ${health}: ${resp ? resp.status() : 'no response'}`);
    await page.addScriptTag({ path: TIMECODE_JS });
    await page.addScriptTag({ path: RTCSTATS_JS });
    await page.evaluate(installHarness);
    const stopper = o.stopFile ? watchStopFile(page, o.stopFile) : null;
    try {
      return await page.evaluate((a) => window.__fb.whep(a), {
        url: o.url,
        viewers: o.viewers,
        seconds: o.seconds,
        headers: o.headers,
        timecode: o.timecode,
        raw: o.raw,
        sampleMs: o.sampleMs,
        rtcConfig: o.rtcConfig,
        audio: o.audio,
        avSync: o.avSync,
      });
    } finally {
      if (stopper) clearInterval(stopper);
    }
  }
  if (o.mode === 'self_test') {
    // Both peers are in this page and signal their host candidates, which
    // Chromium enumerates (loopback included, with the flag) only for a page
    // allowed to capture; otherwise a host with nothing but `lo` gathers
    // none. A WHEP viewer needs no such grant: the ICE-lite server answers
    // the checks Chromium sends from its wildcard-bound socket.
    await page.context().grantPermissions(['camera', 'microphone']);
    await page.setContent('<!doctype html><title>framebus self-test</title><body></body>');
    await page.addScriptTag({ path: TIMECODE_JS });
    await page.addScriptTag({ path: RTCSTATS_JS });
    await page.evaluate(installHarness);
    return page.evaluate((a) => window.__fb.selfTest(a), {
      viewers: o.viewers,
      seconds: o.seconds,
      raw: o.raw,
      codec: o.codec,
    });
  }
  // Page mode: the harness is installed before the page's own scripts run
  // so the player's video is followed from its first frame.
  await page.addInitScript({ path: TIMECODE_JS });
  await page.addInitScript({ path: RTCSTATS_JS });
  await page.addInitScript(installHarness);
  await page.addInitScript(
    ({ timecode }) => window.__fb.followPlayer(performance.now(), timecode),
    { timecode: o.timecode },
  );
  const resp = await page.goto(o.url, { timeout: 15000 });
  const status = resp ? resp.status() : null;
  await page.waitForTimeout(o.seconds * 1000);
  const player = await page.evaluate((raw) => window.__fb.playerReport(raw), o.raw);
  return { http_status: status, title: await page.title(), player };
}

const o = parseOptions(process.argv.slice(2));
const report = {
  mode: o.mode,
  ok: false,
  url: o.url,
  seconds: o.seconds,
  browser: null,
  console_errors: [],
  page_errors: [],
};
runDriver({ o, args: CHROMIUM_ARGS, report, log }, async (browser) => {
  const page = await browser.newPage();
  watchPage(page, report);
  return run(page, o);
});

#!/usr/bin/env node
// Load side of benches/hls/bench.py: N lightweight LL-HLS players in one
// node process, each doing what hls.js does in low-latency mode, minus the
// decoding (100 hls.js players do not fit on 2 cores):
//
//   1. load the multivariant playlist (each player gets its own `s=` token)
//      and pick one variant (--variant NAME: the one whose URI starts with
//      NAME/; default the first, the highest);
//   2. load the media playlist, then the init segment and every part from
//      the last independent part on;
//   3. loop: a blocking reload `VARIANT?s=TOKEN&_HLS_msn=M&_HLS_part=P` for
//      the part after the newest listed one (hls.js's rule: P+1 in the
//      segment in progress, part 0 of the next one after a complete
//      segment), and, alongside, each newly listed part fetched once, in
//      order (URIs resolved against the playlist URL, whose query is not
//      carried over). An error waits 500 ms and reloads the playlist plainly.
//
// Each player has its own keep-alive agent (6 sockets, as a browser's pool
// per host), so a cache in front sees N clients. Standard library only
// (node:http, no npm package).
//
//   node benches/hls/players.mjs --url http://HOST:PORT/BUS/index.m3u8 \
//        [--players N] [--variant NAME] [--ramp-ms MS] [--max-seconds S]
//
// Protocol: JSON lines on stdout, logs on stderr.
//   {"event":"ready", players, playing, t}  once every player has loaded a
//     part after its start (or 20 s passed);
//   {"event":"mark", t, ...window}  after each "mark" line on stdin: what
//     happened since the previous mark (or the start): requests, bytes and
//     errors by kind, per-request time by kind (request to last byte, ms;
//     a blocking reload's includes the time the origin held it), the age
//     of each part on arrival (arrival − the part's end on the capture
//     clock: its segment's PROGRAM-DATE-TIME plus the durations up to and
//     including it), parts per player;
//   {"event":"end", ...window}  after "stop" on stdin (or --max-seconds, a
//     signal, stdin closed); then the process exits.

import http from 'node:http';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const log = (...a) => console.error('[players.mjs]', ...a);
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    url: { type: 'string' },
    players: { type: 'string', default: '1' },
    variant: { type: 'string' },
    'ramp-ms': { type: 'string', default: '2000' },
    'max-seconds': { type: 'string', default: '600' },
  },
});
const o = {
  url: values.url,
  players: Number(values.players),
  variant: values.variant ?? null,
  rampMs: Number(values['ramp-ms']),
  maxSeconds: Number(values['max-seconds']),
};
if (!o.url || !(Number.isInteger(o.players) && o.players >= 1) || !(o.rampMs >= 0) || !(o.maxSeconds > 0)) {
  console.error('usage: node players.mjs --url MULTIVARIANT_URL [--players N] [--variant NAME] [--ramp-ms MS] [--max-seconds S]');
  process.exit(64);
}

const KINDS = ['multivariant', 'playlist', 'blocking', 'init', 'part'];
// Per-window counters: reset at every mark.
function newWindow() {
  return {
    t0: Date.now(),
    requests: Object.fromEntries(KINDS.map((k) => [k, 0])),
    bytes: Object.fromEntries(KINDS.map((k) => [k, 0])),
    errors: {}, // "kind status" -> count
    ms: Object.fromEntries(KINDS.map((k) => [k, []])),
    part_age_ms: [],
    parts_by_player: new Array(o.players).fill(0),
  };
}
let win = newWindow();
let stopping = false;

function summary(xs) {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
  const r1 = (x) => Math.round(x * 10) / 10;
  return { n: s.length, p50: r1(at(0.5)), p90: r1(at(0.9)), p99: r1(at(0.99)), max: r1(s[s.length - 1]) };
}

function report(w) {
  const secs = (Date.now() - w.t0) / 1000;
  const parts = w.parts_by_player;
  return {
    t: Date.now(),
    seconds: secs,
    requests: w.requests,
    bytes: w.bytes,
    errors: w.errors,
    ms: Object.fromEntries(KINDS.map((k) => [k, summary(w.ms[k])])),
    part_age_ms: summary(w.part_age_ms),
    parts_per_s: {
      min: Math.min(...parts) / secs,
      mean: parts.reduce((a, b) => a + b, 0) / parts.length / secs,
      players_with_parts: parts.filter((n) => n > 0).length,
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class HttpError extends Error {
  constructor(status, url) {
    super(`HTTP ${status} for ${url}`);
    this.status = status;
  }
}

// GET url with agent: {status, body (Buffer), ms}. Counts the request
// under `kind` in the current window.
function get(agent, url, kind) {
  const t0 = performance.now();
  win.requests[kind]++;
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: 30000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const ms = performance.now() - t0;
        if (res.statusCode !== 200) {
          const key = `${kind} ${res.statusCode}`;
          win.errors[key] = (win.errors[key] ?? 0) + 1;
          reject(new HttpError(res.statusCode, url));
          return;
        }
        win.bytes[kind] += body.length;
        win.ms[kind].push(ms);
        resolve({ body, ms });
      });
      res.on('error', fail);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', fail);
    function fail(e) {
      const key = `${kind} ${e.code ?? e.message}`;
      win.errors[key] = (win.errors[key] ?? 0) + 1;
      reject(e);
    }
  });
}

// A media playlist: its segments in order, the last one in progress (the
// parts after the last EXTINF; maybe none).
function parsePlaylist(text) {
  const lines = text.split('\n').map((l) => l.trim());
  let msn = 0;
  let map = null;
  const segs = [];
  let cur = { parts: [], pdt: null, duration: null, uri: null };
  let extinf = null;
  for (const l of lines) {
    if (l.startsWith('#EXT-X-MEDIA-SEQUENCE:')) msn = Number(l.slice(22));
    else if (l.startsWith('#EXT-X-MAP:')) map = attr(l, 'URI');
    else if (l.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) cur.pdt = Date.parse(l.slice(25));
    else if (l.startsWith('#EXT-X-PART:'))
      cur.parts.push({ uri: attr(l, 'URI'), duration: Number(attr(l, 'DURATION')), independent: attr(l, 'INDEPENDENT') === 'YES' });
    else if (l.startsWith('#EXTINF:')) extinf = parseFloat(l.slice(8));
    else if (l && !l.startsWith('#') && extinf !== null) {
      cur.duration = extinf;
      cur.uri = l;
      segs.push(cur);
      cur = { parts: [], pdt: null, duration: null, uri: null };
      extinf = null;
    }
  }
  segs.push(cur);
  // Sequence numbers, and capture times where PROGRAM-DATE-TIME is not
  // written (the previous segment's plus its duration).
  segs.forEach((s, i) => {
    s.msn = msn + i;
    if (s.pdt === null && i > 0 && segs[i - 1].pdt !== null && segs[i - 1].duration !== null)
      s.pdt = segs[i - 1].pdt + segs[i - 1].duration * 1000;
    let t = s.pdt;
    s.parts.forEach((p, j) => {
      p.msn = s.msn;
      p.index = j;
      t = t === null ? null : t + p.duration * 1000;
      p.end = t;
    });
  });
  return { map, segs };
}

function attr(line, name) {
  const m = line.match(new RegExp(`[:,]${name}=("([^"]*)"|[^,]*)`));
  return m ? (m[2] ?? m[1]) : null;
}

// The blocking reload after `pl`: the part after the newest listed one.
function nextDirective(pl) {
  const last = pl.segs[pl.segs.length - 1];
  return { msn: last.msn, part: last.parts.length };
}

const after = (a, b) => a.msn > b.msn || (a.msn === b.msn && a.index > b.index);

class Player {
  constructor(i) {
    this.i = i;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 6 });
    this.got = false;
    this.last = null; // newest part queued {msn, index}
    this.queue = [];
    this.fetching = false;
  }

  async run() {
    while (!stopping) {
      try {
        await this.session();
      } catch (e) {
        if (stopping) return;
        await sleep(500);
      }
    }
  }

  async session() {
    if (!this.variant) {
      const { body } = await get(this.agent, o.url, 'multivariant');
      const uris = body.toString().split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
      const pick = o.variant === null ? uris[0] : uris.find((u) => u.startsWith(`${o.variant}/`));
      if (!pick) throw new Error(`no variant ${o.variant} in ${o.url}`);
      this.variant = new URL(pick, o.url);
    }
    let pl = await this.playlist(this.variant, 'playlist');
    if (this.last === null) {
      // Start at the last independent part (what a decoder needs), with
      // the init segment first.
      if (pl.map) await get(this.agent, new URL(pl.map, this.variant), 'init');
      const parts = pl.segs.flatMap((s) => s.parts);
      let k = parts.length - 1;
      while (k > 0 && !parts[k].independent) k--;
      this.enqueue(parts.slice(Math.max(0, k)));
    } else {
      this.enqueue(pl.segs.flatMap((s) => s.parts));
    }
    while (!stopping) {
      const d = nextDirective(pl);
      const u = new URL(this.variant);
      u.searchParams.set('_HLS_msn', String(d.msn));
      u.searchParams.set('_HLS_part', String(d.part));
      pl = await this.playlist(u, 'blocking');
      this.enqueue(pl.segs.flatMap((s) => s.parts));
    }
  }

  async playlist(url, kind) {
    const { body } = await get(this.agent, url, kind);
    const pl = parsePlaylist(body.toString());
    pl.base = url;
    for (const s of pl.segs) for (const p of s.parts) p.url = new URL(p.uri, url);
    return pl;
  }

  enqueue(parts) {
    for (const p of parts) {
      if (this.last !== null && !after(p, this.last)) continue;
      this.queue.push(p);
      this.last = { msn: p.msn, index: p.index };
    }
    if (!this.fetching) this.drain();
  }

  async drain() {
    this.fetching = true;
    while (this.queue.length && !stopping) {
      const p = this.queue.shift();
      try {
        await get(this.agent, p.url, 'part');
        if (p.end !== null) win.part_age_ms.push(Date.now() - p.end);
        win.parts_by_player[this.i]++;
        this.got = true;
      } catch {
        // Counted; a part gone is not fetched again (hls.js would move on).
      }
    }
    this.fetching = false;
  }
}

const players = Array.from({ length: o.players }, (_, i) => new Player(i));
const t0 = Date.now();
players.forEach((p, i) => setTimeout(() => p.run(), o.players > 1 ? (o.rampMs * i) / (o.players - 1) : 0));

let readySent = false;
const readyPoll = setInterval(() => {
  const playing = players.filter((p) => p.got).length;
  if (playing === o.players || Date.now() - t0 > 20000 + o.rampMs) {
    clearInterval(readyPoll);
    readySent = true;
    emit({ event: 'ready', players: o.players, playing, t: Date.now() });
  }
}, 100);

function finish(why) {
  if (stopping) return;
  stopping = true;
  clearInterval(readyPoll);
  if (!readySent) emit({ event: 'ready', players: o.players, playing: players.filter((p) => p.got).length, t: Date.now() });
  emit({ event: 'end', why, ...report(win) });
  for (const p of players) p.agent.destroy();
  // Pending requests end with their sockets; do not wait for them.
  setTimeout(() => process.exit(0), 50);
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = line.trim();
  if (cmd === 'mark') {
    const r = report(win);
    win = newWindow();
    emit({ event: 'mark', ...r });
  } else if (cmd === 'stop') finish('stop');
});
rl.on('close', () => finish('stdin closed'));
for (const sig of ['SIGTERM', 'SIGINT']) process.once(sig, () => finish(sig));
setTimeout(() => finish('max-seconds'), o.maxSeconds * 1000).unref();
log(`${o.players} player(s) of ${o.url}${o.variant ? ` (variant ${o.variant})` : ''}`);

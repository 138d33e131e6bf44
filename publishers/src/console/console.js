"use strict";
// The framebus console (docs/console.md): one page for every camera.
// Everything comes from this server: /api/v1/console (status, once a
// second; the microphones' levels from /api/v1/console/levels ten times a
// second while a camera has one), MJPEG tiles, WHEP, LL-HLS (hls.js when the server serves it),
// the recorder's API forwarded under /api/v1/recordings. No framework, no
// CDN. window.framebusConsole is what the tests (and curious people) read.

const POLL_MS = 1000;
const RECORDINGS_POLL_MS = 2000;
/// WebRTC must show a frame within this, else the player falls back.
const WEBRTC_START_MS = 6000;
/// LL-HLS must play within this (a segment is up to a GOP: 2 s here).
const HLS_START_MS = 12000;
/// MJPEG must show a frame within this.
const MJPEG_START_MS = 8000;
/// The tiles' time code is read this often (a canvas copy of two bands).
const TILE_LATENCY_MS = 1000;
/// The player's time code is read at most this often.
const PLAYER_LATENCY_MS = 250;
/// MJPEG profiles for tiles, smallest first.
const TILE_PROFILES = ["low", "medium", "native"];
/// The microphones' levels are polled this often: each is the level of
/// the last 20 ms chunk, so a once-a-second look would miss most sounds.
const LEVEL_POLL_MS = 100;
/// The level meter's scale, dBFS (the server's floor for silence is -120).
const METER_MIN_DB = -60;
/// The peak-hold tick falls this fast, dB per second.
const HOLD_FALL_DB_S = 20;
const NEXT = { webrtc: "hls", hls: "mjpeg" };

const C = window.framebusConsole = {
  ready: false, doc: null, tiles: {}, player: null, recordings: [], errors: [],
  polls: 0, levelPolls: 0, open: null, close: null, record: null,
};
const $ = id => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k));
  return e;
}

// JSON from this server; a non-2xx answer throws its `error` text.
async function api(path, opts) {
  const res = await fetch(path, opts);
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!res.ok) throw new Error((body && body.error) || ("HTTP " + res.status + " " + text.slice(0, 200)));
  return body;
}

const fmtUp = s => s == null ? "" : s < 90 ? s.toFixed(0) + " s" : s < 5400 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h";
const fmtBytes = b => b < 1e6 ? (b / 1e3).toFixed(0) + " kB" : (b / 1e6).toFixed(1) + " MB";
const fmtRate = b => b >= 1e6 ? (b / 1e6).toFixed(1) + " Mbit/s" : (b / 1e3).toFixed(0) + " kbit/s";
const stClass = s => "st-" + String(s || "").split(/[ :]/)[0].replace("no", "nobus").replace("producer", "gone");
const median = xs => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : null; };
function rtspUrl(doc, bus, profile) {
  if (!doc || !doc.outputs.rtsp) return null;
  const u = doc.outputs.rtsp.replace(/^rtsp:\/\/(0\.0\.0\.0|\[::\])(?=[:/])/, "rtsp://" + location.hostname);
  return u.replace(/\/?$/, "/") + bus + "/" + profile;
}
const cameraOf = bus => C.doc && C.doc.cameras.find(c => c.bus === bus);

// ---------------------------------------------------------------- status
async function poll() {
  try {
    const doc = await api("/api/v1/console", { cache: "no-store" });
    C.doc = doc;
    C.polls++;
    render(doc);
    C.ready = true;
  } catch (e) {
    $("health").textContent = "unreachable";
    $("health").className = "badge degraded";
    $("health").title = e.message;
  }
  setTimeout(poll, POLL_MS);
}

function render(doc) {
  const h = $("health");
  h.textContent = doc.health;
  h.className = "badge " + doc.health;
  $("problems").replaceChildren(...doc.problems.map(p => el("li", {}, p)));
  const running = doc.publishers.filter(p => p.state === "running").length;
  $("summary").textContent = doc.cameras.length + " camera" + (doc.cameras.length === 1 ? "" : "s") +
    (doc.supervisor ? " · " + running + "/" + doc.publishers.length + " publishers running · " + doc.supervisor.config : "");
  $("updated").textContent = new Date(doc.updated_unix_ms).toLocaleTimeString();
  renderMosaic(doc);
  renderPublishers(doc);
  renderRecorderForm(doc);
  if (C.player) renderPlayerInfo();
}

// ---------------------------------------------------------------- mosaic
function renderMosaic(doc) {
  const mosaic = $("mosaic");
  const empty = $("mosaic-empty");
  empty.textContent = "No cameras: start a producer (framebus-producer --config …).";
  empty.hidden = doc.cameras.length > 0;
  for (const cam of doc.cameras) {
    let t = C.tiles[cam.bus];
    if (!t) t = C.tiles[cam.bus] = makeTile(cam);
    if (t.el.parentNode !== mosaic) mosaic.append(t.el);
    updateTile(t, cam);
  }
  for (const bus of Object.keys(C.tiles)) {
    if (!doc.cameras.some(c => c.bus === bus)) {
      C.tiles[bus].img.src = "";
      C.tiles[bus].el.remove();
      delete C.tiles[bus];
    }
  }
}

function tileProfile(cam) {
  return TILE_PROFILES.find(p => cam.mjpeg.some(m => m.profile === p)) || (cam.mjpeg[0] || {}).profile || null;
}

// A tile is built once (its buttons stay the same elements, so a click
// never lands between two refreshes); updateTile changes only texts.
function makeTile(cam) {
  const profile = tileProfile(cam);
  const img = el("img", { alt: cam.bus });
  if (profile) img.src = "/" + cam.bus + "/" + profile + ".mjpg";
  // The first picture's latency at once, not at the next tick.
  img.addEventListener("load", () => { const t = C.tiles[cam.bus]; if (t && t.latencyKind === null) decodeTile(t); });
  const lat = el("span", { class: "lat", title: "glass-to-glass latency" }, "…");
  const f = {
    state: el("span", { class: "state" }), src: el("span", { class: "dim" }), fps: el("span", { class: "fps" }),
    drops: el("span", { class: "drops" }), readers: el("span", { class: "readers" }),
    encoders: el("div", { class: "row" }), viewers: el("div", { class: "row viewers" }),
    msg: el("span", { class: "dim msg" }),
  };
  const t = {
    bus: cam.bus, profile, img, lat, f, latencyMs: null, latencyKind: null, codes: 0,
    lastCounter: null, samples: [], recordStream: null,
  };
  f.record = el("button", { type: "button", class: "rec", hidden: true, onclick: () => t.recordStream && quickRecord(t.recordStream, t) }, "record");
  t.el = el("figure", { class: "tile", "data-bus": cam.bus },
    el("div", { class: "pic", title: "open " + cam.bus, onclick: () => openPlayer(cam.bus) },
      img, el("span", { class: "name" }, cam.bus), lat),
    el("figcaption", {},
      el("div", { class: "row" }, f.state, f.src, f.fps, f.drops, f.readers),
      f.encoders, f.viewers,
      el("div", { class: "acts" },
        el("button", { type: "button", class: "play", onclick: () => openPlayer(cam.bus) }, "play"),
        el("button", { type: "button", class: "snapshot", onclick: () => window.open("/" + cam.bus + "/snapshot.jpg?profile=native", "_blank") }, "snapshot"),
        f.record, f.msg)));
  return t;
}

// A tile's MJPEG connection ends when framebus-mjpeg restarts or the bus
// goes away and comes back; the server's count of that stream's viewers
// says whether we are still one (two polls in a row without: reconnect).
function keepTileAlive(t, cam) {
  const m = cam.mjpeg.find(x => x.profile === t.profile);
  const live = cam.state === "live";
  t.orphan = live && m && m.viewers === 0 ? (t.orphan || 0) + 1 : 0;
  if (t.orphan >= 2) {
    t.orphan = 0;
    t.reconnects = (t.reconnects || 0) + 1;
    t.img.src = "";
    t.img.src = "/" + t.bus + "/" + t.profile + ".mjpg";
  }
}

// MJPEG profiles have fixed sizes (`low` is 640x480): the picture is
// shown in the camera's own shape.
function cameraShape(img, cam, maxHeight) {
  if (!cam || !cam.width || !cam.height) return;
  img.style.aspectRatio = cam.width + " / " + cam.height;
  img.style.objectFit = "fill";
  if (maxHeight) img.style.width = "min(100%, calc(" + maxHeight + " * " + (cam.width / cam.height).toFixed(4) + "))";
}

function updateTile(t, cam) {
  if (!t.profile && tileProfile(cam)) {
    t.profile = tileProfile(cam);
    t.img.src = "/" + t.bus + "/" + t.profile + ".mjpg";
  }
  keepTileAlive(t, cam);
  if (cam.width && cam.height) t.el.querySelector(".pic").style.aspectRatio = cam.width + " / " + cam.height;
  const f = t.f;
  f.state.textContent = cam.state;
  f.state.className = stClass(cam.state) + " state";
  f.src.textContent = cam.source + " · " + cam.width + "×" + cam.height + " " + cam.format;
  f.fps.textContent = cam.capture_fps + " fps";
  f.drops.textContent = cam.dropped + " dropped";
  f.readers.textContent = cam.readers + " reader" + (cam.readers === 1 ? "" : "s");
  // Text only (no controls): rebuilt each time.
  const enc = cam.encoders.map(e => el("span", { class: "enc", "data-profile": e.profile },
    e.profile + ": ", el("span", { class: stClass(e.process || (e.encoding ? "running" : "idle")) },
      e.encoding ? "encoding" : (e.process && e.process !== "running" ? e.process : "idle")),
    e.encoding ? " · " + e.fps + " fps · " + fmtRate(e.bitrate) + " · step " + e.step : "",
    " · " + e.readers + " reader" + (e.readers === 1 ? "" : "s")));
  f.encoders.replaceChildren(...(enc.length ? enc : [el("span", { class: "dim" }, "no encoder")]));
  const v = cam.viewers;
  f.viewers.textContent = "viewers: MJPEG " + v.mjpeg + " · WebRTC " + v.webrtc + " · HLS " + v.hls +
    " · RTSP " + (v.rtsp_streams ? v.rtsp_streams + " stream" + (v.rtsp_streams === 1 ? "" : "s") + " read" : "0");
  t.recordStream = cam.encoders.length && C.doc.outputs.recorder ? cam.bus + "/" + cam.encoders[0].profile : null;
  f.record.hidden = !t.recordStream;
  f.msg.textContent = t.msg || "";
  updateAudio(t, cam);
}

// ---------------------------------------------------------------- microphone
// A camera with a microphone gets a row under its picture: the capture's
// state, a level meter (RMS bar, peak bar, a peak-hold tick; -60 to 0
// dBFS), xruns and the Opus encoder. Made when the camera has a
// microphone, removed when it has none.
function updateAudio(t, cam) {
  const a = cam.audio;
  if (!a) {
    if (t.audio) { t.audio.el.remove(); t.audio = null; }
    return;
  }
  if (!t.audio) {
    const m = {
      mic: el("span", { class: "mic" }), db: el("span", { class: "db" }),
      xruns: el("span", { class: "xruns" }), opus: el("span", { class: "opus" }),
      rms: el("span", { class: "rms" }), peak: el("span", { class: "peak" }), hold: el("span", { class: "hold" }),
      peakDbfs: null, rmsDbfs: null, heldDbfs: null, heldAt: 0, polledAt: 0, updates: 0,
    };
    m.meter = el("span", {
      class: "meter", role: "meter", "aria-valuemin": METER_MIN_DB, "aria-valuemax": 0, "data-bus": cam.bus,
      title: "microphone level of the last 20 ms: RMS (bright), peak (dim), peak hold (tick); " + METER_MIN_DB + " to 0 dBFS",
    }, m.rms, m.peak, m.hold);
    m.el = el("div", { class: "row audio", "data-bus": cam.bus }, m.mic, m.meter, m.db, m.xruns, m.opus);
    t.f.encoders.before(m.el);
    t.audio = m;
  }
  const m = t.audio;
  const state = a.capturing ? "running" : a.state !== "live" ? a.state : a.source_state;
  m.mic.textContent = "mic " + state;
  m.mic.className = "mic " + stClass(a.capturing ? "running" : a.state === "live" ? "restarting" : a.state);
  m.mic.title = a.bus + " · " + a.sample_rate + " Hz · " + a.channels + " ch · " + a.restarts + " restarts";
  m.xruns.textContent = a.xruns + " xrun" + (a.xruns === 1 ? "" : "s");
  const o = a.opus;
  m.opus.textContent = "Opus: " + (o.encoding ? "encoding" : (o.process && o.process !== "running" ? o.process : o.state === "live" ? "idle" : o.state));
  m.opus.className = "opus " + stClass(o.encoding ? "running" : o.process && o.process !== "running" ? o.process : o.state === "live" ? "" : "failed");
  m.opus.title = o.bus + " · " + o.packets + " packets · " + o.readers + " reader" + (o.readers === 1 ? "" : "s") +
    (o.last_reason ? " · last restart: " + o.last_reason : "");
  // The document's level when the fast poll is not answering.
  if (Date.now() - m.polledAt > 4 * LEVEL_POLL_MS) showLevel(m, a.peak_dbfs, a.rms_dbfs);
}

const fmtDb = db => db <= METER_MIN_DB ? "−∞" : db.toFixed(0).replace("-", "−");
const meterPct = db => (Math.min(1, Math.max(0, (db - METER_MIN_DB) / -METER_MIN_DB)) * 100).toFixed(1) + "%";

function showLevel(m, peak, rms) {
  const now = performance.now();
  const fallen = m.heldDbfs == null ? METER_MIN_DB : m.heldDbfs - HOLD_FALL_DB_S * (now - m.heldAt) / 1000;
  m.heldDbfs = Math.max(peak, fallen, METER_MIN_DB);
  m.heldAt = now;
  if (peak !== m.peakDbfs || rms !== m.rmsDbfs) m.updates++;
  m.peakDbfs = peak;
  m.rmsDbfs = rms;
  m.meter.dataset.peak = peak;
  m.meter.dataset.rms = rms;
  m.meter.setAttribute("aria-valuenow", Math.max(METER_MIN_DB, peak));
  m.rms.style.width = meterPct(rms);
  m.peak.style.width = meterPct(peak);
  m.hold.style.left = meterPct(m.heldDbfs);
  m.db.textContent = "peak " + fmtDb(peak) + " · RMS " + fmtDb(rms) + " dBFS";
}

async function pollLevels() {
  const cams = C.doc ? C.doc.cameras.filter(c => c.audio).map(c => c.bus) : [];
  if (cams.length && !document.hidden) {
    try {
      const r = await api("/api/v1/console/levels?cams=" + cams.map(encodeURIComponent).join(","), { cache: "no-store" });
      for (const l of r.levels) {
        const t = C.tiles[l.bus];
        if (!t || !t.audio) continue;
        t.audio.polledAt = Date.now();
        showLevel(t.audio, l.peak_dbfs, l.rms_dbfs);
      }
      C.levelPolls++;
    } catch (_) { /* the next status poll says what is wrong */ }
  }
  setTimeout(pollLevels, LEVEL_POLL_MS);
}

// The time code of each tile's picture, read once a second: glass-to-glass
// latency as the page's wall clock minus the code's capture time (same
// machine, or clocks in sync).
let tileDecoder = null;
function decodeTile(t) {
  if (!window.framebusTimecode) return;
  tileDecoder = tileDecoder || window.framebusTimecode.makeDecoder();
  const img = t.img;
  if (!img.complete || !img.naturalWidth) return;
  let code = null;
  try { code = tileDecoder(img, img.naturalWidth, img.naturalHeight); } catch (_) { code = null; }
  const lat = code && Date.now() - Number(code.us) / 1000;
  if (code && Math.abs(lat) < 60000) {
    if (t.lastCounter !== code.counter) t.codes++;
    t.lastCounter = code.counter;
    t.samples.push(lat);
    if (t.samples.length > 5) t.samples.shift();
    t.latencyMs = Math.round(median(t.samples));
    t.latencyKind = "timecode";
    t.lat.textContent = t.latencyMs + " ms";
    t.lat.title = "glass-to-glass latency (time code in the picture, median of the last 5 s)";
  } else if (C.player && C.player.bus === t.bus && C.player.latencyKind === "abs-capture-time") {
    t.latencyMs = C.player.latencyMs;
    t.latencyKind = "abs-capture-time";
    t.lat.textContent = "≈" + t.latencyMs + " ms";
    t.lat.title = "estimate from WebRTC abs-capture-time (no time code in the picture)";
  } else {
    t.latencyMs = null;
    t.latencyKind = null;
    t.lat.textContent = "—";
    t.lat.title = "no time code in this picture: open the camera over WebRTC for the abs-capture-time estimate";
  }
}

function tileLatency() {
  for (const t of Object.values(C.tiles)) decodeTile(t);
  setTimeout(tileLatency, TILE_LATENCY_MS);
}

// ---------------------------------------------------------------- publishers
function renderPublishers(doc) {
  $("no-supervisor").hidden = !!doc.supervisor;
  const rows = doc.publishers.map(p => {
    const state = p.state === "backoff" ? "restarting" : p.state;
    const extra = p.state === "backoff" && p.restart_in_s != null ? " (in " + p.restart_in_s.toFixed(1) + " s)" : "";
    return el("tr", { "data-kind": p.kind, "data-state": p.state },
      el("td", {}, p.kind),
      el("td", { class: stClass(state) + " state" }, state + extra),
      el("td", {}, p.pid == null ? "" : p.pid),
      el("td", {}, fmtUp(p.uptime_s)),
      el("td", { class: "restarts" }, p.restarts),
      el("td", { class: "reason" }, p.last_reason || ""),
      el("td", {}, p.url ? el("code", {}, p.url) : (p.address || "")));
  });
  $("publishers").tBodies[0].replaceChildren(...rows);
}

// ---------------------------------------------------------------- player
let generation = 0;

function openPlayer(bus, profile, mode) {
  const cam = cameraOf(bus);
  if (!cam) return false;
  closeMedia();
  const profiles = cam.encoders.map(e => e.profile);
  const p = profile || (profiles.includes("low") ? "low" : profiles[0]) || null;
  C.player = {
    bus, profile: p, wanted: mode || "webrtc", mode: "connecting", fallbacks: [], error: null,
    latencyMs: null, latencyKind: null, frames: 0, media: null, pc: null, hls: null, resource: null,
    sound: false,
  };
  $("player").hidden = false;
  $("player-title").textContent = bus;
  const sel = $("player-profile");
  sel.replaceChildren(...profiles.map(x => el("option", { value: x, selected: x === p }, x)));
  sel.disabled = !profiles.length;
  renderPlayerInfo();
  start(C.player.wanted);
  $("player").scrollIntoView({ block: "start" });
  return true;
}

function renderPlayerInfo() {
  const P = C.player;
  const cam = cameraOf(P.bus);
  const url = P.profile && rtspUrl(C.doc, P.bus, P.profile);
  $("player-rtsp-box").hidden = !url;
  $("player-rtsp").textContent = url || "";
  for (const b of document.querySelectorAll("#player .modes button")) b.classList.toggle("on", b.dataset.mode === P.mode);
  const sound = $("player-sound");
  sound.hidden = !(cam && cam.audio);
  sound.textContent = P.sound ? "🔊 sound on" : "🔈 sound off";
  sound.classList.toggle("on", P.sound);
  if (!cam) return;
  // Rows are made once per profile (their buttons stay), cells updated.
  const body = $("player-streams").tBodies[0];
  if (body.dataset.bus !== P.bus || body.dataset.profiles !== cam.mjpeg.map(m => m.profile).join()) {
    body.dataset.bus = P.bus;
    body.dataset.profiles = cam.mjpeg.map(m => m.profile).join();
    body.replaceChildren(...cam.mjpeg.map(m => el("tr", { "data-profile": m.profile },
      el("td", {}, el("a", { href: m.url, target: "_blank" }, m.profile)),
      el("td", { class: "size" }), el("td", { class: "state" }), el("td", { class: "viewers" }), el("td", { class: "up" }),
      el("td", {},
        el("button", { type: "button", class: "start", onclick: () => streamAction(P.bus, m.profile, "start") }, "start"), " ",
        el("button", { type: "button", class: "stop", onclick: () => streamAction(P.bus, m.profile, "stop") }, "stop")))));
  }
  for (const m of cam.mjpeg) {
    const tr = body.querySelector('tr[data-profile="' + m.profile + '"]');
    if (!tr) continue;
    tr.querySelector(".size").textContent = m.width + "×" + m.height;
    const st = tr.querySelector(".state");
    st.textContent = m.running ? "running · " + m.output_fps + " fps" : "idle";
    st.className = "state " + (m.running ? "st-running" : "dim");
    tr.querySelector(".viewers").textContent = m.viewers;
    tr.querySelector(".up").textContent = fmtUp(m.uptime_s);
  }
}

function say(text) { $("player-state").textContent = text; }

function closeMedia() {
  generation++;
  const P = C.player;
  if (!P) return;
  // DELETE the WHEP session before closing the peer connection: the
  // server ends a session when the peer's DTLS close arrives, and a
  // DELETE after that would find nothing (404).
  const pc = P.pc;
  P.pc = null;
  if (P.resource) {
    fetch(P.resource, { method: "DELETE", keepalive: true }).catch(() => {}).finally(() => pc && pc.close());
    P.resource = null;
  } else if (pc) pc.close();
  if (P.hls) { P.hls.destroy(); P.hls = null; }
  if (P.media) { if (P.media.tagName === "IMG") P.media.src = ""; else { P.media.srcObject = null; P.media.removeAttribute("src"); P.media.load(); } }
  P.media = null;
  $("player-view").replaceChildren();
  $("player-latency").textContent = "";
}

function closePlayer() {
  closeMedia();
  C.player = null;
  $("player").hidden = true;
}

// Start `mode`; on failure fall back WebRTC → LL-HLS → MJPEG. Each start
// is a generation: events of an earlier one are ignored.
function start(mode) {
  const P = C.player;
  if (!["webrtc", "hls", "mjpeg"].includes(mode)) mode = "webrtc";
  closeMedia();
  const gen = generation;
  P.mode = "connecting";
  P.trying = mode;
  P.frames = 0;
  P.latencyMs = null;
  P.latencyKind = null;
  renderPlayerInfo();
  const fail = why => {
    if (gen !== generation || !C.player) return;
    P.fallbacks.push({ from: mode, why: String(why) });
    const next = NEXT[mode];
    if (next) { say(mode + " failed (" + why + "); trying " + next); start(next); }
    else { P.mode = "failed"; P.error = String(why); say("cannot play: " + why); renderPlayerInfo(); }
  };
  const playing = label => {
    if (gen !== generation) return;
    P.mode = mode;
    say(label);
    renderPlayerInfo();
  };
  const deadline = { webrtc: WEBRTC_START_MS, hls: HLS_START_MS, mjpeg: MJPEG_START_MS }[mode];
  setTimeout(() => { if (gen === generation && P.mode === "connecting") fail("no picture within " + deadline + " ms"); }, deadline);
  const run = { webrtc: startWebrtc, hls: startHls, mjpeg: startMjpeg }[mode];
  say(mode + "…");
  run(P, gen, playing, fail).catch(e => fail(e.message || e));
}

async function startWebrtc(P, gen, playing, fail) {
  if (!C.doc.outputs.webrtc) throw new Error("WebRTC is off on this server");
  if (!P.profile) throw new Error("no encoder for this camera");
  if (!window.RTCPeerConnection) throw new Error("this browser has no WebRTC");
  const video = mediaVideo(P);
  const pc = P.pc = new RTCPeerConnection();
  const tr = pc.addTransceiver("video", { direction: "recvonly" });
  // Sound only when asked for: the browser then lip-syncs, holding the
  // picture back as long as the sound's jitter buffer and output take.
  const cam = cameraOf(P.bus);
  if (P.sound && cam && cam.audio) pc.addTransceiver("audio", { direction: "recvonly" });
  // Ask for abs-capture-time (each frame's capture time) where the
  // browser lets a page choose its header extensions: the latency
  // estimate when the picture carries no time code.
  if (tr.getHeaderExtensionsToNegotiate && tr.setHeaderExtensionsToNegotiate) {
    const exts = tr.getHeaderExtensionsToNegotiate().map(e =>
      e.uri.endsWith("abs-capture-time") ? { ...e, direction: "recvonly" } : e);
    try { tr.setHeaderExtensionsToNegotiate(exts); } catch (_) { /* keep the defaults */ }
  }
  // Both tracks come in one stream (the server answers so, for lip sync).
  pc.ontrack = ev => {
    if (video.srcObject !== (ev.streams[0] || null)) video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
  };
  pc.onconnectionstatechange = () => { if (pc.connectionState === "failed") fail("ICE/DTLS connection failed"); };
  await pc.setLocalDescription(await pc.createOffer());
  const whep = "/" + P.bus + "/" + P.profile + "/whep";
  const post = () => fetch(whep, { method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp });
  const res = await post().catch(post);
  if (res.status !== 201) throw new Error("WHEP " + res.status + ": " + (await res.text()).slice(0, 200));
  if (gen !== generation) {
    // The player moved on while the offer was answered: end the session
    // now rather than at the server's timeout.
    const loc = res.headers.get("Location");
    if (loc) fetch(new URL(loc, location.href).href, { method: "DELETE", keepalive: true }).catch(() => {});
    pc.close();
    return;
  }
  P.resource = new URL(res.headers.get("Location"), location.href).href;
  await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
  watchVideo(P, gen, video, () => playing("WebRTC · " + P.bus + "/" + P.profile));
}

function loadScript(src) {
  return new Promise((ok, fail) => {
    const s = document.createElement("script");
    s.src = src; s.onload = ok; s.onerror = () => fail(new Error("cannot load " + src));
    document.head.appendChild(s);
  });
}

async function startHls(P, gen, playing, fail) {
  if (!C.doc.outputs.hls) throw new Error("LL-HLS is off on this server");
  if (!P.profile) throw new Error("no encoder for this camera");
  const video = mediaVideo(P);
  const src = "/" + P.bus + "/" + P.profile + "/index.m3u8";
  if (C.doc.outputs.hls_js && !window.Hls) await loadScript(C.doc.outputs.hls_js).catch(() => {});
  if (gen !== generation) return;
  watchVideo(P, gen, video, () => playing("LL-HLS · " + P.bus + "/" + P.profile + (P.hls ? " (hls.js)" : " (native)")));
  if (window.Hls && window.Hls.isSupported()) {
    const h = P.hls = new window.Hls({ lowLatencyMode: true });
    // A fatal error before or after the start falls back (fail ignores
    // an earlier generation's).
    h.on(window.Hls.Events.ERROR, (_, d) => {
      if (d.fatal) fail("HLS: " + d.details + (d.response ? " " + d.response.code : ""));
    });
    h.loadSource(src);
    h.attachMedia(video);
    await video.play().catch(() => {});
    return;
  }
  if (!video.canPlayType("application/vnd.apple.mpegurl")) {
    throw new Error("this browser has no HLS and the server serves no hls.js (--hls-js)");
  }
  video.src = src;
  await video.play();
}

async function startMjpeg(P, gen, playing, fail) {
  const cam = cameraOf(P.bus);
  const names = cam ? cam.mjpeg.map(m => m.profile) : [];
  const profile = ["medium", "native"].find(p => names.includes(p)) || names[0];
  if (!profile) throw new Error("no MJPEG profile");
  const img = el("img", { alt: P.bus });
  cameraShape(img, cam, "70vh");
  P.media = img;
  $("player-view").replaceChildren(img);
  await new Promise((ok, no) => {
    img.onload = ok;
    img.onerror = () => { if (P.mode === "connecting") no(new Error("MJPEG stream failed")); else fail("MJPEG stream ended"); };
    img.src = "/" + P.bus + "/" + profile + ".mjpg";
  });
  if (gen !== generation) return;
  playing("MJPEG · " + P.bus + "/" + profile);
  const decode = window.framebusTimecode && window.framebusTimecode.makeDecoder();
  const samples = [];
  let lastCounter = null;
  const tick = () => {
    if (gen !== generation) return;
    const code = decode && img.naturalWidth ? decode(img, img.naturalWidth, img.naturalHeight) : null;
    const lat = code && Date.now() - Number(code.us) / 1000;
    // Frames: distinct pictures seen (by their time code's counter; a
    // picture without one counts each look at it).
    if (img.naturalWidth && (!code || code.counter !== lastCounter)) P.frames++;
    lastCounter = code ? code.counter : null;
    if (code && Math.abs(lat) < 60000) {
      samples.push(lat);
      if (samples.length > 8) samples.shift();
      showLatency(P, Math.round(median(samples)), "timecode");
    } else showLatency(P, null, null);
    setTimeout(tick, PLAYER_LATENCY_MS * 2);
  };
  tick();
}

function mediaVideo(P) {
  const video = el("video", { muted: !P.sound, autoplay: true, playsinline: true });
  video.muted = !P.sound;
  // A browser that refuses to play sound without a click plays the
  // picture muted.
  if (P.sound) video.addEventListener("canplay", () => video.play().catch(() => {
    video.muted = true;
    video.play().catch(() => {});
    say("the browser refused sound: click sound again");
  }), { once: true });
  P.media = video;
  $("player-view").replaceChildren(video);
  return video;
}

// Follows the frames `video` presents: the first one means "playing";
// the latency is the time code's when the picture has one, else the
// abs-capture-time estimate (WebRTC only).
function watchVideo(P, gen, video, onFirst) {
  const decode = window.framebusTimecode && window.framebusTimecode.makeDecoder();
  const samples = [];
  let lastDecode = 0;
  if (!video.requestVideoFrameCallback) {
    video.addEventListener("playing", onFirst, { once: true });
    return;
  }
  const onFrame = (now, md) => {
    if (gen !== generation) return;
    P.frames++;
    if (P.frames === 1) onFirst();
    const shown = md.presentationTime ?? now;
    if (now - lastDecode >= PLAYER_LATENCY_MS) {
      lastDecode = now;
      const code = decode ? decode(video, md.width, md.height) : null;
      const lat = code && performance.timeOrigin + shown - Number(code.us) / 1000;
      if (code && Math.abs(lat) < 60000) {
        samples.push(lat);
        if (samples.length > 12) samples.shift();
        showLatency(P, Math.round(median(samples)), "timecode");
      } else if (md.captureTime !== undefined) {
        samples.push(shown - md.captureTime);
        if (samples.length > 12) samples.shift();
        showLatency(P, Math.round(median(samples)), "abs-capture-time");
      } else showLatency(P, null, null);
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

function showLatency(P, ms, kind) {
  P.latencyMs = ms;
  P.latencyKind = kind;
  $("player-latency").textContent = ms == null ? "latency: no time code in the picture"
    : kind === "timecode" ? "glass-to-glass " + ms + " ms (time code)"
    : "≈" + ms + " ms (abs-capture-time estimate)";
}

async function streamAction(bus, profile, action) {
  try {
    const r = await api("/api/v1/streams/" + bus + "/" + profile + "/" + action, { method: "POST" });
    const msg = action === "start"
      ? (r.already_running ? "already running, up " + fmtUp(r.uptime_s) : "started")
      : (r.was_running ? "stopped" : "was not running");
    say(bus + "/" + profile + ": " + msg);
    C.lastAction = r;
  } catch (e) { say(bus + "/" + profile + ": " + e.message); }
}

// ---------------------------------------------------------------- recordings
function renderRecorderForm(doc) {
  const on = doc.outputs.recorder;
  $("no-recorder").hidden = on;
  $("recorder-ui").hidden = !on;
  const sel = $("rec-stream");
  const want = doc.cameras.flatMap(c => c.encoders.map(e => c.bus + "/" + e.profile));
  const have = [...sel.options].map(o => o.value);
  if (want.join() !== have.join()) {
    const cur = sel.value;
    sel.replaceChildren(...want.map(s => el("option", { value: s, selected: s === cur }, s)));
  }
}

async function record(stream, body) {
  return api("/api/v1/recordings", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ stream, ...body }),
  });
}

async function quickRecord(stream, tile) {
  const set = m => { if (tile) { tile.msg = m; } $("rec-msg").textContent = m; };
  try {
    const r = await record(stream, { preroll: "5s", duration: "30s", snapshot: true });
    set("recording " + r.id);
    pollRecordings();
  } catch (e) { set(e.message); }
}

async function pollRecordings() {
  clearTimeout(pollRecordings.timer);
  if (C.doc && C.doc.outputs.recorder) {
    try {
      const r = await api("/api/v1/recordings", { cache: "no-store" });
      C.recordings = (r && r.recordings) || [];
      renderRecordings();
    } catch (e) { $("rec-msg").textContent = e.message; }
  }
  pollRecordings.timer = setTimeout(pollRecordings, RECORDINGS_POLL_MS);
}

// Rows are made once per recording (their buttons stay the same
// elements), cells and which buttons show are updated.
function renderRecordings() {
  const list = [...C.recordings].sort((a, b) => b.requested_at_realtime_ns - a.requested_at_realtime_ns);
  const base = id => "/api/v1/recordings/" + encodeURIComponent(id);
  const body = $("recordings").tBodies[0];
  const rows = new Map([...body.rows].map(tr => [tr.dataset.id, tr]));
  const ordered = list.map(r => {
    let tr = rows.get(r.id);
    if (!tr) {
      const b = (cls, label, fn) => el("button", { type: "button", class: cls, hidden: true, onclick: fn }, label);
      tr = el("tr", { "data-id": r.id },
        el("td", {}, r.id), el("td", {}, r.stream), el("td", { class: "state" }), el("td", { class: "start" }),
        el("td", { class: "length" }), el("td", { class: "preroll" }), el("td", { class: "size" }),
        el("td", {},
          b("play", "play", () => playRecording(r.id)), " ",
          el("a", { class: "download", href: base(r.id) + "/file.mp4", download: r.id + ".mp4", hidden: true }, "download"), " ",
          el("a", { class: "snap", href: base(r.id) + "/snapshot.jpg", target: "_blank", hidden: true }, "snapshot"), " ",
          b("stop", "stop", () => api(base(r.id), { method: "DELETE" }).then(pollRecordings, e => { $("rec-msg").textContent = e.message; })),
          b("delete", "delete", () => api(base(r.id) + "?remove=1", { method: "DELETE" }).then(pollRecordings, e => { $("rec-msg").textContent = e.message; }))));
    }
    const live = r.state === "waiting" || r.state === "recording";
    tr.dataset.state = r.state;
    const st = tr.querySelector(".state");
    st.textContent = r.state + (r.error ? ": " + r.error : "");
    st.className = "state " + stClass(live ? "running" : r.state === "failed" ? "failed" : "");
    tr.querySelector(".start").textContent = r.start ? new Date(r.start).toLocaleTimeString() : "";
    tr.querySelector(".length").textContent = r.duration_s.toFixed(1) + " s";
    tr.querySelector(".preroll").textContent = r.preroll_s == null ? "" : r.preroll_s.toFixed(2) + " s";
    tr.querySelector(".size").textContent = fmtBytes(r.bytes);
    tr.querySelector(".play").hidden = !r.frames;
    tr.querySelector(".download").hidden = !r.frames;
    tr.querySelector(".snap").hidden = !r.snapshot;
    tr.querySelector(".stop").hidden = !live;
    tr.querySelector(".delete").hidden = live;
    return tr;
  });
  // Only when the list itself changed: moving a row would lose a click.
  if (ordered.length !== body.rows.length || ordered.some((tr, i) => body.rows[i] !== tr)) body.replaceChildren(...ordered);
}

function playRecording(id) {
  const v = $("rec-video");
  v.hidden = false;
  v.src = "/api/v1/recordings/" + encodeURIComponent(id) + "/file.mp4";
  v.dataset.id = id;
  v.play().catch(() => {});
}

// ---------------------------------------------------------------- wiring
for (const b of document.querySelectorAll("#player .modes button")) {
  b.addEventListener("click", () => { if (C.player) { C.player.fallbacks = []; C.player.wanted = b.dataset.mode; start(b.dataset.mode); } });
}
$("player-profile").addEventListener("change", e => {
  const P = C.player;
  if (!P) return;
  // The mode playing, or the one being tried ("connecting" is no mode).
  const mode = NEXT[P.mode] !== undefined || P.mode === "mjpeg" ? P.mode : (P.trying || P.wanted);
  openPlayer(P.bus, e.target.value, mode);
});
$("player-sound").addEventListener("click", () => {
  const P = C.player;
  if (!P) return;
  P.sound = !P.sound;
  renderPlayerInfo();
  const mode = NEXT[P.mode] !== undefined || P.mode === "mjpeg" ? P.mode : (P.trying || P.wanted);
  // WebRTC negotiates its tracks: start again with (or without) sound.
  // LL-HLS carries the sound already: unmute.
  if (mode === "webrtc") start("webrtc");
  else if (P.media && P.media.tagName === "VIDEO") { P.media.muted = !P.sound; P.media.play().catch(() => {}); }
});
$("player-close").addEventListener("click", closePlayer);
$("player-copy").addEventListener("click", () => {
  const t = $("player-rtsp").textContent;
  (navigator.clipboard ? navigator.clipboard.writeText(t) : Promise.reject()).then(
    () => say("copied " + t), () => { getSelection().selectAllChildren($("player-rtsp")); say("press Ctrl+C to copy"); });
});
$("player-snapshot").addEventListener("click", () => { if (C.player) window.open("/" + C.player.bus + "/snapshot.jpg?profile=native", "_blank"); });
$("player-record").addEventListener("click", async () => {
  const P = C.player;
  if (!P || !P.profile) return;
  try {
    const r = await record(P.bus + "/" + P.profile, { preroll: $("player-preroll").value, duration: $("player-duration").value, snapshot: true });
    say("recording " + r.id);
    pollRecordings();
  } catch (e) { say(e.message); }
});
$("rec-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  try {
    const r = await record($("rec-stream").value, {
      preroll: $("rec-preroll").value, duration: $("rec-duration").value, snapshot: $("rec-snapshot").checked,
    });
    $("rec-msg").textContent = "recording " + r.id;
    pollRecordings();
  } catch (e) { $("rec-msg").textContent = e.message; }
});
window.addEventListener("pagehide", () => closeMedia());
window.addEventListener("error", e => C.errors.push(String(e.message)));

C.open = openPlayer;
C.close = closePlayer;
C.record = record;
poll();
pollRecordings();
pollLevels();
tileLatency();

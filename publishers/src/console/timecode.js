// The time code of docs/timecode.md, read in a page from a video frame (a
// page script, not a module): the console (framebus-mjpeg serves this file
// at /_/timecode.js) shows each tile's latency with it, and the
// browser tests (whep.mjs, hls.mjs, video.mjs) and benches/webrtc/viewer.mjs
// load it into their pages (page.addScriptTag / addInitScript), so that the
// console, the tests and the benchmark read frames one way.
// - framebusTimecode.makeDecoder() returns
//   (video, width, height) => { us: BigInt, counter } | null;
// - framebusTimecode.watchVideo(video, t0, timecode) follows every frame a
//   <video> presents (first frame, count, and with `timecode` the latency
//   of each: presentation on the wall clock minus the code's capture time),
//   the one latency method of the WHEP and HLS drivers;
// - framebusTimecode.summary(ms[]) gives { n, p50, p90, p99, max }.
globalThis.framebusTimecode = (() => {
  // Layout: two bands of h/24 rows; 64 cells of capture time (µs since the
  // epoch), 32 of frame counter, most significant bit first.
  const BANDS = 24;
  const TIME_CELLS = 64;
  const COUNTER_CELLS = 32;

  // Reads the two top bands of a video frame: { us: BigInt, counter } or
  // null when a cell is ambiguous (not a time code, or too damaged).
  function makeDecoder() {
    const canvas = document.createElement('canvas');
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    return (video, w, h) => {
      if (w < TIME_CELLS || h < BANDS) return null;
      const bh = Math.floor(h / BANDS);
      if (canvas.width !== w || canvas.height !== 2 * bh) {
        canvas.width = w;
        canvas.height = 2 * bh;
      }
      // Only the bands: copying a whole 1080p frame every frame costs.
      ctx.drawImage(video, 0, 0, w, 2 * bh, 0, 0, w, 2 * bh);
      const px = ctx.getImageData(0, 0, w, 2 * bh).data;
      const luma = (x, y) => {
        const o = (y * w + x) * 4;
        return 0.299 * px[o] + 0.587 * px[o + 1] + 0.114 * px[o + 2];
      };
      const band = (b, cells) => {
        const y0 = b * bh;
        const yc = y0 + Math.floor(bh / 2);
        const dy = Math.floor(bh / 5);
        let v = 0n;
        for (let i = 0; i < cells; i++) {
          const x0 = Math.floor((i * w) / cells);
          const x1 = Math.floor(((i + 1) * w) / cells);
          const xc = Math.floor((x0 + x1) / 2);
          const dx = Math.floor((x1 - x0) / 5);
          // A 3x3 grid in the middle of the cell, as the reference decoder.
          let sum = 0;
          for (const y of [yc - dy, yc, yc + dy]) for (const x of [xc - dx, xc, xc + dx]) sum += luma(x, y);
          const avg = sum / 9;
          if (Math.abs(avg - 128) < 24) return null;
          v = (v << 1n) | (avg > 128 ? 1n : 0n);
        }
        return v;
      };
      const us = band(0, TIME_CELLS);
      if (us === null) return null;
      const counter = band(1, COUNTER_CELLS);
      if (counter === null) return null;
      return { us, counter: Number(counter) };
    };
  }

  // Nearest-rank percentiles of a list of milliseconds.
  function summary(xs) {
    if (xs.length === 0) return null;
    const s = [...xs].sort((a, b) => a - b);
    const at = (q) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
    const r3 = (x) => Math.round(x * 1000) / 1000;
    return { n: s.length, p50: r3(at(0.5)), p90: r3(at(0.9)), p99: r3(at(0.99)), max: r3(s[s.length - 1]) };
  }

  // Follows every frame presented by `video` (requestVideoFrameCallback):
  // the first one (ms since t0) and, with `timecode`, the latency samples.
  function watchVideo(video, t0, timecode) {
    const w = { first_frame_ms: null, frames: 0, stopped: false };
    const tc = timecode
      ? { decode: makeDecoder(), decoded: 0, refused: 0, last: null, gaps: 0, gap_events: 0, repeats: 0,
          lastPresented: null, presented_skipped: 0, lat: [], abs: [], net: [] }
      : null;
    const onFrame = (now, md) => {
      if (w.stopped) return;
      // When the frame was handed to the compositor. Not `now`: that is the
      // rendering step's start, measured up to 2 ms *before* the frame's
      // last packet arrived (receiveTime). expectedDisplayTime is only a
      // guess, two vsyncs (~32 ms) later in headless Chromium.
      const shown = md.presentationTime ?? now;
      if (w.first_frame_ms === null) w.first_frame_ms = shown - t0;
      w.frames++;
      if (tc) {
        // Frames decoded but never handed to rVFC (two in one vsync).
        if (tc.lastPresented !== null && md.presentedFrames > tc.lastPresented + 1)
          tc.presented_skipped += md.presentedFrames - tc.lastPresented - 1;
        tc.lastPresented = md.presentedFrames;
        // captureTime: the sender's capture instant from the RTP
        // abs-capture-time extension (when negotiated and sent), on this
        // page's performance timeline like the others.
        if (md.captureTime !== undefined) tc.abs.push(shown - md.captureTime);
        if (md.receiveTime !== undefined) tc.net.push(shown - md.receiveTime);
        const code = tc.decode(video, md.width, md.height);
        // Same machine: the page's wall clock and the capture clock
        // (CLOCK_REALTIME) agree. A "code" a minute off is a picture that
        // merely looks like one (a flat frame reads as all zeros).
        const lat = code === null ? null : performance.timeOrigin + shown - Number(code.us) / 1000;
        if (lat === null || Math.abs(lat) > 60000) {
          tc.refused++;
        } else {
          tc.decoded++;
          tc.lat.push(lat);
          if (tc.last !== null) {
            const step = (code.counter - tc.last) >>> 0;
            if (step === 0) tc.repeats++;
            else if (step > 1 && step < 2 ** 31) {
              tc.gaps += step - 1;
              tc.gap_events++;
            }
          }
          tc.last = code.counter;
        }
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    w.stop = () => {
      w.stopped = true;
    };
    w.timecodeReport = (raw) => {
      if (!tc) return null;
      const r = {
        frames: w.frames,
        decoded: tc.decoded,
        refused: tc.refused,
        counter_gaps: tc.gaps,
        gap_events: tc.gap_events,
        repeats: tc.repeats,
        presented_skipped: tc.presented_skipped,
        latency_ms: summary(tc.lat),
        abs_latency_ms: summary(tc.abs),
        network_to_present_ms: summary(tc.net),
      };
      if (raw) r.raw = { latency_ms: tc.lat, abs_latency_ms: tc.abs, network_to_present_ms: tc.net };
      return r;
    };
    return w;
  }

  return { BANDS, TIME_CELLS, COUNTER_CELLS, makeDecoder, summary, watchVideo };
})();

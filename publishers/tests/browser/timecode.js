// The time code of docs/timecode.md, read in a page from a video frame (a
// page script, not a module): whep.mjs and benches/webrtc/viewer.mjs load it
// into their pages (page.addScriptTag / addInitScript) so that the tests and
// the benchmark read frames one way. framebusTimecode.makeDecoder() returns
// (video, width, height) => { us: BigInt, counter } | null.
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

  return { BANDS, TIME_CELLS, COUNTER_CELLS, makeDecoder };
})();

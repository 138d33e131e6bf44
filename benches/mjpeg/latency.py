#!/usr/bin/env python3
"""Glass-to-glass latency of an MJPEG stream from the framebus time code.

Decodes the stream with ffmpeg (single-threaded, so it holds no frames),
reads gray frames from its stdout, decodes the capture time from the time
code bands (docs/timecode.md) and compares it with the wall clock at the
moment the decoded frame is in hand.

Run with: latency.py URL WIDTH HEIGHT SECONDS [--mpjpeg]
Prints one JSON line: {"frames", "p50_ms", "p90_ms", "p99_ms", "fps"}.
"""
import json
import subprocess
import sys
import threading
import time

BAND_DIVISOR, TIME_CELLS = 24, 64


def decode_us(frame, w, h):
    bh = h // BAND_DIVISOR
    y = bh // 2
    value = 0
    for i in range(TIME_CELLS):
        x0, x1 = i * w // TIME_CELLS, (i + 1) * w // TIME_CELLS
        x = (x0 + x1) // 2
        s = (frame[y * w + x] + frame[(y - 1) * w + x] + frame[(y + 1) * w + x]) / 3
        value = (value << 1) | (1 if s >= 128 else 0)
    return value


def main():
    url, w, h, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    fmt = ["-f", "mpjpeg"] if "--mpjpeg" in sys.argv else []
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-threads", "1", "-fflags", "nobuffer",
           *fmt, "-i", url, "-threads", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=0)
    # Watchdog: a stream that never delivers must not hang the benchmark.
    watchdog = threading.Timer(secs + 15, p.kill)
    watchdog.daemon = True
    watchdog.start()
    size = w * h
    lat = []
    t0 = time.time()
    first = None
    while time.time() - t0 < secs:
        buf = bytearray()
        while len(buf) < size:
            chunk = p.stdout.read(size - len(buf))
            if not chunk:
                break
            buf += chunk
        if len(buf) < size:
            break
        now_us = time.time_ns() // 1000
        tc = decode_us(buf, w, h)
        if first is None:
            first = time.time()
            continue  # the first frame may have waited in a buffer
        d = (now_us - tc) / 1000.0
        if 0 <= d < 10_000:
            lat.append(d)
    p.kill()
    p.wait()

    lat.sort()
    pick = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else None
    span = time.time() - (first or time.time())
    print(json.dumps({"frames": len(lat), "p50_ms": pick(0.5), "p90_ms": pick(0.9),
                      "p99_ms": pick(0.99), "fps": round(len(lat) / span, 1) if span > 0 else 0}))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Reference server for the RTSP benchmark: gst-rtsp-server (python3-gi),
shared media, appsrc fed with NV12 frames carrying the framebus time code
(docs/timecode.md), x264 with the same settings as framebus-rtsp
(ultrafast, zerolatency, no B-frames, same bitrate and GOP).

Run with: /usr/bin/python3 benches/rtsp/gst_server.py (the Debian python, which has python3-gi) --port 8555 --bus cam0

With `--bus NAME` the frames come from a framebus bus (the framebus Python
package and numpy must be importable: bench.py puts the project's .venv
site-packages on PYTHONPATH), i.e. exactly the frames framebus-rtsp
encodes, one copy per frame into a GstBuffer. Without it a built-in
generator paints the time code (its CPU then counts as the server's).

Prints `listening on rtsp://127.0.0.1:PORT/bench` once serving.

Low-latency pipeline: appsrc is live, timestamps buffers on arrival
(do-timestamp), never blocks the feeder and keeps at most one pending
frame, dropping the older one (leaky-type=downstream): a late encoder
gets the newest frame, never a queue. No other queue: x264enc runs in
appsrc's streaming thread, as framebus-rtsp's encoder runs in its own.
"""
import argparse
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

WHITE, BLACK = 235, 16


def band_row(width, cells, value):
    row = bytearray([BLACK]) * width
    for i in range(cells):
        if (value >> (cells - 1 - i)) & 1:
            x0, x1 = i * width // cells, (i + 1) * width // cells
            row[x0:x1] = bytes([WHITE]) * (x1 - x0)
    return bytes(row)


class Feeder:
    def __init__(self, width, height, fps):
        self.w, self.h, self.fps = width, height, fps
        ysize = width * height
        self.base = bytearray([80]) * ysize + bytearray([128]) * (ysize // 2)
        self.n = 0
        self.start = None
        self.lock = threading.Lock()
        self.appsrcs = []

    def frame(self):
        band = self.h // 24
        us = time.time_ns() // 1000
        f = bytearray(self.base)
        r1 = band_row(self.w, 64, us & (2**64 - 1))
        r2 = band_row(self.w, 32, self.n & 0xFFFFFFFF)
        f[0 : band * self.w] = r1 * band
        f[band * self.w : 2 * band * self.w] = r2 * band
        # a moving bar so the encoder has motion to code
        x = (self.n * 8) % self.w
        for y in range(2 * band, self.h, 4):
            o = y * self.w + x
            f[o : o + 32] = b"\xeb" * min(32, self.w - x)
        return bytes(f)

    def run(self):
        period = 1.0 / self.fps
        self.start = time.monotonic()
        while True:
            data = self.frame()
            with self.lock:
                srcs = list(self.appsrcs)
            for src in srcs:
                buf = Gst.Buffer.new_wrapped(data)
                src.emit("push-buffer", buf)
            self.n += 1
            due = self.start + self.n * period
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)


class BusFeeder:
    """Feeds appsrcs from a framebus bus (same frames as framebus-rtsp)."""

    def __init__(self, bus):
        import framebus  # noqa: PLC0415 (optional dependency)

        self.reader = framebus.Reader(bus, wait=10.0)
        spec = self.reader.spec
        self.w, self.h, self.fps = spec.width, spec.height, round(spec.fps)
        if spec.format.lower() != "nv12":
            raise SystemExit(f"bus {bus}: format {spec.format}, expected nv12")
        self.lock = threading.Lock()
        self.appsrcs = []

    def run(self):
        while True:
            try:
                frame = self.reader.next(timeout=1.0)
            except Exception:  # noqa: BLE001 (timeout, producer gone: keep reading)
                continue
            with self.lock:
                srcs = list(self.appsrcs)
            if not srcs:
                frame.release()
                continue
            data = frame.array.tobytes()
            frame.release()
            for src in srcs:
                src.emit("push-buffer", Gst.Buffer.new_wrapped(data))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8555)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--bitrate", type=int, default=4000, help="kbit/s")
    ap.add_argument("--gop", type=int, default=60)
    ap.add_argument("--bus", help="read frames from this framebus bus (size and rate from the bus)")
    a = ap.parse_args()
    Gst.init(None)
    if a.bus:
        feeder = BusFeeder(a.bus)
    else:
        w, h = (int(v) for v in a.size.split("x"))
        feeder = Feeder(w, h, a.fps)
    w, h, fps = feeder.w, feeder.h, feeder.fps
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_shared(True)
    factory.set_latency(0)
    factory.set_launch(
        f"( appsrc name=src is-live=true do-timestamp=true format=time block=false max-bytes=0 "
        f"max-buffers=1 leaky-type=downstream "
        f"caps=video/x-raw,format=NV12,width={w},height={h},framerate={fps}/1 "
        f"! x264enc speed-preset=ultrafast tune=zerolatency bframes=0 "
        f"bitrate={a.bitrate} vbv-buf-capacity=1000 key-int-max={a.gop} "
        f"! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )

    def configured(_factory, media):
        src = media.get_element().get_by_name("src")
        with feeder.lock:
            feeder.appsrcs.append(src)

        def unprepared(_m):
            with feeder.lock:
                if src in feeder.appsrcs:
                    feeder.appsrcs.remove(src)

        media.connect("unprepared", unprepared)

    factory.connect("media-configure", configured)
    server.get_mount_points().add_factory("/bench", factory)
    server.attach(None)
    threading.Thread(target=feeder.run, daemon=True).start()
    print(f"listening on rtsp://127.0.0.1:{server.get_bound_port()}/bench", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Reference server for the RTSP benchmark: gst-rtsp-server (python3-gi),
shared media, appsrc fed with NV12 frames carrying the framebus time code
(docs/timecode.md), x264 with the same settings as framebus-rtsp
(ultrafast, zerolatency, no B-frames, CBR, same bitrate and GOP).

Run with: /usr/bin/python3 benches/rtsp/gst_server.py (the Debian python, which has python3-gi) --port 8555 --size 1920x1080 --fps 30

Prints `listening on rtsp://127.0.0.1:PORT/bench` once serving. The frame
generator runs in this process (its CPU is counted with the server's; it
copies one frame and rewrites the band rows, ~3 MB/frame of memcpy).
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8555)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--bitrate", type=int, default=4000, help="kbit/s")
    ap.add_argument("--gop", type=int, default=60)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    Gst.init(None)
    feeder = Feeder(w, h, a.fps)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_shared(True)
    factory.set_latency(0)
    factory.set_launch(
        f"( appsrc name=src is-live=true do-timestamp=true format=time max-bytes=0 "
        f"caps=video/x-raw,format=NV12,width={w},height={h},framerate={a.fps}/1 "
        f"! queue max-size-buffers=2 "
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

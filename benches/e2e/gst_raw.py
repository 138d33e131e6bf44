#!/usr/bin/python3
"""The GStreamer way's raw analysis consumer: `shmsrc ! appsink`, every frame
mapped and its time code decoded (docs/timecode.md); writes
{"samples": [[t, ms], ...], "frames": n} to --out on SIGTERM.

Run with the Debian python (python3-gi; no numpy there, the 64 samples are
read from the mapped buffer directly):
  /usr/bin/python3 gst_raw.py --shm PATH --out FILE
"""
import argparse
import json
import os
import signal
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


class Stop(Exception):
    pass


def _stop(*_a):
    raise Stop()


def main():
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ap = argparse.ArgumentParser()
    ap.add_argument("--shm", required=True)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=60)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    Gst.init(None)
    pipe = Gst.parse_launch(
        f"shmsrc socket-path={a.shm} is-live=true "
        f"! video/x-raw,format=NV12,width={w},height={h},framerate={a.fps}/1 "
        f"! appsink name=s sync=false max-buffers=4 drop=false"
    )
    sink = pipe.get_by_name("s")
    row = (h // 24) // 2
    xs = [(i * w // 64 + (i + 1) * w // 64) // 2 for i in range(64)]
    offs = [[(row + dy) * w + x for dy in (-1, 0, 1)] for x in xs]
    samples = []
    frames = 0
    try:
        for _ in range(100):  # the shmsink socket may not exist yet
            if os.path.exists(a.shm):
                break
            time.sleep(0.1)
        pipe.set_state(Gst.State.PLAYING)
        while True:
            sample = sink.emit("try-pull-sample", Gst.SECOND)
            if sample is None:
                continue
            buf = sample.get_buffer()
            ok, info = buf.map(Gst.MapFlags.READ)
            if not ok:
                continue
            now = time.time_ns() // 1000
            d = info.data
            v = 0
            for o in offs:
                v = (v << 1) | (1 if d[o[0]] + d[o[1]] + d[o[2]] >= 384 else 0)
            buf.unmap(info)
            frames += 1
            lat = (now - v) / 1000.0
            if 0 <= lat < 10_000:
                samples.append((now / 1e6, round(lat, 3)))
    except Stop:
        pass
    finally:
        pipe.set_state(Gst.State.NULL)
        with open(a.out + ".tmp", "w") as f:
            json.dump({"samples": samples, "frames": frames}, f)
        os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()

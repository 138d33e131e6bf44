"""Encode a raw bus to H.264 with PyAV (libx264) and publish the access
units on an encoded bus: a stand-in for framebus's own encoder process, and
the way to put H.264 from any Python source on a bus.

Run with: python examples/python/h264_publish.py [raw_bus] [encoded_bus] [--gop 30] [--frames N]

Each access unit carries `keyframe`, `pts` (1/90000 s) and the raw frame's
sequence and capture times; the bus's codec configuration holds the SPS and
PPS. A reader that asks for a keyframe (`Reader.request_keyframe()`) gets
one at the next frame.
"""

from __future__ import annotations

import argparse
import fractions
import sys
from typing import Optional

import av
import numpy as np

import framebus

TIME_BASE = fractions.Fraction(1, 90000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("raw_bus", nargs="?", default="cam0")
    ap.add_argument("encoded_bus", nargs="?", default="cam0.h264.py")
    ap.add_argument("--gop", type=int, default=30)
    ap.add_argument("--bitrate", type=int, default=2_000_000)
    ap.add_argument("--frames", type=int, default=0, help="stop after N frames (0: run forever)")
    args = ap.parse_args()

    with framebus.Reader(args.raw_bus, wait=10) as raw:
        spec = raw.spec
        if spec.format != "nv12":
            print(f"{args.raw_bus} is {spec.format}; this example encodes nv12", file=sys.stderr)
            return 2
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height = spec.width, spec.height
        enc.pix_fmt = "nv12"
        enc.time_base = TIME_BASE
        enc.bit_rate = args.bitrate
        enc.gop_size = args.gop
        enc.options = {"preset": "ultrafast", "tune": "zerolatency", "repeat-headers": "1"}
        enc.flags |= av.codec.context.Flags.global_header
        enc.open()
        cap = spec.width * spec.height  # generous for one access unit
        with framebus.Writer(args.encoded_bus, width=spec.width, height=spec.height,
                             format="h264", fps=spec.fps, slots=min(max(args.gop + 4, 8), 64),
                             max_held=2, slot_capacity=cap, source=f"h264 of {args.raw_bus}") as out:
            out.set_codec(time_base=(1, 90000), config=bytes(enc.extradata or b""))
            print(f"encoding {args.raw_bus} -> {args.encoded_bus}", flush=True)
            honoured = 0
            n = 0
            for f in raw:
                frame = av.VideoFrame.from_numpy_buffer(f.array, format="nv12")
                frame.pts = int(f.timestamp_ns * 9 // 100_000)  # ns -> 1/90000 s
                frame.time_base = TIME_BASE
                if out.keyframe_requests > honoured:  # a reader asked: an IDR now
                    honoured = out.keyframe_requests
                    frame.pict_type = av.video.frame.PictureType.I
                for packet in enc.encode(frame):
                    out.publish(bytes(packet), keyframe=packet.is_keyframe, pts=packet.pts or 0,
                                source_seq=f.seq, timestamp_ns=f.timestamp_ns, realtime_ns=f.realtime_ns)
                f.release()
                n += 1
                if args.frames and n >= args.frames:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Forward an encoded bus without decoding it: H.264 access units, in
order, written as an Annex B stream (to a file, a pipe, a socket...).

Run with: python examples/python/h264_forward.py [encoded_bus] [out.h264|-] [--frames N]

`Reader.next_encoded()` hands over the access units in order, each a
zero-copy view of the slot; a reader that falls behind restarts at a
keyframe (and `skipped` says how many were lost), so the output always
decodes. `ffplay out.h264` or `ffprobe out.h264` read the result.
"""

from __future__ import annotations

import argparse
import sys

import framebus


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("bus", nargs="?", default="cam0.h264.py")
    ap.add_argument("out", nargs="?", default="-")
    ap.add_argument("--frames", type=int, default=0, help="stop after N access units (0: forever)")
    args = ap.parse_args()
    sink = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")
    n = lost = 0
    with framebus.Reader(args.bus, wait=10) as r:
        print(f"forwarding {args.bus}", file=sys.stderr, flush=True)
        while not args.frames or n < args.frames:
            f = r.next_encoded(timeout=10)
            if n == 0 or f.skipped:
                codec = r.codec()
                if codec is not None:
                    sink.write(codec.config)  # SPS/PPS before the first keyframe
            lost += f.skipped
            sink.write(f.array.data)  # a memoryview of the slot: no copy
            f.release()
            n += 1
    sink.flush()
    print(f"forwarded {n} access units, {lost} lost", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

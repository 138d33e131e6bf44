"""Grayscale frame differencing on a live bus: prints motion events with the
frame's capture time.

Run with: python examples/python/motion.py [bus] [--threshold 12] [--area 0.01]

Works on any raw format: it takes the luma (Y plane, or the G channel of
RGB/BGR) as a view, never copying the frame; only the small downscaled
difference image is computed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

import numpy as np

import framebus


def luma(frame: framebus.Frame) -> np.ndarray:
    """A (h, w) uint8 view of the frame's brightness, without a copy."""
    a = frame.array
    if frame.format in ("nv12", "i420"):
        return a[: frame.height]
    if frame.format in ("yuyv",):
        return a[:, :, 0]
    if frame.format in ("uyvy",):
        return a[:, :, 1]
    if frame.format in ("rgb24", "bgr24"):
        return a[:, :, 1]
    if frame.format == "gray8":
        return a
    raise SystemExit(f"motion.py needs a raw format, bus has {frame.format}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bus", nargs="?", default="cam0")
    ap.add_argument("--threshold", type=int, default=12, help="per-pixel luma change")
    ap.add_argument("--area", type=float, default=0.01, help="fraction of pixels that must change")
    ap.add_argument("--frames", type=int, default=0, help="stop after N frames (0: never)")
    args = ap.parse_args()

    prev = None
    moving = False
    with framebus.Reader(args.bus, wait=True) as reader:
        print(f"watching {args.bus}: {reader.spec}", flush=True)
        for n, frame in enumerate(reader, 1):
            # Every 4th pixel of every 4th row: 1/16 of the work, still a view.
            small = luma(frame)[::4, ::4].astype(np.int16)
            if prev is not None:
                changed = float(np.mean(np.abs(small - prev) > args.threshold))
                now_moving = changed >= args.area
                if now_moving != moving:
                    at = dt.datetime.fromtimestamp(frame.realtime_ns / 1e9).isoformat(timespec="milliseconds")
                    what = "motion started" if now_moving else "motion stopped"
                    print(f"{at} frame {frame.seq}: {what} ({changed:.1%} of pixels changed)", flush=True)
                    moving = now_moving
            prev = small
            frame.release()
            if args.frames and n >= args.frames:
                break
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

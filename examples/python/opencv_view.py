"""Convert frames with OpenCV straight from the shared-memory view (no copy
of the source) and report what it costs.

Run with: python examples/python/opencv_view.py [bus] [--frames 300] [--save out.png]

`cv2.cvtColor` reads the read-only numpy view of the slot directly; NV12 and
I420 views have OpenCV's (h*3//2, w) shape, YUYV/UYVY (h, w, 2).
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

import framebus

TO_BGR = {
    "nv12": cv2.COLOR_YUV2BGR_NV12,
    "i420": cv2.COLOR_YUV2BGR_I420,
    "yuyv": cv2.COLOR_YUV2BGR_YUYV,
    "uyvy": cv2.COLOR_YUV2BGR_UYVY,
    "rgb24": cv2.COLOR_RGB2BGR,
    "gray8": cv2.COLOR_GRAY2BGR,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bus", nargs="?", default="cam0")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--save", help="write the last converted frame to this image file")
    args = ap.parse_args()

    with framebus.Reader(args.bus, wait=True) as reader:
        fmt = reader.spec.format
        if fmt not in TO_BGR and fmt != "bgr24":
            raise SystemExit(f"{args.bus} carries {fmt}; opencv_view.py needs a raw format")
        bgr = None
        spent = []
        skipped = 0
        for n, frame in enumerate(reader, 1):
            with frame:
                view = frame.array  # zero-copy: view.base holds the slot
                t0 = time.perf_counter()
                bgr = view.copy() if fmt == "bgr24" else cv2.cvtColor(view, TO_BGR[fmt], dst=bgr)
                spent.append(time.perf_counter() - t0)
                skipped += frame.skipped
                del view
            if n >= args.frames:
                break
    ms = np.array(spent) * 1e3
    print(f"{len(ms)} frames of {fmt} -> BGR: median {np.median(ms):.2f} ms, "
          f"p99 {np.percentile(ms, 99):.2f} ms; {skipped} frames skipped")
    if args.save and bgr is not None:
        cv2.imwrite(args.save, bgr)
        print(f"wrote {args.save}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

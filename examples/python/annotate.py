"""Read a bus, draw a rectangle and the frame number, and write the result to
a second bus (which the MJPEG publisher can then serve).

Run with: python examples/python/annotate.py [cam0] [cam0.annotated]

The output bus is BGR24 at the input's size and rate. Each output frame is
converted by OpenCV straight from the input's shared-memory view into the
output's loaned slot (`dst=`), so the only pixel work is the conversion and
the drawing; the capture timestamps are carried over, so end-to-end latency
stays measurable.
"""

from __future__ import annotations

import sys

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
    src_name = sys.argv[1] if len(sys.argv) > 1 else "cam0"
    dst_name = sys.argv[2] if len(sys.argv) > 2 else f"{src_name}.annotated"
    with framebus.Reader(src_name, wait=True) as reader:
        spec = reader.spec
        with framebus.Writer(dst_name, width=spec.width, height=spec.height, format="bgr24",
                             fps=spec.fps, source=f"annotate.py from {src_name}") as writer:
            print(f"{src_name} ({spec.format} {spec.width}x{spec.height}) -> {dst_name} (bgr24)", flush=True)
            while True:
                try:
                    frame = reader.next()
                except framebus.ProducerGone:
                    print(f"{src_name}: producer gone, waiting for it to come back", flush=True)
                    continue
                with frame:
                    annotate(frame, writer)


def annotate(frame: framebus.Frame, writer: framebus.Writer) -> None:
    """Draw `frame` into a loaned slot of `writer` and publish it."""
    try:
        with writer.loan(timestamp_ns=frame.timestamp_ns, realtime_ns=frame.realtime_ns) as out:
            draw(frame, out)
    except framebus.AllSlotsHeld:
        pass  # our readers hold every slot: this frame is dropped


def draw(frame: framebus.Frame, out: np.ndarray) -> None:
    src = frame.array
    if frame.format == "bgr24":
        np.copyto(out, src)
    else:
        cv2.cvtColor(src, TO_BGR[frame.format], dst=out)
    h, w = out.shape[:2]
    cv2.rectangle(out, (w // 8, h // 8), (w * 7 // 8, h * 7 // 8), (0, 255, 0), max(2, h // 200))
    cv2.putText(out, f"frame {frame.seq}", (w // 8, h // 8 - 10), cv2.FONT_HERSHEY_SIMPLEX,
                max(0.5, h / 720), (0, 255, 255), max(1, h // 360))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

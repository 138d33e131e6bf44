"""The Python examples run against a live bus (a Python producer)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import framebus

from conftest import Children

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python")

PRODUCER = """
import sys, time
import numpy as np
import framebus
bus, fmt = sys.argv[1], sys.argv[2]
shape = {"nv12": (240 * 3 // 2, 320), "bgr24": (240, 320, 3)}[fmt]
with framebus.Writer(bus, width=320, height=240, format=fmt, fps=50) as w:
    print("up", flush=True)
    i = 0
    while True:
        f = np.full(shape, 16, np.uint8)
        f[: 240 // 2, (i * 7) % 300 : (i * 7) % 300 + 20] = 235   # a moving bar
        w.publish(f)
        i += 1
        time.sleep(0.02)
"""


def run_example(children: Children, name: str, *args: str):
    return children.python(
        f"import runpy, sys; sys.argv = {[name, *args]!r}; runpy.run_path({os.path.join(EXAMPLES, name)!r}, run_name='__main__')"
    )


def test_annotate(bus: str, children: Children) -> None:
    pytest.importorskip("cv2")
    children.python(PRODUCER, bus, "nv12").readline("producer up")
    ann = run_example(children, "annotate.py", bus, f"{bus}.annotated")
    ann.readline("annotate start")
    with framebus.Reader(f"{bus}.annotated", wait=20) as r:
        assert r.spec.format == "bgr24" and (r.spec.width, r.spec.height) == (320, 240)
        f = r.next(timeout=20)
        a = f.array
        # The green rectangle's top edge at (h/8, w/8 .. 7w/8).
        assert (a[30, 40:280] == [0, 255, 0]).all()


def test_motion_and_opencv_view(bus: str, children: Children) -> None:
    pytest.importorskip("cv2")
    children.python(PRODUCER, bus, "nv12").readline("producer up")
    m = run_example(children, "motion.py", bus, "--frames", "20")
    assert m.readline("motion start").startswith(f"watching {bus}")
    assert m.wait(timeout=60) == 0, m.stderr()
    v = run_example(children, "opencv_view.py", bus, "--frames", "10")
    assert "frames of nv12 -> BGR" in v.readline("opencv_view summary", timeout=60)
    assert v.wait(timeout=60) == 0, v.stderr()


def test_h264_through_an_encoded_bus_decodes_with_pyav(bus: str, children: Children, tmp_path) -> None:
    """Raw bus -> PyAV's libx264 (examples/h264_publish.py) -> encoded bus
    -> readers: one decodes with PyAV (FFmpeg's H.264 decoder) from its first
    keyframe on without a decode error, a late joiner starts at a keyframe
    at once, a keyframe request is answered, and h264_forward.py writes an
    Annex B stream ffprobe-able by PyAV."""
    av = pytest.importorskip("av")
    encoded = f"{bus}.h264"
    children.python(PRODUCER, bus, "nv12").readline("producer up")
    run_example(children, "h264_publish.py", bus, encoded, "--gop", "250").readline("h264_publish start")
    dec = av.CodecContext.create("h264", "r")
    with framebus.Reader(encoded, wait=20) as r:
        codec = r.codec()
        assert codec is not None and codec.time_base == (1, 90000)
        decoded = 0
        first = r.next_encoded(timeout=20)
        assert first.keyframe, "a joiner starts at a keyframe"
        packets = [bytes(codec.config) + bytes(first.array)]
        first.release()
        for _ in range(30):
            f = r.next_encoded(timeout=20)
            assert f.skipped == 0
            packets.append(bytes(f.array))
            f.release()
        for p in packets:
            for img in dec.decode(av.Packet(p)):
                assert (img.width, img.height) == (320, 240)
                decoded += 1
        assert decoded >= 25, decoded
        # A request is answered by a keyframe within a few frames (the GOP
        # is 250 frames: this one is the answer).
        r.request_keyframe()
        for _ in range(6):
            f = r.next_encoded(timeout=20)
            key = f.keyframe
            f.release()
            if key:
                break
        else:
            pytest.fail("no keyframe within 6 frames of a request")
    out = tmp_path / "out.h264"
    fw = run_example(children, "h264_forward.py", encoded, str(out), "--frames", "20")
    assert fw.wait(timeout=60) == 0, fw.stderr()
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames >= 15, frames

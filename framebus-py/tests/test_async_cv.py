"""asyncio iteration and OpenCV interop."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import framebus

W, H = 64, 48


def test_async_iteration(bus: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format="gray8") as w:
        stop = threading.Event()

        def produce() -> None:
            i = 0
            while not stop.is_set() and i < 5000:
                w.publish(np.full((H, W), i % 256, np.uint8))
                i += 1
                stop.wait(0.01)

        async def main() -> tuple:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.001)
                    ticks += 1

            t = asyncio.create_task(ticker())
            seqs = []
            async with asyncio.timeout(30) if hasattr(asyncio, "timeout") else _null():
                with framebus.Reader(bus) as r:
                    async for f in r:
                        seqs.append(f.seq)
                        assert f.array.shape == (H, W)
                        if len(seqs) == 5:
                            break
                    # An explicit timeout ends the iteration with Timeout.
                    stop.set()
                    with pytest.raises(framebus.Timeout):
                        async for f in r.aiter(timeout=0.2):
                            pass
            t.cancel()
            return seqs, ticks

        th = threading.Thread(target=produce)
        th.start()
        try:
            seqs, ticks = asyncio.run(main())
        finally:
            stop.set()
            th.join(timeout=30)
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        assert ticks > 0  # the loop kept running while frames were awaited


class _null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *a: object) -> None:
        return None


def test_opencv_on_views(bus: str) -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    cases = [
        ("nv12", (H * 3 // 2, W), cv2.COLOR_YUV2BGR_NV12),
        ("i420", (H * 3 // 2, W), cv2.COLOR_YUV2BGR_I420),
        ("yuyv", (H, W, 2), cv2.COLOR_YUV2BGR_YUYV),
        ("uyvy", (H, W, 2), cv2.COLOR_YUV2BGR_UYVY),
        ("bgr24", (H, W, 3), cv2.COLOR_BGR2GRAY),
        ("rgb24", (H, W, 3), cv2.COLOR_RGB2BGR),
    ]
    for fmt, shape, code in cases:
        name = f"{bus}-{fmt}"
        src = rng.integers(0, 256, size=shape, dtype=np.uint8)
        with framebus.Writer(name, width=W, height=H, format=fmt) as w, framebus.Reader(name) as r:
            w.publish(src)
            f = r.next(timeout=5)
            out = cv2.cvtColor(f.array, code)  # straight on the shared view
            assert np.array_equal(out, cv2.cvtColor(src, code)), fmt

"""An audio bus from the real producer (docs/audio.md): numpy int16
chunks `(samples, channels)` read in place, next to the picture's frames,
on the same clocks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import framebus

REPO = Path(__file__).resolve().parents[2]
PRODUCER = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "framebus-producer"


@pytest.fixture
def producer(bus: str):
    if not PRODUCER.exists():
        pytest.fail(f"{PRODUCER} is not built (make test builds it before the Python tests)")
    p = subprocess.Popen(
        [str(PRODUCER), "--bus", bus, "--size", "320x240", "--audio", "tone", "--audio-channels", "2"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    yield p
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def test_audio_chunks_are_int16_arrays_next_to_the_frames(bus: str, producer: subprocess.Popen) -> None:
    with framebus.Reader(f"{bus}.audio", wait=30.0) as audio, framebus.Reader(bus, wait=30.0) as video:
        spec = audio.spec
        assert spec.is_audio and spec.format == "s16le"
        assert (spec.sample_rate, spec.channels, spec.chunk_samples) == (48000, 2, 960)
        assert "sample_rate=48000" in repr(spec)
        assert not video.spec.is_audio and video.spec.sample_rate == 0

        chunks = []
        for _ in range(60):  # 1.2 s: at least one whole second's beep
            f = audio.next_encoded(timeout=10)
            chunks.append((f.realtime_ns, f.array.copy()))
            a = f.array
            assert a.dtype == np.int16 and a.shape == (960, 2)
            assert not a.flags.writeable
            f.release()
        # In order and contiguous: 20 ms apart.
        steps = {b[0] - a[0] for a, b in zip(chunks, chunks[1:])}
        assert steps == {20_000_000}
        # The beep: both channels, loud, starting at a whole second.
        loud = [(t, a) for t, a in chunks if np.abs(a).max() > 8000]
        assert loud, "no beep in 1.2 s"
        t, a = loud[0]
        assert (a[:, 0] == a[:, 1]).all()
        first = int(np.flatnonzero(a[:, 0])[0])
        onset = t + first * 1_000_000_000 // 48000
        into = onset % 1_000_000_000
        assert min(into, 1_000_000_000 - into) <= 21_000, into

        # The picture on the same wall clock.
        frame = video.next(timeout=10)
        assert abs(frame.realtime_ns - chunks[-1][0]) < 2_000_000_000

"""Writer -> reader round trips in one process: shapes for every format,
zero-copy views, holds, release, errors."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import framebus

W, H = 64, 48

SHAPES = {
    "gray8": (H, W),
    "rgb24": (H, W, 3),
    "bgr24": (H, W, 3),
    "yuyv": (H, W, 2),
    "uyvy": (H, W, 2),
    "nv12": (H * 3 // 2, W),
    "i420": (H * 3 // 2, W),
}


def pattern(shape: tuple, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize("fmt", sorted(SHAPES))
def test_round_trip_every_raw_format(bus: str, fmt: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format=fmt, fps=30) as w:
        with framebus.Reader(bus) as r:
            assert r.spec.format == fmt and (r.spec.width, r.spec.height) == (W, H)
            for i in range(3):
                src = pattern(SHAPES[fmt], i)
                seq = w.publish(src)
                f = r.next(timeout=5)
                assert f.seq == seq and f.format == fmt
                assert f.array.shape == SHAPES[fmt] and f.array.dtype == np.uint8
                assert np.array_equal(f.array, src)
                assert not f.array.flags.writeable
                f.release()


@pytest.mark.parametrize("fmt", sorted(SHAPES))
def test_loan_round_trip_every_raw_format(bus: str, fmt: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format=fmt) as w, framebus.Reader(bus) as r:
        src = pattern(SHAPES[fmt], 7)
        loan = w.loan(timestamp_ns=123, realtime_ns=456)
        with loan as buf:
            assert buf.shape == SHAPES[fmt] and buf.flags.writeable
            buf[...] = src
        assert not buf.flags.writeable  # the loan ended: no more writes
        assert loan.seq == 1
        del buf
        f = r.next(timeout=5)
        assert (f.timestamp_ns, f.realtime_ns) == (123, 456)
        assert np.array_equal(f.array, src)


def test_mjpeg_variable_length(bus: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format="mjpeg") as w, framebus.Reader(bus) as r:
        payload = b"\xff\xd8" + bytes(range(200)) + b"\xff\xd9"
        w.publish(payload)
        f = r.next(timeout=5)
        assert f.array.shape == (len(payload),) and f.array.tobytes() == payload
        loan = w.loan()
        with loan as buf:
            assert buf.ndim == 1 and buf.shape[0] == w.slot_capacity
            buf[:4] = [1, 2, 3, 4]
            loan.set_len(4)
        del buf
        assert r.next(timeout=5).array.tolist() == [1, 2, 3, 4]


def test_planes(bus: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format="nv12") as w, framebus.Reader(bus) as r:
        src = pattern((H * 3 // 2, W), 3)
        w.publish(src)
        f = r.next(timeout=5)
        y, uv = f.planes
        assert y.shape == (H, W) and uv.shape == (H // 2, W // 2, 2)
        assert np.array_equal(y, src[:H])
        assert np.array_equal(uv.reshape(H // 2, W), src[H:])
    bus2 = bus + "-i420"
    with framebus.Writer(bus2, width=W, height=H, format="i420") as w, framebus.Reader(bus2) as r:
        src = pattern((H * 3 // 2, W), 4)
        w.publish(src)
        y, u, v = r.next(timeout=5).planes
        flat = src.reshape(-1)
        assert np.array_equal(y.reshape(-1), flat[: W * H])
        assert np.array_equal(u.reshape(-1), flat[W * H : W * H + W * H // 4])
        assert np.array_equal(v.reshape(-1), flat[W * H + W * H // 4 :])


def test_array_is_zero_copy(bus: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format="bgr24") as w, framebus.Reader(bus) as r:
        with w.loan() as buf:
            buf[...] = 9
            slot_address = buf.__array_interface__["data"][0]
        del buf
        f = r.next(timeout=5)
        a = f.array
        assert not a.flags.owndata and not a.flags.writeable
        assert a.base is not None and not isinstance(a.base, np.ndarray)
        start = a.__array_interface__["data"][0]
        end = start + a.nbytes - 1
        assert f._in_mapping(start) and f._in_mapping(end)
        assert not f._in_mapping(id(a))
        # The writer filled its mapping of the slot in place; the reader's
        # view of its own mapping of the same slot shows those bytes.
        assert slot_address != 0 and (a == 9).all()
        with pytest.raises(ValueError):
            a.flags.writeable = True
        with pytest.raises(ValueError):
            a[0, 0, 0] = 1
        c = f.copy()
        assert c.flags.owndata and np.array_equal(c, a)


def test_view_keeps_slot_held(bus: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format="gray8", slots=4, max_held=2) as w:
        with framebus.Reader(bus) as r:
            w.publish(np.full((H, W), 1, np.uint8))
            f = r.next(timeout=5)
            a = f.array[10:20, 5:]  # a slice of the view
            slot = f._slot
            f.release()
            assert f.released
            with pytest.raises(framebus.Released):
                f.array
            with pytest.raises(framebus.Released):
                f.copy()
            # The slice keeps the slot: many publishes never touch it.
            for i in range(2, 30):
                w.publish(np.full((H, W), i % 256, np.uint8))
            assert (a == 1).all()
            del a
            gc.collect()
            # Released for good: the writer cycles through every slot again.
            seen = set()
            for i in range(40):
                w.publish(np.full((H, W), i, np.uint8))
                g = r.latest()
                assert g is not None
                seen.add(g._slot)
                g.release()
            assert slot in seen


def test_frame_context_manager_and_metadata(bus: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format="gray8", fps=30) as w, framebus.Reader(bus) as r:
        for _ in range(3):
            w.publish(np.zeros((H, W), np.uint8))
        with r.next(timeout=5) as f:
            assert f.seq == 3 and f.skipped == 0 and f.key
            assert f.width == W and f.height == H and f.nbytes == W * H
            assert f.timestamp_ns > 0 and f.realtime_ns > 0
        assert f.released
        w.publish(np.zeros((H, W), np.uint8))
        w.publish(np.zeros((H, W), np.uint8))
        f = r.next(timeout=5)
        assert f.seq == 5 and f.skipped == 1
        assert r.latest().seq == 5  # type: ignore[union-attr]
        assert r.try_next() is None


def test_timeout(bus: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format="gray8"):
        with framebus.Reader(bus, timeout=0.05) as r:
            with pytest.raises(framebus.Timeout, match=bus):
                r.next()
            with pytest.raises(framebus.Timeout):
                next(iter(r))


def test_errors_missing_bus_and_bad_name(bus: str) -> None:
    with pytest.raises(framebus.BusNotFound, match=bus):
        framebus.Reader(bus)
    with pytest.raises(framebus.Timeout, match=bus):
        framebus.Reader(bus, wait=0.1)
    for bad in ["", "Cam0", "a/b", "x" * 64, "-x"]:
        with pytest.raises(framebus.InvalidName):
            framebus.Reader(bad)
        with pytest.raises(framebus.InvalidName):
            framebus.Writer(bad, width=W, height=H, format="gray8")
    assert issubclass(framebus.InvalidName, framebus.FramebusError)


def test_errors_format_and_exists(bus: str) -> None:
    with pytest.raises(framebus.FormatError, match="hevc"):
        framebus.Writer(bus, width=W, height=H, format="hevc")
    with pytest.raises(framebus.FormatError, match=bus):
        framebus.Writer(bus, width=63, height=H, format="nv12")
    with pytest.raises(framebus.InvalidOptions, match=bus):
        framebus.Writer(bus, width=W, height=H, format="gray8", slots=1)
    with framebus.Writer(bus, width=W, height=H, format="gray8") as w:
        with pytest.raises(framebus.BusExists, match=bus):
            framebus.Writer(bus, width=W, height=H, format="gray8")
        with pytest.raises(framebus.FormatError, match=bus):
            w.publish(np.zeros((H, W + 1), np.uint8))
        with pytest.raises(framebus.FormatError):
            w.publish(np.zeros((W, H), np.uint8).T)  # not C-contiguous
        with pytest.raises(framebus.FormatError):
            w.publish("text")  # type: ignore[arg-type]


def test_corrupt_segment(bus: str, shm_dir: str) -> None:
    path = os.path.join(shm_dir, f"framebus.{bus}")
    with open(path, "wb") as f:
        f.write(os.urandom(8192))
    try:
        with pytest.raises(framebus.CorruptBus, match=bus):
            framebus.Reader(bus)
        with open(path, "wb") as f:
            f.write(b"short")
        with pytest.raises(framebus.CorruptBus, match=bus):
            framebus.Reader(bus)
        with pytest.raises(framebus.CorruptBus, match=bus):
            framebus.Writer(bus, width=W, height=H, format="gray8")
    finally:
        os.unlink(path)


def test_loan_abandoned_on_exception(bus: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format="gray8") as w, framebus.Reader(bus) as r:
        with pytest.raises(RuntimeError):
            with w.loan() as buf:
                buf[...] = 5
                raise RuntimeError("boom")
        del buf
        assert r.try_next() is None and w.last_seq == 0
        loan = w.loan()
        with pytest.raises(framebus.FramebusError, match="loan"):
            w.loan()
        with pytest.raises(framebus.FramebusError, match="loan"):
            w.publish(np.zeros((H, W), np.uint8))
        loan.abandon()
        with pytest.raises(framebus.Released):
            loan.publish()
        assert w.publish(np.zeros((H, W), np.uint8)) == 1


def test_writer_close_and_list(bus: str, shm_dir: str) -> None:
    w = framebus.Writer(bus, width=W, height=H, format="nv12", fps=60, source="pytest")
    r = framebus.Reader(bus)
    names = {b["name"]: b for b in framebus.list_buses()}
    assert names[bus]["format"] == "nv12" and names[bus]["producer_alive"]
    assert names[bus]["source"] == "pytest" and len(names[bus]["readers"]) == 1
    assert framebus.list_buses(shm_dir=shm_dir)
    w.close()
    assert w.closed
    with pytest.raises(framebus.ProducerGone, match=bus):
        r.next(timeout=5)
    with pytest.raises(framebus.Released):
        w.publish(np.zeros((H * 3 // 2, W), np.uint8))
    r.close()
    with pytest.raises(framebus.Released):
        r.next()
    assert bus not in {b["name"] for b in framebus.list_buses()}


def test_writer_close_is_immediate_even_with_loan_buffers_alive(bus: str) -> None:
    w = framebus.Writer(bus, width=W, height=H, format="gray8")
    r = framebus.Reader(bus)
    with w.loan() as buf:
        buf[...] = 3
    w.close()
    assert w.closed  # closed at once, although buf still points into the mapping
    assert r.next(timeout=5).seq == 1  # what was published before still arrives
    with pytest.raises(framebus.ProducerGone, match=bus):
        r.next(timeout=5)
    assert bus not in {b["name"] for b in framebus.list_buses()}
    assert buf[0, 0] == 3  # still mapped: readable, never a crash
    del buf
    gc.collect()
    r.close()

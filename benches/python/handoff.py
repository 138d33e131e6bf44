"""Hand-off latency of a frame into Python, and the per-frame overhead of
`for f in reader: f.array`.

Run with: .venv/bin/python benches/python/handoff.py [--frames 600] [--fps 60] [--size 1920x1080]

Every method runs in this one invocation, against the same frame size and
rate, with a producer in another process that stamps each frame with
CLOCK_MONOTONIC just before handing it over; the reader (this process)
subtracts that stamp from the time it holds a usable numpy view:

- framebus: a Python `framebus.Writer` publishes NV12 frames in place
  (`loan()`), this process reads them with `for f in reader: f.array`.
- mp.shared_memory+Queue: the usual way (Frigate-style): frames in a
  `multiprocessing.shared_memory` ring, the slot index and stamp sent
  through a `multiprocessing.Queue`, the reader builds an `np.ndarray` on the
  shared buffer.
- eventfd floor: the bare cross-process wake-up from Python: the producer
  writes the stamp into shared memory and signals an `os.eventfd`; the
  reader blocks in `os.eventfd_read`. No frame, no numpy: the floor that any
  hand-off into Python pays.

The per-frame overhead is measured in-process with frames already waiting:
the time of `f = next(it); f.array; del f` (no waiting, no copy).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import struct
import sys
import time
import uuid
from multiprocessing import shared_memory

import numpy as np

import framebus

CTX = mp.get_context("fork")


def pace(fps: float, n: int):
    """Yield `n` times at `fps`, sleeping until each absolute deadline."""
    period = 1.0 / fps
    t = time.monotonic() + 0.2
    for i in range(n):
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield i
        t += period


# --- framebus ---------------------------------------------------------------


def fb_producer(bus: str, w: int, h: int, fps: float, n: int, ready, stop) -> None:
    with framebus.Writer(bus, width=w, height=h, format="nv12", fps=fps, source="handoff bench") as wr:
        ready.set()
        # Runs until the reader has its frames (it may skip some: latest-
        # frame semantics), bounded by 3x the frames asked for.
        for i in pace(fps, 3 * n):
            if stop.is_set():
                break
            try:
                loan = wr.loan()
            except framebus.AllSlotsHeld:
                continue
            loan.array[0, :8] = i & 0xFF  # touch the frame, as a capture would
            # Stamp, then hand over: the same two steps as the eventfd floor.
            loan.publish(timestamp_ns=time.monotonic_ns())
            del loan


def bench_framebus(w: int, h: int, fps: float, n: int, warmup: int) -> np.ndarray:
    bus = f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ready, stop = CTX.Event(), CTX.Event()
    p = CTX.Process(target=fb_producer, args=(bus, w, h, fps, n + warmup, ready, stop), daemon=True)
    p.start()
    try:
        if not ready.wait(30):
            raise SystemExit("framebus producer did not start")
        lat = []
        with framebus.Reader(bus, wait=10, timeout=5) as r:
            for f in r:
                a = f.array
                lat.append(time.monotonic_ns() - f.timestamp_ns)
                del a, f
                if len(lat) == n + warmup:
                    break
        return np.array(lat[warmup:]) / 1e3
    finally:
        stop.set()
        p.join(10)
        if p.is_alive():
            p.kill()


def fb_overhead(w: int, h: int, n: int) -> np.ndarray:
    bus = f"bench-ovh-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    out = []
    with framebus.Writer(bus, width=w, height=h, format="nv12") as wr, framebus.Reader(bus) as r:
        it = iter(r)
        for _ in range(n):
            wr.loan().publish()
            t0 = time.perf_counter_ns()
            f = next(it)
            f.array
            del f
            out.append(time.perf_counter_ns() - t0)
    return np.array(out[n // 10 :]) / 1e3


# --- multiprocessing.shared_memory + Queue ------------------------------------


def mp_producer(shm_name: str, slots: int, size: int, fps: float, n: int, q, ready) -> None:
    shm = shared_memory.SharedMemory(name=shm_name)
    buf = np.ndarray((slots, size), np.uint8, buffer=shm.buf)
    ready.set()
    for i in pace(fps, n):
        s = i % slots
        buf[s, :8] = i & 0xFF
        q.put((s, time.monotonic_ns()))
    q.put(None)
    del buf
    shm.close()


def bench_mp(w: int, h: int, fps: float, n: int, warmup: int) -> np.ndarray:
    size, slots = w * h * 3 // 2, 8
    shm = shared_memory.SharedMemory(create=True, size=size * slots)
    q = CTX.Queue()
    ready = CTX.Event()
    p = CTX.Process(target=mp_producer, args=(shm.name, slots, size, fps, n + warmup, q, ready), daemon=True)
    p.start()
    try:
        if not ready.wait(30):
            raise SystemExit("mp producer did not start")
        lat = []
        while True:
            item = q.get(timeout=5)
            if item is None:
                break
            s, t = item
            a = np.ndarray((h * 3 // 2, w), np.uint8, buffer=shm.buf, offset=s * size)
            lat.append(time.monotonic_ns() - t)
            del a
        return np.array(lat[warmup:]) / 1e3
    finally:
        p.join(10)
        if p.is_alive():
            p.kill()
        shm.close()
        shm.unlink()


# --- eventfd floor ------------------------------------------------------------


def efd_producer(efd: int, shm_name: str, fps: float, n: int) -> None:
    shm = shared_memory.SharedMemory(name=shm_name)
    buf = shm.buf
    assert buf is not None
    for _ in pace(fps, n):
        struct.pack_into("q", buf, 0, time.monotonic_ns())
        os.eventfd_write(efd, 1)
    struct.pack_into("q", buf, 0, -1)
    del buf
    os.eventfd_write(efd, 1)
    shm.close()


def bench_eventfd(fps: float, n: int, warmup: int) -> np.ndarray:
    if not hasattr(os, "eventfd"):
        return np.array([])
    efd = os.eventfd(0)
    shm = shared_memory.SharedMemory(create=True, size=8)
    p = CTX.Process(target=efd_producer, args=(efd, shm.name, fps, n + warmup), daemon=True)
    p.start()
    buf = shm.buf
    assert buf is not None
    try:
        lat = []
        while True:
            os.eventfd_read(efd)
            now = time.monotonic_ns()
            (t,) = struct.unpack_from("q", buf, 0)
            if t < 0:
                break
            lat.append(now - t)
        return np.array(lat[warmup:]) / 1e3
    finally:
        p.join(10)
        if p.is_alive():
            p.kill()
        del buf
        shm.close()
        shm.unlink()
        os.close(efd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--fps", type=float, default=60.0)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every method")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    warmup = 30

    print(f"# hand-off into Python, {w}x{h} NV12 at {args.fps:g} fps, {args.frames} frames each "
          f"(python {sys.version.split()[0]}, numpy {np.__version__}, framebus {framebus.__version__})")
    ovh = fb_overhead(w, h, 20000)
    # Interleaved rounds, so a burst of load on the machine hits every
    # method alike.
    rounds = max(1, args.rounds)
    per = max(50, args.frames // rounds)
    floor_l, fb_l, usual_l = [], [], []
    for _ in range(rounds):
        floor_l.append(bench_eventfd(args.fps, per, warmup))
        fb_l.append(bench_framebus(w, h, args.fps, per, warmup))
        usual_l.append(bench_mp(w, h, args.fps, per, warmup))
    floor, fb, usual = (np.concatenate(x) for x in (floor_l, fb_l, usual_l))

    def row(name: str, us: np.ndarray) -> tuple:
        p50, p99 = np.percentile(us, 50), np.percentile(us, 99)
        return name, p50, p99

    rows = [row("eventfd wake-up floor", floor)] if floor.size else []
    rows += [row("framebus Reader", fb), row("mp.shared_memory + mp.Queue", usual)]
    base = rows[0][1]
    print(f"{'method':32} {'p50 µs':>9} {'p99 µs':>9} {'p50 / floor':>12}")
    for name, p50, p99 in rows:
        print(f"{name:32} {p50:9.1f} {p99:9.1f} {p50 / base:11.2f}x")
    fb_p50 = rows[-2][1]
    print(f"mp.shared_memory+Queue / framebus (p50): {rows[-1][1] / fb_p50:.1f}x")
    print(f"per-frame overhead of `f = next(it); f.array` (frame waiting): "
          f"p50 {np.percentile(ovh, 50):.2f} µs, p99 {np.percentile(ovh, 99):.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-frame cost of a Python writer's loan at 1920x1080 NV12, with and
without a view escaping the loan (which makes the writer seal the slot).

Run with: `.venv/bin/python benches/python/loan_cost.py [--frames 300]`

Baseline in the same run: one numpy copy of a frame into a plain array
(what any copying hand-off costs per frame), so each figure is also given as
a ratio to it. Prints medians over `--frames` loans after 30 of warm-up.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable, List

import numpy as np

import framebus


def median_us(body: Callable[[int], None], frames: int) -> float:
    times: List[int] = []
    for i in range(frames + 30):
        t = time.perf_counter_ns()
        body(i)
        times.append(time.perf_counter_ns() - t)
    kept = sorted(times[30:])
    return kept[len(kept) // 2] / 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    w = framebus.Writer(f"bench-loan-{os.getpid()}", width=1920, height=1080, format="nv12", fps=60)
    src = np.full((1620, 1920), 3, np.uint8)
    dst = np.empty_like(src)

    def copy(i: int) -> None:
        dst[...] = src

    def touch(i: int) -> None:
        with w.loan() as a:
            a[0, :8] = i & 0xFF

    def fill(i: int) -> None:
        with w.loan() as a:
            a[...] = src

    def touch_escaping(i: int) -> None:
        with w.loan() as a:
            a[0, :8] = i & 0xFF
            kept = a[0:1]  # a view still alive when the loan ends
            del kept

    def touch_escaped(i: int) -> None:
        with w.loan() as a:
            a[0, :8] = i & 0xFF
            touch_escaped.kept = a[0:1]  # type: ignore[attr-defined]

    def fill_escaped(i: int) -> None:
        with w.loan() as a:
            a[...] = src
            fill_escaped.kept = a[0:1]  # type: ignore[attr-defined]

    def publish_copy(i: int) -> None:
        w.publish(src)

    base = median_us(copy, args.frames)
    rows = [
        ("numpy copy of a frame (baseline)", base),
        ("loan, touch 8 bytes", median_us(touch, args.frames)),
        ("loan, touch 8 bytes, view dropped in the block", median_us(touch_escaping, args.frames)),
        ("loan, fill the frame", median_us(fill, args.frames)),
        ("publish(array) (a copy)", median_us(publish_copy, args.frames)),
        ("loan, touch 8 bytes, a view escapes (sealed)", median_us(touch_escaped, args.frames)),
        ("loan, fill the frame, a view escapes (sealed)", median_us(fill_escaped, args.frames)),
    ]
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"1920x1080 NV12, {args.frames} loans each, load average {load}")
    print(f"{'what':48s} {'p50 µs':>9s} {'/ copy':>8s}")
    for what, us in rows:
        print(f"{what:48s} {us:9.1f} {us / base:7.2f}x")
    w.close()


if __name__ == "__main__":
    main()

"""Encoder figures (issue 13): what an idle framebus-encoder costs, and how
soon a new reader of its encoded bus has a keyframe in hand.

Run with (from the repository root, after `make build` and `make wheel`):

    make bench-encoder                   # = .venv/bin/python benches/encoder/bench.py
    .venv/bin/python benches/encoder/bench.py --quick   # harness check, ~1 min

Setup: `framebus-producer` test pattern 1920x1080@30 NV12 into a fresh bus,
`framebus-encoder --profile bench=1920x1080@30,bitrate=4M,gop=60 --encoder
libx264` writing `BUS.h264.bench`. Figures, each beside its baseline from
the same run:

  * idle CPU: the encoder with no reader for --idle-secs (10 s), % of one
    core from /proc/PID/stat utime+stime, against the producer's CPU over
    the same window (the producer is the cheapest always-on process);
    then the encoder with one Python packet reader (this script, reading
    every access unit in order), and each access unit's age when the reader
    has it (capture time painted by the producer → `next_encoded()`
    returned: the encoder's share of glass-to-glass latency);
  * attach to first keyframe: --trials (10) times, with the encoder idle
    before each (no reader, its grace over, its CPU flat), the time from
    `framebus.Reader(encoded_bus)` to `next_encoded()` returning a keyframe,
    p50 and max, against the profile's frame interval (33.3 ms at 30 fps);
    also the keyframe's age (capture time painted by the producer to the
    frame in hand).

Every process runs in its own process group and is killed on exit; the
buses are removed with `framebus rm --force`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import framebus

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from procs import HZ, cpu_ticks, kill_all, spawn, wait_path  # noqa: E402
def cpu(pids: dict[str, int], secs: float) -> dict[str, float]:
    """% of one core of each process over secs."""
    t0, c0 = time.monotonic(), {k: cpu_ticks(p) for k, p in pids.items()}
    time.sleep(secs)
    t1, c1 = time.monotonic(), {k: cpu_ticks(p) for k, p in pids.items()}
    return {k: 100.0 * (c1[k] - c0[k]) / HZ / (t1 - t0) for k in pids}


def wait_idle(pid: int, grace: float, timeout: float = 30.0) -> float:
    """Wait until the encoder has stopped encoding: its grace is over and
    it used at most one clock tick in half a second (encoding 1080p takes
    several per half second). Returns the seconds waited."""
    t0 = time.monotonic()
    time.sleep(grace + 0.3)
    while time.monotonic() - t0 < timeout:
        a = cpu_ticks(pid)
        time.sleep(0.5)
        if cpu_ticks(pid) - a <= 1:
            return time.monotonic() - t0
    sys.exit(f"the encoder (pid {pid}) did not go idle within {timeout:g} s")


def first_keyframe(ebus: str) -> tuple[float, float, int]:
    """ms from Reader() to a keyframe in hand, the keyframe's age in ms
    (its capture time to now, CLOCK_REALTIME), frames taken before it."""
    t0 = time.perf_counter()
    with framebus.Reader(ebus, wait=5.0) as r:
        n = 0
        while True:
            f = r.next_encoded(timeout=5.0)
            n += 1
            if f.keyframe:
                t1 = time.perf_counter()
                age = (time.time_ns() - f.realtime_ns) / 1e6
                f.release()
                return (t1 - t0) * 1000.0, age, n
            f.release()


def read_all(ebus: str, secs: float, pids: dict[str, int]) -> tuple[dict[str, float], list[float]]:
    """Read every access unit for 2 s (warm-up), then for secs: CPU of pids
    over that window and each access unit's age (capture → in hand), ms."""
    ages: list[float] = []
    with framebus.Reader(ebus, wait=5.0) as r:
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            r.next_encoded(timeout=5.0).release()
        t0, c0 = time.monotonic(), {k: cpu_ticks(p) for k, p in pids.items()}
        while time.monotonic() - t0 < secs:
            f = r.next_encoded(timeout=5.0)
            ages.append((time.time_ns() - f.realtime_ns) / 1e6)
            f.release()
        t1, c1 = time.monotonic(), {k: cpu_ticks(p) for k, p in pids.items()}
    return {k: 100.0 * (c1[k] - c0[k]) / HZ / (t1 - t0) for k in pids}, ages


def q(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def _on_signal(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)  # runs the finally: in main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--quick", action="store_true", help="harness check: --idle-secs 4 --trials 4")
    ap.add_argument("--idle-secs", type=float, help="idle window (default 10, quick 4)")
    ap.add_argument("--trials", type=int, help="attach-to-keyframe trials (default 10, quick 4)")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=30, help="source and profile rate")
    ap.add_argument("--grace", type=float, default=0.5,
                    help="framebus-encoder --grace for the run (idle sooner between trials)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    a.idle_secs = a.idle_secs or (4.0 if a.quick else 10.0)
    a.trials = a.trials or (4 if a.quick else 10)
    bins = {b: os.path.join(a.target_dir, b) for b in ("framebus-producer", "framebus-encoder", "framebus")}
    for b in bins.values():
        if not os.access(b, os.X_OK):
            sys.exit(f"missing binary: {b} (make build)")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    bus = f"bench-enc-{os.getpid()}"
    ebus = f"{bus}.h264.bench"
    profile = f"bench={a.size}@{a.fps},bitrate=4M,gop=60"
    load_before = os.getloadavg()
    try:
        prod = spawn([bins["framebus-producer"], "--bus", bus, "--size", a.size, "--fps", str(a.fps)])
        wait_path(f"/dev/shm/framebus.{bus}")
        enc = spawn([bins["framebus-encoder"], "--bus", bus, "--profile", profile, "--encoder", "libx264",
                     "--grace", str(a.grace)])
        wait_path(f"/dev/shm/framebus.{ebus}")
        time.sleep(1.0)  # past the encoder's start-up
        idle = cpu({"encoder": enc.pid, "producer": prod.pid}, a.idle_secs)
        print(f"idle: {idle}", flush=True)
        active, au_ages = read_all(ebus, a.idle_secs, {"encoder": enc.pid, "producer": prod.pid,
                                                        "reader": os.getpid()})
        print(f"one packet reader: {active}, {len(au_ages)} access units", flush=True)
        trials = []
        for i in range(a.trials):
            waited = wait_idle(enc.pid, a.grace)
            took, age, n = first_keyframe(ebus)
            trials.append({"ms": took, "age_ms": age, "frames_taken": n, "idle_wait_s": round(waited, 2)})
            print(f"trial {i + 1}: keyframe in hand after {took:.1f} ms (age {age:.1f} ms, "
                  f"{n} frame(s) taken)", flush=True)
        load_after = os.getloadavg()
    finally:
        kill_all()
        for name in (ebus, bus):
            if os.path.exists(f"/dev/shm/framebus.{name}"):
                subprocess.run([bins["framebus"], "rm", "--force", name], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)
    interval = 1000.0 / a.fps
    ms = [t["ms"] for t in trials]
    ages = [t["age_ms"] for t in trials]
    print()
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} "
          f"(`uptime`; a figure taken above ~1 is a harness check, not a result)")
    print()
    print(f"| encoder figure ({profile}, libx264) | framebus-encoder | baseline (same run) | ratio |")
    print("|---|---:|---|---:|")
    ratio = f"{idle['encoder'] / idle['producer']:.2f}" if idle["producer"] else "n/a (producer 0 ticks)"
    print(f"| CPU idle, no reader, {a.idle_secs:g} s, % of one core | {idle['encoder']:.2f} "
          f"| producer {a.size}@{a.fps}: {idle['producer']:.2f} | {ratio} |")
    print(f"| CPU with one Python packet reader, % of one core | {active['encoder']:.1f} "
          f"| producer: {active['producer']:.2f}; the reader: {active['reader']:.2f} | |")
    print(f"| capture → access unit in the reader's hand, p50 / p99 of {len(au_ages)} "
          f"| {q(au_ages, 0.5):.1f} / {q(au_ages, 0.99):.1f} ms | frame interval {interval:.1f} ms "
          f"| {q(au_ages, 0.5) / interval:.2f} |")
    print(f"| attach → first keyframe in hand, p50 of {len(ms)} (encoder idle before each) | {q(ms, 0.5):.1f} ms "
          f"| frame interval {interval:.1f} ms | {q(ms, 0.5) / interval:.2f} |")
    print(f"| attach → first keyframe in hand, max | {max(ms):.1f} ms | frame interval {interval:.1f} ms "
          f"| {max(ms) / interval:.2f} |")
    print(f"| that keyframe's age (capture → in hand), p50 / max | {q(ages, 0.5):.1f} / {max(ages):.1f} ms "
          f"| frame interval {interval:.1f} ms | {q(ages, 0.5) / interval:.2f} |")
    print(f"\n(trials: {', '.join(f'{x:.1f}' for x in ms)} ms; mean {statistics.mean(ms):.1f})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"load_before": load_before, "load_after": load_after, "idle": idle, "active": active,
                       "au_age_ms": {"p50": q(au_ages, 0.5), "p99": q(au_ages, 0.99), "n": len(au_ages)},
                       "trials": trials, "interval_ms": interval, "profile": profile}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

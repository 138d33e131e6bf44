"""Multi-process behaviour: crashed readers, crashed and restarted
producers, Ctrl-C while blocked."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

import framebus

from conftest import Children

W, H = 64, 48

PRODUCER = """
import sys, time
import numpy as np
import framebus
bus, gen = sys.argv[1], int(sys.argv[2])
with framebus.Writer(bus, width=64, height=48, format="gray8", fps=100) as w:
    print("up", flush=True)
    while True:
        w.publish(np.full((48, 64), gen, np.uint8))
        time.sleep(0.01)
"""


def test_reader_killed_while_holding_arrays(bus: str, children: Children) -> None:
    slots = 4
    with framebus.Writer(bus, width=W, height=H, format="gray8", slots=slots, max_held=2) as w:
        w.publish(np.zeros((H, W), np.uint8))
        child = children.python(
            """
            import sys, time, framebus
            r = framebus.Reader(sys.argv[1])
            a = r.next(timeout=10).array          # hold one slot through an array
            print("first", flush=True)
            sys.stdin.readline()                  # parent publishes another frame
            f = r.next(timeout=10)
            b = f.array[1:, 1:]                   # and one through a slice
            print(f"held {f._slot}", flush=True)
            time.sleep(600)
            """,
            bus,
        )
        child.readline("first frame")
        w.publish(np.ones((H, W), np.uint8))
        child.send("go")
        child.readline("held slots")

        def slots_used(n: int) -> set:
            seen = set()
            with framebus.Reader(bus) as r:
                for i in range(n):
                    try:
                        w.publish(np.full((H, W), i % 256, np.uint8))
                    except framebus.AllSlotsHeld:
                        continue
                    f = r.latest()
                    assert f is not None
                    seen.add(f._slot)
                    f.release()
                    if len(seen) == slots:
                        break
                    time.sleep(0.005)
            return seen

        # While the reader lives, the writer keeps off its two slots.
        assert len(slots_used(50)) == slots - 2
        child.proc.send_signal(signal.SIGKILL)
        child.wait()
        # The dead reader's holds are reclaimed (its lock went with it): the
        # writer reuses every slot again. Bounded: ~10 s of publishing.
        assert len(slots_used(2000)) == slots
        info = {b["name"]: b for b in framebus.list_buses()}[bus]
        assert all(r["held"] == 0 for r in info["readers"])


def test_producer_killed_and_restarted(bus: str, children: Children) -> None:
    p1 = children.python(PRODUCER, bus, "1")
    p1.readline("producer up")
    with framebus.Reader(bus, wait=10) as r:
        assert r.next(timeout=10).array[0, 0] == 1
        # Kill the producer while the reader is blocked in next().
        killer = threading.Timer(0.2, p1.proc.send_signal, args=(signal.SIGKILL,))
        killer.start()
        try:
            with pytest.raises(framebus.ProducerGone, match=bus):
                for _ in range(10_000):
                    r.next(timeout=10)
        finally:
            killer.cancel()
        p1.wait()
        assert not r.connected
        p2 = children.python(PRODUCER, bus, "2")
        p2.readline("second producer up")
        # The same reader re-attaches by itself and sees the new frames.
        f = r.next(timeout=10)
        assert f.array[0, 0] == 2 and r.connected
        assert f.seq < 1000  # the new producer's sequence numbers


INTERRUPTIBLE = """
import signal, sys, framebus
# A shell starts background jobs with SIGINT ignored, and Python keeps an
# inherited SIG_IGN: install the usual handler so the test does not depend
# on how pytest was started.
signal.signal(signal.SIGINT, signal.default_int_handler)
bus, how = sys.argv[1], sys.argv[2]
r = framebus.Reader(bus) if how != "attach" else None
print("ready", flush=True)
try:
    if how == "next":
        r.next()
    elif how == "iter":
        for frame in r:
            pass
    else:
        framebus.Reader(bus + "-never", wait=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(0)
print("not interrupted", flush=True)
sys.exit(3)
"""


@pytest.mark.parametrize("how", ["next", "iter", "attach"])
def test_ctrl_c_while_blocked(bus: str, children: Children, how: str) -> None:
    with framebus.Writer(bus, width=W, height=H, format="gray8"):  # never publishes
        child = children.python(INTERRUPTIBLE, bus, how)
        child.readline("ready")
        time.sleep(0.3)  # let it block (a SIGINT earlier would also pass)
        child.proc.send_signal(signal.SIGINT)
        # Generous watchdog, not a timing assertion.
        assert child.readline("KeyboardInterrupt", timeout=20) == "interrupted"
        assert child.wait() == 0

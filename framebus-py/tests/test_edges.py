"""Edge cases that failed before the core's fix (issue 12): numpy views
that outlive a loan (defect 1), handles inherited across fork() (defect 2),
and capture timestamps from another clock (defect 6).

Each test here fails against the core before commit 88f51b0 (or, for the
fork tests, against a Python package without `framebus.ForkedError`); the
docstrings say how."""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import os
import select
import signal
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np
import pytest

import framebus

W, H = 64, 48
NV12 = (H * 3 // 2, W)

# --- defect 1: views that outlive a loan --------------------------------------

# Ways Python code keeps a writable handle on a loaned slot past `publish()`.
# The loan's own array turns read-only when the loan ends; none of these do.
STALE_VIEWS: Dict[str, Callable[[Any], Any]] = {
    "row slice": lambda a: a[0:10],
    "Y plane": lambda a: a[:H],
    "UV plane": lambda a: a[H:].reshape(H // 2, W // 2, 2),
    "ndarray.view()": lambda a: a.view(),
    "memoryview": lambda a: memoryview(a).cast("B"),
    "np.asarray(memoryview)": lambda a: np.asarray(memoryview(a)),
}


def scribble(view: Any, value: int) -> None:
    """Write `value` everywhere through a stale view."""
    if isinstance(view, memoryview):
        view[:] = bytes([value]) * len(view)
    else:
        view[...] = value


@pytest.mark.parametrize("style", ["with", "publish()"])
@pytest.mark.parametrize("kind", sorted(STALE_VIEWS))
def test_stale_view_written_after_publish_never_reaches_readers(bus: str, kind: str, style: str) -> None:
    """Before the fix, the writer's slot stayed mapped shared after publish:
    `v[...] = 99` changed the frame a reader held (and `latest()`)."""
    with framebus.Writer(bus, width=W, height=H, format="nv12") as w, framebus.Reader(bus) as r:
        if style == "with":
            with w.loan() as a:
                a[...] = 7
                v = STALE_VIEWS[kind](a)
        else:
            loan = w.loan()
            a = loan.array
            a[...] = 7
            v = STALE_VIEWS[kind](a)
            loan.publish()
        assert not a.flags.writeable  # the loan's own array is locked
        held = r.latest()
        assert held is not None and (held.array == 7).all()
        # Until the slot is loaned again the stale view reads the frame.
        assert (np.asarray(v) == 7).all()
        scribble(v, 99)
        again = r.latest()
        assert again is not None and again.seq == held.seq
        assert (held.array == 7).all(), f"a frame held by a reader changed through a stale {kind}"
        assert (again.array == 7).all(), f"latest() shows a write made through a stale {kind}"


@pytest.mark.parametrize("fmt", ["bgr24", "gray8", "mjpeg"])
def test_stale_views_of_every_slot_scribbled_after_every_publish(bus: str, fmt: str) -> None:
    """The ring cycles (each slot is sealed, reloaned and sealed again) and
    every stale view kept so far is written after each publish: readers only
    ever see what was written while the loan was open. Before the fix the
    first scribble showed up in `latest()`."""
    slots = 4
    with framebus.Writer(bus, width=W, height=H, format=fmt, slots=slots, max_held=2) as w, framebus.Reader(bus) as r:
        stale = []
        for rnd in range(1, 4 * slots):
            loan = w.loan()
            with loan as a:
                a[...] = rnd
                if fmt == "mjpeg":
                    loan.set_len(1000)
                stale.append(a[:10])
            for v in stale:
                scribble(v, 0xEE)
            f = r.latest()
            assert f is not None and f.seq == loan.seq
            assert (f.array == rnd).all(), f"round {rnd}: a reader saw a write made after publish"
            f.release()


@pytest.mark.parametrize("fmt", ["nv12", "mjpeg"])
def test_stale_views_written_while_their_slot_is_loaned_again(bus: str, fmt: str) -> None:
    """A stale view is written while the writer has its slot out on a later
    loan (and after that loan's publish). With one mapping per slot the
    stale view aliased the new loan, so its writes landed in the later frame
    and readers saw them once it was published (3 slots: frames 4 and 7).
    Each loan now maps its slot afresh: readers only see the loan's own
    writes."""
    with framebus.Writer(bus, width=W, height=H, format=fmt, slots=3, max_held=1) as w, framebus.Reader(bus) as r:
        stale = []
        for rnd in range(1, 13):
            loan = w.loan()
            with loan as a:
                a[...] = rnd
                if fmt == "mjpeg":
                    loan.set_len(1000)
                for v in stale:  # while this loan is open
                    scribble(v, 0xEE)
                stale.append(a[:10])
            for v in stale:  # and after its publish
                scribble(v, 0xEE)
            f = r.latest()
            assert f is not None and f.seq == loan.seq
            assert (f.array == rnd).all(), f"round {rnd}: a stale view's write reached a later frame"
            f.release()


def test_loans_still_hand_frames_over_in_place(bus: str) -> None:
    """Sealing keeps loans zero-copy for readers: every round trip around
    the ring (reloaned slots are mapped shared again) arrives intact, the
    reader's views lie in its shared mapping, and a frame a reader holds
    keeps its content while the writer goes on."""
    slots = 5
    with framebus.Writer(bus, width=W, height=H, format="nv12", slots=slots, max_held=2) as w, framebus.Reader(bus) as r:
        first = None
        for i in range(1, 3 * slots + 1):
            with w.loan() as a:
                a[:H] = i
                a[H:] = 255 - i
            assert np.asarray(a) is a and not a.flags.writeable
            with pytest.raises(ValueError):
                a[0, 0] = 0
            f = r.next(timeout=5)
            y, uv = f.planes
            assert (y == i).all() and (uv == 255 - i).all()
            arr = f.array
            start = arr.__array_interface__["data"][0]
            assert f._in_mapping(start) and f._in_mapping(start + arr.nbytes - 1)
            assert not arr.flags.owndata
            if first is None:
                first = f  # held all along
            else:
                del y, uv, arr
                f.release()
        assert first is not None and (first.array[:H] == 1).all()


# --- defect 2: fork() -----------------------------------------------------------


def in_forked_child(body: Callable[[], Dict[str, Any]], timeout: float = 30.0) -> Dict[str, Any]:
    """Run `body` in an `os.fork()` child and return the dict it returns
    (sent back through a pipe as JSON). The child leaves with `os._exit`,
    never through pytest; a hung child is killed at `timeout`."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(rfd)
            data = json.dumps(body()).encode()
        except BaseException as e:  # reported, never raised into pytest
            data = json.dumps({"child crashed": repr(e)}).encode()
            code = 1
        try:
            os.write(wfd, data)
        finally:
            os._exit(code)
    os.close(wfd)
    deadline = time.monotonic() + timeout
    chunks = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([rfd], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"forked child gave no answer within {timeout} s")
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(rfd)
        _, status = os.waitpid(pid, 0)
    out: Dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child: status {status}, {out}"
    return out


def raised(call: Callable[[], Any]) -> str:
    """Name of the exception `call` raises, or "returned"."""
    try:
        call()
    except Exception as e:
        return type(e).__name__
    return "returned"


def bus_info(name: str) -> Optional[Dict[str, Any]]:
    return next((b for b in framebus.list_buses() if b["name"] == name), None)


def assert_parent_bus_live(bus: str, w: framebus.Writer, r: framebus.Reader, value: int) -> None:
    """The parent's bus is listed live and its reader gets a new frame."""
    info = bus_info(bus)
    assert info is not None, "the child's drop removed the parent's bus"
    assert (info["state"], info["producer_alive"]) == ("live", True), info
    seq = w.publish(np.full((H, W), value, np.uint8))
    f = r.next(timeout=5)
    assert f.seq == seq and (f.array == value).all()


@pytest.mark.parametrize("let_go", ["del", "close()"])
def test_fork_inherited_handles_are_inert_in_the_child(bus: str, let_go: str) -> None:
    """Before the fix, the child's inherited Reader and Writer worked on the
    parent's bus, and dropping or closing the writer in the child closed
    and unlinked the parent's bus."""
    w = framebus.Writer(bus, width=W, height=H, format="gray8", slots=6, max_held=2)
    # A default timeout, so iteration in the child ends even if it works.
    r = framebus.Reader(bus, timeout=1)
    try:
        w.publish(np.full((H, W), 7, np.uint8))
        held = r.latest()
        assert held is not None
        held_array = held.array

        def child() -> Dict[str, Any]:
            nonlocal w, r, held, held_array
            out = {
                "latest": raised(r.latest),
                "next": raised(lambda: r.next(timeout=0.1)),
                "try_next": raised(r.try_next),
                "iter": raised(lambda: next(iter(r))),
                "connected": r.connected,
                "loan": raised(w.loan),
                "publish": raised(lambda: w.publish(np.zeros((H, W), np.uint8))),
                # The inherited frame is severed from the slot: zeros.
                "held max": int(held_array.max()),
            }
            if let_go == "close()":
                w.close()
                r.close()
            del w, r, held, held_array
            gc.collect()
            # A Reader made in the child is a reader like any other.
            try:
                with framebus.Reader(bus) as own:
                    f = own.latest()
                    out["own reader"] = None if f is None else int(f.array.max())
            except framebus.FramebusError as e:
                out["own reader"] = repr(e)
            return out

        out = in_forked_child(child)
        assert out == {
            "latest": "ForkedError",
            "next": "ForkedError",
            "try_next": "ForkedError",
            "iter": "ForkedError",
            "connected": False,
            "loan": "ForkedError",
            "publish": "ForkedError",
            "held max": 0,
            "own reader": 7,
        }
        # The parent's frame, its hold and its bus are untouched.
        assert (held_array == 7).all()
        info = bus_info(bus)
        assert info is not None and [e["held"] for e in info["readers"]] == [1], info
        del held, held_array
        assert_parent_bus_live(bus, w, r, 9)
    finally:
        r.close()
        w.close()


def test_fork_inherited_open_loan_is_inert_in_the_child(bus: str) -> None:
    """A loan open at fork(): the child's writes through its array go to
    private pages and its publish() fails; the parent publishes its own
    content. Before the fix the child's writes landed in the parent's slot."""
    with framebus.Writer(bus, width=W, height=H, format="gray8") as w, framebus.Reader(bus) as r:
        loan = w.loan()
        a = loan.array
        a[...] = 5

        def child() -> Dict[str, Any]:
            a[...] = 77
            return {"publish": raised(loan.publish)}

        out = in_forked_child(child)
        assert out == {"publish": "ForkedError"}
        assert (a == 5).all()
        seq = loan.publish()
        f = r.next(timeout=5)
        assert f.seq == seq and (f.array == 5).all()


def _use_inherited_reader(r: framebus.Reader, conn: Connection) -> None:
    conn.send([raised(lambda: r.next(timeout=1)), raised(r.latest)])


def _read_with_own_reader(bus: str, inherited: list, conn: Connection) -> None:
    try:
        for handle in inherited:  # what it inherited, closed as if it were its own
            handle.close()
        with framebus.Reader(bus, wait=5) as own:
            f = own.next(timeout=5)
            conn.send([f.seq, int(f.array.min()), int(f.array.max())])
    except Exception as e:
        conn.send([repr(e)])


@pytest.fixture
def fork_ctx() -> Iterator[Any]:
    procs: list = []
    ctx = mp.get_context("fork")

    class Ctx:
        def Process(self, **kw: Any) -> Any:
            p = ctx.Process(daemon=True, **kw)
            procs.append(p)
            return p

        Pipe = staticmethod(ctx.Pipe)

    yield Ctx()
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join(10)


def test_multiprocessing_fork_inherited_reader_raises(bus: str, fork_ctx: Any) -> None:
    """A multiprocessing "fork" Process handed the parent's Reader gets
    ForkedError; the parent's bus and reader carry on after it exits.
    Before the fix the child read (and held) frames through the parent's
    reader entry."""
    with framebus.Writer(bus, width=W, height=H, format="gray8") as w, framebus.Reader(bus) as r:
        w.publish(np.full((H, W), 3, np.uint8))
        ours, theirs = fork_ctx.Pipe(duplex=False)
        p = fork_ctx.Process(target=_use_inherited_reader, args=(r, theirs))
        p.start()
        assert ours.poll(30), "the child sent nothing"
        assert ours.recv() == ["ForkedError", "ForkedError"]
        p.join(30)
        assert p.exitcode == 0
        assert_parent_bus_live(bus, w, r, 4)


def test_multiprocessing_fork_child_with_its_own_reader_reads(bus: str, fork_ctx: Any) -> None:
    """A "fork" Process that closes the Writer and Reader it inherited, then
    makes its own Reader, reads the parent's frames; the parent's bus
    carries on. Before the fix the child's `close()` closed and unlinked the
    parent's bus, so its own Reader found none."""
    with framebus.Writer(bus, width=W, height=H, format="gray8") as w, framebus.Reader(bus) as r:
        ours, theirs = fork_ctx.Pipe(duplex=False)
        p = fork_ctx.Process(target=_read_with_own_reader, args=(bus, [w, r], theirs))
        p.start()
        deadline = time.monotonic() + 30
        while not ours.poll(0.01):
            assert time.monotonic() < deadline and p.is_alive(), f"the child read no frame ({p.exitcode})"
            w.publish(np.full((H, W), (w.last_seq + 1) % 256, np.uint8))
        got = ours.recv()
        assert len(got) == 3, f"the child failed: {got[0]}"
        seq, lo, hi = got
        assert lo == hi == seq % 256
        p.join(30)
        assert p.exitcode == 0
        assert_parent_bus_live(bus, w, r, 5)


# --- defect 6: capture timestamps from another clock ---------------------------

CLOCKS: Dict[str, Callable[[int, int], int]] = {
    # (frame index, monotonic now) -> timestamp_ns
    "an hour ahead": lambda i, now: now + 3600 * 10**9,
    "an hour ahead, then the real clock": lambda i, now: now + 3600 * 10**9 if i < 10 else now,
    "stream time from 0": lambda i, now: (i + 1) * 16_666_667,
}


@pytest.mark.parametrize("clock", sorted(CLOCKS))
def test_measured_fps_ignores_the_callers_timestamps(bus: str, clock: str) -> None:
    """`measured_fps` (and the dead-reader sweep, on the same clock) uses
    the writer's own clock. Before the fix it used `timestamp_ns`: a jump
    back from a future stamp or a stream clock froze the rate window at 0.
    (The constant one-hour offset alone recovered after the first window.)"""
    stamp = CLOCKS[clock]
    frame = np.zeros((H, W), np.uint8)
    with framebus.Writer(bus, width=W, height=H, format="gray8", fps=60) as w:
        period = 1 / 60
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < 2.2:
            w.publish(frame, timestamp_ns=stamp(i, time.monotonic_ns()))
            i += 1
            time.sleep(max(0.0, start + i * period - time.monotonic()))
        info = bus_info(bus)
        assert info is not None
        assert info["published"] == i
        assert info["measured_fps"] > 1, f"{clock}: measured_fps {info['measured_fps']} after {i} frames"


# --- encoded buses (issue 13, core part) ---------------------------------------


def test_encoded_reader_joins_at_a_keyframe_reads_in_order_and_asks_for_keyframes(bus: str) -> None:
    """A Python forwarder publishes access units (here: opaque bytes on an
    MJPEG-typed bus) with keyframe flags, pts and source sequence; an
    encoded reader joins at the newest keyframe, reads in order, zero-copy,
    and asks for a keyframe when the ring has none to restart from."""
    with framebus.Writer(bus, width=W, height=H, format="mjpeg", slots=16, max_held=1) as w:
        for i in range(12):
            w.publish(bytes([i + 1]) * 100, keyframe=i % 5 == 0, pts=(i + 1) * 3000, source_seq=i + 1000)
        with framebus.Reader(bus) as r:
            assert r.codec() is None
            f = r.next_encoded(timeout=5)
            assert (f.seq, f.keyframe, f.skipped, f.pts, f.source_seq) == (11, True, 0, 33000, 1010)
            assert bytes(memoryview(f.array)) == bytes([11]) * 100
            assert f._in_mapping(f.array.ctypes.data)
            f.release()
            g = r.next_encoded(timeout=5)
            assert (g.seq, g.keyframe) == (12, False)
            g.release()
            r.request_keyframe()
            info = [b for b in framebus.list_buses() if b["name"] == bus][0]
            assert info["keyframe_requests"] == 1
            assert info["readers"][0]["keyframe_requests"] == 1

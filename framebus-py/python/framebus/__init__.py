"""framebus: zero-copy numpy views of video frames in shared memory.

One producer process writes camera frames into a lock-free ring of slots in
shared memory (``/dev/shm/framebus.<name>``); any number of readers in other
processes read them in place. In Python::

    import framebus

    with framebus.Reader("cam0", wait=True) as reader:
        for frame in reader:            # blocks without the GIL; Ctrl-C works
            img = frame.array           # read-only numpy view, no copy
            print(frame.seq, img.shape, frame.skipped)

and, to put frames back on a bus::

    with framebus.Writer("cam0.annotated", width=640, height=480,
                         format="bgr24", fps=30) as writer:
        with writer.loan() as buf:      # writable view of a free slot
            buf[:] = 0                  # published when the block ends

See ``docs/python.md`` for the full guide.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import AsyncIterator, Optional

from ._framebus import (
    AllSlotsHeld,
    BusExists,
    BusNotFound,
    Codec,
    CorruptBus,
    FormatError,
    ForkedError,
    Frame,
    FramebusError,
    InvalidName,
    InvalidOptions,
    Loan,
    ProducerGone,
    Released,
    Spec,
    Timeout,
    TooManyHeld,
    TooManyReaders,
    Writer,
    __version__,
    list_buses,
)
from ._framebus import Reader as _Reader

__all__ = [
    "AllSlotsHeld",
    "BusExists",
    "BusNotFound",
    "Codec",
    "CorruptBus",
    "FormatError",
    "ForkedError",
    "Frame",
    "FramebusError",
    "InvalidName",
    "InvalidOptions",
    "Loan",
    "ProducerGone",
    "Reader",
    "Released",
    "Spec",
    "Timeout",
    "TooManyHeld",
    "TooManyReaders",
    "Writer",
    "__version__",
    "list_buses",
]

# How long the asyncio worker thread blocks in one `next()` before it looks
# whether the iteration was abandoned. Frames still arrive as soon as they
# are published (the wait is a futex wake-up); this only bounds how long an
# abandoned worker lingers.
_AITER_CHUNK_S = 0.25


class Reader(_Reader):
    """A reader of one bus, with asyncio support.

    See :class:`framebus._framebus.Reader` for the constructor and the
    blocking API. ``async for frame in reader:`` (or ``reader.aiter()``)
    yields frames to asyncio code: a worker thread blocks in ``next()``
    without the GIL and hands each frame to the event loop with
    ``loop.call_soon_threadsafe``, so nothing polls.
    """

    def aiter(self, timeout: Optional[float] = None) -> AsyncIterator[Frame]:
        """Asynchronous iterator over new frames.

        ``timeout`` (seconds) raises :class:`Timeout` when no frame comes in
        that long; ``None`` uses the reader's ``timeout``. ``ProducerGone``
        is raised once when the producer goes away, as with ``next()``.
        """
        return _aiter(self, timeout if timeout is not None else self.timeout)

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self.aiter()


async def _aiter(reader: Reader, timeout: Optional[float]) -> AsyncIterator[Frame]:
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    requests: "queue.SimpleQueue[Optional[asyncio.Future[Frame]]]" = queue.SimpleQueue()

    def worker() -> None:
        # One request at a time: the consumer awaits each frame before it
        # asks for the next, so the reader is never used by two threads.
        while True:
            fut = requests.get()
            if fut is None:
                return
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if stop.is_set():
                    return
                chunk = _AITER_CHUNK_S
                if deadline is not None:
                    chunk = max(0.0, min(chunk, deadline - time.monotonic()))
                try:
                    frame = reader.next(timeout=chunk)
                except Timeout as e:
                    if deadline is not None and time.monotonic() >= deadline:
                        _resolve(loop, fut, exc=e)
                        break
                    continue
                except BaseException as e:  # handed to the awaiting task
                    _resolve(loop, fut, exc=e)
                    break
                _resolve(loop, fut, result=frame)
                break

    thread = threading.Thread(target=worker, name=f"framebus-aiter-{reader.name}", daemon=True)
    thread.start()
    try:
        while True:
            fut: "asyncio.Future[Frame]" = loop.create_future()
            requests.put(fut)
            yield await fut
    finally:
        stop.set()
        requests.put(None)


def _resolve(loop: asyncio.AbstractEventLoop, fut: "asyncio.Future[Frame]", *,
             result: Optional[Frame] = None, exc: Optional[BaseException] = None) -> None:
    """Complete ``fut`` on its event loop from the worker thread."""

    def complete() -> None:
        if fut.cancelled():
            if result is not None:
                result.release()
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

    try:
        loop.call_soon_threadsafe(complete)
    except RuntimeError:  # the loop is closed
        if result is not None:
            result.release()

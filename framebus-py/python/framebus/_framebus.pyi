"""Type stubs of the framebus extension module (checked by mypy.stubtest)."""

from __future__ import annotations

from os import PathLike
from types import TracebackType
from typing import Any, Literal, Optional, Tuple, Union, final

from typing_extensions import Self, disjoint_base

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "Codec",
    "FramebusError",
    "InvalidName",
    "BusNotFound",
    "ProducerGone",
    "Timeout",
    "FormatError",
    "BusExists",
    "CorruptBus",
    "TooManyReaders",
    "TooManyHeld",
    "AllSlotsHeld",
    "InvalidOptions",
    "ForkedError",
    "Released",
    "Reader",
    "Frame",
    "_FrameHold",
    "Writer",
    "Loan",
    "_LoanBuffer",
    "Spec",
    "list_buses",
    "__version__",
]

_U8Array = npt.NDArray[np.uint8]
# A frame's view: uint8 on a video bus, int16 on an audio bus ("s16le").
# Typed as either so that video code passes it on as uint8 unchanged.
_FrameArray = npt.NDArray[Any]
_Path = Union[str, PathLike[str]]
# The names the extension returns. `Writer(format=...)` also accepts, at
# run time, any case and the aliases yuy2, yu12, yuv420p, rgb, rgb3, bgr,
# bgr3, grey, gray, y8, mjpg, jpeg; typed code uses these names.
_PixelFormat = Literal[
    "yuyv", "uyvy", "nv12", "i420", "rgb24", "bgr24", "gray8", "mjpeg", "h264", "s16le", "opus", "aac"
]

class FramebusError(Exception):
    """Base class of every framebus error."""

class InvalidName(FramebusError):
    """A bus name does not match `[a-z0-9][a-z0-9._-]{0,62}`."""

class BusNotFound(FramebusError):
    """No bus of that name exists (its producer is not running)."""

class ProducerGone(FramebusError):
    """The bus's producer stopped or died. A reader raises this once; its
    next call waits for a new producer and re-attaches."""

class Timeout(FramebusError):
    """No frame (or no bus) within the timeout."""

class FormatError(FramebusError):
    """A frame spec, pixel format or payload size is not acceptable."""

class BusExists(FramebusError):
    """A live producer already owns the bus."""

class CorruptBus(FramebusError):
    """The shared-memory segment is not a valid framebus segment (wrong
    magic, version, size or offsets)."""

class TooManyReaders(FramebusError):
    """Every reader entry of the bus is taken."""

class TooManyHeld(FramebusError):
    """This reader already holds as many frames as the bus allows; release
    one first."""

class AllSlotsHeld(FramebusError):
    """Readers hold every slot the writer could use; the frame was dropped."""

class InvalidOptions(FramebusError):
    """Writer options out of range (slots, max_readers, max_held,
    slot_capacity)."""

class ForkedError(FramebusError):
    """This Reader or Writer (or an open Loan) was inherited across fork();
    it is inert in the child process. Create a new one there."""

class Released(FramebusError):
    """The frame was released, or the reader/writer/loan closed, and cannot
    be used any more."""

@final
class Spec:
    """What frames on a bus look like. Nothing on it raises."""

    @property
    def format(self) -> _PixelFormat:
        """Pixel format name. Never raises."""
    @property
    def is_audio(self) -> bool:
        """True on an audio bus ("s16le", "opus", "aac"). Never raises."""
    @property
    def sample_rate(self) -> int:
        """Audio: samples per second (0 on a video bus). Never raises."""
    @property
    def channels(self) -> int:
        """Audio: channels (0 on a video bus). Never raises."""
    @property
    def chunk_samples(self) -> int:
        """Audio: samples per chunk, one chunk per frame (0 on video). Never raises."""
    @property
    def width(self) -> int:
        """Width in pixels (audio: channels). Never raises."""
    @property
    def height(self) -> int:
        """Height in pixels (audio: samples per chunk). Never raises."""
    @property
    def fps(self) -> float:
        """Nominal frame rate. Never raises."""
    @property
    def fps_fraction(self) -> tuple[int, int]:
        """Nominal frame rate as `(num, den)`. Never raises."""
    @property
    def strides(self) -> list[int]:
        """Bytes per row of each plane (empty for MJPEG). Never raises."""
    @property
    def plane_offsets(self) -> list[int]:
        """Byte offset of each plane (empty for MJPEG). Never raises."""
    @property
    def frame_size(self) -> int:
        """Bytes of one raw frame (0 for MJPEG). Never raises."""
    def __eq__(self, value: object, /) -> bool:
        """Same format, size and rate. Never raises."""
    def __hash__(self) -> int:
        """Never raises."""

@final
class Frame:
    """One frame, held in place in shared memory."""

    @property
    def array(self) -> _FrameArray:
        """Read-only zero-copy view of the frame, shaped for OpenCV; on an
        audio bus ("s16le") an `int16` array `(samples, channels)`.

        Raises `Released` after `release()`; `FormatError` for an NV12/I420
        frame with padded rows (no single view: use `planes`)."""
    @property
    def planes(self) -> list[_FrameArray]:
        """One read-only view per plane. Raises `Released` after `release()`."""
    def copy(self) -> _U8Array:
        """A copy of `array` that owns its memory.

        Raises `Released` after `release()`; `FormatError` as `array` does."""
    def release(self) -> None:
        """Drop the frame's hold on its slot (arrays keep theirs). Never
        raises; releasing twice is allowed."""
    @property
    def released(self) -> bool:
        """Whether `release()` was called. Never raises."""
    @property
    def seq(self) -> int:
        """Sequence number (1 for a producer's first frame). Never raises."""
    @property
    def timestamp_ns(self) -> int:
        """Capture time, CLOCK_MONOTONIC ns. Never raises."""
    @property
    def realtime_ns(self) -> int:
        """Capture time, CLOCK_REALTIME ns. Never raises."""
    @property
    def skipped(self) -> int:
        """Frames this reader never saw before this one. Never raises."""
    @property
    def key(self) -> bool:
        """Whether this is a key frame. Never raises."""
    @property
    def keyframe(self) -> bool:
        """Same as `key`. Never raises."""
    @property
    def pts(self) -> int:
        """Encoded frames: presentation time in the bus's time base
        (`Reader.codec().time_base`); 0 for raw frames. Never raises."""
    @property
    def source_seq(self) -> int:
        """Encoded frames: sequence number of the raw frame it was made
        from (0 if none). Never raises."""
    @property
    def format(self) -> _PixelFormat:
        """Pixel format name. Never raises."""
    @property
    def width(self) -> int:
        """Width in pixels. Never raises."""
    @property
    def height(self) -> int:
        """Height in pixels. Never raises."""
    @property
    def nbytes(self) -> int:
        """Payload length in bytes. Never raises."""
    @property
    def spec(self) -> Spec:
        """Format and geometry of the frame. Never raises."""
    def _in_mapping(self, address: int) -> bool:
        """Whether `address` lies in the bus mapping (tests). Raises
        `Released` after `release()`."""
    @property
    def _slot(self) -> int:
        """Slot index (diagnostics, tests). Raises `Released` after
        `release()`."""
    def __enter__(self) -> Frame:
        """Never raises."""
    def __exit__(self, *_args: object) -> None:
        """Releases the frame. Never raises."""

@final
class _FrameHold:
    """Base object of a frame's arrays (keeps the slot held)."""

@final
class Codec:
    """The codec configuration of an encoded bus (`Reader.codec()`)."""

    @property
    def time_base(self) -> Tuple[int, int]:
        """The unit of `Frame.pts`, `(num, den)` seconds. Never raises."""
    @property
    def profile_level(self) -> int:
        """H.264: `profile_idc << 16 | constraint_flags << 8 | level_idc`.
        Never raises."""
    @property
    def config(self) -> bytes:
        """Out-of-band configuration (H.264: SPS and PPS, Annex B). Never
        raises."""

@disjoint_base
class Reader:
    """A reader of one bus.

    Every method that touches the bus raises `ForkedError` in a child
    process that inherited the reader across fork(), `Released` once the
    reader is closed, and `FramebusError` while another thread is using it.
    """

    def __new__(
        cls,
        name: str,
        *,
        wait: Union[bool, float, None] = False,
        timeout: Optional[float] = None,
        shm_dir: Optional[_Path] = None,
    ) -> Self:
        """Attach to bus `name`.

        Raises `InvalidName`; with `wait=False`, `BusNotFound` (no segment)
        or `ProducerGone` (a dead producer's segment); with a number,
        `Timeout`; `CorruptBus`, `TooManyReaders`; `ValueError` for a
        negative `wait`/`timeout`; `FramebusError` for other failures (an
        I/O error such as permission denied). Ctrl-C while waiting raises
        `KeyboardInterrupt`."""
    @property
    def name(self) -> str:
        """Bus name. Never raises."""
    @property
    def spec(self) -> Spec:
        """Format and geometry of the current (or last) producer's frames.
        Raises `Released`, `FramebusError` (in use by another thread)."""
    @property
    def timeout(self) -> Optional[float]:
        """Default timeout of `next()` and iteration. Never raises."""
    @property
    def connected(self) -> bool:
        """Whether attached to a live producer (False in a forked child).
        Raises `Released`, `FramebusError` (in use by another thread)."""
    @property
    def last_seq(self) -> int:
        """Sequence number of the last frame taken. Raises `Released`,
        `FramebusError` (in use by another thread)."""
    def next(self, timeout: Optional[float] = None) -> Frame:
        """Wait for a frame newer than the last one taken.

        Raises `Timeout`; `ProducerGone` once when the producer goes away
        (the next call waits for a new one, and may raise `CorruptBus` or
        `TooManyReaders` re-attaching); `TooManyHeld`; `CorruptBus`;
        `ForkedError`; `Released`; `FramebusError` (in use by another
        thread); `ValueError` for a negative timeout; `KeyboardInterrupt`
        on Ctrl-C."""
    def next_encoded(self, timeout: Optional[float] = None) -> Frame:
        """Encoded buses: wait for the next frame in order (what a decoder
        needs): the frame after the last one taken while the ring still
        has it, else the newest keyframe in the ring with `skipped` saying
        how many frames were lost; with no keyframe to restart from, one is
        requested from the encoder and awaited.

        Raises what `next()` raises."""
    def request_keyframe(self) -> None:
        """Ask the encoder of this encoded bus for a keyframe.

        Raises `ForkedError`; `Released`; `CorruptBus` or `TooManyReaders`
        re-attaching; `FramebusError` (in use by another thread)."""
    def codec(self) -> Optional[Codec]:
        """The codec configuration of an encoded bus, or None.

        Raises `CorruptBus` (a configuration that never stops changing);
        `ForkedError`; `Released`; `FramebusError` (in use by another
        thread)."""
    def latest(self) -> Optional[Frame]:
        """The newest frame without waiting (None before the first).

        Raises `ProducerGone` once when the producer went away;
        `TooManyHeld`; `CorruptBus`; `TooManyReaders` (re-attaching);
        `ForkedError`; `Released`; `FramebusError` (in use by another
        thread)."""
    def try_next(self) -> Optional[Frame]:
        """The newest frame not taken yet, or None; never waits. Raises
        what `latest()` raises."""
    def close(self) -> None:
        """Detach from the bus (in a forked child: touches nothing shared).
        Never raises."""
    @property
    def closed(self) -> bool:
        """Whether `close()` was called. Never raises."""
    def __iter__(self) -> Self:
        """Never raises."""
    def __next__(self) -> Frame:
        """`next()` with the reader's default timeout; raises what it
        raises."""
    def __enter__(self) -> Self:
        """Never raises."""
    def __exit__(self, *_args: object) -> None:
        """Closes the reader. Never raises."""

@final
class Loan:
    """A slot loaned for writing."""

    @property
    def array(self) -> _U8Array:
        """The writable view of the slot. Raises `Released` once the loan
        ended."""
    def set_len(self, n: int) -> None:
        """Payload length in bytes (MJPEG). Raises `FormatError` beyond the
        slot capacity, `Released` once the loan ended."""
    @property
    def seq(self) -> Optional[int]:
        """Sequence number once published, else None. Never raises."""
    def publish(self, *, timestamp_ns: Optional[int] = None, realtime_ns: Optional[int] = None) -> int:
        """Seal the slot and publish the frame; returns its sequence number.

        Raises `Released` if the loan already ended; `ForkedError` for a
        loan inherited across fork(); `FramebusError` if sealing the slot
        failed (the frame is dropped). The loan ends either way."""
    def abandon(self) -> None:
        """Drop the frame unpublished. Raises `Released` if the loan already
        ended."""
    def __enter__(self) -> _U8Array:
        """Returns `array`. Raises `Released` once the loan ended."""
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]] = None,
        _exc: Optional[BaseException] = None,
        _tb: Optional[TracebackType] = None,
    ) -> None:
        """Publishes (or, if the block raised, abandons) an open loan;
        raises what `publish()` raises."""

@final
class _LoanBuffer:
    """Base object of a loan's array (keeps the writer mapped)."""

@final
class Writer:
    """The producer of a bus.

    In a child process that inherited it across fork(), the methods that
    touch the bus raise `ForkedError`; `close()` there touches nothing
    shared."""

    def __new__(
        cls,
        name: str,
        *,
        width: int,
        height: int,
        format: _PixelFormat,
        fps: float = 30.0,
        slots: int = 8,
        max_readers: int = 64,
        max_held: int = 4,
        slot_capacity: Optional[int] = None,
        shm_dir: Optional[_Path] = None,
        source: Optional[str] = None,
    ) -> Writer:
        """Create bus `name`.

        Raises `InvalidName`; `FormatError` (unknown format, a size the
        format does not allow); `InvalidOptions` (slots, max_readers,
        max_held, slot_capacity); `BusExists` (a live producer owns the
        name); `CorruptBus` (a file of that name that is not a bus);
        `ValueError` for a non-positive `fps`; `FramebusError` for other
        failures (an I/O error such as permission denied)."""
    @property
    def name(self) -> str:
        """Bus name. Never raises."""
    @property
    def spec(self) -> Spec:
        """Format and geometry of the frames. Never raises."""
    @property
    def slot_capacity(self) -> int:
        """Bytes a slot holds. Never raises."""
    @property
    def last_seq(self) -> int:
        """Sequence number of the last published frame. Raises `Released`
        once closed, `FramebusError` while a loan is open."""
    def loan(self, *, timestamp_ns: Optional[int] = None, realtime_ns: Optional[int] = None) -> Loan:
        """Loan a free slot to fill in place (`with writer.loan() as buf:`).

        Raises `AllSlotsHeld` (readers hold every slot; the frame is
        dropped); `ForkedError`; `Released` once closed; `FramebusError`
        while another loan is open, or if unsealing the slot failed."""
    def publish(
        self,
        data: Union[_U8Array, bytes],
        *,
        timestamp_ns: Optional[int] = None,
        realtime_ns: Optional[int] = None,
        keyframe: bool = True,
        pts: int = 0,
        source_seq: int = 0,
    ) -> int:
        """Copy one frame into a slot and publish it; returns its sequence
        number. On an encoded bus `data` is one access unit: `keyframe`,
        `pts` (in the bus's time base) and `source_seq` describe it.

        Raises `FormatError` (not a uint8 array or bytes, not C-contiguous,
        wrong size, larger than a slot); `AllSlotsHeld`; `ForkedError`;
        `Released` once closed; `FramebusError` while a loan is open."""
    @property
    def keyframe_requests(self) -> int:
        """Keyframes readers of this encoded bus asked for so far. Raises
        `ForkedError`; `Released` once closed; `FramebusError` while a loan
        is open."""
    def set_codec(
        self,
        *,
        time_base: Tuple[int, int],
        profile_level: int = 0,
        config: Optional[bytes] = None,
    ) -> None:
        """Set an encoded bus's codec configuration (`Reader.codec()`).

        Raises `FormatError` if `config` is over 256 bytes; `ForkedError`;
        `Released` once closed; `FramebusError` while a loan is open."""
    def close(self) -> None:
        """Close the bus (deferred while a loan is open). Never raises."""
    @property
    def closed(self) -> bool:
        """Whether the bus is closed. Never raises."""
    def __enter__(self) -> Writer:
        """Never raises."""
    def __exit__(self, *_args: object) -> None:
        """Closes the writer. Never raises."""

def list_buses(shm_dir: Optional[_Path] = None) -> list[dict[str, Any]]:
    """Every bus in the shm directory, as dicts with the fields of
    `framebus ls --json` (measured_fps is on the writer's own clock).
    Raises `FramebusError` if the directory cannot be listed."""

"""Measuring clients and raw-frame consumers for the end-to-end benchmark.

Run by benches/e2e/run.py with the project's .venv python (numpy, framebus):

  tools.py lat --w W --h H --out F -- CMD...   decode the time code from the
        gray frames CMD writes to stdout (an ffmpeg or GStreamer client),
        record (wall time, latency ms) per frame until SIGTERM
  tools.py fb-raw --bus B --out F               framebus.Reader, every frame
  tools.py pipe-raw --w W --h H --out F         NV12 frames on stdin (ffmpeg)
  tools.py mp-service --w W --h H --fps N --out F
        multiprocessing.shared_memory ring + Queue of slot indices: a
        generator process paints the time code into a slot (the slots hold
        the base picture, as the framebus test pattern only repaints what
        moves), the consumer views it with numpy
  tools.py mjpeg-viewers --out F URL N [URL N ...]
        N HTTP viewers per URL in one process; frames and bytes per viewer

Every consumer writes one JSON file when it gets SIGTERM (or its command
ends): {"samples": [[t, ms], ...], "frames": n, ...}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from multiprocessing import shared_memory
from urllib.parse import urlsplit

import numpy as np

BAND_DIVISOR, TIME_CELLS, COUNT_CELLS = 24, 64, 32
WHITE, BLACK = 235, 16


class Stop(Exception):
    pass


def _stop(*_a: object) -> None:
    raise Stop()


def cell_xs(w: int, n: int) -> np.ndarray:
    return np.array([(i * w // n + (i + 1) * w // n) // 2 for i in range(n)])


class Decoder:
    """docs/timecode.md: luma in the middle of each band-1 cell, MSB first."""

    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = w, h
        bh = h // BAND_DIVISOR
        self.row = bh // 2
        xs = cell_xs(w, TIME_CELLS)
        self.idx = np.concatenate([(self.row + dy) * w + xs for dy in (-1, 0, 1)])
        self.weights = np.array([1 << (63 - i) for i in range(64)], dtype=object)

    def decode_flat(self, flat: np.ndarray) -> int:
        s = flat[self.idx].reshape(3, TIME_CELLS).astype(np.uint16).sum(axis=0)
        bits = s >= 3 * 128
        v = 0
        for b in bits:
            v = (v << 1) | int(b)
        return v


def write_result(path: str, samples: list, **extra: object) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"samples": samples, **extra}, f)
    os.replace(tmp, path)


def keep(now_us: int, tc: int, samples: list) -> None:
    d = (now_us - tc) / 1000.0
    if 0 <= d < 10_000:  # a misread time code is not a latency
        samples.append((now_us / 1e6, round(d, 3)))


def read_exact(f, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


# --- latency client -----------------------------------------------------------


def cmd_lat(a: argparse.Namespace) -> None:
    dec = Decoder(a.w, a.h)
    size = a.w * a.h
    samples: list = []
    frames = 0
    p = None
    try:
        # A client that cannot connect yet (ffmpeg's -listen outputs open one
        # after another) is retried for a while.
        t_end_retry = time.time() + a.retry
        while True:
            p = subprocess.Popen(a.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
            got = 0
            while True:
                buf = read_exact(p.stdout, size)
                if buf is None:
                    break
                now = time.time_ns() // 1000
                got += 1
                frames += 1
                if got <= a.skip:
                    continue
                keep(now, dec.decode_flat(np.frombuffer(buf, np.uint8)), samples)
            p.wait()
            if got == 0 and time.time() < t_end_retry:
                time.sleep(0.5)
                continue
            break
    except Stop:
        pass
    finally:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        write_result(a.out, samples, frames=frames)


# --- raw consumers --------------------------------------------------------------


def cmd_fb_raw(a: argparse.Namespace) -> None:
    import framebus

    samples: list = []
    frames = skipped = 0
    try:
        with framebus.Reader(a.bus, wait=10, timeout=2) as r:
            spec = r.spec
            dec = Decoder(spec.width, spec.height)
            for f in r:
                arr = f.array
                now = time.time_ns() // 1000
                frames += 1
                skipped += f.skipped
                keep(now, dec.decode_flat(arr.reshape(-1)), samples)
                del arr, f
    except Stop:
        pass
    finally:
        write_result(a.out, samples, frames=frames, skipped=skipped)


def cmd_pipe_raw(a: argparse.Namespace) -> None:
    dec = Decoder(a.w, a.h)
    size = a.w * a.h * 3 // 2
    samples: list = []
    frames = 0
    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    try:
        while True:
            buf = read_exact(stdin, size)
            if buf is None:
                break
            now = time.time_ns() // 1000
            frames += 1
            keep(now, dec.decode_flat(np.frombuffer(buf, np.uint8)), samples)
    except Stop:
        pass
    finally:
        write_result(a.out, samples, frames=frames)


def band_rows(w: int, bh: int, cells: int, value: int) -> np.ndarray:
    row = np.full(w, BLACK, np.uint8)
    for i in range(cells):
        if (value >> (cells - 1 - i)) & 1:
            row[i * w // cells : (i + 1) * w // cells] = WHITE
    return np.broadcast_to(row, (bh, w))


def mp_generator(shm_name: str, slots: int, w: int, h: int, fps: float, q) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    shm = shared_memory.SharedMemory(name=shm_name)
    size = w * h * 3 // 2
    ring = np.ndarray((slots, h * 3 // 2, w), np.uint8, buffer=shm.buf)
    bh = h // BAND_DIVISOR
    period = 1.0 / fps
    t = time.monotonic()
    n = 0
    while True:
        s = n % slots
        us = time.time_ns() // 1000
        ring[s, 0:bh] = band_rows(w, bh, TIME_CELLS, us)
        ring[s, bh : 2 * bh] = band_rows(w, bh, COUNT_CELLS, n & 0xFFFFFFFF)
        x = (n * 8) % (w - 64)
        ring[s, 2 * bh : h : 4, x : x + 64] = WHITE  # something that moves
        q.put((s, n))
        n += 1
        t += period
        d = t - time.monotonic()
        if d > 0:
            time.sleep(d)
    del size


def cmd_mp_service(a: argparse.Namespace) -> None:
    w, h, slots = a.w, a.h, 8
    size = w * h * 3 // 2
    shm = shared_memory.SharedMemory(create=True, size=size * slots)
    ring = np.ndarray((slots, h * 3 // 2, w), np.uint8, buffer=shm.buf)
    ring[:, :h] = 80
    ring[:, h:] = 128
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=mp_generator, args=(shm.name, slots, w, h, a.fps, q), daemon=True)
    p.start()
    dec = Decoder(w, h)
    samples: list = []
    frames = 0
    try:
        while True:
            s, _n = q.get(timeout=5)
            view = np.ndarray((h * 3 // 2, w), np.uint8, buffer=shm.buf, offset=s * size)
            now = time.time_ns() // 1000
            frames += 1
            keep(now, dec.decode_flat(view.reshape(-1)), samples)
            del view
    except Stop:
        pass
    finally:
        p.kill()
        p.join(5)
        write_result(a.out, samples, frames=frames)
        del ring
        shm.close()
        shm.unlink()


# --- MJPEG viewers ----------------------------------------------------------------


MARK = b"Content-Type: image/jpeg"
MARK_LC = MARK.lower()


def cmd_mjpeg_viewers(a: argparse.Namespace) -> None:
    # SIGUSR1 from the harness starts the measured window.
    mark: list = []
    signal.signal(signal.SIGUSR1, lambda *_: mark.append(1))
    pairs = list(zip(a.spec[0::2], (int(n) for n in a.spec[1::2])))
    sel = selectors.DefaultSelector()
    viewers = []
    for url, n in pairs:
        u = urlsplit(url)
        for _ in range(n):
            s = None
            for _attempt in range(50):
                try:
                    s = socket.create_connection((u.hostname, u.port), timeout=5)
                    break
                except OSError:
                    time.sleep(0.2)
            if s is None:
                continue
            s.sendall(f"GET {u.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            s.setblocking(False)
            v = {"url": url, "frames": 0, "bytes": 0, "tail": b"", "t0": None, "f0": 0, "b0": 0}
            viewers.append(v)
            sel.register(s, selectors.EVENT_READ, v)
    t_mark = time.time()
    marked = False
    try:
        while True:
            now = time.time()
            if not marked and mark:
                for v in viewers:
                    v["f0"], v["b0"] = v["frames"], v["bytes"]
                marked = True
                t_mark = now
            for key, _ in sel.select(timeout=0.5):
                v = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(1 << 18)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()
                    continue
                v["bytes"] += len(data)
                chunk = (v["tail"] + data).lower()
                v["frames"] += chunk.count(MARK_LC)
                v["tail"] = data[-(len(MARK) - 1) :]
    except Stop:
        pass
    finally:
        span = max(1e-6, time.time() - t_mark) if marked else 0
        out = []
        for v in viewers:
            f = v["frames"] - v["f0"]
            b = v["bytes"] - v["b0"]
            out.append({"url": v["url"], "fps": round(f / span, 2) if span else 0, "bytes_per_frame": b // f if f else 0})
        write_result(a.out, [], viewers=out, window_s=round(span, 2))


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd_name", required=True)
    p = sub.add_parser("lat")
    p.add_argument("--w", type=int, required=True)
    p.add_argument("--h", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--skip", type=int, default=5)
    p.add_argument("--retry", type=float, default=20)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p = sub.add_parser("fb-raw")
    p.add_argument("--bus", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("pipe-raw")
    p.add_argument("--w", type=int, required=True)
    p.add_argument("--h", type=int, required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("mp-service")
    p.add_argument("--w", type=int, required=True)
    p.add_argument("--h", type=int, required=True)
    p.add_argument("--fps", type=float, default=60)
    p.add_argument("--out", required=True)
    p = sub.add_parser("mjpeg-viewers")
    p.add_argument("--out", required=True)
    p.add_argument("spec", nargs="+")
    a = ap.parse_args()
    if a.cmd_name == "lat":
        if a.cmd and a.cmd[0] == "--":
            a.cmd = a.cmd[1:]
        cmd_lat(a)
    else:
        {"fb-raw": cmd_fb_raw, "pipe-raw": cmd_pipe_raw, "mp-service": cmd_mp_service,
         "mjpeg-viewers": cmd_mjpeg_viewers}[a.cmd_name](a)


if __name__ == "__main__":
    main()

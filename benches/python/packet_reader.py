"""A Python packet reader of an encoded bus, for the benchmarks: takes every
access unit in order with `Reader.next_encoded()` (zero-copy, nothing
decoded) and counts them, as a forwarding or recording consumer would.

Run with: .venv/bin/python benches/python/packet_reader.py cam0.h264.high [--out result.json]

On SIGTERM or SIGINT it writes (to --out, else stdout) one JSON object:
{"frames": n, "keyframes": k, "skipped": s, "bytes": b, "secs": t}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import framebus


class Stop(Exception):
    pass


def _stop(*_a: object) -> None:
    raise Stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("bus")
    ap.add_argument("--out")
    ap.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the bus to appear")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    frames = keyframes = skipped = nbytes = 0
    t0 = time.monotonic()
    try:
        with framebus.Reader(a.bus, wait=a.wait) as r:
            while True:
                try:
                    f = r.next_encoded(timeout=2.0)
                except framebus.Timeout:
                    continue
                frames += 1
                keyframes += f.keyframe
                skipped += f.skipped
                nbytes += f.nbytes
                f.release()
    except Stop:
        pass
    finally:
        res = {"frames": frames, "keyframes": keyframes, "skipped": skipped, "bytes": nbytes,
               "secs": round(time.monotonic() - t0, 3)}
        if a.out:
            with open(a.out + ".tmp", "w") as fh:
                json.dump(res, fh)
            os.replace(a.out + ".tmp", a.out)
        else:
            print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The container story without Docker (docs/containers.md): the producer in
one container, Python and RTSP readers in others, sharing only a small
size-limited tmpfs as their /dev/shm, the way `docker run --ipc=shareable`
/ `--ipc=container:…` or a shared `/dev/shm` volume do.

Each "container" is `unshare --pid --mount --ipc --fork` with the shared
tmpfs bind-mounted on its own /dev/shm (FRAMEBUS_SHM_DIR unset: the
default path). They see neither each other's processes nor pids: liveness
and reclamation rest on the segment's locks, not on pids. Across the
boundary: a reader killed with SIGKILL has its slot reclaimed by the
producer; the producer killed with SIGKILL is `ProducerGone` to the Python
reader and a gap to the RTSP viewer; a new producer in a new container is
re-attached by both.

Needs root (mounts); `make test` runs as root in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Iterator, List

import pytest

REPO = Path(__file__).resolve().parents[2]
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"


def binary(name: str) -> str:
    p = RELEASE / name
    if not p.exists():
        pytest.fail(f"{p} is not built (make test builds it before the Python tests)")
    return str(p)


@pytest.fixture
def shared_shm() -> Iterator[str]:
    """A 64 MiB tmpfs: the containers' shared /dev/shm."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a tmpfs and runs unshare --mount (CI runs as root)")
    d = tempfile.mkdtemp(prefix="framebus-ipc-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=1777", "tmpfs", d], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", d], check=False)
        os.rmdir(d)


class Containers:
    """Processes started in containers; every one killed at the end."""

    def __init__(self, shm: str) -> None:
        self.shm = shm
        self.procs: List[subprocess.Popen] = []
        # No FRAMEBUS_SHM_DIR: inside, the bus lives in /dev/shm.
        self.env = {k: v for k, v in os.environ.items() if k != "FRAMEBUS_SHM_DIR"}

    def run(self, *cmd: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
        """`cmd` as PID 1 of a new container (PID, mount and IPC namespaces)
        whose /dev/shm is the shared tmpfs."""
        p = subprocess.Popen(
            ["unshare", "--pid", "--mount", "--ipc", "--fork", "--kill-child", "--propagation", "private",
             "sh", "-c", 'mount --bind "$0" /dev/shm && exec "$@"', self.shm, *cmd],
            env=self.env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    @staticmethod
    def pid1(p: subprocess.Popen) -> int:
        """The host pid of the container's PID 1 (unshare's child)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            except OSError:
                kids = []
            if kids:
                return int(kids[0])
            time.sleep(0.02)
        raise AssertionError(f"container {p.args} has no process")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def stat(shm: str, bus: str) -> dict:
    out = subprocess.run([binary("framebus"), "stat", bus, "--json", "--dir", shm],
                         capture_output=True, text=True, timeout=10)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def eventually(what: str, cond, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def ffprobe(url: str) -> str:
    p = subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries",
                        "stream=codec_name,width,height", "-of", "csv=p=0", url],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.strip()


READER = """
import sys, time, framebus
bus, hold = sys.argv[1], sys.argv[2] == "hold"
r = framebus.Reader(bus, wait=30.0)
f = r.next(timeout=10)
print("frame", f.seq, flush=True)
if hold:
    print("holding", flush=True)
    time.sleep(3600)   # killed while holding the frame
while True:
    try:
        f = r.next(timeout=20)
        f.release()
    except framebus.ProducerGone:
        print("gone", flush=True)
        f = r.next(timeout=30)
        print("back", f.seq, flush=True)
        break
"""


def test_producer_and_readers_in_separate_containers_share_only_dev_shm(shared_shm: str, bus: str) -> None:
    c = Containers(shared_shm)
    try:
        producer = [binary("framebus-producer"), "--bus", bus, "--size", "320x240", "--fps", "30"]
        a = c.run(*producer)
        eventually("the producer's bus", lambda: stat(shared_shm, bus).get("producer_alive"))

        # RTSP: the encoder and the server in a container of their own.
        rtsp = c.run("sh", "-c", f'{binary("framebus-encoder")} --bus {bus} --profile "low=320x240@30,bitrate=300k" '
                     f'& exec {binary("framebus-rtsp")} --listen 127.0.0.1:0', stdout=subprocess.PIPE)
        assert rtsp.stdout is not None
        line = rtsp.stdout.readline()
        assert "rtsp://" in line, line
        url = line.split()[-1].rstrip("/") + f"/{bus}/low"
        assert eventually("RTSP before", lambda: ffprobe(url)) == "h264,320,240"

        # A reader killed while it holds a slot: the producer, in another
        # PID namespace, reclaims it.
        holder = c.run(sys.executable, "-u", "-c", textwrap.dedent(READER), bus, "hold", stdout=subprocess.PIPE)
        assert holder.stdout is not None
        assert holder.stdout.readline().startswith("frame"), holder.poll()
        assert holder.stdout.readline().strip() == "holding"
        held = eventually("a held slot", lambda: [r for r in stat(shared_shm, bus).get("readers", [])
                                                   if r["held"] > 0])
        os.kill(c.pid1(holder), 9)
        eventually("the killed reader's slot reclaimed", lambda: not [
            r for r in stat(shared_shm, bus).get("readers", []) if r["entry"] == held[0]["entry"]
            and r["held"] > 0])

        # The producer killed with SIGKILL from outside its container.
        follower = c.run(sys.executable, "-u", "-c", textwrap.dedent(READER), bus, "follow",
                         stdout=subprocess.PIPE)
        assert follower.stdout is not None
        assert follower.stdout.readline().startswith("frame")
        os.kill(c.pid1(a), 9)
        assert follower.stdout.readline().strip() == "gone"
        eventually("the dead producer seen from the host", lambda: not stat(shared_shm, bus).get("producer_alive"))

        # A new producer in a new container: both readers come back.
        c.run(*producer)
        back = follower.stdout.readline().split()
        assert back[:1] == ["back"], (back, follower.poll())
        assert eventually("RTSP after the restart", lambda: ffprobe(url), timeout=30) == "h264,320,240"
    finally:
        c.close()

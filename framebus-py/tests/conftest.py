"""Shared fixtures: a private shm directory, unique bus names, child
processes that are always killed and reaped."""

from __future__ import annotations

import itertools
import os
import queue
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from typing import Iterator, List, Optional

import pytest

# Every test in this session (and every child process it spawns) uses its
# own shm directory, so runs in parallel never see each other's buses.
_SHM_DIR = tempfile.mkdtemp(prefix="framebus-pytest-")
os.environ["FRAMEBUS_SHM_DIR"] = _SHM_DIR
_counter = itertools.count()


@pytest.fixture
def shm_dir() -> str:
    return _SHM_DIR


@pytest.fixture
def bus() -> str:
    """A bus name no other test (in any process) uses."""
    return f"t{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


class Child:
    """A child Python process whose stdout lines are read by a thread, so a
    test can wait for a line with a timeout instead of hanging."""

    def __init__(self, code: str, args: List[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.err: List[str] = []
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readline(self, what: str, timeout: float = 30.0) -> str:
        """The next stdout line; fails (never hangs) after `timeout`."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"child gave no {what} within {timeout} s; stderr: {self.stderr()}")
        if line is None:
            raise AssertionError(f"child exited ({self.proc.wait(timeout=10)}) before {what}: {self.stderr()}")
        return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        return "".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


class Children:
    """Child processes, killed and reaped at teardown even when the test
    fails."""

    def __init__(self) -> None:
        self.procs: List[Child] = []

    def python(self, code: str, *args: str) -> Child:
        c = Child(code, list(args))
        self.procs.append(c)
        return c

    def close(self) -> None:
        for c in self.procs:
            c.kill()
            for f in (c.proc.stdin, c.proc.stdout, c.proc.stderr):
                if f is not None:
                    f.close()


@pytest.fixture
def children() -> Iterator[Children]:
    c = Children()
    try:
        yield c
    finally:
        c.close()

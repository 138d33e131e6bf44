"""Process helpers the benchmark harnesses share (benches/encoder/bench.py,
benches/rtsp/bench.py, benches/webrtc/bench.py, benches/hls/bench.py):
children in their own process groups, killed as a group; CPU ticks from
/proc; waiting for a bus segment; the machine, its load, and writing a
run's report. Standard library only (the RTSP and WebRTC benches run on
Debian's /usr/bin/python3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
# Every child started by spawn(), for the harness's cleanup.
PROCS: list[subprocess.Popen] = []


def spawn(cmd: list[str], **kw) -> subprocess.Popen:
    """Start cmd in its own process group (killed as a group on exit)."""
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    p = subprocess.Popen(cmd, start_new_session=True, **kw)
    PROCS.append(p)
    return p


def kill_group(p: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 5.0) -> None:
    """sig to p's group, wait, then SIGKILL the group."""
    try:
        os.killpg(p.pid, sig)
        p.wait(timeout=wait)
    except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    if p in PROCS:
        PROCS.remove(p)


def kill_all() -> None:
    """kill_group every child still running, newest first."""
    for p in reversed(list(PROCS)):
        kill_group(p)


def cpu_ticks(pid: int) -> int:
    """utime + stime of pid in clock ticks (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def wait_path(path: str, timeout: float = 20.0) -> None:
    """Wait for path to exist; exit with a sentence after timeout."""
    t0 = time.monotonic()
    while not os.path.exists(path):
        if time.monotonic() - t0 > timeout:
            sys.exit(f"{path} did not appear within {timeout:g} s")
        time.sleep(0.05)


def uptime() -> str:
    """`uptime`'s line (the load averages every report states)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def machine() -> str:
    """CPU count and model, and the kernel."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} × {model}, Linux {os.uname().release}"


def write_report(text: str, started, results_dir: str, root: str, quick: bool = False,
                 out: str | None = None, json_path: str | None = None, extra: dict | None = None) -> None:
    """Prints a run's report, writes it to `out` (default
    `results_dir/YYYY-MM-DD-HHMM[-quick].md`), and `extra` as JSON to
    `json_path` when given."""
    import json

    print()
    print(text)
    name = started.strftime("%Y-%m-%d-%H%M") + ("-quick" if quick else "") + ".md"
    out = out or os.path.join(results_dir, name)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text + "\n")
    print(f"\n(written to {os.path.relpath(out, root)})")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(extra or {}, f, indent=1, default=str)

#!/usr/bin/python3
"""Audio benchmark (issue 19): the CPU of capturing a microphone and one
Opus encode, against the usual way (ffmpeg capturing the same device and
encoding Opus) in the same run.

Run with (from the repository root, after `make build`):

    make bench-audio                       # 30 s per way and complexity
    /usr/bin/python3 benches/audio/bench.py --seconds 20 --complexity 10

Set-up: a private PulseAudio (null sink `mic`, as the tests use) plays a
440 Hz tone with pacat into the sink; its monitor is the default source,
captured through the ALSA `pulse` device, 48 kHz mono, in real time.
  - framebus: `framebus-producer --audio alsa:pulse` (with a 64x48 @ 5 fps
    test pattern, whose thread is not counted: only the `audio` thread's
    CPU, from /proc/PID/task/TID/schedstat) and `framebus-encoder --opus`
    (the whole process) writing cam.opus at 64 kbit/s, with one reader
    taking every packet (`framebus cat`-like: a Python reader is not
    needed, the encoder runs without readers);
  - ffmpeg: `ffmpeg -f alsa -i pulse -c:a libopus -b:a 64k
    -frame_duration 20 -application lowdelay -f null -` (the whole
    process), the way the seeds capture a USB microphone.
The PulseAudio daemon and pacat are the same for both and not counted.
CPU is the schedstat run time (ns, every thread of a process) over one
window per way; figures are % of one core. Prints a markdown report and writes it to
benches/audio/results/DATE.md. Nothing is asserted.
"""

import argparse
import datetime
import math
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
import procs  # noqa: E402


def run_ns(path: str) -> int:
    """Run time (ns) of a thread's schedstat file, or of every thread of a
    process given as /proc/PID."""
    if os.path.basename(path) != "schedstat":
        total = 0
        for tid in os.listdir(f"{path}/task"):
            try:
                total += run_ns(f"{path}/task/{tid}/schedstat")
            except OSError:
                pass  # a thread that ended
        return total
    with open(path) as f:
        return int(f.read().split()[0])


def pulse(tmp: str) -> tuple[subprocess.Popen, dict]:
    sock = os.path.join(tmp, "native")
    env = dict(os.environ, HOME=tmp, XDG_RUNTIME_DIR=tmp, XDG_CONFIG_HOME=tmp)
    d = procs.spawn([
        "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes",
        "--use-pid-file=no", "-L", f"module-native-protocol-unix socket={sock} auth-anonymous=1",
    ], env=env)
    client = dict(os.environ, PULSE_SERVER=f"unix:{sock}", XDG_RUNTIME_DIR=tmp,
                  PULSE_CLIENTCONFIG="/dev/null")
    for _ in range(150):
        if subprocess.run(["pactl", "info"], env=client, capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=mic", "rate=48000",
                    "channels=1"], env=client, check=True, capture_output=True)
    subprocess.run(["pactl", "set-default-source", "mic.monitor"], env=client, check=True)
    return d, client


def tone(client: dict) -> subprocess.Popen:
    p = procs.spawn(["pacat", "--playback", "--raw", "--format=s16le", "--rate=48000",
                     "--channels=1", "--device=mic", "--latency-msec=20"],
                    env=client, stdin=subprocess.PIPE)

    def feed():
        n = 0
        while True:
            buf = b"".join(struct.pack("<h", int(16000 * math.sin(2 * math.pi * 440 * (n + i) / 48000)))
                           for i in range(960))
            n += 960
            try:
                p.stdin.write(buf)
            except (BrokenPipeError, ValueError, OSError):
                return

    threading.Thread(target=feed, daemon=True).start()
    return p


def audio_thread(pid: int) -> str:
    for _ in range(100):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    if f.read().strip() == "audio":
                        return f"/proc/{pid}/task/{tid}/schedstat"
            except OSError:
                pass
        time.sleep(0.1)
    raise SystemExit("no audio thread in the producer")


def measure(paths: list[str], seconds: float) -> list[float]:
    """% of one core each schedstat file's run time grew by, over one
    window."""
    t0, c0 = time.monotonic(), [run_ns(p) for p in paths]
    time.sleep(seconds)
    t1, c1 = time.monotonic(), [run_ns(p) for p in paths]
    return [(b - a) / 1e9 / (t1 - t0) * 100 for a, b in zip(c0, c1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--complexity", type=lambda v: [int(x) for x in v.split(",")],
                    default=[10, 5, 0], help="libopus complexities, comma-separated")
    a = ap.parse_args()
    started = datetime.datetime.now()
    load = procs.uptime()
    tmp = tempfile.mkdtemp(prefix="framebus-bench-audio-")
    shm = os.path.join(tmp, "shm")
    os.makedirs(shm)
    rows = []
    xruns = "?"
    try:
        _, client = pulse(tmp)
        tone(client)
        env = dict(client, FRAMEBUS_SHM_DIR=shm)
        for level in a.complexity:
            bus = f"ba{os.getpid()}c{level}"
            prod = procs.spawn([os.path.join(a.target_dir, "framebus-producer"), "--bus", bus,
                                "--size", "64x48", "--fps", "5", "--audio", "alsa:pulse"], env=env)
            procs.wait_path(os.path.join(shm, f"framebus.{bus}.audio"))
            enc = procs.spawn([os.path.join(a.target_dir, "framebus-encoder"), "--bus",
                               f"{bus}.audio", "--opus", "--opus-bitrate", "64000",
                               "--opus-complexity", str(level)], env=env)
            procs.wait_path(os.path.join(shm, f"framebus.{bus}.opus"))
            thread = audio_thread(prod.pid)
            time.sleep(a.warmup)
            capture, encode = measure([thread, f"/proc/{enc.pid}"], a.seconds)
            published = subprocess.run([os.path.join(a.target_dir, "framebus"), "stat",
                                        f"{bus}.audio"], env=env, capture_output=True,
                                       text=True).stdout
            xruns = next((l.split()[1] for l in published.splitlines()
                          if l.startswith("xruns")), "?")
            procs.kill_group(enc)
            procs.kill_group(prod)
            ff = procs.spawn(["ffmpeg", "-nostdin", "-v", "error", "-f", "alsa", "-sample_rate",
                              "48000", "-channels", "1", "-i", "pulse", "-c:a", "libopus",
                              "-b:a", "64k", "-frame_duration", "20", "-application", "lowdelay",
                              "-compression_level", str(level), "-f", "null", "-"], env=client)
            time.sleep(a.warmup)
            (theirs,) = measure([f"/proc/{ff.pid}"], a.seconds)
            procs.kill_group(ff)
            rows.append((level, capture, encode, theirs, xruns))
    finally:
        procs.kill_all()
    table = "\n".join(
        f"| {level}{' (default)' if level == 10 else ''} | {capture:.3f} | {encode:.3f} "
        f"| **{capture + encode:.3f}** | {theirs:.3f} ({theirs / max(capture + encode, 1e-9):.2f}×) "
        f"| {x} |"
        for level, capture, encode, theirs, x in rows)
    text = f"""## Audio: capture + one Opus encode ({started:%Y-%m-%d %H:%M})

`make bench-audio` (`/usr/bin/python3 benches/audio/bench.py --seconds {a.seconds:g} --complexity {','.join(map(str, a.complexity))}`), {procs.machine()}; load before: {load}.
48 kHz mono from the ALSA `pulse` device (a private PulseAudio null sink fed a 440 Hz tone), Opus 64 kbit/s in 20 ms packets, {a.seconds:g} s per way after {a.warmup:g} s, at each libopus complexity (`--opus-complexity`; ffmpeg's `-compression_level`).
CPU in % of one core: framebus's capture is the producer's `audio` thread (ALSA capture, 20 ms chunks, stamps, level, publish), its encode the whole `framebus-encoder --opus` process (read in order, libopus, publish); ffmpeg is `ffmpeg -f alsa -i pulse -c:a libopus -f null -` (whole process).

| complexity | framebus capture | framebus encode | framebus both | ffmpeg (× framebus) | xruns |
|---|---|---|---|---|---|
{table}
"""
    procs.write_report(text, started, os.path.join(HERE, "results"), ROOT)


if __name__ == "__main__":
    main()

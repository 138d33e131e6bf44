#!/usr/bin/python3
"""Recorder benchmark (issue 16): framebus-recorder's CPU per recorded
1080p30 stream against ffmpeg recording the same stream over RTSP, its
memory for 30 s of pre-roll, and the pre-roll's accuracy by the time code.

Run with (from the repository root, after `make build`):

    make bench-recorder                          # full run, ~6 min
    make bench-recorder RECORDER_ARGS=--quick    # harness check, ~2 min
    /usr/bin/python3 benches/recorder/bench.py --quick

Set-up: `framebus-producer` writes its test pattern with the time code
(docs/timecode.md) at 1920x1080@30 NV12 on a bus of its own;
`framebus-recorder --listen 127.0.0.1:0 --dir TMP --buffer BUS/high
--preroll-max 30s --min-free 0` starts before the encoder (for its memory
without a stream); then one `framebus-encoder --encoder libx264 --no-adapt
--profile high=1920x1080@30,h264=high,bitrate=4M` (its default GOP, 2 s)
writes `BUS.h264.high`, and `framebus-rtsp --listen 127.0.0.1:0` serves it
for the baseline.

Measures:
  1. Memory for 30 s of pre-roll, once the buffer is full (--fill, 32 s
     after the encoder's first frame): the recorder's
     `framebus_recorder_preroll_bytes` / `_preroll_milliseconds` gauges,
     its VmRSS and RssAnon (/proc/PID/status) before the encoder started
     and with the buffer full, and the stream's bit rate (the gauges'
     bytes ÷ seconds).
  2. CPU, % of one core over --rounds (2; quick 1) windows of --cpu-secs
     (30; quick 15) per point, the four points interleaved in each round,
     from /proc/PID/stat (the recorder's also by thread, with its context
     switches): the recorder buffering only; recording 1 clip; 4
     clips at once (`POST /api/v1/recordings {stream, duration: "90s"}`,
     stopped with DELETE after the window); and, as the baseline, in the
     same run, `ffmpeg -rtsp_transport tcp -i rtsp://…/BUS/high -c copy -f
     mp4 -movflags +frag_keyframe+empty_moov` recording the same encoded
     stream through framebus-rtsp (the usual way to record an RTSP
     camera). Bytes/s written: the recorder's
     `framebus_recorder_bytes_written_total`, ffmpeg's closed file's size
     ÷ its media time. The encoder's and the producer's CPU are given for
     scale (the producer's fixed work gauges the machine's speed). Ratios:
     recorder ÷ ffmpeg.
  3. Pre-roll accuracy: --clips (20; quick 5) recordings with preroll
     "5s" and duration "2s", requested at irregular intervals (0.3–1.7 s,
     --seed), each downloaded once done (`/api/v1/recordings/ID/file.mp4`).
     The first frame's time code (ffmpeg decodes it to GRAY8; band 1 read
     as docs/timecode.md says) against the requested start (the API's
     `requested_at_realtime_ns` − 5 s): the start must be the last
     keyframe at or before it, so 0 ≤ requested start − first frame < GOP
     (GOP from the encoder's log line, and the next keyframe in the file
     must come after the requested start); the time code must equal the
     API's `first_frame_realtime_ns` (to the µs); the first packet must be
     a keyframe; ffprobe's duration against 2 s + the API's `preroll_s`
     (error in frames: the clip ends at the first frame captured at or
     after the stop, that frame left out, so expect 0 ≤ error < 1).

Every process runs in its own process group and is stopped on exit
(Ctrl-C and SIGTERM too); the temporary directory is removed and the buses
with `framebus rm --force`. Prints a markdown report and writes it to
benches/recorder/results/DATE.md. Figures are reported, never asserted.
"""
import argparse
import datetime
import json
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

POINTS = ("idle", "rec1", "rec4", "ffmpeg")
HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCHES)
sys.path.insert(0, BENCHES)
from procs import HZ, cpu_ticks, kill_all, kill_group, machine, spawn, uptime, wait_path, write_report  # noqa: E402

W, H, FPS = 1920, 1080, 30
PROFILE = f"high={W}x{H}@{FPS},h264=high,bitrate=4M"
API = "/api/v1/recordings"
VERSIONS: dict = {}


# ---- small helpers --------------------------------------------------------
def http(method, url, body=None, timeout=30):
    """(status, parsed JSON or raw bytes) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, raw, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
    if "json" in ctype:
        try:
            return status, json.loads(raw)
        except ValueError:
            pass
    return status, raw


def metrics(base):
    """/metrics as {name without _total: [(labels, value)]}."""
    out = {}
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except (OSError, ValueError):
        return out
    for m in re.finditer(r'^(\w+?)(?:_total)?(?:\{([^}]*)\})? (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        try:
            out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
        except ValueError:
            pass
    return out


def gauge(m, name, **labels):
    """Sum of the series `name` whose labels include `labels`."""
    return sum(v for lb, v in m.get(name, []) if all(lb.get(k) == x for k, x in labels.items()))


def status_kb(pid, field):
    """A `kB` field of /proc/PID/status (VmRSS, RssAnon...), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_idle():
    """(idle+iowait, total) jiffies of the machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v[:8])


def version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def decode_timecode(gray, w, h):
    """(capture µs, frame counter) from a GRAY8 picture (docs/timecode.md:
    band 1 is 64 cells, band 2 32, each h/24 rows, MSB first; a 3x3 grid in
    the middle fifth of each cell, threshold 128), or None when a cell is
    within 24 of the threshold (not a time code)."""
    bh = h // 24

    def band(b, n):
        v = 0
        for i in range(n):
            x0, x1 = i * w // n, (i + 1) * w // n
            xm, dx = (x0 + x1) // 2, max(1, (x1 - x0) // 10)
            ym, dy = b * bh + bh // 2, max(1, bh // 10)
            s = [gray[(ym + j * dy) * w + xm + k * dx] for j in (-1, 0, 1) for k in (-1, 0, 1)]
            avg = sum(s) / len(s)
            if abs(avg - 128) < 24:
                return None
            v = v << 1 | (avg > 128)
        return v

    us, counter = band(0, 64), band(1, 32)
    return None if us is None or counter is None else (us, counter)


def first_frame_timecode(path):
    """The time code of the first decoded frame of an MP4 file, or None."""
    r = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-frames:v", "1", "-f", "rawvideo",
                        "-pix_fmt", "gray", "-"], capture_output=True, timeout=60)
    if r.returncode != 0 or len(r.stdout) < W * H:
        return None
    return decode_timecode(r.stdout, W, H)


def probe(path):
    """ffprobe of a file: its duration, and its packets' (pts s, key)."""
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                        "format=duration:packet=pts_time,flags", "-of", "json", path],
                       capture_output=True, text=True, timeout=60)
    try:
        j = json.loads(r.stdout)
    except ValueError:
        return None
    pk = [(float(p["pts_time"]), "K" in p.get("flags", "")) for p in j.get("packets", []) if "pts_time" in p]
    pk.sort()
    dur = j.get("format", {}).get("duration")
    return {"duration": float(dur) if dur else None, "packets": pk}


def threads(pid):
    """{tid: (comm, utime+stime ticks, context switches)} of pid's threads."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                raw = f.read()
            with open(f"/proc/{pid}/task/{t}/status") as f:
                cs = sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except (OSError, ValueError):
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[t] = (comm, int(fields[11]) + int(fields[12]), cs)
    return out


def thread_kind(comm):
    """The recorder's thread names: `tap <bus>` (one per encoded bus, see
    publishers/src/record/tap.rs: its reader, the pre-roll, the recordings'
    fragments; the kernel keeps 15 bytes of the name), `tokio-rt-worker`
    (HTTP), others (writers, blocking pool)."""
    if comm.startswith("tap "):
        return "tap"
    if comm.startswith("tokio-rt-worker"):
        return "tokio"
    return "other"


def aggregate(ws):
    """Figures of one point from its windows (one per round): every
    process's CPU as % of one core over the windows' total time, rates per
    second, and each round's recorder and ffmpeg CPU."""
    if not ws:
        return None
    dt = sum(w["seconds"] for w in ws)
    pct = lambda t: 100.0 * t / HZ / dt  # noqa: E731
    procs = ws[0]["ticks"].keys()
    th = {}
    for w in ws:
        for k, v in w["threads"].items():
            th[k] = th.get(k, 0) + v
    ij = [sum(w["idle_jiffies"][i] for w in ws) for i in (0, 1)]
    fb = [w["ffmpeg_bytes"] for w in ws if w.get("ffmpeg_bytes") is not None]
    return {"seconds": dt, "rounds": len(ws),
            "cpu": {k: pct(sum(w["ticks"][k] for w in ws)) for k in procs},
            "per_round": [{k: 100.0 * w["ticks"][k] / HZ / w["seconds"] for k in ("recorder", "ffmpeg")
                           if k in w["ticks"]} for w in ws],
            "threads": {k: pct(v) for k, v in th.items()},
            "wakeups_s": sum(w["ctxt"] for w in ws) / dt,
            "idle": 100.0 * ij[0] / max(1, ij[1]),
            "recorder_bytes_s": sum(w["bytes"] for w in ws) / dt,
            "fragments_s": sum(w["fragments"] for w in ws) / dt,
            "ffmpeg_bytes_s": sum(fb) / dt if fb else None,
            "encoded_fps": sum(w["published"] for w in ws) / dt,
            "source_dropped": sum(w["source_dropped"] for w in ws),
            "lost": sum(w["lost"] for w in ws),
            "clips": [c for w in ws for c in w.get("clips", [])],
            "files": [w["file"] for w in ws if w.get("file")],
            "errors": [w["error"] for w in ws if w.get("error")]}


def q3(xs):
    """(min, median, max) or None."""
    return (min(xs), statistics.median(xs), max(xs)) if xs else None


# ---- the bench ------------------------------------------------------------
class Bench:
    def __init__(self, a):
        self.a = a
        self.bus = f"bench-rec-{os.getpid()}"
        self.stream = f"{self.bus}/high"
        self.ebus = f"{self.bus}.h264.high"
        self.tmp = tempfile.mkdtemp(prefix="framebus-recbench-")
        self.dir = os.path.join(self.tmp, "recordings")
        self.clips = os.path.join(self.tmp, "clips")
        os.makedirs(self.clips)
        self.enc_log = os.path.join(self.tmp, "framebus-encoder.log")
        self.producer = self.recorder = self.encoder = self.rtsp_p = None
        self.gop_frames = None

    def log(self, name):
        if not self.a.log_dir:
            return subprocess.DEVNULL
        os.makedirs(self.a.log_dir, exist_ok=True)
        return open(os.path.join(self.a.log_dir, f"{name}.log"), "ab")

    def serve(self, cmd, name, prefix):
        """Starts a server that prints `listening on URL` first; its URL."""
        p = spawn(cmd, stdout=subprocess.PIPE, stderr=self.log(name), text=True)
        line = p.stdout.readline().strip()
        if not line.startswith("listening on " + prefix):
            sys.exit(f"{name} did not start: {line!r} (exit {p.poll()}; --log-dir DIR keeps its stderr)")
        return p, line.removeprefix("listening on ").rstrip("/")

    def start_without_encoder(self):
        a = self.a
        self.producer = spawn([a.producer, "--bus", self.bus, "--size", f"{W}x{H}", "--fps", str(FPS)],
                              stderr=self.log("producer"))
        wait_path(f"/dev/shm/framebus.{self.bus}")
        self.recorder, self.http = self.serve(
            [a.recorder, "--listen", "127.0.0.1:0", "--dir", self.dir, "--buffer", self.stream,
             "--preroll-max", "30s", "--min-free", "0"], "framebus-recorder", "http://")

    def start_encoder(self):
        a = self.a
        # Its log (for `gop=`) always; copied to --log-dir at the end.
        self.encoder = spawn([a.encoder, "--bus", self.bus, "--encoder", "libx264", "--no-adapt",
                              "--profile", PROFILE], stderr=open(self.enc_log, "ab"))
        wait_path(f"/dev/shm/framebus.{self.ebus}")

    def start_rtsp(self):
        self.rtsp_p, self.rtsp = self.serve([self.a.rtsp, "--listen", "127.0.0.1:0"], "framebus-rtsp", "rtsp://")

    def gop(self):
        """The encoder's GOP in frames, from its `encoded bus ready` line."""
        if self.gop_frames is None:
            try:
                with open(self.enc_log, errors="replace") as f:
                    text = re.sub(r"\x1b\[[0-9;]*m", "", f.read())  # its colours
                m = re.search(r"\bgop=(\d+)", text)
                self.gop_frames = int(m.group(1)) if m else None
            except OSError:
                pass
        return self.gop_frames

    def m(self):
        return metrics(self.http)

    def stat(self, name):
        """`framebus stat --json NAME` ({} when it fails)."""
        try:
            r = subprocess.run([self.a.cli, "stat", "--json", name], capture_output=True, text=True, timeout=10)
            return json.loads(r.stdout)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return {}

    def memory(self, pid):
        return {k: status_kb(pid, k) for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")}

    def preroll(self):
        m = self.m()
        return {"bytes": gauge(m, "framebus_recorder_preroll_bytes", stream=self.ebus),
                "ms": gauge(m, "framebus_recorder_preroll_milliseconds", stream=self.ebus),
                "lost": gauge(m, "framebus_recorder_frames_lost", stream=self.ebus)}

    # ---- 2. CPU ------------------------------------------------------------
    def window(self, secs, extra=None):
        """Raw deltas over `secs`: CPU ticks of every process, the recorder's
        ticks by thread and its context switches, the machine's idle
        jiffies, the recorder's counters, the buses' counters; `extra`
        (pid, bytes-so-far fn) for ffmpeg. aggregate() makes figures."""
        pids = {"recorder": self.recorder.pid, "encoder": self.encoder.pid, "producer": self.producer.pid,
                "rtsp": self.rtsp_p.pid}
        if extra:
            pids["ffmpeg"] = extra[0]
        m0, r0, e0 = self.m(), self.stat(self.bus), self.stat(self.ebus)
        t0, c0, i0 = time.monotonic(), {k: cpu_ticks(v) for k, v in pids.items()}, cpu_idle()
        th0, b0 = threads(self.recorder.pid), extra[1]() if extra else None
        time.sleep(secs)
        t1, c1, i1 = time.monotonic(), {k: cpu_ticks(v) for k, v in pids.items()}, cpu_idle()
        th1, b1 = threads(self.recorder.pid), extra[1]() if extra else None
        m1, r1, e1 = self.m(), self.stat(self.bus), self.stat(self.ebus)

        def d(a, b, k):
            return b[k] - a[k] if k in a and k in b else 0

        def g(name, **lb):
            return gauge(m1, name, **lb) - gauge(m0, name, **lb)
        # Threads alive at both ends, by kind; the rest (writer threads
        # that came and went) is the total minus these.
        kinds: dict = {}
        ctxt = 0
        for tid, (comm, ticks, cs) in th1.items():
            if tid in th0:
                k = thread_kind(comm)
                kinds[k] = kinds.get(k, 0) + ticks - th0[tid][1]
                ctxt += cs - th0[tid][2]
        return {"seconds": t1 - t0, "ticks": {k: c1[k] - c0[k] for k in pids},
                "idle_jiffies": (i1[0] - i0[0], i1[1] - i0[1]), "threads": kinds, "ctxt": ctxt,
                "bytes": g("framebus_recorder_bytes_written"), "fragments": g("framebus_recorder_fragments_written"),
                "ffmpeg_bytes": (b1 - b0) if extra else None, "published": d(e0, e1, "published"),
                "source_dropped": d(r0, r1, "source_dropped"), "lost": g("framebus_recorder_frames_lost"),
                "writing": gauge(m1, "framebus_recorder_recordings_writing", stream=self.ebus)}

    def start_clip(self, duration="90s", preroll=None):
        body = {"stream": self.stream, "duration": duration}
        if preroll is not None:
            body["preroll"] = preroll
        st, r = http("POST", self.http + API, body)
        if st != 201:
            raise RuntimeError(f"POST {API} -> {st}: {r!r}")
        return r

    def stop_clip(self, rid):
        st, r = http("DELETE", f"{self.http}{API}/{rid}")
        return r if st == 200 else {"error": f"DELETE -> {st}: {r!r}"}

    def recording_point(self, n, secs):
        clips = []
        try:
            for _ in range(n):
                clips.append(self.start_clip())
        except RuntimeError as e:
            for c in clips:
                self.stop_clip(c["id"])
            return {"error": str(e)}
        try:
            time.sleep(self.a.settle)
            r = self.window(secs)
        finally:
            done = [self.stop_clip(c["id"]) for c in clips]
        r["clips"] = [{k: d.get(k) for k in ("id", "state", "frames", "duration_s", "bytes", "error")}
                      for d in done]
        return r

    def ffmpeg_point(self, secs):
        out = os.path.join(self.tmp, "ffmpeg.mp4")
        ff = spawn(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-rtsp_transport", "tcp",
                    "-i", f"{self.rtsp}/{self.bus}/high", "-c", "copy", "-f", "mp4",
                    "-movflags", "+frag_keyframe+empty_moov", out], stderr=self.log("ffmpeg"))

        def size():
            try:
                return os.path.getsize(out)
            except OSError:
                return 0
        try:
            t0 = time.monotonic()
            while size() == 0:
                if ff.poll() is not None or time.monotonic() - t0 > 30:
                    return {"error": f"ffmpeg wrote nothing in 30 s (exit {ff.poll()})"}
                time.sleep(0.1)
            time.sleep(self.a.settle)
            r = self.window(secs, (ff.pid, size))
            if ff.poll() is not None:
                r["error"] = f"ffmpeg exited ({ff.returncode}) during the window"
            # Its file, closed (SIGINT: ffmpeg finishes it): frames and media time.
            kill_group(ff, signal.SIGINT)
            pr = probe(out)
            if pr and pr["packets"]:
                pk = pr["packets"]
                r["file"] = {"frames": len(pk), "media_s": pk[-1][0] - pk[0][0] + 1 / FPS,
                             "keyframes": sum(1 for _, k in pk if k), "bytes": size()}
            return r
        finally:
            kill_group(ff, signal.SIGINT)
            try:
                os.remove(out)
            except OSError:
                pass

    # ---- 3. pre-roll accuracy ---------------------------------------------
    def accuracy(self, n, rng):
        posted = []
        for i in range(n):
            if i:
                time.sleep(rng.uniform(0.3, 1.7))
            try:
                posted.append(self.start_clip(duration="2s", preroll="5s"))
            except RuntimeError as e:
                posted.append({"error": str(e)})
        out = []
        for p in posted:
            if p.get("error") or not p.get("id"):
                out.append({"error": p.get("error") or f"no id: {p!r}"})
                continue
            out.append(self.check_clip(p["id"]))
        return out

    def wait_done(self, rid, timeout=30):
        t0 = time.monotonic()
        while True:
            st, r = http("GET", f"{self.http}{API}/{rid}")
            if st == 200 and isinstance(r, dict) and r.get("state") not in ("waiting", "recording"):
                return r
            if time.monotonic() - t0 > timeout:
                return {"error": f"not finished after {timeout} s: {r!r}"[:300]}
            time.sleep(0.2)

    def check_clip(self, rid):
        rec = self.wait_done(rid)
        if rec.get("state") is None:
            return {"id": rid, "error": rec.get("error")}
        x = {"id": rid, "state": rec["state"], "api": rec}
        if rec["state"] != "done":
            x["error"] = f"state {rec['state']}: {rec.get('error')}"
            return x
        path = os.path.join(self.clips, f"{rid}.mp4")
        st, body = http("GET", f"{self.http}{API}/{rid}/file.mp4", timeout=60)
        if st != 200 or not isinstance(body, bytes):
            x["error"] = f"download -> {st}"
            return x
        with open(path, "wb") as f:
            f.write(body)
        tc = first_frame_timecode(path)
        pr = probe(path)
        os.remove(path)
        req_start_ns = rec["requested_at_realtime_ns"] - 5_000_000_000
        x["requested_start_ns"] = req_start_ns
        x["first_tc_us"] = tc[0] if tc else None
        x["api_first_ns"] = rec.get("first_frame_realtime_ns")
        if tc:
            x["delta_ms"] = (req_start_ns - tc[0] * 1000) / 1e6
            x["tc_matches_api"] = x["api_first_ns"] is not None and x["api_first_ns"] // 1000 == tc[0]
        if pr and pr["packets"]:
            pk = pr["packets"]
            x["first_key"] = pk[0][1]
            keys = [t for t, k in pk if k]
            x["frames"] = len(pk)
            x["gop_in_file_s"] = keys[1] - keys[0] if len(keys) > 1 else None
            # The next keyframe in the file, on the capture clock.
            if tc and len(keys) > 1:
                x["next_key_after_start"] = tc[0] * 1000 + (keys[1] - pk[0][0]) * 1e9 > req_start_ns
            x["ffprobe_duration_s"] = pr["duration"]
            if pr["duration"] is not None and rec.get("preroll_s") is not None:
                x["duration_error_frames"] = (pr["duration"] - (2.0 + rec["preroll_s"])) * FPS
        return x

    def cleanup(self):
        kill_all()
        if self.a.log_dir and os.path.exists(self.enc_log):
            os.makedirs(self.a.log_dir, exist_ok=True)
            shutil.copy(self.enc_log, os.path.join(self.a.log_dir, "framebus-encoder.log"))
        shutil.rmtree(self.tmp, ignore_errors=True)
        for name in (self.ebus, self.bus):
            if os.path.exists(f"/dev/shm/framebus.{name}"):
                subprocess.run([self.a.cli, "rm", "--force", name], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)


def _on_signal(signum, _frame):
    sys.exit(128 + signum)  # runs the finally: below


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--quick", action="store_true",
                    help="harness check (~2 min): --rounds 1, --cpu-secs 15, --clips 5 (numbers not for the docs)")
    ap.add_argument("--cpu-secs", type=float, help="CPU window per point and round (default 30, quick 15)")
    ap.add_argument("--rounds", type=int,
                    help="CPU rounds, the four points interleaved in each (default 2: 60 s per point; quick 1)")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds between starting a point's recordings (or ffmpeg's first bytes) and its window")
    ap.add_argument("--fill", type=float, default=32.0,
                    help="seconds after the encoder starts before the buffer counts as full (default 32)")
    ap.add_argument("--clips", type=int, help="pre-roll accuracy: recordings (default 20, quick 5)")
    ap.add_argument("--seed", type=int, default=16, help="seed of the intervals between the recordings")
    ap.add_argument("--out", help="report file (default benches/recorder/results/DATE[-quick].md)")
    ap.add_argument("--json", help="also write every figure here")
    ap.add_argument("--log-dir", help="write the servers' stderr here (RUST_LOG applies)")
    a = ap.parse_args()
    a.cpu_secs = a.cpu_secs or (15.0 if a.quick else 30.0)
    a.rounds = a.rounds or (1 if a.quick else 2)
    a.clips = a.clips or (5 if a.quick else 20)
    names = ("framebus-producer", "framebus-encoder", "framebus-recorder", "framebus-rtsp", "framebus")
    a.producer, a.encoder, a.recorder, a.rtsp, a.cli = (os.path.join(a.target_dir, b) for b in names)
    for b in (a.producer, a.encoder, a.recorder, a.rtsp, a.cli):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing: {b} (make build)")
    for b in ("ffmpeg", "ffprobe"):
        if not shutil.which(b):
            sys.exit(f"missing: {b} (make deps)")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    up_before, load_before = uptime(), os.getloadavg()
    print(f"uptime before: {up_before}", flush=True)
    bench = Bench(a)
    res = {"memory": {}, "cpu": {}, "accuracy": []}
    try:
        bench.start_without_encoder()
        time.sleep(3)
        res["memory"]["before"] = bench.memory(bench.recorder.pid)
        res["memory"]["before_preroll"] = bench.preroll()
        print("memory before the encoder", json.dumps(res["memory"]["before"]), flush=True)
        bench.start_encoder()
        t_enc = time.monotonic()
        bench.start_rtsp()
        # The recorder retries a missing bus every 2 s: wait for its tap.
        while bench.preroll()["ms"] <= 0:
            if time.monotonic() - t_enc > 20:
                sys.exit("the recorder buffered nothing 20 s after the encoder started")
            time.sleep(0.2)
        time.sleep(max(0.0, a.fill - (time.monotonic() - t_enc)))
        res["memory"]["full"] = bench.memory(bench.recorder.pid)
        res["memory"]["full_preroll"] = bench.preroll()
        res["memory"]["fill_s"] = time.monotonic() - t_enc
        res["gop_frames"] = bench.gop()
        print("memory with the buffer full", json.dumps(res["memory"]["full"]),
              json.dumps(res["memory"]["full_preroll"]), "gop", res["gop_frames"], flush=True)

        # Interleaved rounds: a change in the machine's load hits every point alike.
        windows = {k: [] for k in POINTS}
        errors = {k: [] for k in POINTS}
        run = {"idle": lambda: bench.window(a.cpu_secs), "rec1": lambda: bench.recording_point(1, a.cpu_secs),
               "rec4": lambda: bench.recording_point(4, a.cpu_secs), "ffmpeg": lambda: bench.ffmpeg_point(a.cpu_secs)}
        for rnd in range(a.rounds):
            for k in POINTS:
                w = run[k]()
                (windows[k] if "ticks" in w else errors[k]).append(w)
                if "ticks" in w:
                    cpu = {p: round(100.0 * t / HZ / w["seconds"], 2) for p, t in w["ticks"].items()}
                    print(f"round {rnd + 1} {k}", json.dumps(cpu), f"{w['bytes'] / w['seconds']:.0f} B/s",
                          w.get("error", ""), flush=True)
                else:
                    print(f"round {rnd + 1} {k}", w.get("error"), flush=True)
                if k == "idle" and rnd == 0:
                    res["memory"]["after_idle_preroll"] = bench.preroll()
                if k == "rec4" and rnd == 0:
                    res["memory"]["after_rec4"] = bench.memory(bench.recorder.pid)
        for k in POINTS:
            res["cpu"][k] = aggregate(windows[k]) or {}
            res["cpu"][k]["failed"] = [w.get("error") for w in errors[k]]
        res["windows"] = windows

        res["accuracy"] = bench.accuracy(a.clips, random.Random(a.seed))
        for x in res["accuracy"]:
            print("clip", json.dumps({k: v for k, v in x.items() if k != "api"}), flush=True)
        res["memory"]["end"] = bench.memory(bench.recorder.pid)
        res["recorder_alive"] = bench.recorder.poll() is None
        res["lost"] = bench.preroll()["lost"]
        up_after, load_after = uptime(), os.getloadavg()
        print(f"uptime after: {up_after}", flush=True)
        VERSIONS["ffmpeg"] = version(["ffmpeg", "-version"]).split(" Copyright")[0]
        VERSIONS["recorder"] = version([a.recorder, "--version"])
        text = report(a, res, started, up_before, up_after)
        write_report(text, started, os.path.join(HERE, "results"), ROOT, quick=a.quick, out=a.out,
                     json_path=a.json,
                     extra={"load_before": load_before, "load_after": load_after, "results": res})
    finally:
        bench.cleanup()


# ---- report ----------------------------------------------------------------
CMD = "/usr/bin/python3 benches/recorder/bench.py"


def f1(x):
    return "n/a" if x is None else f"{x:.1f}"


def f2(x):
    return "n/a" if x is None else f"{x:.2f}"


def ratio(x, y):
    return "n/a" if x is None or not y else f"{x / y:.2f}"


def row(*cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def mib(kb):
    return "n/a" if kb is None else f"{kb / 1024:.1f}"


def report(a, res, started, up_before, up_after):
    L = []
    cmd = CMD + " " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    quick = " — `--quick`: a harness check, not a result" if a.quick else ""
    gop = res.get("gop_frames")
    gop_s = gop / FPS if gop else None
    L.append(f"## Recorder benchmark, {started:%Y-%m-%d %H:%M} UTC{quick}")
    L.append("")
    L.append(f"Command: `{cmd.strip()}` (`make bench-recorder`)  ")
    L.append(f"Machine: {machine()}; {VERSIONS.get('ffmpeg', '?')}; {VERSIONS.get('recorder', '?')}  ")
    L.append(f"`uptime` before: `{up_before}`  ")
    L.append(f"`uptime` after: `{up_after}`")
    L.append("")
    L.append(f"Producer testsrc {W}x{H}@{FPS} NV12 with the time code; framebus-encoder libx264 `--no-adapt` "
             f"`{PROFILE}` (GOP {gop if gop else '?'} frames = {f2(gop_s)} s, from its log); "
             "`framebus-recorder --buffer BUS/high --preroll-max 30s --min-free 0` (fragments of 1 s, each "
             "fdatasync'ed); recordings on the machine's disk (a temporary directory). A figure taken at a load "
             "average above ~1 is a harness check, not a result. The producer's CPU column is a gauge of the "
             "machine's speed during each point: its work is fixed (painting and publishing 30 frames/s of 3 MB).")

    mem = res["memory"]
    b, f = mem.get("before") or {}, mem.get("full") or {}
    p = mem.get("full_preroll") or {}
    p2 = mem.get("after_idle_preroll") or {}
    L.append("")
    L.append(f"### Memory for 30 s of pre-roll (buffer full {mem.get('fill_s', 0):.0f} s after the encoder started)")
    L.append("")
    L.append(f"This table: `{cmd.strip()}` (the first step of every run)")
    L.append("")
    rate = p["bytes"] / (p["ms"] / 1000) if p.get("ms") else None
    d_rss = (f["VmRSS"] - b["VmRSS"]) if f.get("VmRSS") and b.get("VmRSS") else None
    d_anon = (f["RssAnon"] - b["RssAnon"]) if f.get("RssAnon") is not None and b.get("RssAnon") is not None else None
    L.append(row("measure", "before the encoder started", "buffer full", "difference",
                 "difference ÷ pre-roll bytes"))
    L.append("|---|---:|---:|---:|---:|")
    L.append(row("`framebus_recorder_preroll_milliseconds`", f"{mem.get('before_preroll', {}).get('ms', 0):.0f}",
                 f"{p.get('ms', 0):.0f} (after the first CPU window: {p2.get('ms', 0):.0f})", "", ""))
    L.append(row("`framebus_recorder_preroll_bytes`, MiB", f"{mem.get('before_preroll', {}).get('bytes', 0) / 2**20:.2f}",
                 f"{p.get('bytes', 0) / 2**20:.2f} (after the first CPU window: {p2.get('bytes', 0) / 2**20:.2f})",
                 "", "1.00"))
    L.append(row("recorder VmRSS, MiB", mib(b.get("VmRSS")), mib(f.get("VmRSS")), mib(d_rss),
                 ratio(d_rss * 1024 if d_rss is not None else None, p.get("bytes"))))
    L.append(row("recorder RssAnon, MiB", mib(b.get("RssAnon")), mib(f.get("RssAnon")), mib(d_anon),
                 ratio(d_anon * 1024 if d_anon is not None else None, p.get("bytes"))))
    L.append(row("recorder RssShmem (the encoded bus mapped), MiB", mib(b.get("RssShmem")), mib(f.get("RssShmem")),
                 "", ""))
    L.append("")
    L.append(f"Stream bit rate from the gauges (bytes ÷ seconds): {rate * 8 / 1e6:.2f} Mbit/s "
             f"({rate / 1e3:.0f} kB/s)." if rate else "Stream bit rate: n/a (no pre-roll).")
    if gop_s and p.get("ms"):
        L.append(f"The buffer keeps whole GOPs back to the last keyframe at or before newest − 30 s, so it holds "
                 f"between 30 s and 30 s + one GOP ({30 + gop_s:g} s). "
                 f"Recorder VmRSS after the 4-clip point: {mib((mem.get('after_rec4') or {}).get('VmRSS'))} MiB; "
                 f"at the end of the run: {mib((mem.get('end') or {}).get('VmRSS'))} MiB "
                 f"(peak VmHWM {mib((mem.get('end') or {}).get('VmHWM'))} MiB).")

    cpu = res["cpu"]
    L.append("")
    L.append(f"### CPU per recorded 1080p30 stream, % of one core ({a.rounds} round(s) × {a.cpu_secs:g} s per "
             "point, the points interleaved in each round)")
    L.append("")
    L.append(f"This table: `{cmd.strip()}`")
    L.append("")
    ff = cpu.get("ffmpeg") or {}
    ffc = (ff.get("cpu") or {}).get("ffmpeg")
    L.append(row("point", "recording process CPU", "÷ ffmpeg", "each round", "recorder threads: tap / tokio / "
                 "other", "recorder wake-ups/s", "bytes written/s", "fragments/s", "framebus-encoder",
                 "framebus-rtsp", "producer", "machine idle", "frames encoded/s", "source drops"))
    L.append("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    labels = {"idle": "framebus-recorder, buffering 30 s, no recording",
              "rec1": "**framebus-recorder, buffering + 1 recording**",
              "rec4": "framebus-recorder, buffering + 4 recordings of the stream",
              "ffmpeg": "ffmpeg `-c copy` fMP4 from framebus-rtsp, 1 recording (baseline)"}
    for k in POINTS:
        x = cpu.get(k) or {}
        if "cpu" not in x:
            L.append(row(labels[k], f"n/a: {'; '.join(str(e) for e in x.get('failed') or []) or 'not run'}",
                         *[""] * 12))
            continue
        c = x["cpu"]
        who = "ffmpeg" if k == "ffmpeg" else "recorder"
        own = c.get(who)
        if k == "ffmpeg":  # its closed files: the size grows by whole fragments (GOPs) while it runs
            fl = x["files"]
            bps = sum(f["bytes"] for f in fl) / sum(f["media_s"] for f in fl) if fl else x["ffmpeg_bytes_s"]
        else:
            bps = x["recorder_bytes_s"]
        r = "1.00" if k == "ffmpeg" else ratio(own, ffc)
        t = x["threads"]
        L.append(row(labels[k], f2(own), f"**{r}**" if k == "rec1" else r,
                     " / ".join(f2(pr.get(who)) for pr in x["per_round"]),
                     "" if k == "ffmpeg" else " / ".join(f2(t.get(n, 0.0) if n != "other" else
                                                            c["recorder"] - t.get("tap", 0) - t.get("tokio", 0))
                                                         for n in ("tap", "tokio", "other")),
                     "" if k == "ffmpeg" else f"{x['wakeups_s']:.0f}",
                     f"{bps / 1e3:.0f} kB/s" if bps is not None else "n/a",
                     "" if k == "ffmpeg" else f"{x['fragments_s']:.2f}", f1(c["encoder"]), f2(c["rtsp"]),
                     f1(c["producer"]), f"{x['idle']:.0f} %", f"{x['encoded_fps']:.2f}", x["source_dropped"]))
    idle = ((cpu.get("idle") or {}).get("cpu") or {}).get("recorder")
    r1 = ((cpu.get("rec1") or {}).get("cpu") or {}).get("recorder")
    r4 = ((cpu.get("rec4") or {}).get("cpu") or {}).get("recorder")
    L.append("")
    if r1 is not None and idle is not None:
        marg1 = r1 - idle
        marg4 = (r4 - idle) / 4 if r4 is not None else None
        L.append(f"- Per recording, over buffering alone: {f2(marg1)} % (1 recording), {f2(marg4)} % each "
                 f"(4 at once); ÷ ffmpeg: {ratio(marg1, ffc)} / {ratio(marg4, ffc)}.")
        L.append(f"- Goal (issue 16): ≤ 1 % of a core per recorded 1080p30 stream: the recorder buffering and "
                 f"recording one stream takes {f2(r1)} % — **{'met' if r1 <= 1.0 else 'not met'}**"
                 f"{'' if r1 <= 1.0 else f' ({f2(marg1)} % over buffering alone)'}.")
    L.append("- ffmpeg's figure is ffmpeg alone (depacketizing RTP over TCP and muxing); framebus-rtsp serving it "
             "is the camera's side and is listed apart. The recorder keeps buffering during the baseline point. "
             "Recorder threads: CPU of the threads alive through a window by name (`tap BUS`: one thread per "
             "encoded bus, reading it, keeping the pre-roll, cutting the recordings' fragments; "
             "`tokio-rt-worker`: HTTP); other: the rest (writer threads, the blocking pool). Wake-ups/s: the "
             "recorder's context switches (voluntary + not). Bytes written/s: "
             "the recorder's `framebus_recorder_bytes_written_total` over the windows; ffmpeg's closed files' size "
             "÷ their media seconds (its file grows by whole GOP fragments). Frames encoded/s: the encoded bus's "
             "`published` (`framebus stat`); source drops: the raw bus's `source_dropped` over the windows.")
    lost = [f"{k}: {cpu[k]['lost']:.0f}" for k in POINTS if (cpu.get(k) or {}).get("lost")]
    if lost:
        L.append(f"- Frames the recorder lost (`framebus_recorder_frames_lost`) during a window: {', '.join(lost)}.")
    for k in POINTS:
        for e in (cpu.get(k) or {}).get("failed") or []:
            L.append(f"- {k}: a window failed: {e}")
        for e in (cpu.get(k) or {}).get("errors") or []:
            L.append(f"- {k}: {e}")
    for k, what in (("rec1", "1 recording"), ("rec4", "4 recordings")):
        cl = (cpu.get(k) or {}).get("clips") or []
        bad = [c for c in cl if c.get("state") != "done" or c.get("error")]
        if bad:
            L.append(f"- {what}: not done after DELETE: {json.dumps(bad)}")
        if cl:
            fps = [c["frames"] / c["duration_s"] for c in cl if c.get("duration_s")]
            L.append(f"- {what}, as stopped (DELETE after each window): {len(cl)} files, "
                     f"{min(c.get('frames') or 0 for c in cl)}–{max(c.get('frames') or 0 for c in cl)} frames, "
                     f"{f2(min(c.get('duration_s') or 0 for c in cl))}–{f2(max(c.get('duration_s') or 0 for c in cl))} "
                     f"s, {min(fps):.2f}–{max(fps):.2f} frames/s." if fps else f"- {what}: {json.dumps(cl)}")
    for fl in ff.get("files") or []:
        L.append(f"- ffmpeg's file, closed after its window: {fl['frames']} frames over {fl['media_s']:.2f} s of "
                 f"media ({fl['frames'] / fl['media_s']:.2f} frames/s), {fl['keyframes']} keyframes, "
                 f"{fl['bytes'] / 1e6:.2f} MB.")

    acc = res["accuracy"]
    ok = [x for x in acc if x.get("delta_ms") is not None]
    errs = [x for x in acc if x.get("error") or x.get("delta_ms") is None]
    L.append("")
    L.append(f"### Pre-roll accuracy: {len(acc)} recordings, preroll 5 s, duration 2 s, requested 0.3–1.7 s apart "
             f"(seed {a.seed})")
    L.append("")
    L.append(f"This table: `{cmd.strip()}`")
    L.append("")
    L.append(row("measure", "min", "median", "max", "count"))
    L.append("|---|---:|---:|---:|---|")
    d = q3([x["delta_ms"] for x in ok])
    if d:
        inside = sum(1 for x in ok if 0 <= x["delta_ms"] < (gop_s or 0) * 1000)
        L.append(row("requested start − first frame's time code, ms", f1(d[0]), f1(d[1]), f1(d[2]),
                     f"**{inside} of {len(acc)}** in [0, GOP = {f1(gop_s * 1000 if gop_s else None)} ms)"))
    nk = [x for x in ok if x.get("next_key_after_start") is not None]
    if nk:
        L.append(row("next keyframe in the file after the requested start", "", "", "",
                     f"{sum(1 for x in nk if x['next_key_after_start'])} of {len(nk)}"))
    mm = [x for x in ok if not x.get("tc_matches_api")]
    L.append(row("first frame's time code ≠ API's `first_frame_realtime_ns` (µs)", "", "", "",
                 f"**{len(mm)}** of {len(ok)}"))
    fk = [x for x in acc if x.get("first_key") is not None]
    L.append(row("first packet a keyframe", "", "", "", f"{sum(1 for x in fk if x['first_key'])} of {len(fk)}"))
    de = q3([x["duration_error_frames"] for x in acc if x.get("duration_error_frames") is not None])
    if de:
        L.append(row("ffprobe duration − (2 s + API `preroll_s`), frames", f2(de[0]), f2(de[1]), f2(de[2]),
                     f"largest error {max(abs(de[0]), abs(de[2])):.2f} frames"))
    ps = q3([x["api"]["preroll_s"] for x in acc if x.get("api", {}).get("preroll_s") is not None])
    if ps:
        L.append(row("API `preroll_s` (request − first frame), s", f2(ps[0]), f2(ps[1]), f2(ps[2]), ""))
    gf = q3([x["gop_in_file_s"] for x in acc if x.get("gop_in_file_s")])
    if gf:
        L.append(row("keyframe spacing in the files, s", f2(gf[0]), f2(gf[1]), f2(gf[2]), ""))
    fr = q3([x["frames"] for x in acc if x.get("frames")])
    if fr:
        L.append(row("frames per file", fr[0], fr[1], fr[2], ""))
    L.append("")
    if errs:
        L.append(f"- Recordings with an error: {json.dumps([{k: v for k, v in x.items() if k != 'api'} for x in errs])}")
    if mm:
        L.append(f"- Time code ≠ API: {json.dumps([(x['id'], x.get('first_tc_us'), x.get('api_first_ns')) for x in mm])}")
    L.append(f"- Recorder alive at the end: {res.get('recorder_alive')}; frames lost "
             f"(`framebus_recorder_frames_lost`): {res.get('lost', 0):.0f}.")
    L.append("- Requested start: the API's `requested_at_realtime_ns` − 5 s (the recorder takes the request's "
             "monotonic and real times together); first frame: band 1 of the first decoded frame of "
             "`/api/v1/recordings/ID/file.mp4` (ffmpeg → GRAY8), µs.")
    L.append("")
    L.append("#### Each recording")
    L.append("")
    L.append(row("id", "state", "requested start − first frame, ms", "time code = API", "first key",
                 "frames", "ffprobe duration, s", "API preroll_s", "duration error, frames"))
    L.append("|---|---|---:|---|---|---:|---:|---:|---:|")
    for x in acc:
        api = x.get("api") or {}
        L.append(row(x.get("id", "?"), x.get("state", x.get("error", "?")), f1(x.get("delta_ms")),
                     x.get("tc_matches_api", "n/a"), x.get("first_key", "n/a"), x.get("frames", "n/a"),
                     f2(x.get("ffprobe_duration_s")), f2(api.get("preroll_s")), f2(x.get("duration_error_frames"))))
    return "\n".join(L)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""WebRTC benchmark: framebus-mjpeg's WHEP output played in headless
Chromium, against RTSP (framebus-rtsp + a GStreamer client) on the same
encoded bus, in the same run.

Run with (from the repository root, after `make build node-deps`):

    make bench-webrtc                                  # full run, ~17 min
    make bench-webrtc WEBRTC_ARGS=--quick              # harness check, ~5 min
    /usr/bin/python3 benches/webrtc/bench.py --quick

Set-up: `framebus-producer` writes its test pattern with the time code
(docs/timecode.md) at 1920x1080@--fps; one `framebus-encoder` per profile
(`--encoder libx264 --no-adapt`, h264=main): `wb1080` 1920x1080@30 4 Mbit/s
and `wb720` 1280x720@30 2.5 Mbit/s (and `wb180` 320x180@30 300 kbit/s for
the small CPU series); `framebus-mjpeg` serves WHEP
(`POST /BUS/PROFILE/whep?adapt=0`: each viewer stays on its profile);
`framebus-rtsp` serves the same encoded buses. The browser side is
benches/webrtc/viewer.mjs (playwright-core from publishers/tests/browser):
N viewers in one page, viewer 0's every presented frame streamed back.

Measures:
  1. glass-to-glass latency at 1080p30 and 720p30, --seconds per point,
     the WebRTC and RTSP points interleaved (--rounds):
       * WebRTC: rVFC presentationTime - the frame's time code;
       * the same frames by abs-capture-time: presentationTime -
         RTCRtpReceiver.getSynchronizationSources() captureTimestamp of the
         presented frame's rtpTimestamp (rVFC metadata.captureTime is also
         recorded; Chromium 156 leaves it unset);
       * baseline: the RTSP GStreamer client of benches/rtsp/bench.py
         (rtspsrc latency=0 ! avdec_h264, frame in our hands - time code);
     goal: WebRTC p50 <= 35 ms at 1080p30 and below the RTSP/GStreamer p50.
  2. drift: one 720p viewer for --drift-minutes (10; quick 2), p50/p99 per
     minute; goal: the last minute's p99 <= 1.2x the first minute's.
  3. server CPU (framebus-mjpeg + the profile's framebus-encoder, from
     /proc/PID/stat) with 1, 10, 20 viewers of 720p, --cpu-secs each;
     goal 20/1 <= 1.15; the encoded bus's readers (one: framebus-mjpeg's
     feed) and encoder processes are counted; Chromium's own CPU (every
     process under the viewer script) and the machine's idle share are
     reported beside it. When 20 decoders of 720p saturate the machine
     (idle < 10 % or a viewer under 90 % of the frames) the series is
     repeated at 320x180 (--small auto|yes|no).

Every process runs in its own process group and is stopped on exit
(Ctrl-C and SIGTERM too), Chromium through the viewer script (SIGTERM
closes it) and, failing that, by its own process group; the buses are
removed with `framebus rm --force`. Prints a markdown report and writes it
to benches/webrtc/results/DATE.md.
"""
import argparse
import datetime
import importlib.util
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCHES)
sys.path.insert(0, BENCHES)
from procs import HZ, cpu_ticks, kill_all, kill_group, machine, spawn, uptime, wait_path, write_report  # noqa: E402


def _load_rtsp_bench():
    # By path: this file is also called bench.py.
    spec = importlib.util.spec_from_file_location("rtsp_bench", os.path.join(BENCHES, "rtsp", "bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rtsp_bench = _load_rtsp_bench()

VIEWER = os.path.join(HERE, "viewer.mjs")
NTP_UNIX_MS = 2_208_988_800_000  # 1900-01-01 to 1970-01-01
WARMUP_S = 2.0  # samples of the first seconds (the joiner's GOP burst) are left out
PROFILES = {
    # name: (label, width, height, bitrate)
    "wb1080": ("1080p30", 1920, 1080, "4M"),
    "wb720": ("720p30", 1280, 720, "2500k"),
    "wb180": ("320x180p30", 320, 180, "300k"),
}
# Every viewer script runs with FRAMEBUS_WBENCH_TAG=RUN.N in its
# environment, which Chromium and its helpers inherit: what a script that
# needed SIGKILL leaves behind (Chromium runs in its own process group) is
# found by it, never by name.
TAG = "FRAMEBUS_WBENCH_TAG"
RUN = f"{os.getpid()}-{time.time_ns()}"
BROWSERS = [0]
LIVE: list = []  # Browsers not closed yet
BROWSER_VERSION: list[str] = []


def quantiles(xs):
    """n, p50/p90/p99 (nearest rank, as benches/rtsp/bench.py), max."""
    if not xs:
        return None
    s = sorted(xs)
    q = lambda x: s[min(len(s) - 1, int(x * len(s)))]  # noqa: E731
    return {"n": len(s), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": s[-1]}


def tagged(tag, sids):
    """PIDs of a viewer script and its Chromium: the processes whose
    environment has FRAMEBUS_WBENCH_TAG=tag (or starts with it when tag
    ends in "."): the script and Chromium's main process, which is a
    session leader; Chromium's zygote clears the environment of the rest,
    found by their session. `sids` (updated) remembers the sessions seen,
    for when the main process is gone: a session id is not reused while a
    process is in it."""
    want = f"{TAG}={tag}".encode()
    sess = {}
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        pid = int(d)
        try:
            with open(f"/proc/{d}/stat") as f:
                sess[pid] = int(f.read().rsplit(")", 1)[1].split()[3])
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if any(v == want or (want.endswith(b".") and v.startswith(want)) for v in env):
            out.append(pid)
    sids.update(p for p in out if sess.get(p) == p)
    return sorted(set(out) | {p for p, sid in sess.items() if sid in sids})


def metrics(base):
    """framebus-mjpeg's /metrics as {name without _total: [(labels, value)]}."""
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


def cpu_idle():
    """(idle+iowait, total) jiffies of the machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v[:8])


class Browser:
    """benches/webrtc/viewer.mjs: n WHEP viewers of `url` in one Chromium."""

    def __init__(self, url, n, max_seconds, tmp):
        log = open(os.environ["BENCH_CLIENT_LOG"], "ab") if os.environ.get("BENCH_CLIENT_LOG") else subprocess.DEVNULL
        BROWSERS[0] += 1
        self.tag = f"{RUN}.{BROWSERS[0]}"
        # TMPDIR: Chromium's profile and the script's scratch HOME go under
        # the run's directory, removed at the end whatever happened.
        env = dict(os.environ, **{TAG: self.tag, "TMPDIR": tmp})
        self.p = spawn(["node", VIEWER, "--url", url, "--viewers", str(n), "--max-seconds", str(int(max_seconds)),
                        "--flush-ms", "2000"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1, env=env)
        self.events = queue.Queue()
        self.samples = []  # (sample list, page clock - wall clock ms)
        self.fields = None
        self.sids: set[int] = set()
        LIVE.append(self)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "samples":
                off = (e.get("clock") or {}).get("page_minus_wall_ms") or 0.0
                self.samples += [(s, off) for s in e["s"]]
            else:
                self.events.put(e)
        self.events.put({"event": "eof"})

    def wait(self, kind, timeout):
        deadline = time.time() + timeout
        while True:
            try:
                e = self.events.get(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                return None
            if e.get("event") in (kind, "eof", "error"):
                return e if e.get("event") == kind else None
            if time.time() > deadline:
                return None

    def ready(self, timeout=60):
        e = self.wait("ready", timeout)
        if e:
            self.fields = e["fields"]
            if e.get("browser") and not BROWSER_VERSION:
                BROWSER_VERSION.append(e["browser"])
            tagged(self.tag, self.sids)  # remember Chromium's session
        return e

    def send(self, cmd):
        try:
            self.p.stdin.write(cmd + "\n")
            self.p.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def mark(self):
        self.send("mark")
        return self.wait("mark", 60)

    def stop(self):
        """Ends the viewers (WHEP DELETE) and closes the browser; the end event."""
        e = None
        if self.p.poll() is None:
            self.send("stop")
            e = self.wait("end", 60)
        self.close()
        return e

    def close(self):
        """The script and its browser, whatever state they are in: SIGTERM
        closes the browser; a script that needed SIGKILL leaves Chromium
        in its own process group (the next points must not share the CPU
        with it)."""
        kill_group(self.p, wait=20)
        for _ in range(50):
            if not tagged(self.tag, self.sids):
                break
            kill_tagged(self.tag, self.sids)
            time.sleep(0.1)
        # Its sessions are empty: their ids may now go to anyone.
        self.sids.clear()
        if self in LIVE:
            LIVE.remove(self)

    def rows(self):
        """viewer 0's samples as dicts, on the wall clock."""
        out = []
        for s, off in self.samples:
            r = dict(zip(self.fields, s))
            for k in ("present", "rvfc_capture", "receive"):
                if r.get(k) is not None:
                    r[k] -= off
            out.append(r)
        return out


def browser_latency(rows, t_from):
    """Latency figures of viewer 0's frames presented after t_from (ms)."""
    rows = [r for r in rows if r["present"] >= t_from]
    tc, absl, rvfc, agree, net = [], [], [], [], []
    gaps = repeats = 0
    last = None
    for r in rows:
        if r["timecode"] is not None and abs(r["present"] - r["timecode"]) < 60_000:
            tc.append(r["present"] - r["timecode"])
            if last is not None:
                step = (r["counter"] - last) & 0xFFFFFFFF
                if step == 0:
                    repeats += 1
                elif 1 < step < 2**31:
                    gaps += step - 1
            last = r["counter"]
        if r["ssrc_capture"] is not None:
            cap = r["ssrc_capture"] - NTP_UNIX_MS
            absl.append(r["present"] - cap)
            if r["timecode"] is not None:
                agree.append(cap - r["timecode"])
        if r["rvfc_capture"] is not None:
            rvfc.append(r["present"] - r["rvfc_capture"])
        if r["receive"] is not None:
            net.append(r["present"] - r["receive"])
    span = (rows[-1]["present"] - rows[0]["present"]) / 1000 if len(rows) > 1 else 0
    return {"frames": len(rows), "fps": round((len(rows) - 1) / span, 1) if span else 0.0,
            "lat": quantiles(tc), "abs": quantiles(absl), "rvfc": quantiles(rvfc),
            "abs_minus_tc": quantiles(agree), "receive_to_present": quantiles(net),
            "counter_gaps": gaps, "repeats": repeats}


class Bench:
    def __init__(self, a):
        self.a = a
        self.bus = f"bench-webrtc-{os.getpid()}"
        self.encoders = {}  # profile -> Popen
        self.http = self.rtsp_base = None
        self.mjpeg = None
        self.tmp = tempfile.mkdtemp(prefix="framebus-wbench-")

    # ---- processes ------------------------------------------------------
    def log(self, name):
        """stderr of a server process: a file in --log-dir, else nowhere."""
        if not self.a.log_dir:
            return subprocess.DEVNULL
        os.makedirs(self.a.log_dir, exist_ok=True)
        return open(os.path.join(self.a.log_dir, f"{name}.log"), "ab")

    def start(self):
        a = self.a
        spawn([a.producer, "--bus", self.bus, "--size", "1920x1080", "--fps", str(a.fps)], stderr=self.log("producer"))
        wait_path(f"/dev/shm/framebus.{self.bus}")
        for p in ("wb1080", "wb720"):
            self.encoder(p)
        self.mjpeg = spawn([a.mjpeg, "--listen", "127.0.0.1:0", "--no-discover", "--bus", self.bus],
                           stdout=subprocess.PIPE, stderr=self.log("framebus-mjpeg"), text=True)
        line = self.mjpeg.stdout.readline().strip()
        if not line.startswith("listening on http://"):
            sys.exit(f"framebus-mjpeg did not start: {line!r}")
        self.http = line.removeprefix("listening on ").rstrip("/")
        rtsp = spawn([a.rtsp, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=self.log("framebus-rtsp"),
                     text=True)
        line = rtsp.stdout.readline().strip()
        if not line.startswith("listening on "):
            sys.exit(f"framebus-rtsp did not start: {line!r}")
        self.rtsp_base = line.removeprefix("listening on ").rstrip("/")

    def encoder(self, profile):
        if profile not in self.encoders:
            _, w, h, rate = PROFILES[profile]
            self.encoders[profile] = spawn(
                [self.a.encoder, "--bus", self.bus, "--encoder", "libx264",
                 "--profile", f"{profile}={w}x{h}@30,bitrate={rate},gop=60,h264=main",
                 *([] if self.a.encoder_adapt else ["--no-adapt"])], stderr=self.log(f"framebus-encoder-{profile}"))
            wait_path(f"/dev/shm/framebus.{self.ebus(profile)}")
        return self.encoders[profile]

    def ebus(self, profile):
        return f"{self.bus}.h264.{profile}"

    def whep(self, profile):
        return f"{self.http}/{self.bus}/{profile}/whep?adapt=0"

    def stat(self, profile):
        try:
            out = subprocess.run([self.a.cli, "stat", "--json", self.ebus(profile)], capture_output=True,
                                 text=True, timeout=10).stdout
            return json.loads(out)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return {}

    def encoder_count(self, profile):
        """framebus-encoder processes writing this profile's bus."""
        n = 0
        for pid in rtsp_bench.encoder_procs(self.bus):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if any(x.startswith(f"{profile}=".encode()) for x in argv):
                n += 1
        return n

    # ---- measurements ---------------------------------------------------
    def webrtc_latency(self, profile, seconds):
        b = Browser(self.whep(profile), 1, seconds + 60, self.tmp)
        try:
            ready = b.ready()
            if not ready:
                return {"error": "no viewer became ready"}
            t_from = time.time() * 1000 + WARMUP_S * 1000
            time.sleep(WARMUP_S + seconds)
            end = b.stop()
            res = browser_latency(b.rows(), t_from)
            res["viewer"] = (end or {}).get("viewers", [None])[0] if end and end.get("viewers") else ready["viewers"][0]
            res["browser"] = ready.get("browser")
            return res
        finally:
            b.close()

    def rtsp_latency(self, profile, seconds):
        _, w, h, _ = PROFILES[profile]
        url = f"{self.rtsp_base}/{self.bus}/{profile}"
        return rtsp_bench.latency(rtsp_bench.gst_client(url), int(seconds * 30), size=(w, h))

    def drift(self, profile, minutes):
        b = Browser(self.whep(profile), 1, minutes * 60 + 90, self.tmp)
        try:
            ready = b.ready()
            if not ready:
                return {"error": "no viewer became ready"}
            t_from = time.time() * 1000 + WARMUP_S * 1000
            time.sleep(WARMUP_S + minutes * 60)
            end = b.stop()
            rows = [r for r in b.rows() if r["present"] >= t_from]
            per = []
            for m in range(minutes):
                lo, hi = t_from + m * 60_000, t_from + (m + 1) * 60_000
                per.append(browser_latency([r for r in rows if lo <= r["present"] < hi], lo))
            offs = [off for _, off in b.samples]
            return {"minutes": per, "all": browser_latency(rows, t_from),
                    "viewer": (end or {}).get("viewers", [None])[0] if end and end.get("viewers") else None,
                    "clock_offset_ms": (min(offs), max(offs)) if offs else None}
        finally:
            b.close()

    def cpu(self, profile, n, secs):
        """Server and Chromium CPU (% of one core) with n viewers."""
        pids = {"framebus-mjpeg": self.mjpeg.pid, "framebus-encoder": self.encoder(profile).pid}
        b = Browser(self.whep(profile), n, secs + 120, self.tmp)
        try:
            ready = b.ready(timeout=90)
            if not ready:
                return {"n": n, "error": "the viewers did not start"}
            refused = [v for v in ready["viewers"] if v.get("post_status") != 201]
            if refused:
                v = refused[0]
                return {"n": n, "error": f"{len(refused)} of {n} POSTs refused: {v.get('post_status')} "
                                         f"{(v.get('post_error') or '')[:200]}"}
            time.sleep(4)  # all playing, encoder warm
            m0 = b.mark()
            chrome0 = {p: cpu_ticks(p) for p in tagged(b.tag, b.sids)}
            t0, c0, i0 = time.time(), {k: cpu_ticks(p) for k, p in pids.items()}, cpu_idle()
            st0, me0 = self.stat(profile), metrics(self.http)
            time.sleep(secs)
            t1, c1, i1 = time.time(), {k: cpu_ticks(p) for k, p in pids.items()}, cpu_idle()
            chrome1 = {p: cpu_ticks(p) for p in tagged(b.tag, b.sids)}
            st1, me1 = self.stat(profile), metrics(self.http)
            m1 = b.mark()
            encoders = self.encoder_count(profile)
        finally:
            b.stop()
        dt = t1 - t0
        pct = lambda d: 100.0 * d / HZ / dt  # noqa: E731
        parts = {k: pct(c1[k] - c0[k]) for k in pids}
        chrome = pct(sum(v - chrome0.get(p, 0) for p, v in chrome1.items()))
        fps = []
        if m0 and m1 and m0.get("viewers") and m1.get("viewers"):
            for v0, v1 in zip(m0["viewers"], m1["viewers"]):
                d0, d1 = v0.get("frames_decoded"), v1.get("frames_decoded")
                t0s, t1s = v0.get("stats_timestamp"), v1.get("stats_timestamp")
                span = (t1s - t0s) / 1000 if t0s and t1s else 0
                fps.append((d1 - d0) / span if d0 is not None and d1 is not None and span > 0 else 0.0)
        # Server side, per session of this profile: access units written
        # per second, skips to a keyframe (viewer too slow), and the feed.
        def per_session(m, name):
            return {lb.get("session"): v for lb, v in m.get(f"framebus_webrtc_{name}", [])
                    if lb.get("bus") == self.bus and lb.get("profile") == profile}
        f0, f1_ = per_session(me0, "session_frames"), per_session(me1, "session_frames")
        sent = [(f1_[k] - f0[k]) / dt for k in f1_ if k in f0]
        sk0, sk1 = per_session(me0, "session_skips"), per_session(me1, "session_skips")
        feeds = [v for lb, v in me1.get("framebus_webrtc_feed_sessions", []) if lb.get("bus") == self.ebus(profile)]
        tot = lambda m, k: sum(v for _, v in m.get(f"framebus_webrtc_{k}", []))  # noqa: E731
        pub = lambda st: st.get("published")  # noqa: E731
        enc_fps = (pub(st1) - pub(st0)) / dt if pub(st0) is not None and pub(st1) is not None else None
        server = {"encoded_fps": enc_fps,
                  "sent_fps_min": min(sent) if sent else None,
                  "sent_fps_mean": sum(sent) / len(sent) if sent else None,
                  "skips": sum(sk1.values()) - sum(sk0.get(k, 0) for k in sk1),
                  "feed_sessions": feeds[0] if feeds else None,
                  "send_dropped": tot(me1, "udp_send_dropped") - tot(me0, "udp_send_dropped"),
                  "inbox_full": tot(me1, "udp_inbox_full") - tot(me0, "udp_inbox_full")}
        readers = [r.get("pid") for r in st1.get("readers", [])] if st1 else None
        others = [p for p in readers or [] if p != self.mjpeg.pid]
        return {"n": n, "parts": parts, "total": sum(parts.values()), "chromium": chrome,
                "idle": 100.0 * (i1[0] - i0[0]) / max(1, i1[1] - i0[1]),
                "fps_min": min(fps) if fps else None, "fps_mean": sum(fps) / len(fps) if fps else None,
                "playing": sum(1 for f in fps if f > 0) if fps else None,
                "readers": readers, "other_readers": others, "server": server, "encoders": encoders,
                "encoder_steps": (st0.get("encoder_steps"), st1.get("encoder_steps")),
                "connected": sum(1 for v in ready["viewers"] if v.get("post_status") == 201)}

    def cpu_series(self, profile):
        return [self.cpu(profile, n, self.a.cpu_secs) for n in self.a.viewer_counts]


def saturated(series, fps):
    top = series[-1] if series else None
    return bool(top and ("error" in top or top["idle"] < 10.0 or top["fps_min"] is None
                         or top["fps_min"] < 0.9 * fps))


def _on_signal(signum, _frame):
    sys.exit(128 + signum)  # runs the finally: below


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--quick", action="store_true",
                    help="harness check: --seconds 8 --drift-minutes 2 --cpu-secs 6 (numbers not for the docs)")
    ap.add_argument("--seconds", type=float, help="per latency point (default 25, quick 8)")
    ap.add_argument("--rounds", type=int, default=1, help="latency rounds, WebRTC and RTSP alternating")
    ap.add_argument("--drift-minutes", type=int, help="drift run length (default 10, quick 2; 0: none)")
    ap.add_argument("--cpu-secs", type=float, help="CPU window per point (default 20, quick 6)")
    ap.add_argument("--viewers", default="1,10,20", help="viewer counts of the CPU series")
    ap.add_argument("--small", choices=["auto", "yes", "no"], default="auto",
                    help="also the CPU series at 320x180 (auto: when 720p saturates the machine)")
    ap.add_argument("--fps", type=int, default=30, help="the producer's rate (30 or 60); profiles are @30")
    ap.add_argument("--encoder-adapt", action="store_true",
                    help="let the encoders step down under load (default --no-adapt: same stream at every point)")
    ap.add_argument("--skip", action="append", default=[], choices=["latency", "drift", "cpu"])
    ap.add_argument("--out", help="report file (default benches/webrtc/results/DATE[-quick].md)")
    ap.add_argument("--json", help="also write every figure here")
    ap.add_argument("--log-dir", help="write the servers' stderr here (RUST_LOG applies); $BENCH_CLIENT_LOG=FILE "
                                      "appends the viewer script's")
    a = ap.parse_args()
    a.seconds = a.seconds or (8.0 if a.quick else 25.0)
    a.drift_minutes = a.drift_minutes if a.drift_minutes is not None else (2 if a.quick else 10)
    a.cpu_secs = a.cpu_secs or (6.0 if a.quick else 20.0)
    a.viewer_counts = [int(x) for x in a.viewers.split(",")]
    a.producer, a.encoder = (os.path.join(a.target_dir, b) for b in ("framebus-producer", "framebus-encoder"))
    a.mjpeg, a.rtsp, a.cli = (os.path.join(a.target_dir, b) for b in ("framebus-mjpeg", "framebus-rtsp", "framebus"))
    for b in (a.producer, a.encoder, a.mjpeg, a.rtsp, a.cli):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing: {b} (make build)")
    if not os.path.isdir(os.path.join(ROOT, "publishers/tests/browser/node_modules/playwright-core")):
        sys.exit("missing playwright-core: make node-deps")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    up_before, load_before = uptime(), os.getloadavg()
    bench = Bench(a)
    res = {"latency": {}, "drift": None, "cpu": {}}
    try:
        bench.start()
        if "latency" not in a.skip:
            for profile in ("wb1080", "wb720"):
                res["latency"][profile] = {"webrtc": [], "rtsp": []}
            for _ in range(a.rounds):
                for profile in ("wb1080", "wb720"):
                    w = bench.webrtc_latency(profile, a.seconds)
                    print(profile, "webrtc", json.dumps({k: w.get(k) for k in ("lat", "abs", "fps")}), flush=True)
                    r = bench.rtsp_latency(profile, a.seconds)
                    print(profile, "rtsp/gst", r, flush=True)
                    res["latency"][profile]["webrtc"].append(w)
                    res["latency"][profile]["rtsp"].append(r)
        if "cpu" not in a.skip:
            res["cpu"]["wb720"] = bench.cpu_series("wb720")
            for c in res["cpu"]["wb720"]:
                print("cpu wb720", c, flush=True)
            if a.small == "yes" or (a.small == "auto" and saturated(res["cpu"]["wb720"], 30)):
                res["cpu"]["wb180"] = bench.cpu_series("wb180")
                for c in res["cpu"]["wb180"]:
                    print("cpu wb180", c, flush=True)
        if "drift" not in a.skip and a.drift_minutes > 0:
            res["drift"] = bench.drift("wb720", a.drift_minutes)
            for i, m in enumerate(res["drift"].get("minutes", [])):
                print("drift minute", i + 1, m["lat"], flush=True)
        up_after, load_after = uptime(), os.getloadavg()
        text = report(a, bench, res, started, up_before, up_after)
        write_report(text, started, os.path.join(HERE, "results"), ROOT, quick=a.quick, out=a.out,
                     json_path=a.json,
                     extra={"load_before": load_before, "load_after": load_after, "results": res})
    finally:
        for b in list(LIVE):
            b.close()
        kill_all()
        kill_tagged(f"{RUN}.", set())
        shutil.rmtree(bench.tmp, ignore_errors=True)
        for name in [bench.ebus(p) for p in PROFILES] + [bench.bus]:
            if os.path.exists(f"/dev/shm/framebus.{name}"):
                subprocess.run([a.cli, "rm", "--force", name], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)


def kill_tagged(tag, sids):
    """SIGKILL what tagged(tag, sids) finds."""
    for pid in tagged(tag, sids):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ---- report ---------------------------------------------------------------
def f1(x):
    if x is None:
        return "n/a"
    t = f"{x:.1f}"
    return "0.0" if t == "-0.0" else t


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def machine_gst():
    """The machine (procs.machine) and GStreamer's version."""
    try:
        gst = subprocess.run(["gst-launch-1.0", "--version"], capture_output=True, text=True).stdout.split("\n")[1]
    except (OSError, IndexError):
        gst = "GStreamer ?"
    return f"{machine()}, {gst.strip()}"


def row(*cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def median_by(xs, key):
    xs = sorted(xs, key=key)
    return xs[(len(xs) - 1) // 2] if xs else None


def report(a, bench, res, started, up_before, up_after):
    L = []
    cmd = "/usr/bin/python3 benches/webrtc/bench.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    quick = " — `--quick`: a harness check, not a result" if a.quick else ""
    L.append(f"## WebRTC (WHEP) benchmark, {started:%Y-%m-%d %H:%M} UTC{quick}")
    L.append("")
    L.append(f"Command: `{cmd.strip()}`  ")
    L.append(f"Machine: {machine_gst()}, Chromium {BROWSER_VERSION[0] if BROWSER_VERSION else '?'}  ")
    L.append(f"`uptime` before: `{up_before}`  ")
    L.append(f"`uptime` after: `{up_after}`")
    L.append("")
    adapt = "load adaptation on" if a.encoder_adapt else "`--no-adapt`"
    L.append(f"Producer testsrc 1920x1080@{a.fps} NV12 with the time code; framebus-encoder libx264 h264=main, "
             f"GOP 60, {adapt}; WHEP `?adapt=0` (each viewer stays on its profile). A figure taken at a load "
             "average above ~1 is a harness check, not a result.")
    if res["latency"]:
        L.append("")
        L.append(f"### Glass-to-glass latency, ms ({a.seconds:g} s per point, {a.rounds} round(s): "
                 "the round with the median p50)")
        L.append("")
        L.append(row("stream", "client, measure", "frames", "p50", "p90", "p99", "fps", "p50 ÷ RTSP", "p99 ÷ RTSP"))
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        notes = []
        for profile, pr in res["latency"].items():
            label, _, _, rate = PROFILES[profile]
            web = median_by([x for x in pr["webrtc"] if x.get("lat")], lambda x: x["lat"]["p50"])
            rt = median_by([x for x in pr["rtsp"] if x], lambda x: x["p50"])
            rp50, rp99 = (rt["p50"], rt["p99"]) if rt else (None, None)
            stream = f"{label} {rate}bit/s"

            def q(x):
                return [x["n"], f1(x["p50"]), f1(x["p90"]), f1(x["p99"])] if x else [0, "n/a", "n/a", "n/a"]

            if web:
                lat, ab, rv = web["lat"], web["abs"], web["rvfc"]
                L.append(row(stream, "WebRTC, Chromium: presentationTime − time code", *q(lat),
                             f"{web['fps']:.0f}", f"**{ratio(lat['p50'], rp50)}**", ratio(lat["p99"], rp99)))
                L.append(row(stream, "WebRTC, same frames: presentationTime − abs-capture-time "
                             "(`getSynchronizationSources()` captureTimestamp)", *q(ab), "",
                             ratio(ab and ab["p50"], rp50), ratio(ab and ab["p99"], rp99)))
                agree, net, v = web["abs_minus_tc"], web["receive_to_present"], web.get("viewer") or {}
                notes.append(f"{label}: captureTimestamp − time code p50 {f1(agree and agree['p50'])} ms "
                             f"(max {f1(agree and agree['max'])}); rVFC `captureTime` set on "
                             f"{rv['n'] if rv else 0} of {web['frames']} frames; receive → present p50 "
                             f"{f1(net and net['p50'])} ms; counter gaps {web['counter_gaps']}, freezes "
                             f"{v.get('freeze_count')}, packets lost {v.get('packets_lost')}, "
                             f"PLIs {v.get('pli_count')}.")
            else:
                err = pr["webrtc"][0].get("error") if pr["webrtc"] else "not run"
                L.append(row(stream, f"WebRTC, Chromium: n/a ({err})", 0, "", "", "", "", "", ""))
            L.append(row(stream, "RTSP, GStreamer client (baseline)", *q(rt),
                         f"{rt['fps']:.0f}" if rt else "", "1.00", "1.00"))
            if profile == "wb1080":
                p50 = web["lat"]["p50"] if web else None
                met = p50 is not None and p50 <= 35 and (rp50 is None or p50 < rp50)
                notes.insert(0, f"Goal (1080p30): WebRTC p50 ≤ 35 ms and below RTSP/GStreamer's: "
                                f"{f1(p50)} ms vs {f1(rp50)} ms — **{'met' if met else 'not met'}**.")
        L.append("")
        L += [f"- {n}" for n in notes]
        L.append("- WebRTC: rVFC `presentationTime` (frame handed to the compositor) on the wall clock; RTSP: the "
                 "decoded GRAY8 frame read from `gst-launch-1.0 rtspsrc latency=0 ! avdec_h264 ! fdsink` "
                 "(benches/rtsp/bench.py). Both minus the time code the producer painted at capture.")
    for profile, series in res["cpu"].items():
        L.append("")
        L.append(f"### Server CPU, {PROFILES[profile][0]} viewers ({a.cpu_secs:g} s per point), % of one core")
        L.append("")
        L.append(row("viewers (playing)", "framebus-mjpeg", "framebus-encoder", "server", "÷ 1 viewer",
                     "encoded-bus readers", "encoders", "Chromium + viewer script", "machine idle", "fps encoded",
                     "fps sent min / mean (skips)", "fps decoded min / mean"))
        L.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|")
        base = next((c["total"] for c in series if "error" not in c and c["n"] == min(a.viewer_counts)), None)
        for c in series:
            if "error" in c:
                L.append(row(c["n"], f"n/a: {c['error']}", *[""] * 10))
                continue
            sv = c["server"]
            rd = "n/a" if c["readers"] is None else str(len(c["readers"]))
            if c["other_readers"]:
                rd += f" (not framebus-mjpeg: {c['other_readers']})"
            if sv["feed_sessions"] is not None:
                rd += f" (feed sessions: {sv['feed_sessions']:.0f})"
            playing = "?" if c["playing"] is None else c["playing"]
            L.append(row(f"{c['n']} ({playing})", f1(c["parts"]["framebus-mjpeg"]), f1(c["parts"]["framebus-encoder"]),
                         f1(c["total"]), f"**{ratio(c['total'], base)}**", rd, c["encoders"], f1(c["chromium"]),
                         f"{c['idle']:.0f} %", f1(sv["encoded_fps"]),
                         f"{f1(sv['sent_fps_min'])} / {f1(sv['sent_fps_mean'])} ({sv['skips']:.0f})",
                         f"{f1(c['fps_min'])} / {f1(c['fps_mean'])}"))
        top = series[-1] if series else None
        if top and "error" not in top and base:
            r = top["total"] / base
            sat = ""
            if saturated(series, 30):
                sat = (f"; but the machine was saturated at {top['n']} viewers (idle {top['idle']:.0f} %, slowest "
                       f"viewer decoded {f1(top['fps_min'])} fps): a harness check, not a result")
            L.append("")
            L.append(f"Goal {top['n']}/{min(a.viewer_counts)} ≤ 1.15: {r:.2f} — "
                     f"**{'met' if r <= 1.15 else 'not met'}**{sat}.")
    d = res["drift"]
    if d:
        L.append("")
        L.append(f"### Drift: one 720p30 viewer for {a.drift_minutes} min, ms per minute")
        L.append("")
        if "error" in d:
            L.append(f"n/a: {d['error']}")
            return "\n".join(L)
        L.append(row("minute", "frames", "fps", "p50", "p99", "p99 ÷ minute 1", "abs-capture-time p50 / p99"))
        L.append("|---:|---:|---:|---:|---:|---:|---|")
        mins = d["minutes"]
        first = mins[0]["lat"]["p99"] if mins and mins[0]["lat"] else None
        last = mins[-1]["lat"]["p99"] if mins and mins[-1]["lat"] else None
        for i, m in enumerate(mins):
            lat, ab = m["lat"] or {}, m["abs"] or {}
            L.append(row(i + 1, m["frames"], f"{m['fps']:.0f}", f1(lat.get("p50")), f1(lat.get("p99")),
                         ratio(lat.get("p99"), first), f"{f1(ab.get('p50'))} / {f1(ab.get('p99'))}"))
        ok = last is not None and first and last <= 1.2 * first
        v = d.get("viewer") or {}
        off = d["clock_offset_ms"]
        L.append("")
        L.append(f"Goal: last minute's p99 ≤ 1.2 × the first's: {ratio(last, first)} — "
                 f"**{'met' if ok else 'not met'}**. Whole run: counter gaps {d['all']['counter_gaps']}, "
                 f"freezes {v.get('freeze_count')}, packets lost {v.get('packets_lost')}, NACKs "
                 f"{v.get('nack_count')}, PLIs {v.get('pli_count')}; page clock − wall clock "
                 f"{f1(off and off[0])} … {f1(off and off[1])} ms (corrected).")
    return "\n".join(L)


if __name__ == "__main__":
    main()

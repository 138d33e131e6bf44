#!/usr/bin/python3
"""HLS benchmark: framebus-mjpeg's LL-HLS played by hls.js in headless
Chromium against plain HLS from ffmpeg on the same encoded bus, and the
origin's CPU and request rate with 1 to 100 LL-HLS players, direct and
behind nginx as a cache, in the same run.

Run with (from the repository root, after `make build node-deps`):

    make bench-hls                                # full run, ~10 min
    make bench-hls HLS_ARGS=--quick               # harness check, < 2 min
    /usr/bin/python3 benches/hls/bench.py --quick

Set-up: `framebus-producer` writes its test pattern with the time code
(docs/timecode.md) at 1920x1080@30; one `framebus-encoder` per profile
(`--encoder libx264 --no-adapt`, h264=main, GOP --gop): `hd1080`
1920x1080@30 4 Mbit/s, `hd720` 1280x720@30 2.5 Mbit/s and `small`
320x180@30 300 kbit/s (for the 20 hls.js players); `framebus-mjpeg`
serves HLS (200 ms parts, its defaults, `--hls-max-viewers 1000` so that
no point hits the limit), `framebus-rtsp` the same encoded buses, nginx
(Debian's) caches in front with examples/nginx/framebus-hls.conf, its
placeholders filled as framebus/test-support/src/nginx.rs fills them.

Measures:
  1. hls.js latency at 720p30 and 1080p30 (--seconds per point, after
     --warmup seconds of frames left out): the time code of each presented
     frame against the wall clock (publishers/tests/browser/hls.mjs,
     `timecode.latency_ms`), and hls.js's own `hls.latency`:
       * framebus: the profile's media playlist, hls.js lowLatencyMode;
       * baseline, same encoded bus: framebus-rtsp → `ffmpeg -rtsp_transport
         tcp -i rtsp://… -c copy -f hls -hls_time 1 -hls_segment_type fmp4
         -hls_flags delete_segments+independent_segments+temp_file
         -hls_list_size 6`, served as static files by a second nginx (CORS
         header, `no-cache`), hls.js with lowLatencyMode off;
     goal: framebus p50 <= 1.0 s; ratios framebus ÷ baseline.
  2. origin load: benches/hls/players.mjs (N LL-HLS players in one node
     process: multivariant with its own `s=` token, blocking reloads, each
     part once) on hd720 with 1, 20, 100 players (--players), direct and
     through nginx; per point, over --cpu-secs: framebus-mjpeg's CPU
     (/proc/PID/stat), its requests/s (`/metrics` framebus_hls_*_total),
     nginx's CPU and cache statuses (its access log), the players' own
     figures; ratios: CPU at N ÷ at 1 player (direct), via nginx ÷ direct
     at the same N; cache hit ratio (HIT+UPDATING+STALE over lookups),
     goal >= 90 % with 20 players.
  3. 20 hls.js players (Chromium) through nginx on `small` (startLevel 0,
     capped to the 320 px player): hit ratio with a real player
     (--browsers 0 to skip; skipped by --quick).

Every process runs in its own process group and is stopped on exit
(Ctrl-C and SIGTERM too); Chromium through hls.mjs (SIGTERM closes it)
and, failing that, found by an environment tag as in benches/webrtc; the
buses are removed with `framebus rm --force`. Prints a markdown report
and writes it to benches/hls/results/DATE.md. Timings are reported, never
asserted.
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
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCHES)
sys.path.insert(0, BENCHES)
from procs import HZ, cpu_ticks, kill_all, kill_group, machine, spawn, uptime, wait_path, write_report  # noqa: E402


def _load(name, path):
    # By path: every harness file is called bench.py.
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHES, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# The WebRTC bench's helpers: /metrics parser, machine idle, quantiles,
# the environment tag that finds a Chromium left behind, table cells.
wb = _load("webrtc_bench", "webrtc/bench.py")

HLS_MJS = os.path.join(ROOT, "publishers/tests/browser/hls.mjs")
PLAYERS = os.path.join(HERE, "players.mjs")
TEMPLATE = os.path.join(ROOT, "examples/nginx/framebus-hls.conf")
NGINX = "/usr/sbin/nginx"
PROFILES = {
    # name: (label, width, height, bitrate)
    "hd1080": ("1080p30", 1920, 1080, "4M"),
    "hd720": ("720p30", 1280, 720, "2500k"),
    "small": ("320x180p30", 320, 180, "300k"),
    # hd720 at the encoder's default GOP (2 s), for one more framebus row.
    "hd720g60": ("720p30", 1280, 720, "2500k"),
}
GOP = {"hd720g60": 60}
RUN = f"hls-{os.getpid()}-{time.time_ns()}"
CHROMES = [0]
VERSIONS: dict = {}


def free_port():
    """A loopback port nobody listens on now (nginx cannot report the port
    0 gave it; a race with another process is retried by the caller)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    """Direct children of pid (nginx's workers)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


class Nginx:
    """Debian's nginx in the foreground in a directory of its own: either
    the cache of examples/nginx/framebus-hls.conf in front of `origin`
    (its placeholders filled as NginxConf::render does: directives only,
    comments left alone), or a static file server of `root` (the baseline's
    HLS output, with a CORS header)."""

    def __init__(self, base, name, origin=None, root=None):
        self.dir = os.path.join(base, name)
        for sub in ("cache", "temp", "logs"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.access_log = os.path.join(self.dir, "logs/access.log")
        self.error_log = os.path.join(self.dir, "logs/error.log")
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        for attempt in range(5):
            self.listen = f"127.0.0.1:{free_port()}"
            values = {"user": user, "pid": os.path.join(self.dir, "nginx.pid"), "error_log": self.error_log,
                      "access_log": self.access_log, "temp_dir": os.path.join(self.dir, "temp"),
                      "cache_dir": os.path.join(self.dir, "cache"), "listen": self.listen, "origin": origin}
            conf = render(values) if origin else static_conf(values, root)
            path = os.path.join(self.dir, "nginx.conf")
            with open(path, "w") as f:
                f.write(conf)
            stderr = open(os.path.join(self.dir, "logs/stderr.log"), "wb")
            self.p = spawn([NGINX, "-p", self.dir, "-c", path, "-e", self.error_log,
                            "-g", "daemon off; master_process on;"], stderr=stderr)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 20:
                if self.p.poll() is not None:
                    break
                try:
                    with open(values["pid"]) as f:
                        pid = f.read().strip()
                    if pid == str(self.p.pid):
                        host, port = self.listen.rsplit(":", 1)
                        socket.create_connection((host, int(port)), timeout=1).close()
                        self.url = f"http://{self.listen}"
                        return
                except OSError:
                    pass
                time.sleep(0.02)
            kill_group(self.p)
            logs = self.logs()
            if "Address already in use" not in logs:
                sys.exit(f"nginx ({name}) did not start: {logs}")
        sys.exit(f"nginx ({name}): no free port in 5 attempts")

    def logs(self):
        out = []
        for f in ("logs/error.log", "logs/stderr.log"):
            try:
                with open(os.path.join(self.dir, f)) as fh:
                    out.append(f"{f}: {fh.read().strip()}")
            except OSError:
                pass
        return "; ".join(out)

    def pids(self):
        return [self.p.pid] + children(self.p.pid)

    def ticks(self):
        return sum(cpu_ticks(p) for p in self.pids())

    def log_offset(self):
        try:
            return os.path.getsize(self.access_log)
        except OSError:
            return 0

    def entries(self, start, end=None):
        """Access log lines (JSON, format framebus_hls) between byte offsets."""
        with open(self.access_log, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(end - start)
        out = []
        for line in data.decode(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


def render(values):
    """examples/nginx/framebus-hls.conf with its {{placeholders}} filled in
    the directives (comments name them too and stay as they are), like
    NginxConf::render in framebus/test-support/src/nginx.rs."""
    out = []
    with open(TEMPLATE) as f:
        for line in f.read().splitlines():
            if not line.lstrip().startswith("#"):
                for k, v in values.items():
                    line = line.replace("{{" + k + "}}", str(v))
                if "{{" in line:
                    sys.exit(f"examples/nginx/framebus-hls.conf: unknown placeholder in {line!r}")
            out.append(line)
    return "\n".join(out) + "\n"


def static_conf(v, root):
    """The baseline's web server: ffmpeg's playlist and segments as files."""
    return f"""user {v['user']};
worker_processes 1;
pid {v['pid']};
error_log {v['error_log']} warn;
events {{ worker_connections 1024; }}
http {{
    types {{ application/vnd.apple.mpegurl m3u8; video/mp4 mp4; video/iso.segment m4s; }}
    sendfile on;
    tcp_nodelay on;
    access_log off;
    client_body_temp_path {v['temp_dir']}/client_body;
    proxy_temp_path {v['temp_dir']}/proxy;
    fastcgi_temp_path {v['temp_dir']}/fastcgi;
    uwsgi_temp_path {v['temp_dir']}/uwsgi;
    scgi_temp_path {v['temp_dir']}/scgi;
    server {{
        listen {v['listen']};
        root {root};
        add_header Access-Control-Allow-Origin * always;
        add_header Cache-Control no-cache always;
    }}
}}
"""


# ---- nginx access log: cache statuses (as CacheStats in nginx.rs) ---------
FROM_CACHE = ("HIT", "UPDATING", "STALE")
LOOKED_UP = FROM_CACHE + ("MISS", "EXPIRED", "REVALIDATED")


def kind(uri):
    path, _, query = uri.partition("?")
    if path.endswith(".m3u8"):
        if any(kv.startswith("_HLS_msn=") for kv in query.split("&")):
            return "blocking"
        # /BUS/index.m3u8 (two path components) is the multivariant playlist.
        return "multivariant" if path.count("/") == 2 else "playlist"
    if path.endswith(".m4s"):
        return "part" if re.search(r"/p\d+\.m4s$", path) else "segment"
    if path.endswith(".mp4"):
        return "init"
    return "other"


def cache_stats(entries):
    """{kind or 'all': {status: count, 'upstream': n, 'requests': n}}."""
    out = {}
    for e in entries:
        for k in ("all", kind(e.get("uri", ""))):
            c = out.setdefault(k, {"requests": 0, "upstream": 0})
            c["requests"] += 1
            st = e.get("cache") or "none"
            c[st] = c.get(st, 0) + 1
            up = e.get("upstream_time", "")
            if up and up != "-":
                c["upstream"] += 1
    return out


def hit_ratio(c):
    if not c:
        return None
    looked = sum(c.get(s, 0) for s in LOOKED_UP)
    return sum(c.get(s, 0) for s in FROM_CACHE) / looked if looked else None


class Players:
    """benches/hls/players.mjs: n LL-HLS players of `variant` through the
    multivariant playlist `url`, until close()."""

    def __init__(self, url, n, variant, max_seconds):
        log = open(os.environ["BENCH_CLIENT_LOG"], "ab") if os.environ.get("BENCH_CLIENT_LOG") else subprocess.DEVNULL
        # Started over up to 3 s, as viewers arrive (they line up on the
        # same blocking reloads within a part anyway).
        self.ramp = min(3000, 30 * n)
        self.p = spawn(["node", PLAYERS, "--url", url, "--players", str(n), "--variant", variant,
                        "--ramp-ms", str(self.ramp), "--max-seconds", str(int(max_seconds))],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                pass
        self.events.put({"event": "eof"})

    def wait(self, kind, timeout=60):
        """The next `kind` event, or None (eof, timeout)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                e = self.events.get(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                break
            if e.get("event") in (kind, "eof"):
                return e if e.get("event") == kind else None
        return None

    def send(self, cmd):
        try:
            self.p.stdin.write(cmd + "\n")
            self.p.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def mark(self):
        """What the players did since the last mark (or the start)."""
        self.send("mark")
        return self.wait("mark")

    def close(self):
        if self.p.poll() is None:
            self.send("stop")
            self.wait("end", 10)
        kill_group(self.p)


# ---- the bench ----------------------------------------------------------
class Bench:
    def __init__(self, a):
        self.a = a
        self.bus = f"bench-hls-{os.getpid()}"
        self.encoders = {}
        self.tmp = tempfile.mkdtemp(prefix="framebus-hlsbench-")
        self.www = os.path.join(self.tmp, "www")
        os.makedirs(self.www)
        self.mjpeg = self.cache = self.static = None

    def log(self, name):
        if not self.a.log_dir:
            return subprocess.DEVNULL
        os.makedirs(self.a.log_dir, exist_ok=True)
        return open(os.path.join(self.a.log_dir, f"{name}.log"), "ab")

    def start(self):
        a = self.a
        spawn([a.producer, "--bus", self.bus, "--size", "1920x1080", "--fps", "30"], stderr=self.log("producer"))
        wait_path(f"/dev/shm/framebus.{self.bus}")
        for p in a.encoders:
            _, w, h, rate = PROFILES[p]
            gop = f",gop={GOP.get(p, a.gop)}"
            self.encoders[p] = spawn([a.encoder, "--bus", self.bus, "--encoder", "libx264", "--no-adapt",
                                      "--profile", f"{p}={w}x{h}@30,bitrate={rate},h264=main{gop}"],
                                     stderr=self.log(f"framebus-encoder-{p}"))
            wait_path(f"/dev/shm/framebus.{self.ebus(p)}")
        self.mjpeg = spawn([a.mjpeg, "--listen", "127.0.0.1:0", "--no-discover", "--bus", self.bus,
                            "--hls-max-viewers", "1000"],
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
        self.rtsp = line.removeprefix("listening on ").rstrip("/")
        self.cache = Nginx(self.tmp, "nginx-cache", origin=self.http.removeprefix("http://"))
        self.static = Nginx(self.tmp, "nginx-static", root=self.www)

    def ebus(self, profile):
        return f"{self.bus}.h264.{profile}"

    # ---- 1. hls.js latency -------------------------------------------
    def hls_js(self, inp, timeout):
        """Runs hls.mjs with `inp`; its JSON report (or {"error"})."""
        CHROMES[0] += 1
        tag = f"{RUN}.{CHROMES[0]}"
        env = dict(os.environ, **{wb.TAG: tag, "TMPDIR": self.tmp})
        log = open(os.environ["BENCH_CLIENT_LOG"], "ab") if os.environ.get("BENCH_CLIENT_LOG") else subprocess.DEVNULL
        p = spawn(["node", HLS_MJS, json.dumps(inp)], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        sids: set[int] = set()
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            out = ""
        finally:
            kill_group(p, wait=20)
            for _ in range(50):
                if not wb.tagged(tag, sids):
                    break
                wb.kill_tagged(tag, sids)
                time.sleep(0.1)
        try:
            r = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": f"hls.mjs printed no report (exit {p.returncode})"}
        for k in ("browser", "hls_js"):
            if r.get(k):
                VERSIONS.setdefault(k, r[k])
        if not r.get("ok"):
            return {"error": r.get("error") or "hls.mjs: not ok"}
        return r

    def latency(self, url, low_latency, seconds):
        """One hls.js player of url for seconds after the warm-up."""
        a = self.a
        # hls.mjs counts from loadSource: room for the first frame too.
        inp = {"url": url, "seconds": seconds + a.warmup + 3, "lowLatency": low_latency, "raw": True}
        r = self.hls_js(inp, seconds + a.warmup + 90)
        if "error" in r:
            return r
        c = r["clients"][0]
        tc = c.get("timecode") or {}
        lat = ((tc.get("raw") or {}).get("latency_ms") or [])[int(a.warmup * 30):]
        t_from = (c.get("first_playing_ms") or 0) + a.warmup * 1000
        hl = [s["latency_s"] * 1000 for s in c.get("samples") or []
              if s.get("latency_s") is not None and s["t_ms"] >= t_from]
        return {"lat": wb.quantiles(lat), "hls_latency": wb.quantiles(hl), "playing": c.get("playing"),
                "first_frame_ms": c.get("time_to_first_frame_ms"), "stalls": c.get("stalls"),
                "errors": c.get("errors_total"), "fatal": c.get("fatal_error"),
                "frames_decoded": c.get("frames_decoded"), "dropped": c.get("dropped_frames"),
                "counter_gaps": tc.get("counter_gaps"), "refused": tc.get("refused"),
                "playlist": c.get("playlist"), "requests": c.get("requests"),
                "size": (c.get("video_width"), c.get("video_height"))}

    def framebus_latency(self, profile, seconds):
        return self.latency(f"{self.http}/{self.bus}/{profile}/index.m3u8", True, seconds)

    def baseline_latency(self, profile, seconds):
        """ffmpeg's plain HLS of the same encoded bus (through framebus-rtsp)."""
        out = os.path.join(self.www, profile)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        pl = os.path.join(out, "index.m3u8")
        ff = spawn(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
                    "-i", f"{self.rtsp}/{self.bus}/{profile}", "-c", "copy", "-f", "hls", "-hls_time", "1",
                    "-hls_segment_type", "fmp4",
                    "-hls_flags", "delete_segments+independent_segments+temp_file",
                    "-hls_list_size", "6", pl], stderr=self.log(f"ffmpeg-{profile}"))
        try:
            # hls.js starts 3 target durations from the live edge: wait for
            # a few segments so that it starts where it would on a live feed.
            t0 = time.monotonic()
            while len(segments(pl)) < 4:
                if ff.poll() is not None or time.monotonic() - t0 > 40:
                    return {"error": f"ffmpeg wrote {len(segments(pl))} segments in 40 s (exit {ff.poll()})"}
                time.sleep(0.2)
            r = self.latency(f"{self.static.url}/{profile}/index.m3u8", False, seconds)
            if "error" not in r:
                r["segments_s"] = segments(pl)
            return r
        finally:
            kill_group(ff)

    def nginx_latency(self, profile, seconds, n):
        """hls.js through the nginx cache while n players.mjs players play the
        same profile through it: hls.js's requests are collapsed with
        theirs (the cache key leaves out `s=`)."""
        pl = Players(f"{self.cache.url}/{self.bus}/index.m3u8", n, profile, seconds + self.a.warmup + 120)
        try:
            if not pl.wait("ready", 60):
                return {"error": "players.mjs did not start"}
            off0 = self.cache.log_offset()
            r = self.latency(f"{self.cache.url}/{self.bus}/{profile}/index.m3u8", True, seconds)
            if "error" not in r:
                r["cache"] = cache_stats(self.cache.entries(off0))
            return r
        finally:
            pl.close()

    # ---- 2. origin load -----------------------------------------------
    def load_point(self, n, via_nginx, secs):
        base = self.cache.url if via_nginx else self.http
        p = Players(f"{base}/{self.bus}/index.m3u8", n, "hd720", secs + 120)
        pids = {"origin": self.mjpeg.pid, "encoder": self.encoders["hd720"].pid}
        try:
            ready = p.wait("ready", 60 + p.ramp / 1000)
            if not ready:
                return {"n": n, "nginx": via_nginx, "error": "players.mjs did not start"}
            time.sleep(self.a.settle)
            if not p.mark():
                return {"n": n, "nginx": via_nginx, "error": "players.mjs did not answer"}
            t0, c0, i0 = time.time(), {k: cpu_ticks(v) for k, v in pids.items()}, wb.cpu_idle()
            g0, pl0, me0, off0 = self.cache.ticks(), cpu_ticks(p.p.pid), wb.metrics(self.http), self.cache.log_offset()
            time.sleep(secs)
            t1, c1, i1 = time.time(), {k: cpu_ticks(v) for k, v in pids.items()}, wb.cpu_idle()
            g1, pl1, me1, off1 = self.cache.ticks(), cpu_ticks(p.p.pid), wb.metrics(self.http), self.cache.log_offset()
            win = p.mark()
        finally:
            p.close()
        dt = t1 - t0
        pct = lambda d: 100.0 * d / HZ / dt  # noqa: E731

        def total(m, name):
            return sum(v for _, v in m.get(f"framebus_hls_{name}", []))

        names = {"multivariant": "multivariant_playlists", "playlist": "playlists", "blocking": "blocking_playlists",
                 "part": "parts_served", "segment": "segments_served", "init": "inits_served"}
        origin = {k: (total(me1, v) - total(me0, v)) / dt for k, v in names.items()}
        return {
            "n": n, "nginx": via_nginx, "seconds": dt, "playing": ready.get("playing"),
            "cpu": {k: pct(c1[k] - c0[k]) for k in pids} | {"nginx": pct(g1 - g0) if via_nginx else None,
                                                              "players": pct(pl1 - pl0)},
            "idle": 100.0 * (i1[0] - i0[0]) / max(1, i1[1] - i0[1]),
            "origin_rps": origin, "origin_total_rps": sum(origin.values()),
            "origin_bytes_s": (total(me1, "bytes_served") - total(me0, "bytes_served")) / dt,
            "origin_errors": {k: total(me1, k) - total(me0, k) for k in ("refused", "bad_requests")},
            # Sessions the origin counts against --hls-max-viewers.
            "origin_viewers": sum(v for lb, v in me1.get("framebus_hls_viewers", []) if lb.get("bus") == self.bus),
            "players": win,
            "cache": cache_stats(self.cache.entries(off0, off1)) if via_nginx else None,
        }

    # ---- 3. hls.js players through nginx ------------------------------
    def browsers(self, n, seconds, via_nginx):
        """n hls.js players in one Chromium, direct or through the cache."""
        base = self.cache.url if via_nginx else self.http
        off0, i0, me0 = self.cache.log_offset(), wb.cpu_idle(), wb.metrics(self.http)
        # Level 0 is the lowest bit rate (small); capped to the 320 px player.
        r = self.hls_js({"url": f"{base}/{self.bus}/index.m3u8", "seconds": seconds, "clients": n,
                         "timecode": False, "startLevel": 0, "capLevelToPlayerSize": True}, seconds + 150)
        i1, me1 = wb.cpu_idle(), wb.metrics(self.http)
        stats = cache_stats(self.cache.entries(off0)) if via_nginx else None
        if "error" in r:
            return r | {"nginx": via_nginx, "cache": stats}
        cl = r["clients"]
        origin = sum(sum(v for _, v in m.get(f"framebus_hls_{k}", [])) * sign for m, sign in ((me1, 1), (me0, -1))
                     for k in ("multivariant_playlists", "playlists", "blocking_playlists", "parts_served",
                               "segments_served", "inits_served"))
        return {"n": n, "nginx": via_nginx, "seconds": seconds, "cache": stats,
                "idle": 100.0 * (i1[0] - i0[0]) / max(1, i1[1] - i0[1]), "origin_requests": origin,
                "requests": (stats or {}).get("all", {}).get("requests", origin),
                "playing": sum(1 for c in cl if c.get("playing") and not c.get("fatal_error")),
                "stalls": sum((c.get("stalls") or {}).get("count", 0) for c in cl),
                "stalled_ms": sum((c.get("stalls") or {}).get("total_ms", 0) for c in cl),
                "sizes": sorted({(c.get("video_width"), c.get("video_height")) for c in cl}),
                "errors": sum(c.get("errors_total") or 0 for c in cl),
                "stall_errors": sum((c.get("stalls") or {}).get("buffer_stalled_errors", 0) for c in cl),
                "hls_latency_p50": wb.quantiles([c["hls_latency_ms"]["p50"] for c in cl
                                                 if c.get("hls_latency_ms")])}

    def cleanup(self):
        kill_all()
        wb.kill_tagged(f"{RUN}.", set())
        shutil.rmtree(self.tmp, ignore_errors=True)
        for name in [self.ebus(p) for p in PROFILES] + [self.bus]:
            if os.path.exists(f"/dev/shm/framebus.{name}"):
                subprocess.run([self.a.cli, "rm", "--force", name], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)


def segments(playlist):
    """EXTINF durations of an ffmpeg playlist (empty if not there yet)."""
    try:
        with open(playlist) as f:
            return [float(m) for m in re.findall(r"^#EXTINF:([\d.]+)", f.read(), re.M)]
    except OSError:
        return []


def _on_signal(signum, _frame):
    sys.exit(128 + signum)  # runs the finally: below


def version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--quick", action="store_true",
                    help="harness check: 720p only, --seconds 6, --players 1,20, --cpu-secs 5, no hls.js players "
                         "through nginx (numbers not for the docs)")
    ap.add_argument("--seconds", type=float, help="hls.js latency: measured seconds per point (default 25, quick 6)")
    ap.add_argument("--warmup", type=float, default=3.0,
                    help="hls.js latency: seconds of frames left out after the first (default 3)")
    ap.add_argument("--rounds", type=int, default=1, help="latency rounds, framebus and baseline alternating")
    ap.add_argument("--players", default=None, help="player counts of the load series (default 1,20,100; quick 1,20)")
    ap.add_argument("--cpu-secs", type=float, help="load: window per point (default 25, quick 5)")
    ap.add_argument("--settle", type=float, default=None,
                    help="load: seconds between ready and the window (4; quick 2)")
    ap.add_argument("--browsers", type=int, default=None,
                    help="hls.js players through nginx for the hit ratio (default 20, quick 0: skipped)")
    ap.add_argument("--gop", type=int, default=30,
                    help="encoder GOP in frames (default 30: 1 s, so that ffmpeg, which cuts its segments at "
                         "keyframes, writes the 1 s segments asked of it; the encoder's own default is 60). The "
                         "full run adds one framebus row at 720p with GOP 60")
    ap.add_argument("--behind", type=int, default=19,
                    help="players.mjs players beside hls.js in the latency point through nginx (default 19)")
    ap.add_argument("--skip", action="append", default=[], choices=["latency", "load", "browsers"])
    ap.add_argument("--out", help="report file (default benches/hls/results/DATE[-quick].md)")
    ap.add_argument("--json", help="also write every figure here")
    ap.add_argument("--log-dir", help="write the servers' stderr here (RUST_LOG applies); $BENCH_CLIENT_LOG=FILE "
                                      "appends hls.mjs's and players.mjs's")
    a = ap.parse_args()
    a.seconds = a.seconds or (6.0 if a.quick else 25.0)
    a.cpu_secs = a.cpu_secs or (5.0 if a.quick else 25.0)
    a.settle = a.settle if a.settle is not None else (2.0 if a.quick else 4.0)
    a.player_counts = [int(x) for x in (a.players or ("1,20" if a.quick else "1,20,100")).split(",")]
    a.browsers = a.browsers if a.browsers is not None else (0 if a.quick else 20)
    a.profiles = ["hd720"] if a.quick else ["hd720", "hd1080"]
    a.encoders = ["hd720", "hd1080", "small"] + ([] if a.quick else ["hd720g60"])
    a.producer, a.encoder = (os.path.join(a.target_dir, b) for b in ("framebus-producer", "framebus-encoder"))
    a.mjpeg, a.rtsp, a.cli = (os.path.join(a.target_dir, b) for b in ("framebus-mjpeg", "framebus-rtsp", "framebus"))
    for b in (a.producer, a.encoder, a.mjpeg, a.rtsp, a.cli, NGINX):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing: {b} (make build; nginx: make deps)")
    for m in ("playwright-core", "hls.js"):
        if not os.path.isdir(os.path.join(ROOT, "publishers/tests/browser/node_modules", m)):
            sys.exit(f"missing {m}: make node-deps")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    up_before, load_before = uptime(), os.getloadavg()
    print(f"uptime before: {up_before}", flush=True)
    bench = Bench(a)
    res = {"latency": {}, "load": [], "browsers": None}
    try:
        bench.start()
        if "latency" not in a.skip:
            points = {p: ["framebus", "baseline"] for p in a.profiles}
            points["hd720"] += ["nginx"] + ([] if a.quick else ["gop60"])
            for profile, kinds in points.items():
                res["latency"][profile] = {k: [] for k in kinds}
            run = {"framebus": lambda p: bench.framebus_latency(p, a.seconds),
                   "baseline": lambda p: bench.baseline_latency(p, a.seconds),
                   "nginx": lambda p: bench.nginx_latency(p, a.seconds, a.behind),
                   "gop60": lambda p: bench.framebus_latency(p + "g60", a.seconds)}
            for _ in range(a.rounds):
                for profile, kinds in points.items():
                    for k in kinds:
                        r = run[k](profile)
                        print(profile, k, json.dumps({x: r.get(x) for x in ("lat", "hls_latency", "error")}),
                              flush=True)
                        res["latency"][profile][k].append(r)
        if "load" not in a.skip:
            for via in (False, True):
                for n in a.player_counts:
                    r = bench.load_point(n, via, a.cpu_secs)
                    print("load", n, "nginx" if via else "direct",
                          json.dumps({k: r.get(k) for k in ("cpu", "origin_total_rps", "error")}), flush=True)
                    res["load"].append(r)
        if "browsers" not in a.skip and a.browsers > 0:
            res["uptime_before_browsers"] = uptime()
            res["browsers"] = [bench.browsers(a.browsers, 12.0, via) for via in (False, True)]
            for b in res["browsers"]:
                print("browsers", json.dumps(b, default=str)[:400], flush=True)
        up_after, load_after = uptime(), os.getloadavg()
        print(f"uptime after: {up_after}", flush=True)
        VERSIONS["ffmpeg"] = version(["ffmpeg", "-version"])
        VERSIONS["nginx"] = version([NGINX, "-v"])
        VERSIONS["node"] = version(["node", "--version"])
        text = report(a, res, started, up_before, up_after)
        write_report(text, started, os.path.join(HERE, "results"), ROOT, quick=a.quick, out=a.out,
                     json_path=a.json,
                     extra={"load_before": load_before, "load_after": load_after, "results": res})
    finally:
        bench.cleanup()


# ---- report ---------------------------------------------------------------
CMD = "/usr/bin/python3 benches/hls/bench.py"
f1, ratio, row = wb.f1, wb.ratio, wb.row


def pct(x):
    return "n/a" if x is None else f"{100 * x:.1f} %"


def report(a, res, started, up_before, up_after):
    L = []
    cmd = "/usr/bin/python3 benches/hls/bench.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    quick = " — `--quick`: a harness check, not a result" if a.quick else ""
    L.append(f"## HLS / LL-HLS benchmark, {started:%Y-%m-%d %H:%M} UTC{quick}")
    L.append("")
    L.append(f"Command: `{cmd.strip()}`  ")
    L.append(f"Machine: {machine()}; Chromium {VERSIONS.get('browser', '?')}, hls.js {VERSIONS.get('hls_js', '?')}, "
             f"{VERSIONS.get('ffmpeg', '?').split(' Copyright')[0]}, {VERSIONS.get('nginx', '?')}, "
             f"node {VERSIONS.get('node', '?')}  ")
    L.append(f"`uptime` before: `{up_before}`  ")
    L.append(f"`uptime` after: `{up_after}`")
    L.append("")
    gop = f"GOP {a.gop} frames" if a.gop else "GOP 2 s (the encoder's default)"
    L.append(f"Producer testsrc 1920x1080@30 NV12 with the time code; framebus-encoder libx264 h264=main, {gop}, "
             "`--no-adapt`; framebus-mjpeg with its HLS defaults (200 ms parts, 7 segments) and "
             "`--hls-max-viewers 1000`. A figure taken at a load average above ~1.5 is a harness check, not a "
             "result.")
    lat = res["latency"]
    if lat:
        L.append("")
        L.append(f"### hls.js latency, ms ({a.seconds:g} s per point after {a.warmup:g} s left out, {a.rounds} "
                 "round(s): the round with the median p50)")
        L.append("")
        L.append(f"This table alone: `{CMD} --skip load --skip browsers`")
        L.append("")
        L.append(row("stream", "server, player", "frames", "p50", "p90", "p99", "hls.js `latency` p50 / p99",
                     "first frame, ms", "stalls", "p50 ÷ baseline", "p99 ÷ baseline"))
        L.append("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
        labels = {
            "framebus": "**framebus LL-HLS**, hls.js lowLatencyMode",
            "nginx": f"framebus LL-HLS through the nginx cache, beside {a.behind} players.mjs players, hls.js "
                     "lowLatencyMode",
            "gop60": "framebus LL-HLS, GOP 2 s (the encoder's default), hls.js lowLatencyMode",
            "baseline": "ffmpeg HLS fMP4 `-hls_time 1` via framebus-rtsp, static nginx; hls.js (baseline)",
        }
        notes = []
        for profile, pr in lat.items():
            label, _, _, rate = PROFILES[profile]
            stream = f"{label} {rate}bit/s"
            best = {k: wb.median_by([x for x in v if x.get("lat")], lambda x: x["lat"]["p50"]) for k, v in pr.items()}
            bl = best.get("baseline")
            bp50, bp99 = (bl["lat"]["p50"], bl["lat"]["p99"]) if bl else (None, None)
            for k in ("framebus", "nginx", "gop60", "baseline"):
                if k not in pr:
                    continue
                x = best[k]
                if not x:
                    err = next((y.get("error") for y in pr[k] if y.get("error")), "no time code read")
                    L.append(row(stream, f"{labels[k]}: n/a ({err})", 0, *[""] * 8))
                    continue
                q, h, st = x["lat"], x["hls_latency"] or {}, x["stalls"] or {}
                r50 = "1.00" if k == "baseline" else ratio(q["p50"], bp50)
                L.append(row(stream, labels[k], q["n"], f1(q["p50"]), f1(q["p90"]), f1(q["p99"]),
                             f"{f1(h.get('p50'))} / {f1(h.get('p99'))}", f1(x["first_frame_ms"]),
                             st.get("count", "?"), f"**{r50}**" if k == "framebus" else r50,
                             "1.00" if k == "baseline" else ratio(q["p99"], bp99)))
                pl = x.get("playlist") or {}
                what = {"framebus": "framebus", "nginx": "through nginx", "gop60": "GOP 2 s",
                        "baseline": "baseline"}[k]
                extra = ""
                if k == "baseline":
                    segs = x.get("segments_s") or []
                    extra = (f"; ffmpeg's last segments {', '.join(f'{v:g}' for v in segs)} s (cut at keyframes), "
                             f"EXT-X-TARGETDURATION {pl.get('target_duration_s')} s")
                else:
                    extra = (f"; PART-TARGET {pl.get('part_target_s')} s, PART-HOLD-BACK {pl.get('part_hold_back_s')} "
                             f"s, EXT-X-TARGETDURATION {pl.get('target_duration_s')} s")
                if k == "nginx" and x.get("cache"):
                    extra += f"; cache hit ratio during the point {pct(hit_ratio(x['cache'].get('all')))}"
                notes.append(f"{label}, {what}: {x['frames_decoded']} frames decoded, {x['dropped']} dropped, "
                             f"time-code counter gaps {x['counter_gaps']} (whole run, start included), hls.js "
                             f"errors {x['errors']}, stalled {st.get('total_ms', '?')} ms{extra}.")
            fb = best.get("framebus")
            if fb:
                met = fb["lat"]["p50"] <= 1000
                notes.insert(0, f"Goal ({label}): framebus p50 ≤ 1.0 s on loopback: {f1(fb['lat']['p50'])} ms — "
                                f"**{'met' if met else 'not met'}**.")
        L.append("")
        L += [f"- {n}" for n in notes]
        L.append("- Latency: the frame's `presentationTime` (rVFC) on the wall clock minus the capture time in its "
                 "time code (publishers/tests/browser/hls.mjs, `timecode.latency_ms`); hls.js `latency`: its own "
                 "estimate (live edge minus playhead), sampled every 250 ms. First frame: `loadSource` to the "
                 "first presented frame (framebus: the muxer may start on that request and wait for a keyframe; "
                 "the baseline's playlist already has 4 segments).")
    load = res["load"]
    if load:
        base = next((x["cpu"]["origin"] for x in load if "error" not in x and not x["nginx"]
                     and x["n"] == min(a.player_counts)), None)
        direct = {x["n"]: x for x in load if "error" not in x and not x["nginx"]}
        L.append("")
        L.append(f"### Origin CPU and requests, 720p30 LL-HLS players ({a.cpu_secs:g} s per point), % of one core")
        L.append("")
        L.append(f"This table and the next two alone: `{CMD} --skip latency --skip browsers`")
        L.append("")
        L.append(row("players (playing)", "path", "framebus-mjpeg CPU", f"÷ {min(a.player_counts)} player direct",
                     "via nginx ÷ direct", "nginx CPU", "origin req/s (blocking + parts + other)",
                     "origin CPU per request, µs", "players' req/s", "origin MB/s", "origin's viewer count",
                     "players.mjs CPU", "encoder CPU", "machine idle"))
        L.append("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for x in load:
            path = "nginx cache" if x["nginx"] else "direct"
            if "error" in x:
                L.append(row(x["n"], path, f"n/a: {x['error']}", *[""] * 11))
                continue
            c, o, w = x["cpu"], x["origin_rps"], x["players"] or {}
            reqs = w.get("requests") or {}
            client_rps = sum(reqs.values()) / w["seconds"] if w.get("seconds") else None
            other = x["origin_total_rps"] - o["blocking"] - o["part"]
            d = direct.get(x["n"])
            L.append(row(f"{x['n']} ({x['playing']})", path, f1(c["origin"]), f"**{ratio(c['origin'], base)}**"
                         if not x["nginx"] else ratio(c["origin"], base),
                         f"**{ratio(c['origin'], d['cpu']['origin'])}**" if x["nginx"] and d else "",
                         f1(c["nginx"]) if x["nginx"] else "",
                         f"{f1(x['origin_total_rps'])} ({f1(o['blocking'])} + {f1(o['part'])} + {f1(other)})",
                         f"{c['origin'] * 1e4 / x['origin_total_rps']:.0f}" if x["origin_total_rps"] else "n/a",
                         f1(client_rps), f"{x['origin_bytes_s'] / 1e6:.2f}", f"{x['origin_viewers']:.0f}",
                         f1(c["players"]), f1(c["encoder"]), f"{x['idle']:.0f} %"))
        L.append("")
        L.append("#### What the players saw (benches/hls/players.mjs, same windows)")
        L.append("")
        L.append(row("players", "path", "parts/s per player min / mean", "errors", "blocking reload held, ms p50 / p99",
                     "part fetch, ms p50 / p99", "part age on arrival, ms p50 / p99"))
        L.append("|---|---|---|---|---|---|---|")
        for x in load:
            if "error" in x or not x.get("players"):
                continue
            w = x["players"]
            ms = w.get("ms") or {}
            bl, pt, age = ms.get("blocking") or {}, ms.get("part") or {}, w.get("part_age_ms") or {}
            errs = ", ".join(f"{k}: {v}" for k, v in (w.get("errors") or {}).items()) or "0"
            oe = {k: v for k, v in x["origin_errors"].items() if v}
            if oe:
                errs += f" (origin: {oe})"
            L.append(row(x["n"], "nginx cache" if x["nginx"] else "direct",
                         f"{w['parts_per_s']['min']:.2f} / {w['parts_per_s']['mean']:.2f}", errs,
                         f"{f1(bl.get('p50'))} / {f1(bl.get('p99'))}", f"{f1(pt.get('p50'))} / {f1(pt.get('p99'))}",
                         f"{f1(age.get('p50'))} / {f1(age.get('p99'))}"))
        L.append("")
        L.append("Part age on arrival: the time the player has a part's last byte minus the part's end on the "
                 "capture clock (its segment's `PROGRAM-DATE-TIME` plus the part durations up to and including "
                 "it): encoding, the part's closing frame (33 ms), the blocking reload's answer and the fetch.")
        cached = [x for x in load if "error" not in x and x["nginx"] and x.get("cache")]
        if cached:
            L.append("")
            L.append("#### nginx cache, same windows: (HIT + UPDATING + STALE) ÷ lookups")
            L.append("")
            L.append(row("players", "requests", "hit ratio, all", "blocking reloads", "parts",
                         "playlists / multivariant / init", "passed to the origin", "statuses"))
            L.append("|---|---:|---:|---:|---:|---|---:|---|")
            for x in cached:
                cs = x["cache"]
                al = cs.get("all", {})
                st = ", ".join(f"{k} {v}" for k, v in sorted(al.items()) if k not in ("requests", "upstream"))
                L.append(row(x["n"], al.get("requests", 0), f"**{pct(hit_ratio(al))}**",
                             pct(hit_ratio(cs.get("blocking"))), pct(hit_ratio(cs.get("part"))),
                             " / ".join(pct(hit_ratio(cs.get(k))) for k in ("playlist", "multivariant", "init")),
                             al.get("upstream", 0), st))
            twenty = next((x for x in cached if x["n"] == 20), None)
            if twenty:
                h = hit_ratio(twenty["cache"].get("all"))
                L.append("")
                L.append(f"Goal: hit ratio ≥ 90 % with 20 players: {pct(h)} — "
                         f"**{'met' if h is not None and h >= 0.9 else 'not met'}**.")
    br = res.get("browsers")
    if br:
        L.append("")
        L.append(f"### {a.browsers} hls.js players (Chromium, one page each) of 320x180p30, 12 s, direct and through "
                 "nginx")
        L.append("")
        L.append(f"This table alone: `{CMD} --skip latency --skip load`; `uptime` before this step: "
                 f"`{res.get('uptime_before_browsers')}`")
        L.append("")
        L.append(row("path", "playing", "stalls (total s)", "hls.js errors (of which buffer stalls)", "sizes",
                     "requests received (origin's counters; nginx's log)", "passed to the origin", "hit ratio, all",
                     "blocking reloads", "parts",
                     "statuses", "hls.js `latency` p50, median of players", "machine idle"))
        L.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")
        for b in br:
            path = "nginx cache" if b.get("nginx") else "direct"
            if "error" in b:
                L.append(row(path, f"n/a: {b['error']}", *[""] * 11))
                continue
            cs = b["cache"] or {}
            al = cs.get("all", {})
            st = ", ".join(f"{k} {v}" for k, v in sorted(al.items()) if k not in ("requests", "upstream"))
            hl = b.get("hls_latency_p50") or {}
            L.append(row(path, f"{b['playing']} of {b['n']}", f"{b['stalls']} ({b['stalled_ms'] / 1000:.1f})",
                         f"{b['errors']} ({b['stall_errors']})", ", ".join(f"{w}x{h}" for w, h in b["sizes"]),
                         f"{b['requests']:.0f}", f"{b['origin_requests']:.0f}",
                         f"**{pct(hit_ratio(al))}**" if b.get("nginx") else "",
                         pct(hit_ratio(cs.get("blocking"))) if b.get("nginx") else "",
                         pct(hit_ratio(cs.get("part"))) if b.get("nginx") else "", st, f1(hl.get("p50")),
                         f"{b['idle']:.0f} %"))
        L.append("")
        L.append("Whole run, start-up included (each player's multivariant playlist, `private, no-store`, is a MISS "
                 "by design). With the machine idle near 0 %, "
                 "stalls and hls.js's latency measure Chromium's 20 players on 2 cores, not the server: compare "
                 "the two rows.")
    return "\n".join(L)


if __name__ == "__main__":
    main()

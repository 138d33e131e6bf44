"""End-to-end comparison: framebus against the usual ways, in one run.

Run with: make bench-e2e            (or: .venv/bin/python benches/e2e/run.py [--quick])

Scenario (issue 8): one 1920x1080@60 NV12 source carrying the time code
(docs/timecode.md); outputs RTSP H.264 1920x1080@30, MJPEG 1280x720@30,
MJPEG 640x480@15, and a raw analysis consumer reading every frame. Variants:

  framebus      framebus-producer + framebus-encoder (the RTSP profile, into
                the encoded bus BUS.h264.high) + framebus-rtsp (packetizes
                that bus) + framebus-mjpeg + a Python framebus.Reader; then
                the same with 4 Python packet readers of the encoded bus
                and a second RTSP viewer (what more consumers cost)
  gstreamer     producer frames -> buscat -> one GStreamer pipeline with a tee
                (x264enc -> gst-rtsp-server, jpegenc -> multipartmux ->
                tcpserversink x2, shmsink -> shmsrc consumer)
  ffmpeg        producer frames -> buscat -> one ffmpeg (libx264 -> RTP/UDP,
                mpjpeg x2 via -listen 1, rawvideo -> pipe -> consumer)
  framebus-raw  producer + Python reader only      } the raw path alone
  mp-shm        multiprocessing.shared_memory+Queue }

For each: CPU (user+sys of every process of the variant, from /proc) and
peak memory (sum of PSS) over --secs; latency per output from the time code
decoded by real clients (ffmpeg -threads 1, GStreamer rtspsrc latency=0);
raw hand-off latency; scaling (MJPEG 720p viewers, RTSP clients): CPU and
delivered fps per viewer. Results go to benches/e2e/results/<mode>.json,
then benches/e2e/report.py writes docs/benchmarks.md and docs/img/*.png.

Every process is started in its own process group and killed (group) on
exit, Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV_PY = sys.executable
SYS_PY = "/usr/bin/python3"
TOOLS = os.path.join(HERE, "tools.py")
W, H, FPS = 1920, 1080, 60
HZ = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# Same encoder settings everywhere.
BITRATE_K, GOP, JPEG_Q = 4000, 60, 80
# ffmpeg's mjpeg encoder takes a quantiser, not a libjpeg quality; qscale 4
# gives frames of about the size libjpeg quality 80 gives on this pattern
# (bytes per frame are reported beside the numbers).
FFMPEG_QSCALE = 4


# --- processes ------------------------------------------------------------------

PROCS: list[subprocess.Popen] = []


def start(cmd, *, stdin=None, stdout=subprocess.DEVNULL, stderr=None, env=None) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=stderr if stderr is not None else LOG,
                         start_new_session=True, env=env)
    PROCS.append(p)
    return p


def stop(p: subprocess.Popen, sig=signal.SIGTERM, wait=5.0) -> None:
    """Signal the process (not its group) and wait; then kill the group."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(wait)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass
    if p in PROCS:
        PROCS.remove(p)


def stop_all() -> None:
    for p in list(PROCS):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    t = time.time() + 3
    for p in list(PROCS):
        try:
            p.wait(max(0.1, t - time.time()))
        except subprocess.TimeoutExpired:
            pass
    for p in list(PROCS):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(2)
        except subprocess.TimeoutExpired:
            pass
    PROCS.clear()
    remove_orphan_gst_shm()
    remove_our_buses()


CLI: str | None = None  # the `framebus` CLI, set in main()


def remove_our_buses() -> None:
    """Buses of this run left behind (a process killed before it could
    unlink): `framebus rm --force` each (names carry our pid: Ctx.bus)."""
    tag = f"-{os.getpid()}-"
    for name in os.listdir("/dev/shm"):
        if name.startswith("framebus.e2e-") and tag in name and CLI and os.access(CLI, os.X_OK):
            subprocess.run([CLI, "rm", "--force", name.removeprefix("framebus.")], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)


def remove_orphan_gst_shm() -> None:
    """GStreamer's shmsink leaves /dev/shm/shmpipe.<pid>.<n> behind when its
    pipeline is killed; remove those whose creating process is gone."""
    for name in os.listdir("/dev/shm"):
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "shmpipe":
            continue
        try:
            os.kill(int(parts[1].strip()), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except OSError:
                pass
        except (ValueError, PermissionError):
            pass


def _on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_line(p: subprocess.Popen, timeout=30.0) -> str:
    """The first stdout line of p (bounded), then drain the rest in a thread."""
    out: list[str] = []

    def rd():
        out.append(p.stdout.readline().decode(errors="replace").strip())
        for _ in p.stdout:
            pass

    t = threading.Thread(target=rd, daemon=True)
    t.start()
    t0 = time.time()
    while not out and time.time() - t0 < timeout and p.poll() is None:
        time.sleep(0.05)
    if not out:
        raise RuntimeError(f"{p.args!r} printed nothing (exit {p.poll()})")
    return out[0]


def wait_path(path: str, timeout=15.0) -> None:
    t0 = time.time()
    while not os.path.exists(path):
        if time.time() - t0 > timeout:
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.05)


# --- /proc accounting -------------------------------------------------------------


def _stat(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1 : s.rindex(")")]
    fields = s.rsplit(")", 1)[1].split()
    return comm, int(fields[1]), int(fields[11]) + int(fields[12])  # comm, ppid, utime+stime


def tree(roots: list[int]) -> dict[int, tuple[str, int]]:
    """pid -> (comm, cpu ticks) for roots and all their descendants."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                procs[int(d)] = st
    want = set(r for r in roots if r in procs)
    changed = True
    while changed:
        changed = False
        for pid, (_c, ppid, _t) in procs.items():
            if ppid in want and pid not in want:
                want.add(pid)
                changed = True
    return {pid: (procs[pid][0], procs[pid][2]) for pid in want}


def pss_kb(pids) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def measure(roots: list[int], secs: float, labels: dict[int, str] | None = None) -> dict:
    """CPU % of one core (whole trees) and peak summed PSS over secs;
    `labels` names some pids in the per-process table (else their comm)."""
    a = tree(roots)
    t0 = time.time()
    peak = pss_kb(a)
    while time.time() - t0 < secs:
        time.sleep(min(1.0, max(0.0, secs - (time.time() - t0))))
        peak = max(peak, pss_kb(tree(roots)))
    b = tree(roots)
    span = time.time() - t0
    by: dict[str, float] = {}
    total = 0.0
    for pid, (comm, ticks) in b.items():
        d = (ticks - a.get(pid, (comm, 0))[1]) * 100.0 / HZ / span
        total += d
        name = (labels or {}).get(pid, comm)
        by[name] = by.get(name, 0.0) + d
    return {"cpu": round(total, 1), "by": {k: round(v, 1) for k, v in sorted(by.items(), key=lambda kv: -kv[1])},
            "pss_mb": round(peak / 1024, 1), "secs": round(span, 1), "t0": t0, "t1": t0 + span}


# --- clients ------------------------------------------------------------------------


def ff_client(url: str, extra_in=(), transport=True) -> list[str]:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-fflags", "nobuffer", "-flags", "low_delay"]
    if transport:
        cmd += ["-rtsp_transport", "tcp"]
    return cmd + [*extra_in, "-i", url, "-threads", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"]


def ff_mjpeg_client(url: str) -> list[str]:
    fmt = ["-f", "mpjpeg"] if url.startswith("tcp:") else []
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1", "-fflags", "nobuffer",
            *fmt, "-i", url, "-threads", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"]


def gst_rtsp_client(url: str) -> list[str]:
    return ["gst-launch-1.0", "-q", "rtspsrc", f"location={url}", "latency=0", "protocols=tcp",
            "!", "rtph264depay", "!", "avdec_h264", "!", "videoconvert", "!",
            "video/x-raw,format=GRAY8", "!", "fdsink", "fd=1", "sync=false"]


class Client:
    """A measuring process of tools.py that writes a JSON file on SIGTERM."""

    def __init__(self, tmp: str, name: str, args: list[str], **kw):
        self.name = name
        self.out = os.path.join(tmp, f"{name}.json")
        self.p = start([VENV_PY, TOOLS, *args[:1], "--out", self.out, *args[1:]], **kw)

    def result(self) -> dict:
        stop(self.p, wait=8)
        try:
            with open(self.out) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"samples": [], "frames": 0}


def lat_client(tmp, name, w, h, cmd) -> Client:
    return Client(tmp, name, ["lat", "--w", str(w), "--h", str(h), "--", *cmd])


def summarize(res: dict, t0: float, t1: float) -> dict:
    s = sorted(ms for t, ms in res.get("samples", []) if t0 <= t <= t1)
    n_all = sum(1 for t, _ in res.get("samples", []) if t0 <= t <= t1)
    if not s:
        return {"n": 0}
    q = lambda x: s[min(len(s) - 1, int(x * len(s)))]  # noqa: E731
    return {"n": len(s), "fps": round(n_all / (t1 - t0), 1), "p50": q(0.5), "p95": q(0.95), "p99": q(0.99),
            "ms": s}


def rtsp_copy_clients(tmp: str, url: str, n: int) -> list[tuple[subprocess.Popen, str]]:
    out = []
    for i in range(n):
        prog = os.path.join(tmp, f"prog{i}.txt")
        p = start(["ffmpeg", "-nostdin", "-loglevel", "error", "-nostats", "-rtsp_transport", "tcp", "-i", url,
                   "-c", "copy", "-f", "null", "-", "-progress", prog, "-stats_period", "0.5"])
        out.append((p, prog))
    return out


def progress_frames(prog: str) -> int:
    try:
        with open(prog) as f:
            frames = [int(line.split("=")[1]) for line in f if line.startswith("frame=")]
        return frames[-1] if frames else 0
    except (OSError, ValueError):
        return 0


# --- the scenario, per variant -------------------------------------------------------


class Ctx:
    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix="framebus-e2e-")
        self.n = 0

    def bus(self, tag: str) -> str:
        self.n += 1
        return f"e2e-{tag}-{os.getpid()}-{self.n}"


def producer(c: Ctx, bus: str) -> subprocess.Popen:
    p = start([c.a.producer, "--bus", bus, "--size", f"{W}x{H}", "--fps", str(FPS)])
    wait_path(f"/dev/shm/framebus.{bus}")
    return p


def cpu_phase(c: Ctx, name: str, roots: list[int], m720: str | None, m480: str | None,
              rtsp: str | None, rtsp_n: int = 1, labels: dict[int, str] | None = None) -> dict:
    """CPU and memory with one light client per output (draining HTTP
    viewers, `ffmpeg -c copy` for RTSP: nothing decodes; `rtsp_n` RTSP
    clients), and the fps each client received (RTSP: the slowest)."""
    a = c.a
    spec = [x for u in (m720, m480) if u for x in (u, "1")]
    v = Client(c.tmp, f"{name}-drain", ["mjpeg-viewers", *spec]) if spec else None
    cl = rtsp_copy_clients(c.tmp, rtsp, rtsp_n) if rtsp else []
    time.sleep(a.warmup)
    if v:
        v.p.send_signal(signal.SIGUSR1)
    f0 = [progress_frames(pr) for _, pr in cl]
    m = measure(roots, a.secs, labels)
    f1 = [progress_frames(pr) for _, pr in cl]
    fps = {}
    if v:
        for x in v.result().get("viewers", []):
            fps["mjpeg720" if x["url"] == m720 else "mjpeg480"] = x["fps"]
    for (p, _), x, y in zip(cl, f0, f1):
        fps["rtsp"] = min(fps.get("rtsp", 1e9), round((y - x) / m["secs"], 1))
        stop(p)
    m["fps"] = fps
    log(f"  {name}: CPU {m['cpu']} % ({m['by']}), PSS {m['pss_mb']} MB, fps {fps}")
    return m


def latency_phase(c: Ctx, name: str, roots: list[int], groups: list[dict[str, list[str]]], raw: Client | None,
                  order_delay=0.0) -> dict:
    """Decoding clients, one group at a time (two 1080p decoders at once
    starve a 2-core machine and then measure the client, not the server);
    latency from the time code. The raw consumer runs throughout."""
    a = c.a
    res: dict = {"latency": {}, "measure_lat": []}
    t_first = 0.0
    for outputs in groups:
        clients = {}
        for out, cmd in outputs.items():
            w, h = {"rtsp": (1920, 1080), "rtsp-gst": (1920, 1080), "mjpeg720": (1280, 720),
                    "mjpeg480": (640, 480)}[out]
            clients[out] = lat_client(c.tmp, f"{name}-{out}", w, h, cmd)
            if order_delay:
                time.sleep(order_delay)
        time.sleep(a.warmup)
        m = measure(roots, a.lat_secs)
        t_first = t_first or m["t0"]
        res["measure_lat"].append(m)
        for out, cl in clients.items():
            res["latency"][out] = summarize(cl.result(), m["t0"], m["t1"])
    if not groups:
        time.sleep(a.warmup)
        m = measure(roots, a.secs)
        t_first = m["t0"]
        res["measure_lat"].append(m)
    if raw is not None:
        r = raw.result()
        res["latency"]["raw"] = summarize(r, t_first, time.time())
        res["raw_frames"] = r.get("frames", 0)
    log(f"  {name} (decoding clients): " + ", ".join(
        f"{k} p50 {v.get('p50')} ms ({v.get('fps')} fps)" for k, v in res["latency"].items()))
    return res


def scaling(c: Ctx, name: str, roots: list[int], mjpeg720: str, mjpeg480: str, rtsp: str) -> dict:
    """CPU and per-viewer fps with n viewers of one output while every other
    output has one viewer (so every encoder runs in every variant)."""
    a = c.a
    out: dict[str, list[dict]] = {"mjpeg720": [], "rtsp": []}
    for n in a.mjpeg_viewers:
        v = Client(c.tmp, f"{name}-mv{n}", ["mjpeg-viewers", mjpeg720, str(n), mjpeg480, "1"])
        bg = rtsp_copy_clients(c.tmp, rtsp, 1)
        time.sleep(a.scale_warmup + 0.5)
        v.p.send_signal(signal.SIGUSR1)
        m = measure(roots, a.scale_secs)
        r = v.result()
        for p, _ in bg:
            stop(p)
        fps = [x["fps"] for x in r.get("viewers", []) if x["url"] == mjpeg720]
        bpf = [x["bytes_per_frame"] for x in r.get("viewers", []) if x["url"] == mjpeg720]
        row = {"n": n, "cpu": m["cpu"], "by": m["by"], "connected": len(fps),
               "fps_min": min(fps) if fps else 0, "fps_mean": round(sum(fps) / len(fps), 1) if fps else 0,
               "bytes_per_frame": int(sum(bpf) / len(bpf)) if bpf else 0}
        log(f"  {name} mjpeg720 x{n}: {row}")
        out["mjpeg720"].append(row)
    for n in a.rtsp_clients:
        v = Client(c.tmp, f"{name}-rv{n}", ["mjpeg-viewers", mjpeg720, "1", mjpeg480, "1"])
        cl = rtsp_copy_clients(c.tmp, rtsp, n)
        time.sleep(a.scale_warmup + 1.0)
        f0 = [progress_frames(pr) for _, pr in cl]
        m = measure(roots, a.scale_secs)
        f1 = [progress_frames(pr) for _, pr in cl]
        v.result()
        for p, _ in cl:
            stop(p)
        fps = [(y - x) / m["secs"] for x, y in zip(f0, f1)]
        row = {"n": n, "cpu": m["cpu"], "by": m["by"], "connected": sum(1 for f in fps if f > 0),
               "fps_min": round(min(fps), 1) if fps else 0,
               "fps_mean": round(sum(fps) / len(fps), 1) if fps else 0}
        log(f"  {name} rtsp x{n}: {row}")
        out["rtsp"].append(row)
    return out


def packet_readers(c: Ctx, ebus: str, n: int) -> list[tuple[subprocess.Popen, str]]:
    """n Python packet readers of an encoded bus (benches/python/packet_reader.py)."""
    out = []
    for i in range(n):
        res = os.path.join(c.tmp, f"packets-{ebus}-{i}.json")
        out.append((start([VENV_PY, os.path.join(ROOT, "benches/python/packet_reader.py"), ebus, "--out", res]), res))
    return out


def packet_results(readers: list[tuple[subprocess.Popen, str]]) -> list[dict]:
    got = []
    for p, res in readers:
        stop(p)  # SIGTERM: the reader writes its counts
        try:
            with open(res) as f:
                got.append(json.load(f))
        except (OSError, ValueError):
            got.append({"frames": 0, "secs": 0})
    return got


def v_framebus(c: Ctx) -> dict:
    a = c.a
    bus = c.bus("fb")
    ebus = f"{bus}.h264.high"
    prod = producer(c, bus)
    raw = Client(c.tmp, "framebus-raw", ["fb-raw", "--bus", bus])
    mj = start([a.mjpeg, "--listen", "127.0.0.1:0", "--bus", bus, "--no-discover", "--grace", "3",
                "--max-viewers", "64"], stdout=subprocess.PIPE)
    base = first_line(mj).removeprefix("listening on ").rstrip("/")
    # The RTSP profile is encoded once, by framebus-encoder, into the
    # encoded bus BUS.h264.high (only while it has readers); framebus-rtsp
    # packetizes that bus and encodes nothing (issue 13).
    enc = start([a.encoder_bin, "--bus", bus, "--profile", f"high={W}x{H}@30,bitrate={BITRATE_K // 1000}M,gop={GOP}",
                 "--encoder", "libx264", "--grace", "3"])
    wait_path(f"/dev/shm/framebus.{ebus}")
    rt = start([a.rtsp, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE)
    rurl = first_line(rt).removeprefix("listening on ").rstrip("/") + f"/{bus}/high"
    roots = [prod.pid, enc.pid, mj.pid, rt.pid, raw.p.pid]
    time.sleep(3)
    idle = measure(roots, min(a.secs, 10))
    log(f"  framebus idle (no viewers): {idle['cpu']} % {idle['by']}")
    m720, m480 = f"{base}/{bus}/medium.mjpg", f"{base}/{bus}/low.mjpg"
    cpu = cpu_phase(c, "framebus", roots, m720, m480, rurl)
    # More consumers of the same encode: 4 Python packet readers of the
    # encoded bus and a second RTSP viewer; still one framebus-encoder.
    pk = packet_readers(c, ebus, a.packet_readers)
    plus = cpu_phase(c, "framebus-plus", roots + [p.pid for p, _ in pk], m720, m480, rurl, rtsp_n=2,
                     labels={p.pid: "packet-readers" for p, _ in pk})
    got = packet_results(pk)
    plus["packet_readers"] = a.packet_readers
    plus["packet_fps_min"] = round(min((g["frames"] / g["secs"] if g.get("secs") else 0.0) for g in got), 1) if got else 0
    log(f"  framebus-plus packet readers: {got}")
    res = latency_phase(c, "framebus", roots, [{"rtsp": ff_client(rurl)}, {"rtsp-gst": gst_rtsp_client(rurl)},
                                               {"mjpeg720": ff_mjpeg_client(m720), "mjpeg480": ff_mjpeg_client(m480)}],
                        raw)
    res["measure"], res["idle"], res["measure_plus"] = cpu, idle, plus
    res["scaling"] = scaling(c, "framebus", roots, m720, m480, rurl)
    for p in (mj, rt, enc, prod):
        stop(p)
    return res


def buscat_feed(c: Ctx, bus: str) -> subprocess.Popen:
    return start([c.a.buscat, bus], stdout=subprocess.PIPE)


def v_gstreamer(c: Ctx) -> dict:
    a = c.a
    bus = c.bus("gst")
    prod = producer(c, bus)
    feed = buscat_feed(c, bus)
    p720, p480 = free_port(), free_port()
    shm = os.path.join(c.tmp, "gst.shm")
    gst = start([SYS_PY, os.path.join(HERE, "gst_tee.py"), "--mjpeg-ports", f"{p720},{p480}", "--shm", shm,
                 "--bitrate", str(BITRATE_K), "--gop", str(GOP), "--quality", str(JPEG_Q)],
                stdin=feed.stdout, stdout=subprocess.PIPE)
    assert feed.stdout is not None
    feed.stdout.close()
    rurl = first_line(gst).removeprefix("ready ")
    raw_out = os.path.join(c.tmp, "gstreamer-raw.json")
    rawp = start([SYS_PY, os.path.join(HERE, "gst_raw.py"), "--shm", shm, "--out", raw_out])
    raw = Client.__new__(Client)
    raw.name, raw.out, raw.p = "gstreamer-raw", raw_out, rawp
    roots = [prod.pid, feed.pid, gst.pid, rawp.pid]
    time.sleep(3)
    idle = measure(roots, min(a.secs, 10))
    log(f"  gstreamer idle (no viewers): {idle['cpu']} % {idle['by']}")
    h720, h480 = f"http://127.0.0.1:{p720}/", f"http://127.0.0.1:{p480}/"
    cpu = cpu_phase(c, "gstreamer", roots, h720, h480, rurl)
    m720, m480 = f"tcp://127.0.0.1:{p720}", f"tcp://127.0.0.1:{p480}"
    res = latency_phase(c, "gstreamer", roots, [{"rtsp": ff_client(rurl)}, {"rtsp-gst": gst_rtsp_client(rurl)},
                                                {"mjpeg720": ff_mjpeg_client(m720), "mjpeg480": ff_mjpeg_client(m480)}],
                        raw)
    res["measure"], res["idle"] = cpu, idle
    res["scaling"] = scaling(c, "gstreamer", roots, h720, h480, rurl)
    for p in (gst, feed, prod):
        stop(p)
    return res


def ffmpeg_start(c: Ctx, tag: str):
    """producer -> buscat -> one ffmpeg with every output -> raw consumer."""
    bus = c.bus("ff")
    prod = producer(c, bus)
    feed = buscat_feed(c, bus)
    rtp, p720, p480 = free_port(), free_port(), free_port()
    sdp = os.path.join(c.tmp, f"ffmpeg-{tag}.sdp")
    filt = ("[0:v]split=4[r][h][m][l];[h]fps=30[ho];"
            "[m]fps=30,scale=1280:720:flags=bilinear,format=yuvj420p[mo];"
            "[l]fps=15,scale=640:480:flags=bilinear,format=yuvj420p[lo]")
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "nv12",
           "-s", f"{W}x{H}", "-r", str(FPS), "-i", "pipe:0", "-filter_complex", filt,
           "-map", "[ho]", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0",
           "-b:v", f"{BITRATE_K}k", "-maxrate", f"{BITRATE_K}k", "-bufsize", f"{BITRATE_K}k", "-g", str(GOP),
           "-f", "rtp", "-sdp_file", sdp, f"rtp://127.0.0.1:{rtp}?pkt_size=1400",
           "-map", "[mo]", "-c:v", "mjpeg", "-q:v", str(FFMPEG_QSCALE), "-threads", "1",
           "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{p720}/",
           "-map", "[lo]", "-c:v", "mjpeg", "-q:v", str(FFMPEG_QSCALE), "-threads", "1",
           "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{p480}/",
           "-map", "[r]", "-threads", "1", "-f", "rawvideo", "pipe:1"]
    ff = start(cmd, stdin=feed.stdout, stdout=subprocess.PIPE)
    assert feed.stdout is not None
    feed.stdout.close()
    raw = Client(c.tmp, f"ffmpeg-raw-{tag}", ["pipe-raw", "--w", str(W), "--h", str(H)], stdin=ff.stdout)
    assert ff.stdout is not None
    ff.stdout.close()
    return [prod, feed, ff], raw, f"http://127.0.0.1:{p720}/", f"http://127.0.0.1:{p480}/", sdp


def v_ffmpeg(c: Ctx) -> dict:
    # An HTTP -listen output serves one client and ffmpeg stops when it
    # leaves: one ffmpeg for the CPU phase, a fresh one for the latency phase.
    # Its outputs open one after another (720p, then 480p: the clients come
    # in that order); the RTP output needs no client.
    procs, raw, h720, h480, _sdp = ffmpeg_start(c, "cpu")
    roots = [p.pid for p in procs] + [raw.p.pid]
    cpu = cpu_phase(c, "ffmpeg", roots, h720, h480, None)
    raw.result()
    for p in reversed(procs):
        stop(p)
    procs, raw, h720, h480, sdp = ffmpeg_start(c, "lat")
    roots = [p.pid for p in procs] + [raw.p.pid]
    outputs = {"mjpeg720": ff_mjpeg_client(h720), "mjpeg480": ff_mjpeg_client(h480),
               "rtsp": ff_client(sdp, extra_in=["-protocol_whitelist", "file,udp,rtp"], transport=False)}
    res = latency_phase(c, "ffmpeg", roots, [outputs], raw, order_delay=1.0)
    res["measure"] = cpu
    for p in reversed(procs):
        stop(p)
    return res


def v_framebus_raw(c: Ctx) -> dict:
    bus = c.bus("fbraw")
    prod = producer(c, bus)
    raw = Client(c.tmp, "framebus-raw-only", ["fb-raw", "--bus", bus])
    res = latency_phase(c, "framebus-raw", [prod.pid, raw.p.pid], [], raw)
    res["measure"] = res["measure_lat"][0]
    stop(prod)
    return res


def v_mp(c: Ctx) -> dict:
    raw = Client(c.tmp, "mp-shm", ["mp-service", "--w", str(W), "--h", str(H), "--fps", str(FPS)])
    res = latency_phase(c, "mp-shm", [raw.p.pid], [], raw)
    res["measure"] = res["measure_lat"][0]
    return res


def handoff_floor(a) -> str:
    """benches/python/handoff.py: eventfd floor vs framebus vs mp (monotonic stamps)."""
    try:
        r = subprocess.run([VENV_PY, os.path.join(ROOT, "benches/python/handoff.py"), "--frames",
                            str(300 if a.quick else 1200), "--rounds", "3"],
                           capture_output=True, text=True, timeout=300, start_new_session=True)
        return r.stdout.strip()
    except subprocess.TimeoutExpired:
        return "(handoff.py timed out)"


VARIANTS = {"framebus": v_framebus, "gstreamer": v_gstreamer, "ffmpeg": v_ffmpeg,
            "framebus-raw": v_framebus_raw, "mp-shm": v_mp}

LOG = None


def log(msg: str) -> None:
    print(msg, flush=True)


def main() -> int:
    global LOG, CLI
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~10 s per measurement (smoke run)")
    ap.add_argument("--secs", type=float, help="scenario measurement window (default 60, quick 10)")
    ap.add_argument("--lat-secs", type=float, help="latency window per client group (default 30, quick 8)")
    ap.add_argument("--scale-secs", type=float, help="window per scaling point (default 20, quick 6)")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--producer")
    ap.add_argument("--mjpeg")
    ap.add_argument("--rtsp")
    ap.add_argument("--encoder-bin", help="framebus-encoder (default: in --bin-dir)")
    ap.add_argument("--buscat")
    ap.add_argument("--packet-readers", type=int, default=4,
                    help="Python packet readers of the encoded bus in the framebus-plus row")
    ap.add_argument("--only", action="append", choices=list(VARIANTS))
    ap.add_argument("--no-report", action="store_true")
    a = ap.parse_args()
    a.secs = a.secs or (10.0 if a.quick else 60.0)
    a.lat_secs = a.lat_secs or (8.0 if a.quick else 30.0)
    a.scale_secs = a.scale_secs or (6.0 if a.quick else 20.0)
    a.warmup = 4.0
    a.scale_warmup = 3.0
    a.mjpeg_viewers = [1, 10, 50]
    a.rtsp_clients = [1, 10, 20]
    for b, default in (("producer", "framebus-producer"), ("mjpeg", "framebus-mjpeg"), ("rtsp", "framebus-rtsp"),
                       ("encoder_bin", "framebus-encoder"), ("buscat", "framebus-buscat")):
        if not getattr(a, b):
            setattr(a, b, os.path.join(a.bin_dir, default))
        if not os.access(getattr(a, b), os.X_OK):
            print(f"missing binary: {getattr(a, b)}", file=sys.stderr)
            return 2
    CLI = os.path.join(os.path.dirname(a.producer), "framebus")
    if not a.no_report:
        ensure_requirements()
    atexit.register(stop_all)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    c = Ctx(a)
    LOG = open(os.path.join(c.tmp, "stderr.log"), "wb")
    log(f"# framebus end-to-end benchmark ({'quick' if a.quick else 'full'}), logs in {c.tmp}")
    results: dict = {"meta": {"mode": "quick" if a.quick else "full", "secs": a.secs, "lat_secs": a.lat_secs, "scale_secs": a.scale_secs,
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
                        "cpu_model": cpu_model(), "kernel": platform.release(), "load_before": os.getloadavg(),
                        "ffmpeg": tool_version(["ffmpeg", "-version"]),
                        "gstreamer": tool_version(["gst-launch-1.0", "--version"], 1),
                        "size": f"{W}x{H}", "fps": FPS, "bitrate_k": BITRATE_K, "gop": GOP, "jpeg_q": JPEG_Q,
                        "ffmpeg_qscale": FFMPEG_QSCALE},
               "variants": {}}
    for name, fn in VARIANTS.items():
        if a.only and name not in a.only:
            continue
        log(f"== {name}")
        try:
            results["variants"][name] = fn(c)
        except Exception as e:  # one broken variant must not lose the others
            log(f"  {name} failed: {e!r}")
            results["variants"][name] = {"error": repr(e)}
        finally:
            stop_all()
        time.sleep(1)
    if not a.only or "mp-shm" in a.only:
        log("== handoff.py (eventfd floor)")
        results["handoff"] = handoff_floor(a)
        log(results["handoff"])
    results["meta"]["load_after"] = os.getloadavg()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", f"{results['meta']['mode']}.json")
    if a.only and os.path.exists(path):  # merge a partial run into the last one
        with open(path) as f:
            old = json.load(f)
        old["variants"].update(results["variants"])
        if "handoff" in results:
            old["handoff"] = results["handoff"]
        results = old
    with open(path, "w") as f:
        json.dump(results, f)
    log(f"results: {path}")
    if not a.no_report:
        subprocess.run([VENV_PY, os.path.join(HERE, "report.py"), path], check=True, timeout=120)
    return 0


def ensure_requirements() -> None:
    """matplotlib (the plots) into this venv, from requirements.txt."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([VENV_PY, "-m", "pip", "install", "-q", "-r", os.path.join(HERE, "requirements.txt")],
                       check=True, timeout=600)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def tool_version(cmd, line=0) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.splitlines()[line]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())

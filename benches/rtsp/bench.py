#!/usr/bin/python3
"""RTSP benchmark: framebus (framebus-encoder + framebus-rtsp) beside
gst-rtsp-server, same frames, same settings.

Run with (from the repository root, after `make build`):

    make bench-rtsp                      # = /usr/bin/python3 benches/rtsp/bench.py
    /usr/bin/python3 benches/rtsp/bench.py --quick     # harness check, ~2 min

The framebus side is the encoded bus of issue 13: `framebus-producer`
writes the raw bus, `framebus-encoder --profile bench=1920x1080@30,...
--encoder libx264` encodes it once into `BUS.h264.bench`, and
`framebus-rtsp` packetizes that bus (it encodes nothing). Its CPU is the
two processes summed, each part reported. gst-rtsp-server (gst_server.py,
shared media, x264enc with the same settings) encodes the same raw frames.

Measures, for each server, interleaved (one server, then the other, so a
change in machine load hits both alike):
  * latency from the time code (capture time painted into the frame, see
    docs/timecode.md) to the moment a client hands the decoded frame to us,
    with a GStreamer client (rtspsrc latency=0 ! rtph264depay ! avdec_h264)
    and an ffmpeg client (-fflags nobuffer -flags low_delay, -threads 1
    before the output); p50/p90/p99 over --frames frames;
  * server CPU (user+sys from /proc/PID/stat) over --cpu-secs seconds with
    1 and with --many (20) clients (ffmpeg -c copy -f null, TCP). On the
    framebus side --py-readers (4) Python packet readers
    (benches/python/packet_reader.py: `Reader.next_encoded()` in a loop)
    read the same encoded bus throughout both points; the harness counts
    the framebus-encoder processes of the bus (one: the encode is shared)
    and reports encoder CPU at 1 and at 20 viewers.
Everything on 127.0.0.1; 1920x1080 NV12 at 30 fps, 4 Mbit/s, GOP 60.
Every process runs in its own process group and is killed on exit
(Ctrl-C and SIGTERM too); the buses are removed with `framebus rm --force`.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

W, H, FPS = 1920, 1080, 30
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from procs import cpu_ticks, kill_all, kill_group, spawn, wait_path  # noqa: E402


def decode_tc(frame, w, h):
    band = h // 24
    y = band // 2
    row = y * w
    v = 0
    for i in range(64):
        x0, x1 = i * w // 64, (i + 1) * w // 64
        xm = (x0 + x1) // 2
        s = frame[row + xm - 2 : row + xm + 3]
        v = (v << 1) | (1 if sum(s) >= 128 * len(s) else 0)
    return v


def read_exact(f, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def latency(client_cmd, frames, skip=30, size=(W, H)):
    """p50/p90/p99 of (frame in our hands - its time code) over `frames`
    frames of a client writing GRAY8 frames of `size` to stdout (also used
    by benches/webrtc/bench.py for its RTSP baseline)."""
    w, h = size
    # `timeout` bounds a client that stalls (read_exact would block forever).
    # Own process group: killing only `timeout` would leave the client
    # running, connected and stalled on a full pipe; a stalled TCP client
    # of the shared media then slows down every later measurement.
    # BENCH_CLIENT_LOG=FILE appends the clients' stderr there (debugging).
    log = open(os.environ["BENCH_CLIENT_LOG"], "ab") if os.environ.get("BENCH_CLIENT_LOG") else subprocess.DEVNULL
    p = subprocess.Popen(["timeout", "60"] + client_cmd, stdout=subprocess.PIPE, stderr=log,
                         start_new_session=True)
    lat = []
    try:
        deadline = time.time() + 60
        n = 0
        t_first = None
        while len(lat) < frames and time.time() < deadline:
            f = read_exact(p.stdout, w * h)
            if f is None:
                break
            now = time.time_ns() // 1000
            n += 1
            if n == skip:
                t_first = time.time()
            if n <= skip:
                continue
            tc = decode_tc(f, w, h)
            d = (now - tc) / 1000.0
            if 0 <= d < 10_000:
                lat.append(d)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        p.stdout.close()
    if not lat:
        return None
    lat.sort()
    q = lambda x: lat[min(len(lat) - 1, int(x * len(lat)))]
    fps = (len(lat) / (time.time() - t_first)) if t_first else 0.0
    return {"n": len(lat), "fps": round(fps, 1), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "mean": statistics.mean(lat)}


def gst_client(url):
    return ["gst-launch-1.0", "-q", "rtspsrc", f"location={url}", "latency=0", "protocols=tcp",
            "!", "rtph264depay", "!", "avdec_h264", "!", "videoconvert", "!",
            "video/x-raw,format=GRAY8", "!", "fdsink", "fd=1", "sync=false"]


def ffmpeg_client(url):
    return ["ffmpeg", "-nostdin", "-loglevel", "error", "-fflags", "nobuffer", "-flags", "low_delay",
            "-rtsp_transport", "tcp", "-i", url, "-threads", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"]


def encoder_procs(bus):
    """PIDs of framebus-encoder processes encoding `bus` (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"framebus-encoder" and bus.encode() in argv:
            out.append(int(d))
    return out


def cpu_with_clients(server, url, n, secs, readers=None):
    """% of one core of each of the server's processes with n `ffmpeg -c copy`
    clients (and `readers()` Python packet readers, framebus side only)."""
    clients = [spawn(["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
                      "-i", url, "-c", "copy", "-f", "null", "-"]) for _ in range(n)]
    pyr = readers() if readers else []
    try:
        time.sleep(4)  # all connected, encoder warm
        alive = sum(c.poll() is None for c in clients)
        pids = dict(server["pids"])
        for i, (p, _) in enumerate(pyr):
            pids[f"py{i}"] = p.pid
        t0, c0 = time.time(), {k: cpu_ticks(pid) for k, pid in pids.items()}
        time.sleep(secs)
        t1, c1 = time.time(), {k: cpu_ticks(pid) for k, pid in pids.items()}
        alive = min(alive, sum(c.poll() is None for c in clients))
        encoders = len(encoder_procs(server["bus"])) if server.get("bus") else None
    finally:
        for c in clients:
            kill_group(c, signal.SIGKILL)
        for p, _ in pyr:
            kill_group(p, signal.SIGTERM)  # a packet reader writes its counts on SIGTERM
    hz = os.sysconf("SC_CLK_TCK")
    pct = {k: 100.0 * (c1[k] - c0[k]) / hz / (t1 - t0) for k in pids}
    parts = {k: v for k, v in pct.items() if not k.startswith("py")}
    res = {"total": sum(parts.values()), "parts": parts, "alive": alive, "encoders": encoders}
    if pyr:
        res["py_cpu"] = sum(v for k, v in pct.items() if k.startswith("py"))
        got = []
        for _, out in pyr:
            try:
                with open(out) as f:
                    r = json.load(f)
                got.append(r["frames"] / r["secs"] if r["secs"] else 0.0)
            except (OSError, ValueError, KeyError):
                got.append(0.0)
        res["py_fps_min"] = min(got)
    return res


def start(cmd, env=None):
    p = spawn(cmd, stdout=subprocess.PIPE, env=env, text=True)
    line = p.stdout.readline().strip()
    return p, line


def fmt_lat(lat):
    if not lat:
        return "n/a"
    return f"{lat['p50']:.0f} / {lat['p90']:.0f} / {lat['p99']:.0f} ({lat['fps']:.0f} fps)"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"


def _on_signal(signum, _frame):
    sys.exit(128 + signum)  # runs the finally: below


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--producer", help="framebus-producer binary (default: in --target-dir)")
    ap.add_argument("--encoder-bin", help="framebus-encoder binary (default: in --target-dir)")
    ap.add_argument("--rtsp", help="framebus-rtsp binary (default: in --target-dir)")
    ap.add_argument("--quick", action="store_true",
                    help="harness check: --frames 90 --cpu-secs 5 (numbers not for the docs)")
    ap.add_argument("--frames", type=int, help="latency samples per client (default 300, quick 90)")
    ap.add_argument("--cpu-secs", type=float, help="CPU window per point (default 15, quick 5)")
    ap.add_argument("--many", type=int, default=20)
    ap.add_argument("--py-readers", type=int, default=4,
                    help="Python packet readers of the encoded bus during the framebus CPU points")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every measurement, alternating servers")
    ap.add_argument("--venv", default=os.environ.get("FRAMEBUS_VENV", os.path.join(ROOT, ".venv")),
                    help="the venv with the framebus Python package and numpy ($FRAMEBUS_VENV)")
    ap.add_argument("--py-path", help="site-packages for gst_server.py --bus (default: the venv's)")
    ap.add_argument("--only", choices=["framebus", "gst-rtsp-server"], help="measure one server")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--no-cpu", action="store_true", help="latency only")
    ap.add_argument("--rtsp-arg", action="append", default=[],
                    help="extra framebus-rtsp argument, repeatable (e.g. --rtsp-arg=--join-max-age-ms=0)")
    a = ap.parse_args()
    a.frames = a.frames or (90 if a.quick else 300)
    a.cpu_secs = a.cpu_secs or (5.0 if a.quick else 15.0)
    venv_py = os.path.join(a.venv, "bin", "python")
    if not a.py_path:
        import glob

        a.py_path = (glob.glob(os.path.join(a.venv, "lib", "python3*", "site-packages")) or [""])[0]
    producer = a.producer or os.path.join(a.target_dir, "framebus-producer")
    encoder = a.encoder_bin or os.path.join(a.target_dir, "framebus-encoder")
    rtsp = a.rtsp or os.path.join(a.target_dir, "framebus-rtsp")
    cli = os.path.join(os.path.dirname(producer), "framebus")
    for b in (producer, encoder, rtsp, venv_py):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing: {b} (make build; the venv: --venv or $FRAMEBUS_VENV)")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    bus = f"bench-rtsp-{os.getpid()}"
    ebus = f"{bus}.h264.bench"
    tmp = tempfile.mkdtemp(prefix="framebus-rtsp-bench-")
    load_before = os.getloadavg()
    try:
        spawn([producer, "--bus", bus, "--size", f"{W}x{H}", "--fps", str(FPS)])
        wait_path(f"/dev/shm/framebus.{bus}")
        enc = spawn([encoder, "--bus", bus, "--profile", f"bench={W}x{H}@{FPS},bitrate=4M,gop=60",
                     "--encoder", "libx264"])
        wait_path(f"/dev/shm/framebus.{ebus}")
        ours, line = start([rtsp, "--listen", "127.0.0.1:0", *a.rtsp_arg])
        if not line.startswith("listening on "):
            sys.exit(f"framebus-rtsp did not start: {line!r}")
        ours_url = line.removeprefix("listening on ").rstrip("/") + f"/{bus}/bench"
        # Both servers encode the same frames: the producer's bus.
        env = dict(os.environ)
        env["PYTHONPATH"] = a.py_path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        gst, line = start(["/usr/bin/python3", os.path.join(HERE, "gst_server.py"), "--port", "0",
                           "--bus", bus, "--bitrate", "4000", "--gop", "60"], env=env)
        if not line.startswith("listening on "):
            sys.exit(f"gst_server.py did not start (PYTHONPATH={a.py_path}; needs python3-gi and "
                     f"gir1.2-gst-rtsp-server-1.0): {line!r}")
        gst_url = line.removeprefix("listening on ")
        n_readers = [0]

        def py_readers():
            out = []
            for _ in range(a.py_readers):
                n_readers[0] += 1
                res = os.path.join(tmp, f"py{n_readers[0]}.json")
                out.append((spawn([venv_py, os.path.join(ROOT, "benches/python/packet_reader.py"), ebus,
                                   "--out", res]), res))
            return out

        servers = [("framebus", {"pids": {"encoder": enc.pid, "rtsp": ours.pid}, "bus": bus,
                                 "readers": py_readers if a.py_readers else None}, ours_url),
                   ("gst-rtsp-server", {"pids": {"gst-rtsp-server": gst.pid}}, gst_url)]
        servers = [s for s in servers if not a.only or a.only == s[0]]
        res = {name: {"lat_gst": [], "lat_ffmpeg": [], "cpu_1": [], "cpu_n": []} for name, _, _ in servers}
        for _ in range(a.rounds):
            steps = [("lat_gst", lambda s, url: latency(gst_client(url), a.frames)),
                     ("lat_ffmpeg", lambda s, url: latency(ffmpeg_client(url), a.frames)),
                     ("cpu_1", lambda s, url: cpu_with_clients(s, url, 1, a.cpu_secs, s.get("readers"))),
                     ("cpu_n", lambda s, url: cpu_with_clients(s, url, a.many, a.cpu_secs, s.get("readers")))]
            for key, fn in steps[:2] if a.no_cpu else steps:
                for name, s, url in servers:
                    r = fn(s, url)
                    res[name][key].append(r)
                    print(name, key, r, flush=True)
        load_after = os.getloadavg()

        def med_lat(rs):
            rs = sorted((r for r in rs if r), key=lambda r: r["p50"])
            return rs[(len(rs) - 1) // 2] if rs else None

        def med_cpu(rs):
            """The round with the median total (its parts stay consistent)."""
            rs = sorted(rs, key=lambda r: r["total"])
            return rs[(len(rs) - 1) // 2] if rs else None

        summary = {name: {"lat_gst": med_lat(r["lat_gst"]), "lat_ffmpeg": med_lat(r["lat_ffmpeg"]),
                          "cpu_1": med_cpu(r["cpu_1"]), "cpu_n": med_cpu(r["cpu_n"])}
                   for name, r in res.items()}
        report(a, summary, load_before, load_after)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"load_before": load_before, "load_after": load_after, "rounds": res,
                           "summary": summary}, f, indent=1)
    finally:
        # SIGTERM first: the producer unlinks its bus on a clean stop.
        kill_all()
        for name in (ebus, bus):
            if os.path.exists(f"/dev/shm/framebus.{name}") and os.access(cli, os.X_OK):
                subprocess.run([cli, "rm", "--force", name], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)


def report(a, summary, load_before, load_after):
    def cpu_cell(c):
        if not c:
            return "n/a"
        parts = " + ".join(f"{k} {v:.1f}" for k, v in c["parts"].items())
        return f"{c['total']:.1f} %" + (f" ({parts})" if len(c["parts"]) > 1 else "")

    print()
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} "
          f"(`uptime`; a figure taken above ~1 is a harness check, not a result)")
    print()
    print(f"| server | GStreamer client p50/p90/p99 ms (fps) | ffmpeg client p50/p90/p99 ms (fps) "
          f"| CPU 1 client, % of a core | CPU {a.many} clients | {a.many}/1 |")
    print("|---|---|---|---|---|---|")
    for name, r in summary.items():
        c1, cn = r["cpu_1"], r["cpu_n"]
        alive = f" ({cn['alive']} alive)" if cn and cn["alive"] < a.many else ""
        print(f"| {name} | {fmt_lat(r['lat_gst'])} | {fmt_lat(r['lat_ffmpeg'])} | {cpu_cell(c1)} "
              f"| {cpu_cell(cn)}{alive} | {ratio(cn and cn['total'], c1 and c1['total'])} |")
    o, g = summary.get("framebus"), summary.get("gst-rtsp-server")
    if o and g:
        # A client that decoded under 90 % of the frames (time code
        # unreadable: stalled or concealed pictures) gives no ratio.
        p50 = lambda l: l["p50"] if l and l["fps"] >= 0.9 * FPS else None  # noqa: E731
        tot = lambda c: c["total"] if c else None  # noqa: E731
        print(f"| ratio framebus/gst | {ratio(p50(o['lat_gst']), p50(g['lat_gst']))} (goal ≤ 0.8) "
              f"| {ratio(p50(o['lat_ffmpeg']), p50(g['lat_ffmpeg']))} "
              f"| {ratio(tot(o['cpu_1']), tot(g['cpu_1']))} | {ratio(tot(o['cpu_n']), tot(g['cpu_n']))} | |")
    if o and o["cpu_1"] and o["cpu_n"]:
        c1, cn = o["cpu_1"], o["cpu_n"]
        print()
        print(f"Shared encoder: {a.py_readers} Python packet readers of the encoded bus throughout, "
              f"1 then {a.many} RTSP viewers (% of one core)")
        print()
        print(f"| | 1 viewer | {a.many} viewers | {a.many}/1 |")
        print("|---|---|---|---|")
        print(f"| framebus-encoder processes for the bus | {c1['encoders']} | {cn['encoders']} | |")
        for k in c1["parts"]:
            print(f"| {k} | {c1['parts'][k]:.1f} | {cn['parts'][k]:.1f} "
                  f"| {ratio(cn['parts'][k], c1['parts'][k])} |")
        print(f"| framebus side (encoder + rtsp) | {c1['total']:.1f} | {cn['total']:.1f} "
              f"| **{ratio(cn['total'], c1['total'])}** (goal ≤ 1.1) |")
        if "py_cpu" in c1:
            print(f"| {a.py_readers} Python packet readers (sum; AU/s of the slowest) "
                  f"| {c1['py_cpu']:.1f} ({c1['py_fps_min']:.1f}) | {cn['py_cpu']:.1f} ({cn['py_fps_min']:.1f}) | |")
        if g and g["cpu_1"] and g["cpu_n"]:
            print(f"| gst-rtsp-server (baseline, no packet readers) | {g['cpu_1']['total']:.1f} "
                  f"| {g['cpu_n']['total']:.1f} | {ratio(g['cpu_n']['total'], g['cpu_1']['total'])} |")
    print(f"\n(latency: the round with the median p50 over {a.rounds} round(s); CPU: the round with the median "
          f"total, % of one core from /proc/PID/stat utime+stime)")


if __name__ == "__main__":
    main()

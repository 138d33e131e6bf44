#!/usr/bin/python3
"""RTSP benchmark: framebus-rtsp beside gst-rtsp-server, same settings.

Run with (from the repository root, after `cargo build --release -p framebus-producer -p framebus-publishers`):

    /usr/bin/python3 benches/rtsp/bench.py --target-dir target/release

Measures, for each server:
  * latency from the time code (capture time painted into the frame, see
    docs/timecode.md) to the moment a client hands the decoded frame to us,
    with a GStreamer client (rtspsrc latency=0 ! rtph264depay ! avdec_h264)
    and an ffmpeg client (-fflags nobuffer -flags low_delay, -threads 1
    before the output); p50/p90/p99 over --frames frames;
  * server CPU (user+sys from /proc/PID/stat) over --cpu-secs seconds with
    1 and with 20 clients (ffmpeg -c copy -f null, TCP).
Everything on 127.0.0.1; 1920x1080 NV12 at 30 fps, 4 Mbit/s, GOP 60.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

W, H, FPS = 1920, 1080, 30
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


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


def latency(client_cmd, frames, skip=30):
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
            f = read_exact(p.stdout, W * H)
            if f is None:
                break
            now = time.time_ns() // 1000
            n += 1
            if n == skip:
                t_first = time.time()
            if n <= skip:
                continue
            tc = decode_tc(f, W, H)
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


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_with_clients(pid, url, n, secs):
    clients = [subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
                                 "-i", url, "-c", "copy", "-f", "null", "-"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]
    try:
        time.sleep(4)  # all connected, encoder warm
        alive = sum(c.poll() is None for c in clients)
        t0, c0 = time.time(), cpu_ticks(pid)
        time.sleep(secs)
        t1, c1 = time.time(), cpu_ticks(pid)
        alive = min(alive, sum(c.poll() is None for c in clients))
    finally:
        for c in clients:
            c.kill()
        for c in clients:
            c.wait()
    hz = os.sysconf("SC_CLK_TCK")
    return 100.0 * (c1 - c0) / hz / (t1 - t0), alive


def start(cmd, env=None):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    line = p.stdout.readline().strip()
    return p, line


def fmt_lat(lat):
    if not lat:
        return "n/a"
    return f"{lat['p50']:.0f} / {lat['p90']:.0f} / {lat['p99']:.0f} ({lat['fps']:.0f} fps)"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target-dir", default="target/release")
    ap.add_argument("--producer", help="framebus-producer binary (default: in --target-dir)")
    ap.add_argument("--rtsp", help="framebus-rtsp binary (default: in --target-dir)")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--cpu-secs", type=float, default=15)
    ap.add_argument("--many", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1, help="repeat every measurement, alternating servers")
    ap.add_argument("--py-path", default=os.path.join(ROOT, ".venv", "lib", "python3.11", "site-packages"),
                    help="where the framebus Python package and numpy are (for gst_server.py --bus)")
    ap.add_argument("--only", choices=["framebus-rtsp", "gst-rtsp-server"], help="measure one server")
    a = ap.parse_args()
    bus = f"bench-rtsp-{os.getpid()}"
    procs = []
    try:
        producer = a.producer or os.path.join(a.target_dir, "framebus-producer")
        rtsp = a.rtsp or os.path.join(a.target_dir, "framebus-rtsp")
        prod = subprocess.Popen([producer, "--bus", bus,
                                 "--size", f"{W}x{H}", "--fps", str(FPS)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(prod)
        time.sleep(1)
        ours, line = start([rtsp, "--listen", "127.0.0.1:0",
                            "--profile", f"bench={W}x{H}@{FPS},bitrate=4M,gop=60", "--encoder", "libx264"])
        procs.append(ours)
        ours_url = line.removeprefix("listening on ").rstrip("/") + f"/{bus}/bench"
        # Both servers encode the same frames: the producer's bus.
        env = dict(os.environ)
        env["PYTHONPATH"] = a.py_path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        gst, line = start(["/usr/bin/python3", os.path.join(HERE, "gst_server.py"), "--port", "0",
                           "--bus", bus, "--bitrate", "4000", "--gop", "60"], env=env)
        procs.append(gst)
        if not line.startswith("listening on "):
            sys.exit(f"gst_server.py did not start (PYTHONPATH={a.py_path}): {line!r}")
        gst_url = line.removeprefix("listening on ")
        servers = [("framebus-rtsp", ours.pid, ours_url), ("gst-rtsp-server", gst.pid, gst_url)]
        servers = [s for s in servers if not a.only or a.only == s[0]]
        # Interleaved: each measurement runs for one server, then the
        # other, so a change in machine load hits both alike.
        res = {name: {"lat_gst": [], "lat_ffmpeg": [], "cpu_1": [], "cpu_n": []} for name, _, _ in servers}
        for _ in range(a.rounds):
            for key, fn in [("lat_gst", lambda pid, url: latency(gst_client(url), a.frames)),
                            ("lat_ffmpeg", lambda pid, url: latency(ffmpeg_client(url), a.frames)),
                            ("cpu_1", lambda pid, url: cpu_with_clients(pid, url, 1, a.cpu_secs)),
                            ("cpu_n", lambda pid, url: cpu_with_clients(pid, url, a.many, a.cpu_secs))]:
                for name, pid, url in servers:
                    r = fn(pid, url)
                    res[name][key].append(r)
                    print(name, key, r, flush=True)

        def med_lat(rs):
            rs = sorted((r for r in rs if r), key=lambda r: r["p50"])
            return rs[(len(rs) - 1) // 2] if rs else None

        def med_cpu(rs):
            return statistics.median([c for c, _ in rs]) if rs else 0.0

        summary = {}
        for name, r in res.items():
            summary[name] = {
                "lat_gst": med_lat(r["lat_gst"]), "lat_ffmpeg": med_lat(r["lat_ffmpeg"]),
                "cpu_1": med_cpu(r["cpu_1"]), "cpu_n": med_cpu(r["cpu_n"]),
                "alive": min((n for _, n in r["cpu_n"]), default=0),
            }
        print()
        print(f"| server | GStreamer client p50/p90/p99 ms (fps) | ffmpeg client p50/p90/p99 ms (fps) "
              f"| CPU 1 client | CPU {a.many} clients | {a.many}/1 |")
        print("|---|---|---|---|---|---|")
        for name, r in summary.items():
            print(f"| {name} | {fmt_lat(r['lat_gst'])} | {fmt_lat(r['lat_ffmpeg'])} | {r['cpu_1']:.0f} % "
                  f"| {r['cpu_n']:.0f} % ({r['alive']} alive) | {ratio(r['cpu_n'], r['cpu_1'])} |")
        if len(summary) == 2:
            o, g = summary["framebus-rtsp"], summary["gst-rtsp-server"]
            # A client that decoded under 90 % of the frames (time code
            # unreadable: stalled or concealed pictures) gives no ratio.
            p50 = lambda l: l["p50"] if l and l["fps"] >= 0.9 * FPS else None  # noqa: E731
            print(f"| ratio framebus/gst | {ratio(p50(o['lat_gst']), p50(g['lat_gst']))} "
                  f"| {ratio(p50(o['lat_ffmpeg']), p50(g['lat_ffmpeg']))} "
                  f"| {ratio(o['cpu_1'], g['cpu_1'])} | {ratio(o['cpu_n'], g['cpu_n'])} | |")
        print(f"\n(latency: the round with the median p50 over {a.rounds} round(s); CPU: median over rounds, "
              f"% of one core; load average at the end: {os.getloadavg()[0]:.1f})")
    finally:
        # SIGTERM first: the producer unlinks its bus on a clean stop.
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()

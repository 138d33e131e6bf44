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
import statistics
import subprocess
import sys
import time

W, H, FPS = 1920, 1080, 30
HERE = os.path.dirname(os.path.abspath(__file__))


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
    p = subprocess.Popen(["timeout", "60"] + client_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
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
        p.kill()
        p.wait()
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target-dir", default="target/release")
    ap.add_argument("--producer", help="framebus-producer binary (default: in --target-dir)")
    ap.add_argument("--rtsp", help="framebus-rtsp binary (default: in --target-dir)")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--cpu-secs", type=float, default=15)
    ap.add_argument("--many", type=int, default=20)
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
        gst, line = start(["/usr/bin/python3", os.path.join(HERE, "gst_server.py"), "--port", "0",
                           "--size", f"{W}x{H}", "--fps", str(FPS), "--bitrate", "4000", "--gop", "60"])
        procs.append(gst)
        gst_url = line.removeprefix("listening on ")
        results = {}
        for name, pid, url in [("framebus-rtsp", ours.pid, ours_url), ("gst-rtsp-server", gst.pid, gst_url)]:
            if a.only and a.only != name:
                continue
            r = {}
            r["lat_gst"] = latency(gst_client(url), a.frames)
            r["lat_ffmpeg"] = latency(ffmpeg_client(url), a.frames)
            r["cpu_1"] = cpu_with_clients(pid, url, 1, a.cpu_secs)
            r[f"cpu_{a.many}"] = cpu_with_clients(pid, url, a.many, a.cpu_secs)
            results[name] = r
            print(name, r, flush=True)
        print()
        print(f"| server | GStreamer client p50/p90/p99 ms (fps received) | ffmpeg client p50/p90/p99 ms (fps received) | CPU 1 client | CPU {a.many} clients | ratio |")
        print("|---|---|---|---|---|---|")
        for name, r in results.items():
            def fmt(l):
                return "n/a" if not l else f"{l['p50']:.0f} / {l['p90']:.0f} / {l['p99']:.0f} ({l['fps']:.0f} fps)"
            c1, cn = r["cpu_1"][0], r[f"cpu_{a.many}"][0]
            print(f"| {name} | {fmt(r['lat_gst'])} | {fmt(r['lat_ffmpeg'])} | {c1:.0f} % | {cn:.0f} % "
                  f"({r[f'cpu_{a.many}'][1]} alive) | {cn / c1 if c1 else float('nan'):.2f} |")
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()

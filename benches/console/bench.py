#!/usr/bin/python3
"""Console benchmark (issue 17): how soon the browser console is usable on
loopback, against the server-rendered index of the same server in the
same run.

Run with (from the repository root, after `make build` and `make node-deps`):

    make bench-console                      # 10 runs of each page, ~1 min
    /usr/bin/python3 benches/console/bench.py --runs 3

Set-up: the example service (docs/console.md): `framebus-producer --config`
with two test-pattern cameras as in examples/framebus.toml (1920x1080@60
and 1280x720@30, NV12, with the time code; bus names of this run), the
encoders `high` and `low`, and framebus-mjpeg, framebus-rtsp and
framebus-recorder on ports the OS picks. benches/console/page.mjs then
opens, in headless Chromium, each in a fresh browser context (cold cache,
new connections), alternately, `--runs` times after one warm-up of each:
  - the console `/`: the load event (page, script, style, time-code
    reader), the first status document rendered, every camera's tile
    showing its first picture, every tile showing a time-code latency;
  - the baseline, `/mjpeg` (server-rendered, one <img> per profile of each
    bus): every image showing its first picture.
Bytes: every response but the MJPEG streams. Prints a markdown report and
writes it to benches/console/results/DATE.md. Figures are reported, never
asserted.
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    tag = f"bc{os.getpid()}"
    tmp = tempfile.mkdtemp(prefix="framebus-bench-console-")
    cfg = os.path.join(tmp, "framebus.toml")
    with open(cfg, "w") as f:
        f.write(f"""
[[camera]]
bus = "{tag}a"
size = "1920x1080"
fps = 60
[[camera]]
bus = "{tag}b"
size = "1280x720"
fps = 30
[[encoder]]
name = "high"
fps = 30
bitrate = "4M"
[[encoder]]
name = "low"
size = "640x360"
fps = 30
bitrate = "800k"
[publishers.rtsp]
listen = "127.0.0.1:0"
[publishers.mjpeg]
listen = "127.0.0.1:0"
[publishers.mjpeg.webrtc]
udp = "127.0.0.1:0"
[publishers.recorder]
listen = "127.0.0.1:0"
dir = "{tmp}/rec"
""")
    load0 = os.getloadavg()
    prod = subprocess.Popen(
        [os.path.join(a.target_dir, "framebus-producer"), "--config", cfg],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        status = f"/dev/shm/framebus-status.{prod.pid}.json"
        url = None
        deadline = time.time() + 30
        while time.time() < deadline and url is None:
            time.sleep(0.2)
            try:
                st = json.load(open(status))
            except (OSError, ValueError):
                continue
            url = next(
                (p["url"] for p in st["publishers"] if p["kind"] == "mjpeg" and p["state"] == "running" and p.get("url")),
                None,
            )
        if url is None:
            sys.exit("bench: framebus-mjpeg did not start within 30 s")
        time.sleep(2)
        out = subprocess.run(
            ["node", os.path.join(ROOT, "benches/console/page.mjs"), "--url", url, "--runs", str(a.runs)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            sys.exit(f"bench: page.mjs failed ({out.returncode}): {out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        os.killpg(prod.pid, signal.SIGTERM)
        prod.wait(timeout=30)
        subprocess.run(["rm", "-rf", tmp])
    load1 = os.getloadavg()

    def stat(rows, key):
        xs = [x[key] for x in rows if x.get(key) is not None]
        if not xs:
            return "—", "—", 0
        return f"{statistics.median(xs):.0f}", f"{max(xs):.0f}", len(xs)

    c, i = r["console"], r["index"]
    lines = [
        f"# Console benchmark, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"`make bench-console` ({a.runs} runs of each page, alternating, fresh browser context each);"
        f" load average {load0[0]:.2f} before, {load1[0]:.2f} after; {os.cpu_count()} CPUs.",
        "",
        "| page | milestone (ms from navigation) | p50 | max | runs reaching it |",
        "|---|---|---|---|---|",
    ]
    for label, rows, key, what in [
        ("console `/`", c, "loaded", "load event (page, script, style)"),
        ("console `/`", c, "ready", "first status rendered"),
        ("console `/`", c, "tiles", "every camera's tile shows a picture"),
        ("console `/`", c, "latency", "every tile shows its time-code latency"),
        ("index `/mjpeg`", i, "loaded", "load event"),
        ("index `/mjpeg`", i, "images", "every image shows a picture"),
    ]:
        p50, mx, n = stat(rows, key)
        lines.append(f"| {label} | {what} | {p50} | {mx} | {n}/{len(rows)} |")
    tiles = [x["tiles"] for x in c if x.get("tiles") is not None]
    imgs = [x["images"] for x in i if x.get("images") is not None]
    if tiles and imgs:
        lines += [
            "",
            f"Console's tiles ÷ index's images (p50): {statistics.median(tiles) / statistics.median(imgs):.2f}.",
        ]
    cb = statistics.median([x["bytes"] for x in c])
    ib = statistics.median([x["bytes"] for x in i])
    lines += ["", f"Bytes per load, MJPEG streams excluded (p50): console {cb / 1000:.1f} kB, index {ib / 1000:.1f} kB."]
    report = "\n".join(lines) + "\n"
    print(report)
    os.makedirs(os.path.join(ROOT, "benches/console/results"), exist_ok=True)
    with open(os.path.join(ROOT, "benches/console/results", time.strftime("%Y-%m-%d-%H%M") + ".md"), "w") as f:
        f.write(report)


if __name__ == "__main__":
    main()

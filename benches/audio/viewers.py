#!/usr/bin/python3
"""Audio under many viewers (issue 19): glitches over a long run with 20
RTSP viewers, and the audio's capture-to-client latency.

Run with (from the repository root, after `make build`):

    make bench-audio-viewers                     # 20 viewers, 600 s
    /usr/bin/python3 benches/audio/viewers.py --viewers 5 --seconds 60

Set-up: `framebus-producer --audio tone` (a 320x240@30 test pattern and
the beep at every whole second), `framebus-encoder` (H.264 `low`) and
`framebus-encoder --opus`, `framebus-rtsp` on a port the OS picks.
  - `--viewers` ffmpeg clients play rtsp://…/<bus>/low over TCP for
    `--seconds`, keeping both tracks as they come (`-c copy`, Matroska).
    A glitch is an audio packet whose timestamp does not follow the one
    before by exactly 20 ms (a packet lost, repeated or late beyond the
    client's reordering) — in any client's file. ffmpeg's own
    timestamps are what a player would play.
  - One raw RTSP client (this script) takes the audio track only and
    times every RTP packet's arrival against its capture time, read
    through the RTCP sender reports' NTP/RTP pairs (the server's clock
    mapping, the same machine's CLOCK_REALTIME): capture to the client's
    socket, which is what the server adds before a player's own buffer.
  - The bus side: xruns of the PCM bus, packets the Opus encoder wrote.
Prints a markdown report and writes it to benches/audio/results/. Nothing
is asserted.
"""

import argparse
import datetime
import os
import socket
import statistics
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

NTP_EPOCH = 2208988800


def rtsp_audio_latency(url: str, seconds: float, out: list[float]) -> None:
    """Play `url`'s audio track (trackID=1) over TCP and append each RTP
    packet's arrival minus capture (ms) to `out`."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    f = s.makefile("rb")
    cseq = 0
    session = None

    def request(method: str, u: str, extra: str = "") -> dict:
        nonlocal cseq, session
        cseq += 1
        hdr = f"{method} {u} RTSP/1.0\r\nCSeq: {cseq}\r\n{extra}"
        if session:
            hdr += f"Session: {session}\r\n"
        s.sendall((hdr + "\r\n").encode())
        status = f.readline()
        headers = {}
        while True:
            line = f.readline().decode().strip()
            if not line:
                break
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        body = f.read(int(headers.get("content-length", "0")))
        if b" 200 " not in status:
            raise SystemExit(f"{method}: {status!r}")
        if "session" in headers:
            session = headers["session"].split(";")[0]
        headers["body"] = body.decode()
        return headers

    d = request("DESCRIBE", url, "Accept: application/sdp\r\n")
    if "m=audio" not in d["body"]:
        raise SystemExit("no audio track in the SDP")
    request("SETUP", f"{url}/trackID=1", "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
    request("PLAY", url, "Range: npt=0.000-\r\n")
    sr = None  # (rtp, unix seconds)
    pending = []
    end = time.time() + seconds
    while time.time() < end:
        head = f.read(4)
        if len(head) < 4 or head[0] != 0x24:
            break
        ch, n = head[1], struct.unpack(">H", head[2:])[0]
        pkt = f.read(n)
        now = time.time()
        if ch == 1 and len(pkt) >= 20 and pkt[1] == 200:
            ntp_s, ntp_f, rtp = struct.unpack(">IIi", pkt[8:20])
            sr = (rtp & 0xFFFFFFFF, ntp_s - NTP_EPOCH + ntp_f / 2**32)
        elif ch == 0 and len(pkt) >= 12:
            ts = struct.unpack(">I", pkt[4:8])[0]
            pending.append((ts, now))
            if sr:
                for ts, at in pending:
                    d_ticks = (ts - sr[0] + 2**31) % 2**32 - 2**31
                    out.append((at - (sr[1] + d_ticks / 48000)) * 1000)
                pending.clear()
    s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=600.0)
    a = ap.parse_args()
    started = datetime.datetime.now()
    load = procs.uptime()
    tmp = tempfile.mkdtemp(prefix="framebus-bench-audio-viewers-")
    shm = os.path.join(tmp, "shm")
    os.makedirs(shm)
    env = dict(os.environ, FRAMEBUS_SHM_DIR=shm, RUST_LOG="warn")
    bus = f"bv{os.getpid()}"
    t = a.target_dir
    try:
        procs.spawn([f"{t}/framebus-producer", "--bus", bus, "--size", "320x240", "--fps", "30",
                     "--audio", "tone"], env=env)
        procs.wait_path(os.path.join(shm, f"framebus.{bus}.audio"))
        procs.spawn([f"{t}/framebus-encoder", "--bus", bus, "--profile",
                     "low=320x240@30,bitrate=600k"], env=env)
        procs.spawn([f"{t}/framebus-encoder", "--bus", f"{bus}.audio", "--opus"], env=env)
        procs.wait_path(os.path.join(shm, f"framebus.{bus}.opus"))
        rtsp = procs.spawn([f"{t}/framebus-rtsp", "--listen", "127.0.0.1:0"], env=env,
                           stdout=subprocess.PIPE, text=True)
        line = rtsp.stdout.readline()
        base = line.split("listening on ", 1)[1].strip().rstrip("/")
        url = f"{base}/{bus}/low"
        files = []
        for i in range(a.viewers):
            path = os.path.join(tmp, f"v{i}.mkv")
            files.append(path)
            procs.spawn(["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", url,
                         "-t", str(a.seconds), "-c", "copy", "-y", path])
        latencies: list[float] = []
        lat = threading.Thread(target=rtsp_audio_latency, args=(url, a.seconds, latencies))
        lat.start()
        time.sleep(a.seconds + 5)
        lat.join(timeout=30)
        for p in procs.PROCS[4:]:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        stat = subprocess.run([f"{t}/framebus", "stat", "--json", f"{bus}.audio"], env=env,
                              capture_output=True, text=True).stdout
        opus = subprocess.run([f"{t}/framebus", "stat", "--json", f"{bus}.opus"], env=env,
                              capture_output=True, text=True).stdout
    finally:
        procs.kill_all()
    glitches, packets, short = 0, 0, 0
    for path in files:
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                              "packet=pts_time", "-of", "csv=p=0", path],
                             capture_output=True, text=True).stdout
        pts = [float(x.strip().rstrip(",")) for x in out.split() if x.strip().rstrip(",")]
        packets += len(pts)
        if len(pts) < a.seconds * 50 * 0.9:
            short += 1
        glitches += sum(1 for x, y in zip(pts, pts[1:]) if abs((y - x) - 0.020) > 0.0015)
    import json
    try:
        xruns = json.loads(stat).get("source_dropped", "?")
        opus_published = json.loads(opus).get("published", "?")
    except ValueError:
        xruns, opus_published = "?", "?"
    lat_sorted = sorted(latencies)
    q = lambda p: lat_sorted[min(len(lat_sorted) - 1, int(p * len(lat_sorted)))] if lat_sorted else float("nan")
    text = f"""## Audio: {a.viewers} RTSP viewers for {a.seconds:g} s ({started:%Y-%m-%d %H:%M})

`make bench-audio-viewers` (`/usr/bin/python3 benches/audio/viewers.py --viewers {a.viewers} --seconds {a.seconds:g}`), {procs.machine()}; load before: {load}; after: {procs.uptime()}.
The tone source (48 kHz mono, 20 ms chunks), one Opus encode (64 kbit/s), the 320x240@30 test pattern in H.264; {a.viewers} ffmpeg clients over TCP keeping both tracks.

| what | value |
|---|---|
| glitches (audio packets not 20 ms after the one before, all clients) | **{glitches}** of {packets} packets |
| clients that stopped early (< 90 % of the packets) | {short} |
| xruns on the PCM bus | {xruns} |
| Opus packets written | {opus_published} |
| audio capture to the client's socket, p50 / p99 / max (ms, {len(latencies)} packets, one raw client) | {statistics.median(latencies) if latencies else float('nan'):.1f} / {q(0.99):.1f} / {max(latencies) if latencies else float('nan'):.1f} |
"""
    procs.write_report(text, started, os.path.join(HERE, "results"), ROOT)


if __name__ == "__main__":
    main()

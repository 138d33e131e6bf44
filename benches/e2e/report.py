"""Write the end-to-end section of docs/benchmarks.md and its plots from a
results file of benches/e2e/run.py.

Run with: .venv/bin/python benches/e2e/report.py benches/e2e/results/full.json

Only the text between the `<!-- e2e:begin -->` and `<!-- e2e:end -->`
markers (under `## End-to-end scenario`) is replaced; the rest of the file
(the core-bus section) is left alone. The analysis paragraphs live in
benches/e2e/analysis.md (hand-written against the committed numbers) and are
copied in after the tables.
"""

from __future__ import annotations

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
IMG = os.path.join(ROOT, "docs", "img")
BEGIN, END = "<!-- e2e:begin -->", "<!-- e2e:end -->"

PEERS = ["gstreamer", "ffmpeg"]
COLORS = {"framebus": "tab:blue", "gstreamer": "tab:orange", "ffmpeg": "tab:green",
          "framebus-raw": "tab:cyan", "mp-shm": "tab:red"}
OUTPUTS = [("rtsp", "RTSP H.264 1080p30, ffmpeg client"), ("rtsp-gst", "RTSP H.264 1080p30, GStreamer client"),
           ("mjpeg720", "MJPEG 1280x720@30 (ffmpeg client)"), ("mjpeg480", "MJPEG 640x480@15 (ffmpeg client)"),
           ("raw", "raw 1080p60 analysis consumer")]


def f1(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def lat_cell(d: dict | None) -> str:
    if not d or not d.get("n"):
        return "n/a"
    return f"{d['p50']:.1f} / {d['p95']:.1f} / {d['p99']:.1f} ({d['fps']:.0f} fps)"


def ratio(a, b) -> str:
    if a is None or not b:
        return "–"
    return f"{a / b:.2f}×"


def plots(v: dict, mode: str) -> list[str]:
    os.makedirs(IMG, exist_ok=True)
    names = []
    # Latency CDF per output.
    fig, axes = plt.subplots(1, len(OUTPUTS), figsize=(15, 3.2), dpi=72)
    for ax, (out, title) in zip(axes, OUTPUTS):
        for name, r in v.items():
            d = r.get("latency", {}).get(out) if isinstance(r, dict) else None
            if not d or not d.get("n"):
                continue
            ms = d["ms"]
            ys = [(i + 1) / len(ms) for i in range(len(ms))]
            ax.plot(ms, ys, label=name, color=COLORS.get(name))
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("ms (capture → decoded frame in client)", fontsize=7)
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("fraction of frames")
    fig.tight_layout()
    p = os.path.join(IMG, f"e2e-latency-cdf.png")
    fig.savefig(p)
    plt.close(fig)
    names.append(p)
    # CPU vs viewers.
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=72)
    for ax, (key, title) in zip(axes, [("mjpeg720", "MJPEG 720p viewers"), ("rtsp", "RTSP 1080p clients")]):
        for name, r in v.items():
            rows = r.get("scaling", {}).get(key) if isinstance(r, dict) else None
            if not rows:
                continue
            ax.plot([x["n"] for x in rows], [x["cpu"] for x in rows], marker="o", label=name,
                    color=COLORS.get(name))
        ax.set_title(f"whole scenario CPU vs {title}", fontsize=8)
        ax.set_xlabel("viewers", fontsize=7)
        ax.set_ylabel("CPU, % of one core", fontsize=7)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    p = os.path.join(IMG, f"e2e-cpu-viewers.png")
    fig.savefig(p)
    plt.close(fig)
    names.append(p)
    return names


def section(res: dict) -> str:
    m, v = res["meta"], res["variants"]
    imgs = plots(v, m["mode"])
    L: list[str] = []
    w = L.append
    w(f"Run: `make bench-e2e` ({m['mode']} mode: scenario window {m['secs']:g} s, "
      f"{m.get('lat_secs', m['secs']):g} s per latency client group, {m['scale_secs']:g} s per scaling point), {m['date']}, {m['cpus']} × {m['cpu_model']}, "
      f"Linux {m['kernel']}, load average before/after {m['load_before'][0]:.1f} / {m['load_after'][0]:.1f}"
      + (" (quiet: nothing else ran on the machine). " if max(m['load_before'][0], m['load_after'][0]) < 1.5 else
         " (a shared VM: other builds were running; absolute numbers are noisy, the side-by-side order is the point). ")
      + f"{m['ffmpeg'].split(' Copyright')[0]}, {m['gstreamer']}. Raw JSON: `benches/e2e/results/{m['mode']}.json`.")
    w("")
    w(f"Same content everywhere: the `framebus-producer` test pattern {m['size']}@{m['fps']} NV12 with the time code "
      f"(docs/timecode.md). H.264: x264 ultrafast, zerolatency, no B-frames, {m['bitrate_k']} kbit/s CBR with a "
      f"1 s VBV, GOP {m['gop']}. JPEG: quality {m['jpeg_q']} (libjpeg-turbo in framebus-mjpeg and jpegenc; "
      f"ffmpeg's encoder takes a quantiser: qscale {m['ffmpeg_qscale']}). Scaling is bilinear in all three.")
    w("")
    w("| variant | what runs |")
    w("|---|---|")
    w("| framebus | `framebus-producer` → bus → `framebus-encoder` (the RTSP profile, once, into the encoded bus "
      "`BUS.h264.high`) → `framebus-rtsp` (packetizes, encodes nothing); bus → `framebus-mjpeg`; bus → a Python "
      "`framebus.Reader` |")
    w("| framebus + more consumers | the same, plus Python packet readers of the encoded bus "
      "(`Reader.next_encoded()`, benches/python/packet_reader.py) and a second RTSP viewer: CPU phase only |")
    w("| gstreamer | producer → `buscat` (bus → stdout) → one pipeline: `fdsrc ! rawvideoparse ! tee` → x264enc → "
      "appsink → gst-rtsp-server (shared media, appsrc); 2 × videoscale ! jpegenc ! multipartmux ! tcpserversink; "
      "shmsink → a `shmsrc ! appsink` consumer (benches/e2e/gst_tee.py, gst_raw.py) |")
    w("| ffmpeg | producer → `buscat` → one `ffmpeg` (split filter): libx264 → RTP/UDP (ffmpeg cannot serve RTSP; "
      "the client reads the SDP), 2 × mpjpeg over HTTP `-listen 1` (one client each), rawvideo → pipe → Python consumer |")
    w("| framebus-raw | producer → bus → Python `framebus.Reader` (the raw path alone) |")
    w("| mp-shm | Python generator paints the time code into a `multiprocessing.shared_memory` ring, slot index "
      "through a `multiprocessing.Queue`, numpy view in the consumer (the usual Python way) |")
    w("")
    w("The peers get the frames from the same producer through `buscat` (a bus reader that writes frames to "
      "a pipe); its copy is counted in their CPU as their capture (listed separately as *feed*).")
    w("")

    # Scenario CPU.
    w("### CPU and memory, whole scenario (every output with one client)")
    w("")
    # The best peer is the cheapest one that delivered the scenario (every
    # measured output at >= 90 % of its rate); a peer that dropped half the
    # frames is cheap for that reason.
    target = {"mjpeg720": 30, "mjpeg480": 15, "rtsp": 30}

    def delivered(r: dict) -> bool:
        fps = r["measure"].get("fps", {})
        return bool(fps) and all(fps[k] >= 0.9 * t for k, t in target.items() if k in fps)

    ok = [v[p]["measure"]["cpu"] for p in PEERS if p in v and "measure" in v[p] and delivered(v[p])]
    anyp = [v[p]["measure"]["cpu"] for p in PEERS if p in v and "measure" in v[p]]
    best = min(ok) if ok else (min(anyp) if anyp else None)
    w("One light client per output (a draining HTTP viewer per MJPEG stream, `ffmpeg -c copy` for RTSP; nothing "
      "decodes), the raw consumer reading every frame. CPU is user+sys of every process of the variant from "
      "`/proc/PID/stat`, in % of one core; PSS summed over those processes (shared memory counted once).")
    w("")
    w("| variant | CPU, % of one core | ÷ best peer | of which feed (producer + buscat) | peak PSS, MB (sum) | "
      "fps delivered: 720p / 480p / RTSP / raw | idle CPU (no viewers) |")
    w("|---|---|---|---|---|---|---|")
    plus = v.get("framebus", {}).get("measure_plus") if isinstance(v.get("framebus"), dict) else None
    rows = [(name, v.get(name), "measure") for name in ["framebus", "gstreamer", "ffmpeg"]]
    if plus:
        rows.insert(1, (f"framebus + {plus.get('packet_readers', 4)} Python packet readers + a 2nd RTSP viewer",
                        v["framebus"], "measure_plus"))
    for name, r, key in rows:
        if not r or key not in r:
            w(f"| {name} | failed: {r.get('error') if r else 'not run'} | | | | | |")
            continue
        me = r[key]
        feed = sum(x for k, x in me["by"].items() if k.startswith("framebus-produc") or k.startswith("framebus-buscat"))
        idle = r.get("idle", {}).get("cpu") if key == "measure" else None
        fps = me.get("fps", {})
        rawfps = r.get("latency", {}).get("raw", {}).get("fps") if key == "measure" else None
        fcells = " / ".join(f"{fps[k]:.0f}" if k in fps else "–" for k in ("mjpeg720", "mjpeg480", "rtsp"))
        fcells += f" / {rawfps:.0f}" if rawfps else " / –"
        if key == "measure_plus":
            fcells += f"; packet readers ≥ {me.get('packet_fps_min', 0):.0f} AU/s each"
        idle_cell = (f1(idle) if idle is not None else
                     ("see framebus" if key == "measure_plus" else "n/a (outputs block without clients)"))
        w(f"| {name} | {f1(me['cpu'])} | {ratio(me['cpu'], best)} | {f1(feed)} | {f1(me['pss_mb'])} | {fcells} | "
          f"{idle_cell} |")
    w("")
    w("÷ best peer: against the cheapest peer that delivered every output at ≥ 90 % of its rate. "
      "The RTSP column is the slowest RTSP client.")
    w("")
    fb, gs = v.get("framebus"), v.get("gstreamer")
    if isinstance(fb, dict) and "measure" in fb and isinstance(gs, dict) and "measure" in gs:
        line = (f"Shared encoder (issue 13): the whole framebus scenario is {ratio(fb['measure']['cpu'], gs['measure']['cpu'])} "
                f"the GStreamer tee pipeline's CPU in this run (goal ≤ 0.35×)")
        if plus:
            extra = plus["cpu"] - fb["measure"]["cpu"]
            readers = plus["by"].get("packet-readers", 0.0)
            line += (f"; with {plus.get('packet_readers', 4)} Python packet readers and a second RTSP viewer "
                     f"{ratio(plus['cpu'], gs['measure']['cpu'])} ({extra:+.1f} % of a core in all, of which the "
                     f"packet readers themselves {readers:.1f} %; framebus-encoder "
                     f"{fb['measure']['by'].get('framebus-encode', 0.0):.1f} → {plus['by'].get('framebus-encode', 0.0):.1f} %)")
        w(line + ".")
        w("")
    w("Per process (% of one core): " + "; ".join(
        f"{name}: " + ", ".join(f"{k} {x:.1f}" for k, x in r[key]["by"].items())
        for name, r, key in rows if isinstance(r, dict) and key in r) + ".")
    w("")

    # Latency.
    w("### Latency per output (capture time → decoded frame in the client), ms p50 / p95 / p99 (fps received)")
    w("")
    w("| output | framebus | gstreamer | ffmpeg | framebus p50 ÷ best peer p50 (peers that delivered ≥ half the frames) |")
    w("|---|---|---|---|---|")
    for out, title in OUTPUTS:
        cells = []
        peer_p50 = []
        for name in ["framebus", "gstreamer", "ffmpeg"]:
            d = v.get(name, {}).get("latency", {}).get(out) if isinstance(v.get(name), dict) else None
            cells.append(lat_cell(d))
            # a peer that delivered under half the frames has no comparable p50
            fbfps = (v.get("framebus", {}).get("latency", {}).get(out) or {}).get("fps", 0)
            if name != "framebus" and d and d.get("n") and d.get("fps", 0) >= 0.5 * fbfps:
                peer_p50.append(d["p50"])
        fb = v.get("framebus", {}).get("latency", {}).get(out, {}) if isinstance(v.get("framebus"), dict) else {}
        w(f"| {title} | {' | '.join(cells)} | {ratio(fb.get('p50'), min(peer_p50) if peer_p50 else None)} |")
    w("")
    w("Clients: RTSP `ffmpeg -fflags nobuffer -flags low_delay -rtsp_transport tcp -i URL -threads 1 -f rawvideo "
      "-pix_fmt gray -`; MJPEG the same with `-threads 1` before `-i` too; `gst-launch-1.0 rtspsrc latency=0 ! rtph264depay ! avdec_h264 ! videoconvert ! fdsink`. "
      "A sample is the wall clock when the client's decoded frame is in our hands minus the time code. "
      "The client groups run one after another (RTSP ffmpeg, RTSP GStreamer, both MJPEG): two 1080p decoders "
      "at once starve this 2-core machine and then measure the client. ffmpeg's RTSP row is its RTP/UDP output "
      "read through the SDP file.")
    w("")

    # Raw path.
    w("### Raw analysis consumer (every 1080p60 frame into Python)")
    w("")
    w("| variant | hand-off latency p50 / p95 / p99 ms (fps) | CPU of the raw path, % of one core | p50 ÷ framebus |")
    w("|---|---|---|---|")
    fbp50 = v.get("framebus-raw", {}).get("latency", {}).get("raw", {}).get("p50") if isinstance(v.get("framebus-raw"), dict) else None
    for name, label in [("framebus-raw", "framebus (producer + Python Reader)"),
                        ("mp-shm", "multiprocessing.shared_memory + Queue (generator + consumer)"),
                        ("framebus", "framebus, inside the full scenario"),
                        ("gstreamer", "GStreamer shmsink → shmsrc ! appsink, inside the scenario"),
                        ("ffmpeg", "ffmpeg rawvideo → pipe, inside the scenario")]:
        r = v.get(name)
        if not isinstance(r, dict) or "latency" not in r:
            continue
        d = r["latency"].get("raw")
        cpu = f1(r["measure"]["cpu"]) if name in ("framebus-raw", "mp-shm") else "see above"
        w(f"| {label} | {lat_cell(d)} | {cpu} | {ratio(d.get('p50') if d else None, fbp50)} |")
    w("")
    w("This latency is time code (stamped when the producer paints the frame) → numpy view in hand, so it "
      "includes painting and publishing. The bare hand-off, against the wake-up floor, from "
      "`benches/python/handoff.py` in the same run (CLOCK_MONOTONIC stamps taken just before the hand-off):")
    w("")
    w("```text")
    w(res.get("handoff", "(not run)"))
    w("```")
    w("")

    # Scaling.
    w("### Scaling: viewers of one output (the other outputs keep one viewer each)")
    w("")
    for key, title in [("mjpeg720", "MJPEG 1280x720@30 viewers"), ("rtsp", "RTSP 1920x1080@30 clients (ffmpeg -c copy)")]:
        w(f"| {title} | framebus CPU % | framebus fps/viewer min / mean | gstreamer CPU % | gstreamer fps/viewer min / mean | framebus ÷ gstreamer CPU |")
        w("|---|---|---|---|---|---|")
        fb = {x["n"]: x for x in v.get("framebus", {}).get("scaling", {}).get(key, [])} if isinstance(v.get("framebus"), dict) else {}
        gs = {x["n"]: x for x in v.get("gstreamer", {}).get("scaling", {}).get(key, [])} if isinstance(v.get("gstreamer"), dict) else {}
        for n in sorted(set(fb) | set(gs)):
            a, b = fb.get(n), gs.get(n)

            def cell(x):
                if not x:
                    return "–", "–"
                conn = f", {x['connected']}/{n} connected" if x["connected"] < n else ""
                return f1(x["cpu"]), f"{x['fps_min']:.1f} / {x['fps_mean']:.1f}{conn}"

            ca, fa = cell(a)
            cb, fbb = cell(b)
            w(f"| {n} | {ca} | {fa} | {cb} | {fbb} | {ratio(a['cpu'] if a else None, b['cpu'] if b else None)} |")
        w("")
    bpf = []
    for name in ["framebus", "gstreamer"]:
        rows = v.get(name, {}).get("scaling", {}).get("mjpeg720", []) if isinstance(v.get(name), dict) else []
        if rows and rows[0].get("bytes_per_frame"):
            bpf.append(f"{name} {rows[0]['bytes_per_frame'] / 1000:.1f} kB")
    if bpf:
        w("JPEG size at 720p, quality 80: " + ", ".join(bpf) + " per frame.")
        w("")
    w("ffmpeg is not in the scaling table: its HTTP output serves one client (`-listen 1`) and it has no RTSP "
      "server; fan-out needs another server in front (MediaMTX, nginx), which is the point of comparison.")
    w("")
    for p in imgs:
        rel = os.path.relpath(p, os.path.dirname(DOC))
        w(f"![{os.path.basename(p)}]({rel})")
        w("")
    analysis = os.path.join(HERE, "analysis.md")
    if os.path.exists(analysis):
        with open(analysis) as f:
            w(f.read().strip())
            w("")
    return "\n".join(L)


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results", "full.json")
    with open(path) as f:
        res = json.load(f)
    body = section(res)
    doc = ""
    if os.path.exists(DOC):
        with open(DOC) as f:
            doc = f.read()
    else:
        doc = ("# Benchmarks\n\n## Core bus\n\n(see `make bench`)\n\n")
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in doc and END in doc:
        pre, rest = doc.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        doc = pre + block + post
    else:
        if "## End-to-end scenario" not in doc:
            doc = doc.rstrip() + "\n\n## End-to-end scenario\n\n"
        head, tail = doc.split("## End-to-end scenario", 1)
        doc = head + "## End-to-end scenario\n\n" + block + "\n" + tail.lstrip("\n")
    with open(DOC, "w") as f:
        f.write(doc)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

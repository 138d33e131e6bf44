#!/usr/bin/python3
"""The GStreamer way: one pipeline with a tee, fed raw NV12 1080p60 frames on
stdin (the framebus test pattern with its time code, copied out of the bus by
benches/mjpeg/buscat), serving every output of the scenario:

  tee ─ x264enc (1080p30, ultrafast/zerolatency, no B, CBR, GOP) ─ appsink
        └► gst-rtsp-server shared media: appsrc ! h264parse ! rtph264pay
      ─ videoscale 1280x720@30 ! jpegenc q80 ! multipartmux ! tcpserversink
      ─ videoscale 640x480@15  ! jpegenc q80 ! multipartmux ! tcpserversink
      ─ shmsink (the raw analysis consumer: gst_raw.py, shmsrc ! appsink)

Encoders run all the time (a tee has no notion of viewers). Run with the
Debian python (python3-gi, gir1.2-gst-rtsp-server-1.0):

  buscat BUS | /usr/bin/python3 gst_tee.py --mjpeg-ports P1,P2 --shm PATH
Prints `ready rtsp://127.0.0.1:PORT/high` once serving; exits on stdin EOF.
"""
import argparse
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstRtspServer, GstVideo  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=60)
    ap.add_argument("--rtsp-port", default="0")
    ap.add_argument("--mjpeg-ports", required=True, help="P720,P480")
    ap.add_argument("--shm", required=True)
    ap.add_argument("--bitrate", type=int, default=4000, help="kbit/s")
    ap.add_argument("--gop", type=int, default=60)
    ap.add_argument("--quality", type=int, default=80)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    p720, p480 = a.mjpeg_ports.split(",")
    Gst.init(None)
    frame = w * h * 3 // 2
    leaky = "queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream"
    scale = "videoscale add-borders=false"
    desc = (
        f"fdsrc fd=0 blocksize={frame} ! rawvideoparse name=parse width={w} height={h} format=nv12 framerate={a.fps}/1 "
        f"! tee name=t "
        f"t. ! {leaky} ! shmsink socket-path={a.shm} shm-size={frame * 12} wait-for-connection=false sync=false "
        f"t. ! {leaky} ! videorate drop-only=true ! video/x-raw,framerate=30/1 "
        f"! x264enc name=enc speed-preset=ultrafast tune=zerolatency bframes=0 bitrate={a.bitrate} "
        f"vbv-buf-capacity=1000 key-int-max={a.gop} "
        f"! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=h264 sync=false emit-signals=true "
        f"t. ! {leaky} ! videorate drop-only=true ! video/x-raw,framerate=30/1 ! {scale} "
        f"! video/x-raw,width=1280,height=720,pixel-aspect-ratio=1/1 ! jpegenc quality={a.quality} "
        f"! multipartmux ! tcpserversink host=127.0.0.1 port={p720} sync=false "
        f"t. ! {leaky} ! videorate drop-only=true ! video/x-raw,framerate=15/1 ! {scale} "
        f"! video/x-raw,width=640,height=480,pixel-aspect-ratio=1/1 ! jpegenc quality={a.quality} "
        f"! multipartmux ! tcpserversink host=127.0.0.1 port={p480} sync=false "
    )
    pipe = Gst.parse_launch(desc)

    # Stamp each frame with the pipeline's running time when it is parsed
    # (a live source's timestamps): videorate then keeps 30 of 60 frames per
    # real second even when frames arrive late or are skipped upstream.
    def stamp(_pad, info):
        buf = info.get_buffer()
        clock = pipe.get_clock()
        if clock is not None:
            buf.pts = buf.dts = clock.get_time() - pipe.get_base_time()
        return Gst.PadProbeReturn.OK

    pipe.get_by_name("parse").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, stamp)
    enc = pipe.get_by_name("enc")

    appsrcs = []
    lock = threading.Lock()

    def on_sample(sink):
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        with lock:
            srcs = list(appsrcs)
        for src in srcs:
            b = buf.copy()  # shares the memory; own timestamps per media
            b.pts = b.dts = Gst.CLOCK_TIME_NONE
            src.emit("push-buffer", b)
        return Gst.FlowReturn.OK

    pipe.get_by_name("h264").connect("new-sample", on_sample)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(a.rtsp_port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_shared(True)
    factory.set_latency(0)
    factory.set_launch(
        "( appsrc name=src is-live=true do-timestamp=true format=time "
        "caps=video/x-h264,stream-format=byte-stream,alignment=au "
        "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )

    def configured(_factory, media):
        src = media.get_element().get_by_name("src")
        with lock:
            appsrcs.append(src)
        # A new media starts at a key frame, not up to a GOP later.
        enc.get_static_pad("src").send_event(
            GstVideo.video_event_new_upstream_force_key_unit(Gst.CLOCK_TIME_NONE, True, 0))

        def unprepared(_m):
            with lock:
                if src in appsrcs:
                    appsrcs.remove(src)

        media.connect("unprepared", unprepared)

    factory.connect("media-configure", configured)
    server.get_mount_points().add_factory("/high", factory)
    server.attach(None)

    loop = GLib.MainLoop()

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.EOS:
            loop.quit()
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print(f"gst error: {err.message} ({dbg})", file=sys.stderr, flush=True)
            loop.quit()

    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipe.set_state(Gst.State.PLAYING)
    print(f"ready rtsp://127.0.0.1:{server.get_bound_port()}/high", flush=True)
    try:
        loop.run()
    finally:
        pipe.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()

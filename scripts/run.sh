#!/usr/bin/env bash
# `make run`: start the whole service from one config file —
#   framebus-producer --config examples/framebus.toml
# (test pattern 1920x1080@60 on bus cam0; encoders high and low,
# framebus-rtsp, framebus-mjpeg and framebus-recorder as supervised
# children) — wait until `framebus status` says it is healthy, print where
# to look (the browser URL first, then the WebRTC player page, the RTSP URL
# of every encoder, the HLS playlist of every camera and the recordings
# page, read from the status file), and stop everything on Ctrl-C.
# Arguments go to framebus-producer (default: --config examples/framebus.toml).
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release"
for b in framebus-producer framebus-mjpeg framebus-rtsp framebus-encoder framebus-recorder framebus; do
  if [ ! -x "$bin/$b" ]; then
    echo "run.sh: $bin/$b is not built (run: make build)" >&2
    exit 1
  fi
done
[ $# -gt 0 ] || set -- --config examples/framebus.toml
# hls.js from npm (installed by `make run`'s node-deps) lets the player page
# play LL-HLS in browsers without native HLS (framebus-mjpeg --hls-js).
hlsjs="$PWD/publishers/tests/browser/node_modules/hls.js/dist/hls.min.js"
[ -z "${FRAMEBUS_HLS_JS:-}" ] && [ -r "$hlsjs" ] && export FRAMEBUS_HLS_JS="$hlsjs"

"$bin/framebus-producer" "$@" &
producer=$!
# SIGTERM to the producer stops its publishers first, then capture.
trap 'kill -TERM "$producer" 2>/dev/null; wait "$producer"; exit 0' INT TERM

# Wait (at most 15 s) until every bus is live and every publisher answers.
# (A stale bus left by some other, dead producer keeps `framebus status`
# degraded; the service starts anyway and the status says why.)
code=11
for _ in $(seq 1 30); do
  if ! kill -0 "$producer" 2>/dev/null; then
    wait "$producer"; code=$?
    echo "run.sh: framebus-producer exited with code $code (see the line above)" >&2
    exit "$code"
  fi
  "$bin/framebus" status >/dev/null 2>&1; code=$?
  [ "$code" = 0 ] && break
  sleep 0.5
done
"$bin/framebus" status || echo "run.sh: not healthy yet (framebus status exit $code); starting anyway" >&2

# Where the publishers listen and which encoded buses exist, from this
# producer's status file (the config may use other ports, or port 0).
status_file="${FRAMEBUS_SHM_DIR:-/dev/shm}/framebus-status.$producer.json"
browser="http://127.0.0.1:8080/"
rtsp_urls=""
webrtc_urls=""
hls_urls=""
recordings_url=""
if [ -r "$status_file" ]; then
  urls=$(python3 - "$status_file" <<'PY' 2>/dev/null
import json, sys
st = json.load(open(sys.argv[1]))
pubs = st["publishers"]
url = lambda kind: next((p.get("url") for p in pubs if p["kind"] == kind and p.get("url")), "")
web = url("mjpeg")
print(web)
rec = url("recorder")
if rec:
    print(f"recordings {rec}")
rtsp = url("rtsp").rstrip("/")
for p in pubs:
    bus = p.get("bus") or ""
    if p["kind"] == "encoder" and ".h264." in bus:
        cam, name = bus.split(".h264.", 1)
        if rtsp:
            print(f"rtsp {rtsp}/{cam}/{name}")
        if web:
            print(f"webrtc {web.rstrip('/')}/{cam}/{name}/")
            print(f"hls {web.rstrip('/')}/{cam}/index.m3u8")
PY
  )
  [ -n "$(echo "$urls" | head -n1)" ] && browser=$(echo "$urls" | head -n1)
  rtsp_urls=$(echo "$urls" | sed -n 's/^rtsp //p')
  webrtc_urls=$(echo "$urls" | sed -n 's/^webrtc //p')
  hls_urls=$(echo "$urls" | sed -n 's/^hls //p' | sort -u)
  recordings_url=$(echo "$urls" | sed -n 's/^recordings //p')
fi
[ -n "$rtsp_urls" ] || rtsp_urls="rtsp://127.0.0.1:8554/cam0/high"
[ -n "${webrtc_urls:-}" ] || webrtc_urls="${browser%/}/cam0/high/"
[ -n "${hls_urls:-}" ] || hls_urls="${browser%/}/cam0/index.m3u8"
[ -n "$recordings_url" ] || recordings_url="http://127.0.0.1:8090/"

cat <<TXT

framebus is running (producer pid $producer, config: $*)

  >>> open in a browser: $browser <<<

  WebRTC player (lowest latency), one page per encoder:
$(echo "$webrtc_urls" | sed 's/^/    /')

  RTSP (VLC, ffplay), one URL per encoder:
$(echo "$rtsp_urls" | sed 's/^/    /')

  HLS / LL-HLS (VLC, Safari, hls.js, a CDN), every profile of a camera:
$(echo "$hls_urls" | sed 's/^/    /')

  recordings (start, stop, play, download; API /api/v1/recordings):
    $recordings_url

  status  : $bin/framebus status
  Python  : .venv/bin/python -c 'import framebus; r = framebus.Reader("cam0", wait=True); f = r.next(); print(f.seq, f.array.shape)'

Ctrl-C stops everything.
TXT

wait "$producer"
code=$?
echo "run.sh: framebus-producer exited with code $code" >&2
exit "$code"

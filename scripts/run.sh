#!/usr/bin/env bash
# `make run`: start the whole service from one config file —
#   framebus-producer --config examples/framebus.toml
# (test patterns cam0 1920x1080@60 and cam1 1280x720@30; encoders high and
# low, framebus-rtsp, framebus-mjpeg and framebus-recorder as supervised
# children) — wait until `framebus status` says it is healthy, print the
# one URL to open (the console framebus-mjpeg serves, read from the status
# file) and an RTSP URL for VLC, and stop everything on Ctrl-C.
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
if [ -r "$status_file" ]; then
  urls=$(python3 - "$status_file" <<'PY' 2>/dev/null
import json, sys
st = json.load(open(sys.argv[1]))
pubs = st["publishers"]
url = lambda kind: next((p.get("url") for p in pubs if p["kind"] == kind and p.get("url")), "")
web = url("mjpeg")
print(web)
rtsp = url("rtsp").rstrip("/")
for p in pubs:
    bus = p.get("bus") or ""
    if p["kind"] == "encoder" and ".h264." in bus and rtsp:
        cam, name = bus.split(".h264.", 1)
        print(f"rtsp {rtsp}/{cam}/{name}")
PY
  )
  [ -n "$(echo "$urls" | head -n1)" ] && browser=$(echo "$urls" | head -n1)
  rtsp_urls=$(echo "$urls" | sed -n 's/^rtsp //p')
fi
[ -n "$rtsp_urls" ] || rtsp_urls="rtsp://127.0.0.1:8554/cam0/high"

vlc=$(echo "$rtsp_urls" | head -n1)
cat <<TXT

framebus is running (producer pid $producer, config: $*)

  >>> open in a browser: $browser <<<
      (the console: every camera live, WebRTC / LL-HLS / MJPEG players,
       health, recordings, and the RTSP URL of each stream)

  VLC     : vlc $vlc
  status  : $bin/framebus status
  Python  : .venv/bin/python -c 'import framebus; r = framebus.Reader("cam0", wait=True); f = r.next(); print(f.seq, f.array.shape)'

Ctrl-C stops everything.
TXT

wait "$producer"
code=$?
echo "run.sh: framebus-producer exited with code $code" >&2
exit "$code"

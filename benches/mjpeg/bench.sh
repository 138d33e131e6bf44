#!/usr/bin/env bash
# framebus-mjpeg benchmarks: encode time per profile, CPU with 1/10/50
# viewers of `medium`, glass-to-glass latency from the time code, and the
# same viewers served by a GStreamer `jpegenc ! multipartmux ! tcpserversink`
# pipeline fed the very same frames (from the bus, through buscat).
#
# Run with: benches/mjpeg/bench.sh            (from the repository root)
# Env: SECS (measure window, default 10), PORT (default 18080), PRODUCER
# (a framebus-producer binary; built here when unset).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SECS=${SECS:-10}
PORT=${PORT:-18080}
GPORT=$((PORT + 1))
BUS=benchmjpeg$$
BUS1080=benchmjpeg1080$$
HERE=$ROOT/benches/mjpeg

cargo build --release -q -p framebus-publishers --bin framebus-mjpeg
[ -n "${PRODUCER:-}" ] || cargo build --release -q -p framebus-producer
(cd "$HERE/buscat" && CARGO_TARGET_DIR=$TARGET/buscat cargo build --release -q)
BIN=$TARGET/release
PRODUCER=${PRODUCER:-$BIN/framebus-producer}
BUSCAT=$TARGET/buscat/release/framebus-buscat

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$PRODUCER" --bus "$BUS" --size 1280x720 --fps 30 2>/dev/null & PIDS+=($!)
"$PRODUCER" --bus "$BUS1080" --size 1920x1080 --fps 30 2>/dev/null & PIDS+=($!)
sleep 1
"$BIN/framebus-mjpeg" --listen 127.0.0.1:$PORT --bus "$BUS" --bus "$BUS1080" --no-discover --grace 3 --max-viewers 64 \
  >/dev/null 2>&1 & SERVER=$!; PIDS+=($SERVER)
sleep 1
URL=http://127.0.0.1:$PORT

cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
# CPU % of one core used by pid $1 over $SECS seconds: "total (user + system)".
# System time includes the loopback receive path (softirq) and the wake-up
# of the reading client, which the kernel runs in the writer's context.
cpu_pct() {
  local a b; a=$(cpu_ticks "$1"); sleep "$SECS"; b=$(cpu_ticks "$1")
  awk -v a="$a" -v b="$b" -v s="$SECS" -v hz="$(getconf CLK_TCK)" 'BEGIN{
    split(a, x, " "); split(b, y, " "); u=(y[1]-x[1])*100/hz/s; k=(y[2]-x[2])*100/hz/s
    printf "%.1f (%.1f + %.1f)", u+k, u, k}'
}
# Start a draining viewer on a raw socket; $1 host:port, $2 request path or "" for raw TCP.
viewer() {
  local host=${1%:*} port=${1#*:}
  ( exec 3<>"/dev/tcp/$host/$port"
    [ -n "$2" ] && printf 'GET %s HTTP/1.1\r\nHost: bench\r\n\r\n' "$2" >&3
    exec cat <&3 >/dev/null ) & VPIDS+=($!)
}
stop_viewers() { for p in "${VPIDS[@]}"; do kill "$p" 2>/dev/null || true; done; VPIDS=(); sleep 1; }

echo "## encode ms per frame (1920x1080 NV12 bus, p50 of 120 frames)"
for prof in medium low native; do
  curl -s -N --max-time 6 "$URL/$BUS1080/$prof.mjpg" >/dev/null || true
  curl -s "$URL/api/v1/streams" | python3 -c "
import json,sys
for s in json.load(sys.stdin)['streams']:
    if s['bus']=='$BUS1080' and s['profile']=='$prof':
        print(f\"| $prof | {s['width']}x{s['height']}@{s['fps']:g} | {s['encode_ms_p50']} ms |\")"
done

echo
echo "## medium (1280x720@30, q80) viewers: framebus-mjpeg vs GStreamer"
echo "| server | viewers | CPU % of a core (user + sys) | latency p50 / p90 / p99 ms |"
VPIDS=()
for n in 1 10 50; do
  for _ in $(seq 2 "$n"); do viewer 127.0.0.1:$PORT "/$BUS/medium.mjpg"; done
  python3 "$HERE/latency.py" "$URL/$BUS/medium.mjpg" 1280 720 $((SECS + 3)) > /tmp/lat.$$ & LP=$!
  sleep 2
  cpu=$(cpu_pct "$SERVER")
  wait $LP || true
  lat=$(python3 -c "import json;d=json.load(open('/tmp/lat.$$'));print(f\"{d['p50_ms']} / {d['p90_ms']} / {d['p99_ms']} ({d['frames']} frames)\")")
  echo "| framebus-mjpeg | $n | $cpu | $lat |"
  stop_viewers
done

"$BUSCAT" "$BUS" | gst-launch-1.0 -q fdsrc fd=0 ! rawvideoparse width=1280 height=720 format=nv12 framerate=30/1 \
  ! jpegenc quality=80 ! multipartmux ! tcpserversink host=127.0.0.1 port=$GPORT sync=false \
  >/dev/null 2>&1 & GST=$!; PIDS+=($GST)
sleep 2
for n in 1 10 50; do
  for _ in $(seq 2 "$n"); do viewer 127.0.0.1:$GPORT ""; done
  python3 "$HERE/latency.py" "tcp://127.0.0.1:$GPORT" 1280 720 $((SECS + 3)) --mpjpeg > /tmp/lat.$$ & LP=$!
  sleep 2
  cpu=$(cpu_pct "$GST")
  wait $LP || true
  lat=$(python3 -c "import json;d=json.load(open('/tmp/lat.$$'));print(f\"{d['p50_ms']} / {d['p90_ms']} / {d['p99_ms']} ({d['frames']} frames)\")")
  echo "| GStreamer jpegenc | $n | $cpu | $lat |"
  stop_viewers
done
rm -f /tmp/lat.$$

#!/usr/bin/env bash
# `make run`: start the producer (test pattern, 1920x1080 at 60 fps, NV12,
# bus cam0) and every publisher binary that is built, print where to look,
# and stop everything on Ctrl-C. Extra arguments go to framebus-producer,
# e.g. `scripts/run.sh --source v4l2:/dev/video0`.
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release"
if [ ! -x "$bin/framebus-producer" ]; then
  echo "run.sh: $bin/framebus-producer is not built (run: make build)" >&2
  exit 1
fi

pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

"$bin/framebus-producer" "$@" &
producer=$!
pids+=("$producer")
# A producer that cannot start (bus taken: exit 5, no device: exit 6...)
# says why on stderr; stop here with its code.
sleep 1
if ! kill -0 "$producer" 2>/dev/null; then
  wait "$producer"; code=$?
  echo "run.sh: framebus-producer exited with code $code" >&2
  exit "$code"
fi

started=()
for pub in framebus-mjpeg framebus-rtsp; do
  if [ -x "$bin/$pub" ]; then
    "$bin/$pub" &
    pids+=("$!")
    started+=("$pub")
  fi
done
sleep 0.5

cat <<TXT

framebus is running: producer pid $producer (test pattern 1920x1080@60 NV12 on bus cam0)${started[*]:+, ${started[*]}}
  browser : http://127.0.0.1:8080/
  VLC     : rtsp://127.0.0.1:8554/cam0/high
  bus     : framebus ls      (or: ${CARGO_TARGET_DIR:-target}/release/framebus stat cam0)
  Python  : python3 -c 'import framebus; r = framebus.Reader("cam0", wait=True); f = r.next(); print(f.seq, f.array.shape)'

Ctrl-C stops everything.
TXT

# Run until Ctrl-C, or until the producer exits by itself.
wait "$producer"
code=$?
echo "run.sh: framebus-producer exited with code $code" >&2
exit "$code"

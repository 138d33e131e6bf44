#!/usr/bin/env bash
# Soak test (issue 9): the full service (`framebus-producer --config`, with
# framebus-mjpeg and framebus-rtsp supervised, ports from the OS) runs for
# SOAK_SECONDS with viewers joining and leaving every second (curl on MJPEG,
# ffmpeg on RTSP) and a Python reader holding random frames. Every
# SAMPLE_SECONDS it records RSS, open fds and threads of every process in a
# CSV; it fails when, between the sample after the warm-up and the last
# one (both taken with no viewer attached), a process's RSS grew more than
# RSS_LIMIT_KB or its fd count grew at all, or a process died/restarted.
#
#   scripts/soak.sh                      # 1 hour (make soak)
#   SOAK_SECONDS=180 SAMPLE_SECONDS=10 scripts/soak.sh   # the short form
#
# Env: SOAK_SECONDS (3600), SAMPLE_SECONDS (60), WARMUP_SECONDS (60, at most
# a third of the run), RSS_LIMIT_KB (2048), SOAK_SIZE (640x480), SOAK_FPS
# (30), SOAK_OUT (target/soak), BIN_DIR (${CARGO_TARGET_DIR:-target}/release),
# PYTHON (.venv/bin/python; the Python reader is skipped without it).
set -euo pipefail

cd "$(dirname "$0")/.."
SOAK_SECONDS=${SOAK_SECONDS:-3600}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-60}
WARMUP_SECONDS=${WARMUP_SECONDS:-60}
(( WARMUP_SECONDS > SOAK_SECONDS / 3 )) && WARMUP_SECONDS=$(( SOAK_SECONDS / 3 ))
RSS_LIMIT_KB=${RSS_LIMIT_KB:-2048}
SOAK_SIZE=${SOAK_SIZE:-640x480}
SOAK_FPS=${SOAK_FPS:-30}
SOAK_OUT=${SOAK_OUT:-target/soak}
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
PYTHON=${PYTHON:-.venv/bin/python}

for b in framebus-producer framebus-mjpeg framebus-rtsp framebus-encoder; do
  [[ -x $BIN_DIR/$b ]] || { echo "soak: $BIN_DIR/$b is not built (make build)"; exit 2; }
done
command -v curl >/dev/null && command -v ffmpeg >/dev/null || { echo "soak: needs curl and ffmpeg"; exit 2; }

mkdir -p "$SOAK_OUT"
SHM=$(mktemp -d /dev/shm/framebus-soak.XXXXXX)
CSV=$SOAK_OUT/soak.csv
LOG=$SOAK_OUT/service.log
BUS=soak$$
pids_to_kill=()
cleanup() {
  for p in "${pids_to_kill[@]}"; do kill "$p" 2>/dev/null || true; done
  # Children of the loops (curl/ffmpeg) die with their --max-time / -t.
  [[ -n ${SUP:-} ]] && { kill -TERM "$SUP" 2>/dev/null || true; wait "$SUP" 2>/dev/null || true; }
  rm -rf "$SHM"
}
trap cleanup EXIT

cat >"$SHM/framebus.toml" <<EOF
[[camera]]
bus = "$BUS"
size = "$SOAK_SIZE"
fps = $SOAK_FPS

[publishers.mjpeg]
listen = "127.0.0.1:0"
grace = 1
[[publishers.mjpeg.profile]]
name = "low"
size = "320x240"
fps = 15

# RTSP serves the encoded bus of this encoder: rtsp://…/$BUS/native
# (camera size, 15 fps).
[[encoder]]
name = "native"
fps = 15
bitrate = "300k"
grace = 1

[publishers.rtsp]
listen = "127.0.0.1:0"

[supervision]
backoff_initial = 1
EOF

FRAMEBUS_SHM_DIR=$SHM RUST_LOG=warn "$BIN_DIR/framebus-producer" --config "$SHM/framebus.toml" >"$LOG" 2>&1 &
SUP=$!
STATUS=$SHM/framebus-status.$SUP.json

# Wait for both publishers' addresses in the status file.
pub() { # kind field
  python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for p in d["publishers"]:
    if p["kind"]==sys.argv[2] and p["state"]=="running": print(p[sys.argv[3]]); break' "$STATUS" "$1" "$2" 2>/dev/null || true
}
for _ in $(seq 300); do
  MJPEG=$(pub mjpeg address); RTSP=$(pub rtsp address)
  [[ -n $MJPEG && -n $RTSP ]] && break
  sleep 0.2
done
[[ -n ${MJPEG:-} && -n ${RTSP:-} ]] || { echo "soak: the service did not come up"; cat "$LOG"; exit 1; }
MJPEG_PID=$(pub mjpeg pid); RTSP_PID=$(pub rtsp pid)
echo "soak: $SOAK_SECONDS s, bus $BUS $SOAK_SIZE@$SOAK_FPS, http://$MJPEG/ rtsp://$RTSP/, producer $SUP mjpeg $MJPEG_PID rtsp $RTSP_PID"

PY_PID=""
if [[ -x $PYTHON ]] && "$PYTHON" -c 'import framebus' 2>/dev/null; then
  FRAMEBUS_SHM_DIR=$SHM "$PYTHON" - "$BUS" "$SHM" "$SOAK_SECONDS" <<'PYEOF' &
import random, sys, time, framebus
bus, shm, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
r = framebus.Reader(bus, wait=30.0, shm_dir=shm)
held = []
end = time.monotonic() + seconds + 60
while time.monotonic() < end:
    try:
        f = r.next(timeout=1.0)
    except (framebus.Timeout, framebus.ProducerGone):
        continue
    # Hold up to two frames for a random while; release at random.
    if len(held) < 2 and random.random() < 0.1:
        held.append((f, time.monotonic() + random.random() * 0.5))
    else:
        f.release()
    now = time.monotonic()
    for h in [h for h in held if h[1] <= now]:
        h[0].release()
        held.remove(h)
PYEOF
  PY_PID=$!
  pids_to_kill+=("$PY_PID")
else
  echo "soak: no $PYTHON with the framebus wheel: Python reader skipped (make wheel)"
fi

# Viewers join and leave every second.
churn() {
  local i=0
  while [[ -e $SHM/churn ]]; do
    curl -s -N --max-time $(( 1 + RANDOM % 4 )) "http://$MJPEG/$BUS/low.mjpg" -o /dev/null &
    if (( i % 2 == 0 )); then
      ffmpeg -nostdin -loglevel quiet -rtsp_transport tcp -i "rtsp://$RTSP/$BUS/native" \
        -t $(( 1 + RANDOM % 3 )) -f null - >/dev/null 2>&1 &
    fi
    i=$(( i + 1 ))
    sleep 1
  done
  wait
}

sample() { # label -> appends one line per process to the CSV
  local t=$1 name pid
  for name in producer mjpeg rtsp python; do
    case $name in
      producer) pid=$SUP ;; mjpeg) pid=$MJPEG_PID ;; rtsp) pid=$RTSP_PID ;; python) pid=$PY_PID ;;
    esac
    [[ -n $pid ]] || continue
    if [[ -d /proc/$pid ]]; then
      echo "$t,$name,$pid,$(awk '/^VmRSS/{print $2}' /proc/$pid/status),$(ls /proc/$pid/fd | wc -l),$(awk '/^Threads/{print $2}' /proc/$pid/status)" >>"$CSV"
    else
      echo "$t,$name,$pid,dead,dead,dead" >>"$CSV"
    fi
  done
}

quiet_sample() { # stop churn, let grace times pass, sample, restart churn
  rm -f "$SHM/churn"; wait "${CHURN:-0}" 2>/dev/null || true
  sleep 6
  sample "$1"
  touch "$SHM/churn"; churn & CHURN=$!
}

echo "elapsed_s,process,pid,rss_kb,fds,threads" >"$CSV"
touch "$SHM/churn"; churn & CHURN=$!
START=$SECONDS
sleep "$WARMUP_SECONDS"
quiet_sample baseline
next=$(( SECONDS + SAMPLE_SECONDS ))
while (( SECONDS - START < SOAK_SECONDS )); do
  sleep 1
  if (( SECONDS >= next )); then
    sample $(( SECONDS - START ))
    next=$(( SECONDS + SAMPLE_SECONDS ))
  fi
  kill -0 "$SUP" 2>/dev/null || { echo "soak: the producer died"; cat "$LOG"; exit 1; }
done
rm -f "$SHM/churn"; wait "$CHURN" 2>/dev/null || true
sleep 6
sample final

# Compare the quiet samples.
python3 - "$CSV" "$RSS_LIMIT_KB" "$MJPEG_PID" "$RTSP_PID" "$STATUS" <<'PYEOF'
import csv, json, sys
path, limit = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(path)))
base = {r["process"]: r for r in rows if r["elapsed_s"] == "baseline"}
final = {r["process"]: r for r in rows if r["elapsed_s"] == "final"}
bad = []
print(f"{'process':8} {'rss_kb':>16} {'fds':>9} {'threads':>9}")
for name, b in base.items():
    f = final.get(name)
    if f is None or f["rss_kb"] == "dead":
        bad.append(f"{name} died"); continue
    drss = int(f["rss_kb"]) - int(b["rss_kb"])
    dfd = int(f["fds"]) - int(b["fds"])
    print(f"{name:8} {b['rss_kb']:>7}->{f['rss_kb']:>7} {b['fds']:>4}->{f['fds']:>4} {b['threads']:>4}->{f['threads']:>4}  (RSS {drss:+} KiB, fds {dfd:+})")
    if drss > limit: bad.append(f"{name}: RSS grew {drss} KiB (> {limit})")
    if dfd > 0: bad.append(f"{name}: fds grew by {dfd}")
try:
    st = json.load(open(sys.argv[5]))
    for p in st["publishers"]:
        if p["restarts"]:
            bad.append(f"{p['kind']} restarted {p['restarts']} times: {p['last_reason']}")
except OSError as e:
    bad.append(f"status file: {e}")
if bad:
    print("soak: FAIL: " + "; ".join(bad)); sys.exit(1)
print("soak: OK")
PYEOF

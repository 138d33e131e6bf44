#!/usr/bin/env bash
# CPU cost, achieved rate and frame-interval jitter of framebus-producer.
#
#   producer/bench/cpu.sh [seconds] [producer args...]
#   producer/bench/cpu.sh 60                                   # testsrc 1080p60 nv12
#   producer/bench/cpu.sh 30 --format yuyv
#   PRODUCER_ENV="LD_PRELOAD=... FAKECAM_DEVICES=/dev/video90=yuyv" \
#     producer/bench/cpu.sh 60 --source v4l2:/dev/video90 --format yuyv
#
# PRODUCER_ENV (space-separated NAME=VALUE) is applied to the producer only
# (the fake camera's LD_PRELOAD must not reach cargo or the reader).
#
# Builds the release producer and the `frame_intervals` reader example,
# starts the producer on a private bus, measures its CPU time from
# /proc/<pid>/stat (utime+stime) over the run while one reader reads every
# frame, and prints CPU % of one core, achieved fps and interval p50/p99.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-20}"; shift || true
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p framebus-producer --bin framebus-producer --example frame_intervals
bin="$target/release/framebus-producer"
reader="$target/release/examples/frame_intervals"
export FRAMEBUS_SHM_DIR="$(mktemp -d /dev/shm/framebus-bench.XXXXXX)"
bus="bench-$$"
# shellcheck disable=SC2086
env ${PRODUCER_ENV:-} "$bin" --bus "$bus" --size 1920x1080 --fps 60 "$@" 2>"$FRAMEBUS_SHM_DIR/producer.log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$FRAMEBUS_SHM_DIR"; }
trap cleanup EXIT
for _ in $(seq 100); do [ -e "$FRAMEBUS_SHM_DIR/framebus.$bus" ] && break; sleep 0.05; done
sleep 1   # past start-up (background render, first touch of each slot)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks); s0=$(date +%s.%N)
"$reader" "$bus" "$secs"
t1=$(ticks); s1=$(date +%s.%N)
awk -v t="$((t1 - t0))" -v hz="$hz" -v a="$s0" -v b="$s1" \
  'BEGIN { printf "producer_cpu=%.2f%% of one core over %.1f s (%s)\n", 100 * t / hz / (b - a), b - a, "utime+stime" }'
echo "args: --size 1920x1080 --fps 60 $*"

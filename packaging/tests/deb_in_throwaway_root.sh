#!/bin/bash
# Installs a framebus .deb into a throwaway root and runs it there, the way
# docs/packages.md says an operator does (apt-get install ./framebus_….deb),
# without touching this machine: run by test_packages.py inside
#   unshare --mount --net --pid --fork --propagation private
# so the root is an overlay of / on a tmpfs in a private mount namespace
# (every change is gone when the namespace ends), with its own /dev/shm,
# /tmp and /run, and its own network namespace (only lo): the packaged
# config's fixed ports (8080, 8554, 8090) collide with nothing.
#
# Prints "== STEP" lines and what each found; exits non-zero at the first
# failure.
set -euo pipefail

DEB=${1:?usage: deb_in_throwaway_root.sh PACKAGE.deb}
T=$(mktemp -d)
mount -t tmpfs -o size=2g tmpfs "$T"
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root"
R=$T/root
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o size=256m,mode=1777 tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
mount -t tmpfs tmpfs "$R/run"
ip link set lo up
cp "$DEB" "$R/tmp/"
in_root() { chroot "$R" "$@"; }

echo "== install"
if in_root dpkg -s framebus >/dev/null 2>&1; then
    echo "framebus is installed on this machine already: removing it in the throwaway root"
    in_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q framebus
fi
# The network namespace has no network: every dependency must already be
# installed here (the build's own packages); the package's Depends are
# what apt resolves.
in_root sh -c "cd /tmp && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./$(basename "$DEB")"
in_root dpkg-query -W -f='status ${Status} version ${Version}\n' framebus

echo "== user"
in_root getent passwd framebus
in_root id framebus

echo "== files"
for f in /usr/bin/framebus /usr/bin/framebus-producer /usr/bin/framebus-mjpeg \
         /usr/bin/framebus-rtsp /usr/bin/framebus-encoder /usr/bin/framebus-recorder \
         /lib/systemd/system/framebus.service /etc/framebus/framebus.toml; do
    [ -e "$R$f" ] || { echo "missing $f"; exit 1; }
    echo "has $f"
done

echo "== verify"
in_root systemd-analyze verify /lib/systemd/system/framebus.service
echo "verify ok"

echo "== serve"
# As systemd would start it: User=framebus, SupplementaryGroups, the
# StateDirectory it creates.
install -d -m 0755 "$R/var/lib/framebus"
in_root chown framebus:framebus /var/lib/framebus
in_root setpriv --reuid=framebus --regid=framebus --init-groups \
    env HOME=/nonexistent STATE_DIRECTORY=/var/lib/framebus RUST_LOG=info \
    /usr/bin/framebus-producer --config /etc/framebus/framebus.toml \
    >"$T/producer.log" 2>&1 &
PRODUCER=$!
stop() {
    kill -TERM "$PRODUCER" 2>/dev/null || true
    wait "$PRODUCER" 2>/dev/null || true
}
trap 'stop; echo "--- producer log"; tail -n 40 "$T/producer.log"' EXIT
up=""
for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null http://127.0.0.1:8080/healthz 2>/dev/null; then up=1; break; fi
    kill -0 "$PRODUCER" 2>/dev/null || { echo "the producer exited"; exit 1; }
    sleep 0.5
done
[ -n "$up" ] || { echo "no /healthz on 127.0.0.1:8080 within 60 s"; exit 1; }
echo "healthz $(curl -sS http://127.0.0.1:8080/healthz | head -c 200)"
in_root ls -l /dev/shm | grep 'framebus\.cam0$'
in_root ffprobe -v error -rtsp_transport tcp -show_entries stream=codec_name,width,height \
    -of csv=p=0 rtsp://127.0.0.1:8554/cam0/low
curl -fsS -o "$T/snap.jpg" "http://127.0.0.1:8080/cam0/snapshot.jpg"
echo "snapshot $(stat -c %s "$T/snap.jpg") bytes"
echo "== done"

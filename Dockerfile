# framebus in containers (docs/containers.md). Two images from one file:
#
#   docker build -t framebus .                     # the service (default target)
#   docker build -t framebus-vision --target vision .   # a Python vision client
#
# or both with `docker compose up` (compose.yaml). The service captures and
# serves; the vision client reads its buses through the shared /dev/shm
# (`ipc: service:framebus`), with no copy.

# ---- build: the binaries and the Python wheel, in Debian 12 with Rust
FROM rust:1-bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        pkg-config libclang-dev clang cmake nasm python3-venv \
        libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
        libavfilter-dev libavdevice-dev libasound2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p framebus -p framebus-producer -p framebus-publishers --bins \
    && python3 -m venv /opt/maturin && /opt/maturin/bin/pip install -q "maturin>=1.8,<2" \
    && /opt/maturin/bin/maturin build --release --locked -m framebus-py/Cargo.toml -o /wheels

# ---- the Python vision client: the wheel, OpenCV, the examples
FROM python:3.11-slim-bookworm AS vision
COPY --from=build /wheels/ /tmp/wheels/
RUN pip install --no-cache-dir /tmp/wheels/framebus-*.whl opencv-python-headless && rm -rf /tmp/wheels
COPY examples/python/ /opt/framebus/examples/
# Reads cam0 from the service's /dev/shm and prints what each frame costs.
CMD ["python", "/opt/framebus/examples/opencv_view.py", "cam0", "--frames", "1000000"]

# ---- the service: producer, publishers, encoders, recorder
FROM debian:bookworm-slim AS service
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libavcodec59 libavformat59 libavdevice59 libavutil57 libswscale6 libswresample4 \
        libasound2 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/framebus /src/target/release/framebus-producer \
     /src/target/release/framebus-mjpeg /src/target/release/framebus-rtsp \
     /src/target/release/framebus-encoder /src/target/release/framebus-recorder /usr/bin/
COPY examples/containers/framebus.toml /etc/framebus/framebus.toml
ENV STATE_DIRECTORY=/var/lib/framebus
VOLUME /var/lib/framebus
# The console, MJPEG, WebRTC signalling and LL-HLS; RTSP; WebRTC media.
EXPOSE 8080 8554 8189/udp
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["framebus-producer"]
CMD ["--config", "/etc/framebus/framebus.toml"]

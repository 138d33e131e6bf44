# framebus — one entry point for every task.
#   make run    install what is missing, build, start the service, print URLs
#   make test   install what is missing, run every test (Rust, Python, end-to-end)
# Both are idempotent and work on a fresh Debian 12 with only Rust and Python.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the build and the tests need (bindgen needs libclang;
# turbojpeg builds libjpeg-turbo 3 with cmake+nasm; ffmpeg-next links FFmpeg;
# the end-to-end tests drive real peers: ffmpeg/ffprobe, GStreamer, Chromium;
# coturn and iproute2 for the WebRTC network tests: TURN relay, namespaces;
# nginx for the HLS tests behind a caching reverse proxy; ALSA for the
# producer's microphones, and PulseAudio with the ALSA pulse plugin as the
# tests' microphone: docs/audio.md; lintian checks the .deb of `make dist`:
# docs/packages.md; Janus, the SFU the fan-out tests feed: docs/scale-out.md).
APT_PKGS := pkg-config libclang-dev clang cmake nasm \
	libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
	libavfilter-dev libavdevice-dev \
	ffmpeg curl psmisc procps \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
	libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
	chromium coturn iproute2 nginx janus \
	libasound2-dev libasound2-plugins pulseaudio pulseaudio-utils \
	lintian
STAMPS := .make-stamps
VENV := .venv
PY := $(VENV)/bin/python
CARGO_FLAGS := --release --locked
export CARGO_TERM_COLOR := never

.PHONY: help deps venv node-deps build run install dist dist-files test-dist test test-build test-rust test-loom test-py wheel bench bench-e2e bench-rtsp bench-encoder bench-webrtc bench-hls bench-recorder bench-console bench-gst bench-audio bench-audio-viewers bench-janus bench-apt fuzz test-fuzz-short test-faults test-soak-short soak fmt lint clean

help:
	@echo "make run     build and start producer + publishers (test pattern 1080p60)"
	@echo "make test    every test: Rust, loom, Python, end-to-end with real clients"
	@echo "make bench   benchmarks (numbers go to docs/benchmarks.md)"
	@echo "make bench-rtsp / bench-encoder / bench-e2e / bench-webrtc / bench-hls / bench-recorder / bench-console / bench-gst / bench-audio / bench-audio-viewers   one benchmark (RTSP_ARGS, ENCODER_ARGS, E2E_ARGS, WEBRTC_ARGS, HLS_ARGS, RECORDER_ARGS=--quick)"
	@echo "make lint    rustfmt --check and clippy -D warnings"
	@echo "make fuzz    every fuzz target for FUZZ_SECONDS (default 60)"
	@echo "make soak    1,000 reader kills, 20 producer kills, SOAK_SECONDS of service (default 3600)"
	@echo "make install binaries, systemd unit, /etc/framebus/framebus.toml (DESTDIR, PREFIX)"
	@echo "make dist    the wheel, the sdist and the Debian package into dist/ (docs/packages.md)"

$(STAMPS):
	@mkdir -p $@

# Debian packages: only the missing ones, one apt-get run.
deps: | $(STAMPS)
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "==> apt-get install$$missing"; \
	  $(SUDO) apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

# The Python venv with the test tools (maturin comes by build isolation too).
venv: $(STAMPS)/venv
$(STAMPS)/venv: framebus-py/requirements-dev.txt | $(STAMPS)
	@if ! python3 -m venv --help >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q python3-venv; fi
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r framebus-py/requirements-dev.txt
	@touch $@

# The headless-browser drivers of the WebRTC and HLS tests
# (publishers/tests/browser): playwright-core, which drives Debian's
# chromium, and hls.js, which the HLS driver serves to its page; both
# pinned by the lock.
BROWSER_DIR := publishers/tests/browser
node-deps: $(STAMPS)/npm
$(STAMPS)/npm: $(BROWSER_DIR)/package-lock.json | $(STAMPS)
	@if ! command -v npm >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q nodejs npm; fi
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund
	@touch $@

# The binaries and the GStreamer plugin (target/release/libgstframebus.so,
# docs/gstreamer.md); the Python extension is built by `make wheel`.
build: deps
	cargo build $(CARGO_FLAGS) --workspace --exclude framebus-py --lib --bins

run: build wheel node-deps
	@scripts/run.sh --config examples/framebus.toml

# Install the service (docs/service.md): binaries to $(PREFIX)/bin, the
# systemd unit, and the default config to /etc/framebus/ (an existing
# config is kept). DESTDIR stages the whole tree (packaging).
PREFIX ?= /usr/local
DESTDIR ?=
SYSTEMD_DIR ?= /etc/systemd/system
CONFIG_DIR ?= /etc/framebus
BINS := framebus-producer framebus-mjpeg framebus-rtsp framebus-encoder framebus-recorder framebus
# Build first as yourself (`make build`), then `sudo make install`.
install:
	@for b in $(BINS); do [ -x $${CARGO_TARGET_DIR:-target}/release/$$b ] || \
	  { echo "$${CARGO_TARGET_DIR:-target}/release/$$b is not built: run 'make build' first"; exit 1; }; done
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSTEMD_DIR) $(DESTDIR)$(CONFIG_DIR)
	install -m 0755 $(addprefix $${CARGO_TARGET_DIR:-target}/release/,$(BINS)) $(DESTDIR)$(PREFIX)/bin/
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|g; s|/etc/framebus/|$(CONFIG_DIR)/|g' packaging/framebus.service \
	  > $(DESTDIR)$(SYSTEMD_DIR)/framebus.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_DIR)/framebus.service
	@if [ -e $(DESTDIR)$(CONFIG_DIR)/framebus.toml ]; then \
	  echo "keeping the existing $(DESTDIR)$(CONFIG_DIR)/framebus.toml"; \
	else \
	  install -m 0644 examples/framebus.toml $(DESTDIR)$(CONFIG_DIR)/framebus.toml; \
	fi
	@echo "installed; next (see docs/service.md):"
	@echo "  sudo useradd --system --no-create-home --shell /usr/sbin/nologin --groups video framebus"
	@echo "  sudo systemctl daemon-reload && sudo systemctl enable --now framebus"

# Everything, in one go. Lint first (rustfmt --check, clippy -D warnings,
# which includes clippy::undocumented_unsafe_blocks). The wheel comes first so the fault tests also
# drive a Python reader; the short fuzz run replays the committed corpora of
# the light targets (the publishers' targets need a sanitizer build of the
# whole crate, 8 minutes on 2 cores: `make fuzz`; the whep_offer corpus is
# also replayed by a unit test of publishers/src/webrtc/whep.rs); the short
# soak samples every 10 s for 60 s.
test: deps venv node-deps
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory wheel
	@$(MAKE) --no-print-directory test-rust
	@$(MAKE) --no-print-directory test-loom
	@$(MAKE) --no-print-directory test-py
	@$(MAKE) --no-print-directory test-dist
	@$(MAKE) --no-print-directory test-fuzz-short \
	  FUZZ_SHORT_TARGETS="framebus/fuzz:header framebus/fuzz:timecode producer/fuzz:config"
	@$(MAKE) --no-print-directory test-soak-short

# 60 s with a 20 s warm-up (was 90 s, 30 s): the quiet baseline at ~30 s,
# two samples under churn, the quiet final one at ~70 s (the CSV keeps the
# trend); between the two quiet ones ~30 MJPEG and ~15 RTSP viewers come
# and go, so a leak of one fd per viewer still fails it, and so does
# ~70 KiB of RSS per MJPEG viewer (2 MiB). The RTSP server's one-off
# +1.7 MiB after the first quiet sample (docs/reliability.md) did not
# depend on the warm-up (30 s or 60 s); this run: +80 KiB.
test-soak-short: test-build wheel
	SOAK_SECONDS=60 SAMPLE_SECONDS=10 WARMUP_SECONDS=20 scripts/soak.sh

# Every binary, the GStreamer plugin (--lib) and every test, built as
# `cargo test` builds them: with --tests, Cargo unifies the test-support
# crate's dependency features into the binaries too, so `cargo test` then
# finds every unit built. (A plain `--bins` first compiled the publishers'
# library, str0m, axum and every binary a second time with other features:
# minutes on 2 cores.)
test-build: deps
	cargo build $(CARGO_FLAGS) --workspace --lib --bins --tests

test-rust: test-build
	cargo test $(CARGO_FLAGS) --workspace --no-fail-fast

# Model-check the slot hand-off and dead-reader reclamation with loom.
test-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
	  cargo test --release --locked -p framebus --lib loom

wheel: venv
	@# maturin from the venv, in its own target dir (no lock fights with the
	@# Rust build); the abi3 wheel is then installed into the venv.
	rm -rf $(STAMPS)/wheels
	CARGO_TARGET_DIR=$(CURDIR)/target/py $(VENV)/bin/maturin build --release --locked \
	  -m framebus-py/Cargo.toml -i $(PY) -o $(STAMPS)/wheels
	$(PY) -m pip install -q --force-reinstall --no-deps $(STAMPS)/wheels/framebus-*.whl

# The packages (docs/packages.md): into dist/, the abi3 wheel (maturin
# picks the manylinux tag from what the extension links; test-dist checks
# it with auditwheel) and the sdist, and the Debian package
# (packaging/deb/build.sh: dpkg-shlibdeps, dpkg-deb).
dist: build venv
	@$(MAKE) --no-print-directory dist-files

dist-files:
	rm -rf dist
	CARGO_TARGET_DIR=$(CURDIR)/target/py $(VENV)/bin/maturin build --release --locked \
	  -m framebus-py/Cargo.toml -i $(PY) -o dist
	$(VENV)/bin/maturin sdist -m framebus-py/Cargo.toml -o dist
	BINS="$(BINS)" packaging/deb/build.sh $${CARGO_TARGET_DIR:-target}/release dist
	@ls -l dist

# The packages, each on a clean slate (packaging/tests/test_packages.py):
# built from the binaries `make test` built (no second build).
test-dist: test-build venv
	@$(MAKE) --no-print-directory dist-files
	rc=0; $(PY) -m pytest -q -ra packaging/tests || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

test-py: wheel
	@# The stubs must match the extension module.
	cd framebus-py && ../$(PY) -m mypy.stubtest framebus._framebus
	$(PY) -m mypy --ignore-missing-imports framebus-py/python/framebus examples/python benches/python
	@# pytest exits 5 when it collects no test: that must fail loudly here,
	@# never pass silently, so only 0 counts as success.
	rc=0; (cd framebus-py && ../$(PY) -m pytest -q -ra tests) || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

bench: build wheel
	cargo bench -p framebus-benches --locked --bench core
	cargo run --release --locked -p framebus-benches --bin handoff
	$(PY) benches/python/handoff.py
	@$(MAKE) --no-print-directory bench-encoder
	@$(MAKE) --no-print-directory bench-rtsp
	@$(MAKE) --no-print-directory bench-e2e
	@$(MAKE) --no-print-directory bench-webrtc
	@$(MAKE) --no-print-directory bench-hls
	@$(MAKE) --no-print-directory bench-recorder
	@$(MAKE) --no-print-directory bench-console
	@$(MAKE) --no-print-directory bench-gst
	@$(MAKE) --no-print-directory bench-audio
	@$(MAKE) --no-print-directory bench-audio-viewers
	@$(MAKE) --no-print-directory bench-janus

# End-to-end comparison (docs/benchmarks.md "End-to-end scenario"): framebus
# against one GStreamer pipeline, one ffmpeg and Python shared_memory, same
# content and settings; writes docs/benchmarks.md and docs/img/e2e-*.png.
# E2E_ARGS=--quick for a ~5 min smoke run (the full run takes ~15 min).
E2E_ARGS ?=
E2E_APT := python3-gi gir1.2-gst-rtsp-server-1.0
bench-apt:
	@missing=""; for p in $(E2E_APT); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; fi

bench-e2e: build wheel bench-apt
	CARGO_TARGET_DIR=$(CURDIR)/target/buscat cargo build $(CARGO_FLAGS) --manifest-path benches/mjpeg/buscat/Cargo.toml
	timeout 3600 $(PY) benches/e2e/run.py --bin-dir $${CARGO_TARGET_DIR:-target}/release \
	  --buscat $(CURDIR)/target/buscat/release/framebus-buscat $(E2E_ARGS)

# Encoded bus (issue 13; docs/benchmarks.md "Encoded bus"): framebus-encoder
# + framebus-rtsp against gst-rtsp-server on the same frames (latency with
# GStreamer and ffmpeg clients, CPU at 1 and 20 viewers with 4 Python packet
# readers), and the encoder's idle CPU and attach-to-keyframe time.
# RTSP_ARGS / ENCODER_ARGS=--quick for a harness check (~2 min / ~1 min).
RTSP_ARGS ?=
ENCODER_ARGS ?=
bench-rtsp: build wheel bench-apt
	@uptime
	timeout 1800 /usr/bin/python3 benches/rtsp/bench.py --target-dir $${CARGO_TARGET_DIR:-target}/release \
	  --venv $(CURDIR)/$(VENV) $(RTSP_ARGS)

bench-encoder: build wheel
	@uptime
	timeout 900 $(PY) benches/encoder/bench.py --target-dir $${CARGO_TARGET_DIR:-target}/release $(ENCODER_ARGS)

# WebRTC (WHEP) in headless Chromium against RTSP + the GStreamer client on
# the same encoded bus: glass-to-glass at 1080p30 / 720p30 (time code and
# abs-capture-time), drift over WEBRTC_ARGS' --drift-minutes (10), server
# CPU at 1 / 10 / 20 viewers. Report in benches/webrtc/results/.
# WEBRTC_ARGS=--quick for a harness check (~5 min).
WEBRTC_ARGS ?=
bench-webrtc: build node-deps
	@uptime
	timeout 2400 /usr/bin/python3 benches/webrtc/bench.py --target-dir $${CARGO_TARGET_DIR:-target}/release $(WEBRTC_ARGS)

# HLS / LL-HLS (issue 15; docs/benchmarks.md "HLS (issue 15)"): hls.js
# latency of framebus's LL-HLS against ffmpeg's plain HLS of the same
# encoded bus (through framebus-rtsp, served by nginx) at 720p30 / 1080p30;
# framebus-mjpeg's CPU and requests/s with 1 / 20 / 100 LL-HLS players
# (benches/hls/players.mjs), direct and through the nginx cache of
# examples/nginx/framebus-hls.conf, with its hit ratio; 20 hls.js players
# through nginx. Report in benches/hls/results/.
# HLS_ARGS=--quick for a harness check (< 2 min; the full run ~10 min).
HLS_ARGS ?=
bench-hls: build node-deps
	@uptime
	timeout 1200 /usr/bin/python3 benches/hls/bench.py --target-dir $${CARGO_TARGET_DIR:-target}/release $(HLS_ARGS)

# Recorder (issue 16; docs/benchmarks.md "Recorder (issue 16)"):
# framebus-recorder's CPU buffering 30 s of a 1080p30 stream and recording
# it 1 / 4 times, against ffmpeg -c copy recording the same encoded bus over
# RTSP (framebus-rtsp); its memory for 30 s of pre-roll; the pre-roll's
# accuracy by the time code (20 clips, preroll 5 s). Report in
# benches/recorder/results/.
# RECORDER_ARGS=--quick for a harness check (~2 min; the full run ~6 min).
RECORDER_ARGS ?=
bench-recorder: build
	@uptime
	timeout 900 /usr/bin/python3 benches/recorder/bench.py --target-dir $${CARGO_TARGET_DIR:-target}/release $(RECORDER_ARGS)

# Coverage-guided fuzzing (cargo-fuzz), every target FUZZ_SECONDS each;
# new inputs go into the committed corpus (docs/reliability.md).
# cargo-fuzz passes -Z flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
FUZZ_SECONDS ?= 60
# One target dir for every fuzz crate: libFuzzer and the framebus core,
# built with the sanitizer flags, are compiled once, not once per crate.
FUZZ_TARGET_DIR := $(CURDIR)/target/fuzz
FUZZ_SHORT_SECONDS ?= 4
FUZZ_TARGETS := framebus/fuzz:header framebus/fuzz:timecode \
	publishers/fuzz:rtsp_request publishers/fuzz:roundtrip_h264 \
	publishers/fuzz:depacketize publishers/fuzz:http_request \
	publishers/fuzz:whep_offer producer/fuzz:config
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do dir=$${t%%:*}; name=$${t##*:}; \
	  echo "==> fuzz $$dir $$name for $(FUZZ_SECONDS) s"; \
	  (cd $$dir && RUSTC_BOOTSTRAP=1 cargo fuzz run --target-dir $(FUZZ_TARGET_DIR) \
	    $$name corpus/$$name -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1) || exit 1; \
	done

# Short form for `make test`: replay each committed corpus and fuzz a few
# seconds more; new inputs go to a scratch directory, not the corpus.
# FUZZ_SHORT_TARGETS picks a subset (the publishers' targets cost a second
# sanitizer build of FFmpeg bindings and libjpeg-turbo).
FUZZ_SHORT_TARGETS ?= $(FUZZ_TARGETS)
test-fuzz-short:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@scratch=$$(mktemp -d); trap 'rm -rf $$scratch' EXIT; \
	for t in $(FUZZ_SHORT_TARGETS); do dir=$${t%%:*}; name=$${t##*:}; \
	  echo "==> fuzz $$dir $$name for $(FUZZ_SHORT_SECONDS) s"; mkdir -p $$scratch/$$name; \
	  (cd $$dir && RUSTC_BOOTSTRAP=1 cargo fuzz run --target-dir $(FUZZ_TARGET_DIR) \
	    $$name $$scratch/$$name corpus/$$name -- \
	    -max_total_time=$(FUZZ_SHORT_SECONDS) -print_final_stats=1) || exit 1; \
	done

# Fault injection and hostile clients (also part of test-rust).
test-faults:
	cargo build $(CARGO_FLAGS) --workspace --bins
	cargo test $(CARGO_FLAGS) -p framebus --test faults
	cargo test $(CARGO_FLAGS) -p framebus-publishers --test faults --test hostile_clients

# Long forms: 1,000 reader kill cycles, 20 producer kills, then the soak
# (SOAK_SECONDS, default 1 hour; scripts/soak.sh).
SOAK_SECONDS ?= 3600
soak: build wheel
	FRAMEBUS_FAULT_CYCLES=1000 cargo test $(CARGO_FLAGS) -p framebus --test faults -- --nocapture
	FRAMEBUS_FAULT_PRODUCER_KILLS=20 cargo test $(CARGO_FLAGS) -p framebus-publishers --test faults -- --nocapture
	SOAK_SECONDS=$(SOAK_SECONDS) scripts/soak.sh

fmt:
	cargo fmt --all

# In the release profile: clippy's build scripts (libjpeg-turbo's cmake
# build, bindgen of FFmpeg) and proc macros are then the very ones
# test-build compiles and runs, not a second debug set.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked --release -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV) $(STAMPS) $(BROWSER_DIR)/node_modules dist

# The console (issue 17; docs/benchmarks.md "Console (issue 17)"): how soon
# framebus-mjpeg's `/` is usable in headless Chromium (load, first status,
# every tile's first picture, every tile's time-code latency) against the
# server-rendered index `/mjpeg` of the same server, same run.
CONSOLE_ARGS ?=
# GStreamer elements (issue 18; docs/benchmarks.md "GStreamer elements"):
# framebussrc against shmsink → shmsrc and appsrc fed with a copy, 1080p60
# NV12 from framebus-producer (GST_ARGS, e.g. --seconds 5 --size 1280x720).
GST_ARGS ?=
bench-gst: build
	@uptime
	cargo run $(CARGO_FLAGS) -p framebus-benches --bin gst_handoff -- $(GST_ARGS)

# The microphone: capture + one Opus encode against ffmpeg capturing and
# encoding the same device (docs/audio.md, docs/benchmarks.md).
bench-audio: build
	@uptime
	timeout 900 /usr/bin/python3 benches/audio/bench.py --target-dir $${CARGO_TARGET_DIR:-target}/release $(AUDIO_ARGS)

# 20 RTSP viewers for 10 minutes: audio glitches, capture-to-client latency.
bench-audio-viewers: build
	@uptime
	timeout 1200 /usr/bin/python3 benches/audio/viewers.py --target-dir $${CARGO_TARGET_DIR:-target}/release $(AUDIO_VIEWERS_ARGS)

# Fan-out through Janus (issue 20; docs/scale-out.md, docs/benchmarks.md
# "Fan-out through Janus"): framebus CPU with 1..N Janus viewers (goal:
# flat), viewers served, the Janus hop's latency against direct WHEP in the
# same run. Report in benches/janus/results/. JANUS_ARGS=--quick for a
# harness check (~1 min; the full run ~3-5 min).
JANUS_ARGS ?=
bench-janus: build node-deps
	@uptime
	cargo build $(CARGO_FLAGS) -p framebus-benches --bin janus_fanout
	timeout 900 $${CARGO_TARGET_DIR:-target}/release/janus_fanout $(JANUS_ARGS)

bench-console: build node-deps
	@uptime
	timeout 900 /usr/bin/python3 benches/console/bench.py --target-dir $${CARGO_TARGET_DIR:-target}/release $(CONSOLE_ARGS)

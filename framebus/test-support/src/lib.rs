//! Helpers shared by the integration tests of `framebus`, `framebus-producer`
//! and `framebus-publishers` (a `[dev-dependencies]` of each; never
//! published). One module per concern:
//!
//! | module | what |
//! |---|---|
//! | [`names`] | bus names and temporary directories unique per process and call |
//! | [`child`] | [`ChildGuard`]: a child in its own process group, killed (whole group) and reaped on drop; bounded waits, signals, output capture |
//! | [`listening`] | the `listening on URL` line(s) of a server binary |
//! | [`feed`] | [`Feeder`]: a thread publishing a moving NV12 test pattern with the time code |
//! | [`clients`] | background clients counting what they receive (curl on MJPEG, ffmpeg on RTSP) |
//! | [`bins`] | paths of the workspace's binaries from tests of another package |
//! | [`av`] | picture against sound in a file (the tone's beeps against the time code): beep onsets, A/V offsets, the beep's frequency, the streams ffprobe sees |
//! | [`browser`] | headless Chromium playing WHEP or a player page (`publishers/tests/browser/whep.mjs`), using framebus-recorder's page (`recpage.mjs`), or playing an MP4 file in a `<video>` (`video.mjs`), its JSON report |
//! | [`hls`] | headless Chromium playing HLS / LL-HLS with hls.js in N clients (`publishers/tests/browser/hls.mjs`), its JSON report |
//! | [`hls_stream`] | [`hls_stream::TestStream`]: a live LL-HLS stream of the time-coded pattern (ffmpeg fragments republished as parts), served with CORS: the HLS harness's stand-in origin |
//! | [`http`] | [`http::Resp`]: an HTTP response (status, header lines, body) and the checks of the servers' JSON errors, for the raw client of the publishers' tests and for `curl` in [`recorder`] |
//! | [`janus`] | [`janus::Janus`]: Debian's Janus on loopback, its Streaming plugin with one H.264 `rtp` mountpoint fed on UDP ports the test chooses, for browsers watching through an SFU ([`browser::janus_play`]) |
//! | [`whip`] | [`whip::WhipServer`]: a real WHIP server (Debian's simple-whip-server and Janus's VideoRoom) on loopback for a WHIP client under test; what it published, forwarded as RTP and decoded (H.264 size and frames, Opus rate and buffers) |
//! | [`nginx`] | [`nginx::CacheProxy`]: Debian's nginx as a caching reverse proxy from `examples/nginx/framebus-hls.conf`, its access log counted by cache status |
//! | [`mountns`] | [`mountns::PrivateTmpfs`]: a tmpfs of a given size in a mount namespace of its own (root), entered with `nsenter`: a container's `/dev/shm` |
//! | [`netns`] | [`netns::Netns`]: a network namespace joined by a veth pair, shaped with `tc tbf` (root) |
//! | [`recorder`] | [`recorder::Recorder`]: `framebus-recorder` on port 0 and its API (curl); ffprobe/ffmpeg checks of its files, time codes of decoded frames, MP4 box layout, [`recorder::EncodedLog`] of what the encoded bus carried, RFC 3339 times, a private tmpfs in a mount namespace |
//! | [`service`] | [`service::Service`]: `framebus-producer --config` on a written TOML in its own shm directory, waited for until every camera and child runs; the publishers' addresses from its status file |
//! | [`pulse`] | [`pulse::Pulse`]: a private PulseAudio with a null sink as the microphone (ALSA device `pulse`), tones played into it with `pacat`, unplug and plug; the frequency of a tone |
//! | [`port`] | a free TCP port, for the few tests that must name one in advance |
//! | [`python`] | the venv's Python with the framebus wheel, for tests that drive a Python reader |
//! | [`wait`] | polling a condition with a bound |
//! | [`rng`] | a tiny deterministic PRNG |
//!
//! Every wait here is a watchdog: a bound after which the test fails with a
//! message saying what did not happen, never an assertion on how long
//! something took.
//!
//! Under `--cfg loom` (`make test-loom`) the crate is empty: the core then
//! compiles out everything but its protocol, and only its loom models run.
#![cfg(not(loom))]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod av;
pub mod bins;
pub mod browser;
pub mod child;
pub mod clients;
pub mod encoder;
pub mod feed;
pub mod hls;
pub mod hls_stream;
pub mod http;
pub mod janus;
pub mod listening;
pub mod mountns;
pub mod names;
pub mod netns;
pub mod nginx;
pub mod port;
pub mod pulse;
pub mod python;
pub mod recorder;
pub mod rng;
pub mod service;
pub mod wait;
pub mod whip;

pub use child::{run, run_to_end, this_test_binary, ChildGuard};
pub use encoder::Encoder;
pub use feed::{FeedOptions, Feeder};
pub use listening::Listening;
pub use names::{unique_name, TempDir};
pub use wait::eventually;

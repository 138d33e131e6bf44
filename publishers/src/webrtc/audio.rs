//! The camera's sound for WebRTC: one reader per Opus bus (`{cam}.opus`,
//! written by `framebus-encoder --opus`), shared by every session of that
//! camera, whatever profile each plays.
//!
//! Nothing is encoded here: each Opus packet (20 ms) is copied out of the
//! ring once into an `Arc<[u8]>` and handed to every session through a
//! bounded `tokio::sync::broadcast` of [`FANOUT_DEPTH`] packets; str0m
//! packetizes (one packet per RTP packet, RFC 7587) and encrypts per
//! session. The thread never waits for a session: one that falls behind
//! by more than the channel holds loses those packets (the browser
//! conceals them) and goes on with the newest.
//!
//! **RTP time** is the packet's pts converted to the 48 kHz Opus RTP clock
//! (RFC 7587: always 48000 whatever the input rate). The encoder counts
//! samples, so consecutive packets are exactly 960 apart and a chunk the
//! microphone lost leaves its gap. A pts that goes backwards (the encoder
//! restarted and counts from 0 again) is re-based so that the RTP time
//! goes on from where it was, by the capture-time difference.
//! **Lip sync** comes from the wall-clock instant each packet is written
//! with: its capture time, on the clock the video access units use, so
//! str0m's sender reports map both streams' RTP times onto one timeline.
//!
//! Lifecycle: [`OnDemand`], as for the video feeds. A session's
//! [`AudioTicket`] keeps the reader running; it stops [`FEED_GRACE`] after
//! the last session leaves. An Opus bus that cannot be read leaves its
//! sessions video-only (logged), never fails them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use framebus::contract::audio::opus_bus;
use framebus::{PixelFormat, ReadError, Reader, ReaderOptions};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::common::demand::{JoinKind, OnDemand, Ticket, Worker};
use crate::feed::FEED_GRACE;

/// Packets the fan-out channel holds (one second of 20 ms packets).
pub const FANOUT_DEPTH: usize = 50;
/// The Opus RTP clock (RFC 7587 §4.1).
pub const OPUS_CLOCK: u64 = 48_000;
/// A 20 ms packet in [`OPUS_CLOCK`] ticks: the least step after a re-base.
const PACKET_TICKS: u64 = 960;

/// One Opus packet of a camera's Opus bus.
#[derive(Debug)]
pub struct OpusPacket {
    /// The packet, copied once from the ring.
    pub data: Arc<[u8]>,
    /// RTP time in [`OPUS_CLOCK`] ticks (from the bus's pts).
    pub rtp48: u64,
    /// Capture time of its first sample (CLOCK_MONOTONIC ns), the clock
    /// of the video frames.
    pub mono_ns: u64,
    /// The same instant on CLOCK_REALTIME (ns since the epoch).
    pub realtime_ns: u64,
}

/// Counters of one audio feed.
#[derive(Debug, Default)]
pub struct AudioCounters {
    /// Packets read from the bus.
    pub packets: AtomicU64,
    /// Packets the bus overwrote before this reader got them.
    pub skipped_on_bus: AtomicU64,
    /// Times the RTP time was re-based (the pts went backwards).
    pub rebases: AtomicU64,
}

/// One Opus bus's reader and fan-out.
#[derive(Debug)]
pub struct AudioFeed {
    bus: String,
    shm_dir: Option<PathBuf>,
    demand: Arc<OnDemand<()>>,
    tx: broadcast::Sender<Arc<OpusPacket>>,
    /// Counters.
    pub counters: AudioCounters,
}

/// A session's claim on an audio feed: its packets from now on, and the
/// reader kept running while it is held.
#[derive(Debug)]
pub struct AudioTicket {
    /// Packets from the moment of joining.
    pub rx: broadcast::Receiver<Arc<OpusPacket>>,
    _ticket: Ticket<()>,
}

/// `pts` in `time_base` (num/den seconds) as [`OPUS_CLOCK`] ticks.
pub fn to_48k(pts: u64, (num, den): (u32, u32)) -> u64 {
    if den == 0 || (num, u64::from(den)) == (1, OPUS_CLOCK) {
        return pts;
    }
    (u128::from(pts) * u128::from(num) * u128::from(OPUS_CLOCK) / u128::from(den)) as u64
}

/// Keeps the RTP time of one feed going forward across pts restarts.
#[derive(Debug, Default)]
struct RtpClock {
    offset: u64,
    last: Option<(u64, u64)>,
}

impl RtpClock {
    /// The RTP time of a packet with pts `pts48` (48 kHz) captured at
    /// `mono_ns`, and whether the clock had to be re-based.
    fn next(&mut self, pts48: u64, mono_ns: u64) -> (u64, bool) {
        let mut rtp = pts48.wrapping_add(self.offset);
        let mut rebased = false;
        if let Some((last_rtp, last_mono)) = self.last {
            if rtp.wrapping_sub(last_rtp) as i64 <= 0 {
                let elapsed = mono_ns.saturating_sub(last_mono);
                let step = (u128::from(elapsed) * u128::from(OPUS_CLOCK) / 1_000_000_000) as u64;
                rtp = last_rtp.wrapping_add(step.max(PACKET_TICKS));
                self.offset = rtp.wrapping_sub(pts48);
                rebased = true;
            }
        }
        self.last = Some((rtp, mono_ns));
        (rtp, rebased)
    }
}

impl AudioFeed {
    fn new(bus: String, shm_dir: Option<PathBuf>) -> Arc<AudioFeed> {
        let (tx, _) = broadcast::channel(FANOUT_DEPTH);
        Arc::new_cyclic(|me: &Weak<AudioFeed>| AudioFeed {
            demand: {
                let me = me.clone();
                // Sessions join as snapshots: the video feed already
                // counts them against `--webrtc-max-viewers`.
                OnDemand::new(FEED_GRACE, usize::MAX, move |worker| {
                    if let Some(me) = me.upgrade() {
                        std::thread::Builder::new()
                            .name(format!("audio {}", me.bus))
                            .spawn(move || me.run(&worker))
                            .expect("spawn an audio feed thread");
                    }
                })
            },
            bus,
            shm_dir,
            tx,
            counters: AudioCounters::default(),
        })
    }

    /// The Opus bus.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// True while the reader thread runs.
    pub fn is_running(&self) -> bool {
        self.demand.status().running
    }

    /// Sessions holding a ticket.
    pub fn sessions(&self) -> usize {
        self.demand.status().snapshots
    }

    /// Joins: packets from now on, the reader started if needed.
    pub fn join(self: &Arc<AudioFeed>) -> AudioTicket {
        // Subscribed before the reader can start: no packet of a fresh
        // run is missed.
        let rx = self.tx.subscribe();
        let ticket = self
            .demand
            .join(JoinKind::Snapshot)
            .expect("snapshot joins are not limited");
        AudioTicket {
            rx,
            _ticket: ticket,
        }
    }

    /// Waits (100 ms steps) until nobody needs the reader any more.
    fn idle(&self, worker: &Worker<()>) {
        while worker.keep_running() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn run(&self, worker: &Worker<()>) {
        tracing::info!(bus = %self.bus, "audio feed: reading the Opus bus");
        let opts = ReaderOptions {
            wait: None,
            shm_dir: self.shm_dir.clone(),
        };
        let mut reader = match Reader::attach(&self.bus, opts) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(bus = %self.bus, error = %e, "audio feed: cannot attach; sessions stay video-only");
                return self.idle(worker);
            }
        };
        if reader.spec().format != PixelFormat::Opus {
            tracing::warn!(bus = %self.bus, format = %reader.spec().format, "audio feed: not an Opus bus");
            return self.idle(worker);
        }
        let time_base = |reader: &mut Reader| match reader.codec() {
            Ok(Some(c)) if c.time_base.0 > 0 && c.time_base.1 > 0 => c.time_base,
            _ => (1, OPUS_CLOCK as u32),
        };
        let mut tb = time_base(&mut reader);
        let mut clock = RtpClock::default();
        let c = &self.counters;
        while worker.keep_running() {
            let frame = match reader.next_encoded(Some(Duration::from_millis(100))) {
                Ok(f) => f,
                Err(ReadError::Timeout { .. }) => continue,
                Err(ReadError::ProducerGone { .. }) => {
                    tracing::warn!(bus = %self.bus, "Opus encoder gone; waiting for a new one");
                    std::thread::sleep(Duration::from_millis(100));
                    // A new encoder may have another time base.
                    tb = time_base(&mut reader);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(bus = %self.bus, error = %e, "audio read failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            c.skipped_on_bus
                .fetch_add(frame.skipped(), Ordering::Relaxed);
            c.packets.fetch_add(1, Ordering::Relaxed);
            let (rtp48, rebased) = clock.next(to_48k(frame.pts(), tb), frame.mono_ns());
            if rebased {
                c.rebases.fetch_add(1, Ordering::Relaxed);
                tracing::info!(bus = %self.bus, pts = frame.pts(), "Opus pts went back; RTP time re-based");
            }
            let packet = Arc::new(OpusPacket {
                data: Arc::from(&frame[..]),
                rtp48,
                mono_ns: frame.mono_ns(),
                realtime_ns: frame.realtime_ns(),
            });
            drop(frame);
            // No receiver (every session gone, in the grace time): fine.
            let _ = self.tx.send(packet);
        }
        tracing::info!(bus = %self.bus, "audio feed stopped (no sessions)");
    }
}

/// Every audio feed of the server, created on first use.
#[derive(Debug)]
pub struct AudioFeeds {
    shm_dir: Option<PathBuf>,
    map: Mutex<HashMap<String, Arc<AudioFeed>>>,
}

impl AudioFeeds {
    /// An empty registry.
    pub fn new(shm_dir: Option<PathBuf>) -> AudioFeeds {
        AudioFeeds {
            shm_dir,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The audio feed of camera `camera`, when its Opus bus exists, is
    /// live and carries Opus; `None` otherwise (the camera has no sound:
    /// its sessions are video-only). Blocking (`stat`).
    pub fn for_camera(&self, camera: &str) -> Option<Arc<AudioFeed>> {
        let bus = opus_bus(camera);
        framebus::validate_name(&bus).ok()?;
        let info = framebus::stat(&bus, self.shm_dir.as_deref()).ok()?;
        if !info.producer_alive || info.format != PixelFormat::Opus.to_string() {
            return None;
        }
        let mut map = self.map.lock();
        let shm_dir = self.shm_dir.as_deref();
        // Forget idle feeds of vanished buses.
        map.retain(|b, f| f.sessions() > 0 || f.is_running() || framebus::stat(b, shm_dir).is_ok());
        Some(Arc::clone(map.entry(bus.clone()).or_insert_with(|| {
            AudioFeed::new(bus, self.shm_dir.clone())
        })))
    }

    /// Every audio feed created so far.
    pub fn all(&self) -> Vec<Arc<AudioFeed>> {
        self.map.lock().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_time_follows_the_pts_and_never_goes_back() {
        assert_eq!(to_48k(960, (1, 48_000)), 960);
        assert_eq!(to_48k(320, (1, 16_000)), 960);
        let mut c = RtpClock::default();
        let ms = 1_000_000;
        assert_eq!(c.next(0, 1000 * ms), (0, false));
        assert_eq!(c.next(960, 1020 * ms), (960, false));
        // A lost chunk leaves its gap.
        assert_eq!(c.next(2880, 1060 * ms), (2880, false));
        // The encoder restarted 1 s later and counts from 0 again.
        assert_eq!(c.next(0, 2060 * ms), (2880 + 48_000, true));
        assert_eq!(c.next(960, 2080 * ms), (2880 + 48_960, false));
        // The same pts twice (no time passed): still forward.
        assert_eq!(c.next(960, 2080 * ms), (2880 + 48_960 + 960, true));
    }
}

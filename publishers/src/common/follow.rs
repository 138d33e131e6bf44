//! Follow a bus on a blocking thread, across producer restarts.
//!
//! [`follow`] attaches (waiting while the bus does not exist), hands every
//! new frame to a callback as a zero-copy view, and keeps going when the
//! producer goes away: the [`Reader`] re-attaches by itself when a producer
//! creates the bus again. The current condition is published in a
//! [`BusHealth`] for status pages and health checks. The loop wakes at
//! least every [`FollowOptions::poll`] to ask the caller whether to go on.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use framebus::{AttachError, Frame, ReadError, Reader, ReaderOptions};
use parking_lot::Mutex;

/// Options of [`follow`].
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Shared-memory directory (default: `FRAMEBUS_SHM_DIR` or `/dev/shm`).
    pub shm_dir: Option<PathBuf>,
    /// Longest time between two `keep_going` checks.
    pub poll: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            shm_dir: None,
            poll: Duration::from_millis(200),
        }
    }
}

/// Condition of a followed bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusState {
    /// Nobody follows the bus right now.
    Idle,
    /// The bus does not exist (yet); waiting for a producer.
    Waiting,
    /// Attached to a live producer.
    Live,
    /// The producer went away; waiting for it to come back.
    ProducerGone,
    /// Attaching or reading failed for another reason (text for people).
    Failed(String),
}

impl BusState {
    /// Short text: "idle", "waiting for bus", "live", "producer gone", or the error.
    pub fn describe(&self) -> String {
        match self {
            BusState::Idle => "idle".into(),
            BusState::Waiting => "waiting for bus".into(),
            BusState::Live => "live".into(),
            BusState::ProducerGone => "producer gone".into(),
            BusState::Failed(e) => e.clone(),
        }
    }
}

/// Shared view of a followed bus's condition.
#[derive(Debug)]
pub struct BusHealth {
    inner: Mutex<(BusState, Option<Instant>)>,
}

impl Default for BusHealth {
    fn default() -> Self {
        BusHealth {
            inner: Mutex::new((BusState::Idle, None)),
        }
    }
}

impl BusHealth {
    /// Current state.
    pub fn state(&self) -> BusState {
        self.inner.lock().0.clone()
    }

    /// Time since the last frame, if any came.
    pub fn last_frame_age(&self) -> Option<Duration> {
        self.inner.lock().1.map(|t| t.elapsed())
    }

    /// Set the state.
    pub fn set(&self, s: BusState) {
        let mut g = self.inner.lock();
        if g.0 != s {
            tracing::debug!(state = %s.describe(), "bus state");
            g.0 = s;
        }
    }

    fn frame(&self) {
        let mut g = self.inner.lock();
        g.0 = BusState::Live;
        g.1 = Some(Instant::now());
    }
}

/// Read bus `name` until `keep_going` returns false, calling `on_frame` with
/// each new frame (the newest one; frames the callback was too slow for are
/// skipped by the bus). Blocks the calling thread; run it on a
/// `std::thread`, not on an async runtime. Sets `health` to
/// [`BusState::Idle`] on return.
pub fn follow(
    name: &str,
    opts: &FollowOptions,
    health: &BusHealth,
    mut keep_going: impl FnMut() -> bool,
    mut on_frame: impl FnMut(&Frame),
) {
    let mut reader: Option<Reader> = None;
    let mut last_error: Option<String> = None;
    while keep_going() {
        let r = match reader.as_mut() {
            Some(r) => r,
            None => {
                let ro = ReaderOptions {
                    wait: None,
                    shm_dir: opts.shm_dir.clone(),
                };
                match Reader::attach(name, ro) {
                    Ok(r) => {
                        tracing::info!(bus = name, "attached");
                        health.set(BusState::Live);
                        reader.insert(r)
                    }
                    Err(AttachError::NotFound { .. }) => {
                        health.set(BusState::Waiting);
                        std::thread::sleep(opts.poll);
                        continue;
                    }
                    Err(AttachError::ProducerGone { .. }) => {
                        health.set(BusState::ProducerGone);
                        std::thread::sleep(opts.poll);
                        continue;
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if last_error.as_deref() != Some(&text) {
                            tracing::warn!(bus = name, error = %text, "cannot attach");
                            last_error = Some(text.clone());
                        }
                        health.set(BusState::Failed(text));
                        std::thread::sleep(opts.poll);
                        continue;
                    }
                }
            }
        };
        match r.next(Some(opts.poll)) {
            Ok(frame) => {
                health.frame();
                on_frame(&frame);
            }
            Err(ReadError::Timeout { .. }) => {
                if !r.is_connected() {
                    health.set(BusState::ProducerGone);
                }
            }
            Err(ReadError::ProducerGone { .. }) => {
                tracing::info!(bus = name, "producer gone; waiting for it to return");
                health.set(BusState::ProducerGone);
            }
            Err(ReadError::Attach(AttachError::NotFound { .. })) => {
                health.set(BusState::ProducerGone);
                std::thread::sleep(opts.poll);
            }
            Err(e) => {
                // Corrupt slot, too many held, re-attach failure: start over
                // with a fresh reader after a pause.
                let text = e.to_string();
                tracing::warn!(bus = name, error = %text, "read failed; re-attaching");
                health.set(BusState::Failed(text));
                reader = None;
                std::thread::sleep(opts.poll);
            }
        }
    }
    health.set(BusState::Idle);
}

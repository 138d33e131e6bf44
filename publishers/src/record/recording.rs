//! One recording: what the API shows and the `{id}.json` beside its file
//! says, and the live handle the writer and the tap share.
//!
//! States: `waiting` (no keyframe yet) → `recording` → `done` or `failed`;
//! `interrupted` is what start-up calls a recording it finds still
//! `waiting`/`recording` on disk (the recorder was killed: its file keeps
//! every fragment written before).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// How a recording was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Asked for through the API or the CLI.
    Clip,
    /// A piece of a continuous recording.
    Segment,
}

/// Where a recording is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Accepted, waiting for its first keyframe.
    Waiting,
    /// Writing fragments.
    Recording,
    /// Finished: the file is complete.
    Done,
    /// Stopped by an error (`error` says which); the file keeps every
    /// fragment written before it.
    Failed,
    /// Found unfinished at start-up (the recorder was killed or the power
    /// cut); the file keeps every fragment written before.
    Interrupted,
}

impl State {
    /// Whether the recording still takes frames.
    pub fn is_active(self) -> bool {
        matches!(self, State::Waiting | State::Recording)
    }
}

/// A recording as the API shows it and `{id}.json` stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// `{bus}_{YYYYmmdd-HHMMSS-mmm}` (UTC).
    pub id: String,
    /// `cam0/high`.
    pub stream: String,
    /// The encoded bus (`cam0.h264.high`).
    pub bus: String,
    /// Clip or segment.
    pub kind: Kind,
    /// Where it is in its life.
    pub state: State,
    /// When it was asked for (RFC 3339, UTC); for a segment, its start.
    pub requested_at: String,
    /// The same instant, ns since the Unix epoch.
    pub requested_at_realtime_ns: u64,
    /// The pre-roll asked for, seconds.
    pub requested_preroll_s: f64,
    /// The duration asked for, seconds (none: until stopped, at most
    /// `--max-duration`).
    pub requested_duration_s: Option<f64>,
    /// Capture time of the first frame (RFC 3339), once known.
    pub start: Option<String>,
    /// The same, ns since the Unix epoch (what the time code carries).
    pub first_frame_realtime_ns: Option<u64>,
    /// How far before the request the first frame was captured, seconds
    /// (negative: after it, when nothing was in memory yet).
    pub preroll_s: Option<f64>,
    /// Capture time of the end (the last frame plus its duration).
    pub end: Option<String>,
    /// Media duration written so far, seconds.
    pub duration_s: f64,
    /// Frames written so far.
    pub frames: u64,
    /// Bytes of the file written so far.
    pub bytes: u64,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// RFC 6381 codec (`avc1.640028`), once known.
    pub codec: Option<String>,
    /// Why it failed, or what went wrong while it ran.
    pub error: Option<String>,
    /// Something worth knowing (why it ended early, a truncated tail).
    pub note: Option<String>,
    /// Whether a snapshot was saved beside it (`{id}.jpg`).
    pub snapshot: bool,
    /// The fragmented MP4, relative to the recordings directory.
    pub file: String,
}

/// RFC 3339 (UTC, milliseconds) of ns since the epoch (as HLS writes
/// `EXT-X-PROGRAM-DATE-TIME`).
pub fn rfc3339(realtime_ns: u64) -> String {
    crate::hls::playlist::date_time((realtime_ns / 1_000_000) as i64)
}

/// ns since the epoch of an RFC 3339 time.
pub fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e}); e.g. 2026-11-30T09:00:00Z"))?;
    u64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("{s:?} is before 1970"))
}

/// The id's time part: `YYYYmmdd-HHMMSS-mmm` (UTC).
pub fn id_stamp(realtime_ns: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(realtime_ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// A recording the recorder knows: its record, and for an active one the
/// controls the tap and the writer share.
#[derive(Debug)]
pub struct Entry {
    /// The record (persisted to `json` on each change of state and after
    /// each fragment).
    pub rec: Mutex<Recording>,
    /// The fragmented MP4.
    pub path: PathBuf,
    /// `{id}.json`.
    pub json: PathBuf,
    /// Monotonic ns at which to stop (0: not asked); the tap ends the
    /// recording at the first frame captured at or after it.
    stop_at: AtomicU64,
    /// Set by the writer when the file failed: the tap drops the job.
    failed: AtomicBool,
    /// Becomes true when the recording is finished (done or failed) and
    /// its record is on disk.
    finished: watch::Sender<bool>,
}

impl Entry {
    /// A new entry.
    pub fn new(rec: Recording, path: PathBuf, json: PathBuf) -> Entry {
        let finished = !rec.state.is_active();
        Entry {
            rec: Mutex::new(rec),
            path,
            json,
            stop_at: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            finished: watch::Sender::new(finished),
        }
    }

    /// A copy of the record.
    pub fn snapshot(&self) -> Recording {
        self.rec.lock().clone()
    }

    /// The id.
    pub fn id(&self) -> String {
        self.rec.lock().id.clone()
    }

    /// Asks the tap to end the recording at the frame captured at
    /// `mono_ns` or later (the earliest request wins).
    pub fn request_stop(&self, mono_ns: u64) {
        // Relaxed: a plain value the tap polls; nothing else is published
        // through it.
        let _ = self
            .stop_at
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                (cur == 0 || mono_ns < cur).then_some(mono_ns.max(1))
            });
    }

    /// The requested stop (monotonic ns), if any.
    pub fn stop_at(&self) -> Option<u64> {
        match self.stop_at.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Marks the file failed (the writer's side).
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Whether the writer gave up on the file.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Signals that the recording is finished and recorded on disk.
    pub fn mark_finished(&self) {
        self.finished.send_replace(true);
    }

    /// Waits until the recording is finished, at most `limit`.
    pub async fn finished(&self, limit: std::time::Duration) -> bool {
        let mut rx = self.finished.subscribe();
        let done = tokio::time::timeout(limit, rx.wait_for(|f| *f)).await;
        matches!(done, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let ns = 1_764_494_712_345_678_901;
        assert_eq!(rfc3339(ns), "2025-11-30T09:25:12.345Z");
        assert_eq!(id_stamp(ns), "20251130-092512-345");
        assert_eq!(
            parse_rfc3339("2025-11-30T09:25:12.345Z").unwrap(),
            1_764_494_712_345_000_000
        );
        assert!(parse_rfc3339("yesterday").unwrap_err().contains("RFC 3339"));
    }
}

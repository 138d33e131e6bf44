//! The `framebus_recorder_*` series of `/metrics` (docs/metrics.md),
//! written on each scrape from the live state.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};

use super::recording::Kind;
use super::tap::Tap;
use super::writer::WriteCounters;
use super::Recorder;
use crate::common::http::{series as prefixed_series, Def, COUNTER, GAUGE};

/// Writes the recorder's series on each scrape.
#[derive(Debug)]
pub struct RecorderCollector {
    r: Arc<Recorder>,
}

impl RecorderCollector {
    /// A collector over `r`.
    pub fn new(r: Arc<Recorder>) -> RecorderCollector {
        RecorderCollector { r }
    }
}

fn series<T, L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    def: Def<T>,
    items: &[T],
    labels: impl Fn(&T) -> L,
) -> Result<(), std::fmt::Error> {
    prefixed_series(enc, "framebus_recorder_", def, items, labels)
}

impl Collector for RecorderCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let taps = self.r.taps();
        let tdefs: [Def<Arc<Tap>>; 4] = [
            (
                "preroll_bytes",
                "Bytes of encoded video held in memory for pre-roll",
                GAUGE,
                |t| t.counters.preroll_bytes.load(Relaxed),
            ),
            (
                "preroll_milliseconds",
                "Media held in memory for pre-roll",
                GAUGE,
                |t| t.counters.preroll_ns.load(Relaxed) / 1_000_000,
            ),
            (
                "recordings_writing",
                "Recordings of the stream being written",
                GAUGE,
                |t| t.active_jobs(),
            ),
            (
                "frames_lost",
                "Frames lost because the recorder fell behind its stream",
                COUNTER,
                |t| t.counters.lost.load(Relaxed),
            ),
        ];
        let stream = |t: &Arc<Tap>| [("stream", t.bus().to_string())];
        for def in tdefs {
            series(&mut enc, def, &taps, stream)?;
        }
        let c: &WriteCounters = &self.r.write_counters;
        let one = [c];
        let wdefs: [Def<&WriteCounters>; 3] = [
            (
                "bytes_written",
                "Bytes written and synced to recordings",
                COUNTER,
                |c| c.bytes.load(Relaxed),
            ),
            (
                "fragments_written",
                "Fragments written and synced",
                COUNTER,
                |c| c.fragments.load(Relaxed),
            ),
            (
                "recordings_finished",
                "Recordings finished (done or failed)",
                COUNTER,
                |c| c.finished.load(Relaxed),
            ),
        ];
        for def in wdefs {
            series(&mut enc, def, &one, |_| Vec::<(String, String)>::new())?;
        }
        let reasons: Vec<(usize, &str)> =
            WriteCounters::REASONS.iter().copied().enumerate().collect();
        let errs = |(i, _): &(usize, &str)| {
            (
                c.errors[*i].load(Relaxed),
                self.r.start_errors[*i].load(Relaxed),
            )
        };
        let with_errs: Vec<(&str, u64, u64)> = reasons
            .iter()
            .map(|r| (r.1, errs(r).0, errs(r).1))
            .collect();
        series(
            &mut enc,
            (
                "write_errors",
                "Writes that failed, by reason (disk_full, not_writable, missing, io)",
                COUNTER,
                |e: &(&str, u64, u64)| e.1,
            ),
            &with_errs,
            |e| [("reason", e.0.to_string())],
        )?;
        series(
            &mut enc,
            (
                "start_errors",
                "Recordings or segments that could not start, by reason",
                COUNTER,
                |e: &(&str, u64, u64)| e.2,
            ),
            &with_errs,
            |e| [("reason", e.0.to_string())],
        )?;
        let all = self.r.store.all();
        let count = |k: Kind, active: bool| {
            all.iter()
                .filter(|e| {
                    let r = e.rec.lock();
                    r.kind == k && r.state.is_active() == active
                })
                .count() as u64
        };
        let states = [
            ("clip", "active", count(Kind::Clip, true)),
            ("clip", "finished", count(Kind::Clip, false)),
            ("segment", "active", count(Kind::Segment, true)),
            ("segment", "finished", count(Kind::Segment, false)),
        ];
        series(
            &mut enc,
            (
                "recordings",
                "Recordings known, by kind and whether they are being written",
                GAUGE,
                |s: &(&str, &str, u64)| s.2,
            ),
            &states,
            |s| [("kind", s.0.to_string()), ("state", s.1.to_string())],
        )?;
        let bytes: u64 = all.iter().map(|e| e.rec.lock().bytes).sum();
        let free = disk_free(self.r.store.dir()).unwrap_or(0);
        let disk = [(bytes, free)];
        series(
            &mut enc,
            (
                "stored_bytes",
                "Bytes of every recording in the directory",
                GAUGE,
                |d: &(u64, u64)| d.0,
            ),
            &disk,
            |_| Vec::<(String, String)>::new(),
        )?;
        series(
            &mut enc,
            (
                "disk_free_bytes",
                "Free bytes on the recordings' file system (for this user)",
                GAUGE,
                |d: &(u64, u64)| d.1,
            ),
            &disk,
            |_| Vec::<(String, String)>::new(),
        )?;
        Ok(())
    }
}

/// Bytes available to this user on `dir`'s file system.
pub fn disk_free(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs;
    // statvfs only writes into it, and we read it only on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // Both are c_ulong (u64 on the 64-bit targets framebus runs on).
    #[allow(clippy::unnecessary_cast)]
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

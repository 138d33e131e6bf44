//! Discovery: list buses, read their live counters, remove dead ones.
//!
//! These read the segment with `pread` (no mapping) and judge liveness by the
//! OFD locks, so they work on any segment, healthy or not.

use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::layout::{self, source_state, state, Header, ReaderEntry, HEADER_SIZE};
use crate::name::{default_shm_dir, segment_path, validate_name, NameError, SEGMENT_PREFIX};
use crate::sys;

/// One reader attached to a bus.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ReaderInfo {
    /// Entry index in the reader table.
    pub entry: u32,
    /// Reader pid (in its own namespace).
    pub pid: u32,
    /// Frames taken.
    pub frames: u64,
    /// Frames skipped.
    pub skipped: u64,
    /// Slots held right now.
    pub held: u32,
    /// Whether it is blocked waiting for a frame.
    pub waiting: bool,
    /// Keyframes it asked for (encoded buses).
    pub keyframe_requests: u64,
    /// Last sequence taken.
    pub last_seq: u64,
}

/// What `framebus ls` / `stat` show of one bus.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BusInfo {
    /// Bus name.
    pub name: String,
    /// Segment file.
    pub path: PathBuf,
    /// `live`, `closed`, `stale` (producer died) or `corrupt`.
    pub state: String,
    /// Why the segment cannot be read, when `state` is `corrupt`.
    pub problem: Option<String>,
    /// Pixel format name.
    pub format: String,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Nominal fps.
    pub fps: f64,
    /// Publish rate over the last second.
    pub measured_fps: f64,
    /// Slots.
    pub slots: u32,
    /// Bytes per slot.
    pub slot_capacity: u64,
    /// Producer pid (in its namespace).
    pub producer_pid: u32,
    /// Whether the producer's lock is held.
    pub producer_alive: bool,
    /// What the producer captures from.
    pub source: String,
    /// What the source is doing.
    pub source_state: String,
    /// Frames published.
    pub published: u64,
    /// Frames dropped because readers held every slot.
    pub dropped_all_held: u64,
    /// Frames the source delivered.
    pub captured: u64,
    /// Frames the source lost.
    pub source_dropped: u64,
    /// Source reopens.
    pub restarts: u64,
    /// Watchdog fires.
    pub watchdog_fires: u64,
    /// Wake-up system calls the writer made (only while readers wait).
    pub wake_calls: u64,
    /// Encoded buses: keyframes readers asked for.
    pub keyframe_requests: u64,
    /// Encoded buses: keyframes the encoder forced.
    pub keyframes_forced: u64,
    /// Encoded buses: access units too large for a slot.
    pub oversize: u64,
    /// Encoded buses: the encoder's load-adaptation step (0: the profile
    /// as configured; higher: fewer frames, then fewer bits).
    pub encoder_step: u32,
    /// Encoded buses: how many times the step changed.
    pub encoder_steps: u64,
    /// Encoded buses: output rate at the current step (0: not reported).
    pub encoder_fps: f64,
    /// Encoded buses: target bit rate at the current step, bit/s (0: not
    /// reported).
    pub encoder_bitrate: u64,
    /// Encoded buses: H.264 `profile_idc << 16 | constraint_flags << 8 |
    /// level_idc` of the stream's SPS, as the encoder wrote it with its
    /// codec configuration (0: not written yet, or raw frames).
    pub codec_profile_level: u32,
    /// Audio buses: samples per second (0 on video).
    pub sample_rate: u32,
    /// Audio buses: channels (0 on video).
    pub channels: u32,
    /// Audio buses: the peak of the last chunk in dBFS (None on video,
    /// -inf for digital silence).
    pub audio_peak_dbfs: Option<f64>,
    /// Audio buses: the RMS of the last chunk in dBFS.
    pub audio_rms_dbfs: Option<f64>,
    /// Milliseconds since the last publish (None before the first).
    pub last_frame_age_ms: Option<u64>,
    /// Live readers.
    pub readers: Vec<ReaderInfo>,
}

/// `stat`/`rm` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatError {
    /// Bad name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// No such bus.
    #[error("bus {name:?} not found (no {path})")]
    NotFound {
        /// Bus name.
        name: String,
        /// Path looked at.
        path: PathBuf,
    },
    /// A live producer owns it (for `rm`).
    #[error("bus {name:?} is owned by a live producer (pid {pid}); stop it instead")]
    Live {
        /// Bus name.
        name: String,
        /// Producer pid.
        pid: u32,
    },
    /// Not a framebus segment (for `rm` without force).
    #[error("bus {name:?}: {path} is not a readable framebus segment ({why}); use --force to remove it anyway")]
    Foreign {
        /// Bus name.
        name: String,
        /// File.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// I/O failure.
    #[error("bus {name:?}: {path}: {source}")]
    Io {
        /// Bus name.
        name: String,
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
}

/// Read one segment file.
fn inspect(name: &str, path: &Path) -> Result<BusInfo, StatError> {
    let io_err = |source| StatError::Io {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StatError::NotFound {
                name: name.to_string(),
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err(e)),
    };
    let size = file.metadata().map_err(io_err)?.len();
    let producer_alive = sys::is_locked(file.as_fd(), sys::PRODUCER_LOCK_BYTE).unwrap_or(false);
    let mut info = BusInfo {
        name: name.to_string(),
        path: path.to_path_buf(),
        state: "corrupt".into(),
        problem: None,
        format: String::new(),
        width: 0,
        height: 0,
        fps: 0.0,
        measured_fps: 0.0,
        slots: 0,
        slot_capacity: 0,
        producer_pid: 0,
        producer_alive,
        source: String::new(),
        source_state: String::new(),
        published: 0,
        dropped_all_held: 0,
        captured: 0,
        source_dropped: 0,
        restarts: 0,
        watchdog_fires: 0,
        wake_calls: 0,
        keyframe_requests: 0,
        keyframes_forced: 0,
        oversize: 0,
        encoder_step: 0,
        encoder_steps: 0,
        encoder_fps: 0.0,
        encoder_bitrate: 0,
        codec_profile_level: 0,
        sample_rate: 0,
        channels: 0,
        audio_peak_dbfs: None,
        audio_rms_dbfs: None,
        last_frame_age_ms: None,
        readers: Vec::new(),
    };
    let mut head = vec![0u8; HEADER_SIZE];
    let got = file.read_at(&mut head, 0).map_err(io_err)?;
    let valid = if got < HEADER_SIZE {
        Err(layout::HeaderError::Truncated {
            size,
            need: HEADER_SIZE as u64,
        })
    } else {
        layout::validate_header(&head, size)
    };
    let v = match valid {
        Ok(v) => v,
        Err(e) => {
            info.problem = Some(e.to_string());
            return Ok(info);
        }
    };
    let g = v.geometry;
    // A copy of the whole header: its live words are read from the copy.
    let h = layout::read_copy::<Header>(&head).expect("a whole header was read");
    let live = &h.live;
    info.state = match (live.state.load(Relaxed), producer_alive) {
        (state::LIVE, true) => "live",
        (state::CLOSED, _) => "closed",
        _ => "stale",
    }
    .into();
    info.format = v.spec.format.name().into();
    info.width = v.spec.width;
    info.height = v.spec.height;
    info.fps = v.spec.fps.as_f64();
    info.measured_fps = if producer_alive {
        live.measured_fps_milli.load(Relaxed) as f64 / 1000.0
    } else {
        0.0
    };
    info.slots = g.slot_count;
    info.slot_capacity = g.slot_capacity;
    info.producer_pid = v.producer_pid;
    info.source = v.source.clone();
    info.source_state = source_state::name(live.source_state.load(Relaxed)).into();
    info.published = live.published.load(Relaxed);
    info.dropped_all_held = live.dropped_all_held.load(Relaxed);
    info.captured = live.captured.load(Relaxed);
    info.source_dropped = live.source_dropped.load(Relaxed);
    info.restarts = live.restarts.load(Relaxed);
    info.watchdog_fires = live.watchdog_fires.load(Relaxed);
    info.wake_calls = live.wake_calls.load(Relaxed);
    info.keyframe_requests = live.keyframe_requests.load(Relaxed);
    info.keyframes_forced = live.keyframes_forced.load(Relaxed);
    info.oversize = live.oversize.load(Relaxed);
    info.encoder_step = live.encoder_step.load(Relaxed);
    info.encoder_steps = live.encoder_steps.load(Relaxed);
    info.encoder_fps = f64::from(live.encoder_fps_milli.load(Relaxed)) / 1000.0;
    info.encoder_bitrate = live.encoder_bitrate.load(Relaxed);
    info.codec_profile_level = live.profile_level.load(Relaxed);
    if v.spec.format.is_audio() {
        info.sample_rate = v.spec.sample_rate();
        info.channels = v.spec.channels();
    }
    if v.spec.format == crate::PixelFormat::S16le {
        info.audio_peak_dbfs = Some(dbfs(live.audio_peak.load(Relaxed)));
        info.audio_rms_dbfs = Some(dbfs(live.audio_rms.load(Relaxed)));
    }
    let last = live.last_publish_ns.load(Relaxed);
    if last != 0 {
        info.last_frame_age_ms = Some(sys::realtime_ns().saturating_sub(last) / 1_000_000);
    }
    let table_len = g.reader_capacity as usize * size_of::<ReaderEntry>();
    let mut table = vec![0u8; table_len];
    file.read_exact_at(&mut table, g.readers_offset)
        .map_err(io_err)?;
    for i in 0..g.reader_capacity {
        let e = &table[i as usize * size_of::<ReaderEntry>()..];
        let e = layout::read_copy::<ReaderEntry>(e).expect("the table holds whole entries");
        let held = e.held.load(Relaxed);
        let pid = e.pid.load(Relaxed);
        if held == 0 && pid == 0 {
            continue;
        }
        // Only readers whose lock is held are alive; a dead reader's leftovers
        // are not shown (the writer clears them within a second).
        if !sys::is_locked(file.as_fd(), sys::reader_lock_byte(i)).unwrap_or(false) {
            continue;
        }
        info.readers.push(ReaderInfo {
            entry: i,
            pid,
            frames: e.frames.load(Relaxed),
            skipped: e.skipped.load(Relaxed),
            held: held.count_ones(),
            waiting: e.waiting.load(Relaxed) != 0,
            keyframe_requests: e.keyframe_requests.load(Relaxed),
            last_seq: e.last_seq.load(Relaxed),
        });
    }
    Ok(info)
}

/// Every bus segment in `dir` (default: the shm directory), sorted by name.
/// Unreadable segments are listed with `state: "corrupt"` and the reason.
pub fn list_in(dir: Option<&Path>) -> io::Result<Vec<BusInfo>> {
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(default_shm_dir);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let fname = entry.file_name();
        let Some(name) = fname.to_str().and_then(|f| f.strip_prefix(SEGMENT_PREFIX)) else {
            continue;
        };
        if validate_name(name).is_err() {
            continue;
        }
        match inspect(name, &entry.path()) {
            Ok(info) => out.push(info),
            Err(StatError::NotFound { .. }) => {}
            Err(e) => {
                return Err(io::Error::other(e.to_string()));
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every bus in the default shm directory.
pub fn list() -> io::Result<Vec<BusInfo>> {
    list_in(None)
}

/// One bus.
pub fn stat(name: &str, dir: Option<&Path>) -> Result<BusInfo, StatError> {
    validate_name(name)?;
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(default_shm_dir);
    inspect(name, &segment_path(&dir, name))
}

/// Remove a bus whose producer is gone. With `force`, also a file under the
/// bus's name that is not a readable framebus segment.
///
/// Like a producer replacing a stale segment, this unlinks only while
/// holding the segment's producer lock and after checking that the name
/// still refers to the locked file, so it never removes a segment a new
/// producer has just linked under the name.
pub fn remove(name: &str, dir: Option<&Path>, force: bool) -> Result<(), StatError> {
    use std::os::unix::fs::MetadataExt;
    let info = stat(name, dir)?;
    if let Some(problem) = &info.problem {
        if !force {
            return Err(StatError::Foreign {
                name: name.to_string(),
                path: info.path,
                why: problem.clone(),
            });
        }
    }
    let io_err = |path: &Path, source| StatError::Io {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&info.path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StatError::NotFound {
                name: name.to_string(),
                path: info.path,
            })
        }
        Err(e) => return Err(io_err(&info.path, e)),
    };
    // The replacer byte first, as a producer replacing a stale segment does:
    // a creator that finds the segment locked then knows it is not live.
    if !sys::try_lock(file.as_fd(), sys::REPLACER_LOCK_BYTE).map_err(|e| io_err(&info.path, e))?
        || !sys::try_lock(file.as_fd(), sys::PRODUCER_LOCK_BYTE)
            .map_err(|e| io_err(&info.path, e))?
    {
        return Err(StatError::Live {
            name: name.to_string(),
            pid: info.producer_pid,
        });
    }
    let meta = file.metadata().map_err(|e| io_err(&info.path, e))?;
    let same =
        std::fs::metadata(&info.path).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()));
    if !same {
        // A new producer took the name in between: not ours to remove.
        return Err(StatError::Live {
            name: name.to_string(),
            pid: 0,
        });
    }
    // The lock is released when `file` closes, after the unlink.
    std::fs::remove_file(&info.path).map_err(|e| io_err(&info.path, e))
}

impl BusInfo {
    /// The size column of `framebus ls` and `framebus status`: `WxH`, or
    /// `RATEHz/Nch` for an audio bus.
    pub fn size_label(&self) -> String {
        if self.sample_rate > 0 {
            format!("{}Hz/{}ch", self.sample_rate, self.channels)
        } else {
            format!("{}x{}", self.width, self.height)
        }
    }
}

/// A level on the 16-bit scale (32768 = full scale) in dBFS.
pub fn dbfs(level: u32) -> f64 {
    20.0 * (f64::from(level) / 32768.0).log10()
}

//! The disk side of one recording: a thread that appends the init segment
//! and then each fragment to the file and syncs it (`fdatasync`) before
//! it counts the fragment as written. The tap (which reads the bus) never
//! waits for the disk: it hands whole fragments over a channel.
//!
//! Crash bound: what is on disk after a `kill -9` or a power cut is every
//! fragment synced so far; the fragment being collected (at most
//! `--fragment` of media plus one frame) and any queued behind a slow disk
//! are lost.
//!
//! A failed write (disk full, directory removed, read-only file system)
//! cuts the file back to its last whole fragment, so it stays playable,
//! marks the recording `failed` with the operating system's words, and
//! drops what comes after. The rest of the recorder goes on.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use super::recording::{rfc3339, Entry, State};
use super::store::{reason, write_json};

/// Bytes queued for one file beyond which the recording fails (the disk
/// cannot keep up; memory must not grow without end).
pub const QUEUE_LIMIT: usize = 64 << 20;

/// What the tap sends.
#[derive(Debug)]
pub enum Piece {
    /// The init segment (first).
    Init {
        /// `ftyp` + `moov`.
        bytes: Vec<u8>,
        /// Width, height, codec string.
        width: u32,
        /// Height.
        height: u32,
        /// RFC 6381 codec.
        codec: String,
        /// First frame's capture time (ns since the epoch).
        first_realtime_ns: u64,
        /// Seconds between the first frame and the request.
        preroll_s: f64,
    },
    /// One fragment.
    Fragment {
        /// `moof` + `mdat`.
        bytes: Vec<u8>,
        /// Frames in it.
        frames: u64,
        /// Media seconds in it.
        seconds: f64,
    },
    /// The end (with a note, if it ended for a reason worth saying).
    Finish(Option<String>),
}

/// Counters of every writer, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriteCounters {
    /// Bytes written and synced.
    pub bytes: AtomicU64,
    /// Fragments written and synced.
    pub fragments: AtomicU64,
    /// Failed writes, by reason: disk_full, not_writable, missing, io.
    pub errors: [AtomicU64; 4],
    /// Recordings finished.
    pub finished: AtomicU64,
}

impl WriteCounters {
    /// The `reason` labels of [`WriteCounters::errors`].
    pub const REASONS: [&'static str; 4] = ["disk_full", "not_writable", "missing", "io"];

    fn count_error(&self, e: &std::io::Error) {
        let r = reason(e);
        let i = Self::REASONS.iter().position(|x| *x == r).unwrap_or(3);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The tap's end of a writer.
#[derive(Debug)]
pub struct Writer {
    tx: mpsc::Sender<Piece>,
    queued: Arc<AtomicUsize>,
}

impl Writer {
    /// Starts the thread for `entry`'s file (created empty by the store).
    pub fn start(entry: Arc<Entry>, counters: Arc<WriteCounters>) -> Writer {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = Arc::clone(&queued);
        let name = format!("rec {}", entry.id());
        std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .spawn(move || run(&entry, &rx, &q, &counters))
            .expect("spawn a recording writer thread");
        Writer { tx, queued }
    }

    /// Queues a piece; false when the queue is over [`QUEUE_LIMIT`] (the
    /// caller ends the recording) or the thread is gone.
    pub fn send(&self, piece: Piece) -> bool {
        let len = match &piece {
            Piece::Init { bytes, .. } | Piece::Fragment { bytes, .. } => bytes.len(),
            Piece::Finish(_) => 0,
        };
        // Relaxed: a byte count for a limit, not a synchronisation.
        if self.queued.load(Ordering::Relaxed) + len > QUEUE_LIMIT {
            return false;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        self.tx.send(piece).is_ok()
    }
}

fn run(entry: &Entry, rx: &mpsc::Receiver<Piece>, queued: &AtomicUsize, c: &WriteCounters) {
    let mut file: Option<File> = None;
    let mut good_len: u64 = 0;
    let mut last_saved = std::time::Instant::now();
    let fail = |what: String, e: &std::io::Error, file: Option<&File>, good_len: u64| {
        c.count_error(e);
        entry.mark_failed();
        let cut = file.map(|f| f.set_len(good_len));
        let mut r = entry.rec.lock();
        r.state = State::Failed;
        r.error = Some(format!("{what} {}: {e}", entry.path.display()));
        if let Some(Err(e2)) = cut {
            r.note = Some(format!(
                "cutting the file back to its last whole fragment failed too: {e2}"
            ));
        }
        tracing::error!(id = %r.id, error = %r.error.as_deref().unwrap_or(""), "recording failed");
        let snap = r.clone();
        drop(r);
        if let Err(e) = write_json(&entry.json, &snap) {
            tracing::warn!(error = %e, "the failed recording's record could not be saved");
        }
    };
    while let Ok(piece) = rx.recv() {
        if entry.has_failed() {
            if let Piece::Finish(_) = piece {
                break;
            }
            continue;
        }
        match piece {
            Piece::Init {
                bytes,
                width,
                height,
                codec,
                first_realtime_ns,
                preroll_s,
            } => {
                queued.fetch_sub(bytes.len(), Ordering::Relaxed);
                let opened = std::fs::OpenOptions::new().write(true).open(&entry.path);
                let f = match opened {
                    Ok(f) => f,
                    Err(e) => {
                        fail("cannot open".into(), &e, None, 0);
                        continue;
                    }
                };
                if let Err(e) = append(&f, &bytes) {
                    fail("cannot write to".into(), &e, Some(&f), 0);
                    continue;
                }
                good_len = bytes.len() as u64;
                file = Some(f);
                let snap = {
                    let mut r = entry.rec.lock();
                    r.state = State::Recording;
                    r.width = width;
                    r.height = height;
                    r.codec = Some(codec);
                    r.first_frame_realtime_ns = Some(first_realtime_ns);
                    r.start = Some(rfc3339(first_realtime_ns));
                    r.preroll_s = Some(preroll_s);
                    r.bytes = good_len;
                    r.clone()
                };
                save(entry, &snap);
            }
            Piece::Fragment {
                bytes,
                frames,
                seconds,
            } => {
                queued.fetch_sub(bytes.len(), Ordering::Relaxed);
                let Some(f) = file.as_ref() else { continue };
                if let Err(e) = append(f, &bytes) {
                    fail("cannot write to".into(), &e, Some(f), good_len);
                    continue;
                }
                good_len += bytes.len() as u64;
                c.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                c.fragments.fetch_add(1, Ordering::Relaxed);
                let snap = {
                    let mut r = entry.rec.lock();
                    r.frames += frames;
                    r.duration_s += seconds;
                    r.bytes = good_len;
                    if let Some(first) = r.first_frame_realtime_ns {
                        r.end = Some(rfc3339(first + (r.duration_s * 1e9) as u64));
                    }
                    r.clone()
                };
                // The record on disk follows at most every 5 s (the file
                // itself is the truth after a crash: start-up scans it).
                if last_saved.elapsed() >= std::time::Duration::from_secs(5) {
                    save(entry, &snap);
                    last_saved = std::time::Instant::now();
                }
            }
            Piece::Finish(note) => {
                let snap = {
                    let mut r = entry.rec.lock();
                    if r.state.is_active() {
                        r.state = State::Done;
                    }
                    if note.is_some() {
                        r.note = note;
                    }
                    r.clone()
                };
                save(entry, &snap);
                c.finished.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    // A tap that went away without Finish (the process is stopping):
    // keep what is written; the record says what there is.
    if entry.rec.lock().state.is_active() && !entry.has_failed() {
        let snap = {
            let mut r = entry.rec.lock();
            r.state = State::Done;
            r.note
                .get_or_insert_with(|| "stopped with the recorder".into());
            r.clone()
        };
        save(entry, &snap);
    }
    entry.mark_finished();
}

fn save(entry: &Entry, rec: &super::recording::Recording) {
    if let Err(e) = write_json(&entry.json, rec) {
        tracing::warn!(id = %rec.id, error = %e, "cannot save the recording's record");
        entry.rec.lock().error.get_or_insert_with(|| e.to_string());
    }
}

/// Appends `bytes` and syncs the data (the file's size included).
fn append(mut f: &File, bytes: &[u8]) -> std::io::Result<()> {
    f.write_all(bytes)?;
    f.sync_data()
}

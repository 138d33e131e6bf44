//! The recordings directory and the index of what is in it.
//!
//! Layout: `{dir}/{bus}/{id}.mp4` (fragmented MP4, written as it goes),
//! `{id}.json` (the [`Recording`], replaced atomically: written to a
//! temporary file, synced, renamed) and `{id}.jpg` (an optional snapshot).
//! At start-up every `{id}.json` is read back; one still `waiting` or
//! `recording` belonged to a recorder that was killed: its file is
//! scanned, cut back to its last whole fragment and marked
//! `interrupted` ([`Store::open`]).
//!
//! Retention ([`Store::retain`]) deletes continuous segments only, oldest
//! first, by age and by total size; clips are deleted only when asked.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::recording::{id_stamp, Entry, Kind, Recording, State};
use super::remux;

/// Why the directory cannot take a recording.
#[derive(Debug, thiserror::Error)]
#[error("cannot write recordings to {path}: {source}")]
pub struct StoreError {
    /// The file or directory.
    pub path: PathBuf,
    /// The operating system's error.
    pub source: std::io::Error,
}

impl StoreError {
    fn at(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Every recording in the directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    map: Mutex<BTreeMap<String, Arc<Entry>>>,
}

/// A short name for an I/O error's kind, for the metrics' `reason` label.
pub fn reason(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::StorageFull {
        return "disk_full";
    }
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => "disk_full",
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => "not_writable",
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => "missing",
        _ => "io",
    }
}

impl Store {
    /// Opens (and creates) the directory and reads back what is in it.
    pub fn open(dir: PathBuf) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&dir).map_err(StoreError::at(&dir))?;
        let store = Store {
            dir,
            map: Mutex::new(BTreeMap::new()),
        };
        store.reload();
        Ok(store)
    }

    /// The recordings directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn reload(&self) {
        let Ok(buses) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut found = 0;
        for bus in buses.flatten() {
            let Ok(files) = std::fs::read_dir(bus.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "json") {
                    match self.recover(&p) {
                        Ok(e) => {
                            found += 1;
                            self.map.lock().insert(e.id(), e);
                        }
                        Err(why) => {
                            tracing::warn!(file = %p.display(), %why, "skipping a recording's record")
                        }
                    }
                }
            }
        }
        tracing::info!(dir = %self.dir.display(), recordings = found, "recordings directory read");
    }

    /// Reads one `{id}.json`; an unfinished recording becomes
    /// `interrupted`, its file cut back to its last whole fragment.
    fn recover(&self, json: &Path) -> Result<Arc<Entry>, String> {
        let text = std::fs::read_to_string(json).map_err(|e| e.to_string())?;
        let mut rec: Recording = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let path = self.dir.join(&rec.file);
        if rec.state.is_active() {
            rec.state = State::Interrupted;
            match remux::scan(&path) {
                Ok(scan) => {
                    rec.frames = scan.frames() as u64;
                    rec.duration_s = scan.duration_secs();
                    if scan.truncated > 0 {
                        // The tail of a fragment being written: cut it, so
                        // every player reads the file to its end.
                        let cut = std::fs::OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .and_then(|f| f.set_len(scan.valid_len));
                        rec.note = Some(match cut {
                            Ok(()) => format!(
                                "the recorder stopped while recording; {} bytes of an unfinished fragment were cut",
                                scan.truncated
                            ),
                            Err(e) => format!(
                                "the recorder stopped while recording; the last {} bytes are an unfinished fragment ({e})",
                                scan.truncated
                            ),
                        });
                    } else {
                        rec.note = Some("the recorder stopped while recording".into());
                    }
                    rec.bytes = scan.valid_len;
                    if let (Some(first), Some(dur)) =
                        (rec.first_frame_realtime_ns, Some(scan.duration_secs()))
                    {
                        rec.end = Some(super::recording::rfc3339(first + (dur * 1e9) as u64));
                    }
                }
                Err(e) => {
                    rec.note = Some(format!("the recorder stopped while recording; {e}"));
                }
            }
            write_json(json, &rec).map_err(|e| e.to_string())?;
        }
        Ok(Arc::new(Entry::new(rec, path, json.to_path_buf())))
    }

    /// A new recording's entry: creates `{dir}/{bus}/`, the empty file and
    /// its record, when the file system has at least `min_free` bytes
    /// free. Errors here become the API's 507.
    pub fn create(&self, mut rec: Recording, min_free: u64) -> Result<Arc<Entry>, StoreError> {
        if min_free > 0 {
            if let Some(free) = super::metrics::disk_free(&self.dir) {
                if free < min_free {
                    return Err(StoreError {
                        path: self.dir.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::StorageFull,
                            format!(
                                "No space left on device: {free} bytes free, less than --min-free {min_free}"
                            ),
                        ),
                    });
                }
            }
        }
        let bus_dir = self.dir.join(&rec.bus);
        std::fs::create_dir_all(&bus_dir).map_err(StoreError::at(&bus_dir))?;
        let base = format!("{}_{}", rec.bus, id_stamp(rec.requested_at_realtime_ns));
        let mut map = self.map.lock();
        let mut n = 1;
        let id = loop {
            let id = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            if !map.contains_key(&id) && !bus_dir.join(format!("{id}.json")).exists() {
                break id;
            }
            n += 1;
        };
        let path = bus_dir.join(format!("{id}.mp4"));
        let json = bus_dir.join(format!("{id}.json"));
        rec.id = id.clone();
        rec.file = format!("{}/{id}.mp4", rec.bus);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::at(&path))?;
        if let Err(e) = write_json(&json, &rec) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let entry = Arc::new(Entry::new(rec, path, json));
        map.insert(id, Arc::clone(&entry));
        Ok(entry)
    }

    /// One recording.
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.map.lock().get(id).cloned()
    }

    /// Every recording, newest first.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        let mut v: Vec<_> = self.map.lock().values().cloned().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.rec.lock().requested_at_realtime_ns));
        v
    }

    /// Removes a finished recording's files and forgets it.
    pub fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let Some(e) = self.get(id) else {
            return Ok(false);
        };
        for p in [e.path.clone(), e.path.with_extension("jpg"), e.json.clone()] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(StoreError::at(&p)(err)),
            }
        }
        self.map.lock().remove(id);
        Ok(true)
    }

    /// Deletes finished continuous segments older than `max_age` and,
    /// oldest first, while all segments together exceed `max_bytes`.
    /// Returns how many it deleted.
    pub fn retain(&self, max_age: Option<std::time::Duration>, max_bytes: Option<u64>) -> usize {
        let now = framebus::realtime_ns();
        let mut segs: Vec<(u64, u64, bool, String)> = self
            .map
            .lock()
            .values()
            .filter_map(|e| {
                let r = e.rec.lock();
                (r.kind == Kind::Segment).then(|| {
                    (
                        r.requested_at_realtime_ns,
                        r.bytes,
                        r.state.is_active(),
                        r.id.clone(),
                    )
                })
            })
            .collect();
        segs.sort();
        let mut total: u64 = segs.iter().map(|s| s.1).sum();
        let mut deleted = 0;
        for (at, bytes, active, id) in segs {
            if active {
                continue;
            }
            let too_old = max_age.is_some_and(|a| now.saturating_sub(at) > a.as_nanos() as u64);
            let too_big = max_bytes.is_some_and(|b| total > b);
            if !(too_old || too_big) {
                continue;
            }
            match self.remove(&id) {
                Ok(_) => {
                    total = total.saturating_sub(bytes);
                    deleted += 1;
                    tracing::info!(%id, too_old, too_big, "retention: segment deleted");
                }
                Err(e) => tracing::warn!(%id, error = %e, "retention: cannot delete"),
            }
        }
        deleted
    }
}

/// Writes a record atomically: `{json}.tmp`, synced, renamed over `json`.
pub fn write_json(json: &Path, rec: &Recording) -> Result<(), StoreError> {
    let tmp = json.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(rec).expect("a Recording serializes");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_data()?;
        std::fs::rename(&tmp, json)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        StoreError::at(json)(e)
    })
}

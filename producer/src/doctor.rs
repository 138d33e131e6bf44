//! `framebus doctor` (`framebus-producer --doctor --config FILE`): the
//! shared memory a configuration's buses take, and whether the shm
//! directory can hold it, checked before anything is created.
//!
//! Every bus is `posix_fallocate`d whole when it is created, so a full
//! `/dev/shm` is a clear error at creation, never a SIGBUS later. But the
//! buses of one configuration are created at different times: the cameras'
//! at start, each encoder's when its child starts, a restarted one's while
//! readers may still map the old one. A `/dev/shm` too small for all of
//! them (Docker's default is 64 MiB) fails minutes later, one encoder at a
//! time. The service runs [`check`] first and refuses to start when the
//! buses it knows the size of do not fit; `framebus doctor` prints the
//! whole plan.
//!
//! Each bus's size is [`framebus::WriterOptions::segment_size`] of the
//! options its writer uses: the camera's ring, [`encoder::slots`] and
//! [`encoder::slot_capacity`] for encoded buses, [`audio::SLOTS`] for the
//! sound. A camera whose size or rate comes from the device (V4L2, FFmpeg
//! without `size =`) is counted at 1920x1080, 60 fps, and marked
//! estimated: an estimate warns, it never stops the service.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use framebus::contract::{audio, encoder};
use framebus::{Fps, FrameSpec, PixelFormat, WriterOptions};
use serde::Serialize;

use crate::capture::{align, TESTSRC_FPS, TESTSRC_SIZE};
use crate::cli::SourceKind;
use crate::config::Config;

/// One bus the configuration creates.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedBus {
    /// Bus name.
    pub name: String,
    /// What it carries: `nv12 1920x1080 60 fps, 8 slots`.
    pub what: String,
    /// Bytes of shared memory.
    pub bytes: u64,
    /// False when the size depends on what the device delivers.
    pub exact: bool,
    /// Bytes a segment under this name already takes (a running or
    /// crashed producer's): replaced, not added.
    pub present: u64,
}

/// The shm directory as the kernel sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ShmDir {
    /// The directory.
    pub dir: PathBuf,
    /// Its mount point.
    pub mount_point: Option<PathBuf>,
    /// The file system type (`tmpfs`).
    pub fs_type: Option<String>,
    /// The mount options (`rw,nosuid,nodev,size=65536k`).
    pub options: Vec<String>,
    /// Size of the file system, bytes.
    pub size: u64,
    /// Bytes free to an unprivileged writer.
    pub free: u64,
    /// Whether this process may create files in it.
    pub writable: bool,
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Note,
    /// Works, but not as well as it should, or not for long.
    Warning,
    /// The configuration will not run.
    Error,
}

/// One thing found.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What, and what to do.
    pub message: String,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Every bus, in creation order.
    pub buses: Vec<PlannedBus>,
    /// Their total, bytes.
    pub total: u64,
    /// What the total adds to what is in use now (buses already present
    /// are replaced).
    pub more: u64,
    /// The directory.
    pub shm: ShmDir,
    /// Errors first.
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when nothing stops the configuration from running.
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.severity < Severity::Error)
    }
}

/// Size estimated for a camera whose device decides.
const ASSUMED_SIZE: (u32, u32) = TESTSRC_SIZE;
/// Rate estimated likewise.
const ASSUMED_FPS: u32 = 60;

/// The buses `config` creates, with their sizes; `dir` is where they go
/// (to see which are there already).
pub fn plan(config: &Config, dir: &Path) -> Result<Vec<PlannedBus>, String> {
    let mut out = Vec::new();
    // (camera bus, its size and rate, exact) for the encoders.
    let mut cameras = Vec::new();
    for cam in &config.cameras {
        let bus = cam.bus.get_ref();
        let testsrc = SourceKind::parse(&cam.source.0) == Some(SourceKind::TestSrc);
        let format = cam.format.0;
        let (size, size_known) = match cam.size {
            Some(s) => ((s.0, s.1), true),
            None if testsrc => (TESTSRC_SIZE, true),
            None => (ASSUMED_SIZE, false),
        };
        let (fps, fps_known) = match cam.fps {
            Some(f) => (f.0, true),
            None if testsrc => (Fps::new(TESTSRC_FPS), true),
            None => (Fps::new(ASSUMED_FPS), false),
        };
        let (w, h) = align(format, size.0, size.1);
        let spec = FrameSpec::new(format, w, h, fps).map_err(|e| format!("camera {bus:?}: {e}"))?;
        let opts = WriterOptions {
            slots: cam.slots,
            ..WriterOptions::default()
        };
        let estimated = if size_known {
            ""
        } else {
            " (size from the device: estimated)"
        };
        out.push(planned(
            bus,
            format!("{format} {w}x{h} {fps} fps, {} slots{estimated}", cam.slots),
            &spec,
            &opts,
            size_known,
            dir,
        )?);
        if cam.mjpeg_bus && !testsrc {
            // The camera's own JPEGs, at its own size: never known here.
            let name = format!("{bus}.mjpeg");
            let spec = FrameSpec::new(PixelFormat::Mjpeg, w, h, fps)
                .map_err(|e| format!("camera {bus:?}: {e}"))?;
            out.push(planned(
                &name,
                format!("mjpeg {w}x{h}, {} slots (estimated)", cam.slots),
                &spec,
                &opts,
                false,
                dir,
            )?);
        }
        if cam.audio.is_some() {
            let pcm = crate::audio::spec(cam.audio_rate, cam.audio_channels)
                .map_err(|e| format!("camera {bus:?}: {e}"))?;
            let opts = WriterOptions {
                slots: audio::SLOTS,
                ..WriterOptions::default()
            };
            let what = |f: &str| {
                format!(
                    "{f} {} Hz x{}, {} slots",
                    pcm.sample_rate(),
                    pcm.channels(),
                    audio::SLOTS
                )
            };
            out.push(planned(
                &audio::pcm_bus(bus),
                what("s16le"),
                &pcm,
                &opts,
                true,
                dir,
            )?);
            let opus = FrameSpec::audio(
                PixelFormat::Opus,
                pcm.sample_rate(),
                pcm.channels(),
                pcm.chunk_samples(),
            )
            .map_err(|e| format!("camera {bus:?}: {e}"))?;
            let opts = WriterOptions {
                slot_capacity: Some(audio::OPUS_MAX_PACKET),
                ..opts
            };
            out.push(planned(
                &audio::opus_bus(bus),
                what("opus"),
                &opus,
                &opts,
                true,
                dir,
            )?);
        }
        cameras.push((bus.clone(), (w, h), fps, size_known && fps_known));
    }
    for job in config.encoder_jobs() {
        let Some((_, cam_size, cam_fps, cam_exact)) = cameras.iter().find(|c| c.0 == job.raw_bus)
        else {
            continue;
        };
        let s = &job.spec;
        let (w, h) = s.size.unwrap_or(*cam_size);
        let src_fps = cam_fps.as_f64().round().max(1.0) as u32;
        let fps = s.fps.map_or(src_fps, |f| f.min(src_fps)).max(1);
        let bitrate = s.bitrate.map_or(encoder::DEFAULT_BITRATE, |b| b.0);
        let gop = s.gop.unwrap_or_else(|| encoder::default_gop(fps));
        let spec = FrameSpec::new(PixelFormat::H264, w, h, Fps::new(fps))
            .map_err(|e| format!("encoder {:?}: {e}", job.out_bus))?;
        let opts = WriterOptions {
            slots: encoder::slots(gop),
            max_held: 2,
            slot_capacity: Some(encoder::slot_capacity(w, h, bitrate)),
            ..WriterOptions::default()
        };
        // The size is exact when the encoder's own size and rate are set,
        // or the camera's are known.
        let exact = *cam_exact || (s.size.is_some() && s.fps.is_some() && s.gop.is_some());
        out.push(planned(
            &job.out_bus,
            format!(
                "h264 {w}x{h} {fps} fps {} kbit/s, {} slots",
                bitrate / 1000,
                opts.slots
            ),
            &spec,
            &opts,
            exact,
            dir,
        )?);
    }
    Ok(out)
}

fn planned(
    name: &str,
    what: String,
    spec: &FrameSpec,
    opts: &WriterOptions,
    exact: bool,
    dir: &Path,
) -> Result<PlannedBus, String> {
    let bytes = opts
        .segment_size(spec)
        .map_err(|e| format!("bus {name:?}: {e}"))?;
    let present = std::fs::metadata(framebus::segment_path(dir, name))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(PlannedBus {
        name: name.to_string(),
        what,
        bytes,
        exact,
        present,
    })
}

/// The shm directory `dir` as the kernel sees it.
pub fn inspect(dir: &Path) -> Result<ShmDir, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{}: a NUL in the path", dir.display()))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs;
    // statvfs only writes into it, and we read it only on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("statvfs {}: {e}", dir.display()));
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // SAFETY: `c` is a NUL-terminated path; access only reads it.
    let writable = unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0;
    let frsize = st.f_frsize;
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mount = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|m| mount_of(&m, &canonical));
    let (mount_point, fs_type, options) = match mount {
        Some(m) => (Some(m.point), Some(m.fs_type), m.options),
        None => (None, None, Vec::new()),
    };
    Ok(ShmDir {
        dir: dir.to_path_buf(),
        mount_point,
        fs_type,
        options,
        size: st.f_blocks * frsize,
        free: st.f_bavail * frsize,
        writable,
    })
}

/// A line of `/proc/self/mountinfo`.
#[derive(Debug, PartialEq)]
struct Mount {
    point: PathBuf,
    fs_type: String,
    options: Vec<String>,
}

/// The mount holding `path` (the last, longest mount point that is a
/// prefix of it: later mounts hide earlier ones).
fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root point options [optional...] - type source super
        let (left, right) = line.split_once(" - ")?;
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.len() < 3 {
            continue;
        }
        let point = PathBuf::from(unescape(l[4]));
        if !path.starts_with(&point) {
            continue;
        }
        if best
            .as_ref()
            .is_some_and(|b| b.point.components().count() > point.components().count())
        {
            continue;
        }
        // The mount's own options, then the file system's (size=, mode=).
        let mut options: Vec<String> = l[5].split(',').map(str::to_string).collect();
        for o in r[2].split(',') {
            if !options.iter().any(|x| x == o) {
                options.push(o.to_string());
            }
        }
        best = Some(Mount {
            point,
            fs_type: r[0].to_string(),
            options,
        });
    }
    best
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A `--shm-size` with room: the total and a quarter, rounded up to 64 MiB.
fn suggested(total: u64) -> u64 {
    let want = total + total / 4;
    want.div_ceil(64 << 20) * (64 << 20)
}

/// What the plan and the directory say together.
pub fn assess(buses: Vec<PlannedBus>, shm: ShmDir) -> Report {
    let total: u64 = buses.iter().map(|b| b.bytes).sum();
    let present: u64 = buses.iter().map(|b| b.present).sum();
    let more = total.saturating_sub(present);
    let exact_more: u64 = buses
        .iter()
        .filter(|b| b.exact)
        .map(|b| b.bytes.saturating_sub(b.present))
        .sum();
    let largest = buses.iter().map(|b| b.bytes).max().unwrap_or(0);
    let mut f = Vec::new();
    let mut push = |severity, message: String| f.push(Finding { severity, message });
    let dir = shm.dir.display().to_string();
    let grow = format!(
        "give it at least {}: `docker run --shm-size={}m`, compose `shm_size: {}m`, \
         or `mount -o remount,size={}m {}` (docs/containers.md)",
        mib(suggested(total)),
        suggested(total) >> 20,
        suggested(total) >> 20,
        suggested(total) >> 20,
        shm.mount_point.as_deref().unwrap_or(&shm.dir).display()
    );
    if !shm.writable {
        push(
            Severity::Error,
            format!("{dir} is not writable by this user (uid {})", uid()),
        );
    }
    if shm.options.iter().any(|o| o == "ro") {
        push(Severity::Error, format!("{dir} is mounted read-only"));
    }
    if exact_more > shm.free {
        push(
            Severity::Error,
            format!(
                "the buses need {} more and {dir} has {} free (of {}): {grow}",
                mib(exact_more),
                mib(shm.free),
                mib(shm.size)
            ),
        );
    } else if more > shm.free {
        push(
            Severity::Warning,
            format!(
                "with the estimated sizes the buses need {} more and {dir} has {} free: \
                 set `size =` on the cameras for an exact figure, or {grow}",
                mib(more),
                mib(shm.free)
            ),
        );
    } else if more + largest > shm.free {
        push(
            Severity::Warning,
            format!(
                "{} free leaves no room to recreate the largest bus ({}) while readers \
                 still map the old one (a restart): {grow}",
                mib(shm.free),
                mib(largest)
            ),
        );
    }
    match shm.fs_type.as_deref() {
        Some("tmpfs" | "ramfs") | None => {}
        Some(other) => push(
            Severity::Warning,
            format!(
                "{dir} is {other}, not tmpfs: every frame is written back to disk; \
                 put the buses on a tmpfs (FRAMEBUS_SHM_DIR, or mount one)"
            ),
        ),
    }
    if let Some(avail) = mem_available() {
        if more > avail {
            push(
                Severity::Warning,
                format!(
                    "the buses need {} and the machine has {} of memory available: \
                     tmpfs pages are memory, and the kernel will swap or kill",
                    mib(more),
                    mib(avail)
                ),
            );
        }
    }
    if buses.iter().any(|b| !b.exact) {
        push(
            Severity::Note,
            "sizes marked estimated assume 1920x1080 at 60 fps: the device decides; \
             `size =` and `fps =` on the camera make them exact"
                .to_string(),
        );
    }
    f.sort_by_key(|x| std::cmp::Reverse(x.severity));
    Report {
        buses,
        total,
        more,
        shm,
        findings: f,
    }
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// `MemAvailable` of /proc/meminfo, bytes.
fn mem_available() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The plan of `config` against `dir`.
pub fn check(config: &Config, dir: &Path) -> Result<Report, String> {
    let buses = plan(config, dir)?;
    let shm = inspect(dir)?;
    Ok(assess(buses, shm))
}

/// The report as text.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let w = r
        .buses
        .iter()
        .map(|b| b.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let _ = writeln!(s, "{:<w$}  {:>10}  WHAT", "BUS", "SHM");
    for b in &r.buses {
        let _ = writeln!(
            s,
            "{:<w$}  {:>10}  {}{}",
            b.name,
            mib(b.bytes),
            b.what,
            if b.present > 0 { " [exists]" } else { "" }
        );
    }
    let _ = writeln!(s, "{:<w$}  {:>10}", "total", mib(r.total));
    let _ = writeln!(s);
    let sh = &r.shm;
    let _ = writeln!(
        s,
        "{}: {} on {}, {} free of {}{}",
        sh.dir.display(),
        sh.fs_type.as_deref().unwrap_or("unknown file system"),
        sh.mount_point
            .as_deref()
            .map_or_else(|| "?".into(), |p| p.display().to_string()),
        mib(sh.free),
        mib(sh.size),
        if sh.options.is_empty() {
            String::new()
        } else {
            format!(" ({})", sh.options.join(","))
        }
    );
    if r.findings.is_empty() {
        let _ = writeln!(s, "ok: the buses fit, with room to recreate the largest");
    }
    for f in &r.findings {
        let tag = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let _ = writeln!(s, "{tag}: {}", f.message);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/a
23 22 0:22 / /dev rw,nosuid - tmpfs tmpfs rw,mode=755
24 23 0:23 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs shm rw,size=65536k
25 22 0:24 / /mnt/my\\040dir ro - ext4 /dev/sda1 rw
";

    #[test]
    fn the_longest_mount_point_holds_the_path() {
        let m = mount_of(MOUNTINFO, Path::new("/dev/shm")).unwrap();
        assert_eq!(m.point, PathBuf::from("/dev/shm"));
        assert_eq!(m.fs_type, "tmpfs");
        assert!(m.options.contains(&"size=65536k".to_string()));
        assert!(m.options.contains(&"nodev".to_string()));
        let m = mount_of(MOUNTINFO, Path::new("/tmp/x")).unwrap();
        assert_eq!(m.fs_type, "overlay");
        let m = mount_of(MOUNTINFO, Path::new("/mnt/my dir/buses")).unwrap();
        assert_eq!((m.fs_type.as_str(), m.options[0].as_str()), ("ext4", "ro"));
    }

    fn shm(free: u64) -> ShmDir {
        ShmDir {
            dir: "/dev/shm".into(),
            mount_point: Some("/dev/shm".into()),
            fs_type: Some("tmpfs".into()),
            options: vec!["rw".into()],
            size: 64 << 20,
            free,
            writable: true,
        }
    }

    fn bus(bytes: u64, exact: bool) -> PlannedBus {
        PlannedBus {
            name: "cam0".into(),
            what: String::new(),
            bytes,
            exact,
            present: 0,
        }
    }

    #[test]
    fn too_little_room_is_an_error_only_for_exact_sizes() {
        let r = assess(vec![bus(100 << 20, true)], shm(64 << 20));
        assert!(!r.ok());
        assert!(r.findings[0].message.contains("--shm-size=128m"), "{r:?}");
        let r = assess(vec![bus(100 << 20, false)], shm(64 << 20));
        assert!(r.ok());
        assert_eq!(r.findings[0].severity, Severity::Warning);
        // Fits, but not twice the largest: a warning.
        let r = assess(vec![bus(40 << 20, true)], shm(64 << 20));
        assert!(
            r.ok() && r.findings[0].severity == Severity::Warning,
            "{r:?}"
        );
        let r = assess(vec![bus(20 << 20, true)], shm(64 << 20));
        assert!(r.findings.is_empty(), "{r:?}");
    }

    #[test]
    fn a_bus_already_there_is_replaced_not_added() {
        let mut b = bus(50 << 20, true);
        b.present = 50 << 20;
        let r = assess(vec![b], shm(10 << 20));
        assert_eq!(r.more, 0);
        assert!(r.ok(), "{r:?}");
    }

    #[test]
    fn a_disk_is_a_warning() {
        let mut s = shm(1 << 30);
        s.fs_type = Some("ext4".into());
        let r = assess(vec![bus(1 << 20, true)], s);
        assert!(r.findings[0].message.contains("not tmpfs"), "{r:?}");
    }
}

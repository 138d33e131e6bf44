//! Fault injection on the whole service (issue 9): the producer SIGKILLed
//! at random points and restarted (Rust and Python readers, the MJPEG and
//! RTSP publishers and their viewers recover by themselves), publishers
//! SIGKILLed with viewers attached under `framebus-producer --config`
//! supervision (restarted, the bus unaffected), and shared-memory faults
//! (a full tmpfs, a read-only directory, a foreign file under the bus
//! name): one clear line and exit code 1, never a SIGBUS.
//!
//! `framebus-producer` is taken from the directory of this crate's
//! binaries (`make test` builds every binary first); without it the tests
//! say so and return. `FRAMEBUS_FAULT_PRODUCER_KILLS` sets the number of
//! producer kills (default 3; `make soak` runs more).

#[path = "rtsp_support/mod.rs"]
mod rtsp_support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use framebus::{ReadError, Reader, ReaderOptions};
use framebus_test_support::{bins, clients, listening};
use rtsp_support::{eventually, ffmpeg_decode, run, unique_name, ChildGuard};

/// `framebus-producer` next to this crate's binaries, if built.
fn producer_bin() -> Option<PathBuf> {
    bins::or_skip("framebus-producer")
}

/// A private directory for buses (FRAMEBUS_SHM_DIR), removed on drop;
/// `mounted` when a tmpfs was mounted on it.
struct ShmDir {
    path: PathBuf,
    mounted: bool,
}

impl ShmDir {
    fn new(tag: &str) -> ShmDir {
        let path = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&path).unwrap();
        ShmDir {
            path,
            mounted: false,
        }
    }

    /// A tmpfs with `opts` on a fresh directory; `None` when mounting is
    /// not allowed here (not root).
    fn tmpfs(tag: &str, opts: &str) -> Option<ShmDir> {
        let mut d = ShmDir::new(tag);
        let out = run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
                .arg(&d.path),
            Duration::from_secs(20),
        );
        if !out.status.success() {
            eprintln!(
                "SKIP part: cannot mount a tmpfs ({}): {}",
                opts,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        d.mounted = true;
        Some(d)
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn producer(bin: &Path, bus: &str, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["--bus", bus, "--size", "320x240", "--fps", "30"])
        .env("FRAMEBUS_SHM_DIR", dir)
        .env("RUST_LOG", "warn");
    c
}

/// Runs the producer expecting it to fail at once; checks exit code 1, one
/// `framebus-producer: error:` line containing `want`, no signal.
fn expect_refusal(bin: &Path, dir: &Path, bus: &str, want: &[&str], what: &str) {
    let out = run(&mut producer(bin, bus, dir), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{what}: exit {:?} signal {:?}: {}",
        out.status.code(),
        out.status.signal(),
        stderr.trim()
    );
    assert_ne!(out.status.signal(), Some(libc::SIGBUS), "{what}: SIGBUS");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: exit code; stderr: {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("framebus-producer: error:"))
        .unwrap_or_else(|| panic!("{what}: no error line in {stderr}"));
    assert!(
        want.iter().any(|w| line.contains(w)),
        "{what}: {line:?} does not say any of {want:?}"
    );
}

#[test]
fn producer_shm_faults_give_clear_errors() {
    let Some(bin) = producer_bin() else { return };

    // A bus name taken by a foreign file.
    let d = ShmDir::new("fault-foreign");
    let bus = unique_name("foreign");
    std::fs::write(
        d.path.join(format!("framebus.{bus}")),
        b"not a framebus segment at all",
    )
    .unwrap();
    expect_refusal(
        &bin,
        &d.path,
        &bus,
        &["not a framebus segment"],
        "foreign file",
    );
    let big = vec![0x5au8; 1 << 20];
    std::fs::write(d.path.join(format!("framebus.{bus}")), &big).unwrap();
    expect_refusal(
        &bin,
        &d.path,
        &bus,
        &["not a framebus segment"],
        "foreign 1 MiB file",
    );
    assert_eq!(
        std::fs::read(d.path.join(format!("framebus.{bus}"))).unwrap(),
        big,
        "the foreign file was modified"
    );

    // A full shm file system: 64 KiB cannot hold 8 slots of 320x240 NV12.
    if let Some(d) = ShmDir::tmpfs("fault-full", "size=64k,mode=1777") {
        let bus = unique_name("full");
        expect_refusal(&bin, &d.path, &bus, &["ENOSPC", "no space"], "full tmpfs");
        assert!(
            !d.path.join(format!("framebus.{bus}")).exists(),
            "a partial segment was left behind"
        );
    }

    // An unwritable directory: a read-only tmpfs (root ignores modes), or
    // mode 0555 when not root.
    let ro = ShmDir::tmpfs("fault-ro", "ro,mode=0555").unwrap_or_else(|| {
        let d = ShmDir::new("fault-ro");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(0o555)).unwrap();
        d
    });
    let bus = unique_name("ro");
    expect_refusal(
        &bin,
        &ro.path,
        &bus,
        &["Read-only", "ermission", "not writable", "EROFS", "EACCES"],
        "unwritable directory",
    );

    // A directory that does not exist.
    let bus = unique_name("nodir");
    expect_refusal(
        &bin,
        Path::new("/nonexistent/framebus-shm"),
        &bus,
        &["No such file", "does not exist", "not found", "ENOENT"],
        "missing directory",
    );
}

/// A frame counter fed by a background thread.
struct Count(Arc<AtomicU64>);

impl Count {
    fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` more frames than `from` arrived.
    fn grows(&self, from: u64, n: u64, what: &str) {
        assert!(
            eventually(Duration::from_secs(45), || self.get() >= from + n),
            "{what}: stuck at {} frames (from {from})",
            self.get()
        );
    }
}

/// curl on an MJPEG URL counting boundaries.
fn curl_viewer(url: &str) -> (ChildGuard, Count) {
    let c = clients::curl_mjpeg(url);
    let n = c.counter();
    (c.child, Count(n))
}

/// A Rust reader in a thread: frames, producer-gone events, other errors.
struct RustReader {
    frames: Count,
    gone: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RustReader {
    fn start(bus: &str, dir: &Path) -> RustReader {
        let frames = Arc::new(AtomicU64::new(0));
        let gone = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f2, g2, e2, s2) = (
            Arc::clone(&frames),
            Arc::clone(&gone),
            Arc::clone(&errors),
            Arc::clone(&stop),
        );
        let (bus, dir) = (bus.to_string(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut r = Reader::attach(
                &bus,
                ReaderOptions {
                    wait: Some(Duration::from_secs(30)),
                    shm_dir: Some(dir),
                },
            )
            .expect("attach");
            while !s2.load(Ordering::SeqCst) {
                match r.next(Some(Duration::from_millis(500))) {
                    Ok(_) => {
                        f2.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(ReadError::ProducerGone { .. }) => {
                        g2.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(ReadError::Timeout { .. }) => {}
                    Err(e) => {
                        e2.lock().unwrap().push(e.to_string());
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        });
        RustReader {
            frames: Count(frames),
            gone,
            errors,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RustReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const PY_READER: &str = r#"
import sys, time, framebus
r = framebus.Reader(sys.argv[1], wait=30.0, shm_dir=sys.argv[2])
end = time.monotonic() + 240
while time.monotonic() < end:
    try:
        f = r.next(timeout=0.5)
        f.release()
        print("frame", flush=True)
    except framebus.ProducerGone:
        print("gone", flush=True)
    except framebus.Timeout:
        pass
"#;

/// The Python reader (the installed wheel in `.venv`), if available.
fn python_reader(bus: &str, dir: &Path) -> Option<(ChildGuard, Count, Arc<AtomicU64>)> {
    let py = framebus_test_support::python::venv_python()?;
    let mut child = ChildGuard::spawn(
        Command::new(&py)
            .args(["-c", PY_READER, bus])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let out = child.take_stdout();
    let (n, g) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (n2, g2) = (Arc::clone(&n), Arc::clone(&g));
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            match line.as_deref() {
                Ok("frame") => n2.fetch_add(1, Ordering::SeqCst),
                Ok("gone") => g2.fetch_add(1, Ordering::SeqCst),
                Ok(_) => 0,
                Err(_) => return,
            };
        }
    });
    Some((child, Count(n), g))
}

fn kills() -> u32 {
    std::env::var("FRAMEBUS_FAULT_PRODUCER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn start_producer(bin: &Path, bus: &str, dir: &Path) -> ChildGuard {
    let p = ChildGuard::spawn(
        producer(bin, bus, dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    assert!(
        eventually(Duration::from_secs(30), || framebus::stat(bus, Some(dir))
            .is_ok_and(|s| s.producer_pid == p.pid() && s.published > 0)),
        "producer did not publish on {bus}"
    );
    p
}

#[test]
fn producer_killed_and_restarted_everyone_recovers() {
    let Some(bin) = producer_bin() else { return };
    let dir = ShmDir::new("fault-prod");
    let bus = unique_name("kill");
    let mut prod = start_producer(&bin, &bus, &dir.path);

    let (_mjpeg, l) = listening::spawn(
        Command::new(env!("CARGO_BIN_EXE_framebus-mjpeg"))
            .args(["--listen", "127.0.0.1:0", "--no-discover", "--bus", &bus])
            .args(["--profile", "small=320x240@15:q70"])
            .env("FRAMEBUS_SHM_DIR", &dir.path)
            .env("RUST_LOG", "error")
            .stderr(Stdio::inherit()),
        1,
    );
    let http = l[0].addr.clone();
    let _encoder =
        rtsp_support::Encoder::start(&bus, "small=native@15,bitrate=300k", &[], Some(&dir.path));
    let (_rtsp, l) = listening::spawn(
        Command::new(env!("CARGO_BIN_EXE_framebus-rtsp"))
            .args(["--listen", "127.0.0.1:0"])
            .env("FRAMEBUS_SHM_DIR", &dir.path)
            .env("RUST_LOG", "error")
            .stderr(Stdio::inherit()),
        1,
    );
    let rtsp_addr = l[0].addr.clone();

    let rust = RustReader::start(&bus, &dir.path);
    let python = python_reader(&bus, &dir.path);
    let (_curl, curl) = curl_viewer(&format!("http://{http}/{bus}/small.mjpg"));
    rust.frames.grows(0, 10, "rust reader");
    curl.grows(0, 5, "curl");
    if let Some((_, n, _)) = &python {
        n.grows(0, 10, "python reader");
    }

    let mut rng = u64::from(std::process::id()) | 1;
    let n = kills();
    for k in 0..n {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Anywhere in the frame period (33 ms): mid-publish included.
        std::thread::sleep(Duration::from_micros(200_000 + rng % 900_000));
        prod.kill();
        let (r0, c0) = (rust.frames.get(), curl.get());
        let p0 = python.as_ref().map(|(_, n, _)| n.get());
        prod = start_producer(&bin, &bus, &dir.path);
        rust.frames
            .grows(r0, 10, &format!("rust reader after kill {k}"));
        curl.grows(c0, 5, &format!("curl MJPEG viewer after kill {k}"));
        if let (Some((_, n, _)), Some(p0)) = (&python, p0) {
            n.grows(p0, 10, &format!("python reader after kill {k}"));
        }
    }
    // A client (re)connecting over RTSP gets frames from the new producer.
    let (decoded, out) = ffmpeg_decode(&format!("rtsp://{rtsp_addr}/{bus}/small"), "tcp", 10);
    assert!(
        decoded >= 10,
        "ffmpeg got {decoded} frames after the restarts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = rust.gone.load(Ordering::SeqCst);
    let errors = rust.errors.lock().unwrap().clone();
    eprintln!(
        "{n} producer kills: rust reader {} frames, {gone} ProducerGone, errors {errors:?}; python {:?}; curl {} frames; ffmpeg {decoded}",
        rust.frames.get(),
        python.as_ref().map(|(_, f, g)| (f.get(), g.load(Ordering::SeqCst))),
        curl.get()
    );
    assert!(gone >= 1, "the Rust reader never saw ProducerGone");
    assert!(errors.is_empty(), "reader errors: {errors:?}");
}

/// The supervisor's status file for `pid` in `dir`.
fn status(dir: &Path, pid: u32) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join(format!("framebus-status.{pid}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// (pid, restarts, address) of a running publisher of `kind`.
fn publisher(dir: &Path, pid: u32, kind: &str) -> Option<(u64, u64, String)> {
    let s = status(dir, pid)?;
    let p = s["publishers"]
        .as_array()?
        .iter()
        .find(|p| p["kind"] == kind)?;
    if p["state"] != "running" {
        return None;
    }
    Some((
        p["pid"].as_u64()?,
        p["restarts"].as_u64()?,
        p["address"].as_str()?.to_string(),
    ))
}

#[test]
fn publishers_killed_under_supervision_are_restarted() {
    let Some(bin) = producer_bin() else { return };
    let dir = ShmDir::new("fault-sup");
    let bus = unique_name("sup");
    let config = dir.path.join("framebus.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[camera]]
bus = "{bus}"
size = "320x240"
fps = 30

[publishers.mjpeg]
listen = "127.0.0.1:0"
grace = 1
[[publishers.mjpeg.profile]]
name = "small"
size = "320x240"
fps = 15
quality = 70

[[encoder]]
name = "native"
fps = 15
bitrate = "300k"
grace = 1

[publishers.rtsp]
listen = "127.0.0.1:0"

[supervision]
backoff_initial = 0.2
backoff_max = 1
"#
        ),
    )
    .unwrap();
    let sup = ChildGuard::spawn(
        Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .env("FRAMEBUS_SHM_DIR", &dir.path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let sup_pid = sup.pid();
    let mut m = None;
    let mut r = None;
    assert!(
        eventually(Duration::from_secs(60), || {
            m = publisher(&dir.path, sup_pid, "mjpeg");
            r = publisher(&dir.path, sup_pid, "rtsp");
            m.is_some() && r.is_some()
        }),
        "publishers not running: {:?}",
        status(&dir.path, sup_pid)
    );
    let (m_pid, _, m_addr) = m.unwrap();
    let (r_pid, _, r_addr) = r.unwrap();
    let reader = RustReader::start(&bus, &dir.path);
    reader.frames.grows(0, 10, "rust reader");
    let published0 = framebus::stat(&bus, Some(dir.path.as_path()))
        .unwrap()
        .published;

    // MJPEG: kill it with a viewer attached; a new viewer gets frames.
    let (_curl, curl) = curl_viewer(&format!("http://{m_addr}/{bus}/small.mjpg"));
    curl.grows(0, 5, "curl before the kill");
    // SAFETY: kill(2) on a pid the supervisor reported as its live child.
    unsafe { libc::kill(m_pid as i32, libc::SIGKILL) };
    let mut back = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            back = publisher(&dir.path, sup_pid, "mjpeg").filter(|(p, _, _)| *p != m_pid);
            back.is_some()
        }),
        "mjpeg not restarted: {:?}",
        status(&dir.path, sup_pid)
    );
    let (_, restarts, addr2) = back.unwrap();
    assert!(restarts >= 1);
    let (_curl2, curl2) = curl_viewer(&format!("http://{addr2}/{bus}/small.mjpg"));
    curl2.grows(0, 5, "curl after the mjpeg restart");

    // RTSP: kill it while ffmpeg plays; a new client gets frames.
    let playing =
        rtsp_support::ffmpeg_background(&format!("rtsp://{r_addr}/{bus}/native"), "tcp", 100_000);
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: as above.
    unsafe { libc::kill(r_pid as i32, libc::SIGKILL) };
    let mut back = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            back = publisher(&dir.path, sup_pid, "rtsp").filter(|(p, _, _)| *p != r_pid);
            back.is_some()
        }),
        "rtsp not restarted: {:?}",
        status(&dir.path, sup_pid)
    );
    drop(playing);
    let (_, _, r_addr2) = back.unwrap();
    let (decoded, out) = ffmpeg_decode(&format!("rtsp://{r_addr2}/{bus}/native"), "tcp", 10);
    assert!(
        decoded >= 10,
        "ffmpeg after the rtsp restart: {decoded} frames: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The bus never noticed: same producer, frames all along, no reader
    // saw ProducerGone, the dead publishers' reader entries are gone.
    let r0 = reader.frames.get();
    reader.frames.grows(r0, 10, "rust reader after both kills");
    let st = framebus::stat(&bus, Some(dir.path.as_path())).unwrap();
    assert_eq!(st.producer_pid, sup_pid, "the producer changed");
    assert!(st.published > published0);
    assert_eq!(
        reader.gone.load(Ordering::SeqCst),
        0,
        "a reader saw ProducerGone"
    );
    let live: Vec<u32> = st.readers.iter().map(|r| r.pid).collect();
    for dead in [m_pid as u32, r_pid as u32] {
        assert!(
            eventually(Duration::from_secs(10), || framebus::stat(
                &bus,
                Some(dir.path.as_path())
            )
            .is_ok_and(|s| s.readers.iter().all(|r| r.pid != dead))),
            "reader entry of the killed publisher {dead} is still listed: {live:?}"
        );
    }
    drop(sup);
}

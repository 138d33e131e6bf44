//! Test harness for the fake camera (`fakecam.c`), shared by the producer's
//! V4L2 tests through `#[path = "../fakecam/harness.rs"] mod harness;`.
//!
//! `LD_PRELOAD` only takes effect when a process starts, so a test body runs in
//! a child: the test binary re-executes itself with `--exact <test>` and
//! `FAKECAM_CHILD=1`. Each test opens with
//!
//! ```ignore
//! let Some(cams) = harness::child_or_spawn("my_test") else { return };
//! ```
//!
//! which, in the parent, builds the library, prepares a fresh scenario
//! directory (control files, JPEG frames), runs the child under `LD_PRELOAD`
//! with a time limit and checks that it passed; in the child it returns the
//! scenario so the body can talk to the fake cameras.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The fake YUYV camera (YUYV + NV12, 640x480/1280x720/1920x1080 at 60/30 fps).
pub const YUYV_CAM: &str = "/dev/video90";
/// The fake MJPEG camera (MJPG 640x480/1280x720 at 30/15, YUYV 640x480 at 30).
pub const MJPEG_CAM: &str = "/dev/video91";

/// How long a child test may run before it is killed and the test fails.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// One scenario: a directory with the control files and JPEG frames.
#[derive(Debug, Clone)]
pub struct FakeCams {
    pub dir: PathBuf,
}

impl FakeCams {
    /// Sets `device` (e.g. [`YUYV_CAM`]) to `state`: `"ok"`, `"unplug"`,
    /// `"hang"`, optionally followed by a plug generation (`"ok 1"` replugs:
    /// fds opened before are dead).
    pub fn set(&self, device: &str, state: &str) {
        let name = Path::new(device)
            .file_name()
            .expect("device path has a file name");
        let control = self.dir.join("control");
        let tmp = control.join(format!(".{}.tmp", name.to_string_lossy()));
        std::fs::write(&tmp, state).expect("write fakecam control file");
        std::fs::rename(&tmp, control.join(name)).expect("rename fakecam control file");
    }

    /// The environment a process needs to see the fake cameras.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), library().display().to_string()),
            (
                "FAKECAM_DEVICES".into(),
                format!("{YUYV_CAM}=yuyv,{MJPEG_CAM}=mjpeg"),
            ),
            (
                "FAKECAM_JPEG_DIR".into(),
                self.dir.join("jpeg").display().to_string(),
            ),
            (
                "FAKECAM_CONTROL_DIR".into(),
                self.dir.join("control").display().to_string(),
            ),
            ("FAKECAM_SCENARIO".into(), self.dir.display().to_string()),
            (
                "FRAMEBUS_V4L2_DEVICES".into(),
                format!("{YUYV_CAM}:{MJPEG_CAM}"),
            ),
        ]
    }

    /// A fresh scenario directory under the cargo test tmpdir.
    pub fn new() -> FakeCams {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "fakecam-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("control")).expect("create control dir");
        std::fs::create_dir_all(dir.join("jpeg")).expect("create jpeg dir");
        for (w, h) in [(640, 480), (1280, 720)] {
            let out = dir.join("jpeg").join(format!("{w}x{h}.jpg"));
            let status = Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
                .arg(format!("testsrc=size={w}x{h}:rate=1"))
                .args(["-frames:v", "1", "-q:v", "5"])
                .arg(&out)
                .status()
                .expect("run ffmpeg (Debian package ffmpeg) to make the MJPEG camera's frame");
            assert!(status.success(), "ffmpeg failed to write {}", out.display());
        }
        FakeCams { dir }
    }

    /// The scenario the parent prepared (in the child).
    pub fn from_env() -> FakeCams {
        FakeCams {
            dir: std::env::var_os("FAKECAM_SCENARIO")
                .expect("FAKECAM_SCENARIO is set in the child")
                .into(),
        }
    }
}

/// Builds `libfakecam.so` once per test process (compiled into a temporary
/// name and renamed, so concurrent test binaries never see half a file).
pub fn library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fakecam/fakecam.c");
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fakecam-lib");
        std::fs::create_dir_all(&out_dir).expect("create fakecam-lib dir");
        let lib = out_dir.join("libfakecam.so");
        if std::env::var_os("FAKECAM_CHILD").is_some() {
            return lib; // the parent built it
        }
        let tmp = out_dir.join(format!("libfakecam.so.{}.tmp", std::process::id()));
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .args(["-ldl", "-lpthread"])
            .status()
            .expect("run cc to build the fake camera");
        assert!(status.success(), "cc failed to build {}", src.display());
        std::fs::rename(&tmp, &lib).expect("install libfakecam.so");
        lib
    })
    .clone()
}

/// In the child: returns the scenario. In the parent: runs `test` in a child
/// under `LD_PRELOAD`, asserts it passed, and returns `None`.
pub fn child_or_spawn(test: &str) -> Option<FakeCams> {
    if std::env::var_os("FAKECAM_CHILD").is_some() {
        return Some(FakeCams::from_env());
    }
    library();
    let cams = FakeCams::new();
    let exe = std::env::current_exe().expect("current test binary");
    let log_path = cams.dir.join("child.log");
    let log = std::fs::File::create(&log_path).expect("create child log");
    let mut child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .envs(cams.env())
        .env("FAKECAM_CHILD", "1")
        .stdout(log.try_clone().expect("clone child log"))
        .stderr(log)
        .spawn()
        .expect("spawn child test");
    let mut guard = ChildGuard(Some(&mut child));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = guard.child().try_wait().expect("wait for child") {
            break Some(status);
        }
        if start.elapsed() > CHILD_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(guard); // kills and reaps it if it is still running
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    eprintln!("--- child {test} ---\n{output}");
    let _ = std::fs::remove_dir_all(&cams.dir);
    match status {
        None => panic!("{test}: child did not finish within {CHILD_LIMIT:?} (killed)"),
        Some(s) => assert!(
            s.success() && output.contains("1 passed"),
            "{test}: child failed ({s}), output above"
        ),
    }
    None
}

/// Kills and reaps the child if the parent panics while waiting.
struct ChildGuard<'a>(Option<&'a mut std::process::Child>);

impl ChildGuard<'_> {
    fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child still guarded")
    }
}

impl Drop for ChildGuard<'_> {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

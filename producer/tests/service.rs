//! `framebus-producer --config`: publishers run as supervised children.
//!
//! Fake publishers (shell scripts through `command`) for the crash loop and
//! the hung child; the real `framebus-mjpeg` / `framebus-rtsp` /
//! `framebus-encoder` when they were built next to `framebus-producer`
//! (`make test` builds every binary first; otherwise those tests say so
//! and skip). Backoffs are shortened.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, Scene, BIN};
use framebus_test_support::bins;
use serde_json::Value;

/// Start the producer on `text` (written to the scene's dir); stderr goes
/// to `producer.log` there (a pipe nobody reads could fill up).
fn start(scene: &Scene, text: &str) -> ChildGuard {
    start_with_env(scene, text, &[])
}

/// [`start`] with more environment for the producer.
fn start_with_env(scene: &Scene, text: &str, env: &[(&str, &str)]) -> ChildGuard {
    // Not `framebus.*`: that prefix is the bus segments'.
    let path = scene.dir.join("service.toml");
    std::fs::write(&path, text).unwrap();
    let log = std::fs::File::create(scene.dir.join("producer.log")).unwrap();
    ChildGuard::spawn(
        Command::new(BIN)
            .envs(env.iter().copied())
            .env("FRAMEBUS_SHM_DIR", &scene.dir)
            .env("RUST_LOG", "info")
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
    )
}

fn log(scene: &Scene) -> String {
    std::fs::read_to_string(scene.dir.join("producer.log")).unwrap_or_default()
}

/// The supervisor's status file, parsed.
fn status(scene: &Scene) -> Option<Value> {
    let f = std::fs::read_dir(&scene.dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("framebus-status.") && n.ends_with(".json")
        })?;
    serde_json::from_slice(&std::fs::read(f).ok()?).ok()
}

/// Poll the status file until `pred` holds for the supervised child that
/// `select` picks (`what` names it in the failure message).
fn wait_child(
    scene: &Scene,
    what: &str,
    select: impl Fn(&Value) -> bool,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = status(scene) {
            if let Some(p) = st["publishers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| select(p))
            {
                if pred(p) {
                    return p.clone();
                }
            }
        }
        if Instant::now() > end {
            panic!(
                "{what}: condition not reached within {limit:?}; status: {:#?}\nlog:\n{}",
                status(scene),
                log(scene)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll the status file until `pred` holds for the publisher `kind`.
fn wait_publisher(
    scene: &Scene,
    kind: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let what = format!("publisher {kind}");
    wait_child(scene, &what, |p| p["kind"] == kind, limit, pred)
}

/// Poll the status file until `pred` holds for the encoder child writing
/// the encoded bus `bus`.
fn wait_encoder(scene: &Scene, bus: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let what = format!("encoder {bus}");
    wait_child(
        scene,
        &what,
        |p| p["kind"] == "encoder" && p["bus"] == bus,
        limit,
        pred,
    )
}

/// SIGTERM the producer; it must exit 0 (bounded wait).
fn stop(mut p: ChildGuard, scene: &Scene) {
    p.signal(libc::SIGTERM);
    let Some(st) = p.exits_within(Duration::from_secs(30)) else {
        p.kill();
        panic!("producer did not stop; log:\n{}", log(scene));
    };
    assert_eq!(st.code(), Some(0), "log:\n{}", log(scene));
    assert!(status(scene).is_none(), "status file removed on stop");
}

fn script(scene: &Scene, name: &str, body: &str) -> PathBuf {
    let p = scene.dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn camera(bus: &str) -> String {
    format!("[[camera]]\nbus = \"{bus}\"\nsize = \"320x240\"\nfps = 10\n")
}

/// `framebus status --json` in the scene, when the `framebus` binary was
/// built next to the producer: (exit code, report).
fn framebus_status(scene: &Scene) -> Option<(i32, Value)> {
    let Some(bin) = bins::built("framebus") else {
        eprintln!("note: no `framebus` binary next to framebus-producer; status CLI not checked");
        return None;
    };
    let out = Command::new(bin)
        .env("FRAMEBUS_SHM_DIR", &scene.dir)
        .args(["status", "--json"])
        .output()
        .unwrap();
    Some((
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON"),
    ))
}

#[test]
fn crash_loop_backs_off_and_gives_up() {
    let s = Scene::new("sup-crash");
    let starts = s.dir.join("starts");
    let fake = script(
        &s,
        "fake-publisher.sh",
        &format!("date +%s.%N >> {}\nexit 3", starts.display()),
    );
    let text = format!(
        "{}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\ncommand = \"{}\"\n\
         [supervision]\nbackoff_initial = 0.3\nbackoff_max = 1.2\nmax_restarts = 3\n",
        camera(&s.bus),
        fake.display()
    );
    let p = start(&s, &text);
    let pb = wait_publisher(&s, "mjpeg", Duration::from_secs(60), |p| {
        p["state"] == "failed"
    });
    assert_eq!(pb["restarts"], 3, "{pb:#}");
    assert_eq!(pb["pid"], Value::Null);
    let reason = pb["last_reason"].as_str().unwrap();
    assert!(
        reason.contains("gave up after 3 restarts in a row"),
        "{reason}"
    );
    assert!(reason.contains("exited with status 3"), "{reason}");

    // First start plus three restarts, each after the doubled delay
    // (0.3, 0.6, then 1.2 = backoff_max).
    let times: Vec<f64> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(times.len(), 4, "{times:?}");
    for (i, want) in [0.3, 0.6, 1.2].iter().enumerate() {
        let gap = times[i + 1] - times[i];
        assert!(
            gap >= want - 0.02,
            "restart {} after {gap:.3} s < {want} s",
            i + 1
        );
    }
    let l = log(&s);
    assert!(
        l.contains("publisher down; restarting after backoff"),
        "{l}"
    );
    assert!(l.contains("giving up"), "{l}");

    // Capture is unaffected; status says why the service is degraded.
    assert!(framebus::stat(&s.bus, Some(&s.dir)).is_ok());
    if let Some((code, report)) = framebus_status(&s) {
        assert_eq!(code, 10, "{report:#}");
        assert_eq!(report["health"], "degraded");
        let problems = report["problems"].to_string();
        assert!(
            problems.contains("publisher mjpeg is failed (gave up after 3 restarts"),
            "{problems}"
        );
    }
    stop(p, &s);
    assert!(framebus::stat(&s.bus, Some(&s.dir)).is_err(), "bus closed");
}

#[test]
fn hung_publisher_is_killed_and_restarted() {
    let s = Scene::new("sup-hung");
    // Claims to listen where nothing answers, then hangs.
    let fake = script(
        &s,
        "hung-publisher.sh",
        "echo 'listening on http://127.0.0.1:9/'\nexec sleep 120",
    );
    let text = format!(
        "{}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\ncommand = \"{}\"\n\
         [supervision]\nbackoff_initial = 0.2\nbackoff_max = 0.2\nmax_restarts = 1\n\
         health_interval = 0.2\nhung_after = 1\n",
        camera(&s.bus),
        fake.display()
    );
    let p = start(&s, &text);
    let first = wait_publisher(&s, "mjpeg", Duration::from_secs(60), |p| p["pid"].is_u64());
    let first_pid = first["pid"].as_u64().unwrap();
    let pb = wait_publisher(&s, "mjpeg", Duration::from_secs(60), |p| {
        p["state"] == "failed"
    });
    let reason = pb["last_reason"].as_str().unwrap();
    assert!(
        reason.contains("hung: no answer to health probes"),
        "{reason}"
    );
    assert_eq!(pb["restarts"], 1);
    // The hung process was killed (and reaped) by the supervisor.
    assert!(!Path::new(&format!("/proc/{first_pid}")).exists());
    stop(p, &s);
}

/// A TCP port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether curl receives MJPEG parts from `url` within a few seconds.
fn curl_gets_mjpeg(url: &str) -> bool {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", url])
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let body = out.stdout;
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    has(b"--framebusframe") && has(b"Content-Type: image/jpeg") && has(&[0xff, 0xd8, 0xff])
}

#[test]
fn killed_mjpeg_publisher_comes_back() {
    let Some(_) = bins::built("framebus-mjpeg") else {
        eprintln!("SKIP: framebus-mjpeg not built next to framebus-producer (cargo build --workspace --bins)");
        return;
    };
    let s = Scene::new("sup-kill");
    let port = free_port();
    let text = format!(
        "{}[publishers.mjpeg]\nlisten = \"127.0.0.1:{port}\"\ngrace = 1\n\
         [supervision]\nbackoff_initial = 0.5\nbackoff_max = 2\nhealth_interval = 0.5\n",
        camera(&s.bus)
    );
    let p = start(&s, &text);
    let pb = wait_publisher(&s, "mjpeg", Duration::from_secs(60), |p| {
        p["state"] == "running"
    });
    let pid = pb["pid"].as_u64().unwrap();
    let url = format!("http://127.0.0.1:{port}/{}/low.mjpg", s.bus);
    assert!(
        curl_gets_mjpeg(&url),
        "MJPEG before the kill; log:\n{}",
        log(&s)
    );

    // SAFETY: kill(2) on the publisher's pid, which the status file says
    // is alive (the supervisor has not reaped it).
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let pb = wait_publisher(&s, "mjpeg", Duration::from_secs(60), |p| {
        p["state"] == "running" && p["pid"].as_u64() != Some(pid)
    });
    assert_eq!(pb["restarts"], 1, "{pb:#}");
    assert_eq!(pb["last_reason"], "killed by signal 9");
    assert!(log(&s).contains("killed by signal 9"));
    // Viewers reconnect to the same address.
    assert!(
        curl_gets_mjpeg(&url),
        "MJPEG after the restart; log:\n{}",
        log(&s)
    );
    stop(p, &s);
}

#[test]
fn whole_service_two_cameras_rtsp_and_mjpeg() {
    if ["framebus-mjpeg", "framebus-rtsp", "framebus-encoder"]
        .iter()
        .any(|b| bins::built(b).is_none())
    {
        eprintln!("SKIP: framebus-mjpeg/-rtsp/-encoder not built next to framebus-producer (cargo build --workspace --bins)");
        return;
    }
    let s = Scene::new("sup-all");
    let bus2 = format!("{}-b", s.bus);
    let text = format!(
        "{}{}\
         [[encoder]]\nname = \"native\"\nbitrate = \"500k\"\ngrace = 1\n\
         [publishers.rtsp]\nlisten = \"127.0.0.1:0\"\n\
         [publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\ngrace = 1\n\
         [[publishers.mjpeg.profile]]\nname = \"low\"\nsize = \"160x120\"\nfps = 5\nquality = 70\n\
         [supervision]\nhealth_interval = 0.5\n",
        camera(&s.bus),
        camera(&bus2)
    );
    let p = start(&s, &text);
    let rtsp = wait_publisher(&s, "rtsp", Duration::from_secs(60), |p| {
        p["state"] == "running"
    });
    let mjpeg = wait_publisher(&s, "mjpeg", Duration::from_secs(60), |p| {
        p["state"] == "running"
    });
    let rtsp_addr = rtsp["address"].as_str().unwrap();
    let http_addr = mjpeg["address"].as_str().unwrap();

    // ffprobe sees the H.264 stream of the first camera.
    let out = Command::new("timeout")
        .args(["60", "ffprobe", "-v", "error", "-rtsp_transport", "tcp"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        // `native`: the encoder at the camera's size (320x240). The
        // RTSP publisher serves its encoded bus (before its rebuild, it
        // served its own built-in `native` profile: the same picture).
        .arg(format!("rtsp://{rtsp_addr}/{}/native", s.bus))
        .output()
        .unwrap();
    let probe = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && probe.contains("h264,320,240"),
        "ffprobe: {probe} {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log(&s)
    );
    // curl receives MJPEG of the second camera.
    assert!(curl_gets_mjpeg(&format!(
        "http://{http_addr}/{bus2}/low.mjpg"
    )));
    // The MJPEG publisher serves both buses (its index page and the
    // console's document show both).
    let console = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            &format!("http://{http_addr}/api/v1/console"),
        ])
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&console.stdout);
    assert!(
        console.contains(&format!("\"bus\":\"{}\"", s.bus))
            && console.contains(&format!("\"bus\":\"{bus2}\"")),
        "{console}"
    );
    let index = Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://{http_addr}/mjpeg")])
        .output()
        .unwrap();
    let index = String::from_utf8_lossy(&index.stdout);
    assert!(index.contains(&s.bus) && index.contains(&bus2), "{index}");

    if let Some((code, report)) = framebus_status(&s) {
        assert_eq!(code, 0, "{report:#}");
        assert_eq!(report["health"], "healthy");
        let streams = report["streams"][0]["streams"].to_string();
        assert!(streams.contains(&bus2), "{streams}");
        assert_eq!(
            report["supervisors"][0]["publishers"]
                .as_array()
                .unwrap()
                .len(),
            4,
            "mjpeg, rtsp and one encoder per camera"
        );
    }

    let pids: Vec<u64> = [&rtsp, &mjpeg]
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    stop(p, &s);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "publisher {pid} stopped"
        );
    }
    assert!(framebus::stat(&s.bus, Some(&s.dir)).is_err());
    assert!(framebus::stat(&bus2, Some(&s.dir)).is_err());
}

/// The processes in process group `pgid`, zombies included, as
/// `pid (comm) state` lines (from `/proc/*/stat`).
fn group_members(pgid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            out.push(format!("{head}) {}", f[0]));
        }
    }
    out
}

/// SIGKILLs what is left of a process group when dropped, so a failing
/// test leaves no publisher running (holding a port).
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if group_members(self.0).is_empty() {
            return;
        }
        if let Ok(pgid) = libc::pid_t::try_from(self.0) {
            // SAFETY: kill(2) of a process group the test saw populated just
            // now: a group id is not reused while the group has members.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

/// A `command =` wrapper script that starts the real publisher in the
/// background and waits for it: stopping the service must stop the whole
/// process group (the wrapper alone dies on SIGTERM and would leave the
/// publisher running, holding its port).
#[test]
fn wrapper_script_publisher_is_stopped_with_its_group() {
    let Some(mjpeg) = bins::built("framebus-mjpeg") else {
        eprintln!("SKIP: framebus-mjpeg not built next to framebus-producer (cargo build --workspace --bins)");
        return;
    };
    let s = Scene::new("sup-wrap");
    let wrapper = script(
        &s,
        "wrapper.sh",
        &format!("\"{}\" \"$@\" &\nwait", mjpeg.display()),
    );
    let text = format!(
        "{}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\ngrace = 1\ncommand = \"{}\"\n\
         [supervision]\nhealth_interval = 0.5\n",
        camera(&s.bus),
        wrapper.display()
    );
    let p = start(&s, &text);
    let pb = wait_publisher(&s, "mjpeg", Duration::from_secs(60), |p| {
        p["state"] == "running"
    });
    // The supervisor's child (the wrapper) leads the group.
    let pgid = u32::try_from(pb["pid"].as_u64().unwrap()).unwrap();
    let _guard = GroupGuard(pgid);
    let addr = pb["address"].as_str().unwrap().to_string();
    let members = group_members(pgid);
    assert!(
        members.len() >= 2 && members.iter().any(|m| m.contains("(framebus-mjpeg)")),
        "wrapper and publisher in group {pgid}: {members:?}"
    );

    stop(p, &s);
    let left = group_members(pgid);
    assert!(
        left.is_empty(),
        "processes of the publisher's group {pgid} left after the service stopped: {left:?}"
    );
    assert!(
        std::net::TcpListener::bind(&addr).is_ok(),
        "port {addr} still held after the service stopped"
    );
}

/// Every pid listed in `pids` (one a line, two runs) is gone: killed and
/// reaped by the supervisor, which still runs.
fn assert_background_gone(pids: &Path) {
    let listed: Vec<String> = std::fs::read_to_string(pids)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(listed.len(), 2, "two starts: {listed:?}");
    for pid in &listed {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the wrapper's background process {pid} survived: {}",
            std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
        );
    }
}

/// Config for a `command` script that is restarted once (0.2 s backoff)
/// and then given up on.
fn one_restart(scene: &Scene, command: &Path) -> String {
    format!(
        "{}[publishers.mjpeg]\nlisten = \"127.0.0.1:0\"\ncommand = \"{}\"\n\
         [supervision]\nbackoff_initial = 0.2\nbackoff_max = 0.2\nmax_restarts = 1\n\
         health_interval = 0.2\nhung_after = 1\nstop_grace = 0.5\n",
        camera(&scene.bus),
        command.display()
    )
}

/// A hung publisher started by a wrapper script: everything in its process
/// group is killed (and reaped) before it is restarted, not only the
/// wrapper.
#[test]
fn hung_wrapper_group_is_killed_before_restart() {
    let s = Scene::new("sup-hung-wrap");
    let pids = s.dir.join("sleep.pids");
    // Claims to listen where nothing answers; its real work (a sleep)
    // runs in the background. (A failing run leaves its sleeps behind;
    // they end by themselves.)
    let fake = script(
        &s,
        "hung-wrapper.sh",
        &format!(
            "sleep 120 &\necho $! >> {}\necho 'listening on http://127.0.0.1:9/'\nwait",
            pids.display()
        ),
    );
    let p = start(&s, &one_restart(&s, &fake));
    let pb = wait_publisher(&s, "mjpeg", Duration::from_secs(60), |p| {
        p["state"] == "failed"
    });
    assert_eq!(pb["restarts"], 1, "{pb:#}");
    assert!(
        pb["last_reason"].as_str().unwrap().contains("hung: "),
        "{pb:#}"
    );
    assert_background_gone(&pids);
    stop(p, &s);
}

/// A wrapper that exits while what it started keeps running: the
/// leftovers are stopped (SIGTERM) and reaped before the restart.
#[test]
fn crashed_wrapper_leftovers_are_stopped_before_restart() {
    let s = Scene::new("sup-crash-wrap");
    let pids = s.dir.join("sleep.pids");
    let fake = script(
        &s,
        "crashing-wrapper.sh",
        &format!("sleep 120 &\necho $! >> {}\nexit 3", pids.display()),
    );
    let p = start(&s, &one_restart(&s, &fake));
    let pb = wait_publisher(&s, "mjpeg", Duration::from_secs(60), |p| {
        p["state"] == "failed"
    });
    assert_eq!(pb["restarts"], 1, "{pb:#}");
    assert!(
        pb["last_reason"]
            .as_str()
            .unwrap()
            .contains("exited with status 3"),
        "{pb:#}"
    );
    assert_background_gone(&pids);
    assert!(
        log(&s).contains("the exited publisher left processes in its group"),
        "{}",
        log(&s)
    );
    stop(p, &s);
}

/// Whether `framebus-encoder` was built next to the producer (else SKIP).
fn have_encoder() -> bool {
    let ok = bins::built("framebus-encoder").is_some();
    if !ok {
        eprintln!("SKIP: framebus-encoder not built next to framebus-producer (cargo build --workspace --bins)");
    }
    ok
}

/// Two `[[encoder]]` on one test-pattern camera: two supervised encoder
/// children, each with its encoded bus; a reader of one gets keyframes;
/// an encoder killed with SIGKILL is restarted and the status says so.
#[test]
fn encoders_are_supervised_children() {
    if !have_encoder() {
        return;
    }
    let s = Scene::new("sup-enc");
    let text = format!(
        "{}[[encoder]]\nname = \"hi\"\nsize = \"320x240\"\nbitrate = \"400k\"\ngop = 10\nencoder = \"libx264\"\n\
         [[encoder]]\nname = \"lo\"\nsize = \"160x120\"\nfps = 5\nbitrate = \"100k\"\ngop = 5\ngrace = 1\n\
         [supervision]\nbackoff_initial = 0.3\nbackoff_max = 1\n",
        camera(&s.bus)
    );
    let p = start(&s, &text);
    let hi = format!("{}.h264.hi", s.bus);
    let lo = format!("{}.h264.lo", s.bus);
    let limit = Duration::from_secs(60);
    let hi_st = wait_encoder(&s, &hi, limit, |p| p["state"] == "running");
    let lo_st = wait_encoder(&s, &lo, limit, |p| p["state"] == "running");
    for (st, bus) in [(&hi_st, &hi), (&lo_st, &lo)] {
        assert_eq!(st["restarts"], 0, "{st:#}");
        assert!(
            st["command"]
                .as_str()
                .unwrap()
                .ends_with("framebus-encoder"),
            "{st:#}"
        );
        // The encoded bus exists, written by that very child.
        let info = framebus::stat(bus, Some(&s.dir)).expect("encoded bus exists");
        assert_eq!(info.state, "live");
        assert_eq!(Some(u64::from(info.producer_pid)), st["pid"].as_u64());
        assert_eq!(info.format.to_lowercase(), "h264", "{info:#?}");
    }

    // A reader of one encoded bus wakes its encoder and gets keyframes.
    let mut r = framebus::Reader::attach(
        &lo,
        framebus::ReaderOptions {
            wait: Some(Duration::from_secs(10)),
            shm_dir: Some(s.dir.clone()),
        },
    )
    .expect("attach to the encoded bus");
    let end = Instant::now() + Duration::from_secs(30);
    let mut keys = 0;
    while keys < 2 {
        assert!(
            Instant::now() < end,
            "{keys} keyframes in 30 s; log:\n{}",
            log(&s)
        );
        if let Ok(f) = r.next_encoded(Some(Duration::from_secs(5))) {
            keys += usize::from(f.is_keyframe());
        }
    }
    drop(r);

    // SIGKILL one encoder: it comes back (a new pid, writing its bus
    // again), and the status says why; the other is untouched.
    let pid = hi_st["pid"].as_u64().unwrap();
    // SAFETY: kill(2) on the encoder's pid, which the status file says is
    // alive (the supervisor has not reaped it).
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let back = wait_encoder(&s, &hi, limit, |p| {
        p["state"] == "running" && p["pid"].as_u64() != Some(pid)
    });
    assert_eq!(back["restarts"], 1, "{back:#}");
    assert_eq!(back["last_reason"], "killed by signal 9");
    let info = framebus::stat(&hi, Some(&s.dir)).expect("encoded bus back");
    assert_eq!(Some(u64::from(info.producer_pid)), back["pid"].as_u64());
    let lo_now = wait_encoder(&s, &lo, limit, |_| true);
    assert_eq!(lo_now["pid"], lo_st["pid"]);
    assert_eq!(lo_now["restarts"], 0);
    let l = log(&s);
    assert!(
        l.contains("encoder ") && l.contains("killed by signal 9"),
        "{l}"
    );

    if let Some((code, report)) = framebus_status(&s) {
        assert_eq!(code, 0, "{report:#}");
        let pubs = report["supervisors"][0]["publishers"].to_string();
        assert!(pubs.contains(&hi) && pubs.contains(&lo), "{pubs}");
    }
    let pids = [
        back["pid"].as_u64().unwrap(),
        lo_st["pid"].as_u64().unwrap(),
    ];
    stop(p, &s);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "encoder {pid} stopped"
        );
    }
    assert!(
        framebus::stat(&hi, Some(&s.dir)).is_err(),
        "encoded bus gone"
    );
}

/// `[publishers.rtsp]` without `[[encoder]]`: framebus-rtsp gets neither
/// profiles nor grace, and the default encoder `high` runs (logged).
#[test]
fn rtsp_gets_no_profiles_and_the_default_encoder_runs() {
    if !have_encoder() {
        return;
    }
    let s = Scene::new("sup-rtsp-args");
    let args = s.dir.join("rtsp.args");
    let fake = script(
        &s,
        "fake-rtsp.sh",
        &format!("printf '%s\\n' \"$@\" > {}\nexec sleep 120", args.display()),
    );
    let text = format!(
        "{}[publishers.rtsp]\nlisten = \"127.0.0.1:0\"\nmax_viewers = 3\nhealth_check = false\ncommand = \"{}\"\n",
        camera(&s.bus),
        fake.display()
    );
    let p = start(&s, &text);
    let high = format!("{}.h264.high", s.bus);
    wait_encoder(&s, &high, Duration::from_secs(60), |p| {
        p["state"] == "running"
    });
    wait_publisher(&s, "rtsp", Duration::from_secs(60), |p| p["pid"].is_u64());
    let end = Instant::now() + Duration::from_secs(10);
    while !args.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got: Vec<String> = std::fs::read_to_string(&args)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got, ["--listen", "127.0.0.1:0", "--max-clients", "3"]);
    let l = log(&s);
    assert!(
        l.contains("no [[encoder]] is configured: using the default encoder `high`"),
        "{l}"
    );
    let info = framebus::stat(&high, Some(&s.dir)).unwrap();
    assert_eq!((info.width, info.height), (1920, 1080));
    stop(p, &s);
}

/// `[publishers.recorder]` (a script standing in for `framebus-recorder`,
/// which records its arguments and environment): it is started with the
/// generated flags, its credentials in `FRAMEBUS_RECORDER_AUTH` and no
/// other publisher's, and reported in the status file with the URL of its
/// `listening on` line.
#[test]
fn recorder_is_a_supervised_publisher() {
    let s = Scene::new("sup-recorder");
    let args = s.dir.join("recorder.args");
    let env = s.dir.join("recorder.env");
    let fake = script(
        &s,
        "fake-recorder.sh",
        &format!(
            "env | grep '^FRAMEBUS_.*AUTH' | sort > {env}\nprintf '%s\\n' \"$@\" > {args}.tmp\n\
             mv {args}.tmp {args}\necho 'listening on http://127.0.0.1:8090/'\nexec sleep 120",
            env = env.display(),
            args = args.display()
        ),
    );
    let text = format!(
        "{}[publishers.recorder]\nlisten = \"127.0.0.1:0\"\nauth = \"rec:pw\"\nretain_bytes = \"1G\"\n\
         health_check = false\ncommand = \"{}\"\n",
        camera(&s.bus),
        fake.display()
    );
    let p = start_with_env(
        &s,
        &text,
        &[
            ("FRAMEBUS_MJPEG_AUTH", "leak:1"),
            ("FRAMEBUS_RTSP_AUTH", "leak:2"),
        ],
    );
    let pb = wait_publisher(&s, "recorder", Duration::from_secs(60), |p| {
        p["state"] == "running" && p["url"].is_string()
    });
    assert_eq!(pb["url"], "http://127.0.0.1:8090/", "{pb:#}");
    assert_eq!(pb["auth"], true, "{pb:#}");
    assert_eq!(pb["command"], fake.to_str().unwrap(), "{pb:#}");
    let end = Instant::now() + Duration::from_secs(10);
    while !args.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got: Vec<String> = std::fs::read_to_string(&args)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "--listen",
            "127.0.0.1:0",
            "--preroll-max",
            "30s",
            "--fragment",
            "1s",
            "--segment",
            "60s",
            "--max-duration",
            "3600s",
            "--retain-bytes",
            "1073741824",
            "--max-recordings",
            "16"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "FRAMEBUS_RECORDER_AUTH=rec:pw\n"
    );
    stop(p, &s);
}

/// `framebus doctor` in a container-like shm directory: a private tmpfs
/// (`--shm-size`). Too small: the doctor says how much is missing and
/// exits 1, and the service refuses to start before it creates anything.
/// Big enough: the service starts, and every bus it and its encoders
/// create (camera, sound, Opus, two H.264 profiles) is exactly as large as
/// the doctor said.
#[test]
fn doctor_sizes_every_bus_and_a_small_shm_stops_the_service_at_start() {
    if !have_encoder() {
        return;
    }
    let Some(framebus) = bins::or_skip("framebus") else {
        return;
    };
    let s = Scene::new("doctor");
    let shm = s.dir.join("shm");
    std::fs::create_dir(&shm).unwrap();
    let config = s.dir.join("doctor.toml");
    // The default encoder size is the camera's; `lo` sets its own.
    std::fs::write(
        &config,
        format!(
            "[[camera]]\nbus = \"{}\"\nsize = \"640x360\"\nfps = 30\naudio = \"tone\"\n\
             [[encoder]]\nname = \"hi\"\nbitrate = \"2M\"\nencoder = \"libx264\"\n\
             [[encoder]]\nname = \"lo\"\nsize = \"320x180\"\nbitrate = \"300k\"\ngop = 30\nencoder = \"libx264\"\n",
            s.bus
        ),
    )
    .unwrap();
    let doctor = |tmpfs: &framebus_test_support::mountns::PrivateTmpfs, json: bool| {
        let mut c = tmpfs.command(&framebus);
        c.env("FRAMEBUS_SHM_DIR", &shm)
            .args(["doctor", "--config"])
            .arg(&config);
        if json {
            c.arg("--json");
        }
        framebus_test_support::run(&mut c, Duration::from_secs(30))
    };

    // 8 MiB: less than the camera and its sound (9.5 MiB), let alone the
    // whole plan (34 MiB).
    let small = framebus_test_support::mountns::PrivateTmpfs::new(&shm, "8m");
    let out = doctor(&small, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("{}.h264.hi", s.bus))
            && text.contains("error: the buses need")
            && text.contains("--shm-size=64m")
            && text.contains("tmpfs on"),
        "{text}"
    );
    let logf = std::fs::File::create(s.dir.join("producer.log")).unwrap();
    let mut p = ChildGuard::spawn(
        small
            .command(BIN)
            .env("FRAMEBUS_SHM_DIR", &shm)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf),
    );
    let st = p.wait_exit(Duration::from_secs(20));
    let said = log(&s);
    assert_eq!(st.code(), Some(1), "{said}");
    assert!(
        said.contains("shared memory: the buses need") && said.contains("framebus doctor"),
        "{said}"
    );
    assert_eq!(small.files(), Vec::new(), "nothing is created: {said}");
    drop(small);

    // 64 MiB: it runs, and the doctor's sizes are the files' sizes.
    let big = framebus_test_support::mountns::PrivateTmpfs::new(&shm, "64m");
    let out = doctor(&big, true);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    let planned: Vec<(String, u64)> = report["buses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                framebus::segment_path(&shm, b["name"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                b["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(planned.len(), 5, "{report:#}");
    let logf = std::fs::File::create(s.dir.join("producer.log")).unwrap();
    let p = ChildGuard::spawn(
        big.command(BIN)
            .env("FRAMEBUS_SHM_DIR", &shm)
            .env("RUST_LOG", "info")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf),
    );
    let buses = |files: &[(String, u64)]| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = files
            .iter()
            .filter(|(n, _)| !n.starts_with("framebus-status."))
            .cloned()
            .collect();
        v.sort();
        v
    };
    let mut want = planned.clone();
    want.sort();
    let end = Instant::now() + Duration::from_secs(60);
    let mut seen = buses(&big.files());
    while seen.len() < want.len() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        seen = buses(&big.files());
    }
    assert_eq!(
        seen,
        want,
        "the buses as created against the doctor's plan; log:\n{}",
        log(&s)
    );
    let l = log(&s);
    assert!(l.contains("shared memory checked"), "{l}");
    drop(p);
}

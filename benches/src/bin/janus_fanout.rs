//! Fan-out through Janus (docs/scale-out.md): N viewers served by a Janus
//! Streaming-plugin mountpoint from **one** framebus output, and what that
//! costs framebus. The question: framebus's CPU with 1 and with N
//! Janus viewers (goal: flat, Janus carries the fan-out), how many viewers
//! this machine serves, and the latency the extra hop adds.
//!
//! One run:
//!
//! 1. `framebus-producer` (640x360@30 test pattern with the time code),
//!    one `framebus-encoder` ([`PROFILE`], libx264, `--no-adapt`), a real
//!    Janus 1.1 with one `rtp` mountpoint ([`Janus::start`], the
//!    integration tests' config), and `framebus-rtsp --forward
//!    BUS/low=rtp://127.0.0.1:PORT?rtcp=PORT` feeding it;
//! 2. for each N of `--viewers` (1,5,10,20,30,40): N peer connections in one
//!    headless Chromium page watch the mountpoint with janus.js for
//!    `--seconds` ([`browser::janus_play`], viewer 0 reads the time codes),
//!    while this process samples every second the CPU (utime + stime of
//!    `/proc/PID/stat`, % of one core) of framebus-rtsp, the encoder, the
//!    producer, Janus and Chromium (node and its whole process tree), and
//!    the machine's idle time (`/proc/stat`). The measurement window starts
//!    `--warmup` seconds after Janus lists N viewers on the mountpoint and
//!    ends a second before the page stops playing. The sweep stops once
//!    the viewers decode less than 90 % of the frames or the machine is
//!    less than 10 % idle;
//! 3. right after N = 1, the same encoded stream straight from framebus:
//!    one WHEP viewer of `framebus-mjpeg` (started as the WHEP tests start
//!    it), for the latency of the Janus hop in the same run;
//! 4. a markdown report on stdout and in `benches/janus/results/DATE.md`.
//!
//! Run with `cargo run --release --locked -p framebus-benches --bin
//! janus_fanout [-- --viewers 1,5 --seconds 10]` after `make build
//! node-deps` (the binaries in target/release, the browser driver's
//! node_modules) and `apt-get install janus chromium` (`make deps`).
//!
//! Every process runs in its own process group under a guard of
//! framebus-test-support; a panic unwinds through the guards, and
//! SIGINT / SIGTERM / SIGHUP stop every child (SIGTERM to each process
//! group, SIGKILL after 5 s) so the run unwinds the same way.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use framebus_test_support::browser::{self, PlayReport, Stopped, Summary, WhepPlay};
use framebus_test_support::janus::Janus;
use framebus_test_support::port::free_udp_port;
use framebus_test_support::{bins, listening, Encoder};

/// The encoded output Janus receives: constrained baseline (the
/// mountpoint's `profile-level-id=42e01f`), a 2 s GOP.
const PROFILE: &str = "low=640x360@30,h264=baseline,gop=60";
/// Its name (`BUS/low`, `{bus}.h264.low`).
const PROFILE_NAME: &str = "low";
/// The producer's picture.
const SIZE: &str = "640x360";
/// Its frame rate.
const FPS: f64 = 30.0;
/// Below this share (%) of the expected frames decoded (worst viewer),
/// the machine no longer serves N viewers: the sweep stops
/// (`--min-decoded`).
const MIN_DECODED: f64 = 90.0;
/// Below this machine idle (% of all cores) the sweep stops
/// (`--min-idle`).
const MIN_IDLE: f64 = 10.0;
/// How often the CPU is sampled.
const SAMPLE: Duration = Duration::from_secs(1);

const USAGE: &str = "usage: janus_fanout [--viewers 1,5,10,20,30,40] [--seconds 20] \
                     [--warmup 3] [--min-decoded 90] [--min-idle 10] [--quick] [--no-write] \
                     [--out-dir DIR]\n  --quick: --viewers 1,5 --seconds 10";

/// Set by the signal handler.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set once [`stop_children`] is done.
static STOPPED: AtomicBool = AtomicBool::new(false);

struct Opts {
    viewers: Vec<u32>,
    seconds: f64,
    warmup: f64,
    min_decoded: f64,
    min_idle: f64,
    write: bool,
    out_dir: PathBuf,
    args: Vec<String>,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Opts {
        viewers: vec![1, 5, 10, 20, 30, 40],
        seconds: 20.0,
        warmup: 3.0,
        min_decoded: MIN_DECODED,
        min_idle: MIN_IDLE,
        write: true,
        out_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("janus/results"),
        args: args.clone(),
    };
    let mut it = args.iter();
    let bad = |why: &str| -> ! {
        eprintln!("{why}\n{USAGE}");
        std::process::exit(64)
    };
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| bad(&format!("{a}: value missing")))
        };
        match a.as_str() {
            "--viewers" => {
                o.viewers = value()
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse()
                            .unwrap_or_else(|_| bad("--viewers N,N,..."))
                    })
                    .collect();
            }
            "--seconds" => o.seconds = value().parse().unwrap_or_else(|_| bad("--seconds S")),
            "--warmup" => o.warmup = value().parse().unwrap_or_else(|_| bad("--warmup S")),
            "--min-decoded" => {
                o.min_decoded = value().parse().unwrap_or_else(|_| bad("--min-decoded PCT"))
            }
            "--min-idle" => o.min_idle = value().parse().unwrap_or_else(|_| bad("--min-idle PCT")),
            "--out-dir" => o.out_dir = PathBuf::from(value()),
            "--quick" => {
                o.viewers = vec![1, 5];
                o.seconds = 10.0;
            }
            "--no-write" => o.write = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => bad(&format!("unknown argument {other}")),
        }
    }
    if o.viewers.is_empty() || o.viewers.contains(&0) {
        bad("--viewers: at least one, each > 0");
    }
    if !(o.seconds >= 5.0 && o.warmup >= 0.0 && o.warmup + 2.0 < o.seconds) {
        bad("--seconds must be >= 5 and leave 2 s after --warmup");
    }
    o
}

// ---------------------------------------------------------------------------
// Signals: stop every child, let the run unwind through its guards.

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signals() {
    // What unwinds because its children were stopped is not news.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !STOP.load(Ordering::SeqCst) {
            default(info);
        }
    }));
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe);
        // `signal` has no other effect on memory.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_millis(100));
        if STOP.load(Ordering::SeqCst) {
            eprintln!("janus_fanout: interrupted; stopping every child");
            stop_children();
            STOPPED.store(true, Ordering::SeqCst);
            // The main thread unwinds (its children are gone); if it hangs,
            // leave anyway.
            std::thread::sleep(Duration::from_secs(30));
            eprintln!("janus_fanout: the run did not unwind within 30 s; exiting");
            std::process::exit(130);
        }
    });
}

fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory effects. Callers pass a process (or,
    // negative, a process group) of our own children seen a moment ago,
    // or a Chromium process of our own browser runs; ESRCH once gone.
    unsafe { libc::kill(pid, sig) };
}

/// Our live descendants (zombies, which the guards reap, excluded).
fn live_descendants() -> Vec<i32> {
    let procs = scan();
    descendants(&procs, std::process::id() as i32)
        .into_iter()
        .filter(|p| procs.get(p).is_some_and(|s| s.state != 'Z'))
        .collect()
}

/// Chromium processes of our browser runs, wherever they are in the
/// process tree (once node is gone, init adopts them; Chromium's crash
/// handler is double-forked from the start): their environment has the
/// driver's `TMPDIR`, `$TMPDIR/framebus-t-chromium-{our pid}-N`
/// (`browser::drive_script`).
fn chromium_strays() -> Vec<i32> {
    let me = std::process::id() as i32;
    let tag = format!("framebus-t-chromium-{me}-");
    scan()
        .into_iter()
        .filter(|(pid, p)| *pid != me && p.state != 'Z')
        .filter(|(pid, _)| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|e| e.windows(tag.len()).any(|w| w == tag.as_bytes()))
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Stops every child: SIGTERM to the browser drivers (node: playwright
/// then closes Chromium), then to the process group of every other
/// descendant (each child of the test-support guards leads its own; the
/// producer and the encoder then remove their buses); SIGKILL to those
/// groups and to any Chromium process of ours after 5 s.
fn stop_children() {
    let me = std::process::id() as i32;
    // SAFETY: getpgrp(2) has no memory effects.
    let own = unsafe { libc::getpgrp() };
    let procs = scan();
    let desc = descendants(&procs, me);
    for p in &desc {
        if procs.get(p).is_some_and(|s| s.comm == "node") {
            kill(*p, libc::SIGTERM);
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let mut groups: Vec<i32> = desc
        .iter()
        .filter_map(|p| procs.get(p).map(|s| s.pgrp))
        .filter(|&g| g > 1 && g != own)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for &g in &groups {
        kill(-g, libc::SIGTERM);
    }
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && !(live_descendants().is_empty() && chromium_strays().is_empty()) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for &g in &groups {
        kill(-g, libc::SIGKILL);
    }
    for p in chromium_strays() {
        kill(p, libc::SIGKILL);
    }
}

// ---------------------------------------------------------------------------
// /proc

/// One process of `/proc/PID/stat`.
#[derive(Clone, Debug)]
struct Proc {
    comm: String,
    /// `R`, `S`, `Z`, ...
    state: char,
    ppid: i32,
    pgrp: i32,
    /// Clock ticks since boot at its start (with the pid, a key that
    /// survives pid reuse).
    start: u64,
    /// utime + stime, clock ticks (all its threads).
    ticks: u64,
}

fn read_stat(pid: i32) -> Option<Proc> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    // Fields from 3 (state) on.
    let f: Vec<&str> = s[close + 1..].split_whitespace().collect();
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Proc {
        comm,
        state: f.first()?.chars().next()?,
        ppid: n(4)? as i32,
        pgrp: n(5)? as i32,
        ticks: n(14)? + n(15)?,
        start: n(22)?,
    })
}

/// Every process now.
fn scan() -> HashMap<i32, Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, read_stat(pid)?)))
        .collect()
}

/// The descendants of `root` (not `root`).
fn descendants(procs: &HashMap<i32, Proc>, root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, p) in procs {
        children.entry(p.ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// (idle + iowait, total) clock ticks of all CPUs (`/proc/stat`).
fn cpu_times() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total = v.iter().take(8).sum();
    (
        v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0),
        total,
    )
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf(3) has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

// ---------------------------------------------------------------------------
// Sampling

/// The processes measured, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Rtsp,
    Encoder,
    Producer,
    Janus,
    Chromium,
    Mjpeg,
}

const ROLES: [Role; 6] = [
    Role::Rtsp,
    Role::Encoder,
    Role::Producer,
    Role::Janus,
    Role::Chromium,
    Role::Mjpeg,
];

/// The pids of the roles that are one process each.
#[derive(Clone, Debug, Default)]
struct Pids {
    rtsp: Option<u32>,
    encoder: Option<u32>,
    producer: Option<u32>,
    janus: Option<u32>,
    mjpeg: Option<u32>,
}

impl Pids {
    fn of(&self, r: Role) -> Option<i32> {
        match r {
            Role::Rtsp => self.rtsp,
            Role::Encoder => self.encoder,
            Role::Producer => self.producer,
            Role::Janus => self.janus,
            Role::Mjpeg => self.mjpeg,
            Role::Chromium => None,
        }
        .map(|p| p as i32)
    }
}

/// One sample.
struct Snap {
    t: Instant,
    idle: u64,
    total: u64,
    /// Per role: (pid, start) → ticks.
    roles: Vec<HashMap<(i32, u64), u64>>,
    /// Viewers the server counts (Janus's mountpoint, framebus's WHEP
    /// sessions); `None` when it did not answer.
    viewers: Option<u32>,
}

fn snap(pids: &Pids, viewers: Option<u32>) -> Snap {
    let procs = scan();
    let (idle, total) = cpu_times();
    let me = std::process::id() as i32;
    let mut roles = Vec::with_capacity(ROLES.len());
    for r in ROLES {
        let mut m = HashMap::new();
        let mut add = |pid: i32| {
            if let Some(p) = procs.get(&pid) {
                m.insert((pid, p.start), p.ticks);
            }
        };
        match r {
            // The browser driver (node, started by `janus_play` /
            // `whep_play`) and everything under it.
            Role::Chromium => {
                for (&pid, p) in &procs {
                    if p.ppid == me && p.comm == "node" {
                        add(pid);
                        for d in descendants(&procs, pid) {
                            add(d);
                        }
                    }
                }
            }
            _ => {
                if let Some(pid) = pids.of(r) {
                    add(pid);
                }
            }
        }
        roles.push(m);
    }
    Snap {
        t: Instant::now(),
        idle,
        total,
        roles,
        viewers,
    }
}

/// CPU over samples `a..=b`.
#[derive(Clone, Debug, Default)]
struct Cpu {
    /// Per role (ROLES order), % of one core.
    pct: Vec<f64>,
    /// Machine idle, % of all cores.
    idle: f64,
}

impl Cpu {
    fn of(&self, r: Role) -> f64 {
        let i = ROLES.iter().position(|&x| x == r).expect("a role");
        self.pct.get(i).copied().unwrap_or(0.0)
    }

    fn framebus(&self) -> f64 {
        self.of(Role::Rtsp) + self.of(Role::Encoder) + self.of(Role::Producer)
    }
}

fn cpu(snaps: &[Snap], a: usize, b: usize) -> Cpu {
    let wall = snaps[b].t.duration_since(snaps[a].t).as_secs_f64();
    let tck = clk_tck();
    let pct = (0..ROLES.len())
        .map(|i| {
            // Each process's last value in the window minus its value at
            // its start (0 for one born inside the window).
            let mut last: HashMap<(i32, u64), u64> = HashMap::new();
            for s in &snaps[a..=b] {
                for (k, &v) in &s.roles[i] {
                    last.insert(*k, v);
                }
            }
            let ticks: u64 = last
                .iter()
                .map(|(k, &v)| v.saturating_sub(snaps[a].roles[i].get(k).copied().unwrap_or(0)))
                .sum();
            ticks as f64 / tck / wall * 100.0
        })
        .collect();
    let dt = snaps[b].total.saturating_sub(snaps[a].total).max(1);
    let idle = snaps[b].idle.saturating_sub(snaps[a].idle) as f64 / dt as f64 * 100.0;
    Cpu { pct, idle }
}

/// Runs `drive` (a browser run of `seconds` with `want` viewers) in a
/// thread while sampling; the CPU over the window where `count` says all
/// `want` viewers are on (from `warmup` s after they are to 1 s before the
/// page stops), or over the whole run when `count` never says so (then
/// `windowed` is false).
fn measure<R: Send>(
    pids: &Pids,
    count: &dyn Fn() -> Option<u32>,
    want: u32,
    seconds: f64,
    warmup: f64,
    drive: impl FnOnce() -> R + Send,
) -> (Result<R, String>, Cpu, bool) {
    std::thread::scope(|s| {
        let h = s.spawn(drive);
        let mut snaps = vec![snap(pids, None)];
        while !h.is_finished() {
            let next = snaps.last().expect("a sample").t + SAMPLE;
            while Instant::now() < next && !h.is_finished() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let n = if STOP.load(Ordering::SeqCst) {
                None
            } else {
                count()
            };
            snaps.push(snap(pids, n));
        }
        let r = h.join().map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the browser run panicked".into())
        });
        // The window: all viewers on, after the warm-up, before the end.
        let on: Vec<usize> = (0..snaps.len())
            .filter(|&i| snaps[i].viewers.is_some_and(|v| v >= want))
            .collect();
        let window = on.first().zip(on.last()).and_then(|(&first, &last)| {
            let t0 = snaps[first].t;
            let from = t0 + Duration::from_secs_f64(warmup);
            let to = (t0 + Duration::from_secs_f64((seconds - 1.0).max(warmup + 1.0)))
                .min(snaps[last].t);
            let a = (first..snaps.len()).find(|&i| snaps[i].t >= from)?;
            let b = (0..snaps.len()).rev().find(|&i| snaps[i].t <= to)?;
            (b > a).then_some((a, b))
        });
        let (windowed, (a, b)) = match window {
            Some(w) => (true, w),
            None => (false, (0, snaps.len() - 1)),
        };
        (r, cpu(&snaps, a, b), windowed)
    })
}

// ---------------------------------------------------------------------------
// Servers

/// Viewers on the mountpoint, as Janus counts them (`info`'s `viewers`).
fn janus_viewers(janus: &Janus) -> Option<u32> {
    let info = janus.mountpoint_info();
    info["viewers"].as_u64().map(|v| v as u32)
}

/// `framebus_webrtc_sessions` of framebus-mjpeg's `/metrics`.
fn whep_sessions(addr: &str) -> Option<u32> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines().find_map(|l| {
        let v = l.strip_prefix("framebus_webrtc_sessions")?;
        let v = v.strip_prefix("{}").unwrap_or(v);
        v.trim().parse::<f64>().ok().map(|v| v as u32)
    })
}

/// A server binary of target/release on port 0 (`args` after
/// `--listen 127.0.0.1:0`), its `lines` listening lines read; stopped with
/// SIGTERM when dropped.
fn server(name: &str, args: &[&str], lines: usize) -> (Stopped, Vec<listening::Listening>) {
    let (child, l) = listening::spawn(
        Command::new(bins::path(name))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("FRAMEBUS_RTSP_AUTH")
            .env_remove("FRAMEBUS_MJPEG_AUTH")
            .env_remove("FRAMEBUS_MJPEG_TOKEN")
            .stderr(Stdio::inherit()),
        lines,
    );
    (
        Stopped {
            child,
            buses: Vec::new(),
        },
        l,
    )
}

// ---------------------------------------------------------------------------
// One point

/// What one browser run gave.
#[derive(Debug, Default)]
struct Point {
    viewers: u32,
    connected: usize,
    cpu: Cpu,
    windowed: bool,
    frames_min: u64,
    frames_median: u64,
    /// Worst viewer's frames decoded / frames expected after its first.
    decoded_min: f64,
    packets_lost: i64,
    latency: Option<Summary>,
    /// Viewer 0: presentation − last packet of the frame received.
    to_present: Option<Summary>,
    /// Viewer 0: mean jitter buffer delay, ms.
    jitter_buffer_ms: Option<f64>,
    tc_frames: u64,
    browser: Option<String>,
    error: Option<String>,
    notes: Vec<String>,
}

fn point(
    viewers: u32,
    seconds: f64,
    cpu: Cpu,
    windowed: bool,
    r: Result<PlayReport, String>,
) -> Point {
    let mut p = Point {
        viewers,
        cpu,
        windowed,
        ..Point::default()
    };
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            p.error = Some(e.lines().next().unwrap_or("").chars().take(300).collect());
            return p;
        }
    };
    p.browser = r.browser.clone();
    p.connected = r
        .viewers
        .iter()
        .filter(|v| v.connection_state == "connected")
        .count();
    let mut frames: Vec<u64> = r.viewers.iter().map(|v| v.stats.frames_decoded()).collect();
    frames.sort_unstable();
    p.frames_min = frames.first().copied().unwrap_or(0);
    p.frames_median = frames.get(frames.len() / 2).copied().unwrap_or(0);
    p.decoded_min = r
        .viewers
        .iter()
        .map(|v| {
            let Some(first) = v.first_frame_ms else {
                return 0.0;
            };
            let expected = FPS * (seconds - first / 1000.0).max(1.0);
            v.stats.frames_decoded() as f64 / expected
        })
        .fold(f64::INFINITY, f64::min);
    if r.viewers.len() < viewers as usize {
        p.decoded_min = 0.0;
        p.notes
            .push(format!("{} of {viewers} viewers reported", r.viewers.len()));
    }
    p.packets_lost = r
        .viewers
        .iter()
        .filter_map(|v| v.stats.inbound.as_ref()?.packets_lost)
        .sum();
    if let Some(tc) = &r.timecode {
        p.latency = tc.latency_ms;
        p.to_present = tc.network_to_present_ms;
        p.tc_frames = tc.decoded;
    }
    p.jitter_buffer_ms = r
        .viewers
        .first()
        .and_then(|v| v.stats.inbound.as_ref()?.jitter_buffer_ms);
    let hangups: Vec<&str> = r
        .viewers
        .iter()
        .filter_map(|v| v.janus.as_ref()?.hangup.as_deref())
        .collect();
    if !hangups.is_empty() {
        p.notes
            .push(format!("{} Janus hang-ups ({})", hangups.len(), hangups[0]));
    }
    let slow: u64 = r
        .viewers
        .iter()
        .filter_map(|v| Some(v.janus.as_ref()?.slow_links))
        .sum();
    if slow > 0 {
        p.notes.push(format!("{slow} slow-link events"));
    }
    let errors: Vec<&String> = r
        .viewers
        .iter()
        .filter_map(|v| v.post_error.as_ref().or(v.answer_error.as_ref()))
        .collect();
    if !errors.is_empty() {
        p.notes
            .push(format!("{} viewer errors ({})", errors.len(), errors[0]));
    }
    p
}

// ---------------------------------------------------------------------------
// Report

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} × {model}, Linux {}", kernel.trim())
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn lat(s: &Option<Summary>) -> String {
    s.map_or("–".into(), |s| {
        format!("{} / {} / {}", f1(s.p50), f1(s.p90), f1(s.p99))
    })
}

struct Run {
    command: String,
    started: String,
    uptime_before: String,
    uptime_after: String,
    janus_version: String,
    seconds: f64,
    warmup: f64,
    min_decoded: f64,
    min_idle: f64,
    points: Vec<Point>,
    direct: Option<Point>,
    stop_reason: Option<String>,
    skipped: Vec<u32>,
}

fn report(run: &Run) -> String {
    let mut o = String::new();
    let mut w = |s: &str| {
        o.push_str(s);
        o.push('\n');
    };
    let browser = run
        .points
        .iter()
        .find_map(|p| p.browser.clone())
        .unwrap_or_else(|| "?".into());
    w(&format!("## Janus fan-out benchmark, {}", run.started));
    w("");
    w(&format!("Command: `{}`  ", run.command));
    w(&format!(
        "Machine: {}, {}, Chromium {browser}  ",
        machine(),
        run.janus_version
    ));
    w(&format!("`uptime` before: `{}`  ", run.uptime_before));
    w(&format!("`uptime` after: `{}`", run.uptime_after));
    w("");
    w(&format!(
        "framebus-producer test pattern {SIZE}@30 with the time code → one framebus-encoder \
         (`{PROFILE}`, libx264, `--no-adapt`) → `framebus-rtsp --forward \
         BUS/{PROFILE_NAME}=rtp://127.0.0.1:PORT?rtcp=PORT` → Janus 1.1 Streaming plugin `rtp` \
         mountpoint → N peer connections in one headless Chromium page (janus.js; viewer 0 reads \
         the time codes). Everything on loopback, one machine. CPU: utime + stime from \
         `/proc/PID/stat` over the window where Janus lists all N viewers, from {} s after they \
         joined to 1 s before the page stops ({} s per point), % of one core; machine idle \
         from `/proc/stat`, % of all cores. A figure taken at a load average above ~1 is a \
         harness check, not a result.",
        run.warmup, run.seconds
    ));
    w("");
    w(&format!(
        "### framebus CPU against Janus viewers ({} s per point), % of one core",
        run.seconds
    ));
    w("");
    w("| viewers (connected) | framebus (rtsp + encoder + producer) | ÷ 1 viewer | framebus-rtsp --forward | framebus-encoder | framebus-producer | Janus | Chromium + driver | machine idle | frames decoded min / median (worst % of expected) | packets lost | viewer 0 latency p50 / p90 / p99, ms |");
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|");
    // Points where every viewer connected: the only ones compared.
    let served = |p: &&Point| p.error.is_none() && p.connected == p.viewers as usize;
    let base = run
        .points
        .iter()
        .filter(served)
        .min_by_key(|p| p.viewers)
        .map(|p| p.cpu.framebus())
        .filter(|&c| c > 0.0);
    for p in &run.points {
        if let Some(e) = &p.error {
            w(&format!(
                "| {} | – | – | – | – | – | – | – | – | failed: {} | – | – |",
                p.viewers,
                e.replace('|', "\\|")
            ));
            continue;
        }
        let ratio = match base {
            Some(b) if served(&p) => format!("**{:.2}**", p.cpu.framebus() / b),
            _ => "–".into(),
        };
        w(&format!(
            "| {} ({}){} | {} | {ratio} | {} | {} | {} | {} | {} | {:.0} % | {} / {} ({:.0} %) | {} | {} |",
            p.viewers,
            p.connected,
            if p.windowed { "" } else { " †" },
            f1(p.cpu.framebus()),
            f1(p.cpu.of(Role::Rtsp)),
            f1(p.cpu.of(Role::Encoder)),
            f1(p.cpu.of(Role::Producer)),
            f1(p.cpu.of(Role::Janus)),
            f1(p.cpu.of(Role::Chromium)),
            p.cpu.idle,
            p.frames_min,
            p.frames_median,
            p.decoded_min * 100.0,
            p.packets_lost,
            lat(&p.latency),
        ));
    }
    w("");
    let ok: Vec<&Point> = run.points.iter().filter(served).collect();
    if let (Some(b), Some(last)) = (base, ok.last()) {
        let worst = ok
            .iter()
            .map(|p| p.cpu.framebus() / b)
            .fold(f64::NEG_INFINITY, f64::max);
        w(&format!(
            "- framebus CPU({n}) ÷ CPU({}) = {:.2} (largest ratio over the points where every \
             viewer connected: {worst:.2}); goal ≈ 1.0 (flat: Janus carries the fan-out) — **{}**.",
            ok[0].viewers,
            last.cpu.framebus() / b,
            if worst <= 1.15 { "met" } else { "not met" },
            n = last.viewers,
        ));
    }
    if let Some(best) = ok
        .iter()
        .filter(|p| p.decoded_min * 100.0 >= run.min_decoded && p.connected == p.viewers as usize)
        .max_by_key(|p| p.viewers)
    {
        w(&format!(
            "- Most viewers served with every viewer decoding ≥ {:.0} % of the frames: **{}** \
             (Chromium {} % of one core, machine idle {:.0} %).",
            run.min_decoded,
            best.viewers,
            f1(best.cpu.of(Role::Chromium)),
            best.cpu.idle
        ));
    }
    match &run.stop_reason {
        Some(why) => w(&format!(
            "- Sweep stopped: {why}{}.",
            if run.skipped.is_empty() {
                String::new()
            } else {
                format!(" (not run: {:?})", run.skipped)
            }
        )),
        None => w(&format!(
            "- Sweep not stopped by the limits (worst viewer ≥ {:.0} % of frames, idle ≥ {:.0} %): \
             the machine may serve more.",
            run.min_decoded, run.min_idle
        )),
    }
    for p in &run.points {
        if p.error.is_none() && p.connected == 0 && p.viewers >= 6 {
            w(&format!(
                "- N = {}: no viewer connected (janus.js talks to Janus over its WebSocket \
                 transport: Chromium's 6 HTTP connections per host are not the limit); see \
                 the driver's log.",
                p.viewers
            ));
        }
        if !p.notes.is_empty() {
            w(&format!("- N = {}: {}.", p.viewers, p.notes.join("; ")));
        }
        if !p.windowed && p.error.is_none() {
            w(&format!(
                "- † N = {}: Janus never listed all viewers; CPU over the whole browser run \
                 (Chromium's start included).",
                p.viewers
            ));
        }
    }
    w(
        "- The viewers all run in one Chromium page on the same 2 cores as framebus and \
       Janus.",
    );
    w("");
    w("### Latency of the Janus hop (same run, one viewer each), ms");
    w("");
    w("| path | frames (time codes read) | p50 | p90 | p99 | max | receive → present p50 | jitter buffer (mean) | framebus-mjpeg CPU |");
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let one = run
        .points
        .iter()
        .find(|p| p.viewers == 1 && p.error.is_none());
    let row = |what: &str, p: &Point, mjpeg: bool| {
        let m = if mjpeg {
            format!("{} %", f1(p.cpu.of(Role::Mjpeg)))
        } else {
            "–".into()
        };
        let present = p.to_present.map_or("–".into(), |s| f1(s.p50));
        let jb = p.jitter_buffer_ms.map_or("–".into(), f1);
        match p.latency {
            Some(s) => format!(
                "| {what} | {} | {} | {} | {} | {} | {present} | {jb} | {m} |",
                p.tc_frames,
                f1(s.p50),
                f1(s.p90),
                f1(s.p99),
                f1(s.max)
            ),
            None => format!(
                "| {what} | {} | – | – | – | – | – | – | {m} | {}",
                p.tc_frames,
                p.error.as_deref().unwrap_or("")
            ),
        }
    };
    if let Some(p) = one {
        w(&row(
            "framebus-rtsp --forward → Janus → janus.js (N = 1)",
            p,
            false,
        ));
    }
    if let Some(d) = &run.direct {
        w(&row("framebus-mjpeg WHEP (direct, `?adapt=0`)", d, true));
    }
    w("");
    let hop = one
        .and_then(|p| p.latency)
        .zip(run.direct.as_ref().and_then(|d| d.latency));
    match hop {
        Some((j, d)) => {
            w(&format!(
                "Janus hop = p50 through Janus − p50 direct WHEP = {} − {} = **{} ms** \
                 (p90: {} ms). Both: rVFC `presentationTime` of viewer 0 minus the capture \
                 time in the picture's time code.",
                f1(j.p50),
                f1(d.p50),
                f1(j.p50 - d.p50),
                f1(j.p90 - d.p90)
            ));
            let jp = one.and_then(|p| p.to_present);
            let dp = run.direct.as_ref().and_then(|d| d.to_present);
            if let Some((jp, dp)) = jp.zip(dp) {
                w("");
                w(&format!(
                    "Where it goes (medians, approximate): capture → last packet received \
                     {} ms through Janus against {} ms direct (the forward, Janus's relay); \
                     receive → present {} ms against {} ms (the receiver: framebus's WHEP \
                     answer sets `playout-delay` 0/0, so Chromium renders each frame once \
                     decoded; Janus's mountpoint negotiates no playout-delay, so Chromium \
                     schedules frames on its smoothed render clock. Janus 1.1's Streaming \
                     plugin can negotiate the extension, `playoutdelay_ext` on the mountpoint, \
                     which test-support's config does not enable).",
                    f1(j.p50 - jp.p50),
                    f1(d.p50 - dp.p50),
                    f1(jp.p50),
                    f1(dp.p50)
                ));
            }
        }
        None => w("Janus hop: not measured (a run failed)."),
    }
    o
}

// ---------------------------------------------------------------------------

fn main() {
    let o = opts();
    install_signals();
    let started = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let stamp = sh("date", &["-u", "+%Y-%m-%d-%H%M"]);
    let uptime_before = sh("uptime", &[]);
    eprintln!("janus_fanout: uptime {uptime_before}");
    let janus_version = sh(framebus_test_support::janus::JANUS, &["--version"])
        .lines()
        .find_map(|l| l.strip_prefix("Janus version:"))
        .map_or("Janus ?".into(), |v| format!("Janus {}", v.trim()));
    let command = {
        let mut c =
            "cargo run --release --locked -p framebus-benches --bin janus_fanout".to_string();
        if !o.args.is_empty() {
            c.push_str(" -- ");
            c.push_str(&o.args.join(" "));
        }
        c
    };

    let bus = framebus_test_support::unique_name("janus-fanout");
    let mut run = Run {
        command,
        started,
        uptime_before,
        uptime_after: String::new(),
        janus_version,
        seconds: o.seconds,
        warmup: o.warmup,
        min_decoded: o.min_decoded,
        min_idle: o.min_idle,
        points: Vec::new(),
        direct: None,
        stop_reason: None,
        skipped: Vec::new(),
    };
    {
        // Dropped in reverse: the forward, Janus, the encoder, the producer.
        let producer = browser::producer(&bus, SIZE, false);
        let encoder = Encoder::start(&bus, PROFILE, &["--encoder", "libx264", "--no-adapt"], None);
        let (rtp, rtcp) = (free_udp_port(), free_udp_port());
        let janus = Janus::start(rtp, rtcp);
        let (fwd, _) = server(
            "framebus-rtsp",
            &[
                "--forward",
                &format!("{bus}/{PROFILE_NAME}=rtp://127.0.0.1:{rtp}?rtcp={rtcp}"),
            ],
            1,
        );
        let mut pids = Pids {
            rtsp: Some(fwd.child.pid()),
            encoder: Some(encoder.child.pid()),
            producer: Some(producer.child.pid()),
            janus: Some(janus.pid()),
            mjpeg: None,
        };
        eprintln!(
            "janus_fanout: bus {bus}, Janus {} (RTP {rtp}, RTCP {rtcp})",
            janus.api_url()
        );
        // The forward's first keyframe into the mountpoint.
        std::thread::sleep(Duration::from_secs(2));

        let (api, ws) = (janus.api_url(), janus.ws_url());
        for (i, &n) in o.viewers.iter().enumerate() {
            if STOP.load(Ordering::SeqCst) {
                break;
            }
            eprintln!("janus_fanout: {n} Janus viewer(s) for {} s", o.seconds);
            let (r, cpu, windowed) = measure(
                &pids,
                &|| janus_viewers(&janus),
                n,
                o.seconds,
                o.warmup,
                || browser::janus_play(&api, &ws, o.seconds, n),
            );
            let p = point(n, o.seconds, cpu, windowed, r);
            eprintln!(
                "janus_fanout: N={n}: framebus {:.1} %, Janus {:.1} %, Chromium {:.1} %, idle {:.0} %, \
                 frames min {} ({:.0} %), latency {}{}",
                p.cpu.framebus(),
                p.cpu.of(Role::Janus),
                p.cpu.of(Role::Chromium),
                p.cpu.idle,
                p.frames_min,
                p.decoded_min * 100.0,
                lat(&p.latency),
                p.error.as_deref().map(|e| format!("; failed: {e}")).unwrap_or_default()
            );
            let stop = if STOP.load(Ordering::SeqCst) {
                Some("interrupted".to_string())
            } else if p.error.is_some() {
                Some(format!("the run with {n} viewers failed"))
            } else if p.decoded_min * 100.0 < o.min_decoded || p.connected < n as usize {
                Some(format!(
                    "at {n} viewers the worst viewer decoded {:.0} % of the frames ({} of {n} connected; limit {:.0} %)",
                    p.decoded_min * 100.0,
                    p.connected,
                    o.min_decoded
                ))
            } else if p.cpu.idle < o.min_idle {
                Some(format!(
                    "at {n} viewers the machine was {:.0} % idle (limit {:.0} %)",
                    p.cpu.idle, o.min_idle
                ))
            } else {
                None
            };
            let first = i == 0;
            run.points.push(p);
            // The same stream straight from framebus, next to N = 1.
            if first && !STOP.load(Ordering::SeqCst) {
                eprintln!("janus_fanout: 1 direct WHEP viewer for {} s", o.seconds);
                let (mjpeg, l) = server(
                    "framebus-mjpeg",
                    &[
                        "--webrtc-udp",
                        "127.0.0.1:0",
                        "--no-discover",
                        "--bus",
                        &bus,
                    ],
                    2,
                );
                let addr = l[0].addr.clone();
                pids.mjpeg = Some(mjpeg.child.pid());
                let mut play =
                    WhepPlay::new(format!("http://{addr}/{bus}/{PROFILE_NAME}/whep?adapt=0"));
                play.seconds = o.seconds;
                play.timecode = true;
                let (r, cpu, windowed) = measure(
                    &pids,
                    &|| whep_sessions(&addr),
                    1,
                    o.seconds,
                    o.warmup,
                    || browser::whep_play(&play),
                );
                let d = point(1, o.seconds, cpu, windowed, r);
                eprintln!(
                    "janus_fanout: direct WHEP: latency {}, framebus-mjpeg {:.1} %{}",
                    lat(&d.latency),
                    d.cpu.of(Role::Mjpeg),
                    d.error
                        .as_deref()
                        .map(|e| format!("; failed: {e}"))
                        .unwrap_or_default()
                );
                run.direct = Some(d);
                drop(mjpeg);
                pids.mjpeg = None;
            }
            if let Some(why) = stop {
                run.skipped = o.viewers[i + 1..].to_vec();
                run.stop_reason = Some(why);
                break;
            }
        }
        drop(fwd);
        drop(janus);
        drop(encoder);
        drop(producer);
    }
    let interrupted = STOP.load(Ordering::SeqCst);
    if interrupted {
        let end = Instant::now() + Duration::from_secs(20);
        while !STOPPED.load(Ordering::SeqCst) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    leftovers(&bus);
    run.uptime_after = sh("uptime", &[]);
    let text = report(&run);
    println!("{text}");
    if interrupted {
        eprintln!("janus_fanout: interrupted; no report written");
        std::process::exit(130);
    }
    if o.write {
        let path = o.out_dir.join(format!("{stamp}.md"));
        match std::fs::create_dir_all(&o.out_dir).and_then(|()| std::fs::write(&path, &text)) {
            Ok(()) => eprintln!("janus_fanout: wrote {}", path.display()),
            Err(e) => eprintln!("janus_fanout: cannot write {}: {e}", path.display()),
        }
    }
}

/// Removes what the run's buses left in shared memory (a killed producer
/// or encoder) and any Chromium process of ours still running, and says
/// so.
fn leftovers(bus: &str) {
    let encoded = framebus::contract::encoder::bus_name(bus, PROFILE_NAME);
    for b in [bus.to_string(), encoded] {
        if framebus::stat(&b, None).is_ok_and(|s| !s.producer_alive) {
            eprintln!("janus_fanout: removing stale bus {b}");
            let _ = framebus::remove(&b, None, true);
        }
    }
    let strays = chromium_strays();
    if !strays.is_empty() {
        std::thread::sleep(Duration::from_secs(3));
        for p in chromium_strays() {
            eprintln!("janus_fanout: killing a Chromium process left behind: {p}");
            kill(p, libc::SIGKILL);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(bus) {
                eprintln!("janus_fanout: left in /dev/shm: {name}");
            }
        }
    }
}

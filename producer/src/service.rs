//! `framebus-producer --config FILE`, the service: capture every configured
//! camera (one thread each, running the ordinary capture of `capture.rs`,
//! whose source loop restarts a lost *source*), and the process supervisor
//! (`ProcessSupervisor`), which runs each configured publisher and each
//! encoder (one `framebus-encoder` per camera and `[[encoder]]`) as a child
//! *process* and restarts it:
//!
//! * **crashed** (the child exited) or **hung** (a publisher: no answer to
//!   its health probe — HTTP `GET /healthz` for mjpeg and the recorder,
//!   RTSP `OPTIONS` for rtsp — or no `listening on` line, for
//!   `hung_after` seconds; an encoder, which is no server: its encoded bus
//!   not live `hung_after` seconds after its camera's bus was) → restarted
//!   after an exponential backoff (`backoff_initial` doubling to
//!   `backoff_max`); a child that ran `stable_after` seconds starts from
//!   `backoff_initial` again. After `max_restarts` restarts in a row
//!   without a stable run the supervisor gives up on it (state `failed`).
//!   Every restart is logged with its reason and delay.
//! * **stop** (SIGTERM/SIGINT): children first (SIGTERM to each child's
//!   process group, SIGKILL to what is left after `stop_grace`, everything
//!   reaped), then capture; the buses are closed last.
//! * **status**: written to a JSON file in the shm directory for
//!   `framebus status` (see `status.rs`).
//!
//! Children run in their own process group (a terminal's Ctrl-C reaches
//! only the supervisor, which stops them in order), and every signal the
//! supervisor sends goes to the whole group, so a `command =` wrapper
//! script and what it started stop together (`process_group.rs`). A
//! crashed child's leftovers get SIGTERM, then SIGKILL after `stop_grace`;
//! a hung child's group gets SIGKILL; both before the restart. The direct
//! child also gets SIGTERM from the kernel if the supervisor dies
//! (`PR_SET_PDEATHSIG`), so a killed supervisor leaves no publisher holding
//! its port — unless a wrapper script stands between them: wrappers should
//! `exec` the publisher.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::backoff::Backoff;
use crate::capture;
use crate::cli::LogFormat;
use crate::config::{self, Config};
use crate::error::Fatal;
use crate::process_group::{self, ProcessGroup, Stopped};
use crate::signals;
use framebus::contract::status::{
    self, CameraState, CameraStatus, PublisherState, PublisherStatus, Status, SupervisorState,
};
use framebus::contract::{env, listening};

/// Supervisor loop period (bounds the reaction and stop latency).
const TICK: Duration = Duration::from_millis(50);
/// How often the status file is rewritten even without a change.
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// How long to wait for the buses before starting the publishers anyway.
const BUS_WAIT: Duration = Duration::from_secs(5);

/// Supervision settings in plain durations.
#[derive(Clone, Copy, Debug)]
struct Policy {
    backoff_initial: Duration,
    backoff_max: Duration,
    stable_after: Duration,
    max_restarts: u32,
    health_interval: Duration,
    hung_after: Duration,
    stop_grace: Duration,
}

/// How often a starting encoder's buses are looked at.
const ENCODER_LOOK: Duration = Duration::from_millis(200);

/// What tells that a child is up, and lacking it for `hung_after`, hung.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ready {
    /// A server: its `listening on` line, then its health probe (`None`:
    /// not probed, up once started).
    Listening(Option<Probe>),
    /// An encoder (no server, no stdout line): its encoded bus is live and
    /// written by the child. It is not probed after that: an encoder
    /// without readers publishes nothing by design, so silence is no sign
    /// of a hang.
    EncodedBus {
        /// The camera's bus it reads.
        raw: String,
        /// The encoded bus it writes.
        out: String,
    },
}

/// Which probe tells that a child still answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// `GET /healthz` over HTTP/1.0; any status line counts as an answer.
    Http,
    /// `OPTIONS` over RTSP/1.0; any status line counts as an answer.
    Rtsp,
}

/// State the child's helper threads share with the supervisor.
#[derive(Default)]
struct Shared {
    /// Address and URL from the child's `listening on URL` line, and when
    /// it came.
    listening: Mutex<Option<(String, String, Instant)>>,
    /// Last successful health probe.
    last_ok: Mutex<Option<Instant>>,
    /// Tells the health thread to end.
    stop: AtomicBool,
}

/// One process of a child (and whatever it started: its process group).
struct Running {
    group: ProcessGroup,
    started: Instant,
    shared: Arc<Shared>,
    /// An encoder: when its encoded bus was first seen live.
    bus_up: Option<Instant>,
    /// An encoder: when its camera's bus was first seen live (the hung
    /// clock starts there: the encoder waits for it before creating its
    /// own bus).
    raw_seen: Option<Instant>,
    /// An encoder: when the buses were last looked at.
    last_look: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Backoff,
    Failed,
    Stopped,
}

/// One supervised child: a publisher or an encoder.
struct Child {
    kind: &'static str,
    /// How logs name it: the kind, and an encoder's bus.
    label: String,
    program: PathBuf,
    args: Vec<String>,
    /// Extra environment (credentials: never on the command line).
    env: Vec<(&'static str, String)>,
    ready: Ready,
    auth: bool,
    proc: Option<Running>,
    state: State,
    restarts: u32,
    streak: u32,
    last_reason: Option<String>,
    restart_at: Option<Instant>,
    backoff: Backoff,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run the service described by `config` until SIGTERM/SIGINT.
pub fn run(config_path: &Path, config: Config, log_format: LogFormat) -> Result<(), Fatal> {
    signals::defer_stop();
    // Orphans of a child's process group (a wrapper script's children)
    // come to us, so stopping a group can reap all of it.
    process_group::become_subreaper()
        .map_err(|e| Fatal::Other(format!("cannot become a child subreaper: {e}")))?;
    let s = &config.supervision;
    let policy = Policy {
        backoff_initial: s.backoff_initial.0,
        backoff_max: s.backoff_max.0,
        stable_after: s.stable_after.0,
        max_restarts: s.max_restarts,
        health_interval: s.health_interval.0.max(Duration::from_millis(100)),
        hung_after: s.hung_after.0,
        stop_grace: s.stop_grace.0,
    };
    let mut children = plan_children(&config, policy)?;
    let shm_dir = framebus::default_shm_dir();
    check_shm(&config, &shm_dir)?;
    let status_path = status::path(&shm_dir, std::process::id());
    let config_path = std::fs::canonicalize(config_path).unwrap_or(config_path.to_path_buf());

    // Capture: one thread per camera, each the ordinary run loop.
    let (tx, rx) = mpsc::channel::<(usize, Result<(), Fatal>)>();
    let mut cameras: Vec<CameraStatus> = Vec::new();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for (i, cam) in config.cameras.iter().enumerate() {
        let cli = cam.to_cli(log_format);
        let bus = cli.bus.clone();
        cameras.push(CameraStatus {
            bus: bus.clone(),
            source: cli.source.clone(),
            state: CameraState::Running,
            error: None,
        });
        let tx = tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("capture-{bus}"))
            .spawn(move || {
                let r = capture::run(cli);
                let _ = tx.send((i, r));
            })
            .map_err(|e| Fatal::Other(format!("cannot start the capture thread: {e}")))?;
        threads.push(h);
    }
    drop(tx);

    let mut sup = ProcessSupervisor {
        policy,
        status_path,
        config_path,
        cameras,
        last_status: None,
    };
    let result = sup.main_loop(&mut children, &rx);

    // Children first, then capture.
    sup.write_status(&children, SupervisorState::Stopping);
    stop_children(&mut children, policy.stop_grace);
    signals::request_stop();
    for h in threads {
        let _ = h.join();
    }
    let _ = std::fs::remove_file(&sup.status_path);
    tracing::info!("service stopped");
    result
}

/// Before anything is created: every bus of the config must fit in the
/// shm directory (`doctor`), or the service does not start. Warnings are
/// logged and the service starts. A config the plan cannot size (a bad
/// size, a missing directory) is left to the bus's creation, which says
/// so with its own exit code.
fn check_shm(config: &Config, dir: &Path) -> Result<(), Fatal> {
    let report = match crate::doctor::check(config, dir) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "shared memory not checked");
            return Ok(());
        }
    };
    for f in &report.findings {
        match f.severity {
            crate::doctor::Severity::Error => {}
            crate::doctor::Severity::Warning => tracing::warn!("{}", f.message),
            crate::doctor::Severity::Note => tracing::debug!("{}", f.message),
        }
    }
    if let Some(e) = report
        .findings
        .iter()
        .find(|f| f.severity == crate::doctor::Severity::Error)
    {
        return Err(Fatal::Other(format!(
            "shared memory: {} (`framebus doctor --config FILE` shows every bus)",
            e.message
        )));
    }
    tracing::info!(
        buses = report.buses.len(),
        shm = %crate::doctor::mib(report.total),
        free = %crate::doctor::mib(report.shm.free),
        dir = %dir.display(),
        "shared memory checked"
    );
    Ok(())
}

/// The process supervisor: the publisher children, and the status file
/// that reports them and the cameras.
struct ProcessSupervisor {
    policy: Policy,
    status_path: PathBuf,
    config_path: PathBuf,
    cameras: Vec<CameraStatus>,
    last_status: Option<Instant>,
}

impl ProcessSupervisor {
    fn main_loop(
        &mut self,
        children: &mut [Child],
        rx: &mpsc::Receiver<(usize, Result<(), Fatal>)>,
    ) -> Result<(), Fatal> {
        // Let the cameras create their buses before the publishers attach.
        let buses: Vec<String> = self.cameras.iter().map(|c| c.bus.clone()).collect();
        let deadline = Instant::now() + BUS_WAIT;
        while Instant::now() < deadline && !signals::term_received() {
            if let Some(e) = self.capture_ended(rx) {
                return Err(e);
            }
            let me = std::process::id();
            let all_up = buses.iter().all(|b| {
                framebus::stat(b, None).is_ok_and(|i| i.producer_pid == me && i.state == "live")
            });
            if all_up {
                break;
            }
            std::thread::sleep(TICK);
        }
        for c in children.iter_mut() {
            c.start(self.policy);
        }
        self.write_status(children, SupervisorState::Running);

        while !signals::term_received() {
            if let Some(e) = self.capture_ended(rx) {
                return Err(e);
            }
            let mut changed = false;
            for c in children.iter_mut() {
                changed |= c.check(self.policy);
            }
            let due = self.last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY);
            if changed || due {
                self.write_status(children, SupervisorState::Running);
            }
            std::thread::sleep(TICK);
        }
        tracing::info!("stop requested: stopping publishers, then capture");
        Ok(())
    }

    /// A capture thread that ended before a stop was asked for failed at
    /// startup (bad device, bus owned by another producer...): the service
    /// cannot run as configured.
    fn capture_ended(&mut self, rx: &mpsc::Receiver<(usize, Result<(), Fatal>)>) -> Option<Fatal> {
        let (i, r) = rx.try_recv().ok()?;
        let cam = &mut self.cameras[i];
        cam.state = CameraState::Failed;
        let e = match r {
            Err(e) => e,
            Ok(()) => Fatal::Other(format!("capture of bus {:?} stopped", cam.bus)),
        };
        cam.error = Some(e.to_string());
        tracing::error!(bus = %cam.bus, error = %e, "capture failed; stopping the service");
        Some(e)
    }

    fn write_status(&mut self, children: &[Child], state: SupervisorState) {
        let st = Status {
            version: status::VERSION,
            producer_pid: std::process::id(),
            config: self.config_path.clone(),
            updated_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            state,
            cameras: self.cameras.clone(),
            publishers: children.iter().map(|c| c.status(self.policy)).collect(),
        };
        if let Err(e) = status::write(&self.status_path, &st) {
            tracing::warn!(path = %self.status_path.display(), error = %e, "cannot write the status file");
        }
        self.last_status = Some(Instant::now());
    }
}

/// The children the config asks for (the publishers, then the encoders),
/// with their command lines.
fn plan_children(config: &Config, policy: Policy) -> Result<Vec<Child>, Fatal> {
    let here = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let next_to_us = |kind: &str, hint: &str| {
        let bin = here.join(format!("framebus-{kind}"));
        if bin.is_file() {
            Ok(bin)
        } else {
            Err(Fatal::MissingDependency(format!(
                "{kind} binary {} not found (build it next to framebus-producer{hint})",
                bin.display()
            )))
        }
    };
    let child = |kind: &'static str, label: String, program, args, env, ready, auth| Child {
        kind,
        label,
        program,
        args,
        env,
        ready,
        auth,
        proc: None,
        state: State::Stopped,
        restarts: 0,
        streak: 0,
        last_reason: None,
        restart_at: None,
        backoff: Backoff::new(policy.backoff_initial, policy.backoff_max),
    };
    let buses: Vec<String> = config
        .cameras
        .iter()
        .map(|c| c.bus.get_ref().clone())
        .collect();
    let mut out = Vec::new();
    for (kind, p) in config.publishers() {
        if !p.enabled {
            continue;
        }
        let (args, env, probe) = match kind {
            "mjpeg" => (
                config::mjpeg_args(p, &buses, config.recorder().filter(|r| r.enabled)),
                config::mjpeg_env(p, config.recorder().filter(|r| r.enabled)),
                Probe::Http,
            ),
            _ => (config::rtsp_args(p), config::rtsp_env(p), Probe::Rtsp),
        };
        let program = match &p.command {
            Some(c) => c.clone(),
            None => next_to_us(kind, &format!(", or set publishers.{kind}.command"))?,
        };
        out.push(child(
            kind,
            kind.to_string(),
            program,
            args,
            env,
            Ready::Listening(p.health_check.then_some(probe)),
            p.auth.is_some(),
        ));
    }
    if let Some(r) = config.recorder().filter(|r| r.enabled) {
        let program = match &r.command {
            Some(c) => c.clone(),
            None => next_to_us("recorder", ", or set publishers.recorder.command")?,
        };
        out.push(child(
            "recorder",
            "recorder".to_string(),
            program,
            config::recorder_args(r),
            config::recorder_env(r),
            Ready::Listening(r.health_check.then_some(Probe::Http)),
            r.auth.is_some(),
        ));
    }
    let jobs = config.encoder_jobs();
    if config.uses_default_encoder() {
        let d = config::EncoderSpec::default_high();
        tracing::info!(
            encoder = %d.name,
            "RTSP serves encoded buses and no [[encoder]] is configured: \
             using the default encoder `high` (1920x1080@30, 4 Mbit/s, GOP 60) for every camera"
        );
    }
    // One Opus encode per microphone (docs/audio.md), read by every output.
    let microphones: Vec<&str> = config
        .cameras
        .iter()
        .filter(|c| c.audio.is_some())
        .map(|c| c.bus.get_ref().as_str())
        .collect();
    if !microphones.is_empty() {
        let program = next_to_us("encoder", "")?;
        for bus in microphones {
            let (pcm, opus) = (
                framebus::contract::audio::pcm_bus(bus),
                framebus::contract::audio::opus_bus(bus),
            );
            out.push(child(
                "encoder",
                format!("encoder {opus}"),
                program.clone(),
                vec!["--bus".into(), pcm.clone(), "--opus".into()],
                Vec::new(),
                Ready::EncodedBus {
                    raw: pcm,
                    out: opus,
                },
                false,
            ));
        }
    }
    if !jobs.is_empty() {
        let program = next_to_us("encoder", "")?;
        for job in &jobs {
            out.push(child(
                "encoder",
                format!("encoder {}", job.out_bus),
                program.clone(),
                config::encoder_args(job),
                Vec::new(),
                Ready::EncodedBus {
                    raw: job.raw_bus.clone(),
                    out: job.out_bus.clone(),
                },
                false,
            ));
        }
    }
    Ok(out)
}

impl Child {
    /// Start a process; a failure to start counts as a crash.
    fn start(&mut self, policy: Policy) {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        // Each child gets only its own credentials (`self.env`), none the
        // supervisor inherited.
        for name in env::CREDENTIALS {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (setpgid, prctl, getppid) on
        // the child itself; it reads one copied integer and allocates
        // nothing.
        unsafe {
            cmd.pre_exec(move || {
                // Own process group: a terminal's Ctrl-C goes to the
                // supervisor only, which stops the children in order.
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SIGTERM when the supervisor dies (even by SIGKILL). The
                // signal follows the thread that forked: children are only
                // spawned from the main thread, which lives as long as the
                // process.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The supervisor died before the prctl: do not run orphaned.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn().and_then(|mut child| {
            let out = child.stdout.take();
            ProcessGroup::of_leader(child).map(|g| (g, out))
        });
        match spawned {
            Ok((group, stdout)) => {
                let shared = Arc::new(Shared::default());
                if let Some(out) = stdout {
                    let shared = Arc::clone(&shared);
                    let label = self.label.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("{}-stdout", self.kind))
                        .spawn(move || read_stdout(&label, out, &shared));
                }
                if let Ready::Listening(Some(probe)) = self.ready {
                    let shared = Arc::clone(&shared);
                    let interval = policy.health_interval;
                    let _ = std::thread::Builder::new()
                        .name(format!("{}-health", self.kind))
                        .spawn(move || health_loop(probe, interval, &shared));
                }
                tracing::info!(publisher = %self.label, pid = group.id(), program = %self.program.display(), "publisher started");
                self.proc = Some(Running {
                    group,
                    started: Instant::now(),
                    shared,
                    bus_up: None,
                    raw_seen: None,
                    last_look: None,
                });
                self.state = State::Running;
                self.restart_at = None;
            }
            Err(e) => {
                let reason = format!("cannot start {}: {e}", self.program.display());
                self.down(reason, Duration::ZERO, policy);
            }
        }
    }

    /// Look at the child once; `true` when its state changed.
    fn check(&mut self, policy: Policy) -> bool {
        match self.state {
            State::Running => {}
            State::Backoff => {
                if self.restart_at.is_some_and(|t| Instant::now() >= t) {
                    self.restarts += 1;
                    self.streak += 1;
                    tracing::info!(
                        publisher = %self.label,
                        restart = self.restarts,
                        "restarting publisher"
                    );
                    self.start(policy);
                    return true;
                }
                return false;
            }
            State::Failed | State::Stopped => return false,
        }
        let Some(run) = self.proc.as_mut() else {
            return false;
        };
        let ran = run.started.elapsed();
        let mut changed = false;
        let (reason, exited) = match run.group.leader_exit() {
            Ok(Some(status)) => (Some(describe_exit(status)), true),
            Ok(None) => (
                match &self.ready {
                    Ready::Listening(Some(_)) => hung_reason(run, policy.hung_after),
                    Ready::Listening(None) => None,
                    Ready::EncodedBus { raw, out } => {
                        let (up, hung) = look_at_encoder(run, raw, out, policy.hung_after);
                        if up {
                            tracing::info!(publisher = %self.label, "encoded bus live");
                        }
                        changed = up;
                        hung
                    }
                },
                false,
            ),
            Err(e) => (Some(format!("cannot wait for it: {e}")), false),
        };
        let Some(reason) = reason else {
            return changed;
        };
        if let Some(mut run) = self.proc.take() {
            run.shared.stop.store(true, Ordering::SeqCst);
            let pgid = run.group.id();
            // Nothing may be left of the old process (a wrapper's children
            // holding the port) when the new one starts. Exited: its
            // leftovers, if any, get SIGTERM and `stop_grace`; hung (or
            // not waitable): SIGKILL to the whole group at once.
            let (first, grace) = if exited {
                (libc::SIGTERM, policy.stop_grace)
            } else {
                (libc::SIGKILL, Duration::ZERO)
            };
            // The usual crash leaves nothing else in the group.
            if !(exited && run.group.reap()) {
                if exited {
                    tracing::warn!(
                        publisher = %self.label,
                        pgid,
                        "the exited publisher left processes in its group: SIGTERM"
                    );
                }
                match run.group.stop(first, grace) {
                    Stopped::Clean => {}
                    Stopped::Killed if !exited => {}
                    Stopped::Killed => tracing::warn!(
                        publisher = %self.label,
                        pgid,
                        "processes left by the exited publisher ignored SIGTERM: SIGKILL"
                    ),
                    Stopped::Stuck => tracing::error!(
                        publisher = %self.label,
                        pgid,
                        "process group still not empty after SIGKILL"
                    ),
                }
            }
        }
        self.down(reason, ran, policy);
        true
    }

    /// The process is gone for `reason` after running `ran`: schedule a
    /// restart or give up.
    fn down(&mut self, reason: String, ran: Duration, policy: Policy) {
        self.proc = None;
        if ran >= policy.stable_after {
            self.backoff.reset();
            self.streak = 0;
        }
        if self.streak >= policy.max_restarts {
            tracing::error!(
                publisher = %self.label,
                reason = %reason,
                restarts = self.restarts,
                "publisher keeps failing: giving up (max_restarts reached)"
            );
            self.last_reason = Some(format!(
                "gave up after {} restarts in a row; last: {reason}",
                self.streak
            ));
            self.state = State::Failed;
            self.restart_at = None;
            return;
        }
        let delay = self.backoff.step();
        tracing::warn!(
            publisher = %self.label,
            reason = %reason,
            delay = ?delay,
            restart = self.restarts + 1,
            in_a_row = self.streak + 1,
            max_restarts = policy.max_restarts,
            "publisher down; restarting after backoff"
        );
        self.last_reason = Some(reason);
        self.state = State::Backoff;
        self.restart_at = Some(Instant::now() + delay);
    }

    fn status(&self, policy: Policy) -> PublisherStatus {
        let now = Instant::now();
        let listening = self
            .proc
            .as_ref()
            .and_then(|r| lock(&r.shared.listening).clone());
        let ready = match &self.ready {
            Ready::Listening(Some(_)) => listening.is_some(),
            Ready::Listening(None) => true,
            Ready::EncodedBus { .. } => self.proc.as_ref().is_some_and(|r| r.bus_up.is_some()),
        };
        let state = match (self.state, ready) {
            (State::Running, false) => PublisherState::Starting,
            (State::Running, true) => PublisherState::Running,
            (State::Backoff, _) => PublisherState::Backoff,
            (State::Failed, _) => PublisherState::Failed,
            (State::Stopped, _) => PublisherState::Stopped,
        };
        PublisherStatus {
            kind: self.kind.to_string(),
            bus: match &self.ready {
                Ready::EncodedBus { out, .. } => Some(out.clone()),
                Ready::Listening(_) => None,
            },
            command: self.program.clone(),
            pid: self.proc.as_ref().map(|r| r.group.id()),
            state,
            restarts: self.restarts,
            max_restarts: policy.max_restarts,
            last_reason: self.last_reason.clone(),
            restart_in_s: self
                .restart_at
                .map(|t| t.saturating_duration_since(now).as_secs_f64()),
            uptime_s: self
                .proc
                .as_ref()
                .map(|r| r.started.elapsed().as_secs_f64()),
            address: listening.as_ref().map(|l| l.0.clone()),
            url: listening.as_ref().map(|l| l.1.clone()),
            health_age_s: self
                .proc
                .as_ref()
                .and_then(|r| *lock(&r.shared.last_ok))
                .map(|t| t.elapsed().as_secs_f64()),
            auth: self.auth,
        }
    }
}

/// Look at a running encoder's buses (at most every [`ENCODER_LOOK`]):
/// whether its encoded bus just came up, and why it counts as hung, if it
/// does — its encoded bus not live and written by it `hung_after` after
/// its camera's bus was seen live.
fn look_at_encoder(
    run: &mut Running,
    raw: &str,
    out: &str,
    hung_after: Duration,
) -> (bool, Option<String>) {
    if run.bus_up.is_some() || run.last_look.is_some_and(|t| t.elapsed() < ENCODER_LOOK) {
        return (false, None);
    }
    let now = Instant::now();
    run.last_look = Some(now);
    let pid = run.group.id();
    if framebus::stat(out, None).is_ok_and(|i| i.state == "live" && i.producer_pid == pid) {
        run.bus_up = Some(now);
        return (true, None);
    }
    if run.raw_seen.is_none() && framebus::stat(raw, None).is_ok_and(|i| i.state == "live") {
        run.raw_seen = Some(now);
    }
    let hung = run.raw_seen.filter(|t| t.elapsed() >= hung_after).map(|_| {
        format!(
            "hung: encoded bus {out} not live {:.1} s after bus {raw} was",
            hung_after.as_secs_f64()
        )
    });
    (false, hung)
}

/// Why a running child counts as hung, if it does.
fn hung_reason(run: &Running, hung_after: Duration) -> Option<String> {
    let listening = lock(&run.shared.listening).as_ref().map(|l| l.2);
    let Some(since) = listening else {
        return (run.started.elapsed() >= hung_after).then(|| {
            format!(
                "hung: no `listening on` line {:.1} s after start",
                hung_after.as_secs_f64()
            )
        });
    };
    let last = lock(&run.shared.last_ok).unwrap_or(since).max(since);
    (last.elapsed() >= hung_after).then(|| {
        format!(
            "hung: no answer to health probes for {:.1} s",
            last.elapsed().as_secs_f64()
        )
    })
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("ended ({status})"),
    }
}

/// Read the child's stdout: remember its `listening on URL` line, log the
/// rest.
fn read_stdout(label: &str, out: impl Read, shared: &Shared) {
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        let mut l = lock(&shared.listening);
        if l.is_none() {
            if let Some(url) = listening::parse(&line) {
                let addr = listening::address(url).unwrap_or_default().to_string();
                let url = url.to_string();
                tracing::info!(publisher = label, url = %url, "publisher listening");
                *l = Some((addr, url, Instant::now()));
                continue;
            }
        }
        drop(l);
        tracing::info!(publisher = label, "{line}");
    }
}

/// Probe the child every `interval` until told to stop.
fn health_loop(probe: Probe, interval: Duration, shared: &Shared) {
    let timeout = interval.clamp(Duration::from_millis(200), Duration::from_secs(2));
    while !shared.stop.load(Ordering::SeqCst) {
        let addr = lock(&shared.listening).as_ref().map(|l| l.0.clone());
        if let Some(addr) = addr {
            if probe_once(probe, &addr, timeout) {
                *lock(&shared.last_ok) = Some(Instant::now());
            }
        }
        let end = Instant::now() + interval;
        while Instant::now() < end && !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One health probe: does the server answer with a status line at all?
/// (A 503 from `/healthz` means a bus has no producer — the server itself
/// is fine.)
fn probe_once(probe: Probe, addr: &str, timeout: Duration) -> bool {
    let Some(sa) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let sa = match sa {
        // A wildcard address is probed on loopback.
        SocketAddr::V4(v) if v.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], v.port()))
        }
        SocketAddr::V6(v) if v.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v.port()))
        }
        a => a,
    };
    let Ok(mut s) = TcpStream::connect_timeout(&sa, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let (req, want): (String, &[u8]) = match probe {
        Probe::Http => (
            format!("GET /healthz HTTP/1.0\r\nHost: {sa}\r\n\r\n"),
            b"HTTP/1.",
        ),
        Probe::Rtsp => (
            format!("OPTIONS rtsp://{sa}/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            b"RTSP/1.0 ",
        ),
    };
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < want.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    buf.starts_with(want)
}

/// SIGTERM every child's process group, SIGKILL what is left of them
/// after `grace`, reap all.
fn stop_children(children: &mut [Child], grace: Duration) {
    let mut stopping: Vec<(String, Running)> = Vec::new();
    for c in children.iter_mut() {
        c.state = State::Stopped;
        c.restart_at = None;
        if let Some(run) = c.proc.take() {
            run.shared.stop.store(true, Ordering::SeqCst);
            stopping.push((c.label.clone(), run));
        }
    }
    let mut groups: Vec<&mut ProcessGroup> =
        stopping.iter_mut().map(|(_, r)| &mut r.group).collect();
    let outcomes = process_group::stop_all(&mut groups, libc::SIGTERM, grace);
    for ((label, run), outcome) in stopping.iter().zip(outcomes) {
        let pgid = run.group.id();
        match outcome {
            Stopped::Clean => {}
            Stopped::Killed => tracing::warn!(
                publisher = %label,
                pgid,
                "still running {grace:?} after SIGTERM: SIGKILL"
            ),
            Stopped::Stuck => tracing::error!(
                publisher = %label,
                pgid,
                "process group still not empty after SIGKILL"
            ),
        }
    }
}

//! [`Service`]: the whole service as a person runs it,
//! `framebus-producer --config FILE` (docs/service.md), for tests of what
//! its children do together (the console, `publishers/tests/console.rs`).
//!
//! Each service gets its own shm directory (`$FRAMEBUS_SHM_DIR`, a
//! [`TempDir`]), so its buses and its status file
//! (`framebus-status.<pid>.json`, [`framebus::contract::status`]) are the
//! only ones its publishers see: tests run in parallel without finding
//! each other's cameras. The config is written there too; the producer's
//! stderr goes to `producer.log` beside it ([`Service::log`]).
//!
//! Publishers and encoders are found next to the test binary's profile
//! directory ([`crate::bins`]: `cargo build --workspace --bins --tests` first).
//! Dropping the service stops it as its unit would (SIGTERM: children
//! first, then capture), with a bound after which the whole group is
//! killed. Every wait is a watchdog whose message has the status file and
//! the log.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use framebus::contract::status::{self, PublisherState, PublisherStatus, Status};

use crate::{bins, ChildGuard, TempDir};

/// How long [`Service`]'s drop waits for the producer to stop after
/// SIGTERM (its `stop_grace` per child, then capture) before SIGKILL.
pub const STOP_LIMIT: Duration = Duration::from_secs(20);

/// A running `framebus-producer --config`, in its own shm directory.
pub struct Service {
    child: ChildGuard,
    dir: TempDir,
}

impl Service {
    /// Writes `config` (TOML) to a fresh directory and starts
    /// `framebus-producer --config` on it with `$FRAMEBUS_SHM_DIR` set to
    /// that directory, `RUST_LOG=info` and `env` added. Returns at once:
    /// see [`Service::wait_running`].
    pub fn start(tag: &str, config: &str, env: &[(&str, &str)]) -> Service {
        let dir = TempDir::new(&format!("svc-{tag}"));
        // Not `framebus.*`: that prefix is the bus segments'.
        let path = dir.path().join("service.toml");
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let log_path = dir.path().join("producer.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        let child = ChildGuard::spawn(
            Command::new(bins::path("framebus-producer"))
                .env(framebus::contract::env::SHM_DIR, dir.path())
                .env("RUST_LOG", "info")
                .envs(env.iter().copied())
                .arg("--config")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        );
        Service { child, dir }
    }

    /// The producer's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Its shm directory (buses, status file, config, log).
    pub fn shm_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file it runs.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("service.toml")
    }

    /// What it wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("producer.log")).unwrap_or_default()
    }

    /// Its status file now, if it is there and parses.
    pub fn status(&self) -> Option<Status> {
        std::fs::read(status::path(self.dir.path(), self.pid()))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// The supervised publisher `kind` (`mjpeg`, `rtsp`, `recorder`) in
    /// the status file now.
    pub fn publisher(&self, kind: &str) -> Option<PublisherStatus> {
        self.status()?
            .publishers
            .into_iter()
            .find(|p| p.kind == kind)
    }

    /// Polls the status file (every 50 ms, at most `limit`) until `pred`
    /// holds for it; that status. Panics with the status and the log
    /// otherwise, or when the producer exits.
    pub fn wait_status(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Status) -> bool,
    ) -> Status {
        let end = Instant::now() + limit;
        loop {
            let st = self.status();
            if let Some(s) = st.as_ref().filter(|s| pred(s)) {
                return s.clone();
            }
            if let Some(code) = self.child.try_exit() {
                panic!(
                    "framebus-producer exited ({code}) before {what}; status: {st:#?}\nlog:\n{}",
                    self.log()
                );
            }
            if Instant::now() > end {
                panic!(
                    "{what}: not within {limit:?}; status: {st:#?}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every camera captures and every child runs (publishers
    /// with their `listening on` address, encoders with their encoded bus
    /// live); that status.
    pub fn wait_running(&mut self, limit: Duration) -> Status {
        self.wait_status("every camera and child running", limit, |s| {
            s.cameras
                .iter()
                .all(|c| c.state == status::CameraState::Running)
                && s.publishers.iter().all(|p| {
                    p.state == PublisherState::Running
                        && (p.kind == "encoder" || p.address.is_some())
                })
        })
    }

    /// The URL of the running publisher `kind` from the status file
    /// (`http://127.0.0.1:PORT/`); panics if it has none.
    pub fn url(&self, kind: &str) -> String {
        self.publisher(kind).and_then(|p| p.url).unwrap_or_else(|| {
            panic!(
                "no URL for publisher {kind} in the status file: {:#?}",
                self.status()
            )
        })
    }

    /// The bound address of the running publisher `kind`
    /// (`127.0.0.1:PORT`); panics if it has none.
    pub fn address(&self, kind: &str) -> String {
        self.publisher(kind)
            .and_then(|p| p.address)
            .unwrap_or_else(|| {
                panic!(
                    "no address for publisher {kind} in the status file: {:#?}",
                    self.status()
                )
            })
    }

    /// Stops the service (SIGTERM) and waits at most [`STOP_LIMIT`]; its
    /// exit code (`None`: killed by a signal, or killed after the limit).
    pub fn stop(mut self) -> Option<i32> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Option<i32> {
        if !self.child.alive() {
            return self.child.try_exit().and_then(|s| s.code());
        }
        self.child.signal(libc::SIGTERM);
        match self.child.exits_within(STOP_LIMIT) {
            Some(st) => st.code(),
            None => {
                self.child.kill();
                None
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Children stop before the shm directory goes (the guard's drop
        // then kills whatever is left of the producer's group).
        self.stop_now();
    }
}

//! A microphone without a sound card: Debian's PulseAudio in user space,
//! private to one test, with a null sink `mic` whose monitor is the default
//! source. Through the ALSA `pulse` plugin (libasound2-plugins) the
//! capture device `pulse` then records, paced in real time, whatever the
//! test plays into the sink with `pacat` ([`Pulse::play`]).
//!
//! Unplugging is unloading the null sink ([`Pulse::unplug`]): the capture
//! stream dies as when a USB microphone is pulled; [`Pulse::plug`] brings
//! it back. Nothing of the machine's own sound setup is used: the daemon
//! listens on a socket in the test's directory, and the children get
//! `PULSE_SERVER` ([`Pulse::apply`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{eventually, ChildGuard, TempDir};

/// The sample rate of the sink and of what [`Pulse::play`] plays.
pub const RATE: u32 = 48000;

/// A private PulseAudio daemon with the null sink `mic`.
pub struct Pulse {
    dir: TempDir,
    socket: PathBuf,
    _daemon: ChildGuard,
}

impl Pulse {
    /// Start the daemon and wait until it answers (panics, saying so, if
    /// PulseAudio is not installed: `make deps` installs it).
    pub fn start() -> Pulse {
        let dir = TempDir::new("pulse");
        let socket = dir.path().join("native");
        let mut cmd = Command::new("pulseaudio");
        cmd.args([
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disable-shm=yes",
            "--use-pid-file=no",
            "--log-target=stderr",
        ])
        .arg("-L")
        .arg(format!(
            "module-native-protocol-unix socket={} auth-anonymous=1",
            socket.display()
        ))
        .env("HOME", dir.path())
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let daemon = ChildGuard::try_spawn(&mut cmd).unwrap_or_else(|e| {
            panic!("pulseaudio: {e} (install pulseaudio pulseaudio-utils libasound2-plugins: make deps)")
        });
        let pulse = Pulse {
            dir,
            socket,
            _daemon: daemon,
        };
        assert!(
            eventually(Duration::from_secs(15), || pulse.pactl(&["info"]).is_ok()),
            "the test's PulseAudio did not answer on {}",
            pulse.socket.display()
        );
        pulse.plug();
        pulse
    }

    /// `unix:<socket>`, for `PULSE_SERVER`.
    pub fn server(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Point `cmd`'s PulseAudio clients (the ALSA `pulse` device among
    /// them) at this daemon.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("PULSE_SERVER", self.server())
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .env("PULSE_CLIENTCONFIG", "/dev/null")
    }

    /// Run `pactl` against this daemon; its stdout, or why it failed.
    pub fn pactl(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .apply(&mut Command::new("pactl"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("pactl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Plug the microphone in: load the null sink `mic` and make its
    /// monitor the default source.
    pub fn plug(&self) {
        self.pactl(&[
            "load-module",
            "module-null-sink",
            "sink_name=mic",
            &format!("rate={RATE}"),
            "channels=1",
        ])
        .expect("load the null sink");
        self.pactl(&["set-default-source", "mic.monitor"])
            .expect("default source");
    }

    /// Pull the microphone out: unload the null sink (the capture stream
    /// dies).
    pub fn unplug(&self) {
        let modules = self
            .pactl(&["list", "short", "modules"])
            .expect("list modules");
        for line in modules.lines().filter(|l| l.contains("module-null-sink")) {
            let id = line.split_whitespace().next().expect("module id");
            self.pactl(&["unload-module", id]).expect("unload");
        }
    }

    /// Hang the microphone (`true`: suspend the sink, and with it its
    /// monitor source, so a capture stream gets no more samples but no
    /// error either), or let it go on (`false`).
    pub fn hang(&self, hung: bool) {
        self.pactl(&["suspend-sink", "mic", if hung { "1" } else { "0" }])
            .expect("suspend-sink");
    }

    /// Play `sample(n)` (sample `n` since the start, at [`RATE`], mono)
    /// into the sink with `pacat`, paced by PulseAudio, until the player is
    /// dropped (or the sink goes away).
    pub fn play(&self, sample: impl FnMut(u64) -> i16 + Send + 'static) -> Player {
        let mut cmd = Command::new("pacat");
        self.apply(&mut cmd)
            .args([
                "--playback",
                "--raw",
                "--format=s16le",
                &format!("--rate={RATE}"),
                "--channels=1",
                "--device=mic",
                "--latency-msec=20",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = ChildGuard::spawn(&mut cmd);
        let mut stdin = child.child().stdin.take().expect("pacat stdin");
        let stop = Arc::new(AtomicBool::new(false));
        let feeding = {
            let stop = stop.clone();
            let mut sample = sample;
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut buf = Vec::with_capacity(960 * 2);
                while !stop.load(Ordering::Relaxed) {
                    buf.clear();
                    for _ in 0..960 {
                        buf.extend_from_slice(&sample(n).to_le_bytes());
                        n += 1;
                    }
                    if stdin.write_all(&buf).is_err() {
                        break;
                    }
                }
            })
        };
        Player {
            stop,
            feeding: Some(feeding),
            _pacat: child,
        }
    }

    /// [`Pulse::play`] of a sine of `hz` at `amplitude` (of 32767).
    pub fn play_tone(&self, hz: f64, amplitude: f64) -> Player {
        self.play(move |n| {
            let t = n as f64 / f64::from(RATE);
            (amplitude * (std::f64::consts::TAU * hz * t).sin()) as i16
        })
    }
}

/// A `pacat` fed by a thread; stopped on drop.
pub struct Player {
    stop: Arc<AtomicBool>,
    feeding: Option<JoinHandle<()>>,
    _pacat: ChildGuard,
}

impl Drop for Player {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The pacat guard kills the player after this; the feeding thread
        // may be blocked on the pipe until then, so it is not joined.
        drop(self.feeding.take());
    }
}

/// The frequency of a mono tone, from its zero crossings.
pub fn frequency(samples: &[i16], rate: u32) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / f64::from(rate))
}

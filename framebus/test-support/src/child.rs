//! [`ChildGuard`]: a child process that cannot outlive its test.
//!
//! The child is spawned in its own process group (`setpgid(0, 0)` in the
//! child, through [`CommandExt::process_group`]), so dropping the guard —
//! at the end of the test or while a failed assertion unwinds — sends
//! SIGKILL to the whole group (the child and anything it started: ffmpeg's
//! helpers, a supervisor's publishers) and reaps the child. A second effect
//! of the own group: a Ctrl-C on the terminal running `cargo test` reaches
//! only the test binary, which then drops its guards.
//!
//! Every wait is bounded and fails with a message naming the program and
//! what it did not do (a watchdog), never with a timing assertion.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How often the bounded waits poll the child.
const POLL: Duration = Duration::from_millis(10);

/// A child process in its own process group, killed (whole group) and
/// reaped on drop.
pub struct ChildGuard {
    child: Child,
    /// Program name for messages.
    what: String,
    /// Set once reaped (the pid may then be reused: no more signals).
    status: Option<ExitStatus>,
    /// Lines of stdout, read by a thread started by the first
    /// [`ChildGuard::next_line`] (which keeps draining the pipe to its
    /// end, so the child never blocks on a full pipe or dies of EPIPE).
    lines: Option<Receiver<String>>,
}

impl ChildGuard {
    /// Spawn `cmd` in a new process group; panics naming the command if it
    /// cannot be started.
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        ChildGuard::try_spawn(cmd).unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
    }

    /// Like [`ChildGuard::spawn`], returning the error (a missing tool).
    pub fn try_spawn(cmd: &mut Command) -> std::io::Result<ChildGuard> {
        let what = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd.process_group(0).spawn()?;
        Ok(ChildGuard {
            child,
            what,
            status: None,
            lines: None,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The underlying child (its pipes, `try_wait`).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Take the piped stdout (panics if it was not piped or already taken).
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("{}: stdout not piped or already taken", self.what))
    }

    /// Take the piped stderr (panics if it was not piped or already taken).
    pub fn take_stderr(&mut self) -> ChildStderr {
        self.child
            .stderr
            .take()
            .unwrap_or_else(|| panic!("{}: stderr not piped or already taken", self.what))
    }

    /// Send `sig` to the child (not its group). Panics if the child was
    /// already reaped (its pid may belong to another process by then).
    pub fn signal(&self, sig: i32) {
        assert!(
            self.status.is_none(),
            "{}: signal {sig} after the child was reaped",
            self.what
        );
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory effects; the pid is our own child,
        // not reaped yet (checked above), so it cannot have been reused.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "{}: kill({pid}, {sig}): {}",
            self.what,
            std::io::Error::last_os_error()
        );
    }

    /// SIGKILL the whole group and reap the child (idempotent).
    pub fn kill(&mut self) -> ExitStatus {
        self.kill_group();
        if let Some(st) = self.status {
            return st;
        }
        let st = self.child.wait().expect("wait for a killed child");
        self.status = Some(st);
        st
    }

    fn kill_group(&self) {
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) has no memory effects. The group id is the
        // child's pid (`process_group(0)`). While the child is not reaped
        // its pid (a zombie at worst) cannot be reused; once reaped, the
        // group id stays reserved as long as any member of the group is
        // alive, and when none is, the call fails with ESRCH (unless the
        // pid was reused as a new group's id in between: not a practical
        // concern within one test).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }

    /// The exit status if the child has exited (reaps it), without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait on a child");
        }
        self.status
    }

    /// Whether the child is still running.
    pub fn alive(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Wait at most `limit` for the child to exit by itself; `None` when it
    /// is still running then (it keeps running).
    pub fn exits_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.try_exit() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Watchdog: wait at most `limit` for the child to exit by itself and
    /// return its status; if it is still running then, kill its group and
    /// panic.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        if let Some(st) = self.exits_within(limit) {
            return st;
        }
        self.kill();
        panic!(
            "watchdog: {} (pid {}) still running {limit:?} after it should have exited; killed",
            self.what,
            self.pid()
        );
    }

    /// Send `sig`, then [`ChildGuard::wait_exit`].
    pub fn signal_and_wait(&mut self, sig: i32, limit: Duration) -> ExitStatus {
        self.signal(sig);
        self.wait_exit(limit)
    }

    /// The next line of the child's stdout (without the newline), waiting
    /// at most `limit`; `None` at the end of its stdout or on timeout. The
    /// first call takes stdout and starts a thread that keeps reading it
    /// to the end.
    pub fn next_line(&mut self, limit: Duration) -> Option<String> {
        if self.lines.is_none() {
            let out = self.take_stdout();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut rd = BufReader::new(out);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match rd.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            let s = String::from_utf8_lossy(&line);
                            // Nobody listening any more: keep draining.
                            let _ = tx.send(s.trim_end_matches(['\n', '\r']).to_string());
                        }
                    }
                }
            });
            self.lines = Some(rx);
        }
        let rx = self.lines.as_ref().expect("line reader started");
        rx.recv_timeout(limit).ok()
    }

    /// Read stdout lines until one contains `want` and return it from
    /// `want` on, trimmed (libtest prints `test child_entry ... ` before a
    /// re-run test binary's first line). Panics if stdout ends first or
    /// nothing matches within `limit`.
    pub fn wait_line(&mut self, want: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Some(line) = self.next_line(left) else {
                let exited = self.try_exit();
                panic!(
                    "{} (pid {}) did not print {want:?} within {limit:?} (exited: {exited:?})",
                    self.what,
                    self.pid(),
                )
            };
            if let Some(at) = line.find(want) {
                return line[at..].trim().to_string();
            }
        }
    }

    /// Collect the child's exit status and its piped stdout and stderr,
    /// waiting at most `limit`; after that the group is killed and the
    /// output so far returned (check the status: killed by SIGKILL).
    pub fn output(self, limit: Duration) -> Output {
        self.output_bounded(limit).0
    }

    /// [`ChildGuard::output`] and whether the limit was reached.
    fn output_bounded(mut self, limit: Duration) -> (Output, bool) {
        let out_t = drain(self.child.stdout.take());
        let err_t = drain(self.child.stderr.take());
        let (status, timed_out) = match self.exits_within(limit) {
            Some(st) => (st, false),
            None => (self.kill(), true),
        };
        // The child is gone; a grandchild holding the pipes open dies with
        // the group when `self` drops, so kill it before joining.
        self.kill_group();
        let out = Output {
            status,
            stdout: out_t.join().expect("stdout reader"),
            stderr: err_t.join().expect("stderr reader"),
        };
        (out, timed_out)
    }
}

/// Read a pipe to its end in a thread.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut v);
        }
        v
    })
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// This test binary, re-run on the one `#[ignore]`d test `name` (a child
/// process entry point: the role comes in environment variables), with
/// `--nocapture` so its prints reach the piped stdout, stderr inherited.
pub fn this_test_binary(name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    cmd
}

/// Run `cmd` with stdin `/dev/null` and stdout/stderr captured; after
/// `limit` its group is killed and whatever it printed is returned (the
/// status then says SIGKILL).
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    spawn_captured(cmd).output(limit)
}

/// Like [`run`], but a command still running after `limit` is a failure
/// (watchdog): panics with its stderr so far.
pub fn run_to_end(cmd: &mut Command, limit: Duration) -> Output {
    let (out, timed_out) = spawn_captured(cmd).output_bounded(limit);
    assert!(
        !timed_out,
        "watchdog: {cmd:?} still running after {limit:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn spawn_captured(cmd: &mut Command) -> ChildGuard {
    ChildGuard::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

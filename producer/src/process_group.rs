//! A supervised child and everything it starts: its process group.
//!
//! The supervisor spawns each publisher as the leader of a new process
//! group (`setpgid(0, 0)` before exec), so a `command =` wrapper script and
//! the programs it starts share one group id, the leader's pid. Signals go
//! to the whole group (`kill(-pgid, sig)`), never to the leader alone: a
//! wrapper shell dies on SIGTERM without passing it on, and its children
//! would keep running, holding the publisher's port.
//!
//! Reaping: the supervisor is a child subreaper ([`become_subreaper`]), so
//! the members a dying wrapper orphans become its children instead of
//! init's, and [`ProcessGroup::reap`] collects every exited member with
//! `waitpid(-pgid, WNOHANG)`. A group is *empty* when `kill(-pgid, 0)`
//! fails with `ESRCH`: no member left, zombies included.
//!
//! Why signalling a group id cannot hit an unrelated process: Linux does
//! not hand out a number as a new pid while any process still uses it as
//! its pid or its process group id. The leader holds the number until it
//! is reaped, and the other members hold it as long as they exist (zombies
//! too). The last member is reaped by the supervisor itself (a member's
//! parent is the supervisor or another member; orphans come to the
//! subreaper), and right after reaping the handle checks for emptiness and
//! from then on never signals the group again. Reuse would need the pid
//! counter to wrap around between those two system calls.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// How long to wait for SIGKILLed members to die and be reaped.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// Polling period while waiting for a group to empty.
const POLL: Duration = Duration::from_millis(10);

/// Make this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): orphaned
/// descendants are reparented to it, so it can reap the members of its
/// children's process groups after a wrapper exits.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(2) with PR_SET_CHILD_SUBREAPER takes one integer
    // argument and changes only this process's attribute; no memory is
    // passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a group ended when it was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Empty after the first signal (or already empty).
    Clean,
    /// Members were still alive after the grace time and got SIGKILL; the
    /// group is empty now.
    Killed,
    /// Still not empty [`KILL_WAIT`] after SIGKILL (a process stuck in the
    /// kernel, or a member whose parent does not reap it).
    Stuck,
}

/// The process group a spawned child leads.
#[derive(Debug)]
pub struct ProcessGroup {
    /// The leader's pid, which is the group id.
    pgid: libc::pid_t,
    /// The leader's exit status, once reaped.
    leader: Option<ExitStatus>,
    /// Seen empty: never signalled again.
    empty: bool,
}

impl ProcessGroup {
    /// Take over `child`, which must have been spawned as the leader of
    /// its own process group (`setpgid(0, 0)` in `pre_exec`). The `Child`
    /// is consumed so that nobody waits for it through std, which would
    /// reap the leader behind this handle's back.
    pub fn of_leader(child: std::process::Child) -> io::Result<ProcessGroup> {
        let pgid = libc::pid_t::try_from(child.id())
            .map_err(|_| io::Error::other(format!("pid {} out of range", child.id())))?;
        // Dropping a `Child` neither kills nor waits for it.
        drop(child);
        Ok(ProcessGroup {
            pgid,
            leader: None,
            empty: false,
        })
    }

    /// The group id (the leader's pid).
    pub fn id(&self) -> u32 {
        self.pgid.unsigned_abs()
    }

    /// The leader's exit status if it has exited (reaping it), without
    /// blocking.
    pub fn leader_exit(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.leader.is_none() {
            let mut raw = 0;
            // SAFETY: waitpid(2) on the leader, our own child, which only
            // this handle reaps; `raw` is a valid out-pointer for the call.
            let r = unsafe { libc::waitpid(self.pgid, &mut raw, libc::WNOHANG) };
            if r == self.pgid {
                self.leader = Some(ExitStatus::from_raw(raw));
            } else if r < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("waitpid({}): {e}", self.pgid),
                ));
            }
        }
        Ok(self.leader)
    }

    /// Send `sig` to every member. `false` when the group is empty.
    pub fn signal(&mut self, sig: libc::c_int) -> bool {
        if self.empty {
            return false;
        }
        // SAFETY: kill(2) on a process group that has not been seen empty,
        // so its id is still reserved for it (module docs); no memory is
        // involved.
        let rc = unsafe { libc::kill(-self.pgid, sig) };
        if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            self.empty = true;
        }
        !self.empty
    }

    /// Reap every exited member that is our child (the leader, and the
    /// orphans a wrapper left to the subreaper); `true` when the group is
    /// empty.
    pub fn reap(&mut self) -> bool {
        if self.empty {
            return true;
        }
        loop {
            let mut raw = 0;
            // SAFETY: waitpid(2) for exited children of ours in our
            // child's process group; `raw` is a valid out-pointer.
            let r = unsafe { libc::waitpid(-self.pgid, &mut raw, libc::WNOHANG) };
            if r <= 0 {
                // 0: members of ours still running; -1 (ECHILD): none of
                // our children is left in the group.
                break;
            }
            if r == self.pgid {
                self.leader = Some(ExitStatus::from_raw(raw));
            }
        }
        // Signal 0 checks for members without sending anything.
        !self.signal(0)
    }

    /// Stop the group: `first` (SIGTERM, or SIGKILL for a hung child) to
    /// every member, up to `grace` for them to exit, then SIGKILL to the
    /// rest; reaps all of them.
    pub fn stop(&mut self, first: libc::c_int, grace: Duration) -> Stopped {
        stop_all(&mut [self], first, grace)[0]
    }
}

/// Stop several groups at once (the service's stop): `first` to all, one
/// shared `grace`, then SIGKILL to every group not yet empty. One result
/// per group, in order.
pub fn stop_all(
    groups: &mut [&mut ProcessGroup],
    first: libc::c_int,
    grace: Duration,
) -> Vec<Stopped> {
    for g in groups.iter_mut() {
        g.signal(first);
    }
    let mut out = vec![Stopped::Clean; groups.len()];
    if wait_empty(groups, grace) {
        return out;
    }
    for (g, o) in groups.iter_mut().zip(out.iter_mut()) {
        if !g.reap() {
            g.signal(libc::SIGKILL);
            *o = Stopped::Killed;
        }
    }
    wait_empty(groups, KILL_WAIT);
    for (g, o) in groups.iter_mut().zip(out.iter_mut()) {
        if !g.reap() {
            *o = Stopped::Stuck;
        }
    }
    out
}

/// Reap until every group is empty (`true`) or `limit` has passed.
fn wait_empty(groups: &mut [&mut ProcessGroup], limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        let mut all = true;
        for g in groups.iter_mut() {
            all &= g.reap();
        }
        if all {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

impl Drop for ProcessGroup {
    /// A group still populated when its handle goes (the supervisor
    /// unwinding from a panic) is killed, so no member outlives the
    /// supervisor holding a port.
    fn drop(&mut self) {
        if !self.reap() {
            tracing::warn!(pgid = self.pgid, "process group left running: SIGKILL");
            self.stop(libc::SIGKILL, Duration::ZERO);
        }
    }
}

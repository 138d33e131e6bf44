//! The on-demand lifecycle of one stream's worker, and the newest-value
//! hand-off from that worker to its viewers.
//!
//! [`OnDemand`] counts viewers (and pending snapshots). The first one starts
//! the worker through the start function given to [`OnDemand::new`]; the
//! worker asks [`Worker::keep_running`] between frames and is told to stop
//! once nobody has needed it for the grace time. An explicit
//! [`OnDemand::start`] pins the worker on until [`OnDemand::stop`].
//!
//! All transitions (join, leave, start, stop, and the worker's decision to
//! exit) happen under one mutex, so a viewer joining at the moment the
//! worker decides to exit either keeps it running or starts a new one.
//!
//! Output goes through a `tokio::sync::watch` channel created per run: it
//! holds only the newest value, so a slow viewer skips to the newest frame
//! and never builds a queue, and a stalled viewer holds nobody up. When a
//! run ends its sender is dropped and viewers' `changed()` fails, which ends
//! their streams.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

/// The receiving side handed to viewers: `None` until the first output.
pub type Latest<T> = watch::Receiver<Option<Arc<T>>>;

/// Why joining failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    /// The stream already has its maximum number of viewers.
    #[error("stream is full: {max} viewers")]
    Full {
        /// The limit.
        max: usize,
    },
}

/// What a joiner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// A viewer: counts against the viewer limit.
    Viewer,
    /// A one-shot consumer (snapshot): keeps the worker up, not limited.
    Snapshot,
}

/// Status of an [`OnDemand`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemandStatus {
    /// A worker is running.
    pub running: bool,
    /// Time since the worker started.
    pub uptime: Option<Duration>,
    /// Viewers connected.
    pub viewers: usize,
    /// Snapshots pending.
    pub snapshots: usize,
    /// The viewer limit.
    pub max_viewers: usize,
    /// Started explicitly (stays on without viewers until stopped).
    pub pinned: bool,
    /// Times a worker was started.
    pub starts: u64,
}

/// Result of [`OnDemand::start`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartOutcome {
    /// It was running before.
    pub already_running: bool,
    /// Time since the worker started.
    pub uptime: Duration,
}

type StartFn<T> = Box<dyn Fn(Worker<T>) + Send + Sync>;

struct Run<T> {
    id: u64,
    started: Instant,
    rx: Latest<T>,
    stop: Arc<AtomicBool>,
}

struct State<T> {
    viewers: usize,
    snapshots: usize,
    pinned: bool,
    idle_since: Instant,
    run: Option<Run<T>>,
    next_id: u64,
}

/// On-demand lifecycle of one stream. Share it with `Arc`.
pub struct OnDemand<T: Send + Sync + 'static> {
    grace: Duration,
    max_viewers: usize,
    state: Mutex<State<T>>,
    start_fn: StartFn<T>,
}

impl<T: Send + Sync + 'static> std::fmt::Debug for OnDemand<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemand")
            .field("grace", &self.grace)
            .field("max_viewers", &self.max_viewers)
            .finish_non_exhaustive()
    }
}

/// A viewer's (or snapshot's) membership; leaving is dropping it.
pub struct Ticket<T: Send + Sync + 'static> {
    demand: Arc<OnDemand<T>>,
    kind: JoinKind,
    /// The newest output of the current run.
    pub rx: Latest<T>,
}

impl<T: Send + Sync + 'static> std::fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Drop for Ticket<T> {
    fn drop(&mut self) {
        let mut s = self.demand.state.lock();
        match self.kind {
            JoinKind::Viewer => s.viewers -= 1,
            JoinKind::Snapshot => s.snapshots -= 1,
        }
        if s.viewers + s.snapshots == 0 {
            s.idle_since = Instant::now();
        }
    }
}

/// Handed to the start function: the worker's side of one run.
pub struct Worker<T: Send + Sync + 'static> {
    demand: Arc<OnDemand<T>>,
    id: u64,
    tx: watch::Sender<Option<Arc<T>>>,
    stop: Arc<AtomicBool>,
}

impl<T: Send + Sync + 'static> Worker<T> {
    /// Publish a new output; viewers see only the newest.
    pub fn publish(&self, value: T) {
        self.tx.send_replace(Some(Arc::new(value)));
    }

    /// Forget the last output (e.g. while idling in the grace time, so a
    /// late joiner does not get a stale frame first). No-op when empty.
    pub fn clear(&self) {
        self.tx.send_if_modified(|v| v.take().is_some());
    }

    /// Whether anyone still needs this worker. Returns false (once and for
    /// all) after [`OnDemand::stop`] or when nobody needed it for the grace
    /// time; the run is then over and the worker should return.
    pub fn keep_running(&self) -> bool {
        // Relaxed: the flag is only a hint; the decision below is made
        // under the state mutex, which orders it with `stop`.
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let mut s = self.demand.state.lock();
        if s.run.as_ref().map(|r| r.id) != Some(self.id) {
            return false;
        }
        if s.viewers + s.snapshots == 0 && !s.pinned && s.idle_since.elapsed() >= self.demand.grace
        {
            tracing::info!("no viewers for {:?}: stopping", self.demand.grace);
            s.run = None;
            return false;
        }
        true
    }

    /// Whether any viewer or snapshot is waiting right now (a worker may
    /// skip encoding while this is false during the grace time).
    pub fn has_consumers(&self) -> bool {
        let s = self.demand.state.lock();
        s.viewers + s.snapshots > 0
    }
}

impl<T: Send + Sync + 'static> Drop for Worker<T> {
    fn drop(&mut self) {
        // A worker that returns (or panics) early ends its run, so the next
        // viewer starts a fresh one.
        let mut s = self.demand.state.lock();
        if s.run.as_ref().map(|r| r.id) == Some(self.id) {
            s.run = None;
        }
    }
}

impl<T: Send + Sync + 'static> OnDemand<T> {
    /// A lifecycle that calls `start` (which must return quickly, e.g. by
    /// spawning a thread that owns the [`Worker`]) whenever a run begins.
    pub fn new(
        grace: Duration,
        max_viewers: usize,
        start: impl Fn(Worker<T>) + Send + Sync + 'static,
    ) -> Arc<OnDemand<T>> {
        Arc::new(OnDemand {
            grace,
            max_viewers,
            state: Mutex::new(State {
                viewers: 0,
                snapshots: 0,
                pinned: false,
                idle_since: Instant::now(),
                run: None,
                next_id: 1,
            }),
            start_fn: Box::new(start),
        })
    }

    /// Grace time after the last viewer.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Begin a run if none is active; under the state lock. Returns the
    /// worker to hand to the start function after unlocking.
    fn ensure_run(self: &Arc<Self>, s: &mut State<T>) -> Option<Worker<T>> {
        if s.run.is_some() {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        let stop = Arc::new(AtomicBool::new(false));
        let id = s.next_id;
        s.next_id += 1;
        s.run = Some(Run {
            id,
            started: Instant::now(),
            rx,
            stop: stop.clone(),
        });
        Some(Worker {
            demand: self.clone(),
            id,
            tx,
            stop,
        })
    }

    /// Join as a viewer or snapshot, starting the worker if needed.
    pub fn join(self: &Arc<Self>, kind: JoinKind) -> Result<Ticket<T>, JoinError> {
        let (worker, rx) = {
            let mut s = self.state.lock();
            if kind == JoinKind::Viewer && s.viewers >= self.max_viewers {
                return Err(JoinError::Full {
                    max: self.max_viewers,
                });
            }
            match kind {
                JoinKind::Viewer => s.viewers += 1,
                JoinKind::Snapshot => s.snapshots += 1,
            }
            let worker = self.ensure_run(&mut s);
            let rx = s
                .run
                .as_ref()
                .map(|r| r.rx.clone())
                .expect("run just ensured");
            (worker, rx)
        };
        if let Some(w) = worker {
            (self.start_fn)(w);
        }
        Ok(Ticket {
            demand: self.clone(),
            kind,
            rx,
        })
    }

    /// Start (and pin) the worker; idempotent.
    pub fn start(self: &Arc<Self>) -> StartOutcome {
        let (worker, outcome) = {
            let mut s = self.state.lock();
            s.pinned = true;
            let worker = self.ensure_run(&mut s);
            let started = s.run.as_ref().map(|r| r.started).expect("run just ensured");
            let outcome = StartOutcome {
                already_running: worker.is_none(),
                uptime: started.elapsed(),
            };
            (worker, outcome)
        };
        if let Some(w) = worker {
            (self.start_fn)(w);
        }
        outcome
    }

    /// Unpin and stop the worker now (connected viewers' streams end).
    /// Returns whether it was running.
    pub fn stop(&self) -> bool {
        let mut s = self.state.lock();
        s.pinned = false;
        s.idle_since = Instant::now();
        match s.run.take() {
            Some(run) => {
                // Relaxed: see `Worker::keep_running`.
                run.stop.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Current status.
    pub fn status(&self) -> DemandStatus {
        let s = self.state.lock();
        DemandStatus {
            running: s.run.is_some(),
            uptime: s.run.as_ref().map(|r| r.started.elapsed()),
            viewers: s.viewers,
            snapshots: s.snapshots,
            max_viewers: self.max_viewers,
            pinned: s.pinned,
            starts: s.next_id - 1,
        }
    }

    /// The newest output of the current run without joining (`None` when
    /// idle or before the first output).
    pub fn peek(&self) -> Option<Arc<T>> {
        let s = self.state.lock();
        s.run.as_ref().and_then(|r| r.rx.borrow().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn demand(grace_ms: u64, max: usize) -> (Arc<OnDemand<u32>>, Arc<AtomicUsize>) {
        let starts = Arc::new(AtomicUsize::new(0));
        let s2 = starts.clone();
        let d = OnDemand::new(
            Duration::from_millis(grace_ms),
            max,
            move |w: Worker<u32>| {
                s2.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut i = 0;
                    while w.keep_running() {
                        w.publish(i);
                        i += 1;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                });
            },
        );
        (d, starts)
    }

    #[test]
    fn starts_once_stops_after_grace() {
        let (d, starts) = demand(100, 2);
        let a = d.join(JoinKind::Viewer).unwrap();
        let b = d.join(JoinKind::Viewer).unwrap();
        assert_eq!(
            d.join(JoinKind::Viewer).err(),
            Some(JoinError::Full { max: 2 })
        );
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        drop(a);
        drop(b);
        assert!(d.status().running);
        let t0 = Instant::now();
        while d.status().running && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!d.status().running);
        let _c = d.join(JoinKind::Viewer).unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn start_is_idempotent_and_stop_stops() {
        let (d, starts) = demand(10, 2);
        assert!(!d.start().already_running);
        assert!(d.start().already_running);
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        std::thread::sleep(Duration::from_millis(50));
        assert!(d.status().running, "pinned survives grace");
        assert!(d.stop());
        assert!(!d.status().running);
    }
}

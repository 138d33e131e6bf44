//! Stopping on SIGTERM or SIGINT, the same way, in every publisher.
//!
//! [`StopSignals::install`] registers both handlers at once, before the
//! server binds and prints its `listening on` line: a signal that arrives
//! right after that line (a supervisor stopping a child it just started)
//! is then always a clean stop, never the default action (death by the
//! signal, exit status 143). [`StopSignals::recv`] waits for the first of
//! them; the server then ends its clients' sessions and returns, and the
//! binary exits 0.

use std::fmt;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The signal that asked the publisher to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM (a supervisor, systemd, `kill`).
    Term,
    /// SIGINT (Ctrl-C in a terminal).
    Int,
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
        })
    }
}

/// Registering a handler failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot handle {signal}: {source}")]
pub struct InstallError {
    /// The signal whose handler could not be registered.
    pub signal: StopSignal,
    /// OS error.
    pub source: std::io::Error,
}

/// SIGTERM and SIGINT handlers, registered.
#[derive(Debug)]
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Register both handlers. Must be called inside a tokio runtime with
    /// the IO driver enabled. From then on neither signal kills the
    /// process by its default action.
    pub fn install() -> Result<StopSignals, InstallError> {
        let register = |kind, which| {
            signal(kind).map_err(|source| InstallError {
                signal: which,
                source,
            })
        };
        Ok(StopSignals {
            term: register(SignalKind::terminate(), StopSignal::Term)?,
            int: register(SignalKind::interrupt(), StopSignal::Int)?,
        })
    }

    /// Wait for the first SIGTERM or SIGINT (one that arrived since
    /// [`StopSignals::install`] counts) and log it.
    pub async fn recv(&mut self) -> StopSignal {
        let which = tokio::select! {
            _ = self.term.recv() => StopSignal::Term,
            _ = self.int.recv() => StopSignal::Int,
        };
        tracing::info!(signal = %which, "shutting down");
        which
    }
}

/// Wait until `stop` holds `true` (or its sender is gone, which also means
/// the server is going away). The watch channel's read guard is released
/// before this returns, so the caller may await afterwards.
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

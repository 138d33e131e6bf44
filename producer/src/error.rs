//! Fatal errors and the exit codes they map to (documented in
//! `docs/producer.md` and the README).

use framebus::contract::exit;

/// Why the producer stops with a non-zero status.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// Bad flags or configuration (exit 4).
    #[error("bad configuration: {0}")]
    Config(String),
    /// The bus or the device belongs to another live producer (exit 5).
    #[error("{what} is already owned by another producer (pid {pid})")]
    Owned {
        /// The bus or device.
        what: String,
        /// The other producer's pid.
        pid: u32,
    },
    /// The driver says another process uses the device (exit 5); it does
    /// not say which.
    #[error("{0} is busy: another process has it open (the driver does not say which)")]
    Busy(String),
    /// No capture device, or the source does not exist (exit 6).
    #[error("no device: {0}")]
    NoDevice(String),
    /// A library or codec the source needs is missing (exit 3).
    #[error("{0}")]
    MissingDependency(String),
    /// Anything else (exit 1).
    #[error("{0}")]
    Other(String),
}

impl Fatal {
    /// The process exit status.
    pub fn exit_code(&self) -> i32 {
        match self {
            Fatal::Other(_) => exit::FAILURE.into(),
            Fatal::MissingDependency(_) => exit::MISSING_DEPENDENCY.into(),
            Fatal::Config(_) => exit::USAGE.into(),
            Fatal::Owned { .. } | Fatal::Busy(_) => exit::IN_USE.into(),
            Fatal::NoDevice(_) => exit::NO_DEVICE.into(),
        }
    }
}

impl From<framebus::CreateError> for Fatal {
    fn from(e: framebus::CreateError) -> Fatal {
        use framebus::CreateError as E;
        match e {
            E::Exists { name, pid } => Fatal::Owned {
                what: format!("bus {name:?}"),
                pid,
            },
            e @ (E::Name(_) | E::Spec { .. } | E::Options { .. }) => Fatal::Config(e.to_string()),
            e => Fatal::Other(e.to_string()),
        }
    }
}

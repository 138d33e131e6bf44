//! What both binaries do the same way at their edges, by the process
//! contracts of [`framebus::contract`]: argument errors exit with
//! [`exit::USAGE`] (clap's own default is 2), and the first stdout line is
//! [`listening::line`].

use std::io::Write as _;
use std::process::ExitCode;

use framebus::contract::{exit, listening};

/// Log to stderr at `RUST_LOG` (default `info`, with str0m at `error`:
/// it warns once per malformed SDP offer, which would let any client flood
/// the log; WHEP logs its own one line per refused offer), as every
/// publisher does.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,str0m=error,dimpl=error")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Parse the command line. `--help` and `--version` print and exit 0; any
/// other clap error prints one line (`program: error: ... (see --help)`,
/// like every framebus binary) and exits [`exit::USAGE`].
pub fn parse_args<A: clap::Parser>() -> A {
    A::try_parse().unwrap_or_else(|e| {
        if e.use_stderr() {
            let program = std::env::args_os()
                .next()
                .and_then(|a| {
                    std::path::Path::new(&a)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "framebus".into());
            eprintln!("{program}: {}", one_line(&e.to_string()));
            std::process::exit(i32::from(exit::USAGE));
        }
        e.exit()
    })
}

/// The first non-empty line of clap's message (`error: ...`), with a
/// pointer to `--help` in place of its usage block.
fn one_line(message: &str) -> String {
    let first = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("error: bad arguments");
    format!("{first} (see --help)")
}

/// `program: message` on stderr, and the exit code for a bad argument or
/// configuration ([`exit::USAGE`]).
pub fn usage_error(program: &str, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{program}: {message}");
    ExitCode::from(exit::USAGE)
}

/// `program: message` on stderr, and the exit code for a runtime error
/// ([`exit::FAILURE`]).
pub fn failure(program: &str, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{program}: {message}");
    ExitCode::from(exit::FAILURE)
}

/// Print `listening on URL` ([`listening::line`]) on stdout and flush it:
/// the supervisor and the tests wait for this line.
pub fn print_listening(url: &str) {
    print_line(&listening::line(url));
}

/// Print one line on stdout and flush it.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

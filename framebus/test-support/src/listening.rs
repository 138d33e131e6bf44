//! The first stdout line(s) of a server binary: `listening on URL` with
//! the bound address (`framebus::contract::listening`), so tests start
//! servers on port 0 and learn the port from the line.

use std::process::{Command, Stdio};
use std::time::Duration;

use framebus::contract::listening;

use crate::child::ChildGuard;

/// How long a server may take to print its line (a watchdog: cold starts
/// on a loaded 2-core machine take seconds).
pub const LIMIT: Duration = Duration::from_secs(30);

/// One listener of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listening {
    /// The URL as printed (`http://127.0.0.1:41234/`).
    pub url: String,
    /// `host:port` (`127.0.0.1:41234`).
    pub addr: String,
}

impl Listening {
    /// Parse one line; `None` if it is not a listening line.
    ///
    /// `framebus-rtsp` prints its second listener (`--http-listen`) as
    /// `http on URL`; that form is accepted for lines after the first.
    pub fn parse(line: &str) -> Option<Listening> {
        let url = listening::parse(line)?;
        Listening::from_url(url)
    }

    fn from_url(url: &str) -> Option<Listening> {
        Some(Listening {
            addr: listening::address(url)?.to_string(),
            url: url.to_string(),
        })
    }

    /// The URL without its trailing `/` (`http://127.0.0.1:41234`), to
    /// append paths to.
    pub fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }
}

/// Read `n` listening lines from `child`'s stdout (the first must be
/// `listening on URL`), waiting at most [`LIMIT`] for each; panics on any
/// other line. The rest of stdout keeps being drained.
pub fn read(child: &mut ChildGuard, n: usize) -> Vec<Listening> {
    (0..n)
        .map(|i| {
            let line = child.next_line(LIMIT).unwrap_or_else(|| {
                panic!(
                    "pid {} printed no listening line #{} within {LIMIT:?} (exited: {:?})",
                    child.pid(),
                    i + 1,
                    child.try_exit()
                )
            });
            let parsed = Listening::parse(&line).or_else(|| {
                let legacy = line.trim().strip_prefix("http on ").filter(|_| i > 0)?;
                Listening::from_url(legacy.trim())
            });
            parsed.unwrap_or_else(|| panic!("unexpected stdout line #{}: {line:?}", i + 1))
        })
        .collect()
}

/// Read the first line only.
pub fn read_one(child: &mut ChildGuard) -> Listening {
    read(child, 1).remove(0)
}

/// Spawn `cmd` with stdin `/dev/null` and stdout piped (stderr as `cmd`
/// says) and read its `n` listening lines.
pub fn spawn(cmd: &mut Command, n: usize) -> (ChildGuard, Vec<Listening>) {
    let mut child = ChildGuard::spawn(cmd.stdin(Stdio::null()).stdout(Stdio::piped()));
    let l = read(&mut child, n);
    (child, l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_line() {
        let l = Listening::parse("listening on http://127.0.0.1:8080/\n").unwrap();
        assert_eq!(l.addr, "127.0.0.1:8080");
        assert_eq!(l.base(), "http://127.0.0.1:8080");
        assert!(Listening::parse("http on http://127.0.0.1:8080/").is_none());
    }
}

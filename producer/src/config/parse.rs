//! Reading `framebus.toml`: TOML errors and bad values at their line and
//! column, then the checks across values (at least one camera, a bus
//! named twice, backoff bounds, a listen address used twice or already
//! taken).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use super::model::Config;

/// Why a config file cannot be used. Displayed as `FILE:LINE:COL: what`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Bad TOML, an unknown key or a bad value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A problem that has no single position.
    #[error("{}: {message}", path.display())]
    Whole {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// Read and check a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parse and check config text (`path` only names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let at = |offset: usize, message: String| {
        let (line, column) = line_col(text, offset);
        ConfigError::At {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let config: Config = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => at(span.start, e.message().trim().to_string()),
        None => ConfigError::Whole {
            path: path.to_path_buf(),
            message: e.message().trim().to_string(),
        },
    })?;

    if config.cameras.is_empty() {
        return Err(ConfigError::Whole {
            path: path.to_path_buf(),
            message: "no [[camera]]: at least one camera is needed".into(),
        });
    }
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for cam in &config.cameras {
        let name = cam.bus.get_ref().as_str();
        let start = cam.bus.span().start;
        framebus::validate_name(name).map_err(|e| at(start, e.to_string()))?;
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            let (line, _) = line_col(text, *first);
            return Err(at(
                start,
                format!("bus {name:?} is already used by the camera at line {line}"),
            ));
        }
        seen.push((name, start));
        if cam.reconnect_max.0 < cam.reconnect_initial.0 {
            return Err(at(
                start,
                format!("camera {name:?}: reconnect_max is shorter than reconnect_initial"),
            ));
        }
    }
    let s = &config.supervision;
    if s.backoff_max.0 < s.backoff_initial.0 {
        return Err(ConfigError::Whole {
            path: path.to_path_buf(),
            message: "[supervision] backoff_max is shorter than backoff_initial".into(),
        });
    }

    let mut listens: Vec<(SocketAddr, usize)> = Vec::new();
    for (kind, common) in config.publishers() {
        for p in &common.profiles {
            let wrong = match kind {
                "mjpeg" => p
                    .bitrate
                    .as_ref()
                    .map(|b| ("bitrate", b.span().start))
                    .or(p.gop.as_ref().map(|g| ("gop", g.span().start))),
                _ => p.quality.as_ref().map(|q| ("quality", q.span().start)),
            };
            if let Some((key, start)) = wrong {
                return Err(at(
                    start,
                    format!("`{key}` does not apply to {kind} profiles"),
                ));
            }
        }
        if !common.enabled {
            continue;
        }
        let addr = *common.listen.get_ref();
        let start = common.listen.span().start;
        if addr.port() == 0 {
            continue;
        }
        if let Some((_, first)) = listens.iter().find(|(a, _)| *a == addr) {
            let (line, _) = line_col(text, *first);
            return Err(at(
                start,
                format!("publishers.{kind}.listen: {addr} is also used at line {line}"),
            ));
        }
        listens.push((addr, start));
        // A port another process holds is a configuration error now rather
        // than a crash loop later.
        if let Err(e) = TcpListener::bind(addr) {
            return Err(at(
                start,
                format!("publishers.{kind}.listen: cannot listen on {addr}: {e}"),
            ));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Size;

    fn err(text: &str) -> String {
        parse(Path::new("t.toml"), text).unwrap_err().to_string()
    }

    const CAM: &str = "[[camera]]\nbus = \"c0\"\n";

    #[test]
    fn example_parses() {
        let text = include_str!("../../../examples/framebus.toml");
        // The example's ports may be taken on this machine: only parse.
        let c: Config = toml::from_str(text).expect("example parses");
        assert_eq!(c.cameras.len(), 1);
        assert_eq!(c.cameras[0].size, Some(Size(1920, 1080)));
        assert_eq!(c.supervision.backoff_initial.0, Duration::from_secs(10));
        assert_eq!(c.supervision.backoff_max.0, Duration::from_secs(300));
        assert_eq!(c.supervision.max_restarts, 50);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err(&format!("{CAM}sise = \"1x1\"\n"));
        assert!(e.starts_with("t.toml:3:1: unknown field `sise`"), "{e}");
        let e = err(&format!("{CAM}size = \"12by7\"\n"));
        assert!(e.starts_with("t.toml:3:8: "), "{e}");
        assert!(e.contains("12by7"), "{e}");
        let e = err(&format!("{CAM}{CAM}"));
        assert!(
            e.starts_with("t.toml:4:7: bus \"c0\" is already used by the camera at line 2"),
            "{e}"
        );
        let e = err("");
        assert!(e.contains("no [[camera]]"), "{e}");
    }
}

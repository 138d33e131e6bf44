//! What both publishers' authentication shares: the `user:password`
//! credentials, where they come from (`--auth`, `--auth-file PATH` or an
//! environment variable, in that order, with the source reported), and the
//! constant-time comparison of secrets.
//!
//! The protocols stay in their modules: HTTP Basic and Bearer in
//! `mjpeg/auth.rs` (and the `--http-listen` side of `framebus-rtsp`), RTSP
//! Basic and Digest in `rtsp/auth.rs`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use subtle::ConstantTimeEq as _;

/// A user name and password (`user:password`; the password may contain
/// `:` and spaces). `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (not empty).
    pub user: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a text is not `user:password`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// A file with only blank lines and `#` comments.
    #[error("no user:password line")]
    NoLine,
    /// No `:`.
    #[error("no ':' between user and password")]
    NoColon,
    /// Nothing before the `:`.
    #[error("empty user name")]
    EmptyUser,
}

impl FromStr for Credentials {
    type Err = SyntaxError;

    fn from_str(s: &str) -> Result<Credentials, SyntaxError> {
        let (user, password) = s.split_once(':').ok_or(SyntaxError::NoColon)?;
        if user.is_empty() {
            return Err(SyntaxError::EmptyUser);
        }
        Ok(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

impl Credentials {
    /// Whether `user:password` matches, compared in constant time.
    pub fn matches(&self, user_colon_password: &[u8]) -> bool {
        let want = format!("{}:{}", self.user, self.password);
        eq(user_colon_password, want.as_bytes())
    }

    /// Whether the base64 parameter of a Basic `Authorization` header
    /// (HTTP and RTSP alike) holds these credentials.
    pub fn matches_basic(&self, base64_param: &str) -> bool {
        base64::engine::general_purpose::STANDARD
            .decode(base64_param.trim())
            .is_ok_and(|d| self.matches(&d))
    }
}

/// Constant-time comparison of secrets (`subtle`: the contents cannot
/// leak through timing; the length can, as slices of different lengths
/// compare unequal at once).
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// Where the credentials came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// `--auth` on the command line (visible in `ps`).
    Argument,
    /// `--auth-file PATH`.
    File,
    /// The publisher's environment variable (`framebus::contract::env`).
    Environment,
}

/// Credentials that could not be loaded (the binaries exit
/// `framebus::contract::exit::USAGE`).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file could not be read.
    #[error("cannot read the credentials file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or variable does not hold `user:password`.
    #[error("{origin} does not hold USER:PASS ({why})")]
    Syntax {
        /// The file path or the variable name.
        origin: String,
        /// What is wrong.
        why: SyntaxError,
    },
}

/// Parses the content of a credentials file: the first line that is not
/// empty and does not start with `#`, as `user:password` (the line end is
/// not part of the password; other spaces are).
pub fn parse_credentials_file(text: &str, origin: &str) -> Result<Credentials, CredentialError> {
    let syntax = |why| CredentialError::Syntax {
        origin: origin.to_string(),
        why,
    };
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .ok_or(syntax(SyntaxError::NoLine))?
        .parse()
        .map_err(syntax)
}

/// The credentials to require, from (in this order) `--auth` (`arg`),
/// `--auth-file` (`file`) or the environment variable `env_var` (unset or
/// empty: none). Logs the source, and warns when the password is on the
/// command line or the file is readable by group or others.
pub fn load_credentials(
    arg: Option<Credentials>,
    file: Option<&Path>,
    env_var: &str,
) -> Result<Option<(Credentials, CredentialSource)>, CredentialError> {
    let found = select(arg, file, std::env::var(env_var).ok(), env_var)?;
    if let Some((c, source)) = &found {
        match source {
            CredentialSource::Argument => tracing::warn!(
                "--auth puts the password where `ps` shows it; prefer --auth-file or {env_var}"
            ),
            CredentialSource::File => warn_if_readable(file.expect("file source")),
            CredentialSource::Environment => {}
        }
        tracing::info!(?source, user = %c.user, "authentication required");
    }
    Ok(found)
}

/// [`load_credentials`] with the variable's value given, without logging.
fn select(
    arg: Option<Credentials>,
    file: Option<&Path>,
    env_value: Option<String>,
    env_var: &str,
) -> Result<Option<(Credentials, CredentialSource)>, CredentialError> {
    if let Some(c) = arg {
        return Ok(Some((c, CredentialSource::Argument)));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let c = parse_credentials_file(&text, &path.display().to_string())?;
        return Ok(Some((c, CredentialSource::File)));
    }
    match env_value {
        Some(v) if !v.is_empty() => {
            let c = v.parse().map_err(|why| CredentialError::Syntax {
                origin: env_var.to_string(),
                why,
            })?;
            Ok(Some((c, CredentialSource::Environment)))
        }
        _ => Ok(None),
    }
}

fn warn_if_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "--auth-file is readable by group or others (chmod 600 it)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAR: &str = "FRAMEBUS_TEST_AUTH";

    #[test]
    fn credentials_from_argument_file_or_environment() {
        let dir = std::env::temp_dir().join(format!("fb-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("auth");
        std::fs::write(&f, "# viewer account\n\nviewer:pa ss:word\r\n").unwrap();
        let arg: Credentials = "a:b".parse().unwrap();
        let env = Some("e:f".to_string());
        let (c, src) = select(Some(arg.clone()), Some(&f), env.clone(), VAR)
            .unwrap()
            .unwrap();
        assert_eq!((c, src), (arg, CredentialSource::Argument));
        let (c, src) = select(None, Some(&f), env.clone(), VAR).unwrap().unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("viewer", "pa ss:word")
        );
        assert_eq!(src, CredentialSource::File);
        let (c, src) = select(None, None, env, VAR).unwrap().unwrap();
        assert_eq!((c.user.as_str(), src), ("e", CredentialSource::Environment));
        assert!(select(None, None, None, VAR).unwrap().is_none());
        assert!(select(None, None, Some(String::new()), VAR)
            .unwrap()
            .is_none());
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(matches!(
            select(None, Some(&f), None, VAR),
            Err(CredentialError::Syntax {
                why: SyntaxError::NoLine,
                ..
            })
        ));
        std::fs::write(&f, "no-colon\n").unwrap();
        let e = select(None, Some(&f), None, VAR).unwrap_err().to_string();
        assert!(e.contains("USER:PASS"), "{e}");
        assert!(matches!(
            select(None, Some(&dir.join("missing")), None, VAR),
            Err(CredentialError::Read { .. })
        ));
        let e = select(None, None, Some(":x".into()), VAR).unwrap_err();
        assert!(e.to_string().starts_with(VAR), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn basic_matches_in_constant_time() {
        let c: Credentials = "u:p".parse().unwrap();
        assert!(c.matches_basic("dTpw"));
        assert!(!c.matches_basic("dTpx"));
        assert!(!c.matches_basic("not base64!"));
        assert!(!format!("{c:?}").contains("\"p\""));
    }
}

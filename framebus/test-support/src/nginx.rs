//! [`CacheProxy`]: Debian's nginx (`/usr/sbin/nginx`, `apt-get install
//! nginx`) as a caching reverse proxy in front of an HTTP origin, configured
//! from the one template people copy, `examples/nginx/framebus-hls.conf`
//! (its placeholders filled by [`NginxConf::render`]), and its access log
//! counted by cache status ([`CacheStats`]).
//!
//! Each proxy lives in its own [`TempDir`] (config, cache, temporary files,
//! logs, pid file) and listens on a loopback port of its own, so tests run
//! in parallel. nginx runs in the foreground (`daemon off; master_process
//! on;`) as a [`ChildGuard`]: dropping the proxy kills its process group
//! (master and workers). Run as root, the workers run as root too (the
//! template's `user`; nginx ignores it otherwise), so that they can write
//! the test's directory whatever its owner.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::port::free_port;
use crate::{ChildGuard, TempDir};

/// `examples/nginx/framebus-hls.conf`, the template.
pub const TEMPLATE: &str = include_str!("../../../examples/nginx/framebus-hls.conf");

/// Debian's nginx.
pub const NGINX: &str = "/usr/sbin/nginx";

/// The values of the template's placeholders (`{{name}}`).
#[derive(Clone, Debug)]
pub struct NginxConf {
    /// `{{user}}`: user of the worker processes.
    pub user: String,
    /// `{{pid}}`: pid file.
    pub pid: PathBuf,
    /// `{{error_log}}`: error log.
    pub error_log: PathBuf,
    /// `{{access_log}}`: access log (JSON lines, format `framebus_hls`).
    pub access_log: PathBuf,
    /// `{{temp_dir}}`: directory of nginx's temporary files.
    pub temp_dir: PathBuf,
    /// `{{cache_dir}}`: the cache.
    pub cache_dir: PathBuf,
    /// `{{listen}}`: the proxy's address.
    pub listen: SocketAddr,
    /// `{{origin}}`: the origin's address.
    pub origin: SocketAddr,
}

impl NginxConf {
    /// [`TEMPLATE`] with every placeholder replaced; panics if the template
    /// has one this does not know (it and this struct drifted apart).
    pub fn render(&self) -> String {
        let path = |p: &Path| p.display().to_string();
        let values = [
            ("user", self.user.clone()),
            ("pid", path(&self.pid)),
            ("error_log", path(&self.error_log)),
            ("access_log", path(&self.access_log)),
            ("temp_dir", path(&self.temp_dir)),
            ("cache_dir", path(&self.cache_dir)),
            ("listen", self.listen.to_string()),
            ("origin", self.origin.to_string()),
        ];
        // The header comment lists the placeholders too: fill only the
        // directives, leave comments as they are.
        let mut out = String::with_capacity(TEMPLATE.len());
        for line in TEMPLATE.lines() {
            if line.trim_start().starts_with('#') {
                out.push_str(line);
            } else {
                let mut l = line.to_string();
                for (name, value) in &values {
                    l = l.replace(&format!("{{{{{name}}}}}"), value);
                }
                assert!(
                    !l.contains("{{"),
                    "examples/nginx/framebus-hls.conf: unknown placeholder in {l:?}"
                );
                out.push_str(&l);
            }
            out.push('\n');
        }
        out
    }
}

/// A running nginx caching proxy; killed (master and workers) on drop.
pub struct CacheProxy {
    addr: SocketAddr,
    conf: NginxConf,
    nginx: ChildGuard,
    dir: TempDir,
}

/// Attempts at a free port (another process may take the one we picked
/// before nginx binds it).
const ATTEMPTS: u32 = 5;

impl CacheProxy {
    /// Starts nginx proxying (and caching) `origin`, and waits until it
    /// listens (watchdog: 20 s per attempt).
    pub fn start(origin: SocketAddr) -> CacheProxy {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} not found: `apt-get install nginx` (`make deps`)"
        );
        let dir = TempDir::new("nginx");
        let p = dir.path();
        for sub in ["cache", "temp", "logs"] {
            std::fs::create_dir_all(p.join(sub))
                .unwrap_or_else(|e| panic!("create {}/{sub}: {e}", p.display()));
        }
        let user = if is_root() {
            "root".to_string()
        } else {
            // Ignored by nginx when not root; any name does.
            std::env::var("USER").unwrap_or_else(|_| "nobody".to_string())
        };
        for attempt in 1..=ATTEMPTS {
            let conf = NginxConf {
                user: user.clone(),
                pid: p.join("nginx.pid"),
                error_log: p.join("logs/error.log"),
                access_log: p.join("logs/access.log"),
                temp_dir: p.join("temp"),
                cache_dir: p.join("cache"),
                listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
                origin,
            };
            let file = p.join("nginx.conf");
            std::fs::write(&file, conf.render())
                .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
            let stderr = std::fs::File::create(p.join("logs/stderr.log")).expect("stderr.log");
            let mut cmd = Command::new(NGINX);
            cmd.arg("-p")
                .arg(p)
                .arg("-c")
                .arg(&file)
                .arg("-e")
                .arg(&conf.error_log)
                .args(["-g", "daemon off; master_process on;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(stderr));
            let mut nginx = ChildGuard::spawn(&mut cmd);
            let end = Instant::now() + Duration::from_secs(20);
            let listening = loop {
                // nginx writes its pid file once it has bound its socket.
                let pid = std::fs::read_to_string(&conf.pid).unwrap_or_default();
                if pid.trim() == nginx.pid().to_string() && TcpStream::connect(conf.listen).is_ok()
                {
                    break true;
                }
                if nginx.try_exit().is_some() {
                    break false;
                }
                if Instant::now() > end {
                    nginx.kill();
                    panic!(
                        "watchdog: nginx did not listen on {} within 20 s; {}",
                        conf.listen,
                        logs(p)
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if listening {
                return CacheProxy {
                    addr: conf.listen,
                    conf,
                    nginx,
                    dir,
                };
            }
            let logs = logs(p);
            assert!(
                logs.contains("Address already in use") && attempt < ATTEMPTS,
                "nginx exited (attempt {attempt}): {logs}"
            );
        }
        unreachable!("the last attempt panics")
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `url` (an origin URL, `http://ORIGIN/...`) through the proxy.
    pub fn rebase(&self, url: &str) -> String {
        let origin = format!("http://{}", self.conf.origin);
        let rest = url
            .strip_prefix(&origin)
            .unwrap_or_else(|| panic!("{url} is not on the origin {origin}"));
        self.url(rest)
    }

    /// The configuration it runs (the template, filled).
    pub fn conf(&self) -> &NginxConf {
        &self.conf
    }

    /// nginx's process id (the master).
    pub fn pid(&self) -> u32 {
        self.nginx.pid()
    }

    /// Its directory (config, cache, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every request logged so far (nginx logs a request when it ends).
    pub fn entries(&self) -> Vec<LogEntry> {
        let text = std::fs::read_to_string(&self.conf.access_log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "{}: not a framebus_hls line ({e}): {l}",
                        self.conf.access_log.display()
                    )
                })
            })
            .collect()
    }

    /// The access log so far, counted ([`CacheStats`]).
    pub fn stats(&self) -> CacheStats {
        CacheStats::from_entries(&self.entries())
    }

    /// The error log and nginx's stderr so far.
    pub fn logs(&self) -> String {
        logs(self.dir.path())
    }
}

fn logs(dir: &Path) -> String {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    format!(
        "error.log: {}\nstderr: {}",
        read("logs/error.log"),
        read("logs/stderr.log")
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// One line of the access log (format `framebus_hls` of the template).
#[derive(Clone, Debug, Deserialize)]
pub struct LogEntry {
    /// `$time_iso8601`.
    pub time: String,
    /// `$upstream_cache_status`: `HIT`, `MISS`, ...; empty when the cache
    /// was not involved.
    pub cache: String,
    /// `$status`.
    pub status: u16,
    /// `$request_method`.
    pub method: String,
    /// `$request_uri`: path and query, as the client sent them.
    pub uri: String,
    /// `$request_time`, seconds.
    pub request_time: f64,
    /// `$upstream_response_time`: empty when nginx did not ask the origin
    /// (several comma-separated times when it asked more than once).
    pub upstream_time: String,
    /// `$body_bytes_sent`.
    pub bytes: u64,
}

impl LogEntry {
    /// What was asked for, from the path's extension.
    pub fn kind(&self) -> Kind {
        let (path, query) = self.uri.split_once('?').unwrap_or((&self.uri, ""));
        if path.ends_with(".m3u8") {
            let blocking = query.split('&').any(|kv| kv.starts_with("_HLS_msn="));
            if blocking {
                Kind::BlockingPlaylist
            } else {
                Kind::Playlist
            }
        } else if path.ends_with(".m4s") {
            Kind::Media
        } else if path.ends_with(".mp4") {
            Kind::Init
        } else {
            Kind::Other
        }
    }

    /// Whether nginx asked the origin for it.
    pub fn went_upstream(&self) -> bool {
        !self.upstream_time.is_empty() && self.upstream_time != "-"
    }
}

/// Kinds of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `.m3u8` without `_HLS_msn`: multivariant or media playlist.
    Playlist,
    /// `.m3u8` with `_HLS_msn`: an LL-HLS blocking reload.
    BlockingPlaylist,
    /// `.m4s`: a part or a segment.
    Media,
    /// `.mp4`: an init segment.
    Init,
    /// Anything else.
    Other,
}

/// Requests by `$upstream_cache_status`.
///
/// Served from the cache: `HIT` (fresh entry), `UPDATING` (an expired
/// entry while another request refreshes it) and `STALE` (an expired entry
/// because the origin failed). Looked up in the cache: those, plus `MISS`
/// (no entry: fetched from the origin, stored if the origin allows),
/// `EXPIRED` (entry too old: fetched again) and `REVALIDATED` (expired,
/// confirmed by the origin with a 304). `BYPASS` (`proxy_cache_bypass`)
/// and `none` (cache not involved: an `OPTIONS` preflight, an error of
/// nginx's own) are neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// `HIT`.
    pub hit: u64,
    /// `MISS`.
    pub miss: u64,
    /// `EXPIRED`.
    pub expired: u64,
    /// `UPDATING`.
    pub updating: u64,
    /// `STALE`.
    pub stale: u64,
    /// `REVALIDATED`.
    pub revalidated: u64,
    /// `BYPASS`.
    pub bypass: u64,
    /// No cache status (`-`: empty in the log).
    pub none: u64,
    /// Requests that nginx passed to the origin (any status).
    pub upstream: u64,
}

impl StatusCounts {
    fn add(&mut self, e: &LogEntry) {
        match e.cache.as_str() {
            "HIT" => self.hit += 1,
            "MISS" => self.miss += 1,
            "EXPIRED" => self.expired += 1,
            "UPDATING" => self.updating += 1,
            "STALE" => self.stale += 1,
            "REVALIDATED" => self.revalidated += 1,
            "BYPASS" => self.bypass += 1,
            _ => self.none += 1,
        }
        if e.went_upstream() {
            self.upstream += 1;
        }
    }

    /// Every request.
    pub fn requests(&self) -> u64 {
        self.looked_up() + self.bypass + self.none
    }

    /// Answered from the cache: `HIT + UPDATING + STALE`.
    pub fn from_cache(&self) -> u64 {
        self.hit + self.updating + self.stale
    }

    /// Looked up in the cache: from the cache, plus `MISS + EXPIRED +
    /// REVALIDATED`.
    pub fn looked_up(&self) -> u64 {
        self.from_cache() + self.miss + self.expired + self.revalidated
    }

    /// `from_cache / looked_up`: the share of cacheable requests (those
    /// nginx looked up: `GET`/`HEAD` through `proxy_cache`, not bypassed)
    /// that the origin did not have to answer. `None` when there were none.
    /// A `MISS` for a response the origin marks uncacheable counts against
    /// it too: the ratio says how much of the load the cache took.
    pub fn hit_ratio(&self) -> Option<f64> {
        let n = self.looked_up();
        (n > 0).then(|| self.from_cache() as f64 / n as f64)
    }
}

/// The access log, counted.
#[derive(Clone, Debug, Default)]
pub struct CacheStats {
    /// Every request.
    pub total: StatusCounts,
    /// By kind of request.
    pub by_kind: BTreeMap<Kind, StatusCounts>,
}

impl CacheStats {
    /// Counts `entries`.
    pub fn from_entries(entries: &[LogEntry]) -> CacheStats {
        let mut s = CacheStats::default();
        for e in entries {
            s.total.add(e);
            s.by_kind.entry(e.kind()).or_default().add(e);
        }
        s
    }

    /// The counts of one kind (zero if none).
    pub fn kind(&self, k: Kind) -> StatusCounts {
        self.by_kind.get(&k).copied().unwrap_or_default()
    }

    /// [`StatusCounts::hit_ratio`] of every request.
    pub fn hit_ratio(&self) -> Option<f64> {
        self.total.hit_ratio()
    }
}

//! The nginx cache helper (`framebus_test_support::nginx`) and the
//! template it runs, `examples/nginx/framebus-hls.conf`, against a trivial
//! origin: a cacheable response is served from the cache the second time,
//! the per-viewer `s` argument is not part of the key but the LL-HLS
//! delivery directives are, and concurrent blocking reloads of one
//! playlist update reach the origin once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use framebus_test_support::nginx::{CacheProxy, Kind, NginxConf, TEMPLATE};

/// An HTTP/1.1 origin (keep-alive) answering every `GET` with
/// `Cache-Control: max-age=60` and a body naming the request; a request
/// with `_HLS_msn` is held `hold` first, like a blocking reload. Counts
/// requests by target. Its threads end with the test process.
struct Origin {
    addr: SocketAddr,
    seen: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Origin {
    fn start(hold: Duration) -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let s = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve(conn, &s, hold));
            }
        });
        Origin { addr, seen }
    }

    fn count(&self, target: &str) -> u32 {
        self.seen
            .lock()
            .expect("lock")
            .get(target)
            .copied()
            .unwrap_or(0)
    }
}

fn serve(conn: TcpStream, seen: &Mutex<BTreeMap<String, u32>>, hold: Duration) {
    let mut rd = BufReader::new(conn.try_clone().expect("clone"));
    let mut out = conn;
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if rd.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        *seen
            .lock()
            .expect("lock")
            .entry(target.clone())
            .or_default() += 1;
        if target.contains("_HLS_msn=") {
            std::thread::sleep(hold);
        }
        let body = format!("origin answer for {target}\n");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=60\r\n\
             Access-Control-Allow-Origin: *\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// `GET http://addr{target}` (own connection): status, `X-Cache-Status`,
/// body.
fn get(addr: SocketAddr, target: &str) -> (u16, Option<String>, String) {
    let mut c = TcpStream::connect(addr).expect("connect to the proxy");
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        c,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    c.read_to_string(&mut text).expect("read the answer");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let cache = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("x-cache-status")
            .then(|| v.trim().to_string())
    });
    (status, cache, body.to_string())
}

#[test]
fn the_template_has_exactly_the_documented_placeholders() {
    let conf = NginxConf {
        user: "u".into(),
        pid: "/p/pid".into(),
        error_log: "/p/e".into(),
        access_log: "/p/a".into(),
        temp_dir: "/p/t".into(),
        cache_dir: "/p/c".into(),
        listen: "127.0.0.1:1".parse().expect("addr"),
        origin: "127.0.0.1:2".parse().expect("addr"),
    };
    let text = conf.render();
    for want in [
        "listen 127.0.0.1:1;",
        "server 127.0.0.1:2;",
        "proxy_cache_path /p/c ",
        "access_log /p/a framebus_hls;",
        "pid /p/pid;",
        "user u;",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    // Every placeholder of a directive is listed in the header comment.
    for line in TEMPLATE
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        for rest in line.split("{{").skip(1) {
            let name = rest.split("}}").next().expect("a placeholder");
            assert!(
                TEMPLATE.contains(&format!("#   {{{{{name}}}}} ")),
                "{{{{{name}}}}} is not documented in the template's header"
            );
        }
    }
}

#[test]
fn a_cacheable_response_is_a_hit_the_second_time() {
    let origin = Origin::start(Duration::ZERO);
    let proxy = CacheProxy::start(origin.addr);
    let (st, cache, body) = get(proxy.addr(), "/cam/high/p7.m4s");
    assert_eq!((st, cache.as_deref()), (200, Some("MISS")), "{body}");
    let (st, cache, body2) = get(proxy.addr(), "/cam/high/p7.m4s");
    assert_eq!((st, cache.as_deref()), (200, Some("HIT")));
    assert_eq!(body, body2);
    assert_eq!(origin.count("/cam/high/p7.m4s"), 1);

    // nginx logs a request once it has answered it: both are in the log.
    let s = proxy.stats();
    assert_eq!(
        (s.total.miss, s.total.hit, s.total.upstream),
        (1, 1, 1),
        "{s:?}"
    );
    assert_eq!(s.kind(Kind::Media).requests(), 2, "{s:?}");
    assert_eq!(s.hit_ratio(), Some(0.5));
    assert!(proxy.entries().iter().all(|e| e.status == 200));
}

#[test]
fn the_key_ignores_s_but_not_the_delivery_directives() {
    let origin = Origin::start(Duration::ZERO);
    let proxy = CacheProxy::start(origin.addr);
    let pl = "/cam/high/index.m3u8";
    let cases = [
        ("?s=viewer1&_HLS_msn=3&_HLS_part=1", "MISS"),
        // Another viewer, same update: one entry.
        ("?s=viewer2&_HLS_msn=3&_HLS_part=1", "HIT"),
        ("?_HLS_msn=3&_HLS_part=1&s=viewer3", "HIT"),
        // The next part, the next segment, a delta update: new entries.
        ("?s=viewer2&_HLS_msn=3&_HLS_part=2", "MISS"),
        ("?s=viewer2&_HLS_msn=4&_HLS_part=0", "MISS"),
        ("?s=viewer2&_HLS_msn=4&_HLS_part=0&_HLS_skip=YES", "MISS"),
        // Without directives: the plain playlist, any viewer.
        ("?s=viewer1", "MISS"),
        ("?s=viewer9", "HIT"),
    ];
    for (query, want) in cases {
        let (st, cache, _) = get(proxy.addr(), &format!("{pl}{query}"));
        assert_eq!((st, cache.as_deref()), (200, Some(want)), "{query}");
    }
    let s = proxy.stats();
    assert_eq!(s.kind(Kind::BlockingPlaylist).requests(), 6, "{s:?}");
    assert_eq!(s.kind(Kind::BlockingPlaylist).hit, 2, "{s:?}");
    assert_eq!(s.kind(Kind::Playlist).hit, 1, "{s:?}");
}

#[test]
fn concurrent_blocking_reloads_reach_the_origin_once() {
    // Held like a blocking reload that waits for the next part.
    let origin = Origin::start(Duration::from_millis(1500));
    let proxy = CacheProxy::start(origin.addr);
    let addr = proxy.addr();
    let viewers: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                get(
                    addr,
                    &format!("/cam/high/index.m3u8?s=v{i}&_HLS_msn=12&_HLS_part=3"),
                )
            })
        })
        .collect();
    for v in viewers {
        let (st, _, body) = v.join().expect("viewer thread");
        assert_eq!(st, 200, "{body}");
        assert!(body.contains("_HLS_msn=12&_HLS_part=3"), "{body}");
    }
    let to_origin: u32 = origin.seen.lock().expect("lock").values().sum();
    assert_eq!(to_origin, 1, "proxy_cache_lock let several through");
    let s = proxy.stats().kind(Kind::BlockingPlaylist);
    assert_eq!((s.miss, s.hit, s.upstream), (1, 7, 1), "{s:?}");
    assert_eq!(s.hit_ratio(), Some(7.0 / 8.0));
}

#[test]
fn proxies_run_side_by_side_and_stop_on_drop() {
    let origin = Origin::start(Duration::ZERO);
    let a = CacheProxy::start(origin.addr);
    let b = CacheProxy::start(origin.addr);
    assert_ne!(a.addr(), b.addr());
    // Separate caches: a miss in each.
    assert_eq!(get(a.addr(), "/x/init.mp4").1.as_deref(), Some("MISS"));
    assert_eq!(get(b.addr(), "/x/init.mp4").1.as_deref(), Some("MISS"));
    assert_eq!(a.stats().kind(Kind::Init).miss, 1);
    let (pid, addr, dir) = (a.pid(), a.addr(), a.dir().to_path_buf());
    drop(a);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "nginx {pid} survived its proxy"
    );
    assert!(TcpStream::connect(addr).is_err(), "{addr} still accepts");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

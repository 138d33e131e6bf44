//! Raw bytes from an HTTP client through the same stack `framebus-mjpeg`
//! serves with (hyper's HTTP/1 parser, then the axum router: path and
//! query extraction, auth middleware, every route), over an in-memory
//! connection. Whatever the bytes: no panic, no hang (each request is
//! bounded by a timeout), and never a 500.
//!
//! Run with: `make fuzz` (or `cargo fuzz run http_request corpus/http_request`
//! in `publishers/fuzz`). The first byte picks auth on or off.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use framebus_publishers::mjpeg::auth::Auth;
use framebus_publishers::mjpeg::config::Profile;
use framebus_publishers::mjpeg::http::router;
use framebus_publishers::mjpeg::state::AppState;
use framebus_publishers::mjpeg::streams::{Streams, StreamsConfig};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    rt: tokio::runtime::Runtime,
    open: Router,
    locked: Router,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let make = |auth: Auth| {
            // No bus is known and none is discovered: routes that need a
            // bus answer 404 without starting encoders.
            let streams = Arc::new(Streams::new(StreamsConfig {
                profiles: Profile::defaults(),
                buses: Vec::new(),
                discover: false,
                shm_dir: Some("/nonexistent/framebus-fuzz".into()),
                grace: Duration::from_secs(1),
                max_viewers: 4,
            }));
            router(AppState::new(streams, auth, None), None)
        };
        World {
            open: make(Auth {
                basic: None,
                token: None,
            }),
            locked: make(Auth {
                basic: Some("user:secret".parse().expect("credentials")),
                token: Some("tok".to_string()),
            }),
            rt,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, request)) = data.split_first() else {
        return;
    };
    let w = world();
    let app = if which & 1 == 0 { &w.open } else { &w.locked }.clone();
    let request = request.to_vec();
    let answer = w.rt.block_on(async move {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let conn = tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), TowerToHyperService::new(app))
                .await;
        });
        let _ = client.write_all(&request).await;
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut answer)).await;
        conn.abort();
        answer
    });
    for line in answer.split(|&b| b == b'\n') {
        assert!(
            !line.starts_with(b"HTTP/1.1 500") && !line.starts_with(b"HTTP/1.0 500"),
            "500 for {:?}",
            String::from_utf8_lossy(data)
        );
    }
});

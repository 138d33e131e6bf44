//! `framebus-rtsp`: serves encoded buses as H.264 over RTSP at
//! `rtsp://HOST:8554/{bus}/{profile}` (the bus `{bus}.h264.{profile}` that a
//! `framebus-encoder` writes) or `rtsp://HOST:8554/{encoded-bus}`. It
//! encodes nothing. SIGTERM and SIGINT stop it the same
//! way: sessions end with an RTCP BYE, connections close, exit status 0.
//! Bad arguments (a bad credential file included) exit 4, runtime errors 1
//! (`framebus::contract::exit`).
//!
//! Run with: `framebus-rtsp --listen 127.0.0.1:8554`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use framebus::contract::env;
use framebus_publishers::common::auth::{load_credentials, Credentials};
use framebus_publishers::common::cli::{
    failure, init_logging, parse_args, print_line, print_listening, usage_error,
};
use framebus_publishers::common::shutdown::{stopped, StopSignals};
use framebus_publishers::rtsp::forward::{self, ForwardTarget};
use framebus_publishers::rtsp::push::{self, PushTarget};
use framebus_publishers::rtsp::{http, Config, Server, SHUTDOWN_DEADLINE};

/// Serve framebus buses as H.264 over RTSP.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the first stdout
    /// line names the bound address).
    #[arg(long, default_value = "127.0.0.1:8554")]
    listen: SocketAddr,
    /// A joiner starts at once from the newest keyframe in the encoded
    /// bus's GOP if it was captured at most this many milliseconds ago
    /// (the client then catches up through the frames since); otherwise
    /// the encoder is asked for a fresh keyframe (about one frame interval
    /// later). 0: always a fresh keyframe.
    #[arg(long, default_value_t = 500)]
    join_max_age_ms: u64,
    /// Clients per stream; more get 503.
    #[arg(long, default_value_t = 32)]
    max_clients: usize,
    /// Session timeout in seconds (announced in `Session:`).
    #[arg(long, default_value_t = 60)]
    session_timeout: u64,
    /// Seconds a connection without a session may take to complete a
    /// request (idle and slowloris connections are closed after it).
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
    /// RTP packet size limit in bytes.
    #[arg(long, default_value_t = 1400)]
    mtu: usize,
    /// Require `user:password` (RTSP Digest). Visible to other
    /// users in `ps`: prefer `--auth-file` or `FRAMEBUS_RTSP_AUTH`.
    #[arg(long, conflicts_with = "auth_file")]
    auth: Option<Credentials>,
    /// Read `user:password` from the first line of this file that is not
    /// empty or a `#` comment (keep it mode 0600).
    #[arg(long, value_name = "PATH")]
    auth_file: Option<PathBuf>,
    /// Seconds a Digest nonce is accepted on a new connection after it was
    /// issued (older: 401 with `stale=TRUE`, and clients retry).
    #[arg(long, default_value_t = 60)]
    nonce_lifetime: u64,
    /// Publish a stream to an external RTSP server (ANNOUNCE/RECORD, e.g.
    /// MediaMTX), reconnecting with backoff; repeatable.
    #[arg(long = "push", value_name = "URL")]
    push: Vec<String>,
    /// Send a stream as plain RTP over UDP to a receiver that fans it out
    /// (a Janus Streaming-plugin `rtp` mountpoint, docs/scale-out.md):
    /// `cam0/high=rtp://127.0.0.1:5004` (RTCP to PORT+1, or
    /// `?rtcp=PORT`), `cam0.opus=rtp://…` for the sound; a PLI or FIR
    /// coming back asks the encoder for a keyframe. Repeatable.
    #[arg(long = "forward", value_name = "PATH=rtp://HOST:PORT")]
    forward: Vec<String>,
    /// The stream `--push` publishes (`BUS/PROFILE` or an encoded bus).
    #[arg(long, value_name = "BUS/PROFILE", default_value = "cam0/high")]
    push_from: String,
    /// Shared-memory directory (default: $FRAMEBUS_SHM_DIR or /dev/shm).
    #[arg(long)]
    shm_dir: Option<PathBuf>,
    /// Also serve `/metrics`, `/api/v1/streams` and `/healthz` over HTTP
    /// on this address (off by default; the second stdout line names the
    /// bound address).
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
}

const PROGRAM: &str = "framebus-rtsp";

fn main() -> ExitCode {
    init_logging();
    let args: Args = parse_args();
    // libav*'s info lines are noise at our log level (the push muxer);
    // warnings and errors still reach stderr.
    ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Warning);
    if framebus_publishers::rtsp::stream::bus_of_path(&args.push_from).is_none() {
        return usage_error(PROGRAM, "--push-from must be BUS/PROFILE or an encoded bus");
    }
    let pushes: Vec<PushTarget> = args
        .push
        .iter()
        .map(|url| PushTarget {
            url: url.clone(),
            path: args.push_from.clone(),
        })
        .collect();
    let mut forwards = Vec::new();
    for f in &args.forward {
        match ForwardTarget::parse(f) {
            Ok(t) => forwards.push(t),
            Err(e) => return usage_error(PROGRAM, e),
        }
    }
    let auth = match load_credentials(args.auth, args.auth_file.as_deref(), env::RTSP_AUTH) {
        Ok(found) => found.map(|(c, _)| c),
        Err(e) => return usage_error(PROGRAM, e),
    };
    let config = Config {
        listen: args.listen,
        join_max_age: Duration::from_millis(args.join_max_age_ms),
        max_clients: args.max_clients,
        session_timeout: Duration::from_secs(args.session_timeout.max(1)),
        request_timeout: Duration::from_secs_f64(args.request_timeout.max(0.5)),
        mtu: args.mtu,
        auth,
        nonce_lifetime: Duration::from_secs(args.nonce_lifetime),
        shm_dir: args.shm_dir,
    };
    let http_auth = config.auth.clone();
    let http_shm = config.shm_dir.clone();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(PROGRAM, format!("cannot start the runtime: {e}")),
    };
    let code = rt.block_on(async {
        // Before anything listens: a signal from now on is a clean stop.
        let mut signals = match StopSignals::install() {
            Ok(s) => s,
            Err(e) => return failure(PROGRAM, e),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => return failure(PROGRAM, format!("cannot listen on {}: {e}", args.listen)),
        };
        match server.local_addr() {
            Ok(a) => print_listening(&format!("rtsp://{a}/")),
            Err(e) => return failure(PROGRAM, e),
        }
        let mut http_task = None;
        if let Some(addr) = args.http_listen {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    return failure(
                        PROGRAM,
                        format!("cannot listen on {addr} (--http-listen): {e}"),
                    )
                }
            };
            match listener.local_addr() {
                Ok(a) => print_line(&format!("http on http://{a}/")),
                Err(e) => return failure(PROGRAM, e),
            }
            let router = http::router(std::sync::Arc::clone(server.streams()), http_shm, http_auth);
            let mut stop = stop_rx.clone();
            let shutdown = async move { stopped(&mut stop).await };
            http_task = Some(tokio::spawn(async move {
                if let Err(e) = http::serve(listener, router, shutdown).await {
                    tracing::error!(error = %e, "HTTP listener failed");
                }
            }));
        }
        for target in forwards {
            tokio::spawn(forward::run(
                std::sync::Arc::clone(server.streams()),
                target,
            ));
        }
        for target in pushes {
            tokio::spawn(push::run(std::sync::Arc::clone(server.streams()), target));
        }
        server
            .run_until(async move {
                signals.recv().await;
                stop_tx.send_replace(true);
            })
            .await;
        if let Some(t) = http_task {
            let _ = tokio::time::timeout(SHUTDOWN_DEADLINE, t).await;
        }
        drop(stop_rx);
        ExitCode::SUCCESS
    });
    // Do not wait for blocking tasks still running (a `--push` session, a
    // bus header read); bus reader threads end with the process.
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}

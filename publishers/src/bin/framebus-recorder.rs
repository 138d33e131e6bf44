//! `framebus-recorder`: recordings of encoded buses with pre-roll from
//! memory, as fragmented MP4 that survives a crash, with an HTTP API and
//! page (docs/recording.md). `framebus-recorder record STREAM ...` (also
//! `framebus record`) is the client. SIGTERM and SIGINT finish the
//! recordings in progress and exit 0; bad arguments exit 4, runtime
//! errors 1 (`framebus::contract::exit`).
//!
//! Run with: `cargo run -p framebus-publishers --bin framebus-recorder -- --buffer cam0/high`

use std::process::ExitCode;

use framebus_publishers::common::auth::load_credentials;
use framebus_publishers::common::cli::{failure, init_logging, parse_args, usage_error};
use framebus_publishers::common::shutdown::StopSignals;
use framebus_publishers::record::config::Command;
use framebus_publishers::record::{client, server, Cli, Recorder};

const PROGRAM: &str = "framebus-recorder";

fn main() -> ExitCode {
    init_logging();
    let cli: Cli = parse_args();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(PROGRAM, format!("cannot start the async runtime: {e}")),
    };
    if let Some(Command::Record(args)) = cli.command {
        return match rt.block_on(client::record(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => failure(PROGRAM, e),
        };
    }
    let args = cli.serve;
    if let Err(e) = args.validate() {
        return usage_error(PROGRAM, e);
    }
    let auth = match load_credentials(
        args.auth.clone(),
        args.auth_file.as_deref(),
        framebus::contract::env::RECORDER_AUTH,
    ) {
        Ok(a) => a.map(|(c, _)| c),
        Err(e) => return usage_error(PROGRAM, e),
    };
    let signals = {
        let _runtime = rt.enter();
        StopSignals::install()
    };
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => return failure(PROGRAM, e),
    };
    let result = rt.block_on(async move {
        let recorder = Recorder::start(args).map_err(|e| e.to_string())?;
        server::serve(recorder, auth, async move {
            signals.recv().await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(PROGRAM, e),
    }
}

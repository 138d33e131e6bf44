//! `framebus-mjpeg`: serve framebus buses as MJPEG over HTTP. SIGTERM and
//! SIGINT stop it the same way: viewers' streams end, connections close,
//! exit status 0. Bad arguments exit 4, runtime errors 1
//! (`framebus::contract::exit`).
//!
//! Run with: `cargo run -p framebus-publishers --bin framebus-mjpeg -- --bus cam0`

use std::process::ExitCode;

use framebus_publishers::common::cli::{failure, init_logging, parse_args};
use framebus_publishers::common::shutdown::StopSignals;
use framebus_publishers::mjpeg::{serve, Args};

const PROGRAM: &str = "framebus-mjpeg";

fn main() -> ExitCode {
    init_logging();
    let args: Args = parse_args();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(PROGRAM, format!("cannot start the async runtime: {e}")),
    };
    // Before the server listens: a signal from now on is a clean stop.
    let signals = {
        let _runtime = rt.enter();
        StopSignals::install()
    };
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => return failure(PROGRAM, e),
    };
    let result = rt.block_on(serve(args, async move {
        signals.recv().await;
    }));
    // Do not wait for blocking tasks (bus header reads) still running;
    // encoder threads end with the process.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

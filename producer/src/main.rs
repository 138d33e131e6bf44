//! `framebus-producer`: owns one camera (or the test pattern, or an FFmpeg
//! input) and writes its frames into a shared-memory bus; with `--config`,
//! runs the whole service. See `docs/producer.md`, `docs/service.md`.
//!
//! The thin command-line front of the `framebus_producer` library
//! (`src/lib.rs`): flags, logging, signal handlers, exit codes.

use clap::Parser;

use framebus_producer::cli::{Cli, LogFormat};
use framebus_producer::error::Fatal;
use framebus_producer::{capture, config, service, signals, v4l2};

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => Fatal::Config(String::new()).exit_code(),
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // `--config`: the file is checked before anything starts (exit 4 with
    // FILE:LINE:COL on a mistake); its log_format wins over the flag.
    let config = match &cli.config {
        Some(path) => match config::load(path) {
            Ok(c) => Some((path.clone(), c)),
            Err(e) => {
                let e = Fatal::Config(e.to_string());
                eprintln!("framebus-producer: error: {e}");
                std::process::exit(e.exit_code());
            }
        },
        None => None,
    };
    if cli.doctor {
        let (_, config) = config.as_ref().expect("clap: --doctor requires --config");
        std::process::exit(doctor(config, cli.json));
    }
    let log_format = config
        .as_ref()
        .and_then(|(_, c)| c.log_format())
        .unwrap_or(cli.log_format);
    init_logging(log_format);
    if let Err(e) = signals::install() {
        eprintln!("framebus-producer: error: cannot install signal handlers: {e}");
        std::process::exit(1);
    }
    let result = if let Some((path, config)) = config {
        service::run(&path, config, log_format)
    } else if cli.list_devices {
        list_devices()
    } else {
        capture::run(cli)
    };
    // A stop requested while the source was still being opened is a clean
    // stop, not a missing device.
    let result = match result {
        Err(Fatal::NoDevice(_)) if signals::stop_requested() => Ok(()),
        r => r,
    };
    if let Err(e) = result {
        eprintln!("framebus-producer: error: {e}");
        std::process::exit(e.exit_code());
    }
}

/// `--doctor`: the report on stdout; 0 when the buses fit, 1 when not.
fn doctor(config: &config::Config, json: bool) -> i32 {
    let dir = framebus::default_shm_dir();
    match framebus_producer::doctor::check(config, &dir) {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serialisable")
                );
            } else {
                print!("{}", framebus_producer::doctor::render(&report));
            }
            if report.ok() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("framebus-producer: error: {e}");
            1
        }
    }
}

fn list_devices() -> Result<(), Fatal> {
    let devices = v4l2::list_devices();
    if devices.is_empty() {
        return Err(Fatal::NoDevice(
            "no V4L2 capture device (looked at /dev/video*)".into(),
        ));
    }
    for d in devices {
        match d {
            Ok(info) => print!("{info}"),
            Err(e) => println!("{}: {e}", e.path().display()),
        }
    }
    Ok(())
}

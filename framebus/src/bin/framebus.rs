//! `framebus`: list, inspect and remove buses; show the whole service.
//!
//! Exit codes: 0 success, 1 error, 2 usage (clap), 3 missing program
//! (`framebus encoders`, `record` or `doctor` without the program it runs), 4 bad arguments,
//! 7 bus not found, 8 bus owned by a live producer. `framebus status`:
//! 0 healthy, 10 degraded, 11 nothing running (see `status.rs`).
//!
//! `framebus encoders` runs `framebus-encoder --list`, `framebus record`
//! runs `framebus-recorder record` and `framebus doctor` runs
//! `framebus-producer --doctor` (each found next to this program, else on
//! `PATH`): this crate links no media library and reads no service config,
//! those processes do.

#[path = "framebus/status.rs"]
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use framebus::{BusInfo, StatError};

#[derive(Parser)]
#[command(
    name = "framebus",
    version,
    about = "Inspect framebus shared-memory buses"
)]
struct Cli {
    /// Shm directory (default: $FRAMEBUS_SHM_DIR or /dev/shm).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every bus: format, fps, producer, readers, drops.
    Ls {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one bus in detail: live fps, counters, readers with pids.
    Stat {
        /// Bus name.
        name: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every bus, every supervised publisher process and every stream, with
    /// an overall verdict (exit 0 healthy, 10 degraded, 11 nothing running).
    Status {
        /// JSON instead of tables.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Prometheus text exposition (bus counters, publisher restarts)
        /// for node_exporter's textfile collector.
        #[arg(long)]
        prometheus: bool,
    },
    /// Which H.264 encoders open on this machine, and why the others do
    /// not (runs `framebus-encoder --list`).
    Encoders,
    /// The shared memory every bus of a config takes, checked against the
    /// shm directory (size, free space, file system, mount options): exit
    /// 0 when it fits, 1 when not (runs `framebus-producer --doctor`).
    Doctor {
        /// The service's config.
        #[arg(long, default_value = "/etc/framebus/framebus.toml")]
        config: PathBuf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Record a stream through the running recorder, with pre-roll from
    /// its memory: `framebus record cam0/high --duration 30s --preroll 5s
    /// -o clip.mp4` (runs `framebus-recorder record`; see its `--help`).
    #[command(disable_help_flag = true)]
    Record {
        /// Everything `framebus-recorder record` takes.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Remove a bus whose producer is gone.
    Rm {
        /// Bus name.
        name: String,
        /// Also remove a file under the bus's name that is not a valid segment.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = cli.dir.as_deref();
    let result = match cli.cmd {
        Cmd::Ls { json } => match framebus::list_in(dir) {
            Ok(buses) if json => print_json(&buses),
            Ok(buses) => {
                print_table(&buses);
                Ok(())
            }
            Err(e) => {
                eprintln!(
                    "framebus: cannot list {}: {e}",
                    dir.map_or_else(framebus::default_shm_dir, PathBuf::from)
                        .display()
                );
                return ExitCode::from(1);
            }
        },
        Cmd::Stat { name, json } => match framebus::stat(&name, dir) {
            Ok(info) if json => print_json(&info),
            Ok(info) => {
                print_stat(&info);
                Ok(())
            }
            Err(e) => Err(e),
        },
        Cmd::Rm { name, force } => framebus::remove(&name, dir, force),
        Cmd::Encoders => {
            return run_sibling(
                "framebus-encoder",
                &["--list".into()],
                dir,
                "probes the H.264 encoders",
            )
        }
        Cmd::Doctor { config, json } => {
            let mut a = vec![
                "--config".to_string(),
                config.display().to_string(),
                "--doctor".into(),
            ];
            if json {
                a.push("--json".into());
            }
            return run_sibling("framebus-producer", &a, dir, "reads the config");
        }
        Cmd::Record { args } => {
            let mut a = vec!["record".to_string()];
            a.extend(args);
            return run_sibling("framebus-recorder", &a, dir, "records streams");
        }
        Cmd::Status { json, prometheus } => {
            let output = match (json, prometheus) {
                (true, _) => status::Output::Json,
                (_, true) => status::Output::Prometheus,
                _ => status::Output::Text,
            };
            return status::run(dir, output);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("framebus: {e}");
            ExitCode::from(match e {
                StatError::Name(_) => 4,
                StatError::NotFound { .. } => 7,
                StatError::Live { .. } => 8,
                _ => 1,
            })
        }
    }
}

/// The program `name` next to this executable, else the first on `PATH`.
fn sibling_or_path(name: &str) -> Option<PathBuf> {
    let here = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name));
    here.into_iter().chain(on_path).find(|p| p.is_file())
}

/// Runs `program` (next to this one, else on `PATH`) with `args` (and
/// `--dir` as `FRAMEBUS_SHM_DIR`), its output and exit status passed
/// through; exit 3 when it is missing.
fn run_sibling(
    program: &str,
    args: &[String],
    dir: Option<&std::path::Path>,
    what: &str,
) -> ExitCode {
    let Some(exe) = sibling_or_path(program) else {
        eprintln!(
            "framebus: {program} is not installed (looked next to {} and on PATH); \
             it {what} (`make install` installs it)",
            std::env::current_exe()
                .map_or_else(|_| "this program".into(), |p| p.display().to_string())
        );
        return ExitCode::from(3);
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.env(framebus::SHM_DIR_ENV, d);
    }
    match cmd.status() {
        Ok(st) => match st.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            None => {
                eprintln!("framebus: {} was killed ({st})", exe.display());
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("framebus: cannot run {}: {e}", exe.display());
            ExitCode::from(1)
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), StatError> {
    println!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
    Ok(())
}

fn print_table(buses: &[BusInfo]) {
    println!(
        "{:<24} {:<7} {:<6} {:>11} {:>7} {:>7} {:>8} {:>7} {:>10} {:>8} {:>4}  SOURCE",
        "NAME",
        "STATE",
        "FORMAT",
        "SIZE",
        "FPS",
        "LIVE",
        "PRODUCER",
        "READERS",
        "PUBLISHED",
        "DROPPED",
        "STEP"
    );
    for b in buses {
        if let Some(p) = &b.problem {
            println!("{:<24} {:<7} {p}", b.name, b.state);
            continue;
        }
        println!(
            "{:<24} {:<7} {:<6} {:>11} {:>7.2} {:>7.2} {:>8} {:>7} {:>10} {:>8} {:>4}  {}",
            b.name,
            b.state,
            b.format,
            b.size_label(),
            b.fps,
            b.measured_fps,
            b.producer_pid,
            b.readers.len(),
            b.published,
            b.dropped_all_held + b.source_dropped,
            step(b),
            b.source,
        );
    }
}

/// The encoder's load-adaptation step of an encoded bus, `-` for others.
fn step(b: &BusInfo) -> String {
    if b.format == "h264" {
        b.encoder_step.to_string()
    } else {
        "-".into()
    }
}

fn print_stat(b: &BusInfo) {
    println!("bus            {}", b.name);
    println!("path           {}", b.path.display());
    println!("state          {}", b.state);
    if let Some(p) = &b.problem {
        println!("problem        {p}");
        return;
    }
    if b.sample_rate > 0 {
        println!(
            "format         {} {} Hz, {} channel(s), {} samples per chunk @ {:.3} chunks/s",
            b.format, b.sample_rate, b.channels, b.height, b.fps
        );
    } else {
        println!(
            "format         {} {}x{} @ {:.3} fps nominal",
            b.format, b.width, b.height, b.fps
        );
    }
    println!("live fps       {:.2}", b.measured_fps);
    println!(
        "producer       pid {} ({})",
        b.producer_pid,
        if b.producer_alive { "alive" } else { "gone" }
    );
    println!("source         {} ({})", b.source, b.source_state);
    println!("slots          {} x {} bytes", b.slots, b.slot_capacity);
    println!("published      {}", b.published);
    println!("captured       {}", b.captured);
    println!(
        "dropped        {} by the source, {} with every slot held",
        b.source_dropped, b.dropped_all_held
    );
    if let (Some(peak), Some(rms)) = (b.audio_peak_dbfs, b.audio_rms_dbfs) {
        println!("level          peak {peak:.1} dBFS, RMS {rms:.1} dBFS (last chunk)");
        println!("xruns          {} (the source's drops)", b.source_dropped);
    }
    println!("restarts       {}", b.restarts);
    println!("watchdog fires {}", b.watchdog_fires);
    println!("wake calls     {}", b.wake_calls);
    if b.format == "h264" {
        println!(
            "keyframes      {} asked, {} forced; {} access units oversize",
            b.keyframe_requests, b.keyframes_forced, b.oversize
        );
        let at = if b.encoder_fps > 0.0 {
            format!(
                ": {:.2} fps, {} kbit/s",
                b.encoder_fps,
                b.encoder_bitrate / 1000
            )
        } else {
            String::new()
        };
        println!(
            "encoder step   {}{at} ({}; {} changes)",
            b.encoder_step,
            if b.encoder_step == 0 {
                "as configured"
            } else {
                "reduced for CPU load"
            },
            b.encoder_steps
        );
    }
    match b.last_frame_age_ms {
        Some(ms) => println!("last frame     {ms} ms ago"),
        None => println!("last frame     never"),
    }
    println!("readers        {}", b.readers.len());
    for r in &b.readers {
        println!(
            "  entry {:>3}  pid {:>7}  frames {:>9}  skipped {:>7}  holding {}  last seq {}{}",
            r.entry,
            r.pid,
            r.frames,
            r.skipped,
            r.held,
            r.last_seq,
            if r.waiting { "  (waiting)" } else { "" }
        );
    }
}

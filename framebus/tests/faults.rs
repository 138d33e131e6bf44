//! Fault injection on readers (issue 9): reader processes SIGKILLed at
//! random points — during exec and attach, while holding 0..=max_held
//! frames, while blocked in `next()` — cycle after cycle; and a reader that
//! exits while holding frames and is never reaped (a zombie). Afterwards
//! the writer uses every slot again, `framebus stat --json` lists no stale
//! reader, and no reader ever saw a torn frame.
//!
//! Children are this test binary re-run on the `#[ignore]`d `child_entry`
//! with the role in `FRAMEBUS_FAULT_ROLE`. `FRAMEBUS_FAULT_CYCLES` sets the
//! number of kill cycles (default 1,000).

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use framebus::*;
use framebus_test_support::rng::Rng;
use framebus_test_support::{this_test_binary, unique_name, ChildGuard};

const ROLE: &str = "FRAMEBUS_FAULT_ROLE";
const BUS: &str = "FRAMEBUS_FAULT_BUS";
const HOLD: &str = "FRAMEBUS_FAULT_HOLD";
const SLOTS: u32 = 8;
const MAX_HELD: u32 = 3;
/// Child exit code for a torn frame.
const TORN: i32 = 42;

/// Watchdog on every child's line and exit (every child exits by itself
/// within 30 s).
const CHILD_LIMIT: Duration = Duration::from_secs(60);

fn spawn_child(role: &str, bus: &str, hold: u32) -> ChildGuard {
    ChildGuard::spawn(
        this_test_binary("child_entry")
            .env(ROLE, role)
            .env(BUS, bus)
            .env(HOLD, hold.to_string()),
    )
}

/// Waits for a line containing `want`.
fn wait_line(child: &mut ChildGuard, want: &str) {
    child.wait_line(want, CHILD_LIMIT);
}

/// SIGKILL the child and reap it: its exit code, `None` when it died of
/// a signal.
fn kill_and_reap(child: &mut ChildGuard) -> Option<i32> {
    child.signal(libc::SIGKILL);
    child.wait_exit(CHILD_LIMIT).code()
}

fn spec() -> FrameSpec {
    FrameSpec::new(PixelFormat::Gray8, 128, 64, Fps::new(200)).unwrap()
}

/// True if every byte of the frame is its sequence number's low byte.
fn uniform(f: &Frame) -> bool {
    let v = f.seq() as u8;
    f.iter().all(|&b| b == v)
}

/// A writer thread publishing uniform frames (every byte = seq as u8) at
/// about 200 fps; `pause` stops publishing (to park readers in `next`).
struct Feeder {
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    all_held: Arc<AtomicU64>,
    slots: Arc<std::sync::Mutex<BTreeSet<u32>>>,
    thread: Option<JoinHandle<()>>,
}

impl Feeder {
    fn start(bus: &str, opts: WriterOptions) -> Feeder {
        let mut w = Writer::create(bus, spec(), opts).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let all_held = Arc::new(AtomicU64::new(0));
        let slots = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let (s2, p2, a2, sl2) = (
            Arc::clone(&stop),
            Arc::clone(&pause),
            Arc::clone(&all_held),
            Arc::clone(&slots),
        );
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
                if p2.load(Ordering::SeqCst) {
                    continue;
                }
                let seq = w.last_seq() + 1;
                match w.loan() {
                    Ok(mut loan) => {
                        sl2.lock().unwrap().insert(loan.slot());
                        loan.fill(seq as u8);
                        let got = loan.publish(FrameMeta::now());
                        assert_eq!(got, seq, "sequence numbers are consecutive");
                    }
                    Err(PublishError::AllSlotsHeld { .. }) => {
                        a2.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("publish: {e}"),
                }
            }
        });
        Feeder {
            stop,
            pause,
            all_held,
            slots,
            thread: Some(thread),
        }
    }

    /// Forget which slots were used so far.
    fn reset_slots(&self) {
        self.slots.lock().unwrap().clear();
    }

    fn used_slots(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Entry point of every child process (ignored in normal runs).
#[test]
#[ignore = "child process entry point, run by the other tests"]
fn child_entry() {
    let role = std::env::var(ROLE).expect("role");
    let bus = std::env::var(BUS).expect("bus");
    let hold: usize = std::env::var(HOLD).unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut r = Reader::attach(
        &bus,
        ReaderOptions {
            wait: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    )
    .unwrap();
    let mut held = Vec::new();
    while held.len() < hold {
        let f = r.next(Some(Duration::from_secs(10))).expect("frame");
        if !uniform(&f) {
            std::process::exit(TORN);
        }
        held.push(f);
    }
    println!("held {hold}");
    match role.as_str() {
        // Wait to be killed, reading on (one slot stays free for `next`).
        "reader" => {
            while Instant::now() < deadline {
                if hold < MAX_HELD as usize {
                    match r.next(Some(Duration::from_secs(1))) {
                        Ok(f) if !uniform(&f) => std::process::exit(TORN),
                        Ok(_) | Err(ReadError::Timeout { .. }) => {}
                        Err(e) => panic!("next: {e}"),
                    }
                } else {
                    std::thread::sleep(Duration::from_millis(10));
                }
                for f in &held {
                    if !uniform(f) {
                        std::process::exit(TORN);
                    }
                }
            }
        }
        // Block in next() (the parent has paused the writer).
        "waiter" => {
            println!("waiting");
            while Instant::now() < deadline {
                match r.next(Some(Duration::from_secs(1))) {
                    Ok(f) if !uniform(&f) => std::process::exit(TORN),
                    _ => {}
                }
            }
        }
        // Exit while holding, without releasing anything (no destructors).
        "exiter" => std::process::exit(0),
        other => panic!("unknown role {other}"),
    }
}

fn cycles() -> u32 {
    std::env::var("FRAMEBUS_FAULT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Readers listed by `framebus stat --json` (the CLI, as an operator sees it).
fn stat_readers(bus: &str) -> Vec<u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_framebus"))
        .args(["stat", "--json", bus])
        .output()
        .expect("run framebus stat");
    assert!(
        out.status.success(),
        "framebus stat --json {bus} failed: {out:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stat JSON");
    v["readers"]
        .as_array()
        .expect("readers array")
        .iter()
        .map(|r| r["pid"].as_u64().unwrap_or(0))
        .collect()
}

/// Waits (bounded) until the writer has used every slot since the last
/// reset and the stat lists no reader.
fn assert_recovered(feeder: &Feeder, bus: &str, what: &str) {
    feeder.reset_slots();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let readers = stat_readers(bus);
        let used = feeder.used_slots();
        // The writer never reuses the newest frame's slot at once, so all
        // SLOTS show up within a few rounds.
        if readers.is_empty() && used == SLOTS as usize {
            return;
        }
        assert!(
            Instant::now() < end,
            "{what}: after 20 s stat still lists readers {readers:?} / writer used {used} of {SLOTS} slots"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readers_killed_at_random_points_leak_nothing() {
    let bus = unique_name("fault-kill");
    let feeder = Feeder::start(
        &bus,
        WriterOptions {
            slots: SLOTS,
            max_held: MAX_HELD,
            ..Default::default()
        },
    );
    let mut rng = Rng::new(u64::from(std::process::id()));
    let n = cycles();
    let mut kinds = [0u32; 3];
    for cycle in 0..n {
        let hold = rng.below(u64::from(MAX_HELD) + 1) as u32;
        let kind = rng.below(3) as usize;
        kinds[kind] += 1;
        match kind {
            // Anywhere from exec through attach to holding.
            0 => {
                let mut c = spawn_child("reader", &bus, hold);
                std::thread::sleep(Duration::from_micros(rng.below(30_000)));
                assert_ne!(
                    kill_and_reap(&mut c),
                    Some(TORN),
                    "cycle {cycle}: torn frame"
                );
            }
            // Holding `hold` frames and reading on.
            1 => {
                let mut c = spawn_child("reader", &bus, hold);
                wait_line(&mut c, "held");
                std::thread::sleep(Duration::from_micros(rng.below(5_000)));
                assert_ne!(
                    kill_and_reap(&mut c),
                    Some(TORN),
                    "cycle {cycle}: torn frame"
                );
            }
            // Blocked in next() while the writer is paused.
            _ => {
                let mut c = spawn_child("waiter", &bus, hold.min(MAX_HELD - 1));
                wait_line(&mut c, "held");
                feeder.pause.store(true, Ordering::SeqCst);
                wait_line(&mut c, "waiting");
                std::thread::sleep(Duration::from_millis(2 + rng.below(5)));
                let code = kill_and_reap(&mut c);
                feeder.pause.store(false, Ordering::SeqCst);
                assert_ne!(code, Some(TORN), "cycle {cycle}: torn frame");
            }
        }
    }
    eprintln!(
        "{n} reader kill cycles (mid-attach {}, holding {}, mid-wait {}); writer found all slots held {} times",
        kinds[0],
        kinds[1],
        kinds[2],
        feeder.all_held.load(Ordering::SeqCst)
    );
    assert_recovered(&feeder, &bus, "after the kill cycles");
    // And a live reader reads on, untorn.
    let mut r = Reader::attach(&bus, ReaderOptions::default()).unwrap();
    for _ in 0..20 {
        let f = r.next(Some(Duration::from_secs(10))).unwrap();
        assert!(uniform(&f), "torn frame {}", f.seq());
    }
}

#[test]
fn zombie_reader_holds_are_released() {
    let bus = unique_name("fault-zombie");
    let feeder = Feeder::start(
        &bus,
        WriterOptions {
            slots: 4,
            max_held: 2,
            ..Default::default()
        },
    );
    // The child holds 2 of 4 slots (the most a reader may: one more is
    // the newest frame) and exits without releasing; we do not wait() for
    // it, so it stays a zombie.
    let mut c = spawn_child("exiter", &bus, 2);
    wait_line(&mut c, "held");
    let pid = c.pid();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 3 (after the parenthesised name) is the state.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if state == Some("Z") {
            break;
        }
        assert!(
            Instant::now() < end,
            "child {pid} never became a zombie: {stat}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The slots come back while the zombie exists.
    let slots_back = {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            feeder.reset_slots();
            std::thread::sleep(Duration::from_millis(300));
            if feeder.used_slots() == 4 && stat_readers(&bus).is_empty() {
                break true;
            }
            if Instant::now() > end {
                break false;
            }
        }
    };
    let still_zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|t| t.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    assert!(still_zombie, "the child was reaped before the check");
    assert!(
        slots_back,
        "a zombie reader's holds were not released: stat lists {:?}, writer used {} of 4 slots",
        stat_readers(&bus),
        feeder.used_slots()
    );
    drop(c);
}

//! Multi-process proofs: torn-frame stress with several reader processes,
//! readers and producers killed with SIGKILL.
//!
//! Child processes are this same test binary, re-run on one `#[ignore]`d
//! test (`child_entry`) with the role in `FRAMEBUS_TEST_ROLE`. Every child
//! has a deadline and the parent kills whatever is left (a deadlock fails
//! the test through the watchdog, never through a timing assertion).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use framebus::*;
use framebus_test_support::rng::Rng;
use framebus_test_support::{this_test_binary, unique_name, ChildGuard};

const ROLE: &str = "FRAMEBUS_TEST_ROLE";
const BUS: &str = "FRAMEBUS_TEST_BUS";
const FRAME: usize = 64 * 1024;

/// Watchdog on every child's line and exit (each child has its own
/// deadline well below this).
const CHILD_LIMIT: Duration = Duration::from_secs(60);

fn spawn_child(role: &str, bus: &str, extra: &[(&str, String)]) -> ChildGuard {
    let mut cmd = this_test_binary("child_entry");
    cmd.env(ROLE, role).env(BUS, bus);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    ChildGuard::spawn(&mut cmd)
}

/// Wait for `want` on the child's stdout; return the line from there on.
fn wait_line(child: &mut ChildGuard, want: &str) -> String {
    child.wait_line(want, CHILD_LIMIT)
}

/// Wait for the child to exit (watchdog) and return its exit code.
fn wait_exit(child: &mut ChildGuard, limit: Duration) -> i32 {
    child.wait_exit(limit).code().unwrap_or(-1)
}

fn spec() -> FrameSpec {
    FrameSpec::new(
        PixelFormat::Gray8,
        256,
        (FRAME / 256) as u32,
        Fps::new(1000),
    )
    .unwrap()
}

fn assert_uniform(f: &Frame, when: &str) {
    let v = f[0];
    assert_eq!(
        v,
        f.seq() as u8,
        "frame {} carries value {v} (metadata and bytes disagree) {when}",
        f.seq()
    );
    if let Some(pos) = f.iter().position(|&b| b != v) {
        panic!(
            "TORN frame {} at byte {pos}: {} != {v} {when}",
            f.seq(),
            f[pos]
        );
    }
}

/// Entry point of every child process (ignored in normal runs).
#[test]
#[ignore = "child process entry point, run by the other tests"]
fn child_entry() {
    let role = std::env::var(ROLE).expect("role");
    let bus = std::env::var(BUS).expect("bus");
    match role.as_str() {
        "stress-reader" => stress_reader(&bus),
        "holder" => holder(&bus),
        "producer" => producer(&bus),
        "blocked" => blocked(&bus),
        other => panic!("unknown role {other}"),
    }
}

/// Take the newest frame, say so, then block for the next one forever.
fn blocked(bus: &str) {
    let mut r = Reader::attach(
        bus,
        ReaderOptions {
            wait: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    )
    .expect("attach");
    let _ = r.latest().expect("latest");
    println!("blocking");
    let _ = r.next(None);
    println!("woke");
}

/// Read for a while, holding random frames for random times, checking every
/// frame when taken and again when released.
fn stress_reader(bus: &str) {
    let mut r = Reader::attach(
        bus,
        ReaderOptions {
            wait: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    )
    .unwrap();
    let max_held: usize = std::env::var("MAX_HELD").unwrap().parse().unwrap();
    let mut rng = Rng::per_process();
    let mut held: VecDeque<(Frame, Instant)> = VecDeque::new();
    let (mut checked, mut skipped) = (0u64, 0u64);
    println!("ready");
    loop {
        match r.next(Some(Duration::from_secs(5))) {
            Ok(f) => {
                assert_uniform(&f, "when taken");
                checked += 1;
                skipped += f.skipped();
                // Keep one hold free for the next `next()`.
                if held.len() + 1 < max_held && rng.below(4) == 0 {
                    let hold_for = Duration::from_micros(rng.below(20_000));
                    held.push_back((f, Instant::now() + hold_for));
                }
            }
            Err(ReadError::ProducerGone { .. }) => break,
            Err(e) => panic!("reader error: {e}"),
        }
        while held
            .front()
            .is_some_and(|(_, until)| *until <= Instant::now())
        {
            let (f, _) = held.pop_front().unwrap();
            assert_uniform(&f, "after being held");
        }
        // Occasionally stall, holding what we hold, to make the writer skip.
        if rng.below(50) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(10)));
        }
    }
    for (f, _) in held {
        assert_uniform(&f, "at the end");
    }
    println!("done checked={checked} skipped={skipped}");
}

/// Hold `MAX_HELD` frames and say so; then wait to be killed.
fn holder(bus: &str) {
    let mut r = Reader::attach(
        bus,
        ReaderOptions {
            wait: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    )
    .unwrap();
    let n: usize = std::env::var("MAX_HELD").unwrap().parse().unwrap();
    let mut held = Vec::new();
    while held.len() < n {
        held.push(r.next(Some(Duration::from_secs(10))).unwrap());
    }
    let slots: Vec<String> = held.iter().map(|f| f.slot().to_string()).collect();
    println!("holding {}", slots.join(","));
    std::thread::sleep(Duration::from_secs(60));
}

/// Publish uniform frames until killed.
fn producer(bus: &str) {
    let mut w = Writer::create(bus, spec(), WriterOptions::default()).unwrap();
    println!("created");
    loop {
        publish_uniform(&mut w).expect("one reader never holds every slot");
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Publish one frame whose every byte is its sequence number (mod 256).
fn publish_uniform(w: &mut Writer) -> Result<u32, PublishError> {
    let seq = w.last_seq() + 1;
    let mut loan = w.loan()?;
    let slot = loan.slot();
    loan.fill(seq as u8);
    loan.publish(FrameMeta::now());
    Ok(slot)
}

/// Publish frames from a thread until the holder reports the slots it
/// holds; give the writer back.
fn feed_until_holding(w: Writer, holder: &mut ChildGuard) -> (Writer, String) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        let mut w = w;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                publish_uniform(&mut w).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            w
        })
    };
    let line = wait_line(holder, "holding");
    stop.store(true, Ordering::Relaxed);
    (feeder.join().unwrap(), line)
}

#[test]
fn torn_frame_stress_with_four_reader_processes() {
    let bus = unique_name("stress");
    // slots = readers x max_held + 2: the writer must never find every
    // usable slot held.
    let opts = WriterOptions {
        slots: 4 * 3 + 2,
        max_held: 3,
        ..Default::default()
    };
    let mut w = Writer::create(&bus, spec(), opts).unwrap();
    let mut readers: Vec<ChildGuard> = (0..4)
        .map(|_| spawn_child("stress-reader", &bus, &[("MAX_HELD", "3".into())]))
        .collect();
    for r in &mut readers {
        wait_line(r, "ready");
    }
    let (mut published, mut dropped) = (0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        match publish_uniform(&mut w) {
            Ok(_) => published += 1,
            Err(PublishError::AllSlotsHeld { .. }) => dropped += 1,
            Err(e) => panic!("{e}"),
        }
        // ~5 kHz: fast enough to race the readers constantly.
        std::thread::sleep(Duration::from_micros(200));
    }
    drop(w); // readers see ProducerGone and finish
    let mut total = 0u64;
    for r in &mut readers {
        let line = wait_line(r, "done");
        let code = wait_exit(r, Duration::from_secs(30));
        assert_eq!(code, 0, "reader failed: {line}");
        let checked: u64 = line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .trim_start_matches("checked=")
            .parse()
            .unwrap();
        assert!(checked > 100, "reader checked only {checked} frames");
        total += checked;
    }
    eprintln!(
        "published {published}, dropped (all held) {dropped}, frames checked by readers {total}"
    );
    assert_eq!(
        dropped, 0,
        "with slots >= readers x held + 2 the writer always finds a slot"
    );
}

#[test]
fn reader_killed_while_holding_frames_releases_its_slots() {
    let bus = unique_name("killreader");
    let opts = WriterOptions {
        slots: 4,
        max_held: 2,
        ..Default::default()
    };
    let w = Writer::create(&bus, spec(), opts).unwrap();
    let mut holder = spawn_child("holder", &bus, &[("MAX_HELD", "2".into())]);
    let (mut w, line) = feed_until_holding(w, &mut holder);
    let held: Vec<u32> = line
        .trim_start_matches("holding ")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(held.len(), 2);
    // While it lives, the writer never uses those slots.
    for _ in 0..20 {
        let loan = w.loan().unwrap();
        assert!(
            !held.contains(&loan.slot()),
            "writer claimed held slot {}",
            loan.slot()
        );
        drop(loan);
    }
    holder.kill();
    // Publish for a little over a second: the writer's once-a-second sweep
    // frees the dead reader's entry by itself.
    let mut used = std::collections::HashSet::new();
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end || used.len() < 4 {
        assert!(
            Instant::now() < end + Duration::from_secs(10),
            "watchdog: slots {used:?} only"
        );
        used.insert(publish_uniform(&mut w).unwrap());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(used.len(), 4, "every slot is used again");
    let st = stat(&bus, None).unwrap();
    assert!(
        st.readers.is_empty(),
        "no stale reader listed: {:?}",
        st.readers
    );
}

#[test]
fn dead_reader_entry_is_reclaimed_on_demand() {
    let bus = unique_name("reclaim");
    let opts = WriterOptions {
        slots: 4,
        max_held: 2,
        ..Default::default()
    };
    let w = Writer::create(&bus, spec(), opts).unwrap();
    let mut holder = spawn_child("holder", &bus, &[("MAX_HELD", "2".into())]);
    let (w, _) = feed_until_holding(w, &mut holder);
    assert_eq!(
        w.reclaim_dead_readers(),
        0,
        "a live reader is never reclaimed"
    );
    holder.kill();
    assert_eq!(
        w.reclaim_dead_readers(),
        1,
        "the dead reader's entry is reclaimed"
    );
    assert_eq!(w.reclaim_dead_readers(), 0);
}

#[test]
fn producer_killed_and_restarted_readers_follow() {
    let bus = unique_name("killprod");
    let mut prod = spawn_child("producer", &bus, &[]);
    wait_line(&mut prod, "created");
    let mut r = Reader::attach(
        &bus,
        ReaderOptions {
            wait: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Rng::per_process();
    for cycle in 0..4 {
        let first = r.next(Some(Duration::from_secs(10))).unwrap();
        assert_uniform(&first, "from a fresh producer");
        let instance_pid = r.producer_pid();
        // Kill at a random point: often mid-publish (it publishes ~2000/s).
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        prod.kill();
        // Frames already taken stay valid; then the reader sees the loss.
        assert_uniform(&first, "after its producer died");
        drop(first);
        let gone = loop {
            match r.next(Some(Duration::from_secs(5))) {
                Ok(f) => assert_uniform(&f, "draining"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(gone, ReadError::ProducerGone { .. }),
            "cycle {cycle}: {gone}"
        );
        prod = spawn_child("producer", &bus, &[]);
        wait_line(&mut prod, "created");
        let f = r.next(Some(Duration::from_secs(10))).unwrap();
        assert_uniform(&f, "from the restarted producer");
        assert_ne!(
            r.producer_pid(),
            instance_pid,
            "re-attached to the new producer"
        );
    }
    // The last producer dies like the others; remove what it leaves behind
    // so no stale bus outlives the test.
    prod.kill();
    drop(r);
    remove(&bus, None, false).unwrap();
}

/// Issue 12, defect 4: readers SIGKILLed while blocked in `next()` must not
/// leave the writer making a wake-up system call on every publish forever.
/// Counted (the header's `wake_calls`), never timed.
#[test]
fn readers_killed_while_blocked_leave_no_wakeups_behind() {
    let bus = unique_name("blocked");
    let mut w = Writer::create(&bus, spec(), WriterOptions::default()).unwrap();
    publish_uniform(&mut w).unwrap();
    let mut kids: Vec<ChildGuard> = (0..3).map(|_| spawn_child("blocked", &bus, &[])).collect();
    for k in &mut kids {
        wait_line(k, "blocking");
    }
    // Wait (watchdog-bounded) until all three sleep on the futex.
    let start = Instant::now();
    while stat(&bus, None)
        .unwrap()
        .readers
        .iter()
        .filter(|r| r.waiting)
        .count()
        < 3
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "watchdog: readers never blocked"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for k in &kids {
        k.signal(libc::SIGKILL);
    }
    for k in &mut kids {
        wait_exit(k, Duration::from_secs(20));
    }
    // The writer's sweep (once a second while publishing, or on demand).
    assert_eq!(w.reclaim_dead_readers(), 3);
    let before = stat(&bus, None).unwrap().wake_calls;
    for _ in 0..200 {
        publish_uniform(&mut w).unwrap();
    }
    let after = stat(&bus, None).unwrap().wake_calls;
    assert_eq!(
        after - before,
        0,
        "the writer made {} futex wake calls with nobody waiting",
        after - before
    );

    // And a live waiter is still woken (the flag works both ways).
    let mut k = spawn_child("blocked", &bus, &[]);
    wait_line(&mut k, "blocking");
    let start = Instant::now();
    while !stat(&bus, None).unwrap().readers.iter().any(|r| r.waiting) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "watchdog: reader never blocked"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    publish_uniform(&mut w).unwrap();
    wait_line(&mut k, "woke");
    assert!(stat(&bus, None).unwrap().wake_calls > after);
}

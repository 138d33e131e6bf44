//! Edge defects of the core found in review (issue 12), each with the test
//! that failed before its fix: the create/replace race, fork(), the
//! writer's housekeeping clock, the one ring rule, and sealed slots.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use framebus::*;
use framebus_test_support::unique_name;

fn spec() -> FrameSpec {
    FrameSpec::new(PixelFormat::Gray8, 64, 64, Fps::new(60)).unwrap()
}

fn publish(w: &mut Writer, value: u8, meta: FrameMeta) -> u64 {
    let mut loan = w.loan().unwrap();
    loan.fill(value);
    loan.publish(meta)
}

/// Leave a dead producer's segment under `name`: the bytes of a live one,
/// written back after it closed (state LIVE, nobody holding its lock).
fn make_stale(name: &str) -> Vec<u8> {
    let w = Writer::create(name, spec(), WriterOptions::default()).unwrap();
    let path = w.path().to_path_buf();
    let bytes = std::fs::read(&path).unwrap();
    drop(w);
    // A pid that is not ours, so an error naming the dead producer instead
    // of the winner is caught.
    let mut bytes = bytes;
    bytes[std::mem::offset_of!(layout::FixedHeader, producer_pid)..][..4]
        .copy_from_slice(&4_000_000u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    bytes
}

/// Defect 3: two producers starting together on a dead producer's segment.
/// Before the fix both could win (the second unlinked the first's new
/// segment by path after the first had dropped the stale lock).
#[test]
fn racing_creators_on_a_stale_segment_have_exactly_one_winner() {
    let name = unique_name("race");
    let stale = make_stale(&name);
    let path = segment_path(&default_shm_dir(), &name);
    for round in 0..200 {
        std::fs::write(&path, &stale).unwrap();
        let start = Arc::new(Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (name, start) = (name.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    Writer::create(&name, spec(), WriterOptions::default())
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<&Writer> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} owners: {results:?}",
            winners.len()
        );
        for r in &results {
            if let Err(e) = r {
                match e {
                    CreateError::Exists { pid, .. } => assert_eq!(*pid, std::process::id()),
                    other => panic!("round {round}: loser got {other} instead of Exists"),
                }
            }
        }
        // The name is the winner's segment, and it is live.
        let info = stat(&name, None).unwrap();
        assert_eq!(info.state, "live", "round {round}");
        drop(results);
    }
}

/// Defect 7: one ring rule. The writer refused 2 slots while the readers'
/// validator accepted a 2-slot header with `max_held = 1`.
#[test]
fn the_ring_rule_is_one_rule() {
    assert!(layout::ring_rule(2, 1).is_err());
    assert!(layout::ring_rule(3, 1).is_ok());
    assert!(layout::ring_rule(3, 2).is_err());
    assert!(layout::ring_rule(64, 62).is_ok());
    assert!(layout::ring_rule(65, 1).is_err());
    let name = unique_name("ring");
    let two = WriterOptions {
        slots: 2,
        max_held: 1,
        ..WriterOptions::default()
    };
    let e = Writer::create(&name, spec(), two).unwrap_err();
    assert!(e.to_string().contains("must be 3..=64"), "{e}");
    // A 2-slot header written by hand is refused by every reader.
    let w = Writer::create(&name, spec(), WriterOptions::default()).unwrap();
    let mut head = std::fs::read(w.path()).unwrap();
    head[std::mem::offset_of!(layout::FixedHeader, slot_count)..][..4]
        .copy_from_slice(&2u32.to_le_bytes());
    head[std::mem::offset_of!(layout::FixedHeader, max_held)..][..4]
        .copy_from_slice(&1u32.to_le_bytes());
    let e = layout::FixedHeader::read(&head)
        .unwrap()
        .validate(head.len() as u64)
        .unwrap_err();
    assert!(
        matches!(
            e,
            layout::HeaderError::Field {
                field: "slot_count",
                ..
            }
        ),
        "{e}"
    );
}

/// Defect 6: the writer's once-a-second housekeeping ran on the caller's
/// timestamps; a capture time in the future froze the rate window (and the
/// dead-reader sweep with it).
#[test]
fn housekeeping_runs_on_the_writers_own_clock() {
    let name = unique_name("clock");
    let mut w = Writer::create(&name, spec(), WriterOptions::default()).unwrap();
    let future = monotonic_ns() + 3_600 * 1_000_000_000;
    let meta = FrameMeta {
        mono_ns: future,
        realtime_ns: realtime_ns(),
        flags: FrameFlags::KEY,
        ..FrameMeta::default()
    };
    // About 100 frames a second for a little over two windows.
    let mut measured = 0.0;
    for i in 0..400u32 {
        publish(&mut w, i as u8, meta);
        std::thread::sleep(Duration::from_millis(10));
        measured = stat(&name, None).unwrap().measured_fps;
        if i > 250 && measured > 0.0 {
            break;
        }
    }
    // Any rate at all: with the frozen window it stayed at ~0 (one frame
    // over an hour) forever.
    assert!(measured > 1.0, "measured fps {measured}");
}

/// Defect 2, in Rust: after fork() the child's inherited writer and reader
/// are inert: using them is a clear error, dropping them touches nothing
/// shared, inherited frames read zeros (never the parent's live slots), and
/// the parent's bus is unaffected.
#[test]
fn handles_inherited_across_fork_are_inert_in_the_child() {
    let name = unique_name("fork");
    let mut w = Writer::create(&name, spec(), WriterOptions::default()).unwrap();
    publish(&mut w, 7, FrameMeta::now());
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    let held = r.latest().unwrap().unwrap();
    assert_eq!(held[0], 7);

    // SAFETY: the child only runs framebus calls and exits with _exit; it
    // never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut code = 0;
        if !matches!(w.loan(), Err(PublishError::Forked { .. })) {
            code |= 1;
        }
        if !matches!(r.latest(), Err(ReadError::Forked { .. })) {
            code |= 2;
        }
        if !matches!(r.next(Some(Duration::ZERO)), Err(ReadError::Forked { .. })) {
            code |= 4;
        }
        // The inherited frame is severed: zeros, not the live slot.
        if held[0] != 0 {
            code |= 8;
        }
        drop(held);
        drop(r);
        drop(w);
        // A new reader in the child works.
        match Reader::attach(&name, ReaderOptions::default()) {
            Ok(mut own) => match own.latest() {
                Ok(Some(f)) if f[0] == 7 => {}
                _ => code |= 16,
            },
            Err(_) => code |= 32,
        }
        // SAFETY: leave the forked child without running the harness.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child died: status {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child failed checks (bit mask)"
    );

    // The parent's bus is untouched by the child's drops.
    let info = stat(&name, None).unwrap();
    assert_eq!(info.state, "live");
    assert_eq!(held[0], 7);
    drop(held);
    publish(&mut w, 9, FrameMeta::now());
    let f = r.next(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(f[0], 9);
}

/// Defect 1, core part: a write through a pointer kept from a loan's
/// `SlotView` after `publish_sealed` cannot change what readers see: not
/// the published frame, and not a later frame in the same slot (each loan
/// gets a mapping of its own, so a stale pointer never aliases a new loan).
#[test]
fn sealed_slot_views_ignore_writes_after_publish() {
    let name = unique_name("seal");
    let opts = WriterOptions {
        slots: 3,
        max_held: 1,
        ..WriterOptions::default()
    };
    let mut w = Writer::create(&name, spec(), opts).unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    let len = spec().frame_size();
    // Every stale view stays alive (and is scribbled on) for the whole run.
    let mut stale: Vec<SlotView> = Vec::new();
    for round in 1..=30u8 {
        let loan = w.loan().unwrap();
        let view = loan.map_view().unwrap();
        // SAFETY: the view maps the loaned slot, `len` bytes long.
        unsafe { std::ptr::write_bytes(view.as_mut_ptr(), round, len) };
        // What escaped numpy views do: write before and after the publish.
        for v in &stale {
            // SAFETY: each view stays mapped (privately) until dropped.
            unsafe { std::ptr::write_bytes(v.as_mut_ptr(), 0xEE, 64) };
        }
        loan.publish_sealed(FrameMeta::now(), &view).unwrap();
        // SAFETY: as above: the sealed view is still mapped.
        unsafe { std::ptr::write_bytes(view.as_mut_ptr(), 0xEE, 64) };
        stale.push(view);
        let f = r.latest().unwrap().unwrap();
        assert!(
            f.iter().all(|&b| b == round),
            "round {round}: reader saw a write made through a stale view"
        );
    }
    // A raw format's length is the frame size, nothing else.
    let mut loan = w.loan().unwrap();
    assert!(matches!(
        loan.set_len(10),
        Err(PublishError::WrongSize { .. })
    ));
}

//! Encoded buses (issue 13, the core part): frames in order with keyframe
//! resynchronisation, keyframe requests travelling upstream, the codec
//! configuration under a seqlock, oversize access units counted, pts and
//! source sequence carried. The bus here carries MJPEG-typed variable
//! length frames with hand-set keyframe flags; the protocol does not look
//! inside them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use framebus::*;
use framebus_test_support::unique_name;

const T: Option<Duration> = Some(Duration::from_secs(5));

fn encoded_bus(tag: &str, slots: u32) -> (String, Writer) {
    let name = unique_name(tag);
    let spec = FrameSpec::new(PixelFormat::Mjpeg, 640, 480, Fps::new(30)).unwrap();
    let opts = WriterOptions {
        slots,
        max_held: 1,
        slot_capacity: Some(64 * 1024),
        ..WriterOptions::default()
    };
    let w = Writer::create(&name, spec, opts).unwrap();
    (name, w)
}

/// Publish access unit `seq` (its bytes say its number), keyframe or not.
fn au(w: &mut Writer, key: bool) -> u64 {
    let seq = w.last_seq() + 1;
    let mut loan = w.loan().unwrap();
    loan.set_len(100).unwrap();
    loan.fill(seq as u8);
    loan.publish(FrameMeta {
        flags: if key { FrameFlags::KEY } else { FrameFlags(0) },
        pts: seq * 3000,
        source_seq: seq + 1000,
        ..FrameMeta::now()
    })
}

#[test]
fn a_joiner_starts_at_the_newest_keyframe_then_reads_in_order() {
    let (name, mut w) = encoded_bus("join", 16);
    for i in 0..12u64 {
        au(&mut w, i % 5 == 0); // keyframes 1, 6, 11
    }
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    let f = r.next_encoded(T).unwrap();
    assert_eq!((f.seq(), f.is_keyframe(), f.skipped()), (11, true, 0));
    assert_eq!((f.pts(), f.source_seq(), f[0]), (33000, 1011, 11));
    drop(f);
    let f = r.next_encoded(T).unwrap();
    assert_eq!((f.seq(), f.is_keyframe()), (12, false));
    drop(f);
    au(&mut w, false);
    assert_eq!(r.next_encoded(T).unwrap().seq(), 13);
    // Nobody had to ask for a keyframe: the ring had one.
    assert_eq!(w.keyframe_requests(), 0);
}

#[test]
fn a_reader_that_falls_behind_resyncs_at_a_keyframe_and_is_told() {
    let (name, mut w) = encoded_bus("behind", 8);
    au(&mut w, true);
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    assert_eq!(r.next_encoded(T).unwrap().seq(), 1);
    for i in 1..20u64 {
        au(&mut w, i % 5 == 0); // keyframes 6, 11, 16; the ring keeps 7
    }
    let f = r.next_encoded(T).unwrap();
    assert_eq!((f.seq(), f.is_keyframe(), f.skipped()), (16, true, 14));
    drop(f);
    for want in 17..=20 {
        let f = r.next_encoded(T).unwrap();
        assert_eq!((f.seq(), f.skipped()), (want, 0));
    }
}

#[test]
fn with_no_keyframe_in_the_ring_a_reader_asks_for_one_and_waits() {
    let (name, mut w) = encoded_bus("ask", 4);
    for i in 0..10u64 {
        au(&mut w, i == 0); // the only keyframe is long gone
    }
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    assert!(matches!(
        r.next_encoded(Some(Duration::from_millis(100))),
        Err(ReadError::Timeout { .. })
    ));
    // Asked once for this gap, counted for the bus and for the reader.
    assert_eq!(w.keyframe_requests(), 1);
    let info = stat(&name, None).unwrap();
    assert_eq!(info.keyframe_requests, 1);
    assert_eq!(info.readers[0].keyframe_requests, 1);
    // More frames without a keyframe: still waiting, no second request.
    au(&mut w, false);
    assert!(r.next_encoded(Some(Duration::from_millis(50))).is_err());
    assert_eq!(w.keyframe_requests(), 1);
    // The encoder answers with a keyframe: the reader starts there.
    w.count(Counter::KeyframesForced, 1);
    let key = au(&mut w, true);
    let f = r.next_encoded(T).unwrap();
    assert_eq!((f.seq(), f.is_keyframe()), (key, true));
    drop(f);
    assert_eq!(stat(&name, None).unwrap().keyframes_forced, 1);
    // An explicit request (a WebRTC PLI, an RTSP joiner).
    r.request_keyframe().unwrap();
    assert_eq!(w.keyframe_requests(), 2);
}

#[test]
fn a_blocked_encoded_reader_sleeps_until_a_keyframe_comes() {
    let (name, mut w) = encoded_bus("sleep", 4);
    for i in 0..6u64 {
        au(&mut w, i == 0);
    }
    let reader = std::thread::spawn(move || {
        let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
        let f = r.next_encoded(Some(Duration::from_secs(20))).unwrap();
        (f.seq(), f.is_keyframe())
    });
    // Wait (watchdog-bounded) for the request, then answer it.
    let start = std::time::Instant::now();
    while w.keyframe_requests() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "watchdog: no request"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    au(&mut w, false);
    let key = au(&mut w, true);
    assert_eq!(reader.join().unwrap(), (key, true));
}

#[test]
fn the_codec_configuration_is_never_read_torn() {
    let (name, mut w) = encoded_bus("codec", 4);
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    assert_eq!(r.codec().unwrap(), None);
    let first = CodecConfig {
        time_base: (1, 90000),
        profile_level: 0x42_c0_1f,
        config: vec![0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0, 0, 0, 1, 0x68, 0xce],
    };
    w.set_codec(&first).unwrap();
    assert_eq!(r.codec().unwrap().as_ref(), Some(&first));
    let too_big = CodecConfig {
        config: vec![0; layout::CONFIG_MAX + 1],
        ..CodecConfig::default()
    };
    assert!(matches!(
        w.set_codec(&too_big),
        Err(PublishError::TooLarge { .. })
    ));
    // A writer rewriting it all the time: every copy a reader accepts is
    // one the writer wrote (its bytes all equal its length).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let len = 1 + n % layout::CONFIG_MAX;
                let c = CodecConfig {
                    time_base: (1, 90000),
                    profile_level: len as u32,
                    config: vec![len as u8; len],
                };
                w.set_codec(&c).unwrap();
                n += 1;
            }
            w
        })
    };
    for _ in 0..200_000 {
        let c = r.codec().unwrap().unwrap();
        if c == first {
            continue; // read before the writer thread's first write
        }
        let len = c.config.len();
        assert_eq!(c.profile_level as usize, len, "length and profile disagree");
        assert!(
            c.config.iter().all(|&b| b == len as u8),
            "torn configuration"
        );
    }
    stop.store(true, Ordering::Relaxed);
    drop(writer.join().unwrap());
}

#[test]
fn an_access_unit_larger_than_a_slot_is_a_counted_error() {
    let (name, mut w) = encoded_bus("oversize", 4);
    let cap = w.slot_capacity();
    let mut loan = w.loan().unwrap();
    assert!(matches!(
        loan.set_len(cap + 1),
        Err(PublishError::TooLarge { .. })
    ));
    drop(loan);
    assert!(matches!(
        w.publish_from(&vec![0u8; cap + 1], FrameMeta::now()),
        Err(PublishError::TooLarge { .. })
    ));
    let info = stat(&name, None).unwrap();
    assert_eq!(info.oversize, 2);
    // Nothing half-published: the bus still has no frame.
    assert_eq!(info.published, 0);
}

#[test]
fn the_writer_counts_its_readers_and_sees_them_leave() {
    let (name, w) = encoded_bus("count", 4);
    assert_eq!(w.readers(), 0);
    let r1 = Reader::attach(&name, ReaderOptions::default()).unwrap();
    let r2 = Reader::attach(&name, ReaderOptions::default()).unwrap();
    assert_eq!(w.readers(), 2);
    drop(r1);
    assert_eq!(w.readers(), 1);
    drop(r2);
    assert_eq!(w.readers(), 0);
}

#[test]
fn a_discarded_ring_makes_joiners_wait_for_a_fresh_keyframe() {
    let (name, mut w) = encoded_bus("discard", 8);
    for i in 0..5u64 {
        au(&mut w, i == 0);
    }
    w.discard().unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    assert!(
        r.latest().unwrap().is_none(),
        "nothing is newest after a discard"
    );
    assert!(matches!(
        r.next_encoded(Some(Duration::from_millis(50))),
        Err(ReadError::Timeout { .. })
    ));
    let key = au(&mut w, true);
    let f = r.next_encoded(T).unwrap();
    assert_eq!((f.seq(), f.is_keyframe()), (key, true));
}

#[test]
fn the_encoder_step_is_in_the_header_and_its_changes_are_counted() {
    let (name, w) = encoded_bus("step", 8);
    // A new bus (like a segment written before these words existed) says
    // step 0, nothing reported, never changed.
    let b = stat(&name, None).unwrap();
    assert_eq!(
        (
            b.encoder_step,
            b.encoder_steps,
            b.encoder_fps,
            b.encoder_bitrate
        ),
        (0, 0, 0.0, 0)
    );
    assert_eq!(w.set_encoder_step(0, 30_000, 4_000_000), 0);
    assert_eq!(w.set_encoder_step(2, 15_000, 2_000_000), 0);
    assert_eq!(w.set_encoder_step(2, 15_000, 2_000_000), 2, "no change");
    let b = stat(&name, None).unwrap();
    assert_eq!(
        (
            b.encoder_step,
            b.encoder_steps,
            b.encoder_fps,
            b.encoder_bitrate
        ),
        (2, 1, 15.0, 2_000_000)
    );
    assert_eq!(w.set_encoder_step(0, 30_000, 4_000_000), 2);
    assert_eq!(stat(&name, None).unwrap().encoder_steps, 2);
}

//! Single-process behaviour of the bus: round trips, metadata, holds,
//! errors, permissions, discovery.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use framebus::*;
use framebus_test_support::unique_name;

fn gray(w: u32, h: u32) -> FrameSpec {
    FrameSpec::new(PixelFormat::Gray8, w, h, Fps::new(60)).unwrap()
}

#[test]
fn publish_then_read_in_place() {
    let name = unique_name("basic");
    let mut w = Writer::create(&name, gray(64, 48), WriterOptions::default()).unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    assert!(r.try_next().unwrap().is_none(), "no frame yet");

    let mut loan = w.loan().unwrap();
    loan.fill(7);
    let meta = FrameMeta {
        mono_ns: 11,
        realtime_ns: 22,
        flags: FrameFlags::KEY,
        ..FrameMeta::default()
    };
    assert_eq!(loan.publish(meta), 1);

    let f = r.next(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(f.seq(), 1);
    assert_eq!(f.len(), 64 * 48);
    assert!(f.iter().all(|&b| b == 7));
    assert_eq!((f.mono_ns(), f.realtime_ns()), (11, 22));
    assert!(f.flags().contains(FrameFlags::KEY));
    assert!(
        f.is_in_mapping(f.as_ptr()),
        "the frame is a view of the mapping"
    );
    assert_eq!(f.spec().format, PixelFormat::Gray8);
    drop(f);
    assert!(r.try_next().unwrap().is_none(), "nothing newer");
    assert_eq!(r.latest().unwrap().unwrap().seq(), 1, "latest repeats");
}

#[test]
fn slow_reader_skips_and_counts() {
    let name = unique_name("skip");
    let mut w = Writer::create(&name, gray(16, 16), WriterOptions::default()).unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    w.publish_from(&[1; 256], FrameMeta::now()).unwrap();
    assert_eq!(r.next(None).unwrap().skipped(), 0);
    for v in 2..=6 {
        w.publish_from(&[v; 256], FrameMeta::now()).unwrap();
    }
    let f = r.next(None).unwrap();
    assert_eq!((f.seq(), f.skipped()), (6, 4));
    assert!(f.iter().all(|&b| b == 6));
    let st = stat(&name, None).unwrap();
    assert_eq!(st.readers.len(), 1);
    assert_eq!(
        (
            st.readers[0].frames,
            st.readers[0].skipped,
            st.readers[0].held
        ),
        (2, 4, 1)
    );
}

#[test]
fn held_slot_is_never_overwritten() {
    let name = unique_name("hold");
    let opts = WriterOptions {
        slots: 4,
        max_held: 2,
        ..Default::default()
    };
    let mut w = Writer::create(&name, gray(8, 8), opts).unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    w.publish_from(&[1; 64], FrameMeta::now()).unwrap();
    let held = r.next(None).unwrap();
    for v in 2..200u8 {
        w.publish_from(&[v; 64], FrameMeta::now()).unwrap();
        assert!(
            held.iter().all(|&b| b == 1),
            "held frame changed at publish {v}"
        );
    }
    let slot = held.slot();
    drop(held);
    // Released: the writer uses that slot again.
    let mut used = false;
    for _ in 0..8 {
        let loan = w.loan().unwrap();
        used |= loan.slot() == slot;
        loan.publish(FrameMeta::now());
    }
    assert!(used, "released slot {slot} never reused");
}

#[test]
fn holding_limit_and_all_slots_held_policy() {
    let name = unique_name("limit");
    let opts = WriterOptions {
        slots: 4,
        max_held: 2,
        ..Default::default()
    };
    let mut w = Writer::create(&name, gray(8, 8), opts).unwrap();
    let mut a = Reader::attach(&name, ReaderOptions::default()).unwrap();
    let mut b = Reader::attach(&name, ReaderOptions::default()).unwrap();
    w.publish_from(&[1; 64], FrameMeta::now()).unwrap();
    let a1 = a.next(None).unwrap();
    w.publish_from(&[2; 64], FrameMeta::now()).unwrap();
    let a2 = a.next(None).unwrap();
    w.publish_from(&[3; 64], FrameMeta::now()).unwrap();
    assert!(matches!(
        a.next(None),
        Err(ReadError::TooManyHeld {
            held: 2,
            max: 2,
            ..
        })
    ));
    let b3 = b.next(None).unwrap();
    // Slots: a holds 2, b holds 1 (the newest), 1 free.
    w.publish_from(&[4; 64], FrameMeta::now()).unwrap();
    // Now every slot but the newest is held and the newest is never
    // overwritten: the frame is dropped, counted, and the writer goes on.
    let err = w.publish_from(&[5; 64], FrameMeta::now()).unwrap_err();
    assert!(
        matches!(err, PublishError::AllSlotsHeld { slots: 4, .. }),
        "{err}"
    );
    assert_eq!(stat(&name, None).unwrap().dropped_all_held, 1);
    drop((a1, a2, b3));
    w.publish_from(&[6; 64], FrameMeta::now()).unwrap();
}

#[test]
fn every_format_round_trips_with_planes() {
    for format in PixelFormat::ALL {
        let name = unique_name("fmt");
        let spec = if format.is_audio() {
            FrameSpec::audio(format, 48000, 2, 960).unwrap()
        } else {
            FrameSpec::new(format, 32, 16, Fps::new(30)).unwrap()
        };
        let opts = WriterOptions {
            slot_capacity: format.is_compressed().then_some(4096),
            ..Default::default()
        };
        let mut w = Writer::create(&name, spec, opts).unwrap();
        let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
        assert_eq!(r.spec(), &spec);
        let payload: Vec<u8> = if format.is_compressed() {
            (0..1000).map(|i| i as u8).collect()
        } else {
            (0..spec.frame_size()).map(|i| (i % 251) as u8).collect()
        };
        w.publish_from(&payload, FrameMeta::now()).unwrap();
        let f = r.next(None).unwrap();
        assert_eq!(&*f, &payload[..], "{format}");
        for (i, p) in spec.planes().iter().enumerate() {
            assert_eq!(
                f.plane(i).unwrap(),
                &payload[p.offset as usize..][..p.len()],
                "{format} plane {i}"
            );
        }
    }
}

#[test]
fn loan_planes_and_abandon() {
    let name = unique_name("planes");
    let spec = FrameSpec::new(PixelFormat::Nv12, 16, 8, Fps::new(30)).unwrap();
    let mut w = Writer::create(&name, spec, WriterOptions::default()).unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    {
        let mut loan = w.loan().unwrap();
        loan.fill(9);
        // dropped without publishing
    }
    assert!(
        r.try_next().unwrap().is_none(),
        "an abandoned loan is never seen"
    );
    let mut loan = w.loan().unwrap();
    {
        let mut planes = loan.planes_mut();
        assert_eq!(planes.len(), 2);
        planes[0].fill(100);
        planes[1].fill(200);
    }
    loan.publish(FrameMeta::now());
    let f = r.next(None).unwrap();
    assert!(f.plane(0).unwrap().iter().all(|&b| b == 100));
    assert!(f.plane(1).unwrap().iter().all(|&b| b == 200));
}

#[test]
fn compressed_payloads_vary_in_length() {
    let name = unique_name("mjpeg");
    let spec = FrameSpec::new(PixelFormat::Mjpeg, 64, 64, Fps::new(30)).unwrap();
    let opts = WriterOptions {
        slot_capacity: Some(10_000),
        ..Default::default()
    };
    let mut w = Writer::create(&name, spec, opts).unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    for len in [10usize, 5000, 1] {
        w.publish_from(&vec![len as u8; len], FrameMeta::now())
            .unwrap();
        assert_eq!(r.next(None).unwrap().len(), len);
    }
    let err = w.publish_from(&[0; 10_001], FrameMeta::now()).unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::TooLarge {
                len: 10_001,
                capacity: 10_000,
                ..
            }
        ),
        "{err}"
    );
    let err = Writer::create(&unique_name("x"), gray(8, 8), WriterOptions::default())
        .unwrap()
        .publish_from(&[0; 63], FrameMeta::now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::WrongSize {
                expected: 64,
                len: 63,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn second_writer_on_a_live_bus_is_refused() {
    let name = unique_name("excl");
    let _w = Writer::create(&name, gray(8, 8), WriterOptions::default()).unwrap();
    let err = Writer::create(&name, gray(8, 8), WriterOptions::default()).unwrap_err();
    assert!(
        matches!(&err, CreateError::Exists { pid, .. } if *pid == std::process::id()),
        "{err}"
    );
    assert!(
        err.to_string().contains("already owned by a live producer"),
        "{err}"
    );
}

#[test]
fn bad_names_are_refused_everywhere() {
    for bad in ["", "Cam", "../x", "a/b", &"x".repeat(64)] {
        assert!(
            matches!(
                Writer::create(bad, gray(8, 8), WriterOptions::default()),
                Err(CreateError::Name(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                Reader::attach(bad, ReaderOptions::default()),
                Err(AttachError::Name(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(stat(bad, None), Err(StatError::Name(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn bad_options_are_refused() {
    let name = unique_name("opts");
    for opts in [
        WriterOptions {
            slots: 1,
            ..Default::default()
        },
        WriterOptions {
            slots: 65,
            ..Default::default()
        },
        WriterOptions {
            slots: 4,
            max_held: 3,
            ..Default::default()
        },
        WriterOptions {
            max_readers: 0,
            ..Default::default()
        },
        WriterOptions {
            slot_capacity: Some(10),
            ..Default::default()
        },
    ] {
        let err = Writer::create(&name, gray(8, 8), opts).unwrap_err();
        assert!(matches!(err, CreateError::Options { .. }), "{err}");
    }
}

#[test]
fn segments_are_private_by_default_and_group_readable_on_request() {
    let name = unique_name("mode");
    let w = Writer::create(&name, gray(8, 8), WriterOptions::default()).unwrap();
    assert_eq!(
        std::fs::metadata(w.path()).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(w);
    // SAFETY: getgid has no preconditions.
    let gid = unsafe { libc::getgid() };
    let w = Writer::create(
        &name,
        gray(8, 8),
        WriterOptions {
            group: Some(gid),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(w.path()).unwrap().permissions().mode() & 0o777,
        0o660
    );
}

#[test]
fn missing_bus_and_waiting_attach() {
    let name = unique_name("missing");
    assert!(matches!(
        Reader::attach(&name, ReaderOptions::default()),
        Err(AttachError::NotFound { .. })
    ));
    let err = Reader::attach(
        &name,
        ReaderOptions {
            wait: Some(Duration::from_millis(50)),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, AttachError::Timeout { .. }), "{err}");
    let n2 = name.clone();
    let t = std::thread::spawn(move || {
        Reader::attach(
            &n2,
            ReaderOptions {
                wait: Some(Duration::from_secs(5)),
                ..Default::default()
            },
        )
    });
    std::thread::sleep(Duration::from_millis(100));
    let _w = Writer::create(&name, gray(8, 8), WriterOptions::default()).unwrap();
    assert!(t.join().unwrap().is_ok());
}

#[test]
fn blocked_reader_is_woken_and_times_out() {
    let name = unique_name("wake");
    let mut w = Writer::create(&name, gray(8, 8), WriterOptions::default()).unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    let err = r.next(Some(Duration::from_millis(30))).unwrap_err();
    assert!(matches!(err, ReadError::Timeout { .. }), "{err}");
    let t = std::thread::spawn(move || r.next(Some(Duration::from_secs(10))).map(|f| f.seq()));
    std::thread::sleep(Duration::from_millis(50));
    w.publish_from(&[3; 64], FrameMeta::now()).unwrap();
    assert_eq!(t.join().unwrap().unwrap(), 1);
}

#[test]
fn clean_close_is_seen_at_once_and_a_new_producer_is_followed() {
    let name = unique_name("close");
    let mut w = Writer::create(&name, gray(8, 8), WriterOptions::default()).unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    w.publish_from(&[1; 64], FrameMeta::now()).unwrap();
    let kept = r.next(None).unwrap();
    let n2 = name.clone();
    let t = std::thread::spawn(move || {
        let first = r.next(Some(Duration::from_secs(10))).map(|f| f.seq());
        let second = r
            .next(Some(Duration::from_secs(10)))
            .map(|f| (f.seq(), f[0]));
        (first, second, r)
    });
    std::thread::sleep(Duration::from_millis(30));
    drop(w);
    assert!(
        !framebus::segment_path(&default_shm_dir(), &n2).exists(),
        "segment unlinked on close"
    );
    assert!(
        kept.iter().all(|&b| b == 1),
        "a held frame outlives its producer"
    );
    std::thread::sleep(Duration::from_millis(50));
    let mut w2 = Writer::create(&name, gray(8, 8), WriterOptions::default()).unwrap();
    w2.publish_from(&[2; 64], FrameMeta::now()).unwrap();
    let (first, second, r) = t.join().unwrap();
    assert!(
        matches!(first, Err(ReadError::ProducerGone { .. })),
        "{first:?}"
    );
    assert_eq!(
        second.unwrap(),
        (1, 2),
        "frames of the new producer, sequence restarted"
    );
    assert!(r.is_connected());
}

#[test]
fn ls_and_stat_and_rm() {
    let name = unique_name("ls");
    let w = Writer::create(
        &name,
        gray(8, 8),
        WriterOptions {
            source: "unit test".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let _r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    let all = list().unwrap();
    let me = all.iter().find(|b| b.name == name).expect("listed");
    assert_eq!(
        (me.state.as_str(), me.format.as_str(), me.width, me.height),
        ("live", "gray8", 8, 8)
    );
    assert_eq!(me.source, "unit test");
    assert_eq!(me.producer_pid, std::process::id());
    assert_eq!(me.readers.len(), 1);
    assert!(matches!(
        remove(&name, None, false),
        Err(StatError::Live { .. })
    ));
    drop(w);
    assert!(matches!(stat(&name, None), Err(StatError::NotFound { .. })));
}

#[test]
fn shutdown_closes_the_bus_but_keeps_the_mapping() {
    let name = unique_name("shutdown");
    let mut w = Writer::create(&name, gray(8, 8), WriterOptions::default()).unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    w.publish_from(&[4; 64], FrameMeta::now()).unwrap();
    let kept = r.next(None).unwrap();
    w.shutdown();
    w.shutdown();
    assert!(matches!(
        r.next(Some(Duration::from_secs(5))),
        Err(ReadError::ProducerGone { .. })
    ));
    assert!(matches!(w.loan(), Err(PublishError::Closed { .. })));
    // The name is free at once, the old frame still readable.
    let _w2 = Writer::create(&name, gray(8, 8), WriterOptions::default()).unwrap();
    assert!(kept.iter().all(|&b| b == 4));
}

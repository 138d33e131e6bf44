//! Hostile and broken input: corrupt or foreign segments, corrupt live
//! words, a full shm file system. Each gives its own clear error; nothing
//! panics, nothing reads outside the mapping.

use std::mem::offset_of;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use framebus::layout::{FixedHeader, Header, HeaderError, HEADER_SIZE, LAYOUT_VERSION};
use framebus::*;
use framebus_test_support::unique_name;

/// A private shm directory for one test, removed afterwards.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spec() -> FrameSpec {
    FrameSpec::new(PixelFormat::Nv12, 64, 32, Fps::new(30)).unwrap()
}

/// The bytes of a valid segment (made by a real writer, then closed).
fn valid_segment(dir: &Path) -> Vec<u8> {
    let name = unique_name("src");
    let w = Writer::create(
        &name,
        spec(),
        WriterOptions {
            shm_dir: Some(dir.into()),
            ..Default::default()
        },
    )
    .unwrap();
    let bytes = std::fs::read(w.path()).unwrap();
    drop(w);
    bytes
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn attach_bytes(dir: &Path, bytes: &[u8]) -> AttachError {
    let name = unique_name("bad");
    std::fs::write(segment_path(dir, &name), bytes).unwrap();
    let err = Reader::attach(
        &name,
        ReaderOptions {
            shm_dir: Some(dir.into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    // `ls` and `stat` report the same segment as corrupt instead of failing.
    let info = stat(&name, Some(dir)).unwrap();
    if matches!(err, AttachError::Corrupt { .. }) {
        assert_eq!(info.state, "corrupt", "{err}");
        assert!(info.problem.is_some());
    }
    err
}

fn corrupt_why(err: AttachError) -> HeaderError {
    match err {
        AttachError::Corrupt { why, .. } => why,
        other => panic!("expected a corrupt-segment error, got: {other}"),
    }
}

#[test]
fn a_valid_copy_without_producer_is_producer_gone() {
    let dir = TempDir::new("hostile");
    let good = valid_segment(&dir.0);
    assert!(matches!(
        attach_bytes(&dir.0, &good),
        AttachError::ProducerGone { .. }
    ));
}

#[test]
fn each_header_fault_gives_its_error() {
    let dir = TempDir::new("hostile");
    let good = valid_segment(&dir.0);
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        corrupt_why(attach_bytes(&dir.0, &b))
    };

    assert!(matches!(
        mutate(&|b| put_u64(b, offset_of!(FixedHeader, magic), 0xdead_beef)),
        HeaderError::BadMagic { .. }
    ));
    let e = mutate(&|b| put_u32(b, offset_of!(FixedHeader, version), 99));
    assert_eq!(
        e,
        HeaderError::Version {
            found: 99,
            required: LAYOUT_VERSION
        }
    );
    assert_eq!(
        e.to_string(),
        format!("layout version mismatch: segment=99, required={LAYOUT_VERSION}")
    );
    assert!(matches!(
        mutate(&|b| put_u32(b, offset_of!(FixedHeader, header_size), 4096)),
        HeaderError::Field {
            field: "header_size",
            ..
        }
    ));
    assert!(matches!(
        mutate(&|b| put_u64(b, offset_of!(FixedHeader, total_size), 1 << 40)),
        HeaderError::SizeMismatch { .. }
    ));
    for bad_slots in [0, 1, 2, 65, u32::MAX] {
        assert!(
            matches!(
                mutate(&|b| put_u32(b, offset_of!(FixedHeader, slot_count), bad_slots)),
                HeaderError::Field {
                    field: "slot_count",
                    ..
                }
            ),
            "slot_count {bad_slots}"
        );
    }
    assert!(matches!(
        mutate(&|b| put_u32(b, offset_of!(FixedHeader, reader_capacity), 0)),
        HeaderError::Field { .. }
    ));
    assert!(matches!(
        mutate(&|b| put_u32(b, offset_of!(FixedHeader, max_held), 1000)),
        HeaderError::Field {
            field: "max_held",
            ..
        }
    ));
    // Offsets pointing beyond the mapping, or anywhere but where they belong.
    for field in [
        offset_of!(FixedHeader, slots_offset),
        offset_of!(FixedHeader, readers_offset),
        offset_of!(FixedHeader, data_offset),
    ] {
        for v in [u64::MAX, 1 << 40, 8] {
            assert!(
                matches!(mutate(&|b| put_u64(b, field, v)), HeaderError::Field { .. }),
                "offset field at {field} = {v}"
            );
        }
    }
    assert!(matches!(
        mutate(&|b| put_u64(b, offset_of!(FixedHeader, slot_capacity), u64::MAX)),
        HeaderError::Field { .. }
    ));
    assert!(matches!(
        mutate(&|b| put_u64(b, offset_of!(FixedHeader, slot_capacity), 1 << 30)),
        HeaderError::Field { .. }
    ));
    assert!(matches!(
        mutate(&|b| put_u64(b, offset_of!(FixedHeader, slot_stride), 1)),
        HeaderError::Field { .. }
    ));
    assert!(matches!(
        mutate(&|b| put_u32(
            b,
            offset_of!(FixedHeader, fourcc),
            u32::from_le_bytes(*b"HEVC")
        )),
        HeaderError::Field {
            field: "fourcc",
            ..
        }
    ));
    assert!(matches!(
        mutate(&|b| put_u32(b, offset_of!(FixedHeader, width), 0)),
        HeaderError::Field { .. }
    ));
    assert!(matches!(
        mutate(&|b| put_u32(b, offset_of!(FixedHeader, width), 1 << 20)),
        HeaderError::Field { .. }
    ));
    assert!(matches!(
        mutate(&|b| put_u32(b, offset_of!(FixedHeader, plane_count), 9)),
        HeaderError::Field { .. }
    ));
    assert!(matches!(
        mutate(&|b| put_u32(b, offset_of!(FixedHeader, plane_offset) + 4, 1 << 30)),
        HeaderError::Field { .. }
    ));
    assert!(matches!(
        mutate(&|b| put_u32(b, offset_of!(FixedHeader, plane_stride), 1)),
        HeaderError::Field { .. }
    ));
    assert!(matches!(
        mutate(&|b| put_u64(b, offset_of!(FixedHeader, frame_size), 1)),
        HeaderError::Field {
            field: "frame_size",
            ..
        }
    ));
}

#[test]
fn truncated_and_empty_and_foreign_files() {
    let dir = TempDir::new("hostile");
    let good = valid_segment(&dir.0);
    assert!(matches!(
        corrupt_why(attach_bytes(&dir.0, &[])),
        HeaderError::Truncated { size: 0, .. }
    ));
    assert!(matches!(
        corrupt_why(attach_bytes(&dir.0, &good[..100])),
        HeaderError::Truncated { size: 100, .. }
    ));
    // A header that is fine but a file cut short: the size check catches it
    // before any offset is used.
    assert!(matches!(
        corrupt_why(attach_bytes(&dir.0, &good[..good.len() - 4096])),
        HeaderError::SizeMismatch { .. }
    ));
    let text = b"this is somebody else's file, not a frame bus at all".repeat(40);
    assert!(matches!(
        corrupt_why(attach_bytes(&dir.0, &text)),
        HeaderError::BadMagic { .. }
    ));
}

#[test]
fn a_foreign_file_under_the_name_is_not_replaced() {
    let dir = TempDir::new("hostile");
    let name = unique_name("foreign");
    let path = segment_path(&dir.0, &name);
    std::fs::write(&path, b"precious data").unwrap();
    let opts = WriterOptions {
        shm_dir: Some(dir.0.clone()),
        ..Default::default()
    };
    let err = Writer::create(&name, spec(), opts.clone()).unwrap_err();
    assert!(matches!(err, CreateError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("framebus rm --force"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"precious data",
        "nothing lost"
    );
    // `rm` refuses it too, unless forced.
    assert!(matches!(
        remove(&name, Some(&dir.0), false),
        Err(StatError::Foreign { .. })
    ));
    remove(&name, Some(&dir.0), true).unwrap();
    Writer::create(&name, spec(), opts).unwrap();
}

#[test]
fn a_dead_producers_segment_is_replaced() {
    let dir = TempDir::new("hostile");
    let good = valid_segment(&dir.0);
    let name = unique_name("stale");
    std::fs::write(segment_path(&dir.0, &name), &good).unwrap();
    // Copied from a live bus: says live, but nobody holds the producer lock.
    assert_eq!(stat(&name, Some(&dir.0)).unwrap().state, "stale");
    let opts = WriterOptions {
        shm_dir: Some(dir.0.clone()),
        ..Default::default()
    };
    let _w = Writer::create(&name, spec(), opts).unwrap();
    assert_eq!(stat(&name, Some(&dir.0)).unwrap().state, "live");
}

/// Overwrite a live word of a running bus from outside, as a buggy or
/// hostile process could.
fn poke(path: &Path, off: u64, v: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_le_bytes(), off).unwrap();
}

#[test]
fn corrupt_live_words_give_errors_not_crashes() {
    let name = unique_name("livecorrupt");
    let mut w = Writer::create(&name, spec(), WriterOptions::default()).unwrap();
    let mut r = Reader::attach(&name, ReaderOptions::default()).unwrap();
    w.publish_from(&vec![1; spec().frame_size()], FrameMeta::now())
        .unwrap();
    // The newest frame says slot 63 of 8.
    poke(
        w.path(),
        offset_of!(Header, live.latest) as u64,
        2 << 8 | 63,
    );
    let err = r.try_next().unwrap_err();
    assert!(matches!(err, ReadError::Corrupt { slot: 63, .. }), "{err}");
    // A slot whose length is beyond its capacity.
    w.publish_from(&vec![2; spec().frame_size()], FrameMeta::now())
        .unwrap();
    let newest_slot = {
        let f = std::fs::read(w.path()).unwrap();
        u64::from_le_bytes(
            f[offset_of!(Header, live.latest)..][..8]
                .try_into()
                .unwrap(),
        ) & 0xff
    };
    poke(
        w.path(),
        HEADER_SIZE as u64 + 64 * newest_slot + 8,
        u64::MAX,
    );
    let err = r.try_next().unwrap_err();
    assert!(matches!(err, ReadError::Corrupt { .. }), "{err}");
    // The writer's next frame is fine again.
    w.publish_from(&vec![3; spec().frame_size()], FrameMeta::now())
        .unwrap();
    assert_eq!(r.try_next().unwrap().unwrap()[0], 3);
}

/// Mount a 1 MiB tmpfs for the test (needs root, as CI has).
struct TinyTmpfs(TempDir);

impl TinyTmpfs {
    fn mount() -> Option<TinyTmpfs> {
        let dir = TempDir::new("tmpfs");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(&dir.0)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(TinyTmpfs(dir))
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0 .0).status();
    }
}

#[test]
fn a_full_shm_is_enospc_at_create_not_sigbus_later() {
    let Some(fs) = TinyTmpfs::mount() else {
        // Without root there is no private tmpfs to fill; CI runs as root.
        assert_ne!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() },
            0,
            "mount failed although running as root"
        );
        eprintln!("skipped: cannot mount a tmpfs as non-root");
        return;
    };
    let dir = fs.0 .0.clone();
    let name = unique_name("full");
    let big = FrameSpec::new(PixelFormat::Nv12, 1920, 1080, Fps::new(60)).unwrap();
    let opts = WriterOptions {
        shm_dir: Some(dir.clone()),
        ..Default::default()
    };
    let err = Writer::create(&name, big, opts.clone()).unwrap_err();
    assert!(matches!(err, CreateError::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("ENOSPC"), "{err}");
    // Nothing left behind, and a bus that fits still works there.
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "temporary file removed"
    );
    let small = FrameSpec::new(PixelFormat::Gray8, 64, 64, Fps::new(30)).unwrap();
    let mut w = Writer::create(&name, small, opts).unwrap();
    w.publish_from(&[5; 4096], FrameMeta::now()).unwrap();
}

#[test]
fn an_unwritable_shm_directory_is_a_clear_error() {
    let name = unique_name("nodir");
    let opts = WriterOptions {
        shm_dir: Some("/nonexistent/framebus".into()),
        ..Default::default()
    };
    let err = Writer::create(&name, spec(), opts).unwrap_err();
    assert!(matches!(err, CreateError::Io { op: "create", .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/framebus"), "{err}");
}

/// Deterministic mutation fuzzing of the header validator (the cargo-fuzz
/// target in `framebus/fuzz` does the same, coverage-guided): no input
/// panics, and only the untouched header validates.
#[test]
fn header_validation_never_panics_on_mutations() {
    let dir = TempDir::new("hostile");
    let good = valid_segment(&dir.0);
    let size = good.len() as u64;
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200_000 {
        let mut h = good[..HEADER_SIZE].to_vec();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() % 512) as usize;
            h[i] = next() as u8;
        }
        let file_size = if next() % 8 == 0 {
            next() % (2 * size)
        } else {
            size
        };
        let _ = framebus::layout::fuzz_validate(&h, file_size);
        let _ = framebus::layout::fuzz_validate(
            &h[..(next() % HEADER_SIZE as u64) as usize],
            file_size,
        );
    }
    assert!(framebus::layout::fuzz_validate(&good[..HEADER_SIZE], size));
}

//! The microphone on `<bus>.audio` (docs/audio.md): the test tone, a real
//! ALSA capture device (PulseAudio's null sink through the ALSA `pulse`
//! plugin, paced in real time), unplug and return, a missing device.

mod common;

use std::time::Duration;

use common::{ffmpeg, path_str, run_to_exit, Scene};
use framebus::{Frame, PixelFormat, Reader, ReaderOptions};
use framebus_producer::audio::SampleClock;
use framebus_test_support::pulse::{self, Pulse};
use framebus_test_support::ChildGuard;

const LIMIT: Duration = Duration::from_secs(20);

fn audio_reader(s: &Scene) -> Reader {
    Reader::attach(
        &format!("{}.audio", s.bus),
        ReaderOptions {
            wait: Some(Duration::from_secs(30)),
            shm_dir: Some(s.dir.clone()),
        },
    )
    .expect("attach to the audio bus")
}

fn samples(f: &Frame) -> Vec<i16> {
    f.chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// `n` chunks in order: (mono_ns, realtime_ns, samples).
fn read_chunks(r: &mut Reader, n: usize) -> Vec<(u64, u64, Vec<i16>)> {
    (0..n)
        .map(|_| {
            let f = r.next_encoded(Some(LIMIT)).expect("an audio chunk");
            (f.mono_ns(), f.realtime_ns(), samples(&f))
        })
        .collect()
}

#[test]
fn the_test_tone_beeps_at_every_whole_second_of_the_wall_clock() {
    let s = Scene::new("tone");
    let _p = s.spawn(&["--size", "320x240", "--audio", "tone"]);
    let mut r = audio_reader(&s);
    let spec = *r.spec();
    assert_eq!(spec.format, PixelFormat::S16le);
    assert_eq!(
        (spec.sample_rate(), spec.channels(), spec.chunk_samples()),
        (48000, 1, 960)
    );
    let chunks = read_chunks(&mut r, 120);
    for w in chunks.windows(2) {
        // Contiguous: each chunk starts where the one before ended.
        assert_eq!(w[1].0 - w[0].0, 20_000_000, "mono step");
        assert_eq!(w[1].1 - w[0].1, 20_000_000, "realtime step");
    }
    // Every beep starts within one sample of a whole second.
    let mut onsets = 0;
    let all: Vec<(u64, i16)> = chunks
        .iter()
        .flat_map(|(_, rt, v)| {
            v.iter()
                .enumerate()
                .map(move |(i, &x)| (rt + i as u64 * 1_000_000_000 / 48000, x))
        })
        .collect();
    for w in all.windows(2) {
        if w[0].1 == 0 && w[1].1 != 0 {
            let into_second = w[1].0 % 1_000_000_000;
            let off = into_second.min(1_000_000_000 - into_second);
            assert!(off <= 21_000, "beep onset {into_second} ns into the second");
            onsets += 1;
        }
    }
    assert!(onsets >= 2, "{onsets} beeps in 2.4 s");
    let st = framebus::stat(&format!("{}.audio", s.bus), Some(&s.dir)).unwrap();
    assert_eq!((st.sample_rate, st.channels), (48000, 1));
    assert!(st.audio_peak_dbfs.is_some());
}

#[test]
fn alsa_capture_through_pulseaudio_keeps_the_tone_and_its_timing() {
    let pa = Pulse::start();
    let _tone = pa.play_tone(440.0, 16000.0);
    let s = Scene::new("alsa");
    let mut cmd = s.producer(&["--size", "320x240", "--audio", "alsa:pulse"]);
    let _p = ChildGuard::spawn(pa.apply(&mut cmd));
    let mut r = audio_reader(&s);
    // Let the stream and its clock settle (the anchor follows the
    // measurements fully for the first SETTLE windows of the stream, by at
    // most 1 ms per window after), then take one second.
    let settled = u64::from(SampleClock::WINDOW) * 5;
    while r.next_encoded(Some(LIMIT)).expect("an audio chunk").seq() < settled {}
    let bus = format!("{}.audio", s.bus);
    let xruns = || framebus::stat(&bus, Some(&s.dir)).unwrap().source_dropped;
    let xruns_before = xruns();
    let chunks = read_chunks(&mut r, 50);
    let xruns_during = xruns() - xruns_before;
    let pcm: Vec<i16> = chunks.iter().flat_map(|c| c.2.clone()).collect();
    let hz = pulse::frequency(&pcm, 48000);
    assert!((hz - 440.0).abs() < 5.0, "captured {hz:.1} Hz, played 440");
    // The capture times are counted in samples: 20 ms apart, but for the
    // clock's slew (at most 1 ms per half second) toward the measurements.
    // An overrun on a loaded machine drops its chunk and re-anchors the
    // clock (counted in source_dropped): a longer step, never a shorter one,
    // and no more of them than overruns counted.
    let mut gaps = 0;
    for w in chunks.windows(2) {
        let step = w[1].0 as i64 - w[0].0 as i64;
        if step > 21_000_000 && gaps < xruns_during {
            gaps += 1;
            continue;
        }
        assert!(
            (19_000_000..=21_000_000).contains(&step),
            "step {step} ns ({xruns_during} overruns counted)"
        );
    }
    // And they are the real capture times: the newest chunk was captured
    // well under 200 ms before it could be read.
    let f = r.next_encoded(Some(LIMIT)).expect("a chunk");
    let age = framebus::monotonic_ns().saturating_sub(f.mono_ns());
    assert!(age < 200_000_000, "a chunk read {age} ns after its capture");
    let st = framebus::stat(&format!("{}.audio", s.bus), Some(&s.dir)).unwrap();
    assert_eq!(st.source, "alsa:pulse");
    assert_eq!(st.source_state, "running");
    let peak = st.audio_peak_dbfs.unwrap();
    assert!(
        (-8.0..-4.0).contains(&peak),
        "peak {peak:.1} dBFS (16000/32768 is -6.2)"
    );
}

#[test]
fn unplugging_the_microphone_reconnects_and_the_picture_never_stops() {
    let pa = Pulse::start();
    let tone = pa.play_tone(440.0, 16000.0);
    let s = Scene::new("unplug");
    let mut cmd = s.producer(&[
        "--size",
        "320x240",
        "--audio",
        "alsa:pulse",
        "--backoff-initial",
        "0.2",
        "--backoff-max",
        "0.5",
    ]);
    let _p = ChildGuard::spawn(pa.apply(&mut cmd));
    let mut r = audio_reader(&s);
    let mut video = s.reader();
    read_chunks(&mut r, 10);
    drop(tone);
    pa.unplug();
    let audio_bus = format!("{}.audio", s.bus);
    let stat = || framebus::stat(&audio_bus, Some(&s.dir)).unwrap();
    // The picture goes on while the microphone is away.
    let away = std::time::Instant::now();
    let mut frames = 0;
    while away.elapsed() < Duration::from_secs(2) {
        video
            .next(Some(Duration::from_secs(5)))
            .expect("video frames while the microphone is unplugged");
        frames += 1;
    }
    assert!(frames > 30, "{frames} frames in 2 s");
    let st = stat();
    assert_ne!(st.source_state, "running", "{st:#?}");
    pa.plug();
    let _tone = pa.play_tone(880.0, 16000.0);
    // Capture comes back on its own: the tone played after the return.
    let mut back = false;
    for _ in 0..500 {
        let f = r.next_encoded(Some(LIMIT)).expect("audio after the return");
        let v = samples(&f);
        if (pulse::frequency(&v, 48000) - 880.0).abs() < 60.0 {
            back = true;
            break;
        }
    }
    assert!(back, "no 880 Hz chunk after plugging back in");
    let st = stat();
    assert!(st.restarts >= 1, "{st:#?}");
    assert_eq!(st.source_state, "running");
    video
        .next(Some(Duration::from_secs(5)))
        .expect("video after the return");
}

#[test]
fn the_audio_track_of_a_file_through_ffmpeg_is_converted_and_looped() {
    // An IP camera's or a file's sound: 44.1 kHz stereo AAC in, the bus's
    // 48 kHz mono out, in real time, looped at the end of the file.
    let s = Scene::new("ffaudio");
    let file = s.dir.join("tone.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=523:d=2:sample_rate=44100",
        "-ac",
        "2",
        "-c:a",
        "aac",
        path_str(&file),
    ]);
    let source = format!("ffmpeg:{}", path_str(&file));
    let _p = s.spawn(&["--size", "160x120", "--audio", &source]);
    let mut r = audio_reader(&s);
    assert_eq!((r.spec().sample_rate(), r.spec().channels()), (48000, 1));
    // Three seconds: past the end of the two-second file.
    let chunks = read_chunks(&mut r, 150);
    let pcm: Vec<i16> = chunks[25..75].iter().flat_map(|c| c.2.clone()).collect();
    let hz = pulse::frequency(&pcm, 48000);
    assert!((hz - 523.0).abs() < 8.0, "{hz:.1} Hz, the file has 523");
    let late: Vec<i16> = chunks[120..].iter().flat_map(|c| c.2.clone()).collect();
    assert!(
        late.iter().any(|&v| v.unsigned_abs() > 1000),
        "silence after the file's end: not looped"
    );
    for w in chunks.windows(2) {
        assert!(w[1].0 > w[0].0, "capture times go back");
    }
    let span = chunks[149].0 - chunks[0].0;
    assert!(
        (span as i64 - 2_980_000_000).abs() < 150_000_000,
        "150 chunks span {span} ns: not real time"
    );
}

#[test]
fn a_wav_file_without_a_channel_layout_is_read() {
    // WAV's PCM has no channel layout, only a channel count: swresample
    // refused every frame of it until the source gave it the default one.
    let s = Scene::new("wav");
    let file = s.dir.join("tone.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:d=2:sample_rate=48000",
        "-ac",
        "2",
        path_str(&file),
    ]);
    let source = format!("ffmpeg:{}", path_str(&file));
    let _p = s.spawn(&["--size", "160x120", "--audio", &source]);
    let mut r = audio_reader(&s);
    let chunks = read_chunks(&mut r, 50);
    let pcm: Vec<i16> = chunks[10..].iter().flat_map(|c| c.2.clone()).collect();
    let hz = pulse::frequency(&pcm, 48000);
    assert!((hz - 440.0).abs() < 8.0, "{hz:.1} Hz, the file has 440");
}

#[test]
fn a_hung_microphone_is_reopened_by_the_watchdog() {
    let pa = Pulse::start();
    let _tone = pa.play_tone(440.0, 16000.0);
    let s = Scene::new("hung");
    let mut cmd = s.producer(&[
        "--size",
        "160x120",
        "--audio",
        "alsa:pulse",
        "--watchdog",
        "0.5",
    ]);
    let _p = ChildGuard::spawn(pa.apply(&mut cmd));
    let mut r = audio_reader(&s);
    read_chunks(&mut r, 10);
    let audio_bus = format!("{}.audio", s.bus);
    let stat = || framebus::stat(&audio_bus, Some(&s.dir)).unwrap();
    pa.hang(true);
    assert!(
        framebus_test_support::eventually(LIMIT, || stat().watchdog_fires >= 1),
        "no watchdog fire on a hung microphone: {:#?}",
        stat()
    );
    pa.hang(false);
    // Capture goes on after the reopen.
    let before = stat().published;
    assert!(
        framebus_test_support::eventually(LIMIT, || stat().published > before + 25),
        "no chunks after the microphone came back: {:#?}",
        stat()
    );
}

#[test]
fn a_missing_microphone_is_exit_6_unless_waited_for() {
    let s = Scene::new("nomic");
    let (code, err) = run_to_exit(&s, &["--size", "160x120", "--audio", "alsa:hw:97,0"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("alsa:hw:97,0"), "{err}");
    assert!(!s.segment().exists(), "no video bus left behind");

    let (code, err) = run_to_exit(&s, &["--audio", "pulse"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("unknown audio source"), "{err}");
    let (code, err) = run_to_exit(&s, &["--audio", "tone", "--audio-rate", "11025"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("20 ms"), "{err}");

    // --audio-wait: the picture runs, the audio bus waits for its device.
    let _p = s.spawn(&[
        "--size",
        "160x120",
        "--audio",
        "alsa:hw:97,0",
        "--audio-wait",
    ]);
    let mut video = s.reader();
    video
        .next(Some(LIMIT))
        .expect("video without the microphone");
    let audio_bus = format!("{}.audio", s.bus);
    framebus_test_support::eventually(LIMIT, || {
        framebus::stat(&audio_bus, Some(&s.dir))
            .is_ok_and(|st| st.source_state == "reconnecting" && st.published == 0)
    });
    let st = framebus::stat(&audio_bus, Some(&s.dir)).unwrap();
    assert_eq!(st.source_state, "reconnecting", "{st:#?}");
}

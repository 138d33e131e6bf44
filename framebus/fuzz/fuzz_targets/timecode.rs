//! Fuzz the time-code decoder (`framebus::timecode`), which clients run on
//! frames that went through JPEG or H.264: whatever the pixels, decoding
//! returns, never panics or reads out of bounds. And the round trip holds:
//! a code painted into a frame of any format and size big enough decodes
//! to itself.
//!
//! Run with: `make fuzz` (or `cargo fuzz run timecode corpus/timecode` in
//! `framebus/fuzz`). Input: width and height (2 bytes each), a format
//! index, the time and counter to paint (8 + 4 bytes), then pixels.
#![no_main]

use framebus::timecode::{self, TimeCode};
use framebus::{Fps, FrameSpec, PixelFormat};
use libfuzzer_sys::fuzz_target;

const FORMATS: [PixelFormat; 7] = [
    PixelFormat::Gray8,
    PixelFormat::Nv12,
    PixelFormat::I420,
    PixelFormat::Yuyv,
    PixelFormat::Uyvy,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    // Small pictures keep each run fast; even sizes suit every format.
    let w = (u32::from(u16::from_le_bytes([data[0], data[1]])) % 640 + 2) & !1;
    let h = (u32::from(u16::from_le_bytes([data[2], data[3]])) % 360 + 2) & !1;
    let format = FORMATS[usize::from(data[4]) % FORMATS.len()];
    let tc = TimeCode {
        realtime_us: u64::from_le_bytes(data[5..13].try_into().unwrap()),
        counter: u32::from_le_bytes(data[13..17].try_into().unwrap()),
    };
    let pixels = &data[17..];

    // Arbitrary luma through the closure API.
    let _ = timecode::decode_with(w, h, |x, y| {
        let i = y as usize * w as usize + x as usize;
        pixels.get(i % pixels.len().max(1)).copied().unwrap_or(0)
    });

    let Ok(spec) = FrameSpec::new(format, w, h, Fps::new(30)) else {
        return;
    };
    // Arbitrary bytes as a frame, short or full.
    let _ = timecode::decode(&spec, pixels);
    let mut frame = vec![0u8; spec.frame_size()];
    for (d, s) in frame.iter_mut().zip(pixels.iter().cycle()) {
        *d = *s;
    }
    let _ = timecode::decode(&spec, &frame);

    // Round trip on a neutral picture.
    frame.fill(128);
    if timecode::paint(&spec, &mut frame, tc).is_ok() {
        let got = timecode::decode(&spec, &frame);
        assert_eq!(
            got.map(|t| (t.realtime_us, t.counter)),
            Some((tc.realtime_us, tc.counter)),
            "{format:?} {w}x{h}"
        );
    }
});

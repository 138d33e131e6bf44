//! The depacketizer never panics on arbitrary packets.
//!
//! Run with: `cd publishers/fuzz && cargo +nightly fuzz run depacketize`
#![no_main]

use framebus_publishers::rtsp::h264::depacketize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Packets separated by their first byte as a length.
    let mut packets = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        packets.push(&tail[..n]);
        rest = &tail[n..];
    }
    let _ = depacketize(&packets);
});

//! The control-connection framer (rtsp-types underneath) never panics or
//! loops, whatever the client sends, split at any point.
//!
//! Run with: `cd publishers/fuzz && cargo +nightly fuzz run rtsp_request`
#![no_main]

use framebus_publishers::rtsp::wire::{Framer, Incoming};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut f = Framer::default();
    for part in [&data[..split], &data[split..]] {
        f.push(part);
        let mut n = 0;
        while let Some(item) = f.next_item() {
            n += 1;
            assert!(n <= data.len() + 1, "framer does not make progress");
            if let Incoming::Request(r) = item {
                // The headers the server reads.
                let _ = r.typed_header::<rtsp_types::headers::Session>();
                // Transports is not parsed here: rtsp-types 0.1.3 panics on
                // some `dest_addr` values (the server catches that panic
                // and answers 400), and libfuzzer aborts on any panic.
                let _ = r.request_uri().map(|u| u.path().to_string());
            }
        }
    }
});

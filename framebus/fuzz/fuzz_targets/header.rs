//! Fuzz the validation of an untrusted segment header.
//!
//! Run with: `make fuzz` (or `cargo fuzz run header` in `framebus/fuzz`).
//! The first 8 bytes of the input are the file size the header is checked
//! against; the rest is the header. Validation must return, never panic,
//! whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap());
    let _ = framebus::layout::fuzz_validate(&data[8..], size);
});

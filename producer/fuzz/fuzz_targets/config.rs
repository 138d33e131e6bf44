//! Fuzz `framebus.toml` parsing and checking (`framebus_producer::config`):
//! whatever the text, `config::parse` returns a `Config` or a
//! `FILE:LINE:COL` error, never panics; and an error's line and column
//! point inside the text.
//!
//! Run with: `make fuzz` (or `cargo fuzz run config corpus/config` in
//! `producer/fuzz`).
#![no_main]

use framebus_producer::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz.toml");
    match config::parse(path, text) {
        Ok(_) => {}
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            if let config::ConfigError::At { line, column, .. } = &e {
                let lines = text.split('\n').count().max(1);
                assert!(
                    *line >= 1 && *line <= lines,
                    "line {line} of {lines}: {msg}"
                );
                assert!(*column >= 1, "column {column}: {msg}");
            }
        }
    }
});

//! `docs/shm-layout.md` draws the bytes of a segment; this test reads its
//! tables and checks every offset and size against the one definition in
//! `framebus/src/layout.rs`, both ways: every documented field exists at
//! that offset, and every field of the code is documented.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of_val};

use framebus::layout::{FixedHeader, Header, ReaderEntry, SlotDesc, LAYOUT_VERSION};

/// `(offset, size)` of a field, from a zeroed value (sizes) and `offset_of!`.
macro_rules! fields {
    ($ty:ty, $base:expr, $v:expr; $($f:ident),* $(,)?) => {{
        let mut m = BTreeMap::new();
        $( m.insert(stringify!($f).to_string(), ($base + offset_of!($ty, $f), size_of_val(&$v.$f))); )*
        m
    }};
}

/// The rows `| off | size | `field` | ... |` of the table under `heading`.
fn doc_table(doc: &str, heading: &str) -> BTreeMap<String, (usize, usize)> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/shm-layout.md has no {heading:?}"));
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in doc[start..].lines().skip(1) {
        if line.starts_with('#') {
            break;
        }
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Ok(off), Ok(size)) = (cells[1].parse::<usize>(), cells[2].parse::<usize>()) else {
            continue;
        };
        let name = cells[3].trim_matches('`');
        let name = name.split('[').next().unwrap().to_string();
        if name != "reserved" {
            rows.insert(name, (off, size));
        }
    }
    rows
}

#[test]
fn shm_layout_doc_matches_the_code() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/shm-layout.md"
    ))
    .expect("read docs/shm-layout.md");
    assert!(
        doc.contains(&format!(
            "# Shared-memory layout (version {LAYOUT_VERSION})"
        )),
        "the page's title names another layout version than {LAYOUT_VERSION}"
    );
    // SAFETY: (test) every layout type is ShmSafe: valid when all zeros.
    let h: Header = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let s: SlotDesc = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r: ReaderEntry = unsafe { std::mem::zeroed() };
    let fixed = fields!(FixedHeader, 0, h.fixed;
        magic, version, header_size, total_size, producer_pid, fourcc, width, height,
        fps_num, fps_den, plane_count, slot_count, plane_offset, plane_stride, frame_size,
        slot_capacity, slot_stride, slots_offset, readers_offset, data_offset,
        reader_capacity, max_held, created_realtime_ns, instance_id, source);
    let live = fields!(framebus::layout::LiveHeader, offset_of!(Header, live), h.live;
        state, source_state, latest, wake_seq, reader_hwm, published, dropped_all_held,
        last_publish_ns, measured_fps_milli, captured, source_dropped, restarts,
        watchdog_fires, wake_calls, keyframe_requests, keyframes_forced, oversize,
        time_base_num, time_base_den, encoder_step, encoder_fps_milli, encoder_steps,
        encoder_bitrate, audio_peak, audio_rms, config_seq, config_len, profile_level, config);
    let slot = fields!(SlotDesc, 0, s; state, len, mono_ns, realtime_ns, flags, pts, source_seq);
    let reader = fields!(ReaderEntry, 0, r;
        held, pid, waiting, frames, skipped, last_seq, attached_ns, keyframe_requests);
    for (heading, code) in [
        ("### FixedHeader", fixed),
        ("### LiveHeader", live),
        ("## SlotDesc", slot),
        ("## ReaderEntry", reader),
    ] {
        let documented = doc_table(&doc, heading);
        assert_eq!(
            documented, code,
            "{heading}: docs/shm-layout.md (left) and layout.rs (right) disagree"
        );
    }
}

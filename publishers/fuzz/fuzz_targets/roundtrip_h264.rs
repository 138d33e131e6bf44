//! `depacketize(packetize(au)) == au` for arbitrary access units and MTUs.
//!
//! Run with: `cd publishers/fuzz && cargo +nightly fuzz run roundtrip_h264`
#![no_main]

use framebus_publishers::rtsp::h264::{depacketize, join_annex_b, split_annex_b, Packetizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mtu_byte, rest)) = data.split_first() else {
        return;
    };
    let mtu = 15 + usize::from(mtu_byte) * 6;
    // Normalise the input to what an encoder emits: Annex B whose NAL units
    // have a valid header (forbidden bit clear) and no trailing zeros.
    let nals: Vec<Vec<u8>> = split_annex_b(rest)
        .into_iter()
        .map(|n| {
            let mut v = n.to_vec();
            v[0] = (v[0] & 0x7f) | 1; // type >= 1, never 0 (reserved)
            if v[0] & 0x1f >= 24 {
                v[0] = (v[0] & 0xe0) | 5;
            }
            while v.len() > 1 && v.last() == Some(&0) {
                v.pop();
            }
            v
        })
        .collect();
    let au = join_annex_b(nals.iter().map(Vec::as_slice));
    let nals_again = split_annex_b(&au);
    if nals_again.len() != nals.len() {
        return; // payload bytes that themselves look like start codes
    }
    let mut p = Packetizer::new(mtu, 96, 0x1234_5678, u16::from(mtu_byte) << 8);
    let packets = p.packetize(&nals_again, 1234);
    for pk in &packets {
        assert!(pk.len() <= mtu);
    }
    assert_eq!(depacketize(&packets).expect("own packets depacketize"), au);
});

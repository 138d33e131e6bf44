//! Arbitrary bytes as a WHEP offer, through the server's offer path
//! without network or buses (`webrtc::whep::answer_for_fuzz`: str0m's SDP
//! parser, `accept_offer` on a session's configuration, the choice of the
//! video media and of the H.264 payload type for a main-profile stream).
//! Whatever the bytes: no panic, only the errors a client can be given
//! for an offer (400, 406), and an answer only with a media line to send
//! video on.
//!
//! Run with: `make fuzz` (or `cargo fuzz run whep_offer corpus/whep_offer`
//! in `publishers/fuzz`). Seeds: a Chromium offer and broken variants.
#![no_main]

use framebus_publishers::webrtc::session::video_mid;
use framebus_publishers::webrtc::whep::{answer_for_fuzz, WhepError, MAX_OFFER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The handler refuses larger bodies (413) and non-UTF-8 (400) before
    // the offer path.
    if data.len() > MAX_OFFER_BYTES {
        return;
    }
    let Ok(offer) = std::str::from_utf8(data) else {
        return;
    };
    match answer_for_fuzz(offer) {
        Ok(answer) => {
            assert!(answer.starts_with("v=0"), "answer {answer:?}");
            assert!(
                video_mid(&answer).is_some(),
                "an answer with no video to send: {answer:?}"
            );
        }
        Err(WhepError::BadOffer(_) | WhepError::NoCodec(_)) => {}
        Err(e) => panic!("an offer cannot fail with {e:?}"),
    }
});

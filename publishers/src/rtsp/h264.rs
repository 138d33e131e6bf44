//! H.264 in RTP (RFC 6184), packetization-mode 1: single NAL unit packets
//! and FU-A fragments. STAP-A is never sent (the packetizer has no need for
//! it), but the depacketizer accepts it so it can read what other senders
//! produce.
//!
//! An access unit travels through this module in Annex B form (NAL units
//! each preceded by a `00 00 00 01` start code), which is what libx264 emits.
//!
//! FU-A layout (RFC 6184 §5.8): the NAL header byte `F|NRI|type` is replaced
//! by an FU indicator `F|NRI|28` followed by an FU header `S|E|R|type`, then
//! a slice of the NAL payload (the original header byte is not repeated).

use super::rtp::{RtpHeader, RTP_HEADER_LEN};
pub use crate::h264::{join_annex_b, nal, nal_type, split_annex_b};

/// Turns access units into RTP packets no longer than `mtu` bytes
/// (header included).
#[derive(Clone, Debug)]
pub struct Packetizer {
    mtu: usize,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
}

/// The smallest MTU the packetizer accepts: a header and one byte of FU-A
/// payload.
pub const MIN_MTU: usize = RTP_HEADER_LEN + 3;

impl Packetizer {
    /// A packetizer; `mtu` is clamped to at least [`MIN_MTU`].
    pub fn new(mtu: usize, payload_type: u8, ssrc: u32, first_seq: u16) -> Packetizer {
        Packetizer {
            mtu: mtu.max(MIN_MTU),
            payload_type,
            ssrc,
            seq: first_seq,
        }
    }

    /// The sequence number the next packet will carry.
    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// Packetizes the NAL units of one access unit, all with timestamp
    /// `ts`; the marker bit is set on the last packet.
    pub fn packetize(&mut self, nals: &[&[u8]], ts: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let max_payload = self.mtu - RTP_HEADER_LEN;
        let nals: Vec<&[u8]> = nals.iter().copied().filter(|n| !n.is_empty()).collect();
        for (i, nal) in nals.iter().enumerate() {
            let last_nal = i + 1 == nals.len();
            if nal.len() <= max_payload {
                let mut p = self.header(ts, last_nal, nal.len());
                p.extend_from_slice(nal);
                out.push(p);
                continue;
            }
            let indicator = (nal[0] & 0xe0) | nal::FU_A;
            let ty = nal[0] & 0x1f;
            let body = &nal[1..];
            let chunk = max_payload - 2;
            let count = body.len().div_ceil(chunk);
            for (k, part) in body.chunks(chunk).enumerate() {
                let first = k == 0;
                let last = k + 1 == count;
                let fu_header = (u8::from(first) << 7) | (u8::from(last) << 6) | ty;
                let mut p = self.header(ts, last_nal && last, part.len() + 2);
                p.push(indicator);
                p.push(fu_header);
                p.extend_from_slice(part);
                out.push(p);
            }
        }
        out
    }

    fn header(&mut self, ts: u32, marker: bool, payload_len: usize) -> Vec<u8> {
        let mut p = Vec::with_capacity(RTP_HEADER_LEN + payload_len);
        RtpHeader {
            marker,
            payload_type: self.payload_type,
            seq: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
        }
        .write(&mut p);
        self.seq = self.seq.wrapping_add(1);
        p
    }
}

/// Why a packet sequence does not depacketize.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DepacketizeError {
    /// A packet shorter than its headers.
    #[error("packet {index} is truncated")]
    Truncated {
        /// Index of the packet in the input.
        index: usize,
    },
    /// An RTP header that is not version 2.
    #[error("packet {index} is not RTP version 2")]
    BadRtp {
        /// Index of the packet in the input.
        index: usize,
    },
    /// A fragment out of order (no start, or a continuation without one).
    #[error("packet {index}: FU-A fragment out of order")]
    BadFragment {
        /// Index of the packet in the input.
        index: usize,
    },
    /// A NAL type this depacketizer does not handle in mode 1.
    #[error("packet {index}: unsupported NAL type {ty}")]
    Unsupported {
        /// Index of the packet in the input.
        index: usize,
        /// The NAL unit type.
        ty: u8,
    },
}

/// Reassembles the NAL units carried by RTP packets (one or more access
/// units) into Annex B. The inverse of [`Packetizer::packetize`]; used by
/// tests and the fuzz target, and strict about malformed input.
pub fn depacketize<P: AsRef<[u8]>>(packets: &[P]) -> Result<Vec<u8>, DepacketizeError> {
    let mut nals: Vec<Vec<u8>> = Vec::new();
    let mut fu: Option<Vec<u8>> = None;
    let mut prev_seq: Option<u16> = None;
    for (index, p) in packets.iter().enumerate() {
        let p = p.as_ref();
        let (hdr, off) = RtpHeader::parse(p).ok_or(DepacketizeError::BadRtp { index })?;
        // A lost packet inside a fragmented NAL unit makes it unusable.
        if fu.is_some() && prev_seq.map(|s| s.wrapping_add(1)) != Some(hdr.seq) {
            return Err(DepacketizeError::BadFragment { index });
        }
        prev_seq = Some(hdr.seq);
        let payload = &p[off..];
        let Some(&first) = payload.first() else {
            return Err(DepacketizeError::Truncated { index });
        };
        match first & 0x1f {
            1..=23 => {
                if fu.is_some() {
                    return Err(DepacketizeError::BadFragment { index });
                }
                nals.push(payload.to_vec());
            }
            nal::STAP_A => {
                let mut rest = &payload[1..];
                while !rest.is_empty() {
                    if rest.len() < 2 {
                        return Err(DepacketizeError::Truncated { index });
                    }
                    let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    if n == 0 || rest.len() < 2 + n {
                        return Err(DepacketizeError::Truncated { index });
                    }
                    nals.push(rest[2..2 + n].to_vec());
                    rest = &rest[2 + n..];
                }
            }
            nal::FU_A => {
                if payload.len() < 3 {
                    return Err(DepacketizeError::Truncated { index });
                }
                let (s, e) = (payload[1] & 0x80 != 0, payload[1] & 0x40 != 0);
                match (&mut fu, s) {
                    (None, true) => {
                        let mut v = vec![(first & 0xe0) | (payload[1] & 0x1f)];
                        v.extend_from_slice(&payload[2..]);
                        fu = Some(v);
                    }
                    (Some(v), false) => v.extend_from_slice(&payload[2..]),
                    _ => return Err(DepacketizeError::BadFragment { index }),
                }
                if e {
                    nals.extend(fu.take());
                }
            }
            ty => return Err(DepacketizeError::Unsupported { index, ty }),
        }
    }
    if fu.is_some() {
        return Err(DepacketizeError::BadFragment {
            index: packets.len(),
        });
    }
    Ok(join_annex_b(nals.iter().map(Vec::as_slice)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn au(sizes: &[usize], seed: u8) -> Vec<u8> {
        let nals: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let mut v: Vec<u8> = (0..n)
                    .map(|k| (k as u8).wrapping_mul(31).wrapping_add(seed) | 1)
                    .collect();
                v[0] = 0x60 | (i as u8 % 23 + 1);
                v
            })
            .collect();
        join_annex_b(nals.iter().map(Vec::as_slice))
    }

    fn round_trip(data: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let mut p = Packetizer::new(mtu, 96, 0x1234, 65530);
        let packets = p.packetize(&split_annex_b(data), 9000);
        assert_eq!(depacketize(&packets).unwrap(), data, "mtu {mtu}");
        for pk in &packets {
            assert!(pk.len() <= mtu.max(MIN_MTU));
        }
        packets
    }

    #[test]
    fn single_nal_units_round_trip() {
        let data = au(&[10, 20, 1200], 3);
        let packets = round_trip(&data, 1400);
        assert_eq!(packets.len(), 3, "one packet per NAL");
        let markers: Vec<bool> = packets.iter().map(|p| p[1] & 0x80 != 0).collect();
        assert_eq!(markers, [false, false, true]);
    }

    #[test]
    fn fu_a_round_trip_at_many_sizes() {
        for size in [2, 3, 100, 1387, 1388, 1389, 5000, 100_000] {
            for mtu in [MIN_MTU, 100, 1400] {
                round_trip(&au(&[7, size, 4], size as u8), mtu);
            }
        }
    }

    #[test]
    fn fu_a_headers_and_sequence_wrap() {
        let data = au(&[3000], 1);
        let packets = round_trip(&data, 1000);
        assert_eq!(packets.len(), 4);
        let seqs: Vec<u16> = packets
            .iter()
            .map(|p| u16::from_be_bytes([p[2], p[3]]))
            .collect();
        assert_eq!(seqs, [65530, 65531, 65532, 65533]);
        assert_eq!(packets[0][12] & 0x1f, nal::FU_A);
        assert_eq!(packets[0][13] & 0xc0, 0x80, "start bit on the first");
        assert_eq!(packets[3][13] & 0xc0, 0x40, "end bit on the last");
        assert_eq!(packets[1][13] & 0xc0, 0x00);
    }

    #[test]
    fn depacketize_rejects_garbage() {
        assert!(depacketize(&[[0u8; 4]]).is_err());
        let mut p = Packetizer::new(100, 96, 1, 0);
        let mut packets = p.packetize(&[&[0x65; 500][..]], 0);
        packets.remove(1);
        assert_eq!(
            depacketize(&packets),
            Err(DepacketizeError::BadFragment { index: 1 })
        );
    }
}

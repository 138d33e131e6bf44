//! RTP fixed header (RFC 3550 §5.1) and RTCP sender reports (§6.4.1).
//!
//! ```text
//!  0                   1                   2                   3
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! |                           timestamp                           |
//! |           synchronization source (SSRC) identifier            |
//! ```

/// Bytes of an RTP header without CSRCs or extension.
pub const RTP_HEADER_LEN: usize = 12;

/// The H.264 RTP clock rate.
pub const CLOCK_RATE: u64 = 90_000;

/// The fields of an RTP header this server writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit: last packet of an access unit.
    pub marker: bool,
    /// Payload type (dynamic, 96 here).
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Media timestamp (90 kHz).
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Appends the 12 header bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }

    /// Parses a header, skipping CSRCs, extension and checking padding;
    /// returns it with the payload offset, or `None` when malformed.
    pub fn parse(p: &[u8]) -> Option<(RtpHeader, usize)> {
        if p.len() < RTP_HEADER_LEN || p[0] >> 6 != 2 {
            return None;
        }
        let cc = usize::from(p[0] & 0x0f);
        let mut off = RTP_HEADER_LEN + 4 * cc;
        if p[0] & 0x10 != 0 {
            let ext = p.get(off + 2..off + 4)?;
            off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        if off > p.len() || p[0] & 0x20 != 0 {
            return None;
        }
        Some((
            RtpHeader {
                marker: p[1] & 0x80 != 0,
                payload_type: p[1] & 0x7f,
                seq: u16::from_be_bytes([p[2], p[3]]),
                timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            },
            off,
        ))
    }
}

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp from nanoseconds since the Unix epoch.
pub fn ntp_from_unix_ns(ns: u64) -> u64 {
    let secs = ns / 1_000_000_000 + NTP_UNIX_OFFSET;
    let frac = ((ns % 1_000_000_000) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// An RTCP sender report (PT 200) with no report blocks, followed by an
/// SDES (PT 202) CNAME chunk, as RFC 3550 §6.1 requires of a compound
/// packet.
pub fn sender_report(
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packets: u32,
    octets: u32,
    cname: &str,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&[0x80, 200, 0, 6]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&ntp.to_be_bytes());
    p.extend_from_slice(&rtp_ts.to_be_bytes());
    p.extend_from_slice(&packets.to_be_bytes());
    p.extend_from_slice(&octets.to_be_bytes());
    // SDES: one chunk = SSRC, CNAME item, end item, padding to 32 bits.
    let name = &cname.as_bytes()[..cname.len().min(255)];
    let chunk_len = 4 + 2 + name.len() + 1;
    let padded = chunk_len.div_ceil(4) * 4;
    let words = (4 + padded) / 4 - 1;
    p.extend_from_slice(&[0x81, 202]);
    p.extend_from_slice(&(words as u16).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.push(1);
    p.push(name.len() as u8);
    p.extend_from_slice(name);
    p.resize(p.len() + padded - chunk_len + 1, 0);
    p
}

/// Append an RTCP BYE (PT 203) for `ssrc` to a compound packet (which
/// must already start with a sender report, RFC 3550 §6.1): tells the
/// receiver the stream ends (ffmpeg and GStreamer end their input on it).
pub fn append_bye(compound: &mut Vec<u8>, ssrc: u32) {
    // V=2, source count 1; length 1 = two 32-bit words minus one.
    compound.extend_from_slice(&[0x81, 203, 0, 1]);
    compound.extend_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = RtpHeader {
            marker: true,
            payload_type: 96,
            seq: 513,
            timestamp: 0xdead_beef,
            ssrc: 7,
        };
        let mut v = Vec::new();
        h.write(&mut v);
        assert_eq!(v.len(), RTP_HEADER_LEN);
        assert_eq!(RtpHeader::parse(&v), Some((h, RTP_HEADER_LEN)));
    }

    #[test]
    fn sender_report_is_word_aligned() {
        for name in ["", "a", "ab", "abc", "framebus"] {
            let p = sender_report(1, ntp_from_unix_ns(1_500_000_000), 2, 3, 4, name);
            assert_eq!(p.len() % 4, 0, "{name:?}");
            assert_eq!(p.len(), 28 + 4 * (usize::from(p[31]) + 1));
        }
        assert_eq!(ntp_from_unix_ns(500_000_000) & 0xffff_ffff, 1 << 31);
    }

    #[test]
    fn bye_follows_the_sender_report() {
        let mut p = sender_report(0x0102_0304, 0, 0, 0, 0, "framebus-rtsp");
        let sr_len = p.len();
        append_bye(&mut p, 0x0102_0304);
        assert_eq!(p.len(), sr_len + 8);
        assert_eq!(&p[sr_len..], &[0x81, 203, 0, 1, 1, 2, 3, 4]);
    }
}

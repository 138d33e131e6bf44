//! H.264 Annex B byte streams: NAL unit types, splitting an access unit
//! into its NAL units and joining them back, and the fields of an SPS that
//! the outputs need. Shared by the encoder (which writes access units into
//! an encoded bus in this form), every output that reads them and the
//! GStreamer sink (which writes them too), so it lives in the core.

/// NAL unit types framebus cares about.
pub mod nal {
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// Aggregation packet, one timestamp (RFC 6184 §5.7.1).
    pub const STAP_A: u8 = 24;
    /// Fragmentation unit A (RFC 6184 §5.8).
    pub const FU_A: u8 = 28;
}

/// The NAL units of an Annex B byte stream, without their start codes.
/// Bytes before the first start code are ignored; empty NAL units skipped.
pub fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                // A 4-byte start code leaves one zero at the end of the
                // previous NAL unit; trailing zeros are never NAL payload
                // (rbsp_trailing_bits end in a one bit).
                let mut end = i;
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                if end > s {
                    nals.push(&data[s..end]);
                }
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        if s < data.len() {
            nals.push(&data[s..]);
        }
    }
    nals
}

/// Joins NAL units into Annex B with 4-byte start codes.
pub fn join_annex_b<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for n in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(n);
    }
    out
}

/// The NAL unit type (low 5 bits of the header byte).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_split_handles_3_and_4_byte_codes() {
        let data = [
            0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 0, 5,
        ];
        let nals = split_annex_b(&data);
        assert_eq!(nals, [&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 0, 5]]);
        assert_eq!(split_annex_b(&join_annex_b(nals.iter().copied())), nals);
    }
}

//! Splits the bytes of a control connection into RTSP requests and
//! interleaved data frames (rtsp-types does the parsing), recovering from
//! garbage: a malformed message is reported once and skipped up to the end
//! of its header block (`\r\n\r\n`), so the connection can go on.

use rtsp_types::{Message, ParseError, Request};

/// Largest request (headers and body) accepted.
pub const MAX_REQUEST: usize = 64 * 1024;

/// One item read from the connection.
#[derive(Debug)]
pub enum Incoming {
    /// A request.
    Request(Request<Vec<u8>>),
    /// Interleaved data from the client (RTCP receiver reports).
    Data,
    /// Bytes that are not an RTSP message (answer 400).
    Malformed,
}

/// Accumulates bytes and yields complete messages.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete item, or `None` when more bytes are needed.
    pub fn next_item(&mut self) -> Option<Incoming> {
        loop {
            if self.buf.is_empty() {
                return None;
            }
            match Message::<Vec<u8>>::parse(&self.buf) {
                Ok((msg, used)) => {
                    self.buf.drain(..used.max(1).min(self.buf.len()));
                    match msg {
                        Message::Request(r) => return Some(Incoming::Request(r)),
                        Message::Data(_) => return Some(Incoming::Data),
                        // A client has no business sending responses.
                        Message::Response(_) => continue,
                    }
                }
                Err(ParseError::Incomplete(_)) if self.buf.len() <= MAX_REQUEST => return None,
                Err(_) => {
                    let cut = self
                        .buf
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(self.buf.len(), |p| p + 4);
                    self.buf.drain(..cut);
                    return Some(Incoming::Malformed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_then_request_then_data() {
        let mut f = Framer::default();
        f.push(b"\x01garbage\r\n\r\nOPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n$\x01\x00\x02ab");
        assert!(matches!(f.next_item(), Some(Incoming::Malformed)));
        assert!(matches!(f.next_item(), Some(Incoming::Request(_))));
        assert!(matches!(f.next_item(), Some(Incoming::Data)));
        assert!(f.next_item().is_none());
        f.push(b"DESCRIBE rtsp://h/a/b RTSP/1.0\r\nCSeq: 3\r\n");
        assert!(f.next_item().is_none(), "incomplete");
        f.push(b"\r\n");
        assert!(matches!(f.next_item(), Some(Incoming::Request(_))));
    }

    #[test]
    fn oversized_request_is_dropped() {
        let mut f = Framer::default();
        f.push(b"OPTIONS * RTSP/1.0\r\nX: ");
        f.push(&vec![b'a'; MAX_REQUEST + 10]);
        assert!(matches!(f.next_item(), Some(Incoming::Malformed)));
        assert_eq!(f.buffered(), 0);
    }
}

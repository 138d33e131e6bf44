//! Free TCP and UDP ports. Servers under test bind port 0 and print the port they
//! got (see [`crate::listening`]); this is only for the few tests that must
//! name a port before anything listens on it (a receiver that a publisher
//! pushes to). The port is free when returned; another process could take
//! it before the test binds it again (unlikely, and the test then fails
//! loudly at bind).

use std::net::{TcpListener, UdpSocket};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago (for a receiver
/// that a publisher sends RTP to).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

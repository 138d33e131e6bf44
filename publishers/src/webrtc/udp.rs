//! The media port: every WebRTC session's UDP traffic goes through the same
//! port (one socket per local address), and a demultiplexer hands each
//! datagram to its session.
//!
//! A datagram from an address a session already uses goes to that session.
//! A STUN binding request from a new address names the session in its
//! `USERNAME` (`{our ufrag}:{their ufrag}`); the session's ICE agent checks
//! the message integrity, so a forged request reaches at most the session
//! it names and is dropped there. Anything else is dropped and counted.
//! Sessions get their datagrams through a bounded channel: a session that
//! does not keep up loses datagrams, it never holds the others up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use str0m::ice::StunMessage;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams a session's inbox holds.
pub const INBOX_DEPTH: usize = 512;
/// Remote addresses one session may be reached from (ICE checks from
/// several candidates of the browser); more are ignored.
const MAX_ADDRS_PER_SESSION: usize = 16;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;

/// One received datagram.
#[derive(Debug)]
pub struct Datagram {
    /// Bytes.
    pub data: Vec<u8>,
    /// Sender.
    pub source: SocketAddr,
    /// The local address it arrived at.
    pub destination: SocketAddr,
    /// When it was read.
    pub at: Instant,
}

#[derive(Debug, Clone)]
struct Route {
    session: u64,
    inbox: mpsc::Sender<Datagram>,
}

#[derive(Debug, Default)]
struct Routes {
    by_ufrag: HashMap<String, Route>,
    by_addr: HashMap<SocketAddr, Route>,
    addrs_of: HashMap<u64, Vec<SocketAddr>>,
}

/// Counters of the media port.
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Datagrams for no session (unknown address, not a STUN request
    /// naming a session).
    pub unrouted: AtomicU64,
    /// Datagrams dropped because their session's inbox was full.
    pub inbox_full: AtomicU64,
    /// Datagrams the kernel would not take (send buffer full).
    pub send_dropped: AtomicU64,
}

/// The media port: its sockets and the routing table.
#[derive(Debug)]
pub struct MediaPort {
    sockets: Vec<Arc<UdpSocket>>,
    routes: Mutex<Routes>,
    /// Counters for `/metrics`.
    pub counters: PortCounters,
}

/// Local addresses of the host's interfaces of the family of `wildcard`
/// (for a `0.0.0.0` or `[::]` bind), up and not link-local.
fn interface_addrs(wildcard: IpAddr) -> std::io::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as u32 == 0 {
            continue;
        }
        // SAFETY: ifa_addr is non-null; the family says which struct it is.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let ip = match (family, wildcard) {
            (libc::AF_INET, IpAddr::V4(_)) => {
                // SAFETY: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
            }
            (libc::AF_INET6, IpAddr::V6(_)) => {
                // SAFETY: AF_INET6 addresses are sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                let v6 = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                if v6.is_unicast_link_local() {
                    continue;
                }
                IpAddr::V6(v6)
            }
            _ => continue,
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(ifap) };
    Ok(out)
}

impl MediaPort {
    /// Binds the media port: `addr` itself, or, for a wildcard address, one
    /// socket per interface address on the same port (so that each
    /// datagram's local address is known: ICE pairs by it). Port 0 picks a
    /// free port (the same one on every address when possible).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Arc<MediaPort>> {
        let ips = if addr.ip().is_unspecified() {
            interface_addrs(addr.ip())?
        } else {
            vec![addr.ip()]
        };
        let mut sockets = Vec::new();
        let mut port = addr.port();
        for ip in ips {
            let s = UdpSocket::bind(SocketAddr::new(ip, port)).await?;
            port = s.local_addr()?.port();
            sockets.push(Arc::new(s));
        }
        if sockets.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("no interface address to bind for {addr}"),
            ));
        }
        Ok(Arc::new(MediaPort {
            sockets,
            routes: Mutex::new(Routes::default()),
            counters: PortCounters::default(),
        }))
    }

    /// The bound addresses (each is a host candidate).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Starts the receiving tasks.
    pub fn spawn_receivers(self: &Arc<MediaPort>) {
        for s in &self.sockets {
            let (port, socket) = (Arc::clone(self), Arc::clone(s));
            tokio::spawn(async move { port.receive(socket).await });
        }
    }

    async fn receive(&self, socket: Arc<UdpSocket>) {
        let Ok(local) = socket.local_addr() else {
            return;
        };
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, source) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors of earlier sends show up here on Linux.
                    tracing::trace!(error = %e, "media port receive");
                    continue;
                }
            };
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            let data = &buf[..n];
            let Some(route) = self.route(data, source) else {
                self.counters.unrouted.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let d = Datagram {
                data: data.to_vec(),
                source,
                destination: local,
                at: Instant::now(),
            };
            if route.inbox.try_send(d).is_err() {
                self.counters.inbox_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn route(&self, data: &[u8], source: SocketAddr) -> Option<Route> {
        let mut routes = self.routes.lock();
        if let Some(r) = routes.by_addr.get(&source) {
            return Some(r.clone());
        }
        // A first datagram from this address: only a STUN request naming a
        // session opens a route.
        let msg = StunMessage::parse(data).ok()?;
        let (ours, _) = msg.split_username()?;
        let route = routes.by_ufrag.get(ours)?.clone();
        let addrs = routes.addrs_of.entry(route.session).or_default();
        if addrs.len() < MAX_ADDRS_PER_SESSION {
            addrs.push(source);
            routes.by_addr.insert(source, route.clone());
        }
        Some(route)
    }

    /// Routes STUN requests naming `ufrag` (and the addresses they come
    /// from) to `inbox`.
    pub fn register(&self, session: u64, ufrag: String, inbox: mpsc::Sender<Datagram>) {
        self.routes
            .lock()
            .by_ufrag
            .insert(ufrag, Route { session, inbox });
    }

    /// Routes datagrams from `addr` to `session` (registered first), before
    /// any STUN request from it: a WHIP server's candidates, which may
    /// only answer our checks (ICE lite).
    pub fn route_addr(&self, session: u64, addr: SocketAddr) {
        let mut routes = self.routes.lock();
        let Some(route) = routes
            .by_ufrag
            .values()
            .find(|r| r.session == session)
            .cloned()
        else {
            return;
        };
        let addrs = routes.addrs_of.entry(session).or_default();
        if addrs.len() < MAX_ADDRS_PER_SESSION && !addrs.contains(&addr) {
            addrs.push(addr);
            routes.by_addr.insert(addr, route);
        }
    }

    /// Forgets a session's routes.
    pub fn unregister(&self, session: u64) {
        let mut routes = self.routes.lock();
        routes.by_ufrag.retain(|_, r| r.session != session);
        if let Some(addrs) = routes.addrs_of.remove(&session) {
            for a in addrs {
                routes.by_addr.remove(&a);
            }
        }
    }

    /// Sends `data` from local address `from` to `to`, without waiting: a
    /// full send buffer drops the datagram (counted), as the network would.
    pub fn send(&self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let socket = self
            .sockets
            .iter()
            .find(|s| s.local_addr().is_ok_and(|a| a == from))
            .or_else(|| self.sockets.first());
        if let Some(s) = socket {
            if s.try_send_to(data, to).is_err() {
                self.counters.send_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

//! Network namespaces for tests that need a real network path: a
//! namespace joined to the root one by a veth pair, whose root side can be
//! shaped with `tc tbf` (netem is not in every kernel). Needs root; without
//! it the test fails saying so. Everything is removed on drop.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::run;

/// Fails the test (not a skip) unless it runs as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests need root (network namespaces, veth pairs, tc qdiscs): run them as root, as CI does"
    );
}

/// Runs a network command (`ip`, `tc`); panics with its output on failure.
pub fn net_cmd(args: &[&str]) {
    let out = run(
        Command::new(args[0]).args(&args[1..]),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "`{}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a clean-up command, ignoring failures (the thing may be gone).
pub fn net_cmd_quiet(args: &[&str]) {
    let _ = run(
        Command::new(args[0]).args(&args[1..]),
        Duration::from_secs(20),
    );
}

/// A network namespace joined to the root namespace by a veth pair with
/// a /30 of its own: `host_ip` on the root side (`host_if`), `ns_ip` in the
/// namespace. Removed on drop (the pair and its qdiscs go with it).
pub struct Netns {
    /// The namespace's name (`ip netns exec NAME`).
    pub name: String,
    /// The root side's interface.
    pub host_if: String,
    /// The root side's address.
    pub host_ip: Ipv4Addr,
    /// The namespace side's address.
    pub ns_ip: Ipv4Addr,
}

impl Netns {
    /// A new namespace and veth pair (needs root: fails the test otherwise).
    pub fn new() -> Netns {
        require_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // A /30 in 10.200.0.0/13 from the pid and the counter: unique
        // among the tests of this process and, short of a pid collision
        // modulo 2^14, of others running beside it.
        let idx = ((pid & 0x3fff) << 4) | (n & 0xf);
        let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) | (idx << 2);
        let net = Netns {
            name: format!("fbnet-{pid}-{n}"),
            // Interface names: at most 15 bytes.
            host_if: format!("fbh{pid}n{n}"),
            host_ip: Ipv4Addr::from(base + 1),
            ns_ip: Ipv4Addr::from(base + 2),
        };
        let peer = format!("fbp{pid}n{n}");
        // Leftovers of an earlier process with the same pid.
        net_cmd_quiet(&["ip", "netns", "del", &net.name]);
        net_cmd_quiet(&["ip", "link", "del", &net.host_if]);
        let out = run(
            Command::new("ip").args(["netns", "add", &net.name]),
            Duration::from_secs(20),
        );
        assert!(
            out.status.success(),
            "`ip netns add {}` failed: these tests need network namespaces (root, iproute2): {}",
            net.name,
            String::from_utf8_lossy(&out.stderr)
        );
        // From here on, Drop removes whatever was made.
        let host_cidr = format!("{}/30", net.host_ip);
        let ns_cidr = format!("{}/30", net.ns_ip);
        net_cmd(&[
            "ip",
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        net_cmd(&["ip", "link", "set", &peer, "netns", &net.name]);
        net_cmd(&["ip", "addr", "add", &host_cidr, "dev", &net.host_if]);
        net_cmd(&["ip", "link", "set", &net.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &net.name];
            all.extend_from_slice(args);
            net_cmd(&all);
        };
        inside(&["ip", "link", "set", "lo", "up"]);
        inside(&["ip", "addr", "add", &ns_cidr, "dev", &peer]);
        inside(&["ip", "link", "set", &peer, "up"]);
        net
    }

    /// Shapes what the root side sends into the namespace (towards the
    /// browser) with `tbf RATE BURST LATENCY`.
    pub fn shape(&self, rate: &str, burst: &str, latency: &str) {
        net_cmd(&[
            "tc",
            "qdisc",
            "replace",
            "dev",
            &self.host_if,
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            burst,
            "latency",
            latency,
        ]);
    }

    /// Removes the shaping.
    pub fn unshape(&self) {
        net_cmd(&["tc", "qdisc", "del", "dev", &self.host_if, "root"]);
    }
}

impl Default for Netns {
    fn default() -> Netns {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        net_cmd_quiet(&["ip", "link", "del", &self.host_if]);
        net_cmd_quiet(&["ip", "netns", "del", &self.name]);
    }
}

//! The established TCP connections into this host (pure): what `apply`'s
//! lock-out check and capture's admin peers are decided from. The system
//! layer reads the kernel's socket table (`sys::sockdiag`, or the
//! `SSH_CONNECTION` of the session when that fails); here the sockets become
//! connections into this host, and those become the peers that matter.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// One established TCP connection into this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conn {
    /// This host's end: the address and port the peer connected to.
    pub local: SocketAddr,
    /// The other end (IPv4-mapped addresses made IPv4).
    pub peer: SocketAddr,
}

/// How the connections were learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// The kernel's socket table (NETLINK_SOCK_DIAG): every connection.
    SockDiag,
    /// Only this session's own connection (`SSH_CONNECTION`), because the
    /// socket table could not be read (why).
    SshConnection { sock_diag_error: String },
}

impl Via {
    /// How, in words, for a report.
    pub fn describe(&self) -> String {
        match self {
            Via::SockDiag => "the kernel's socket table (sock_diag netlink)".into(),
            Via::SshConnection { sock_diag_error } => format!(
                "SSH_CONNECTION only: this session's connection (the socket table could not be read: {sock_diag_error})"
            ),
        }
    }
}

/// The connections, and how they were learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Established {
    pub conns: Vec<Conn>,
    pub via: Via,
}

/// One TCP socket as the kernel's table lists it: listening, or established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Socket {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub listening: bool,
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The established connections to a port some socket listens on; the
/// others are connections this host opened (to Redis, a mirror, ...). A
/// dual-stack socket reports an IPv4 peer as `::ffff:a.b.c.d`: made IPv4.
pub fn inbound(sockets: &[Socket]) -> Vec<Conn> {
    let mut ports: Vec<u16> = sockets
        .iter()
        .filter(|s| s.listening)
        .map(|s| s.local.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let mut out: Vec<Conn> = sockets
        .iter()
        .filter(|s| !s.listening && ports.binary_search(&s.local.port()).is_ok())
        .map(|s| Conn {
            local: canonical(s.local),
            peer: canonical(s.peer),
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// `SSH_CONNECTION` ("client-addr client-port server-addr server-port", as
/// sshd sets it) as the connection it names.
pub fn from_ssh_connection(s: &str) -> Option<Conn> {
    let w: Vec<&str> = s.split_whitespace().collect();
    let [client, cport, server, sport] = w[..] else {
        return None;
    };
    let addr = |a: &str, p: &str| -> Option<SocketAddr> {
        // A link-local peer may carry its zone (fe80::1%eth0).
        let a = a.split('%').next()?;
        Some(SocketAddr::new(
            a.parse::<IpAddr>().ok()?.to_canonical(),
            p.parse().ok()?,
        ))
    };
    Some(Conn {
        local: addr(server, sport)?,
        peer: addr(client, cport)?,
    })
}

/// Whether `peer` is this host itself: loopback, or one of its own
/// addresses. Such a connection runs over `lo`, which every ruleset
/// accepts, so it never matters for a lock-out or an admin peer.
pub fn is_local(peer: IpAddr, own: &[IpAddr]) -> bool {
    let p = peer.to_canonical();
    p.is_loopback() || p.is_unspecified() || own.contains(&p)
}

/// At most this many admin peers are kept (each is a comparison at ban
/// time, never per packet).
pub const MAX_ADMIN_PEERS: usize = 1024;

/// Most connections to admin ports followed at once (sshd's MaxStartups
/// keeps unauthenticated ones far below this).
pub const MAX_TRACKED: usize = 65_536;

/// The connections to the admin ports and when each was first seen, so
/// that only one held past `[capture] admin_min_age` makes its peer an admin: an
/// attacker who merely opens a connection to port 22 while it scans gets
/// no shield from it.
#[derive(Clone, Debug, Default)]
pub struct AdminPeers {
    first_seen: HashMap<(SocketAddr, SocketAddr), i64>,
}

impl AdminPeers {
    /// Take one reading at `now` (seconds); returns the peers whose
    /// connection to one of `admin_ports` has been held `min_age` seconds
    /// or more, each once with its port, the longest-held first (so a
    /// crowd of new connections never pushes an admin out), loopback and
    /// this host excepted; at most [`MAX_ADMIN_PEERS`]. A connection gone
    /// from a reading is forgotten: seen again, it starts over.
    pub fn update(
        &mut self,
        conns: &[Conn],
        admin_ports: &[u16],
        own: &[IpAddr],
        now: i64,
        min_age: u64,
    ) -> Vec<(IpAddr, u16)> {
        let mut next = HashMap::with_capacity(self.first_seen.len().min(MAX_TRACKED));
        let mut held: Vec<(i64, IpAddr, u16)> = Vec::new();
        for c in conns {
            let peer = c.peer.ip().to_canonical();
            if !admin_ports.contains(&c.local.port()) || is_local(peer, own) {
                continue;
            }
            let key = (c.local, c.peer);
            let first = self.first_seen.get(&key).copied().unwrap_or(now);
            if next.len() < MAX_TRACKED || self.first_seen.contains_key(&key) {
                next.insert(key, first);
            }
            if now.saturating_sub(first) >= min_age as i64 {
                held.push((first, peer, c.local.port()));
            }
        }
        self.first_seen = next;
        held.sort();
        let mut out: Vec<(IpAddr, u16)> = Vec::new();
        for (_, peer, port) in held {
            if out.len() == MAX_ADMIN_PEERS {
                break;
            }
            if !out.iter().any(|(p, _)| *p == peer) {
                out.push((peer, port));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn sock(local: &str, peer: &str, listening: bool) -> Socket {
        Socket {
            local: sa(local),
            peer: sa(peer),
            listening,
        }
    }

    #[test]
    fn only_connections_to_a_listening_port_are_inbound() {
        let socks = [
            sock("0.0.0.0:22", "0.0.0.0:0", true),
            sock("[::]:443", "[::]:0", true),
            // The admin, over a dual-stack socket's mapped address.
            sock(
                "[::ffff:198.51.100.1]:22",
                "[::ffff:203.0.113.5]:50000",
                false,
            ),
            sock("[2001:db8::1]:443", "[2001:db8::9]:40000", false),
            // This host's own connection out to Redis: not inbound.
            sock("198.51.100.1:41000", "203.0.113.100:6379", false),
        ];
        assert_eq!(
            inbound(&socks),
            vec![
                Conn {
                    local: sa("198.51.100.1:22"),
                    peer: sa("203.0.113.5:50000"),
                },
                Conn {
                    local: sa("[2001:db8::1]:443"),
                    peer: sa("[2001:db8::9]:40000"),
                },
            ]
        );
        assert!(
            inbound(&socks[2..]).is_empty(),
            "no listener, nothing inbound"
        );
    }

    #[test]
    fn ssh_connection_names_the_session() {
        assert_eq!(
            from_ssh_connection("203.0.113.5 50022 198.51.100.1 22"),
            Some(Conn {
                local: sa("198.51.100.1:22"),
                peer: sa("203.0.113.5:50022"),
            })
        );
        let c = from_ssh_connection("fe80::9%eth0 40000 2001:db8::1 2222").unwrap();
        assert_eq!(
            (c.peer.ip().to_string(), c.local.port()),
            ("fe80::9".into(), 2222)
        );
        let mapped = from_ssh_connection("::ffff:203.0.113.5 1 198.51.100.1 22").unwrap();
        assert_eq!(mapped.peer, sa("203.0.113.5:1"));
        for bad in [
            "",
            "203.0.113.5 1 198.51.100.1",
            "x 1 198.51.100.1 22",
            "203.0.113.5 1 198.51.100.1 99999",
            "a b c d e",
        ] {
            assert_eq!(from_ssh_connection(bad), None, "{bad}");
        }
    }

    #[test]
    fn admin_peers_are_remote_holders_of_an_admin_port() {
        let own: Vec<IpAddr> = vec!["198.51.100.1".parse().unwrap()];
        let c = |local: &str, peer: &str| Conn {
            local: sa(local),
            peer: sa(peer),
        };
        let conns = [
            c("198.51.100.1:22", "203.0.113.5:50000"),
            c("198.51.100.1:22", "203.0.113.5:50001"),
            c("198.51.100.1:443", "203.0.113.6:40000"),
            c("198.51.100.1:22", "198.51.100.1:40000"),
            c("127.0.0.1:22", "127.0.0.1:40000"),
            c("[2001:db8::1]:2222", "[2001:db8::7]:40000"),
        ];
        let mut t = AdminPeers::default();
        assert_eq!(
            t.update(&conns, &[22, 2222], &own, 1000, 0),
            vec![
                ("203.0.113.5".parse().unwrap(), 22),
                ("2001:db8::7".parse().unwrap(), 2222)
            ]
        );
        assert!(t.update(&conns, &[], &own, 1000, 0).is_empty());
        let many: Vec<Conn> = (0..5000u32)
            .map(|i| Conn {
                local: sa("[2001:db8::1]:22"),
                peer: SocketAddr::new(
                    std::net::Ipv6Addr::from(
                        0x2001_0db8_0000_0000_0000_0000_0001_0000u128 + u128::from(i),
                    )
                    .into(),
                    1,
                ),
            })
            .collect();
        assert_eq!(
            AdminPeers::default().update(&many, &[22], &own, 0, 0).len(),
            MAX_ADMIN_PEERS
        );
    }

    /// Anyone can open a connection to port 22 and hold it until sshd's
    /// LoginGraceTime: only a connection held longer shields its peer, and
    /// a crowd of fresh ones never pushes the admin out.
    #[test]
    fn only_a_connection_held_past_the_login_grace_time_makes_an_admin() {
        const ADMIN_MIN_AGE: u64 = crate::core::config::capture::ADMIN_MIN_AGE;
        let own: Vec<IpAddr> = vec![];
        let admin = Conn {
            local: sa("198.51.100.1:22"),
            peer: sa("192.0.2.10:50000"),
        };
        let mut t = AdminPeers::default();
        assert!(t
            .update(&[admin], &[22], &own, 1000, ADMIN_MIN_AGE)
            .is_empty());
        assert!(t
            .update(&[admin], &[22], &own, 1000 + 149, ADMIN_MIN_AGE)
            .is_empty());
        let admin_ip: IpAddr = "192.0.2.10".parse().unwrap();
        assert_eq!(
            t.update(&[admin], &[22], &own, 1150, ADMIN_MIN_AGE),
            [(admin_ip, 22)]
        );
        // An attacker's fresh connections, however many, come after the admin.
        let mut crowd: Vec<Conn> = (0..3000u32)
            .map(|i| Conn {
                local: sa("198.51.100.1:22"),
                peer: SocketAddr::new(std::net::Ipv4Addr::from(0xcb00_7100 + i).into(), 1),
            })
            .collect();
        crowd.push(admin);
        let got = t.update(&crowd, &[22], &own, 1200, ADMIN_MIN_AGE);
        assert_eq!(got, [(admin_ip, 22)], "the crowd is too young");
        let got = t.update(&crowd, &[22], &own, 1200 + 150, ADMIN_MIN_AGE);
        assert_eq!(got.len(), MAX_ADMIN_PEERS);
        assert_eq!(got[0], (admin_ip, 22), "the longest-held first");
        // Gone from a reading, the clock starts over.
        assert!(t.update(&[], &[22], &own, 1400, ADMIN_MIN_AGE).is_empty());
        assert!(t
            .update(&[admin], &[22], &own, 1401, ADMIN_MIN_AGE)
            .is_empty());
    }
}

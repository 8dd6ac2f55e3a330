//! The established TCP connections into this host, from the kernel's socket
//! table over NETLINK_SOCK_DIAG (what `ss -tn` reads): one dump per address
//! family of the TCP sockets that are ESTABLISHED or LISTENing, in the
//! network namespace of the caller (`ip netns exec` scopes it). When that
//! fails, the session's own `SSH_CONNECTION` is the fallback: it names at
//! least the connection the admin runs fwctl over.
//!
//! The request is `inet_diag_req_v2` (uapi linux/inet_diag.h) for
//! SOCK_DIAG_BY_FAMILY; with `ports`, a bytecode filter makes the kernel
//! send only the sockets whose local port is one of them, so capture's
//! refresh costs little on a host with many connections. The dump is bounded
//! ([`MAX_SOCKETS`]) and every receive times out ([`RECV_TIMEOUT`]).

use crate::core::conns::{self, Established, Socket, Via};
use crate::ports::{ConnError, Connections};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_ESTABLISHED: u32 = 1;
const TCP_LISTEN: u32 = 10;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
/// nlmsghdr, then inet_diag_msg: family, state, timer, retrans, then the
/// socket id (sport, dport big-endian; src, dst 16 bytes each).
const HDR: usize = 16;
const DIAG_MSG: usize = 72;

/// Most sockets read in one call; past it the dump is an error (and the
/// caller falls back), never a silently partial answer.
pub const MAX_SOCKETS: usize = 262_144;
/// Most local ports in a filter (each is 20 bytes of bytecode).
pub const MAX_FILTER_PORTS: usize = 64;
pub const RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The filter "local port is one of `ports`", as inet_diag bytecode. Each
/// port is a test of two comparisons (>= p, <= p): on a match it goes on to
/// the next comparison and from the last one to the end (keep the socket);
/// on a miss to the next port's test; past the last one, 4 bytes beyond the
/// end (drop it). Between two tests sits a JMP whose "yes" leads into the
/// next test, as `ss` compiles an OR: the kernel's audit follows the "yes"
/// jumps and accepts a "no" jump only to a place on that path.
/// (S_GE/S_LE rather than S_EQ, which kernels before 4.16 lack.)
pub fn bytecode(ports: &[u16]) -> Vec<u8> {
    let op = |code: u8, yes: u8, no: u16| {
        let mut b = vec![code, yes];
        b.extend_from_slice(&no.to_ne_bytes());
        b
    };
    let total = 20 * ports.len() - 4;
    let mut out = Vec::with_capacity(total);
    for (i, &p) in ports.iter().enumerate() {
        out.extend(op(INET_DIAG_BC_S_GE, 8, 20));
        out.extend(op(0, 0, p));
        out.extend(op(INET_DIAG_BC_S_LE, 8, 12));
        out.extend(op(0, 0, p));
        if i + 1 < ports.len() {
            // Its "no" lands exactly on the end: keep.
            let rest = total - out.len();
            out.extend(op(INET_DIAG_BC_JMP, 4, rest as u16));
        }
    }
    out
}

/// The dump request for one family (pure, so its layout is unit-tested).
pub fn request(seq: u32, family: u8, ports: Option<&[u16]>) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states, then a zero
    // socket id (48 bytes: any address, any port, any interface).
    m.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    let states = (1u32 << TCP_ESTABLISHED) | (1u32 << TCP_LISTEN);
    m.extend_from_slice(&states.to_ne_bytes());
    m.extend_from_slice(&[0u8; 48]);
    if let Some(ports) = ports.filter(|p| !p.is_empty()) {
        let bc = bytecode(ports);
        m.extend_from_slice(&((4 + bc.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        m.extend_from_slice(&bc);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// What one batch of the answer held.
#[derive(Debug, PartialEq, Eq)]
enum Batch {
    More,
    Done,
}

fn addr(family: u8, bytes: &[u8], port: u16) -> Option<SocketAddr> {
    let ip = match i32::from(family) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&bytes[..4]).ok()?)),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..16]).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The sockets of one received batch of the answer to `seq`, into `out`.
fn parse(buf: &[u8], seq: u32, out: &mut Vec<Socket>) -> io::Result<Batch> {
    let mut at = 0;
    while at + HDR <= buf.len() {
        let word = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().expect("4 bytes"));
        let len = word(at) as usize;
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if len < HDR || at + len > buf.len() {
            return Err(io::Error::other("a netlink message runs past its batch"));
        }
        if word(at + 8) == seq {
            match i32::from(kind) {
                libc::NLMSG_DONE => return Ok(Batch::Done),
                libc::NLMSG_ERROR => {
                    let e = if len >= HDR + 4 {
                        word(at + HDR) as i32
                    } else {
                        0
                    };
                    if e != 0 {
                        return Err(io::Error::from_raw_os_error(-e));
                    }
                }
                k if k == i32::from(SOCK_DIAG_BY_FAMILY) && len >= HDR + DIAG_MSG => {
                    let m = &buf[at + HDR..at + len];
                    let sport = u16::from_be_bytes([m[4], m[5]]);
                    let dport = u16::from_be_bytes([m[6], m[7]]);
                    if let (Some(local), Some(peer)) =
                        (addr(m[0], &m[8..24], sport), addr(m[0], &m[24..40], dport))
                    {
                        out.push(Socket {
                            local,
                            peer,
                            listening: u32::from(m[1]) == TCP_LISTEN,
                        });
                    }
                }
                _ => {}
            }
        }
        at += (len + 3) & !3;
    }
    Ok(Batch::More)
}

/// A NETLINK_SOCK_DIAG socket.
pub struct SockDiag {
    fd: OwnedFd,
    seq: u32,
}

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        let fd = super::netlink::socket(libc::NETLINK_SOCK_DIAG)?;
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: a timeval that outlives the call, with its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SockDiag { fd, seq: 0 })
    }

    /// The ESTABLISHED and LISTEN TCP sockets of both families (only those
    /// with a local port in `ports`, when given).
    pub fn sockets(&mut self, ports: Option<&[u16]>) -> io::Result<Vec<Socket>> {
        if ports.is_some_and(|p| p.len() > MAX_FILTER_PORTS) {
            return Err(io::Error::other(format!(
                "more than {MAX_FILTER_PORTS} ports to filter on"
            )));
        }
        let mut out = Vec::new();
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            self.seq = self.seq.wrapping_add(1);
            self.dump(&request(self.seq, family, ports), &mut out)?;
        }
        Ok(out)
    }

    fn dump(&mut self, req: &[u8], out: &mut Vec<Socket>) -> io::Result<()> {
        // SAFETY: a zeroed sockaddr_nl addresses the kernel (pid 0); the
        // buffers outlive the calls.
        unsafe {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            let n = libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            );
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: recv(2) into a buffer we own, within its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::other("the kernel closed the netlink socket"));
            }
            let done = parse(&buf[..n as usize], self.seq, out)? == Batch::Done;
            if out.len() > MAX_SOCKETS {
                // The rest of this dump stays unread: a later dump on this
                // socket would read it first, so the socket is not reused.
                self.fd = Self::open()?.fd;
                return Err(io::Error::other(format!(
                    "more than {MAX_SOCKETS} TCP sockets"
                )));
            }
            if done {
                return Ok(());
            }
        }
    }
}

/// This host's connections: the socket table, or `SSH_CONNECTION`.
pub struct Host {
    diag: Option<SockDiag>,
}

impl Host {
    pub fn new() -> Host {
        Host {
            diag: SockDiag::open().ok(),
        }
    }
}

impl Default for Host {
    fn default() -> Self {
        Host::new()
    }
}

impl Connections for Host {
    fn established(&mut self, ports: Option<&[u16]>) -> Result<Established, ConnError> {
        let read = match self.diag.as_mut() {
            Some(d) => d.sockets(ports),
            None => SockDiag::open().and_then(|mut d| {
                let s = d.sockets(ports);
                self.diag = Some(d);
                s
            }),
        };
        let err = match read {
            Ok(sockets) => {
                return Ok(Established {
                    conns: conns::inbound(&sockets),
                    via: Via::SockDiag,
                })
            }
            Err(e) => e.to_string(),
        };
        let ssh = std::env::var("SSH_CONNECTION").ok();
        match ssh.as_deref().and_then(conns::from_ssh_connection) {
            Some(c) => Ok(Established {
                conns: vec![c]
                    .into_iter()
                    .filter(|c| ports.is_none_or(|p| p.contains(&c.local.port())))
                    .collect(),
                via: Via::SshConnection {
                    sock_diag_error: err,
                },
            }),
            None => Err(ConnError(format!(
                "the socket table could not be read over netlink (sock_diag: {err}) and SSH_CONNECTION names no connection"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's bytecode run (net/ipv4/inet_diag.c inet_diag_bc_run)
    /// for the comparisons used here, so the filter is checked without a
    /// kernel.
    fn run(bc: &[u8], sport: u16) -> bool {
        let mut at = 0i64;
        let mut len = bc.len() as i64;
        while len > 0 {
            let o = at as usize;
            let (code, yes, no) = (bc[o], bc[o + 1], u16::from_ne_bytes([bc[o + 2], bc[o + 3]]));
            let port = || u16::from_ne_bytes([bc[o + 6], bc[o + 7]]);
            let y = match code {
                INET_DIAG_BC_JMP => false,
                INET_DIAG_BC_S_GE => sport >= port(),
                INET_DIAG_BC_S_LE => sport <= port(),
                c => panic!("code {c}"),
            };
            let step = i64::from(if y { u16::from(yes) } else { no });
            len -= step;
            at += step;
        }
        len == 0
    }

    /// The kernel's audit (inet_diag_bc_audit with valid_cc), for the same.
    fn audit(bc: &[u8]) -> bool {
        let valid_cc = |cc: i64| {
            let (mut at, mut len) = (0usize, bc.len() as i64);
            while len >= 0 {
                if cc > len {
                    return false;
                }
                if cc == len {
                    return true;
                }
                let yes = i64::from(bc[at + 1]);
                if yes < 4 || yes & 3 != 0 {
                    return false;
                }
                len -= yes;
                at += yes as usize;
            }
            false
        };
        let (mut at, mut len) = (0usize, bc.len() as i64);
        while len > 0 {
            let (code, yes, no) = (
                bc[at],
                i64::from(bc[at + 1]),
                i64::from(u16::from_ne_bytes([bc[at + 2], bc[at + 3]])),
            );
            let min = if code == INET_DIAG_BC_JMP { 4 } else { 8 };
            if len < min
                || no < min
                || no > len + 4
                || no & 3 != 0
                || (no < len && !valid_cc(len - no))
            {
                return false;
            }
            if yes < min || yes > len + 4 || yes & 3 != 0 {
                return false;
            }
            at += yes as usize;
            len -= yes;
        }
        len == 0
    }

    #[test]
    fn the_filter_keeps_exactly_its_ports_and_passes_the_audit() {
        for ports in [&[22u16][..], &[22, 2222], &[1, 22, 443, 65535], &[80; 1]] {
            let bc = bytecode(ports);
            assert_eq!(bc.len(), 20 * ports.len() - 4);
            assert!(audit(&bc), "{ports:?}");
            for p in [0u16, 1, 2, 21, 22, 23, 80, 442, 443, 2222, 65534, 65535] {
                assert_eq!(run(&bc, p), ports.contains(&p), "{ports:?} port {p}");
            }
        }
        let all: Vec<u16> = (1..=MAX_FILTER_PORTS as u16).collect();
        assert!(audit(&bytecode(&all)));
    }

    #[test]
    fn request_layout() {
        let m = request(7, libc::AF_INET6 as u8, None);
        assert_eq!(m.len(), 16 + 56);
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 20);
        assert_eq!(m[16..18], [libc::AF_INET6 as u8, 6]);
        assert_eq!(
            u32::from_ne_bytes(m[20..24].try_into().unwrap()),
            2 | 1 << 10
        );
        let f = request(8, libc::AF_INET as u8, Some(&[22, 2222]));
        assert_eq!(f.len(), 16 + 56 + 4 + 36);
        assert_eq!(u16::from_ne_bytes([f[72], f[73]]), 40);
        assert_eq!(u16::from_ne_bytes([f[74], f[75]]), INET_DIAG_REQ_BYTECODE);
        assert_eq!(request(9, 2, Some(&[])).len(), 72, "no ports, no filter");
    }

    fn diag_msg(
        seq: u32,
        family: u8,
        state: u8,
        local: &[u8],
        lport: u16,
        peer: &[u8],
        pport: u16,
    ) -> Vec<u8> {
        let mut m = vec![0u8; HDR + DIAG_MSG];
        m[0..4].copy_from_slice(&((HDR + DIAG_MSG) as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m[16] = family;
        m[17] = state;
        m[20..22].copy_from_slice(&lport.to_be_bytes());
        m[22..24].copy_from_slice(&pport.to_be_bytes());
        m[24..24 + local.len()].copy_from_slice(local);
        m[40..40 + peer.len()].copy_from_slice(peer);
        m
    }

    #[test]
    fn answers_parse_to_sockets_until_done() {
        let mut buf = diag_msg(
            3,
            libc::AF_INET as u8,
            10,
            &[198, 51, 100, 1],
            22,
            &[0; 4],
            0,
        );
        buf.extend(diag_msg(
            3,
            libc::AF_INET as u8,
            1,
            &[198, 51, 100, 1],
            22,
            &[203, 0, 113, 5],
            50000,
        ));
        // Another request's answer is not ours.
        buf.extend(diag_msg(
            4,
            libc::AF_INET as u8,
            1,
            &[198, 51, 100, 1],
            22,
            &[203, 0, 113, 6],
            1,
        ));
        let mut out = Vec::new();
        assert_eq!(parse(&buf, 3, &mut out).unwrap(), Batch::More);
        assert_eq!(out.len(), 2);
        assert!(out[0].listening && !out[1].listening);
        assert_eq!(out[1].peer, "203.0.113.5:50000".parse().unwrap());
        assert_eq!(conns::inbound(&out).len(), 1);
        let mut done = vec![0u8; 20];
        done[0..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        done[8..12].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(parse(&done, 3, &mut out).unwrap(), Batch::Done);
        let mut err = done.clone();
        err[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            parse(&err, 3, &mut out).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        // A length that runs past the batch is an error, not a panic.
        let mut bad = diag_msg(3, 2, 1, &[0; 4], 1, &[0; 4], 1);
        bad[0..4].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(parse(&bad, 3, &mut out).is_err());
    }

    /// Unprivileged and in any namespace: the kernel takes the request and
    /// its filter, and a listener of our own shows up with its port.
    #[test]
    fn the_kernel_answers_with_our_own_listener() {
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (l, other, third) = (bind(), bind(), bind());
        let port_of = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
        let port = port_of(&l);
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut d = SockDiag::open().unwrap();
        let s = d.sockets(Some(&[port_of(&third), port])).unwrap();
        assert!(
            s.iter()
                .all(|s| [port, port_of(&third)].contains(&s.local.port())),
            "{s:?}"
        );
        assert!(!s.iter().any(|s| s.local.port() == port_of(&other)));
        assert_eq!(s.iter().filter(|s| s.listening).count(), 2, "{s:?}");
        assert!(s.iter().any(|s| s.listening));
        let inbound = conns::inbound(&s);
        assert_eq!(inbound.len(), 1, "{s:?}");
        assert_eq!(inbound[0].peer, c.local_addr().unwrap());
        assert!(d.sockets(None).unwrap().len() >= s.len());
    }
}

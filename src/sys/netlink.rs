//! Adding bans to an ipset over netlink: one message and its acknowledgement
//! per ban, in tens of microseconds, with the kernel's own error code. The
//! alternatives cost more on the hot path: a process per ban takes about a
//! millisecond, and a long-lived `ipset restore` commits nothing until its
//! input ends.
//!
//! The message is what libipset sends for `ipset add SET ADDR[/CIDR] timeout N`
//! (uapi linux/netfilter/ipset/ip_set.h, protocol 6/7): an nfnetlink header
//! for subsystem IPSET, command ADD, with the protocol version, the set name,
//! and a nested DATA attribute holding a nested IP, the CIDR and the TIMEOUT.
//! Without the EXIST flag, an address that is already in the set is reported
//! back as such and its timeout is left as it is.

use crate::core::capture::engine::{Added, BanFailed};
use ipnet::IpNet;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NFNL_SUBSYS_IPSET: u16 = 6;
const IPSET_CMD_ADD: u16 = 9;
const IPSET_PROTOCOL: u8 = 6;

const IPSET_ATTR_PROTOCOL: u16 = 1;
const IPSET_ATTR_SETNAME: u16 = 2;
const IPSET_ATTR_DATA: u16 = 7;
// Inside DATA.
const IPSET_ATTR_IP: u16 = 1;
const IPSET_ATTR_CIDR: u16 = 3;
const IPSET_ATTR_TIMEOUT: u16 = 6;
// Inside IP.
const IPSET_ATTR_IPADDR_IPV4: u16 = 1;
const IPSET_ATTR_IPADDR_IPV6: u16 = 2;

const NLA_F_NESTED: u16 = 1 << 15;
const NLA_F_NET_BYTEORDER: u16 = 1 << 14;

const IPSET_ERR_PROTOCOL: i32 = 4097;
const IPSET_ERR_EXIST: i32 = 4103;
const IPSET_ERR_INVALID_FAMILY: i32 = 4106;
const IPSET_ERR_TIMEOUT: i32 = 4107;
const IPSET_ERR_HASH_FULL: i32 = 4352;

/// Build the ADD request (pure, so its layout is unit-tested).
pub fn add_request(seq: u32, set: &str, net: IpNet, timeout: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(96);
    // nlmsghdr: len (patched below), type, flags, seq, pid.
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_ADD).to_ne_bytes());
    // NLM_F_EXCL: without it the kernel adds as `ipset -exist` does, so an
    // address already banned would get this ban's timeout (a 3-day ban cut
    // to 10 minutes) and read as new. With it, the kernel says it exists.
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_EXCL) as u16;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version, res_id (big endian).
    let family = match net {
        IpNet::V4(_) => libc::NFPROTO_IPV4 as u8,
        IpNet::V6(_) => libc::NFPROTO_IPV6 as u8,
    };
    m.extend_from_slice(&[family, 0, 0, 0]);
    attr(&mut m, IPSET_ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
    let mut name = set.as_bytes().to_vec();
    name.push(0);
    attr(&mut m, IPSET_ATTR_SETNAME, &name);
    let data = nest_start(&mut m, IPSET_ATTR_DATA);
    let ip = nest_start(&mut m, IPSET_ATTR_IP);
    match net {
        IpNet::V4(n) => attr(
            &mut m,
            IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER,
            &n.addr().octets(),
        ),
        IpNet::V6(n) => attr(
            &mut m,
            IPSET_ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER,
            &n.addr().octets(),
        ),
    }
    nest_end(&mut m, ip);
    attr(&mut m, IPSET_ATTR_CIDR, &[net.prefix_len()]);
    attr(
        &mut m,
        IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER,
        &timeout.to_be_bytes(),
    );
    nest_end(&mut m, data);
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}

pub(crate) fn attr(m: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    m.extend_from_slice(&(len as u16).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(payload);
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
}

pub(crate) fn nest_start(m: &mut Vec<u8>, kind: u16) -> usize {
    let at = m.len();
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

pub(crate) fn nest_end(m: &mut [u8], at: usize) {
    let len = (m.len() - at) as u16;
    m[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// What a kernel error code means here, with the fix.
pub fn explain(errno: i32, set: &str) -> String {
    match errno {
        libc::ENOENT => format!("ipset {set} does not exist; fix: run `fwctl apply`"),
        libc::EPERM => {
            "not permitted to change ipsets; fix: run as root (or with CAP_NET_ADMIN)".into()
        }
        IPSET_ERR_HASH_FULL => {
            format!("ipset {set} is full; fix: raise [sets] maxelem and run `fwctl apply`")
        }
        IPSET_ERR_TIMEOUT => {
            format!("ipset {set} has no timeout support; fix: recreate it with `fwctl apply`")
        }
        IPSET_ERR_INVALID_FAMILY => format!("ipset {set} is of the other address family"),
        IPSET_ERR_PROTOCOL => "the kernel speaks another ipset protocol version".into(),
        e if e < 4096 => format!("ipset {set}: {}", io::Error::from_raw_os_error(e)),
        e => format!("ipset {set}: kernel ipset error {e}"),
    }
}

/// A NETLINK_NETFILTER socket: one request out, the kernel's answer to it
/// back. Shared by the ipset and the nf_tables ban paths.
pub struct Netfilter {
    fd: OwnedFd,
}

/// A netlink socket of `protocol` (NETLINK_NETFILTER, NETLINK_SOCK_DIAG).
pub fn socket(protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the new descriptor is owned by the result.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Netfilter {
    pub fn open() -> io::Result<Netfilter> {
        Ok(Netfilter {
            fd: socket(libc::NETLINK_NETFILTER)?,
        })
    }

    /// Send `req` and wait for the acknowledgement of message `seq`: the
    /// kernel's error code (0: done, else a negative errno).
    pub fn ask(&mut self, req: &[u8], seq: u32) -> Result<i32, String> {
        self.send(req)?;
        let mut buf = [0u8; 8192];
        loop {
            let n = self.recv(&mut buf)?;
            if let Some(code) = ack(&buf[..n], seq) {
                return Ok(code);
            }
            // Not our answer: read on.
        }
    }

    /// Send `req` to the kernel in one message.
    fn send(&self, req: &[u8]) -> Result<(), String> {
        // SAFETY: a zeroed sockaddr_nl addresses the kernel (pid 0); the
        // buffers outlive the call.
        let n = unsafe {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(format!("netlink send: {}", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Read one batch of answers into `buf` (a signal does not end it).
    fn recv(&self, buf: &mut [u8]) -> Result<usize, String> {
        loop {
            // SAFETY: recv into a buffer we own, of its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(format!("netlink receive: {e}"));
            }
        }
    }
}

impl Netfilter {
    /// Set the socket's send or receive buffer (`SO_SNDBUFFORCE`,
    /// `SO_RCVBUFFORCE`: root may pass the system's limits) to `bytes`.
    fn buffer(&self, option: i32, bytes: i32) -> io::Result<()> {
        // SAFETY: setsockopt with a pointer to a live i32 and its size.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<i32>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Send `req` (one batch) and read the acknowledgement of each message
    /// in `seqs`: None when all were done, else the first refusal (its
    /// sequence number and the negative errno). The send buffer is raised
    /// to the request's size first (a batch goes in one message, as the
    /// kernel takes a transaction from one send).
    pub fn ask_all(&mut self, req: &[u8], seqs: &[u32]) -> Result<Option<(u32, i32)>, String> {
        let size = i32::try_from(req.len() + 65536).unwrap_or(i32::MAX);
        self.buffer(libc::SO_SNDBUFFORCE, size)
            .map_err(|e| format!("netlink send buffer: {e}"))?;
        // Room for every answer: each is a buffer of its own, counted at a
        // few kilobytes (400 answers overran the default 208 KB: ENOBUFS).
        let room = i32::try_from(seqs.len().saturating_mul(8192) + 65536).unwrap_or(i32::MAX);
        self.buffer(libc::SO_RCVBUFFORCE, room)
            .map_err(|e| format!("netlink receive buffer: {e}"))?;
        // The kernel answers every message of a batch, refused or not.
        self.timeout(10);
        self.send(req)?;
        let mut waiting: std::collections::BTreeSet<u32> = seqs.iter().copied().collect();
        let mut refused = None;
        let mut buf = vec![0u8; 65536];
        while !waiting.is_empty() {
            let n = self.recv(&mut buf)?;
            for (seq, code) in acks(&buf[..n]) {
                if waiting.remove(&seq) && code != 0 && refused.is_none() {
                    refused = Some((seq, code));
                }
            }
        }
        Ok(refused)
    }
}

impl Netfilter {
    /// Send the dump request `req` and hand each answer to it to `each`
    /// (its message type and payload after the netlink header) until the
    /// kernel says it is done; a refusal is its errno.
    pub fn dump(
        &mut self,
        req: &[u8],
        seq: u32,
        each: &mut dyn FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.timeout(10);
        self.send(req).map_err(io::Error::other)?;
        // A dump's batches are at most 32 KB each.
        let mut buf = vec![0u8; 65536];
        loop {
            let n = self.recv(&mut buf).map_err(io::Error::other)?;
            let mut at = 0;
            while at + 16 <= n {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
                if len < 16 || at + len > n {
                    return Err(io::Error::other("a netlink message runs past its batch"));
                }
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                let their = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4"));
                if their == seq {
                    match i32::from(kind) {
                        libc::NLMSG_DONE => return Ok(()),
                        libc::NLMSG_ERROR => {
                            let e = buf
                                .get(at + 16..at + 20)
                                .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4")));
                            if e != 0 {
                                return Err(io::Error::from_raw_os_error(-e));
                            }
                        }
                        _ => each(kind, &buf[at + 16..at + len]),
                    }
                }
                at += (len + 3) & !3;
            }
        }
    }

    /// An answer that never comes must not hang the command.
    fn timeout(&self, secs: i64) {
        let wait = libc::timeval {
            tv_sec: secs,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a pointer to a live timeval and its size.
        unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&wait as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
    }
}

/// Every NLMSG_ERROR answer in `buf`: (sequence number, error code).
pub(crate) fn acks(buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 20 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
        if len < 16 {
            break;
        }
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2"));
        let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4"));
        if kind == libc::NLMSG_ERROR as u16 {
            out.push((
                seq,
                i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4")),
            ));
        }
        at += (len + 3) & !3;
    }
    out
}

/// A netlink socket to the kernel's ipset subsystem.
pub struct Ipset {
    sock: Netfilter,
    seq: u32,
}

impl Ipset {
    pub fn open() -> io::Result<Ipset> {
        Ok(Ipset {
            sock: Netfilter::open()?,
            seq: 1,
        })
    }

    /// Add `net` to `set` with `timeout` seconds.
    pub fn add(&mut self, set: &str, net: IpNet, timeout: u32) -> Result<Added, BanFailed> {
        self.seq = self.seq.wrapping_add(1);
        let req = add_request(self.seq, set, net, timeout);
        match self.sock.ask(&req, self.seq).map_err(BanFailed)? {
            0 => Ok(Added::Added),
            e if e == -IPSET_ERR_EXIST => Ok(Added::AlreadyListed),
            e => Err(BanFailed(explain(-e, set))),
        }
    }
}

/// The error code of the NLMSG_ERROR answer to `seq` in `buf`, if any.
pub(crate) fn ack(buf: &[u8], seq: u32) -> Option<i32> {
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().ok()?);
        let s = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().ok()?);
        if len < 16 {
            return None;
        }
        if kind == libc::NLMSG_ERROR as u16 && s == seq && at + 20 <= buf.len() {
            return Some(i32::from_ne_bytes(buf[at + 16..at + 20].try_into().ok()?));
        }
        at += (len + 3) & !3;
    }
    None
}

impl crate::ports::Banner for Ipset {
    fn add(&mut self, set: &str, net: IpNet, secs: u32) -> Result<Added, BanFailed> {
        Ipset::add(self, set, net, secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_request_layout() {
        let m = add_request(7, "blacklist", "203.0.113.9/32".parse().unwrap(), 600);
        let len = u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, m.len());
        assert_eq!(len % 4, 0);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 6 << 8 | 9);
        // An address banned already keeps its timeout and reads as listed.
        let flags = u16::from_ne_bytes([m[6], m[7]]);
        assert_ne!(flags & libc::NLM_F_EXCL as u16, 0);
        assert_eq!(m[16], libc::NFPROTO_IPV4 as u8);
        // The set name, NUL-terminated, after the 8-byte protocol attribute.
        let name_at = 20 + 8 + 4;
        assert_eq!(&m[name_at..name_at + 10], b"blacklist\0");
        // Address and timeout are in network byte order.
        let ip = m.windows(4).position(|w| w == [203, 0, 113, 9]).unwrap();
        assert!(ip > name_at);
        assert!(m.windows(4).any(|w| w == 600u32.to_be_bytes()));
    }

    #[test]
    fn ack_finds_the_answer_to_our_sequence_number() {
        let mut msg = vec![0u8; 36];
        msg[0..4].copy_from_slice(&36u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        msg[8..12].copy_from_slice(&5u32.to_ne_bytes());
        msg[16..20].copy_from_slice(&(-IPSET_ERR_EXIST).to_ne_bytes());
        assert_eq!(ack(&msg, 5), Some(-IPSET_ERR_EXIST));
        assert_eq!(ack(&msg, 6), None);
        assert_eq!(ack(&msg[..10], 5), None);
    }

    #[test]
    fn errors_name_the_fix() {
        assert!(explain(libc::ENOENT, "blacklist").contains("fwctl apply"));
        assert!(explain(IPSET_ERR_HASH_FULL, "b").contains("maxelem"));
        assert!(explain(libc::EPERM, "b").contains("root"));
    }
}

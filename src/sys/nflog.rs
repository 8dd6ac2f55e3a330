//! The NFLOG group capture reads: the packets `apply`'s rules hand over
//! because conntrack says they belong to no connection (INVALID, and TCP
//! non-SYNs that would open one). ACK-type scans (-sA, -sW, -sM) look like
//! a connection's traffic to the packet socket; only conntrack can tell, so
//! the kernel does that work and capture pays per such packet only (the
//! rules are rate-limited), never per ACK of a busy server.
//!
//! The socket is bound to the group (nfnetlink_log, as ulogd does), copies
//! the first `NFLOG_SIZE` bytes of each packet, and is non-blocking: the
//! capture loop drains it each lap, woken by the packet socket's poll.

use crate::core::capture::detect::Micros;
use crate::sys::netlink::{attr, socket};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 3;
const NFULA_CFG_QTHRESH: u16 = 4;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_TIMESTAMP: u16 = 3;

/// A message of the NFLOG group: what follows the netlink header
/// (`Link::Nflog`'s layout), and the kernel's timestamp when it gave one.
pub struct Nflog {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// Messages the kernel could not queue (ENOBUFS: the socket was full).
    pub lost: u64,
}

/// A config request for `group` (pure, so its layout is tested).
pub fn config_request(seq: u32, group: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, version 0, the group (big endian).
    m.push(libc::AF_UNSPEC as u8);
    m.push(0);
    m.extend_from_slice(&group.to_be_bytes());
    for (kind, payload) in attrs {
        attr(&mut m, *kind, payload);
    }
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

fn ne16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The kernel's timestamp of an NFLOG message (after the netlink header),
/// in µs, if it carries one.
pub fn timestamp(msg: &[u8]) -> Option<Micros> {
    let mut at = 4;
    for _ in 0..32 {
        let len = usize::from(ne16(msg, at)?);
        if len < 4 {
            return None;
        }
        if ne16(msg, at + 2)? & 0x7fff == NFULA_TIMESTAMP {
            let sec = u64::from_be_bytes(msg.get(at + 4..at + 12)?.try_into().ok()?);
            let usec = u64::from_be_bytes(msg.get(at + 12..at + 20)?.try_into().ok()?);
            return Some(sec.saturating_mul(1_000_000).saturating_add(usec));
        }
        at += (len + 3) & !3;
    }
    None
}

impl Nflog {
    /// Bind NFLOG `group`, copying `size` bytes of each packet.
    pub fn open(group: u16, size: u32) -> io::Result<Nflog> {
        let fd = socket(libc::NETLINK_NETFILTER)?;
        let raw = fd.as_raw_fd();
        // A bigger receive buffer rides out a burst while a ban is made.
        let rcv: libc::c_int = 1 << 20;
        // SAFETY: setsockopt with a c_int that lives across the call.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &rcv as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let mut n = Nflog {
            fd,
            buf: vec![0; 1 << 16],
            lost: 0,
        };
        n.ask(&config_request(
            1,
            group,
            &[(NFULA_CFG_CMD, vec![NFULNL_CFG_CMD_BIND])],
        ))
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind NFLOG group {group}: {e} (another program, such as ulogd, may read it; fix: set [capture] nflog_group to a free group and apply again)"),
            )
        })?;
        // nfulnl_msg_config_mode: copy_range (be32), copy_mode, padding.
        let mut mode = size.to_be_bytes().to_vec();
        mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
        // One message a packet, handed over at once (or within 10 ms): a
        // rule that names no threshold (nft's log group) leaves the
        // group's, 100 packets or a second by default, and an ACK scan's
        // ban took 70-200 ms in the lab (12 ms with these).
        n.ask(&config_request(
            2,
            group,
            &[
                (NFULA_CFG_MODE, mode),
                (NFULA_CFG_QTHRESH, 1u32.to_be_bytes().to_vec()),
                (NFULA_CFG_TIMEOUT, 1u32.to_be_bytes().to_vec()),
            ],
        ))?;
        // SAFETY: fcntl on our own descriptor.
        unsafe {
            let fl = libc::fcntl(raw, libc::F_GETFL);
            libc::fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        Ok(n)
    }

    /// The descriptor, for the capture loop's poll to wake on.
    pub fn fd(&self) -> libc::c_int {
        self.fd.as_raw_fd()
    }

    /// Send one config request and read its acknowledgement.
    fn ask(&mut self, req: &[u8]) -> io::Result<()> {
        // SAFETY: send(2) of a buffer that lives across the call.
        let r = unsafe { libc::send(self.fd(), req.as_ptr().cast(), req.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = self.read()?;
        let msg = &self.buf[..got];
        // nlmsghdr (16 bytes), then NLMSG_ERROR's code.
        if ne16(msg, 4) == Some(libc::NLMSG_ERROR as u16) {
            let code = ne32(msg, 16).map_or(0, |c| c as i32);
            if code != 0 {
                return Err(io::Error::from_raw_os_error(-code));
            }
        }
        Ok(())
    }

    fn read(&mut self) -> io::Result<usize> {
        // SAFETY: recv(2) into our buffer, at most its length.
        let r = unsafe { libc::recv(self.fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    /// Hand each queued packet message (after its netlink header) to `f`,
    /// reading at most `reads` datagrams; returns how many messages came.
    pub fn drain(&mut self, reads: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        for _ in 0..reads {
            let got = match self.read() {
                Ok(g) => g,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.lost += 1;
                    continue;
                }
                Err(_) => break,
            };
            let mut at = 0;
            while at + 16 <= got {
                let buf = &self.buf[..got];
                let len = ne32(buf, at).map_or(0, |l| l as usize);
                if len < 16 || at + len > got {
                    break;
                }
                if ne16(buf, at + 4) == Some((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET) {
                    f(&buf[at + 16..at + len]);
                    n += 1;
                }
                at += (len + 3) & !3;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_request_names_the_group_big_endian() {
        let m = config_request(7, 33, &[(NFULA_CFG_CMD, vec![NFULNL_CFG_CMD_BIND])]);
        assert_eq!(m.len(), 16 + 4 + 8);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), (4 << 8) | 1);
        assert_eq!(&m[16..20], &[0, 0, 0, 33]);
        assert_eq!(&m[20..25], &[5, 0, 1, 0, NFULNL_CFG_CMD_BIND]);
    }

    #[test]
    fn a_timestamp_is_read_from_its_attribute() {
        let mut msg = vec![2, 0, 0, 33];
        attr(&mut msg, 1, &[0, 0, 8, 0]);
        let mut ts = 1_700_000_000u64.to_be_bytes().to_vec();
        ts.extend_from_slice(&250u64.to_be_bytes());
        attr(&mut msg, NFULA_TIMESTAMP, &ts);
        assert_eq!(timestamp(&msg), Some(1_700_000_000_000_250));
        assert_eq!(timestamp(&msg[..10]), None);
        assert_eq!(timestamp(&[2, 0, 0, 33, 0, 0, 0, 0]), None);
    }
}

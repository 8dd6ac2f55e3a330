//! The packets of `fwctl selftest`: connection attempts and UDP echoes sent
//! from inside a namespace (a thread that joined it: setns is per thread, and
//! a socket stays in the namespace it was made in), each bounded in count and
//! time, and the kernel's LOG lines read from /dev/kmsg (with
//! `nf_log_all_netns` on for the run, as namespaces' LOG lines need).

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, connect as sock_connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
    SockaddrStorage,
};
use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Run `f` on a thread inside namespace `ns` (`/run/netns/NS`).
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let path = Path::new("/run/netns").join(ns);
    let fd = File::open(&path)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid namespace fd changes only this thread.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("probe thread panicked")))
    })
}

/// How `n` connection attempts ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    pub connected: usize,
    /// Answered with a reset: the packet got in, nothing listens.
    pub refused: usize,
    /// No answer within the wait: dropped.
    pub silent: usize,
}

fn tcp_socket(src: IpAddr, dst: SocketAddr) -> io::Result<OwnedFd> {
    let fam = match dst {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let s = socket(
        fam,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        s.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(src, 0)),
    )?;
    match sock_connect(s.as_raw_fd(), &SockaddrStorage::from(dst)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(s),
        Err(e) => Err(e.into()),
    }
}

/// One TCP connection attempt from `src` to each of `dsts`, all at once,
/// in the current namespace; each waits at most `wait` (keep it under the
/// kernel's first SYN retransmission, 1 s, so a dropped SYN is sent once).
pub fn connect(src: IpAddr, dsts: &[SocketAddr], wait: Duration) -> io::Result<Probes> {
    let socks = dsts
        .iter()
        .map(|d| tcp_socket(src, *d))
        .collect::<io::Result<Vec<_>>>()?;
    let mut res = Probes::default();
    let mut pending: Vec<OwnedFd> = socks;
    let end = Instant::now() + wait;
    while !pending.is_empty() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds: Vec<PollFd> = pending
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLOUT))
            .collect();
        let ms = left.as_millis().clamp(1, 60_000) as u16;
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let done: Vec<bool> = fds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut still = Vec::new();
        for (s, d) in pending.into_iter().zip(done) {
            if !d {
                still.push(s);
            } else if getsockopt(&s, sockopt::SocketError)? == 0 {
                res.connected += 1;
            } else {
                res.refused += 1;
            }
        }
        pending = still;
    }
    res.silent = pending.len();
    Ok(res)
}

/// One TCP connection from `src` to `dst` within `wait`: what the other
/// end wrote before closing it (at most 64 bytes), or None when it did not
/// connect.
pub fn greeting(src: IpAddr, dst: SocketAddr, wait: Duration) -> io::Result<Option<Vec<u8>>> {
    let s = tcp_socket(src, dst)?;
    let end = Instant::now() + wait;
    let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLOUT)];
    let ms = wait.as_millis().clamp(1, 60_000) as u16;
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    let done = fds[0].revents().is_some_and(|r| !r.is_empty());
    if !done || getsockopt(&s, sockopt::SocketError)? != 0 {
        return Ok(None);
    }
    let mut t = std::net::TcpStream::from(s);
    t.set_nonblocking(false)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 64 {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        t.set_read_timeout(Some(left))?;
        match t.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n.min(64 - got.len())]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Timed out, or reset: what came so far.
            Err(_) => break,
        }
    }
    Ok(Some(got))
}

/// Whether a datagram from `src` to `dst` comes back (an echo) within
/// `wait`; sent again every 200 ms, a handful of times at most.
pub fn udp_echo(src: IpAddr, dst: SocketAddr, wait: Duration) -> io::Result<bool> {
    let s = UdpSocket::bind(SocketAddr::new(src, 0))?;
    s.connect(dst)?;
    let end = Instant::now() + wait;
    let mut buf = [0u8; 64];
    let msg = b"fwctl selftest";
    while Instant::now() < end {
        s.send(msg)?;
        let left = end.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(
            left.clamp(Duration::from_millis(1), Duration::from_millis(200)),
        ))?;
        match s.recv(&mut buf) {
            Ok(n) if &buf[..n] == msg => return Ok(true),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // An ICMP error (port unreachable): no echo, keep trying.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// One datagram from `src` to `dst` (to make the kernel resolve the
/// neighbour); whether the firewall lets it in does not matter.
pub fn udp_once(src: IpAddr, dst: SocketAddr) -> io::Result<()> {
    let s = UdpSocket::bind(SocketAddr::new(src, 0))?;
    s.send_to(b"fwctl selftest", dst)?;
    Ok(())
}

/// Forwarding on (IPv4 and IPv6) in the current thread's namespace (run
/// it through [`in_ns`]: /proc/sys/net is the namespace of the thread that
/// opens it, so the host's stays as it is).
pub fn forwarding_on() -> io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
    std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
}

const ALL_NETNS: &str = "/proc/sys/net/netfilter/nf_log_all_netns";

/// The kernel's log from the moment it was opened, with `nf_log_all_netns`
/// on (its old value put back on drop). Messages are kept only when they
/// contain `keep` (the lab's interface names), at most [`KEPT`].
pub struct Kmsg {
    file: File,
    keep: String,
    old: Option<String>,
    seen: Vec<String>,
}

/// Most kernel messages a run keeps.
pub const KEPT: usize = 10_000;

impl Kmsg {
    pub fn open(keep: &str) -> io::Result<Kmsg> {
        use std::os::unix::fs::OpenOptionsExt;
        let old = std::fs::read_to_string(ALL_NETNS)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")?;
        // SAFETY: lseek on an fd we own; SEEK_END on /dev/kmsg skips the backlog.
        unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_END) };
        let mut k = Kmsg {
            file,
            keep: keep.to_string(),
            old: None,
            seen: Vec::new(),
        };
        if old.trim() != "1" {
            std::fs::write(ALL_NETNS, "1")?;
            k.old = Some(old.trim().to_string());
        }
        Ok(k)
    }

    /// Read what has arrived; wait up to `wait` until `enough` holds for
    /// the kept messages. Returns whether it did.
    pub fn wait_until(
        &mut self,
        wait: Duration,
        enough: impl Fn(&[String]) -> bool,
    ) -> io::Result<bool> {
        let end = Instant::now() + wait;
        let mut buf = vec![0u8; 8192];
        loop {
            if enough(&self.seen) {
                return Ok(true);
            }
            match self.file.read(&mut buf) {
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    // "LEVEL,SEQ,USEC,FLAGS;MESSAGE\n continuation lines"
                    let msg = rec.split_once(';').map_or(&*rec, |x| x.1);
                    let msg = msg.lines().next().unwrap_or("");
                    if msg.contains(&self.keep) && self.seen.len() < KEPT {
                        self.seen.push(msg.to_string());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() || super::selftest::interrupted() {
                        return Ok(false);
                    }
                    let mut p = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
                    let ms = left.as_millis().clamp(1, 100) as u16;
                    let _ = poll(&mut p, PollTimeout::from(ms));
                }
                // EPIPE: records were overwritten while we read; go on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The kept messages.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

impl Drop for Kmsg {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            let _ = std::fs::write(ALL_NETNS, old);
        }
    }
}

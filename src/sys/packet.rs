//! The live packet source: an AF_PACKET socket with the BPF filter attached,
//! read in batches with recvmmsg(2) (one system call for up to BATCH frames),
//! with the kernel's receive timestamp of each frame and its drop counter.
//! AF_PACKET sees a frame before netfilter does, so a banned source's packets
//! still arrive here; the detector stays quiet about them.

use crate::core::capture::bpf;
use crate::core::capture::detect::Micros;
use crate::core::capture::packet::Link;
use crate::ports::{Frame, PacketSource, Received};
use std::io;
use std::mem::{size_of, zeroed};

pub const BATCH: usize = 64;
const FRAME: usize = bpf::SNAP as usize;
const CONTROL: usize = 64;
/// How long one receive call waits, so the caller can check for signals,
/// write statistics and save state even when no packet comes.
pub const POLL_MS: i64 = 100;

const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

pub struct Live {
    fd: libc::c_int,
    frames: Vec<[u8; FRAME]>,
    controls: Vec<[u8; CONTROL]>,
    names: Vec<libc::sockaddr_ll>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Kernel drops since the socket opened (PACKET_STATISTICS).
    pub drops: u64,
    /// Frames the filter passed, as the kernel counts them.
    pub kernel_packets: u64,
}

fn check(r: libc::c_int, what: &str) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

fn setopt<T>(fd: libc::c_int, level: i32, name: i32, val: &T) -> libc::c_int {
    // SAFETY: val points at a live T of the size we pass.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as u32,
        )
    }
}

/// The index of a network interface; `None` for all of them.
pub fn ifindex(name: &str) -> io::Result<i32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {name}; fix: pick one from `ip -br link`, or leave --iface out to watch them all"),
        ));
    }
    Ok(i as i32)
}

impl Live {
    /// Open the socket on interface `index` (0: all interfaces).
    pub fn open(index: i32) -> io::Result<Live> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned by the returned value.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        check(fd, "AF_PACKET socket")?;
        let mut live = Live {
            fd,
            frames: vec![[0; FRAME]; BATCH],
            controls: vec![[0; CONTROL]; BATCH],
            // SAFETY: sockaddr_ll is plain old data.
            names: vec![unsafe { zeroed() }; BATCH],
            iovecs: Vec::with_capacity(BATCH),
            headers: Vec::with_capacity(BATCH),
            drops: 0,
            kernel_packets: 0,
        };
        // The batch's headers point into the buffers above, once for all
        // calls: the vectors live on the heap and are never resized.
        for i in 0..BATCH {
            live.iovecs.push(libc::iovec {
                iov_base: live.frames[i].as_mut_ptr().cast(),
                iov_len: FRAME,
            });
        }
        for i in 0..BATCH {
            // SAFETY: mmsghdr is plain old data; the pointers stay valid for
            // the life of `live` (heap buffers, never resized).
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (&mut live.names[i] as *mut libc::sockaddr_ll).cast();
            h.msg_hdr.msg_iov = &mut live.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = live.controls[i].as_mut_ptr().cast();
            live.headers.push(h);
        }
        // The filter goes on before bind, so unfiltered traffic never queues.
        let prog = bpf::program();
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        check(
            setopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog),
            "attach BPF filter",
        )?;
        // A deep queue rides out bursts while we ban; FORCE passes rmem_max (root).
        let rcvbuf: libc::c_int = 64 << 20;
        if setopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf) < 0 {
            setopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
        }
        let on: libc::c_int = 1;
        check(
            setopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &on),
            "SO_TIMESTAMPNS",
        )?;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: POLL_MS * 1000,
        };
        check(
            setopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv),
            "SO_RCVTIMEO",
        )?;
        // SAFETY: a zeroed sockaddr_ll with family, protocol and index set.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index;
        // SAFETY: sll lives across the call, with its true size.
        let r = unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        check(r, "bind AF_PACKET socket")?;
        // Discard what queued between socket() and the filter.
        live.read_stats();
        live.drops = 0;
        live.kernel_packets = 0;
        Ok(live)
    }

    /// Wait at most `ms` for the first frame of a batch (POLL_MS by
    /// default): capture shortens it when other work (decoy handshakes)
    /// arrives outside the packet socket.
    pub fn set_poll_ms(&mut self, ms: i64) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: ms.clamp(1, 999) * 1000,
        };
        check(
            setopt(self.fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv),
            "SO_RCVTIMEO",
        )
    }

    /// Receive a batch (waits up to POLL_MS for the first frame) and hand
    /// each frame to `f`. Returns how many frames came.
    pub fn recv(&mut self, mut f: impl FnMut(Frame)) -> io::Result<usize> {
        // The kernel writes back the name and control lengths; reset them.
        for h in &mut self.headers {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
            h.msg_hdr.msg_controllen = CONTROL;
        }
        // SAFETY: headers point into buffers we own for the whole call.
        let n = unsafe {
            libc::recvmmsg(
                self.fd,
                self.headers.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        for i in 0..n as usize {
            let h = &self.headers[i];
            let len = (h.msg_len as usize).min(FRAME);
            let link = match self.names[i].sll_hatype {
                ARPHRD_ETHER | ARPHRD_LOOPBACK => Link::Ethernet,
                _ => Link::Raw,
            };
            if self.names[i].sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let time = timestamp(&h.msg_hdr).unwrap_or_else(super::host::now_micros);
            f(Frame {
                link,
                data: &self.frames[i][..len],
                time,
            });
        }
        Ok(n as usize)
    }

    /// Add the kernel's counters since the last read (reading resets them).
    pub fn read_stats(&mut self) {
        // SAFETY: tpacket_stats is plain old data of the length we pass.
        unsafe {
            let mut st: libc::tpacket_stats = zeroed();
            let mut len = size_of::<libc::tpacket_stats>() as u32;
            if libc::getsockopt(
                self.fd,
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            ) == 0
            {
                self.drops += u64::from(st.tp_drops);
                self.kernel_packets += u64::from(st.tp_packets);
            }
        }
    }
}

/// The SCM_TIMESTAMPNS control message of a received frame.
fn timestamp(h: &libc::msghdr) -> Option<Micros> {
    // SAFETY: walking the control buffer the kernel filled, with the CMSG
    // macros, reading a timespec where the header says one is.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

impl PacketSource for Live {
    fn recv(&mut self, f: &mut dyn FnMut(Frame)) -> io::Result<Received> {
        Live::recv(self, f).map(Received::Frames)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe {
            libc::close(self.fd);
        }
    }
}

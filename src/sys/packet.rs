//! The live packet source: an AF_PACKET socket with the BPF filter attached,
//! read through a memory-mapped TPACKET_V3 ring, as libpcap does. The kernel
//! writes the frames the filter passes into blocks shared with us and hands
//! a block over when it is full or when the block timeout (RING_TIMEOUT_MS)
//! passes, so a flood costs one wake-up per block instead of one per few
//! frames, and no frame is copied out with a system call. AF_PACKET sees a
//! frame before netfilter does, so a banned source's packets still arrive
//! here; the detector stays quiet about them.

use crate::core::capture::bpf;
use crate::core::capture::packet::Link;
use crate::ports::{Frame, PacketSource, Received, AHEAD};
use crate::sys::cpu;
use std::io;
use std::mem::{size_of, zeroed};
use std::sync::atomic::{AtomicU32, Ordering};

/// How long a block that holds frames may stay open before the kernel hands
/// it over: the most a lone probe waits in the ring, so it bounds ban
/// latency at low rates (a flood fills blocks sooner).
pub const RING_TIMEOUT_MS: u32 = 1;
/// 256 blocks of 64 KiB (16 MiB): at most one block retires per timeout
/// with light traffic, so the ring rides out a 256 ms stall of this process
/// (a ban, a state save) before the kernel drops, and about 300 ms of a
/// 200 000 frames/s flood.
const BLOCK_SIZE: u32 = 64 << 10;
const BLOCKS: u32 = 256;
/// The kernel checks frame_nr against block_size / frame_size; with V3 a
/// frame may be any size up to a block, so this only has to be valid.
const FRAME_SIZE: u32 = 2048;
/// How long one wait lasts, so the caller can check for signals, write
/// statistics and save state even when no packet comes.
pub const POLL_MS: i32 = 100;
/// Under a flood, sleep this long between laps instead of poll(2): the
/// socket's poll takes the receive-queue lock the kernel takes for every
/// frame, and on this 2-vCPU VM that contention cost more than all the
/// frames' processing. A frame waits at most this plus RING_TIMEOUT_MS.
/// Each wake-up costs about 10 µs here (timer, switch, cold caches): 4 ms
/// naps were 1 200 of them in a 5 s spoofed flood, tcpdump's block-full
/// wake-ups 580; at 8 ms about 600, 73 -> 68 ns a packet (pinned, five
/// floods each). A scanner inside such a flood waits up to this plus the
/// block timeout and the lap for its ban (2-10 ms measured): the 10 ms
/// packet-to-set target is a median, met at ordinary rates, where nothing
/// naps.
const NAP: std::time::Duration = std::time::Duration::from_millis(8);
/// A lap that brought this many frames or more means a flood: nap next.
const BUSY: usize = 64;

const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

pub struct Live {
    fd: libc::c_int,
    ring: *mut u8,
    /// The block the kernel hands over next.
    next: usize,
    poll_ms: i32,
    /// Another descriptor whose input also ends a wait (capture's NFLOG
    /// socket), or -1.
    also: libc::c_int,
    /// The last lap brought BUSY frames or more.
    busy: bool,
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

/// What `getopt` may read: C integers and structs of them, for which
/// every bit pattern (zero included) is a valid value.
///
/// # Safety
/// Implement it only for such types: getopt makes a zeroed one and lets
/// the kernel write any bytes into it.
unsafe trait Plain: Copy {}
// SAFETY: a C int and a struct of three u32 take any bit pattern.
unsafe impl Plain for libc::c_int {}
// SAFETY: as above.
unsafe impl Plain for libc::tpacket_stats_v3 {}

/// Socket option `name` as the kernel reports it; None when it refuses.
fn getopt<T: Plain>(fd: libc::c_int, level: i32, name: i32) -> Option<T> {
    // SAFETY: T is plain old data (zero is a valid T), and the kernel
    // writes at most `len` bytes into it.
    unsafe {
        let mut v: T = zeroed();
        let mut len = size_of::<T>() as u32;
        (libc::getsockopt(fd, level, name, (&mut v as *mut T).cast(), &mut len) == 0).then_some(v)
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
    /// Open the socket on interface `index` (0: all interfaces), its filter
    /// also passing what payload signatures on these ports need.
    pub fn open(index: i32, tcp_sig_ports: &[u16], udp_sig_ports: &[u16]) -> io::Result<Live> {
        // Protocol 0: the socket receives nothing until bind names one, so
        // no unfiltered frame queues before the filter and the ring are on.
        // SAFETY: plain socket(2); the fd is owned by the returned value.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        check(fd, "AF_PACKET socket")?;
        let mut live = Live {
            fd,
            ring: std::ptr::null_mut(),
            next: 0,
            poll_ms: POLL_MS,
            also: -1,
            busy: false,
            drops: 0,
            kernel_packets: 0,
        };
        let prog = bpf::program(tcp_sig_ports, udp_sig_ports);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        check(
            setopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog),
            "attach BPF filter",
        )?;
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        check(
            setopt(fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version),
            "PACKET_VERSION (TPACKET_V3)",
        )?;
        let req = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE,
            tp_block_nr: BLOCKS,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: BLOCK_SIZE / FRAME_SIZE * BLOCKS,
            tp_retire_blk_tov: RING_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        check(
            setopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req),
            "PACKET_RX_RING",
        )?;
        let len = (BLOCK_SIZE * BLOCKS) as usize;
        // SAFETY: maps the ring the kernel just made for this socket; it is
        // unmapped in Drop, before the fd is closed.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("mmap packet ring: {e}")));
        }
        live.ring = ring.cast();
        // SAFETY: a zeroed sockaddr_ll with family, protocol and index set.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
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
        live.read_stats();
        live.drops = 0;
        live.kernel_packets = 0;
        Ok(live)
    }

    /// Wait at most `ms` for a block (POLL_MS by default): capture shortens
    /// it when other work (decoy handshakes) arrives outside the socket.
    pub fn set_poll_ms(&mut self, ms: i64) {
        self.poll_ms = ms.clamp(1, 999) as i32;
    }

    /// Let input on `fd` end a wait too (the caller reads it after `recv`).
    pub fn wake_on(&mut self, fd: libc::c_int) {
        self.also = fd;
    }

    /// The status word of block `i`, which the kernel and we hand back and
    /// forth: TP_STATUS_USER while it is ours.
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: block i lies inside the mapping; block_status is the first
        // u32 of its header (version, offset_to_priv, then bh1), aligned.
        unsafe {
            let desc = self.ring.add(i * BLOCK_SIZE as usize) as *const libc::tpacket_block_desc;
            &*(std::ptr::addr_of!((*desc).hdr.bh1.block_status) as *const AtomicU32)
        }
    }

    /// Hand the frames of every block the kernel has handed over to `f`,
    /// waiting up to the poll time for the first. Returns how many came.
    pub fn recv(&mut self, mut f: impl FnMut(Frame)) -> io::Result<usize> {
        if self.busy && !self.ready() {
            std::thread::sleep(NAP.min(std::time::Duration::from_millis(self.poll_ms as u64)));
        }
        if !self.ready() {
            let mut fds = [
                libc::pollfd {
                    fd: self.fd,
                    events: libc::POLLIN | libc::POLLERR,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.also,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let n = if self.also < 0 { 1 } else { 2 };
            // SAFETY: `n` pollfds that live across the call.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), n, self.poll_ms) };
            let p = fds[0];
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            // An error on the socket (the interface went away: ENETDOWN)
            // makes every poll return at once; say it instead of spinning.
            if p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 && !self.ready() {
                let err: libc::c_int =
                    getopt(self.fd, libc::SOL_SOCKET, libc::SO_ERROR).unwrap_or(0);
                let e = io::Error::from_raw_os_error(if err == 0 { libc::EIO } else { err });
                return Err(io::Error::new(e.kind(), format!("packet socket: {e}")));
            }
        }
        let mut n = 0;
        // At most one lap of the ring per call, so the caller's housekeeping
        // runs even under a flood that keeps every block full.
        for _ in 0..BLOCKS {
            if !self.ready() {
                break;
            }
            n += self.walk(self.next, &mut f);
            self.status(self.next)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.next = (self.next + 1) % BLOCKS as usize;
        }
        self.busy = n >= BUSY;
        Ok(n)
    }

    /// The kernel has handed the next block over.
    fn ready(&self) -> bool {
        self.status(self.next).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// The frames of block `i`, which is ours until its status is reset.
    fn walk(&self, i: usize, f: &mut impl FnMut(Frame)) -> usize {
        // SAFETY: the kernel filled the block and handed it to us (status
        // USER, read with Acquire); every offset it wrote stays inside the
        // block, and we read each header unaligned-safe through copies.
        unsafe {
            let block = self.ring.add(i * BLOCK_SIZE as usize);
            let bh = &(*(block as *const libc::tpacket_block_desc)).hdr.bh1;
            let count = bh.num_pkts as usize;
            let first = block.add(bh.offset_to_first_pkt as usize);
            let frame = |at: *mut u8| {
                let h = std::ptr::read(at as *const libc::tpacket3_hdr);
                let sll = std::ptr::read_unaligned(
                    at.add(libc::TPACKET_ALIGN(size_of::<libc::tpacket3_hdr>()))
                        as *const libc::sockaddr_ll,
                );
                // The filter passes our own outgoing frames only when they
                // are SYN-ACKs that payload signatures follow.
                let link = match sll.sll_hatype {
                    ARPHRD_ETHER | ARPHRD_LOOPBACK => Link::Ethernet,
                    _ => Link::Raw,
                };
                let len = (h.tp_snaplen as usize).min(bpf::DATA_SNAP as usize);
                let data = std::slice::from_raw_parts(at.add(h.tp_mac as usize), len);
                let time = u64::from(h.tp_sec) * 1_000_000 + u64::from(h.tp_nsec) / 1000;
                (link, data, time, at.add(h.tp_next_offset as usize))
            };
            // A second cursor AHEAD frames further on, for Frame::ahead.
            let mut at = first;
            let mut ahead = first;
            for _ in 0..AHEAD.min(count) {
                ahead = frame(ahead).3;
            }
            for i in 0..count {
                let (link, data, time, next) = frame(at);
                let ahead_data = if i + AHEAD < count {
                    let (l, d, _, n) = frame(ahead);
                    // Frames lie packed in the block (about two lines
                    // each for a bare SYN) and the kernel wrote them from
                    // another CPU: the lines some six frames past the
                    // lookahead are fetched now, so that reading them
                    // there (Engine::warm, which must read the source
                    // before it can prefetch for it) does not stall: lines
                    // 3..6 here, a frame or two on, left the warm-up
                    // waiting on them (live spoofed flood, pinned, four
                    // each: 73 -> 63-67 ns a packet with 14..17 and AHEAD
                    // 8). A few frames per line are asked for again: an L1
                    // hit. Offsets past the block's end only hint; a
                    // prefetch never faults.
                    for line in 14..17 {
                        cpu::prefetch(n.wrapping_add(line * 64));
                    }
                    ahead = n;
                    if l == link {
                        d
                    } else {
                        &[]
                    }
                } else {
                    &[]
                };
                f(Frame {
                    link,
                    data,
                    time,
                    ahead: ahead_data,
                });
                at = next;
            }
            count
        }
    }

    /// Add the kernel's counters since the last read (reading resets them).
    pub fn read_stats(&mut self) {
        let st: Option<libc::tpacket_stats_v3> =
            getopt(self.fd, libc::SOL_PACKET, libc::PACKET_STATISTICS);
        if let Some(st) = st {
            self.drops += u64::from(st.tp_drops);
            self.kernel_packets += u64::from(st.tp_packets);
        }
    }
}

impl PacketSource for Live {
    fn recv(&mut self, f: &mut dyn FnMut(Frame)) -> io::Result<Received> {
        Live::recv(self, f).map(Received::Frames)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and the fd; the mapping goes first.
        unsafe {
            if !self.ring.is_null() {
                libc::munmap(self.ring.cast(), (BLOCK_SIZE * BLOCKS) as usize);
            }
            libc::close(self.fd);
        }
    }
}

//! Read-only maps of part of a log, which a file shrinking under them
//! cannot kill the process with.
//!
//! Reading a whole log through `pread` copies every byte from the page cache
//! into a buffer: on a 2-core VM a third of a `--status 404` scan. A map lets
//! the parser read the page cache itself. The danger is logrotate's
//! `copytruncate`: a page of a shared file map past the file's new end
//! raises SIGBUS, whose default action kills the process. So every map made
//! here is registered, and one SIGBUS handler (installed once) replaces the
//! rest of a registered map, from the faulting page on, with zero pages and
//! marks it [`Mapped::faulted`]: the read that faulted retries and sees
//! zeros. The reader (`logfile`) checks after every window of the map that
//! the file still has its length and first line and that no page faulted,
//! and counts nothing of the thread's range otherwise (it is read from the
//! rotated copy, as a cut `pread` was); it also catches a panic of the
//! parser tripped by bytes that changed under it (a digit checked, then
//! read as a zero) and counts nothing of the range then either. A SIGBUS
//! outside every registered map goes to the action there was before (Rust's
//! own, which reports a stack overflow or restores the default), as if this
//! handler were not there.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// How many maps may be live at once (one per reader thread; a thread
/// holds one at a time). When all are taken the caller reads with `pread`.
const SLOTS: usize = 64;

/// A registered map: [start, end) of the process's addresses. `start` is 0
/// while the slot is free or being filled (the handler skips it).
struct Slot {
    busy: AtomicBool,
    start: AtomicUsize,
    end: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // only to build the array below
const FREE: Slot = Slot {
    busy: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};
static MAPS: [Slot; SLOTS] = [FREE; SLOTS];

/// The SIGBUS action before ours (None: ours could not be installed, and
/// nothing is mapped).
static PREVIOUS: OnceLock<Option<Previous>> = OnceLock::new();

struct Previous(libc::sigaction);
// SAFETY: a `sigaction` is plain data (a handler address, flags and a
// signal mask); it is written once before any reader sees it.
unsafe impl Sync for Previous {}
unsafe impl Send for Previous {}

fn page() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// SIGBUS: inside a registered map, zero pages from the fault to the map's
/// end and a mark; elsewhere, the previous action takes over.
extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler;
    // si_addr is the faulting address for SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &MAPS {
        let start = s.start.load(Ordering::Acquire);
        let end = s.end.load(Ordering::Acquire);
        if start != 0 && (start..end).contains(&addr) {
            let from = addr & !(page() - 1);
            // SAFETY: [from, end) lies inside a map this module made and has
            // not unmapped (it is still registered; only the thread that owns
            // it reads it or unmaps it, and that thread is the one here).
            // MAP_FIXED replaces those pages by anonymous zero pages; mmap is
            // a plain system call, safe to make in a handler.
            let r = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    end - from,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if r != libc::MAP_FAILED {
                s.faulted.store(true, Ordering::Release);
                return;
            }
        }
    }
    // Not ours (or the zero pages could not be mapped): put the previous
    // action back; the faulting access repeats and gets it.
    if let Some(Some(Previous(old))) = PREVIOUS.get() {
        // SAFETY: restoring an action the kernel gave us; sigaction is
        // async-signal-safe.
        unsafe { libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut()) };
    }
}

thread_local! {
    /// The map this thread reads (a thread holds one at a time).
    static READING: std::cell::Cell<Option<&'static Slot>> = const { std::cell::Cell::new(None) };
}

/// Installs the handler once; false if it could not be. Also wraps the
/// panic hook: bytes that turned to zeros under the parser can trip one of
/// its checks (a digit that was one when checked); the reader then counts
/// nothing of that range anyway, so the panic of a thread whose map faulted
/// is not reported.
fn guard() -> bool {
    PREVIOUS
        .get_or_init(|| {
            let report = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let faulted = READING
                    .with(|r| r.get())
                    .is_some_and(|s| s.faulted.load(Ordering::Acquire));
                if !faulted {
                    report(info);
                }
            }));
            // SAFETY: a zeroed sigaction is a valid "no handler" value; we
            // fill in ours and read the old one back from the kernel.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_sigbus as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                (libc::sigaction(libc::SIGBUS, &new, &mut old) == 0).then_some(Previous(old))
            }
        })
        .is_some()
}

/// A read-only shared map of `len` bytes of a file from a page-aligned
/// offset, registered with the SIGBUS handler while it lives.
pub struct Mapped {
    ptr: *mut u8,
    len: usize,
    slot: &'static Slot,
}

impl Mapped {
    /// The page size: offsets passed to [`Mapped::new`] are multiples of it.
    pub fn page() -> u64 {
        page() as u64
    }

    /// Maps [at, at + len) of `file` (`at` a multiple of [`Mapped::page`],
    /// `len` > 0). None when no map can be made here (the handler could not
    /// be installed, every slot is taken, the file system cannot map): the
    /// caller reads with `pread` instead.
    pub fn new(file: &File, at: u64, len: usize) -> Option<Mapped> {
        if len == 0 || !at.is_multiple_of(Self::page()) || !guard() {
            return None;
        }
        let slot = MAPS.iter().find(|s| {
            s.busy
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        let off = libc::off_t::try_from(at).ok()?;
        // SAFETY: a new read-only shared map of the file chosen by the
        // kernel; nothing else is at that address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            slot.busy.store(false, Ordering::Release);
            return None;
        }
        // SAFETY: advice on our own map; it changes no content.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        slot.faulted.store(false, Ordering::Relaxed);
        slot.end.store(ptr as usize + len, Ordering::Release);
        slot.start.store(ptr as usize, Ordering::Release);
        READING.with(|r| r.set(Some(slot)));
        Some(Mapped {
            ptr: ptr.cast(),
            len,
            slot,
        })
    }

    /// The mapped bytes. A log is only appended to, so they do not change
    /// while we read them, but for a truncation: then the pages past the
    /// new end read as zeros (the handler) and [`Mapped::faulted`] says so.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is our live map, readable for its whole
        // length (file pages, or zero pages put there by the handler).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Whether a page of the map faulted (the file shrank under it, or its
    /// storage failed): then what was read from it is not the log.
    pub fn faulted(&self) -> bool {
        self.slot.faulted.load(Ordering::Acquire)
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        READING.with(|r| {
            if r.get().is_some_and(|s| std::ptr::eq(s, self.slot)) {
                r.set(None);
            }
        });
        self.slot.start.store(0, Ordering::Release);
        // SAFETY: our map, not used after this.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
        self.slot.end.store(0, Ordering::Release);
        self.slot.busy.store(false, Ordering::Release);
    }
}

// SAFETY: the map is read-only memory owned by this value; sending it to
// another thread moves that ownership.
unsafe impl Send for Mapped {}

//! The allocator fwctl's binary runs on: the system's, except that a block
//! of 2 MiB or more is aligned to 2 MiB and advised for transparent huge
//! pages before anything touches it. The capture detector's first-sighting
//! buckets (2 MiB with the default capacity) take one random read per
//! forged frame, prefetched a few frames ahead; on 4 KiB pages the prefetch
//! itself stalled on the TLB miss (perf: two thirds of the ring walk, 14 %
//! of capture under a spoofed flood). On huge pages that stall goes. Where
//! the THP setting is `never` the blocks just stay on small pages.

use std::alloc::{GlobalAlloc, Layout, System};

/// A huge page on x86_64 and aarch64 with 4 KiB base pages.
const HUGE: usize = 2 << 20;

pub struct HugeAlloc;

/// The layout a block of this size is really allocated with.
fn real(layout: Layout) -> Layout {
    if layout.size() >= HUGE && layout.align() < HUGE {
        // HUGE is a power of two and the size is already valid.
        Layout::from_size_align(layout.size(), HUGE).unwrap_or(layout)
    } else {
        layout
    }
}

/// Advise the whole huge pages inside a fresh block, before anything
/// touches it, so that its first faults take huge pages.
fn advise(p: *mut u8, layout: Layout) {
    if p.is_null() || layout.align() < HUGE {
        return;
    }
    let len = layout.size() & !(HUGE - 1);
    // SAFETY: [p, p + len) lies inside the block just allocated, which
    // nothing else uses yet; madvise only changes how its pages are backed.
    // errno is put back: a kernel without THP says EINVAL, and an
    // allocation must not change what the caller's last call left there.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        libc::madvise(p.cast(), len, libc::MADV_HUGEPAGE);
        *errno = saved;
    }
}

// SAFETY: every block comes from System with the layout `real` gives, and
// goes back to it with the same one; sizes are the caller's.
unsafe impl GlobalAlloc for HugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let l = real(layout);
        // SAFETY: l has the caller's non-zero size.
        let p = unsafe { System.alloc(l) };
        advise(p, l);
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let l = real(layout);
        if l.align() < HUGE {
            // SAFETY: as in alloc.
            return unsafe { System.alloc_zeroed(l) };
        }
        // SAFETY: as in alloc; the block is zeroed after the advice, so
        // zeroing it is what faults its huge pages in.
        unsafe {
            let p = System.alloc(l);
            advise(p, l);
            if !p.is_null() {
                std::ptr::write_bytes(p, 0, l.size());
            }
            p
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: p came from alloc with real(layout).
        unsafe { System.dealloc(p, real(layout)) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align(new_size, layout.align()).unwrap_or(layout);
        if real(layout) == layout && real(new) == new {
            // SAFETY: both layouts are the system's own.
            return unsafe { System.realloc(p, layout, new_size) };
        }
        // SAFETY: a fresh block of the new layout, the old contents copied
        // up to the smaller size, the old block freed as allocated.
        unsafe {
            let q = self.alloc(new);
            if !q.is_null() {
                std::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            q
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_big_blocks_are_aligned_to_huge_pages() {
        let small = Layout::from_size_align(HUGE - 1, 8).unwrap();
        assert_eq!(real(small), small);
        let big = Layout::from_size_align(HUGE, 64).unwrap();
        assert_eq!(real(big).align(), HUGE);
        assert_eq!(real(big).size(), HUGE);
    }

    #[test]
    fn big_blocks_keep_their_contents_across_reallocation() {
        let a = HugeAlloc;
        let l = Layout::from_size_align(1 << 20, 8).unwrap();
        // SAFETY: each block is used within its size and freed once, with
        // the layout it has at that point.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 7, l.size());
            // Grows past the threshold: a new aligned block, contents kept.
            let q = a.realloc(p, l, 3 * HUGE);
            assert_eq!(q as usize % HUGE, 0);
            assert_eq!(*q, 7);
            assert_eq!(*q.add(l.size() - 1), 7);
            // Shrinks under it again.
            let big = Layout::from_size_align(3 * HUGE, 8).unwrap();
            let r = a.realloc(q, big, 100);
            assert_eq!(*r.add(99), 7);
            a.dealloc(r, Layout::from_size_align(100, 8).unwrap());
            let z = a.alloc_zeroed(big);
            assert_eq!(z as usize % HUGE, 0);
            assert!(std::slice::from_raw_parts(z, big.size())
                .iter()
                .all(|&b| b == 0));
            a.dealloc(z, big);
        }
    }
}

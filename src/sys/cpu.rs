//! CPU hints that the core asks for and cannot give itself (they are
//! `unsafe` intrinsics, and `unsafe` lives in this layer).

/// Ask the CPU to start loading the cache line at `p` (it may be any
/// address: a prefetch never faults and changes nothing but timing).
#[inline]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 only hints the cache; it reads nothing into the
    // program and never faults, whatever the address. SSE is part of the
    // x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

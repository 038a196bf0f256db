//! Zeroing that the compiler cannot remove.

/// Writes `n` zero bytes at `p`; the writes survive optimisation even when
/// the memory is never read again (freed, unmapped, out of scope).
///
/// `write_bytes` lowers to an ordinary `memset`, which the optimiser may
/// delete as a dead store; the empty `asm!` after it takes the pointer and,
/// lacking `nomem`, counts as reading any memory, so the stores must happen
/// first (glibc's `explicit_bzero` uses the same barrier).
///
/// # Safety
/// `p..p+n` must be writable memory the caller owns.
#[inline(never)]
pub unsafe fn memzero(p: *mut u8, n: usize) {
    if n == 0 {
        return;
    }
    // SAFETY: the caller owns p..p+n.
    unsafe { core::ptr::write_bytes(p, 0, n) };
    // SAFETY: an empty instruction sequence; only its compiler-barrier
    // semantics matter.
    unsafe { core::arch::asm!("/* {0} */", in(reg) p, options(nostack, preserves_flags)) };
}

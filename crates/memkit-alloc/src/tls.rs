//! The one thread-local word of the allocator: the calling thread's heap.
//!
//! glibc requires a replacement malloc to use the initial-exec TLS model
//! (`thread_local!` in a cdylib is global-dynamic and calls `__tls_get_addr`,
//! which may call `free`). Stable Rust cannot choose a TLS model, so the word is
//! declared in `.tbss` with `global_asm!` and read through `@GOTTPOFF`, which
//! the linker turns into a plain `%fs:` access (STATIC_TLS in a shared object).
//!
//! `.tbss` starts zeroed, so the word stores the heap's *offset* from the
//! static empty heap: zero means "no heap yet", and the fast path needs no
//! "initialised?" test (the empty heap has no free blocks, so it always falls
//! into the slow path, which creates the real heap).

use crate::heap::{empty_heap, Heap};

core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl memkit_tls_heap_offset",
    ".hidden memkit_tls_heap_offset",
    ".type memkit_tls_heap_offset,@object",
    ".size memkit_tls_heap_offset,8",
    "memkit_tls_heap_offset:",
    ".zero 8",
    ".popsection",
);

#[inline(always)]
fn read_offset() -> usize {
    let v: usize;
    // SAFETY: reads this thread's copy of the 8-byte TLS word declared above.
    unsafe {
        core::arch::asm!(
            "mov {tmp}, qword ptr [rip + memkit_tls_heap_offset@GOTTPOFF]",
            "mov {v}, qword ptr fs:[{tmp}]",
            tmp = out(reg) _, v = out(reg) v,
            options(nostack, readonly, preserves_flags, pure),
        );
    }
    v
}

/// The calling thread's heap (the static empty heap until the thread allocates).
#[inline(always)]
pub fn heap() -> *mut Heap {
    empty_heap().wrapping_byte_add(read_offset())
}

/// Sets the calling thread's heap (`empty_heap()` to detach).
pub fn set_heap(h: *mut Heap) {
    let off = (h as usize).wrapping_sub(empty_heap() as usize);
    // SAFETY: writes this thread's copy of the TLS word declared above.
    unsafe {
        core::arch::asm!(
            "mov {tmp}, qword ptr [rip + memkit_tls_heap_offset@GOTTPOFF]",
            "mov qword ptr fs:[{tmp}], {v}",
            tmp = out(reg) _, v = in(reg) off,
            options(nostack, preserves_flags),
        );
    }
}

//! The thread-local words of the allocator: the calling thread's heap, and
//! whether its heap was released at thread exit.
//!
//! An initial-exec TLS word ([`memkit_sys::tls_word!`]: glibc requires that
//! model of a replacement malloc; the word is a plain `%fs:` access).
//!
//! `.tbss` starts zeroed, so the word stores the heap's *offset* from the
//! static empty heap: zero means "no heap yet", and the fast path needs no
//! "initialised?" test (the empty heap has no free blocks, so it always falls
//! into the slow path, which creates the real heap).

use crate::heap::{empty_heap, Heap};

memkit_sys::tls_word!(
    /// The heap's offset from the static empty heap.
    mod heap_offset = "memkit_tls_heap_offset";
);

/// The calling thread's heap (the static empty heap until the thread allocates).
#[inline(always)]
pub fn heap() -> *mut Heap {
    empty_heap().wrapping_byte_add(heap_offset::get())
}

/// Sets the calling thread's heap (`empty_heap()` to detach).
pub fn set_heap(h: *mut Heap) {
    heap_offset::set((h as usize).wrapping_sub(empty_heap() as usize));
}

memkit_sys::tls_word!(
    /// 1 once the thread's heap was released by its exit destructor.
    mod exited = "memkit_tls_heap_exited";
);

/// Marks the calling thread as exiting: its heap is gone for good.
pub fn set_exited() {
    exited::set(1);
}

/// Whether the calling thread released its heap at exit. A `free` from a
/// later destructor (or glibc's own thread cleanup) must not make a new
/// heap: no destructor would run to release it.
#[inline(always)]
pub fn has_exited() -> bool {
    exited::get() != 0
}

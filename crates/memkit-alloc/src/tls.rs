//! The one thread-local word of the allocator: the calling thread's heap.
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

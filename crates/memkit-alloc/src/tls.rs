//! The thread-local words of the allocator: the calling thread's heap, and
//! the frees a thread without a heap has not yet added to the global
//! counters.
//!
//! An initial-exec TLS word ([`memkit_sys::tls_word!`]: glibc requires that
//! model of a replacement malloc; the word is a plain `%fs:` access).
//!
//! The word starts as the address of the static empty heap in every thread
//! (it is in `.tdata`), so the fast path needs no "initialised?" test (the
//! empty heap has no free blocks, so it always falls into the slow path,
//! which creates the real heap). It held the heap's offset from the empty
//! heap before, zero in `.tbss`, which cost an address computation and an
//! add on every `malloc` and `free`.

use crate::heap::Heap;

memkit_sys::tls_word!(
    /// The calling thread's heap.
    mod heap_word = "memkit_tls_heap", init = &crate::heap::EMPTY_HEAP;
);

/// The calling thread's heap (the static empty heap until the thread allocates).
#[inline(always)]
pub fn heap() -> *mut Heap {
    heap_word::get() as *mut Heap
}

/// Sets the calling thread's heap (`empty_heap()` to detach).
pub fn set_heap(h: *mut Heap) {
    heap_word::set(h as usize);
}

memkit_sys::tls_word!(
    /// Frees by this thread while it has no heap, not yet added to
    /// `GLOBAL`: [`ORPHAN_REGISTERED`], the count from bit
    /// [`ORPHAN_COUNT_SHIFT`], their bytes below it.
    pub mod orphans = "memkit_tls_orphans";
);

/// Set once the thread's exit will flush the counts.
pub const ORPHAN_REGISTERED: usize = 1 << 63;
/// The count's lowest bit (bytes below: up to 256 TiB).
pub const ORPHAN_COUNT_SHIFT: u32 = 48;
/// The bytes' mask.
pub const ORPHAN_BYTES: usize = (1 << ORPHAN_COUNT_SHIFT) - 1;

//! Arenas: heaps that are no thread's, each over a memory source of its
//! own (`crate::source`). The public face is `crate::arena::Arena` and the
//! C API `memkit_heap_*`; this file is the mechanism.
//!
//! An arena is a [`Heap`] in the registry with state `STATE_ARENA`: its
//! pages, segments, bin queues and remote-free lists work exactly as a
//! thread heap's, but no TLS word points to it, so
//!
//! * it is used by **one thread at a time** (mimalloc's rule for
//!   `mi_heap_t`): [`alloc`], [`alloc_aligned`], [`calloc`] and
//!   [`destroy`] act as its owner and must not run concurrently for the
//!   same arena (a thread may hand the arena to another, with the usual
//!   happens-before of a mutex or a channel);
//! * its blocks may be freed by **any thread, any time** with the plain
//!   `free`: the block's segment names the arena, which is never the
//!   freeing thread's heap, so the block goes back through its page's
//!   atomic `thread_free` list (or the arena's `delayed` list), collected
//!   by the arena's next allocation slow path. Its segments carry
//!   `OWNER_ARENA`, so a freed block never enters the freeing thread's
//!   cache of other heaps' blocks (which would hand it out from the
//!   thread's heap, from another source);
//! * its segments and huge blocks are mapped by its source and go back to
//!   it: empty segments of a non-OS source are unmapped to it at once
//!   (never cached), those of the OS source use the process's segment cache
//!   like any other OS segment;
//! * `destroy` frees every block at once (like `mi_heap_destroy`): every
//!   segment and huge block goes back to the source, blocks still in use
//!   included (they are counted as freed). No block of the arena may be
//!   used or freed afterwards, nor while `destroy` runs.
//!
//! Arenas are not trimmed by `malloc_trim` (their owner is unknown); they
//! collect and purge on their own maintenance ticks, and collect
//! themselves when their source refuses a mapping. Heap structs of
//! destroyed arenas are kept for the next arena (the registry never frees
//! one).
//!
//! `fork`: a child inherits every arena. One over the OS source is a
//! private copy, as usable as the parent's. One over a `SHARED` source (a
//! file mapped shared) is the parent's memory: the child's fork handler
//! marks it `STATE_ARENA_FORKED` (allocations return null) and disowns its
//! whole range in the ownership map (`free` of its blocks is ignored), so
//! the child never writes the parent's heap; `destroy` in the child only
//! unmaps it.

use super::*;
use crate::size_class::{bin_of, MEDIUM_MAX};
use crate::source::SHARED;
use crate::MIN_ALIGN;

/// Creates an arena over `src`, which it releases with itself if `own` is
/// not null (`own` is then `src`). Null when no memory is left for a heap
/// struct.
///
/// # Safety
/// `src` outlives the arena.
pub unsafe fn create(src: *const Source, own: *mut FdSource) -> *mut Heap {
    // The process's first heap sets up options, secrets and the fork
    // handlers; doing it for the calling thread keeps that in one place
    // (and a nested allocation by pthread_atfork then has a heap).
    if tls::heap() == empty_heap() && thread_init().is_null() {
        return null_mut();
    }
    // Under the lock: readers of the registry (statistics) see the heap
    // whole.
    let mut r = HEAPS.lock();
    let h = r.idle_arenas;
    let h = if h.is_null() {
        r.new_heap()
    } else {
        // SAFETY: idle arenas are heap structs nobody uses.
        unsafe { r.idle_arenas = (*h).next_dead };
        h
    };
    if h.is_null() {
        return h;
    }
    // SAFETY: h is ours: fresh, or an idle arena taken under the lock. Its
    // counters stay (the sums over all heaps must keep them; other
    // heaps counted frees of its blocks).
    unsafe {
        let next_all = (*h).next_all;
        let stats = core::ptr::read(&(*h).stats);
        h.write(Heap::fresh(empty_page(), STATE_ARENA, next_all, src));
        core::ptr::write(&mut (*h).stats, stats);
        (*h).own_source = own;
    }
    h
}

/// The state of an arena's next allocation.
///
/// # Safety
/// `h` is an arena.
#[inline]
unsafe fn usable(h: *mut Heap) -> bool {
    // SAFETY: per the contract.
    unsafe { (*h).state.load(Relaxed) == STATE_ARENA }
}

/// `size` bytes aligned to 16 from arena `h`; null when its source (and,
/// after collecting, still) refuses memory, or in a forked child of a
/// shared arena.
///
/// # Safety
/// `h` is a live arena the caller uses (one thread at a time).
pub unsafe fn alloc(h: *mut Heap, size: usize) -> *mut u8 {
    // SAFETY: per the contract: the caller acts as the arena's owner.
    unsafe {
        if !usable(h) {
            return null_mut();
        }
        if size <= MEDIUM_MAX {
            let bin = bin_of(size);
            let p = (*h).first[bin];
            let b = if (*p).free.is_null() {
                alloc_bin_slow(h, bin)
            } else {
                pop(p)
            };
            if !b.is_null() {
                (*h).stats.alloc(bin);
            }
            b
        } else {
            alloc_huge_of(h, size, MIN_ALIGN)
        }
    }
}

/// A huge block of arena `h`, retried once after the arena collected
/// itself.
///
/// # Safety
/// As [`alloc`].
unsafe fn alloc_huge_of(h: *mut Heap, size: usize, align: usize) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe {
        let list = addr_of_mut!((*h).huge);
        let mut b = huge::alloc_in((*h).source, list, size, align);
        if b.is_null() && size <= huge::MAX_REQUEST && relieve_pressure_for(h) {
            b = huge::alloc_in((*h).source, list, size, align);
        }
        if !b.is_null() {
            crate::stats::bump(&(*h).stats.huge_allocs, 1);
            crate::stats::bump(&(*h).stats.huge_requested, size as u64);
        }
        b
    }
}

/// `n * size` zeroed bytes from arena `h`; null on overflow.
///
/// # Safety
/// As [`alloc`].
pub unsafe fn calloc(h: *mut Heap, n: usize, size: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        return null_mut();
    };
    // SAFETY: per the contract.
    unsafe {
        let p = alloc(h, total);
        if p.is_null() {
            return p;
        }
        if total > MEDIUM_MAX {
            let hb = huge::header_of(p);
            if !hb.is_null() {
                huge::zero(hb, p, total);
                return p;
            }
        }
        core::ptr::write_bytes(p, 0, total);
        p
    }
}

/// `size` bytes aligned to `align` (a power of two) from arena `h`.
/// Alignments above 4 MiB: only over the OS source (null otherwise).
///
/// # Safety
/// As [`alloc`]; `align` is a power of two.
pub unsafe fn alloc_aligned(h: *mut Heap, align: usize, size: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    // SAFETY: per the contract.
    unsafe {
        if align <= MIN_ALIGN {
            return alloc(h, size);
        }
        if size <= MEDIUM_MAX && align <= SLICE_SIZE {
            // Pages start slice-aligned: a bin whose block size is a
            // multiple of `align` gives aligned blocks.
            if bin_size(bin_of(size)).is_multiple_of(align) {
                return alloc(h, size);
            }
            if size + align - 1 <= MEDIUM_MAX {
                // Always a block of the arena's own pages (an arena has no
                // cache of other heaps' blocks): marking the page is ours.
                let p = alloc(h, size + align - 1);
                if p.is_null() {
                    return p;
                }
                let q = ((p as usize + align - 1) & !(align - 1)) as *mut u8;
                if q != p {
                    (*Segment::page_of(Segment::of(p), p)).mark_aligned();
                    harden::set_aligned_mark(q);
                }
                return q;
            }
        }
        if !usable(h) {
            return null_mut();
        }
        alloc_huge_of(h, size, align)
    }
}

/// Destroys arena `h`: every segment and huge block goes back to its
/// source, blocks still in use included, and a source of its own is
/// released (an fd source unmaps the file and frees its pages there).
///
/// # Safety
/// `h` is a live arena the caller uses; none of its blocks is used or
/// freed afterwards, nor meanwhile by another thread.
pub unsafe fn destroy(h: *mut Heap) {
    // SAFETY: per the contract.
    unsafe {
        let forked = (*h).state.load(Relaxed) == STATE_ARENA_FORKED;
        if !forked {
            flush_rcache(h);
            drain_delayed(h);
            let mut seg = (*h).segments;
            while !seg.is_null() {
                let next = (*seg).next;
                count_live_as_freed(h, seg);
                (*seg).heap = null_mut();
                segment::discard(seg);
                seg = next;
            }
            let n = huge::discard_all(addr_of_mut!((*h).huge));
            crate::stats::bump(&(*h).stats.huge_frees, n);
            (*h).segments = null_mut();
            (*h).seg_mine = [NO_HINT; SEG_MINE];
            flush_stats(h, true);
        }
        let own = (*h).own_source;
        if !own.is_null() {
            FdSource::destroy(own, !forked);
        }
        let mut r = HEAPS.lock();
        (*h).state.store(STATE_EMPTY, Relaxed);
        (*h).source = source::os();
        (*h).own_source = null_mut();
        (*h).next_dead = r.idle_arenas;
        r.idle_arenas = h;
    }
}

/// Counts the blocks still in use in `seg`'s pages as freed by `h` (the
/// sums over all heaps stay balanced after `destroy`).
///
/// # Safety
/// `h` owns `seg`.
unsafe fn count_live_as_freed(h: *mut Heap, seg: *mut Segment) {
    // SAFETY: per the contract: h owns seg and its pages; collecting a
    // page changes no span.
    unsafe {
        Segment::for_each_page(seg, |p| {
            (*p).collect();
            let bin = (*p).bin as usize;
            crate::stats::bump(&(*h).stats.bin_frees[bin], (*p).used as u64);
        });
    }
}

/// Where an arena's own fd source maps offset 0 of its file, and how many
/// bytes; None for other arenas.
///
/// # Safety
/// `h` is a live arena.
pub unsafe fn mapping(h: *mut Heap) -> Option<(*mut u8, usize)> {
    // SAFETY: per the contract.
    unsafe { (*h).own_source.as_ref().map(FdSource::mapping) }
}

/// In a forked child, with the registry locked by its caller: arenas over
/// a shared source become unusable and their memory is disowned (see the
/// module's `fork` paragraph).
///
/// # Safety
/// Only from the fork child handler; `h` is a registry heap.
pub(super) unsafe fn forked_child(h: *mut Heap) {
    // SAFETY: per the contract; a live arena's source is live.
    unsafe {
        let src = (*h).source;
        if (*h).state.load(Relaxed) == STATE_ARENA && (*src).flags & SHARED != 0 {
            (*h).state.store(STATE_ARENA_FORKED, Relaxed);
            let (base, len) = ((*src).range)(src);
            segment::disown(base as usize, len);
        }
    }
}

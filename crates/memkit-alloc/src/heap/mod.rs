//! Heaps: one per thread, owning segments and the pages in them.
//!
//! A heap keeps, per bin, a queue of pages that have free blocks; the fast
//! path pops from the first page of the queue (`first[bin]`). A page that runs
//! out of blocks leaves the queue ("full") and comes back when a block of it is
//! freed: by its owner directly, or, for a free from another thread, through
//! the heap's `delayed` list (the first remote free into a full page goes
//! there, so the owner hears of it; later ones go to the page's `thread_free`).
//!
//! Threads that exit release their heap to a pool of dead heaps: empty pages
//! and segments go back at once, pages with live blocks stay. A new thread
//! adopts a dead heap (with its segments) before mapping anything; live
//! threads also collect dead heaps on their maintenance ticks, so the memory
//! of 2000 short-lived threads is reused, not leaked.
//!
//! Invariants (owner's view): a page is in its bin queue iff it is not
//! `FLAG_FULL`; every page after the first in a queue has free blocks (pages
//! enter queues only with free blocks and only the first is allocated from);
//! `segments` lists exactly the segments whose `heap` is this heap.
//!
//! Heaps that are no thread's (arenas, `arena`) are the same structure
//! over a memory source of their own, used by one thread at a time.
//!
//! This file holds the heap structure, the static empty heap and the
//! registry; the mechanisms are one file each: `thread` (life cycle and
//! fork), `queue` (bin queues), `alloc` (the allocation slow path, new and
//! retired pages), `free` (the free slow paths and remote frees),
//! `maintenance` (collection, purging, dead heaps, trim, memory pressure,
//! invariant checks) and `arena` (heaps over a given source: create,
//! allocate, destroy).

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::{addr_of_mut, null_mut};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering, Ordering::Relaxed};

use crate::config::{self, OPTIONS};
use crate::harden::{self, next_of, set_free, Fault};
use crate::huge::HugeList;
use crate::lock::SpinLock;
use crate::page::{Block, Page, Shared, FLAG_FULL, TF_COUNT_SHIFT, TF_NOTIFY, TF_ONE, TF_PTR};
use crate::segment::{self, Segment, SLICES, SLICE_SIZE};
use crate::size_class::{bin_size, NBINS};
use crate::source::{self, FdSource, Source};
use crate::stats::{HeapStats, GLOBAL};
use crate::{huge, tls};

mod alloc;
pub mod arena;
mod free;
mod maintenance;
mod queue;
mod thread;

// The submodules see each other through this module (`use super::*`).
use self::alloc::*;
pub use self::alloc::{alloc_bin_slow, take};
use self::free::*;
pub use self::free::{flush_orphan_frees, free_local_slow, free_remote, free_remote_of, retire};
use self::maintenance::*;
pub use self::maintenance::{
    alloc_huge, check, check_invariants, for_each_heap, for_each_own_page, heap_counts,
    relieve_pressure, relieve_pressure_for, trim,
};
use self::queue::*;
use self::thread::register_orphan_exit;
pub use self::thread::thread_init;

const STATE_EMPTY: u32 = 0;
const STATE_LIVE: u32 = 1;
const STATE_DEAD: u32 = 2;
/// An arena: a heap no thread owns, over its own source.
const STATE_ARENA: u32 = 3;
/// An arena over a shared source in a forked child: its memory is the
/// parent's, so it allocates nothing and its blocks are not ours (their
/// chunks were disowned); only `destroy` may be called.
const STATE_ARENA_FORKED: u32 = 4;

/// Most bytes of other heaps' blocks a heap keeps per bin (see `rcache`).
const RCACHE_BYTES: u32 = 32 * 1024;

/// Most bytes of emptied pages a heap keeps in their bin queues, ready to
/// be allocated from again, instead of giving them back to their segment on
/// the free that empties them (see `heap::retire`).
const KEEP_EMPTY_BYTES: usize = 1 << 20;
/// Most pages kept (each has a slice at least).
const KEEP_MAX: usize = KEEP_EMPTY_BYTES / SLICE_SIZE;

/// Slow paths between maintenance checks (purge, cache decay, dead heaps).
const MAINTENANCE_EVERY: u32 = 64;
/// Unflushed in-use bytes a heap may hold before adding them to the global peak.
const FLUSH_BYTES: i64 = 64 * 1024;
/// A `Heap::seg_mine` slot when unset: never a segment address (those are
/// 4 MiB aligned), and not 0 so that `free(NULL)` cannot match it.
pub const NO_HINT: usize = 1;
/// Slots of `Heap::seg_mine`.
pub const SEG_MINE: usize = 64;

/// The `Heap::seg_mine` slot of the segment (or any address) `seg`.
#[inline(always)]
pub fn mine_slot(seg: usize) -> usize {
    (seg >> segment::SEGMENT_SHIFT) & (SEG_MINE - 1)
}

/// Whether the 4 MiB-aligned `seg` is in its slot of `h`'s table of its
/// own segments (then it is one of `h`'s small segments, mapped; if not, it
/// may still be `h`'s: ask the ownership bitmap and the segment header).
///
/// # Safety
/// `h` is a heap (or the empty heap), readable by the caller.
#[inline(always)]
pub unsafe fn in_seg_mine(h: *mut Heap, seg: usize) -> bool {
    // SAFETY: per the contract; the slot index is below SEG_MINE.
    unsafe { *(*h).seg_mine.get_unchecked(mine_slot(seg)) == seg }
}
/// Slow calls between two samples of a heap's bytes in use.
const FLUSH_EVERY: u32 = 8;

#[repr(C)]
pub struct Heap {
    /// First page of each bin queue; `empty_page()` when the queue is empty.
    pub first: [*mut Page; NBINS],
    pub last: [*mut Page; NBINS],
    pub stats: HeapStats,
    /// Blocks freed by other threads into pages that were full.
    pub delayed: AtomicPtr<Block>,
    /// Blocks of *other* heaps' pages that this thread freed, kept per bin
    /// (up to [`RCACHE_BYTES`]) for this thread's next allocations of that
    /// size: a block freed far from its owner is reused where its cache line
    /// now is, instead of crossing cores back. Still counted as used by its
    /// page until returned (at maintenance, trim, thread exit).
    pub rcache: [*mut Block; NBINS],
    pub rcache_bytes: [u32; NBINS],
    /// Segments owned by this heap (through `Segment::next/prev`).
    pub segments: *mut Segment,
    /// Segments of this heap by address, direct-mapped: slot
    /// [`mine_slot`]`(seg)` holds `seg` or [`NO_HINT`] (another of this
    /// heap's segments may own the slot; a segment is entered when it gives
    /// a page, and leaves before it is freed). `free` proves ownership of a
    /// block with one load and compare when its segment is here, without
    /// the ownership bitmap and the segment header. 64 slots cover the
    /// 256 MiB a heap's consecutive segments take before two of them share
    /// a slot (two hints, before, missed on most frees of a heap of more
    /// than two segments: fragmentation's 34, g++'s 50).
    pub seg_mine: [usize; SEG_MINE],
    pub slow_calls: u32,
    pub state: AtomicU32,
    /// Set by `trim` from another thread: purge everything at the next tick.
    pub trim_requested: AtomicBool,
    pub flushed: i64,
    pub next_maintenance: u64,
    /// Registry of every heap ever created (never unlinked).
    pub next_all: *mut Heap,
    /// Link in the pool of dead heaps.
    pub next_dead: *mut Heap,
    /// Made dead by `fork` in a child: its thread may have been in the
    /// middle of an operation at the fork (the fast paths take no lock), so
    /// its lists may be half-updated. It is never adopted or collected in
    /// the child (it is not in the pool of dead heaps) and not held to the
    /// invariant checks.
    pub forked: bool,
    /// Blocks this heap's thread gave back to pages of dead heaps since it
    /// last collected dead heaps (see `free_remote_of`).
    pub dead_returns: u32,
    /// Bytes of the pages in `kept`: pages that emptied and stayed in
    /// their bin queue (at most [`KEEP_EMPTY_BYTES`]; see `heap::retire`).
    pub kept_bytes: usize,
    /// The kept pages, `kept_count` of them (a page's `kept` is its index
    /// here plus one).
    pub kept: [*mut Page; KEEP_MAX],
    pub kept_count: usize,
    /// Where the heap's segments and huge blocks are mapped from: the OS
    /// source for thread heaps. Read only on the slow paths that map.
    pub source: *const Source,
    /// An arena's live huge blocks (empty for thread heaps, whose huge
    /// blocks belong to no heap).
    pub huge: HugeList,
    /// The source an arena created for itself and releases with it (an
    /// [`FdSource`]), or null.
    pub own_source: *mut FdSource,
}

#[repr(transparent)]
pub(crate) struct SyncCell<T>(UnsafeCell<T>);
// SAFETY: the empty page and empty heap are never written (their queues are
// empty, so every path that would write them takes the slow path first).
unsafe impl<T> Sync for SyncCell<T> {}

static EMPTY_PAGE: SyncCell<Page> = SyncCell(UnsafeCell::new(Page::EMPTY));

#[inline(always)]
pub fn empty_page() -> *mut Page {
    EMPTY_PAGE.0.get()
}

pub(crate) static EMPTY_HEAP: SyncCell<Heap> = SyncCell(UnsafeCell::new(Heap::fresh(
    EMPTY_PAGE.0.get(),
    STATE_EMPTY,
    null_mut(),
    &source::OS,
)));

impl Heap {
    /// A heap with empty queues (all pointing to `empty`), no segments and
    /// zero counters, in `state`, linked before `next_all` in the registry,
    /// mapping from `source`.
    const fn fresh(
        empty: *mut Page,
        state: u32,
        next_all: *mut Heap,
        source: *const Source,
    ) -> Heap {
        Heap {
            first: [empty; NBINS],
            last: [empty; NBINS],
            stats: HeapStats::ZERO,
            delayed: AtomicPtr::new(null_mut()),
            rcache: [null_mut(); NBINS],
            rcache_bytes: [0; NBINS],
            segments: null_mut(),
            seg_mine: [NO_HINT; SEG_MINE],
            slow_calls: 0,
            state: AtomicU32::new(state),
            trim_requested: AtomicBool::new(false),
            flushed: 0,
            next_maintenance: 0,
            next_all,
            next_dead: null_mut(),
            forked: false,
            dead_returns: 0,
            kept_bytes: 0,
            kept: [null_mut(); KEEP_MAX],
            kept_count: 0,
            source,
            huge: HugeList::EMPTY,
            own_source: null_mut(),
        }
    }
}

/// Whether `h` is an arena (no thread's heap).
///
/// # Safety
/// `h` is a heap.
#[inline]
pub unsafe fn is_arena(h: *mut Heap) -> bool {
    // SAFETY: per the contract.
    unsafe { (*h).state.load(Relaxed) >= STATE_ARENA }
}

/// The static heap of threads that have not allocated yet.
#[inline(always)]
pub fn empty_heap() -> *mut Heap {
    EMPTY_HEAP.0.get()
}

/// Registry of heaps and the dead-heap pool; heap structs come from a private
/// bump region and are never unmapped (they are reused).
struct Registry {
    all: *mut Heap,
    dead_head: *mut Heap,
    dead_tail: *mut Heap,
    dead_count: u64,
    live_count: u64,
    /// Destroyed arenas' heap structs, for the next arena (through
    /// `next_dead`).
    idle_arenas: *mut Heap,
    meta_cur: usize,
    meta_end: usize,
}

// SAFETY: the raw pointers are only touched under the lock.
unsafe impl Send for Registry {}

static HEAPS: SpinLock<Registry> = SpinLock::new(Registry {
    all: null_mut(),
    dead_head: null_mut(),
    dead_tail: null_mut(),
    dead_count: 0,
    live_count: 0,
    idle_arenas: null_mut(),
    meta_cur: 0,
    meta_end: 0,
});

/// Marks (or unmarks) every segment of `h` as belonging to a dead heap.
///
/// # Safety
/// The caller owns `h` (it is being pushed to or taken from the pool).
unsafe fn mark_segments_dead(h: *mut Heap, dead: bool) {
    // SAFETY: per the contract; the flag is atomic (other threads read it).
    unsafe {
        let mut seg = (*h).segments;
        while !seg.is_null() {
            (*seg).owner_dead.store(dead as u32, Relaxed);
            seg = (*seg).next;
        }
    }
}

impl Registry {
    fn pop_dead(&mut self) -> *mut Heap {
        let h = self.dead_head;
        if !h.is_null() {
            // SAFETY: heaps in the pool are valid and linked under the lock.
            unsafe {
                mark_segments_dead(h, false);
                self.dead_head = (*h).next_dead;
                if self.dead_head.is_null() {
                    self.dead_tail = null_mut();
                }
                (*h).next_dead = null_mut();
            }
            self.dead_count -= 1;
        }
        h
    }

    fn push_dead(&mut self, h: *mut Heap) {
        // SAFETY: h is a valid heap no thread uses; linked under the lock.
        unsafe {
            (*h).state.store(STATE_DEAD, Relaxed);
            mark_segments_dead(h, true);
            (*h).next_dead = null_mut();
            if self.dead_tail.is_null() {
                self.dead_head = h;
            } else {
                (*self.dead_tail).next_dead = h;
            }
        }
        self.dead_tail = h;
        self.dead_count += 1;
    }

    fn new_heap(&mut self) -> *mut Heap {
        let size = core::mem::size_of::<Heap>().next_multiple_of(64);
        if self.meta_cur + size > self.meta_end {
            let chunk = 256 * 1024;
            let Ok(p) = memkit_sys::map_meta(chunk) else {
                return null_mut();
            };
            GLOBAL.map(chunk as u64, false);
            self.meta_cur = p as usize;
            self.meta_end = p as usize + chunk;
        }
        let h = self.meta_cur as *mut Heap;
        self.meta_cur += size;
        // SAFETY: fresh memory from our metadata mapping.
        unsafe {
            h.write(Heap::fresh(
                empty_page(),
                STATE_LIVE,
                self.all,
                source::os(),
            ));
        }
        self.all = h;
        h
    }
}

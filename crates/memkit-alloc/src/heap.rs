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

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::{addr_of_mut, null_mut};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering, Ordering::Relaxed};

use crate::config::{self, OPTIONS};
use crate::harden::{self, next_of, set_free, Fault};
use crate::lock::SpinLock;
use crate::page::{Block, Page, Shared, FLAG_FULL, TF_COUNT_SHIFT, TF_NOTIFY, TF_ONE, TF_PTR};
use crate::segment::{self, Segment, SLICES, SLICE_SIZE};
use crate::size_class::{bin_size, NBINS};
use crate::stats::{HeapStats, GLOBAL};
use crate::{huge, tls};

const STATE_EMPTY: u32 = 0;
const STATE_LIVE: u32 = 1;
const STATE_DEAD: u32 = 2;

/// Most bytes of other heaps' blocks a heap keeps per bin (see `rcache`).
const RCACHE_BYTES: u32 = 32 * 1024;

/// Slow paths between maintenance checks (purge, cache decay, dead heaps).
const MAINTENANCE_EVERY: u32 = 64;
/// Unflushed in-use bytes a heap may hold before adding them to the global peak.
const FLUSH_BYTES: i64 = 64 * 1024;
/// `Heap::seg_hint` when unset: never a segment address (those are 4 MiB
/// aligned), and not 0 so that `free(NULL)` cannot match it.
pub const NO_HINT: usize = 1;
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
    /// The address of one of `segments` (the one that gave the newest page),
    /// or [`NO_HINT`]: `free` skips the ownership bitmap for its blocks.
    pub seg_hint: usize,
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
}

#[repr(transparent)]
struct SyncCell<T>(UnsafeCell<T>);
// SAFETY: the empty page and empty heap are never written (their queues are
// empty, so every path that would write them takes the slow path first).
unsafe impl<T> Sync for SyncCell<T> {}

static EMPTY_PAGE: SyncCell<Page> = SyncCell(UnsafeCell::new(Page::EMPTY));

#[inline(always)]
pub fn empty_page() -> *mut Page {
    EMPTY_PAGE.0.get()
}

static EMPTY_HEAP: SyncCell<Heap> = SyncCell(UnsafeCell::new(Heap {
    first: [EMPTY_PAGE.0.get(); NBINS],
    last: [EMPTY_PAGE.0.get(); NBINS],
    stats: HeapStats::ZERO,
    delayed: AtomicPtr::new(null_mut()),
    rcache: [null_mut(); NBINS],
    rcache_bytes: [0; NBINS],
    segments: null_mut(),
    seg_hint: NO_HINT,
    slow_calls: 0,
    state: AtomicU32::new(STATE_EMPTY),
    trim_requested: AtomicBool::new(false),
    flushed: 0,
    next_maintenance: 0,
    next_all: null_mut(),
    next_dead: null_mut(),
}));

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
    meta_cur: 0,
    meta_end: 0,
});

impl Registry {
    fn pop_dead(&mut self) -> *mut Heap {
        let h = self.dead_head;
        if !h.is_null() {
            // SAFETY: heaps in the pool are valid and linked under the lock.
            unsafe {
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
            let Ok(p) = memkit_sys::map(chunk) else {
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
            h.write(Heap {
                first: [empty_page(); NBINS],
                last: [empty_page(); NBINS],
                stats: HeapStats::ZERO,
                delayed: AtomicPtr::new(null_mut()),
                rcache: [null_mut(); NBINS],
                rcache_bytes: [0; NBINS],
                segments: null_mut(),
                seg_hint: NO_HINT,
                slow_calls: 0,
                state: AtomicU32::new(STATE_LIVE),
                trim_requested: AtomicBool::new(false),
                flushed: 0,
                next_maintenance: 0,
                next_all: self.all,
                next_dead: null_mut(),
            });
        }
        self.all = h;
        h
    }
}

// ---------------------------------------------------------------------------
// Thread life cycle

unsafe extern "C" {
    fn pthread_key_create(key: *mut u32, dtor: Option<unsafe extern "C" fn(*mut c_void)>) -> i32;
    fn pthread_setspecific(key: u32, value: *const c_void) -> i32;
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> i32;
}

const NO_KEY: u32 = u32::MAX;
static KEY: AtomicU32 = AtomicU32::new(NO_KEY);
static PROCESS_INIT: AtomicU32 = AtomicU32::new(0);

/// Creates the calling thread's heap (adopting a dead one when possible).
/// Returns null when no memory is left for even a heap.
#[cold]
#[inline(never)]
pub fn thread_init() -> *mut Heap {
    config::load();
    // Before any block exists: the secrets every list link is encoded with.
    harden::init();
    let h = {
        let mut r = HEAPS.lock();
        let mut h = r.pop_dead();
        if h.is_null() {
            h = r.new_heap();
        }
        if !h.is_null() {
            r.live_count += 1;
        }
        h
    };
    if h.is_null() {
        return h;
    }
    // SAFETY: h is ours now; no other thread uses a heap taken from the pool.
    unsafe { (*h).state.store(STATE_LIVE, Relaxed) };
    // The TLS word first: pthread_setspecific and pthread_atfork may allocate.
    tls::set_heap(h);
    GLOBAL.threads.fetch_add(1, Relaxed);
    process_init_once();
    let key = KEY.load(Ordering::Acquire);
    if key != NO_KEY {
        // SAFETY: a valid key; the value is only handed back to thread_done.
        unsafe { pthread_setspecific(key, h as *const c_void) };
    }
    h
}

fn process_init_once() {
    if PROCESS_INIT.load(Ordering::Acquire) == 2 {
        return;
    }
    if PROCESS_INIT.swap(1, Ordering::AcqRel) != 0 {
        // Another thread is registering the key: wait, so that this thread's
        // heap is registered for release too. (The registering thread's own
        // allocations never come here: its heap is already set.)
        while PROCESS_INIT.load(Ordering::Acquire) != 2 {
            memkit_sys::yield_now();
        }
        return;
    }
    let mut key = 0u32;
    // SAFETY: plain libc calls with valid arguments; neither allocates in
    // glibc for the first keys / handlers.
    unsafe {
        if pthread_key_create(&mut key, Some(thread_done)) == 0 {
            KEY.store(key, Ordering::Release);
        }
        pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    PROCESS_INIT.store(2, Ordering::Release);
}

/// pthread key destructor: the thread is exiting.
unsafe extern "C" fn thread_done(arg: *mut c_void) {
    let h = arg as *mut Heap;
    if h.is_null() {
        return;
    }
    if tls::heap() == h {
        tls::set_heap(empty_heap());
    }
    release(h);
}

/// Releases a heap whose thread is gone: everything empty goes back now, the
/// rest waits in the dead pool for adoption.
fn release(h: *mut Heap) {
    let now = memkit_sys::now_ns();
    // SAFETY: the heap's thread is gone; we act as its owner.
    // Empty pages go back to their segments, but nothing is purged yet: the
    // next thread adopts this heap and would fault the pages in again. The
    // purge delay applies as for live heaps (dead heaps are collected on
    // live threads' maintenance ticks).
    unsafe {
        collect_all(h, true, false, now);
        purge_beyond(h, RELEASE_KEEP_DIRTY);
        flush_stats(h, true);
    }
    let mut r = HEAPS.lock();
    r.live_count -= 1;
    r.push_dead(h);
}

/// Free-but-resident bytes an exiting thread's heap keeps for the thread that
/// adopts it: enough for the next short-lived thread to start with few page
/// faults, little enough that dead heaps do not hoard memory. Measured on the
/// thread-churn benchmark (`thread_churn 2 2000 2000`, glibc: 9.4 MiB peak
/// RSS, 15k faults): keeping 4 MiB, 13.5 MiB and 70k faults; 2 MiB, 11.4 MiB,
/// 110k faults and ~20% more time; 1 MiB, 8.0 MiB and 262k faults.
const RELEASE_KEEP_DIRTY: u64 = 4 << 20;

/// Purges the dirty slices of `h`'s segments beyond the first `keep` bytes
/// (most recently mapped segments first).
///
/// # Safety
/// The caller owns `h`.
unsafe fn purge_beyond(h: *mut Heap, keep: u64) {
    let mut kept = 0u64;
    // SAFETY: we own h and its segments.
    unsafe {
        let mut seg = (*h).segments;
        while !seg.is_null() {
            let dirty = (*seg).dirty_mask.count_ones() as u64 * SLICE_SIZE as u64;
            if kept + dirty <= keep {
                kept += dirty;
            } else if dirty > 0 {
                (*seg).purge();
            }
            seg = (*seg).next;
        }
    }
}

unsafe extern "C" fn fork_prepare() {
    HEAPS.raw_lock();
    segment::fork_prepare();
    huge::fork_prepare();
}

unsafe extern "C" fn fork_parent() {
    // SAFETY: the prepare handler took these locks in this thread.
    unsafe {
        huge::fork_parent();
        segment::fork_parent();
        HEAPS.raw_unlock();
    }
}

unsafe extern "C" fn fork_child() {
    // SAFETY: we are the only thread of the child; the locks were taken by
    // the prepare handler in the parent's forking thread, which we are.
    unsafe {
        huge::fork_child();
        segment::fork_child();
        HEAPS.raw_unlock();
    }
    // The other threads do not exist here: their heaps become dead heaps, so
    // their memory is reclaimed instead of leaked.
    let me = tls::heap();
    let mut r = HEAPS.lock();
    let mut h = r.all;
    while !h.is_null() {
        // SAFETY: registry heaps are never freed.
        unsafe {
            if h != me && (*h).state.load(Relaxed) == STATE_LIVE {
                r.live_count -= 1;
                r.push_dead(h);
            }
            h = (*h).next_all;
        }
    }
}

// ---------------------------------------------------------------------------
// Bin queues (owner only)

/// # Safety
/// `h` is owned by the caller; `p` is a page of `h` not in any queue.
unsafe fn queue_push_front(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract.
    unsafe {
        let bin = (*p).bin as usize;
        let f = (*h).first[bin];
        (*p).prev = null_mut();
        if f == empty_page() {
            (*p).next = null_mut();
            (*h).last[bin] = p;
        } else {
            (*p).next = f;
            (*f).prev = p;
        }
        (*h).first[bin] = p;
    }
}

/// # Safety
/// As [`queue_push_front`].
unsafe fn queue_push_back(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract.
    unsafe {
        let bin = (*p).bin as usize;
        let l = (*h).last[bin];
        (*p).next = null_mut();
        if l == empty_page() {
            (*p).prev = null_mut();
            (*h).first[bin] = p;
        } else {
            (*p).prev = l;
            (*l).next = p;
        }
        (*h).last[bin] = p;
    }
}

/// # Safety
/// `h` is owned by the caller; `p` is in its bin queue.
unsafe fn queue_remove(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract.
    unsafe {
        let bin = (*p).bin as usize;
        let (n, pr) = ((*p).next, (*p).prev);
        if pr.is_null() {
            (*h).first[bin] = if n.is_null() { empty_page() } else { n };
        } else {
            (*pr).next = n;
        }
        if n.is_null() {
            (*h).last[bin] = if pr.is_null() { empty_page() } else { pr };
        } else {
            (*n).prev = pr;
        }
        (*p).next = null_mut();
        (*p).prev = null_mut();
    }
}

// ---------------------------------------------------------------------------
// Allocation slow path

/// Slices of a page for blocks of `bs` bytes: at least 4 blocks per page for
/// medium sizes, one 64 KiB slice for small ones.
fn slices_for(bs: usize) -> usize {
    (bs * 4).div_ceil(SLICE_SIZE).clamp(1, SLICES - 1)
}

/// Pops a block from a page that has one. Owner only.
///
/// # Safety
/// `p.free` is non-null.
#[inline(always)]
unsafe fn pop(p: *mut Page) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe {
        let b = (*p).free;
        let next = if harden::on() {
            take::<true>(p, b)
        } else {
            take::<false>(p, b)
        };
        match next {
            Ok(n) => (*p).free = n,
            Err(link) => {
                harden::corrupt(b, link);
            }
        }
        (*p).used += 1;
        b as *mut u8
    }
}

/// Takes `b`, the head of one of page `p`'s lists, off that list and
/// returns the next block. `HARD`: checks that `b` is free and that its link
/// stays in the page, and clears its tag; `Err` carries what
/// [`harden::corrupt`] reports (the fast path tail-calls it, so that it
/// needs no stack frame of its own).
///
/// # Safety
/// `b` is the head of a list of `p`, owned by the caller.
#[inline(always)]
pub unsafe fn take<const HARD: bool>(p: *mut Page, b: *mut Block) -> Result<*mut Block, usize> {
    // SAFETY: per the contract: list heads are blocks of p.
    unsafe {
        if !HARD {
            return Ok((*b).next);
        }
        if !harden::is_tagged(b) {
            return Err(0);
        }
        let next = next_of(b);
        // Inside the page's carved part, so that the next call can read its
        // tag; a pointer there that is no free block start fails that test
        // (its second word is no tag), so the boundary need not be
        // checked here (a multiply on every malloc).
        if !(*p).covers(next as *const u8) && !next.is_null() {
            return Err(next as usize);
        }
        (*b).tag = 0;
        Ok(next)
    }
}

/// The allocation slow path for a small/medium bin: refill from the bin's
/// pages, or make a new page. Always a block of the heap's own pages (the
/// fast path hands out the `rcache`).
///
/// # Safety
/// `h` is the calling thread's (real) heap.
#[cold]
#[inline(never)]
pub unsafe fn alloc_bin_slow(h: *mut Heap, bin: usize) -> *mut u8 {
    // SAFETY: we own h.
    unsafe {
        tick(h);
        loop {
            let p = (*h).first[bin];
            if p == empty_page() {
                break;
            }
            if (*p).collect() || (*p).extend() {
                return pop(p);
            }
            // Exhausted: leave the queue, and ask remote freers to tell us.
            queue_remove(h, p);
            (*p).flags |= FLAG_FULL;
            if (*p)
                .thread_free
                .compare_exchange(0, TF_NOTIFY, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                // A remote free arrived meanwhile: the page has blocks after all.
                (*p).flags &= !FLAG_FULL;
                queue_push_front(h, p);
            }
        }
        let p = new_page(h, bin);
        if p.is_null() {
            return null_mut();
        }
        (*p).extend();
        pop(p)
    }
}

/// Takes `n` consecutive free slices in one of `h`'s segments (only slices
/// that are still resident if `resident`), first segment first.
///
/// # Safety
/// `h` is owned by the caller.
unsafe fn find_span(h: *mut Heap, n: usize, resident: bool) -> Option<(*mut Segment, usize)> {
    // SAFETY: we own h and its segments.
    unsafe {
        let mut seg = (*h).segments;
        while !seg.is_null() {
            let got = if resident {
                (*seg).take_dirty_span(n)
            } else {
                (*seg).take_span(n)
            };
            if let Some(i) = got {
                return Some((seg, i));
            }
            seg = (*seg).next;
        }
        None
    }
}

/// # Safety
/// `h` is owned by the caller.
unsafe fn new_page(h: *mut Heap, bin: usize) -> *mut Page {
    let bs = bin_size(bin);
    let n = slices_for(bs);
    // SAFETY: we own h and its segments.
    unsafe {
        // Resident free slices first, in any of the heap's segments: memory
        // touched once costs nothing more to touch again, where fresh or
        // purged slices cost page faults and RSS (python's peak RSS: 21.0 ->
        // 17.7 MiB, git's 9.1 -> 8.7 MiB).
        let found = find_span(h, n, true).or_else(|| find_span(h, n, false));
        let (seg, i) = match found {
            Some(f) => f,
            None => {
                let seg = segment::alloc(h);
                if seg.is_null() {
                    return null_mut();
                }
                (*seg).next = (*h).segments;
                if !(*h).segments.is_null() {
                    (*(*h).segments).prev = seg;
                }
                (*h).segments = seg;
                match (*seg).take_span(n) {
                    Some(i) => (seg, i),
                    None => return null_mut(),
                }
            }
        };
        let pages = addr_of_mut!((*seg).pages).cast::<Page>();
        for k in 1..n {
            let off = (k * core::mem::size_of::<Page>()) as u32;
            (*pages.add(i + k)).slice_offset = off;
            (*pages.add(i + k)).shared.slice_offset = off;
        }
        (*h).seg_hint = seg as usize;
        let p = pages.add(i);
        *p = Page::EMPTY;
        (*p).flags = 0;
        (*p).block_size = bs;
        (*p).bin = bin as u8;
        (*p).slice_count = n as u8;
        (*p).start = (*seg).slice_addr(i);
        (*p).reserved = ((n * SLICE_SIZE) / bs) as u32;
        (*p).magic = harden::BIN_MAGIC[bin];
        (*p).shared = Shared {
            slice_offset: 0,
            flags: 0,
            bin: bin as u8,
            _pad: 0,
            block_size: bs,
            start: (*p).start,
            carved: AtomicU32::new(0),
        };
        queue_push_front(h, p);
        p
    }
}

/// Gives a page with no block in use back to its segment (and the segment
/// back to the cache when it empties).
///
/// # Safety
/// `h` owns the page; `p.used == 0`; nothing is pending in `thread_free`.
unsafe fn free_page(h: *mut Heap, p: *mut Page, now: u64) {
    // SAFETY: per the contract.
    unsafe {
        if (*p).flags & FLAG_FULL == 0 {
            queue_remove(h, p);
        }
        let seg = Segment::of(p as *const u8);
        let idx = (p as usize - addr_of_mut!((*seg).pages) as usize) / core::mem::size_of::<Page>();
        (*seg).release_span(idx, (*p).slice_count as usize);
        if (*seg).is_empty() {
            let (n, pr) = ((*seg).next, (*seg).prev);
            if pr.is_null() {
                (*h).segments = n;
            } else {
                (*pr).next = n;
            }
            if !n.is_null() {
                (*n).prev = pr;
            }
            if (*h).seg_hint == seg as usize {
                (*h).seg_hint = NO_HINT;
            }
            segment::free(seg, now);
        } else if (*seg).purge_at == 0 {
            (*seg).purge_at = now + OPTIONS.purge_delay_ns.load(Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------
// Free slow paths

/// A free by the owning thread that the fast path did not finish: the page is
/// full or holds aligned blocks, or it became empty.
///
/// # Safety
/// `h` is the calling thread's heap and owns `p`; `b` is a live block of `p`.
#[cold]
#[inline(never)]
pub unsafe fn free_local_slow(h: *mut Heap, p: *mut Page, b: *mut u8) {
    // SAFETY: per the contract.
    unsafe {
        if harden::on() && harden::is_tagged(b as *const Block) {
            harden::fault(Fault::DoubleFree, "free", b, 0);
        }
        (*h).stats.free((*p).bin as usize);
        put_back(h, p, b as *mut Block);
    }
}

/// Gives back a page the fast path emptied.
///
/// # Safety
/// `h` is the calling thread's heap and owns `p`; `p.used == 0`.
#[cold]
#[inline(never)]
pub unsafe fn retire(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract.
    unsafe { free_page(h, p, memkit_sys::now_ns()) }
}

/// Returns block `b` to its page `p` (owner side): onto `local_free`; a full
/// page goes back in its queue, an empty one back to its segment (unless it
/// is its bin's current page).
///
/// # Safety
/// `h` owns `p`; `b` is a block of `p` counted in `used` that nobody uses.
unsafe fn put_back(h: *mut Heap, p: *mut Page, b: *mut Block) {
    // SAFETY: per the contract.
    unsafe {
        set_free(b, (*p).local_free);
        (*p).local_free = b;
        (*p).used -= 1;
        if (*p).flags & FLAG_FULL != 0 {
            unfull(h, p);
        }
        if (*p).used == 0 && (*h).first[(*p).bin as usize] != p {
            free_page(h, p, memkit_sys::now_ns());
        }
    }
}

/// # Safety
/// `h` owns the full page `p`.
unsafe fn unfull(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract.
    unsafe {
        (*p).flags &= !FLAG_FULL;
        // Remote frees may go straight to thread_free again.
        (*p).thread_free.fetch_and(!TF_NOTIFY, Ordering::AcqRel);
        queue_push_back(h, p);
    }
}

/// A free from a thread that does not own the block's page.
///
/// # Safety
/// `b` is a live block of page `p` in segment `seg`, not owned by the caller.
#[cold]
#[inline(never)]
pub unsafe fn free_remote(seg: *mut Segment, p: *mut Page, b: *mut u8) {
    // SAFETY: per the contract.
    unsafe {
        let me = tls::heap();
        let bs = (*p).block_size;
        if me == empty_heap() {
            GLOBAL.orphan_frees.fetch_add(1, Relaxed);
            GLOBAL.orphan_freed_bytes.fetch_add(bs as u64, Relaxed);
            // No heap to flush it later: count it in the global figure now,
            // or the sampled peak would drift upwards.
            GLOBAL.in_use_flushed.fetch_sub(bs as i64, Relaxed);
            return_remote(seg, p, b);
            return;
        }
        free_remote_of(me, seg, p, b);
    }
}

/// [`free_remote`] by a thread with a heap: the block goes to the heap's
/// cache of other heaps' blocks, or home when that bin's cache is full.
///
/// # Safety
/// `me` is the calling thread's real heap; `b` is a live block of page `p`
/// in segment `seg`, and `p` is not owned by `me`.
#[inline(always)]
pub unsafe fn free_remote_of(me: *mut Heap, seg: *mut Segment, p: *mut Page, b: *mut u8) {
    // SAFETY: per the contract.
    unsafe {
        let bin = (*p).shared.bin as usize;
        let bs = (*p).shared.block_size as u32;
        (*me).stats.free(bin);
        let cached = *(*me).rcache_bytes.get_unchecked(bin) + bs;
        if cached <= RCACHE_BYTES {
            let blk = b as *mut Block;
            set_free(blk, *(*me).rcache.get_unchecked(bin));
            *(*me).rcache.get_unchecked_mut(bin) = blk;
            *(*me).rcache_bytes.get_unchecked_mut(bin) = cached;
            return;
        }
        return_remote(seg, p, b);
    }
}

/// Gives a block back to its page's owner: pushed on the page's atomic
/// `thread_free` (or, for a full page, the owner's `delayed` list).
///
/// # Safety
/// `b` is a block of page `p` in segment `seg`, counted as used by `p`, that
/// nobody uses any more.
unsafe fn return_remote(seg: *mut Segment, p: *mut Page, b: *mut u8) {
    // SAFETY: per the contract; thread_free and delayed are atomics.
    unsafe {
        let blk = b as *mut Block;
        let tf = &(*p).thread_free;
        let mut cur = tf.load(Relaxed);
        loop {
            if cur & TF_NOTIFY != 0 {
                // First free into a full page: claim the notification and give
                // the block to the owner's delayed list.
                match tf.compare_exchange_weak(cur, cur & !TF_NOTIFY, Ordering::AcqRel, Relaxed) {
                    Ok(_) => {
                        let owner = (*seg).heap;
                        let d = &(*owner).delayed;
                        let mut head = d.load(Relaxed);
                        loop {
                            set_free(blk, head);
                            match d.compare_exchange_weak(head, blk, Ordering::Release, Relaxed) {
                                Ok(_) => break,
                                Err(h) => head = h,
                            }
                        }
                        break;
                    }
                    Err(v) => cur = v,
                }
            } else {
                debug_assert!((blk as usize) >> TF_COUNT_SHIFT == 0);
                set_free(blk, (cur & TF_PTR) as *mut Block);
                let count = (cur & !(TF_ONE - 1)) + TF_ONE;
                let new = blk as usize | count;
                match tf.compare_exchange_weak(cur, new, Ordering::Release, Relaxed) {
                    Ok(_) => break,
                    Err(v) => cur = v,
                }
            }
        }
    }
}

/// Returns every block of `h`'s `rcache` to its page's owner.
///
/// # Safety
/// The caller owns `h`.
unsafe fn flush_rcache(h: *mut Heap) {
    // SAFETY: we own h; cached blocks are blocks of live pages, counted used.
    unsafe {
        for bin in 1..NBINS {
            let mut b = (*h).rcache[bin];
            while !b.is_null() {
                let next = next_of(b);
                if !next.is_null() && harden::on() && !segment::is_block_of_bin(next, bin) {
                    harden::fault(Fault::BadLink, "free", b as *const u8, next as usize);
                }
                let seg = Segment::of(b as *const u8);
                return_remote(seg, Segment::page_of(seg, b as *const u8), b as *mut u8);
                b = next;
            }
            (*h).rcache[bin] = null_mut();
            (*h).rcache_bytes[bin] = 0;
        }
    }
}

/// Frees the blocks other threads handed to the delayed list.
///
/// # Safety
/// `h` is owned by the caller.
unsafe fn drain_delayed(h: *mut Heap) {
    // SAFETY: per the contract; the list was swapped out whole.
    unsafe {
        let mut b = (*h).delayed.swap(null_mut(), Ordering::Acquire);
        while !b.is_null() {
            let next = next_of(b);
            // Every delayed block is one of this heap's.
            if !next.is_null()
                && harden::on()
                && !(segment::is_block_of_bin(next, 0)
                    && (*Segment::of(next as *const u8)).heap == h)
            {
                harden::fault(Fault::BadLink, "malloc", b as *const u8, next as usize);
            }
            let seg = Segment::of(b as *const u8);
            put_back(h, Segment::page_of(seg, b as *const u8), b);
            b = next;
        }
    }
}

// ---------------------------------------------------------------------------
// Maintenance: collection, purging, dead heaps, statistics

/// Runs on every allocation slow path: delayed frees every time, the rest
/// every [`MAINTENANCE_EVERY`] calls and only when its deadline has passed.
///
/// # Safety
/// `h` is the calling thread's heap.
unsafe fn tick(h: *mut Heap) {
    // SAFETY: we own h.
    unsafe {
        if !(*h).delayed.load(Relaxed).is_null() {
            drain_delayed(h);
        }
        (*h).slow_calls = (*h).slow_calls.wrapping_add(1);
        // Summing the per-bin counters costs ~100 adds: every 8th slow call
        // (the peak misses at most 8 page refills of growth per thread).
        if (*h).slow_calls.is_multiple_of(FLUSH_EVERY) {
            flush_stats(h, false);
        }
        // The front end's periodic hook: on each of a thread's first slow
        // calls (short-lived processes make only a few), then every 8th.
        if (*h).slow_calls <= FLUSH_EVERY || (*h).slow_calls.is_multiple_of(FLUSH_EVERY) {
            crate::stats::run_periodic_hook();
        }
        if !(*h).slow_calls.is_multiple_of(MAINTENANCE_EVERY) {
            return;
        }
        let trim = (*h).trim_requested.swap(false, Relaxed);
        let now = memkit_sys::now_ns();
        if !trim && now < (*h).next_maintenance {
            return;
        }
        let delay = OPTIONS.purge_delay_ns.load(Relaxed);
        (*h).next_maintenance = now + (delay / 4).max(1_000_000);
        collect_all(h, false, trim, now);
        segment::decay_cache(now, trim);
        huge::decay(now, trim);
        reclaim_dead(now, false);
    }
}

/// Collects remote frees of every page of `h`, retires empty pages (all of
/// them if `force`; otherwise the first page of a bin stays, to avoid
/// thrashing on malloc/free pairs), and purges segments whose delay passed
/// (all dirty slices if `purge_all`). Returns the bytes purged.
///
/// # Safety
/// The caller owns `h` (its thread, or its thread is gone).
unsafe fn collect_all(h: *mut Heap, force: bool, purge_all: bool, now: u64) -> u64 {
    let mut purged = 0;
    // SAFETY: we own h, its segments and pages.
    unsafe {
        // Other heaps' blocks go home first (they may be ours: then they
        // arrive on our own pages' thread_free and are collected below).
        flush_rcache(h);
        drain_delayed(h);
        let mut seg = (*h).segments;
        while !seg.is_null() {
            let next_seg = (*seg).next;
            let pages = addr_of_mut!((*seg).pages).cast::<Page>();
            let mut i = 1;
            let mut seg_freed = false;
            while i < SLICES {
                if (*seg).free_mask & (1 << i) != 0 {
                    i += 1;
                    continue;
                }
                let p = pages.add(i);
                let n = ((*p).slice_count as usize).max(1);
                (*p).collect();
                let keep = !force && (*h).first[(*p).bin as usize] == p;
                if (*p).used == 0 && !keep {
                    // The last page frees the segment: stop touching it.
                    seg_freed = (*seg).free_mask.count_zeros() as usize == n + 1;
                    free_page(h, p, now);
                    if seg_freed {
                        break;
                    }
                } else if (*p).flags & FLAG_FULL != 0 && !(*p).free.is_null() {
                    unfull(h, p);
                }
                i += n;
            }
            // A freed segment may already belong to someone else: not touched.
            if !seg_freed && (*seg).dirty_mask != 0 {
                let decayed = (*seg).purge_at != 0 && now >= (*seg).purge_at;
                if purge_all || (decayed && !OPTIONS.memory_locked.load(Relaxed)) {
                    purged += (*seg).purge();
                }
            }
            seg = next_seg;
        }
    }
    purged
}

/// Collects dead heaps: one per call, or all of them if `all`. Empty heaps
/// stay in the pool for new threads. Returns the bytes purged.
fn reclaim_dead(now: u64, all: bool) -> u64 {
    let mut purged = 0;
    let rounds = if all { HEAPS.lock().dead_count } else { 1 };
    for _ in 0..rounds {
        let d = HEAPS.lock().pop_dead();
        if d.is_null() {
            break;
        }
        // SAFETY: a heap popped from the pool is ours until we push it back.
        unsafe {
            if !(*d).segments.is_null() || !(*d).delayed.load(Relaxed).is_null() {
                purged += collect_all(d, true, all, now);
                flush_stats(d, true);
            }
        }
        HEAPS.lock().push_dead(d);
    }
    purged
}

/// Adds the heap's in-use delta to the global figure when it is large.
///
/// # Safety
/// The caller owns `h`.
unsafe fn flush_stats(h: *mut Heap, force: bool) {
    // SAFETY: we own h.
    unsafe {
        let cur = (*h).stats.sums().in_use;
        let d = cur - (*h).flushed;
        if force || d >= FLUSH_BYTES || d <= -FLUSH_BYTES {
            GLOBAL.flush_in_use(d);
            (*h).flushed = cur;
        }
    }
}

/// Returns free memory to the OS now: the calling thread's heap and the dead
/// heaps are collected and purged, cached segments and huge blocks unmapped;
/// other live threads purge at their next maintenance tick.
/// Returns the bytes released.
pub fn trim() -> u64 {
    let now = memkit_sys::now_ns();
    let me = tls::heap();
    let mut released = 0;
    if me != empty_heap() {
        // SAFETY: our own heap.
        unsafe {
            released += collect_all(me, true, true, now);
            flush_stats(me, true);
        }
    }
    released += reclaim_dead(now, true);
    {
        let r = HEAPS.lock();
        let mut h = r.all;
        while !h.is_null() {
            // SAFETY: registry heaps are never freed; the flag is atomic.
            unsafe {
                if h != me && (*h).state.load(Relaxed) == STATE_LIVE {
                    (*h).trim_requested.store(true, Relaxed);
                }
                h = (*h).next_all;
            }
        }
    }
    released += segment::decay_cache(now, true);
    released += huge::decay(now, true);
    released
}

/// Visits every heap ever created (live, dead or idle) with its state.
pub fn for_each_heap(mut f: impl FnMut(&Heap, bool)) {
    let r = HEAPS.lock();
    let mut h = r.all;
    while !h.is_null() {
        // SAFETY: registry heaps are never freed; stats are atomics.
        unsafe {
            f(&*h, (*h).state.load(Relaxed) == STATE_LIVE);
            h = (*h).next_all;
        }
    }
}

/// Visits every page of the calling thread's heap:
/// `f(bin, block_size, used, capacity, reserved)`. Other threads' heaps are
/// not walked: their page lists change under them.
pub fn for_each_own_page(mut f: impl FnMut(usize, usize, u32, u32, u32)) {
    let h = tls::heap();
    if h == empty_heap() {
        return;
    }
    // SAFETY: our own heap, segments and pages.
    unsafe {
        let mut seg = (*h).segments;
        while !seg.is_null() {
            let pages = addr_of_mut!((*seg).pages).cast::<Page>();
            let mut i = 1;
            while i < SLICES {
                if (*seg).free_mask & (1 << i) != 0 {
                    i += 1;
                    continue;
                }
                let p = pages.add(i);
                f(
                    (*p).bin as usize,
                    (*p).block_size,
                    (*p).used,
                    (*p).capacity,
                    (*p).reserved,
                );
                i += ((*p).slice_count as usize).max(1);
            }
            seg = (*seg).next;
        }
    }
}

/// Live and dead heap counts.
pub fn heap_counts() -> (u64, u64) {
    let r = HEAPS.lock();
    (r.live_count, r.dead_count)
}

/// Whether a page structure of `h` is consistent (for tests).
///
/// # Safety
/// The caller owns `h`.
pub unsafe fn check(h: *mut Heap) -> bool {
    // SAFETY: we own h.
    unsafe {
        for bin in 1..NBINS {
            let mut p = (*h).first[bin];
            if p == empty_page() {
                if (*h).last[bin] != empty_page() {
                    return false;
                }
                continue;
            }
            while !p.is_null() {
                if (*p).bin as usize != bin || (*p).flags & FLAG_FULL != 0 || !(*p).check() {
                    return false;
                }
                p = (*p).next;
            }
        }
        true
    }
}

//! memkit's allocator core: `#![no_std]`, never allocates, never panics into C.
//!
//! Memory flows OS → segments (4 MiB, aligned) → pages (spans of 64 KiB
//! slices, one size class each) → blocks; requests above 256 KiB get their own
//! mapping (huge blocks). See `docs/DESIGN.md` for the whole picture.
//!
//! Layers, lowest first (a layer never reaches up): `memkit_sys` (system
//! calls) → [`size_class`], [`lock`], [`stats`], [`config`] → [`source`]
//! → [`page`] → [`segment`], [`huge`] → [`heap`] → this module (the
//! public entry points, whose fast paths are inlined into the C exports
//! and `GlobalAlloc`) and [`arena`] (heaps that are no thread's).
//!
//! # Safety
//! The entry points take raw pointers from C; each states its contract.
//! Pointers that memkit never handed out are detected by the segment ownership
//! bitmap and ignored by `free`/`usable_size`.
#![no_std]

pub mod arena;
pub mod bias;
pub mod config;
pub mod glibc;
pub mod harden;
pub mod heap;
pub mod huge;
pub mod lock;
pub mod page;
pub mod segment;
pub mod size_class;
pub mod source;
pub mod stats;
pub mod tls;
pub mod util;

use core::ptr::null_mut;
use core::sync::atomic::Ordering::Relaxed;

use harden::Fault;
use heap::{empty_heap, Heap};
use page::{Block, FLAG_ALIGNED, FLAG_FULL, FLAG_NO_PAGE};
use segment::{Segment, KIND_HUGE, KIND_SMALL, SLICE_SIZE};
use size_class::{bin_of, BIN_BYTES, MEDIUM_MAX, SMALL_BIN, SMALL_FAST_MAX};
use stats::{bump, Stats, GLOBAL};

pub use stats::Stats as AllocStats;

/// Minimum alignment of every block (`max_align_t`).
pub const MIN_ALIGN: usize = 16;

/// Allocates `size` bytes aligned to 16; null when memory is exhausted.
///
/// Fast path (~25 instructions): a table lookup (or `lzcnt`) for the bin, then
/// the bin's cached block of another heap, or the first block of the bin's
/// first page (its own recent frees first), counted.
///
/// # Safety
/// Always safe to call; unsafe because it hands out raw memory.
#[inline(always)]
pub unsafe fn malloc(size: usize) -> *mut u8 {
    // SAFETY: forwarded.
    unsafe { malloc_with::<NoHook>(size) }
}

/// What the allocation slow path does when it returns null (the C layer sets
/// errno), run there so that the fast path ends in a tail call.
pub trait NullHook {
    fn on_null();
}

/// Nothing to do on null.
pub struct NoHook;

impl NullHook for NoHook {
    #[inline(always)]
    fn on_null() {}
}

/// [`malloc`], running `H::on_null` when it returns null.
///
/// # Safety
/// As [`malloc`].
#[inline(always)]
pub unsafe fn malloc_with<H: NullHook>(size: usize) -> *mut u8 {
    // One predictable branch picks the variant; MEMKIT_HARDEN is decided
    // before the first block exists and never changes.
    // SAFETY: forwarded.
    unsafe {
        if harden::on() {
            malloc_fast::<H, true>(size)
        } else {
            malloc_fast::<H, false>(size)
        }
    }
}

/// The allocation fast path; `HARD` adds the checks of [`harden`]: the
/// list head must lie in its page's carved part (for the cache of other
/// heaps' blocks, in a small segment) before it is read, and must carry the
/// free tag before it is handed out.
#[inline(always)]
unsafe fn malloc_fast<H: NullHook, const HARD: bool>(size: usize) -> *mut u8 {
    let h = tls::heap();
    // One comparison for the common sizes: the table's range first.
    let bin = if size <= SMALL_FAST_MAX {
        // SAFETY: SMALL_BIN covers every size up to SMALL_FAST_MAX.
        unsafe { *SMALL_BIN.get_unchecked((size + 15) >> 4) as usize }
    } else if size <= MEDIUM_MAX {
        bin_of(size)
    } else {
        // SAFETY: forwarded.
        return unsafe { malloc_slow::<H>(size) };
    };
    {
        // SAFETY: h is the thread's heap (or the empty heap, whose pages have
        // no free block); bin is a small or medium bin. Hardened, a list
        // head is checked before it is read (it may come from a corrupted
        // link).
        unsafe {
            let rb = *(*h).rcache.get_unchecked(bin);
            if !rb.is_null() {
                let next = if HARD {
                    // In a small segment of ours before it is read: the
                    // head came from a decoded link. That test, not a walk
                    // to the page descriptor (three more cache lines on
                    // every such malloc: larson lost a third), keeps a link
                    // that decodes anywhere else from being followed; one
                    // that lands in such a segment off a free block fails
                    // the tag test, and landing on a free block of another
                    // size takes knowing the secrets (see `harden`: a link
                    // copied from another free block decodes elsewhere).
                    if !segment::is_small_segment(rb as *const u8) {
                        return harden::corrupt(rb, Fault::BadHead);
                    }
                    if !harden::is_tagged(rb) {
                        return harden::corrupt(rb, Fault::NotFree);
                    }
                    let next = harden::next_of_hard(rb);
                    (*rb).tag = 0;
                    next
                } else {
                    (*rb).next
                };
                *(*h).rcache.get_unchecked_mut(bin) = next;
                *(*h).rcache_bytes.get_unchecked_mut(bin) -= *BIN_BYTES.get_unchecked(bin);
                (*h).stats.alloc(bin);
                return rb as *mut u8;
            }
            let p = *(*h).first.get_unchecked(bin);
            // The last freed block first (its line is likely still
            // cached), then the carved ones. Remote frees are collected by
            // the slow path when the list runs dry.
            let b = (*p).free;
            if b.is_null() {
                // SAFETY: forwarded.
                return malloc_slow::<H>(size);
            }
            let next = match heap::take::<HARD>(p, b) {
                Ok(n) => n,
                Err(what) => return harden::corrupt(b, what),
            };
            (*p).free = next;
            // The next malloc of this size may read `next`'s link: start
            // loading it now (randomly freed blocks are rarely cached). A
            // prefetch of null or of any address never faults.
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                next as *const i8,
            );
            (*p).used += 1;
            (*h).stats.alloc(bin);
            b as *mut u8
        }
    }
}

#[cold]
#[inline(never)]
unsafe fn malloc_slow<H: NullHook>(size: usize) -> *mut u8 {
    // SAFETY: forwarded.
    let p = unsafe { malloc_slow_inner(size) };
    if p.is_null() {
        H::on_null();
    }
    p
}

#[inline(always)]
unsafe fn malloc_slow_inner(size: usize) -> *mut u8 {
    let mut h = tls::heap();
    if h == empty_heap() {
        h = heap::thread_init();
        if h.is_null() {
            return null_mut();
        }
    }
    // SAFETY: h is the calling thread's real heap.
    unsafe {
        if size <= MEDIUM_MAX {
            let bin = bin_of(size);
            let b = heap::alloc_bin_slow(h, bin);
            if !b.is_null() {
                (*h).stats.alloc(bin);
            }
            b
        } else {
            let b = heap::alloc_huge(size, MIN_ALIGN);
            if !b.is_null() {
                bump(&(*h).stats.huge_allocs, 1);
                bump(&(*h).stats.huge_requested, size as u64);
            }
            b
        }
    }
}

/// A small/medium block from the calling thread's own pages (never from the
/// cache of other heaps' blocks), for callers that must mark its page.
#[cold]
#[inline(never)]
unsafe fn malloc_own(size: usize) -> *mut u8 {
    debug_assert!(size <= MEDIUM_MAX);
    let h = tls::heap();
    // SAFETY: called right after a successful malloc, so h is a real heap.
    unsafe {
        let bin = bin_of(size);
        let b = heap::alloc_bin_slow(h, bin);
        if !b.is_null() {
            (*h).stats.alloc(bin);
        }
        b
    }
}

/// Frees a block. Null and pointers memkit never handed out are ignored.
/// When hardened, a double free, or a pointer into memkit's memory that is
/// not the start of a live block, stops the process with a message.
///
/// Fast path: ownership bit, owner check, block-start and free-tag checks,
/// push on the page's local free list.
///
/// # Safety
/// `p` must be null, a live block from this allocator, or a pointer it never
/// handed out.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    // SAFETY: forwarded.
    unsafe {
        if harden::on() {
            free_fast::<true>(p)
        } else {
            free_fast::<false>(p)
        }
    }
}

#[inline(always)]
unsafe fn free_fast<const HARD: bool>(p: *mut u8) {
    let seg = Segment::of(p);
    let h = tls::heap();
    // SAFETY: a `seg_mine` slot holds one of our heap's segments (never a
    // huge chunk, never a 4 MiB-aligned value when unset), so a match proves
    // ownership without the bitmap; otherwise an owned chunk starts with a mapped
    // header, and for a small segment owned by our heap, page_of finds the
    // descriptor of p's span. `holds` proves p is a carved block start
    // before its words are read.
    unsafe {
        if !heap::in_seg_mine(h, seg as usize) {
            if !segment::is_owned(seg as usize) {
                free_unowned(p);
                return;
            }
            if (*seg).heap != h {
                free_other_heap::<HARD>(h, seg, p);
                return;
            }
        }
        let pg = Segment::page_of(seg, p);
        // One load of the tag for the test and the store (an atomic
        // load is not merged with a later one across the store).
        let tag = harden::tag();
        if (*pg).flags == 0
            && (!HARD || ((*pg).holds(p) && !harden::was_freed_with(p as *const Block, tag)))
        {
            let b = p as *mut Block;
            if HARD {
                harden::set_free_with(b, (*pg).free, tag);
            } else {
                (*b).next = (*pg).free;
            }
            (*pg).free = b;
            let used = (*pg).used - 1;
            (*pg).used = used;
            let bin = (*pg).bin as usize;
            (*h).stats.free(bin);
            // An empty page goes back to its segment unless it is the
            // bin's current page (malloc/free pairs would thrash it).
            if used == 0 && *(*h).first.get_unchecked(bin) != pg {
                heap::retire(h, pg);
            }
            return;
        }
        free_generic(seg, p)
    }
}

/// The rest of `free` for a block in a segment memkit owns but the calling
/// thread's heap does not (its `free_fast` proved both, so neither is
/// tested again): a block of another heap's ordinary page (the common case:
/// a block allocated on another thread) is handled here without further
/// calls; huge blocks, aligned pages and invalid pointers go to
/// [`free_generic`].
#[cold]
#[inline(never)]
unsafe fn free_other_heap<const HARD: bool>(h: *mut Heap, seg: *mut Segment, p: *mut u8) {
    // SAFETY: an owned chunk starts with a mapped header; for a small
    // segment, page_of_shared finds the descriptor of p's span (the header
    // slice and free slices have FLAG_NO_PAGE). Only the descriptor's shared
    // line is read: the owner writes the other one on every call.
    unsafe {
        if (*seg).kind == KIND_SMALL {
            let pg = Segment::page_of_shared(seg, p);
            let shared = &(*pg).shared;
            if shared.flags & (FLAG_ALIGNED | FLAG_NO_PAGE) == 0 && p >= shared.start {
                let off = p as usize - shared.start as usize;
                if !HARD
                    || (off < shared.carved.load(Relaxed) as usize
                        && harden::on_boundary(off, shared.bin as usize)
                        && !harden::was_freed(p as *const Block))
                {
                    if h == empty_heap() {
                        // A thread that never allocated (a consumer).
                        heap::free_remote(seg, pg, p);
                    } else {
                        heap::free_remote_of(h, seg, pg, p);
                    }
                    return;
                }
            }
        }
        free_generic(seg, p)
    }
}

/// Huge blocks aligned to 4 MiB or more start in an interior chunk; anything
/// else outside our chunks is not ours.
#[cold]
#[inline(never)]
unsafe fn free_unowned(p: *mut u8) {
    let h = huge::header_of(p);
    if !h.is_null() {
        // SAFETY: a live huge block the caller frees.
        unsafe { huge::free(h) };
        count_huge_free();
    } else if !p.is_null() {
        report_ignored(p, "a pointer memkit did not allocate");
    }
}

/// With `MEMKIT_VERBOSE=1`, one line on stderr for a pointer `free` ignored.
#[cold]
fn report_ignored(p: *mut u8, what: &str) {
    if config::OPTIONS.verbose.load(Relaxed) {
        use core::fmt::Write;
        let mut w = util::BufWriter::<160>::new();
        let _ = writeln!(w, "memkit: free({p:p}) ignored: {what}");
        w.flush_to(2);
    }
}

fn count_huge_free() {
    let me = tls::heap();
    if me == empty_heap() {
        GLOBAL.orphan_frees.fetch_add(1, Relaxed);
    } else {
        // SAFETY: our own heap's counter.
        unsafe { bump(&(*me).stats.huge_frees, 1) };
    }
}

/// Every free the fast path does not finish: huge blocks, remote frees,
/// full or aligned pages, pages becoming empty, invalid pointers.
#[cold]
#[inline(never)]
unsafe fn free_generic(seg: *mut Segment, p: *mut u8) {
    // SAFETY: seg is an owned chunk with a mapped header.
    unsafe {
        match lookup(seg, p) {
            Found::Huge(h) => {
                huge::free(h);
                count_huge_free();
            }
            Found::Small { pg, block, .. } => {
                if harden::on() && harden::was_freed(block as *const Block) {
                    harden::fault(Fault::DoubleFree, "free", block, 0);
                }
                let h = tls::heap();
                if (*seg).heap == h {
                    heap::free_local_slow(h, pg, block);
                } else {
                    heap::free_remote(seg, pg, block);
                }
            }
            Found::Bad(fault, detail) => {
                if harden::on() {
                    harden::fault(fault, "free", p, detail);
                }
                report_ignored(p, "not the start of a live block");
            }
            Found::Foreign => report_ignored(p, "a pointer memkit did not allocate"),
        }
    }
}

/// What a pointer into an owned chunk is.
enum Found {
    /// The start of a live huge block.
    Huge(*mut huge::Huge),
    /// A carved block of a small page (`block` is its start: `p` itself, or
    /// `p` rounded down in a page of aligned blocks); `usable` bytes from `p`.
    Small {
        pg: *mut page::Page,
        block: *mut u8,
        usable: usize,
    },
    /// Inside memkit's memory, but no block start (the fault, and the
    /// offset into the block where there is one).
    Bad(Fault, usize),
    /// Not memkit's memory (past the end of a huge block's mapping).
    Foreign,
}

/// Classifies `p`, a pointer into the owned chunk `seg`, from the
/// descriptors' shared lines (any thread may call it). When hardened, a
/// pointer into an ordinary page must be a block start; pages of aligned
/// blocks accept any pointer into a block (it is rounded down).
///
/// # Safety
/// `seg` is an owned chunk (its header is mapped).
unsafe fn lookup(seg: *mut Segment, p: *mut u8) -> Found {
    // SAFETY: per the contract; small segments have a descriptor per slice.
    unsafe {
        if (*seg).kind == KIND_HUGE {
            let h = huge::header_of(p);
            if !h.is_null() {
                return Found::Huge(h);
            }
            let hh = seg as *mut huge::Huge;
            let off = p as usize - seg as usize;
            if off >= (*hh).map_size {
                return Found::Foreign;
            }
            if (*hh).live == 0 && off == (*hh).data_off {
                return Found::Bad(Fault::DoubleFree, 0);
            }
            if off < (*hh).data_off {
                return Found::Bad(Fault::NotInBlock, 0);
            }
            return Found::Bad(Fault::NotBlockStart, off - (*hh).data_off);
        }
        let pg = Segment::page_of_shared(seg, p);
        let sh = &(*pg).shared;
        if sh.flags & FLAG_NO_PAGE != 0 || p < sh.start {
            return Found::Bad(Fault::NotInBlock, 0);
        }
        let off = p as usize - sh.start as usize;
        let bs = sh.block_size;
        if harden::on() && off >= sh.carved.load(Relaxed) as usize {
            return Found::Bad(Fault::NotInBlock, 0);
        }
        // A division only for pointers that are no block start (a free from
        // a thread without a heap comes here on every call).
        let into = if harden::on_boundary(off, sh.bin as usize) {
            0
        } else {
            off % bs
        };
        // In a page of aligned blocks, `aligned_alloc` hands out pointers
        // inside blocks: only those (marked) are accepted besides starts,
        // and any pointer into a freed block (whose link may have overwritten
        // the mark), which the callers then refuse as a double free.
        if into != 0
            && harden::on()
            && (sh.flags & FLAG_ALIGNED == 0
                || !(harden::is_aligned_start(p, into)
                    || harden::was_freed(p.wrapping_sub(into) as *const Block)))
        {
            return Found::Bad(Fault::NotBlockStart, into);
        }
        Found::Small {
            pg,
            block: p.wrapping_sub(into),
            usable: bs - into,
        }
    }
}

/// `calloc`: `n * size` zeroed bytes; null on overflow or exhaustion.
///
/// # Safety
/// As [`malloc`].
pub unsafe fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        return null_mut();
    };
    // SAFETY: forwarded.
    let p = unsafe { malloc(total) };
    if p.is_null() {
        return p;
    }
    if total > MEDIUM_MAX {
        let h = huge::header_of(p);
        if !h.is_null() {
            // SAFETY: p is a live huge block we just allocated.
            unsafe { huge::zero(h, p, total) };
            return p;
        }
    }
    // SAFETY: p has at least `total` usable bytes.
    unsafe { core::ptr::write_bytes(p, 0, total) };
    p
}

/// Usable bytes of a block (0 for null, pointers memkit never handed out,
/// and, when hardened, pointers that are not the start of a live block).
/// Writing up to that many bytes is safe.
///
/// # Safety
/// `p` must be null, a live block, or a pointer memkit never handed out.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    let seg = Segment::of(p);
    let h = tls::heap();
    // SAFETY: a `seg_mine` slot holds one of our heap's small segments (not
    // null: a null `p` falls through), whose descriptors page_of reads;
    // `holds` proves p a carved block start before its tag word is read.
    // Blocks of full pages qualify; aligned pages (interior pointers are
    // theirs) and everything else take the general path.
    unsafe {
        if heap::in_seg_mine(h, seg as usize) {
            let pg = Segment::page_of(seg, p);
            if (*pg).flags & !FLAG_FULL == 0 && (*pg).holds(p) {
                if harden::on() && harden::was_freed(p as *const Block) {
                    return 0;
                }
                return (*pg).block_size;
            }
        }
        usable_size_general(seg, p)
    }
}

/// [`usable_size`] of any pointer: huge blocks, other heaps' blocks,
/// aligned pages, foreign and invalid pointers.
///
/// # Safety
/// As [`usable_size`]; `seg` is `Segment::of(p)`.
#[cold]
#[inline(never)]
unsafe fn usable_size_general(seg: *mut Segment, p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: owned chunks have mapped headers.
    unsafe {
        if !segment::is_owned(seg as usize) {
            let h = huge::header_of(p);
            return if h.is_null() { 0 } else { huge::usable(h) };
        }
        match lookup(seg, p) {
            Found::Huge(h) => huge::usable(h),
            Found::Small { block, usable, .. } => {
                if harden::on() && harden::was_freed(block as *const Block) {
                    0
                } else {
                    usable
                }
            }
            Found::Bad(..) | Found::Foreign => 0,
        }
    }
}

/// Stops the process if `p` lies in memkit's memory but is not a live
/// block start (when hardened): `realloc` must not copy from or free it.
///
/// # Safety
/// As [`usable_size`].
unsafe fn check_realloc(p: *mut u8) {
    let seg = Segment::of(p);
    if !harden::on() || !segment::is_owned(seg as usize) {
        return;
    }
    // SAFETY: an owned chunk.
    unsafe {
        match lookup(seg, p) {
            Found::Small { block, .. } if harden::was_freed(block as *const Block) => {
                harden::fault(Fault::DoubleFree, "realloc", p, 0)
            }
            Found::Bad(f, d) => harden::fault(f, "realloc", p, d),
            _ => {}
        }
    }
}

/// `realloc` for a non-null `p` and a non-zero `size` (the C layer handles
/// glibc's special cases). Null when memory is short: `p` is then untouched.
/// A pointer memkit never handed out cannot be resized (its size is
/// unknown): null.
///
/// # Safety
/// `p` must be a live block of this allocator.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: p is a live block per the contract.
    unsafe {
        let me = tls::heap();
        if me != empty_heap() {
            bump(&(*me).stats.reallocs, 1);
        }
        check_realloc(p);
        let old = usable_size(p);
        if old == 0 {
            return null_mut();
        }
        if old > MEDIUM_MAX {
            if size > MEDIUM_MAX {
                let h = huge::header_of(p);
                // Blocks of other sources than the OS are copied.
                if !h.is_null() && huge::resizable(h) {
                    let before = huge::usable(h);
                    let mut q = huge::resize(h, size);
                    if q.is_null() && heap::relieve_pressure() {
                        q = huge::resize(h, size);
                    }
                    if !q.is_null() {
                        let me = tls::heap();
                        if me != empty_heap() && size > before {
                            bump(&(*me).stats.huge_requested, (size - before) as u64);
                        }
                    }
                    return q;
                }
            }
        } else if size <= old && size >= old / 2 {
            return p;
        }
        let q = malloc(size);
        if q.is_null() {
            return q;
        }
        core::ptr::copy_nonoverlapping(p, q, old.min(size));
        free(p);
        q
    }
}

/// Allocates `size` bytes aligned to `align` (a power of two).
///
/// # Safety
/// As [`malloc`].
pub unsafe fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if align <= MIN_ALIGN {
        // SAFETY: forwarded.
        return unsafe { malloc(size) };
    }
    // The common case (`alignas(64)` objects, cache-line buffers): a small
    // size whose own class is aligned, with malloc's fast path inline and
    // nothing else in this frame: with the paths below in it, the common
    // one saved five registers, and a pair of `aligned_alloc(64, 64-512)`
    // and `free` cost 190 instructions against `malloc`'s 126; now 158.
    if size <= SMALL_FAST_MAX && align <= SLICE_SIZE {
        // SAFETY: SMALL_BIN covers every size up to SMALL_FAST_MAX; `align`
        // is a power of two in 32..=SLICE_SIZE, a row of ALIGNED_BIN.
        let (bin, c) = unsafe {
            let bin = *SMALL_BIN.get_unchecked((size + 15) >> 4) as usize;
            let row = align.trailing_zeros() as usize - size_class::ALIGN_SHIFT_MIN;
            let c = *size_class::ALIGNED_BIN
                .get_unchecked(row)
                .get_unchecked(bin);
            (bin, c as usize)
        };
        if c == bin {
            // SAFETY: forwarded.
            return unsafe { malloc(size) };
        }
    }
    // SAFETY: forwarded.
    unsafe { aligned_alloc_slow(align, size) }
}

/// [`aligned_alloc`] beyond its common case.
///
/// # Safety
/// As [`malloc`]; `align` is a power of two above [`MIN_ALIGN`].
#[inline(never)]
unsafe fn aligned_alloc_slow(align: usize, size: usize) -> *mut u8 {
    if size <= MEDIUM_MAX && align <= SLICE_SIZE {
        // Pages start slice-aligned, so a bin whose block size is a multiple
        // of `align` gives aligned blocks for free: the size's own bin, or
        // a larger one no larger than the over-allocation below would take
        // (`memalign(4096, 100)`: a 4 KiB block, where `malloc(4195)` took
        // a 4.5 KiB one, marked its page and cost 345 instructions a pair
        // against 124 for tcmalloc; `aligned_alloc(64, 100)`: 128 B).
        let bin = if size <= SMALL_FAST_MAX {
            SMALL_BIN[(size + 15) >> 4] as usize
        } else {
            bin_of(size)
        };
        let row = align.trailing_zeros() as usize - size_class::ALIGN_SHIFT_MIN;
        let c = size_class::ALIGNED_BIN[row][bin] as usize;
        if c == bin || (c != 0 && c <= bin_of(size + align - 1)) {
            // SAFETY: forwarded: a request of the bin's block size.
            return unsafe { malloc(BIN_BYTES[c] as usize) };
        }
        if size + align - 1 <= MEDIUM_MAX {
            // SAFETY: p is a fresh small block with size + align - 1 bytes;
            // our thread owns its page, so marking the page is ours to do.
            unsafe {
                let mut p = malloc(size + align - 1);
                if p.is_null() {
                    return p;
                }
                let mut q = ((p as usize + align - 1) & !(align - 1)) as *mut u8;
                if q != p && (*Segment::of(p)).heap != tls::heap() {
                    // A block of another heap's page (the rcache): its page
                    // flags are not ours to set. Take one of our own.
                    let own = malloc_own(size + align - 1);
                    free(p);
                    if own.is_null() {
                        return own;
                    }
                    p = own;
                    q = ((p as usize + align - 1) & !(align - 1)) as *mut u8;
                }
                if q != p {
                    let seg = Segment::of(p);
                    (*Segment::page_of(seg, p)).mark_aligned();
                    harden::set_aligned_mark(q);
                }
                return q;
            }
        }
    }
    let h = tls::heap();
    let p = heap::alloc_huge(size, align);
    if !p.is_null() && h != empty_heap() {
        // SAFETY: our own heap's counters.
        unsafe {
            bump(&(*h).stats.huge_allocs, 1);
            bump(&(*h).stats.huge_requested, size as u64);
        }
    }
    p
}

/// Returns free memory to the OS now (see [`heap::trim`]); the bytes released.
pub fn trim() -> u64 {
    heap::trim()
}

/// A snapshot of the allocator's statistics, summed over every heap.
pub fn stats() -> Stats {
    // The caller's own heapless frees are seen at once (other threads' at
    // most ORPHAN_BATCH - 1 late each, until they exit).
    heap::flush_orphan_frees();
    let mut s = Stats::default();
    let mut in_use: i64 = 0;
    let mut heap_huge_allocs = 0;
    heap::for_each_heap(|h: &Heap, _live| {
        let sums = h.stats.sums();
        s.allocs += sums.allocs;
        s.frees += sums.frees;
        s.reallocs += h.stats.reallocs.load(Relaxed);
        s.allocated += sums.allocated;
        in_use += sums.in_use;
        heap_huge_allocs += h.stats.huge_allocs.load(Relaxed);
    });
    let g = &GLOBAL;
    // Huge allocations are counted process-wide too, also those of threads
    // that have no heap yet (their frees are counted as orphan frees).
    s.allocs = s.allocs - heap_huge_allocs + g.huge_allocs.load(Relaxed);
    s.frees += g.orphan_frees.load(Relaxed);
    in_use -= g.orphan_freed_bytes.load(Relaxed) as i64;
    s.small_in_use = in_use.max(0) as u64;
    s.huge_live = g.huge_live.load(Relaxed);
    s.huge_live_bytes = g.huge_live_bytes.load(Relaxed);
    s.huge_allocs = g.huge_allocs.load(Relaxed);
    s.segment_mapped = g.segment_mapped.load(Relaxed);
    s.huge_mapped = g.huge_mapped.load(Relaxed);
    s.peak_mapped = g.peak_mapped.load(Relaxed);
    s.peak_in_use = (g.peak_in_use.load(Relaxed).max(0) as u64).max(s.in_use());
    s.unmapped = g.unmapped.load(Relaxed);
    s.purged = g.purged.load(Relaxed);
    s.dirty = g.dirty_bytes.load(Relaxed);
    s.threads = g.threads.load(Relaxed);
    let (live, dead) = heap::heap_counts();
    s.live_heaps = live;
    s.dead_heaps = dead;
    s.cached_segments = segment::cached();
    s.cached_huge = huge::cached();
    s
}

/// Checks the calling thread's heap structures (tests and debugging).
pub fn check_thread_heap() -> bool {
    let h = tls::heap();
    // SAFETY: our own heap (the empty heap trivially passes).
    h == empty_heap() || unsafe { heap::check(h) }
}

/// The carved block of a small page that `p` points into, live or free:
/// its start and size. `None` outside small segments, and for addresses
/// in no carved block (huge blocks are not found: their callers track them).
/// For front-ends that keep their own metadata per block (check mode):
/// interior pointers, ranges of `memcpy`.
pub fn small_block_of(addr: usize) -> Option<(*mut u8, usize)> {
    // Only the address is used: nothing is read through `p` itself.
    let p = addr as *const u8;
    if !segment::is_small_segment(p) {
        return None;
    }
    let seg = Segment::of(p);
    // SAFETY: a small segment of ours has a descriptor for every slice.
    unsafe {
        let sh = &(*Segment::page_of_shared(seg, p)).shared;
        if sh.flags & FLAG_NO_PAGE != 0 || p < sh.start as *const u8 {
            return None;
        }
        let off = p as usize - sh.start as usize;
        if off >= sh.carved.load(Relaxed) as usize {
            return None;
        }
        let bs = sh.block_size;
        Some((sh.start.add(off - off % bs), bs))
    }
}

/// Whether `addr` lies in memory the core hands blocks out of (a small
/// segment, or the first chunks of a huge block): a word there can be read
/// without faulting. For front-ends that keep a header before each block
/// and must look at a pointer before knowing it is theirs (the profiler).
/// The calling thread's own segments are tried first (as `free` does):
/// most blocks a thread frees are in one of them.
#[inline(always)]
pub fn in_block_memory(addr: usize) -> bool {
    let chunk = addr & !(segment::SEGMENT_SIZE - 1);
    let h = tls::heap();
    // SAFETY: the calling thread's heap (or the empty sentinel), always
    // readable; a `seg_mine` slot is a small segment of that heap, mapped,
    // unset before the segment goes (heap::alloc), never a huge chunk.
    let mine = unsafe { heap::in_seg_mine(h, chunk) };
    mine || segment::is_owned(chunk) || segment::is_interior(chunk)
}

/// How many bytes from `chunk` (a multiple of 4 MiB) are memory of the
/// core's own mappings: a small segment's 4 MiB, a huge mapping's length
/// (live or cached) from its header, 4 MiB for a later chunk of a huge
/// block aligned to 4 MiB or more; None where no mapping of the core
/// starts. For scans of the process's memory that must leave the heap out
/// (check mode's leak check reads blocks only through the blocks it finds).
pub fn core_mapping_len(chunk: usize) -> Option<usize> {
    debug_assert!(chunk.is_multiple_of(segment::SEGMENT_SIZE));
    if segment::is_owned(chunk) {
        let h = chunk as *const huge::Huge;
        // SAFETY: an owned chunk starts with a mapped header whose leading
        // fields a segment and a huge header share.
        let kind = unsafe { (*h).kind };
        if kind == segment::KIND_HUGE {
            // SAFETY: as above; a huge header's map_size covers the mapping.
            return Some(unsafe { (*h).map_size });
        }
        return Some(segment::SEGMENT_SIZE);
    }
    segment::is_interior(chunk).then_some(segment::SEGMENT_SIZE)
}

/// Whether `base` is the data start of a live huge block and `addr` one of
/// its bytes: a word at `addr` can then be read without faulting. For a
/// front-end whose header lies further into a block than
/// [`in_block_memory`] sees (its first chunk after the huge header): the
/// profiler's blocks aligned to 8 MiB or more keep their header right
/// before the aligned user bytes, `align` bytes into the core's block.
/// Reads a header only where the ownership maps mark one.
pub fn huge_block_covers(base: usize, addr: usize) -> bool {
    let h = huge::header_of(base as *mut u8);
    if h.is_null() || addr < base {
        return false;
    }
    // SAFETY: header_of found the header of a live huge block.
    addr - base < unsafe { huge::usable(h) }
}

/// The core as a Rust global allocator, for front-ends (check mode, the
/// profiler) whose own Rust code must allocate from the core directly,
/// never through the C exports they record or check.
pub struct Core;

// SAFETY: the core returns blocks of at least `size` bytes aligned to
// `max(align, 16)` that stay valid until freed, or null.
unsafe impl core::alloc::GlobalAlloc for Core {
    unsafe fn alloc(&self, l: core::alloc::Layout) -> *mut u8 {
        // SAFETY: any layout is valid for the core.
        unsafe {
            if l.align() <= MIN_ALIGN {
                malloc(l.size())
            } else {
                aligned_alloc(l.align(), l.size())
            }
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, _l: core::alloc::Layout) {
        // SAFETY: p came from alloc above.
        unsafe { free(p) }
    }
}
